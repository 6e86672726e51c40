//! The trust boundary between requests and the host: the only code that turns a name a
//! request gave into a filesystem path, and the only code that decides whether the server
//! may connect to a destination a request gave.
//!
//! - Paths: a `local` Mission Control gateway's `workspace_root` is a relative name under
//!   its org's own directory `<data dir>/workspaces/<org id>/` (two orgs naming the same
//!   root never share a directory), or lies inside a root the operator allowed
//!   (`--workspace-root-allow`). Absolute paths elsewhere, `..`, and anything that leads
//!   outside through a symlink are refused. The check runs when a request names the path
//!   ([`Boundary::check_workspace_root`]) and again at the moment of the side effect
//!   ([`Boundary::workspace_dir`]), because a symlink can appear in between.
//! - Destinations: a gateway URL is `ws://` or `wss://` to a host that is not link-local
//!   or a cloud metadata address (169.254.0.0/16, fe80::/10, fd00:ec2::254, Alibaba's
//!   100.100.100.200 and Oracle's 192.0.0.192, also when written as an IPv4-mapped,
//!   -compatible, -translated or NAT64 IPv6 address), optionally restricted
//!   to an operator's allow list (`--gateway-allow`). The URL is checked when a request
//!   names it ([`Boundary::gateway_url`]); at connect time the host's resolved addresses are
//!   checked and the connection goes to exactly those ([`Boundary::connect`]), so a DNS
//!   answer that changed since cannot lead elsewhere.
//!
//! Refusals never quote a server path: they are shown to API callers.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::net::TcpStream;

use crate::config::BoundarySettings;

/// Where `local` gateways' workspaces go, inside the data dir.
pub const WORKSPACES_DIR: &str = "workspaces";

/// Why the boundary refused a path or a destination. The message is safe to show: it
/// never names a server path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

impl Refused {
    fn new(message: impl Into<String>) -> Self {
        Refused(message.into())
    }
}

/// A side effect the boundary could not prepare: refused, or the host failed it.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The operation was allowed but failed; the text is [`io_reason`], path-free. The I/O
    /// error is not its source: its own text may name a path, and the reason says it all.
    #[error("{}", io_reason(.0))]
    Io(io::Error),
}

impl From<io::Error> for HostError {
    fn from(error: io::Error) -> Self {
        HostError::Io(error)
    }
}

/// A path-free description of an I/O failure ("permission denied", "not a directory").
/// Operating-system errors are described by their code alone, so nothing a library added
/// to the message (such as a path) reaches a caller.
pub fn io_reason(error: &io::Error) -> String {
    let text = match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => error.kind().to_string(),
    };
    let text = match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Replaces every occurrence of `path` (as given and canonical) in a message from a tool
/// the server runs, so that its output can be reported without naming server paths.
pub fn redact_path(text: &str, path: &Path, replacement: &str) -> String {
    let mut out = text.to_string();
    let mut forms = vec![path.to_path_buf()];
    if let Ok(canonical) = std::fs::canonicalize(path) {
        forms.push(canonical);
    }
    if let Ok(cwd) = std::env::current_dir() {
        forms.push(cwd.join(path));
    }
    // Longest first, so a canonical form that contains the given one is replaced whole.
    forms.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for form in forms {
        let form = form.to_string_lossy();
        if !form.is_empty() && form != "/" {
            out = out.replace(form.as_ref(), replacement);
        }
    }
    out
}

/// A local sandbox's URL as responses show it: `local://<sandbox id>`. Sandboxes recorded
/// before this rule carry their directory (`file://…`) in the log; that is never shown.
pub fn sandbox_url(recorded: Option<&str>, sandbox_id: &str) -> Option<String> {
    match recorded {
        Some(url) if url.starts_with("file:") => Some(local_sandbox_url(sandbox_id)),
        other => other.map(str::to_string),
    }
}

/// The URL a local sandbox is known by.
pub fn local_sandbox_url(sandbox_id: &str) -> String {
    format!("local://{sandbox_id}")
}

// ---- settings values ----------------------------------------------------------------------

/// An address block: an address and a prefix length (a bare address is a single host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    bits: u8,
}

impl IpBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, unmapped(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(u32::from(net) as u128, u32::from(ip) as u128, self.bits, 32),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), self.bits, 128),
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8, width: u32) -> bool {
    let bits = u32::from(bits);
    bits == 0 || (a ^ b) >> (width - bits) == 0
}

impl FromStr for IpBlock {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let invalid = || format!("'{raw}' is not an IP address or CIDR block");
        let (address, bits) = match raw.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (raw, None),
        };
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let network = unmapped(network);
        let width: u8 = if network.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => width,
            Some(b) if !b.is_empty() && b.chars().all(|c| c.is_ascii_digit()) => {
                b.parse::<u8>().ok().filter(|b| *b <= width).ok_or_else(invalid)?
            }
            Some(_) => return Err(invalid()),
        };
        if host_bits(network, bits) {
            return Err(format!("'{raw}' has host bits set"));
        }
        Ok(IpBlock { network, bits })
    }
}

fn host_bits(ip: IpAddr, bits: u8) -> bool {
    let (value, width) = match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128, 32u32),
        IpAddr::V6(v6) => (u128::from(v6), 128u32),
    };
    let bits = u32::from(bits);
    bits < width && value & ((1u128 << (width - bits)) - 1) != 0
}

/// An entry of the gateway allow list: a host name (matched exactly, without a trailing
/// dot, case-insensitively) or an address block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostRule {
    Name(String),
    Block(IpBlock),
}

impl FromStr for HostRule {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let entry = raw.trim();
        let bare = entry.trim_start_matches('[').trim_end_matches(']');
        if bare.contains('/') || bare.parse::<IpAddr>().is_ok() {
            return bare.parse().map(HostRule::Block);
        }
        let name = entry.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name
                .split('.')
                .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if valid {
            Ok(HostRule::Name(name))
        } else {
            Err(format!("'{raw}' is not a host name, IP address or CIDR block"))
        }
    }
}

/// An allowed workspace root: absolute, without `..`, lexically normalized.
pub fn allowed_root(raw: &str) -> Result<PathBuf, String> {
    let path = Path::new(raw.trim());
    if !path.is_absolute() {
        return Err(format!("'{raw}' is not an absolute directory"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("'{raw}' must not contain '..'"));
    }
    Ok(path.components().collect())
}

// ---- destinations -------------------------------------------------------------------------

/// What a gateway's `url` asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum GatewayUrl {
    /// No URL: provisioning is recorded as skipped.
    Unset,
    /// `local`: workspaces on this machine.
    Local,
    /// An OpenClaw gateway over WebSocket.
    Remote(url::Url),
}

/// Why an address is never a destination, or `None` when it may be one.
pub fn blocked(ip: IpAddr) -> Option<&'static str> {
    match unmapped(ip) {
        IpAddr::V4(v4) if v4.is_link_local() || OTHER_METADATA_V4.contains(&v4) => Some("a link-local or cloud metadata address"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() => Some("not a host address"),
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) if v6 == AWS_METADATA_V6 || (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("a link-local or cloud metadata address"),
        IpAddr::V6(v6) if v6.is_unspecified() || v6.is_multicast() => Some("not a host address"),
        IpAddr::V6(_) => None,
    }
}

/// The EC2 instance metadata service's IPv6 address.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Metadata services outside 169.254.0.0/16: Alibaba Cloud's and Oracle Cloud's.
const OTHER_METADATA_V4: [Ipv4Addr; 2] = [Ipv4Addr::new(100, 100, 100, 200), Ipv4Addr::new(192, 0, 0, 192)];

/// An IPv6 address that carries an IPv4 one (mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and the local-use
/// NAT64 prefix `64:ff9b:1::/48`) as that IPv4 address; anything else as it is.
fn unmapped(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6] == [0; 6] && u32::from(embedded) > 1;
    let translated = s[..6] == [0, 0, 0, 0, 0xffff, 0];
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..3] == [0x64, 0xff9b, 1];
    if compatible || translated || nat64 {
        IpAddr::V4(embedded)
    } else {
        ip
    }
}

/// How the boundary looks up a host's addresses (a seam for tests).
#[async_trait]
pub trait Resolve: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The system resolver.
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// The boundary: the data dir and what the operator allowed besides it.
pub struct Boundary {
    data_dir: PathBuf,
    allowed_roots: Vec<PathBuf>,
    gateway_allow: Vec<HostRule>,
    resolver: Arc<dyn Resolve>,
}

impl fmt::Debug for Boundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Boundary")
            .field("allowed_roots", &self.allowed_roots)
            .field("gateway_allow", &self.gateway_allow)
            .finish_non_exhaustive()
    }
}

impl Boundary {
    pub fn new(data_dir: &Path, settings: &BoundarySettings) -> Self {
        Boundary {
            data_dir: data_dir.to_path_buf(),
            allowed_roots: settings.workspace_root_allow.clone(),
            gateway_allow: settings.gateway_allow.clone(),
            resolver: Arc::new(SystemResolver),
        }
    }

    /// The same boundary, looking hosts up with `resolver`.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Checks a gateway URL as a request gives it: empty, `local`, or `ws://`/`wss://` to
    /// a host that is allowed. A host name is looked up only at connect time; here it must
    /// match a name in the allow list unless the list has address blocks (which only its
    /// addresses can match).
    pub fn gateway_url(&self, raw: &str) -> Result<GatewayUrl, Refused> {
        let raw = raw.trim();
        match raw {
            "" => return Ok(GatewayUrl::Unset),
            "local" => return Ok(GatewayUrl::Local),
            _ => {}
        }
        let scheme_error = || Refused::new("url must be empty, `local`, or a ws:// or wss:// OpenClaw gateway URL");
        let url = url::Url::parse(raw).map_err(|_| scheme_error())?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(scheme_error());
        }
        // A query string or fragment is where a token would go otherwise (`?token=…`); the
        // gateway protocol takes none, so any is refused rather than stored in the clear.
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
            // The URL is shown and recorded as it is; credentials go in `token`, which is sealed.
            return Err(Refused::new("url must not carry credentials; give the gateway's token in `token`"));
        }
        match url.host() {
            None => Err(Refused::new("url must name the gateway's host")),
            Some(url::Host::Ipv4(ip)) => self.address_allowed(IpAddr::V4(ip), None).map(|_| GatewayUrl::Remote(url.clone())),
            Some(url::Host::Ipv6(ip)) => self.address_allowed(IpAddr::V6(ip), None).map(|_| GatewayUrl::Remote(url.clone())),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let named = self.names(&name);
                let has_blocks = self.gateway_allow.iter().any(|r| matches!(r, HostRule::Block(_)));
                if self.gateway_allow.is_empty() || named || has_blocks {
                    Ok(GatewayUrl::Remote(url.clone()))
                } else {
                    Err(not_listed())
                }
            }
        }
    }

    fn names(&self, host: &str) -> bool {
        self.gateway_allow.iter().any(|r| matches!(r, HostRule::Name(n) if n == host))
    }

    /// Whether the server may connect to `ip`, reached through host name `via` if any.
    fn address_allowed(&self, ip: IpAddr, via: Option<&str>) -> Result<(), Refused> {
        if let Some(why) = blocked(ip) {
            return Err(Refused::new(format!("the gateway's address {} is {why}", unmapped(ip))));
        }
        let listed = self.gateway_allow.is_empty()
            || via.is_some_and(|name| self.names(name))
            || self.gateway_allow.iter().any(|r| matches!(r, HostRule::Block(b) if b.contains(ip)));
        if listed {
            Ok(())
        } else {
            Err(not_listed())
        }
    }

    /// The addresses a gateway URL's host resolves to, every one of them allowed.
    pub async fn destination(&self, raw: &str) -> Result<Vec<SocketAddr>, Refused> {
        let GatewayUrl::Remote(url) = self.gateway_url(raw)? else {
            return Err(Refused::new("the gateway has no ws:// or wss:// URL"));
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let addresses = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let found = self
                    .resolver
                    .resolve(&name, port)
                    .await
                    .map_err(|e| Refused::new(format!("cannot resolve the gateway's host: {}", io_reason(&e))))?;
                if found.is_empty() {
                    return Err(Refused::new("the gateway's host has no address"));
                }
                for address in &found {
                    self.address_allowed(address.ip(), Some(&name))?;
                }
                found
            }
            None => return Err(Refused::new("url must name the gateway's host")),
        };
        Ok(addresses)
    }

    /// Opens a TCP connection to a gateway URL's host, to one of the addresses
    /// [`Boundary::destination`] checked (never to a fresh lookup).
    pub async fn connect(&self, raw: &str) -> Result<TcpStream, HostError> {
        let addresses = self.destination(raw).await?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(HostError::Io(last))
    }

    // ---- paths ----------------------------------------------------------------------------

    /// Where a workspace root of org `org` lies, checked lexically: no `..`; absolute only
    /// inside an allowed root. A relative root lies in the org's own directory under the
    /// data dir's workspaces directory, and nothing it names may leave that directory:
    /// not into the host, and not into another org's.
    fn locate(&self, org: &str, root: &str) -> Result<Located, Refused> {
        let root = root.trim();
        if root.is_empty() {
            return Err(Refused::new("workspace_root must not be empty"));
        }
        if root.chars().any(char::is_control) {
            return Err(Refused::new("workspace_root must be a directory name"));
        }
        let path = Path::new(root);
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(Refused::new("workspace_root must not contain '..'"));
        }
        if path.is_absolute() {
            let normal: PathBuf = path.components().collect();
            return self
                .allowed_roots
                .iter()
                .find_map(|allowed| {
                    normal.strip_prefix(allowed).ok().map(|rest| Located {
                        base: allowed.clone(),
                        relative: rest.to_path_buf(),
                        within: None,
                    })
                })
                .ok_or_else(|| {
                    Refused::new(
                        "workspace_root must be a relative name (inside this server's workspaces directory); \
                         an absolute path is refused unless it lies inside a root the operator allowed",
                    )
                });
        }
        let relative: PathBuf = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        if relative.as_os_str().is_empty() {
            // `.` (or `./`) names the workspaces directory itself, which every gateway shares.
            return Err(Refused::new("workspace_root must name a directory inside the workspaces directory"));
        }
        let mut org_dir = Path::new(org).components();
        if !matches!((org_dir.next(), org_dir.next()), (Some(Component::Normal(_)), None)) {
            return Err(Refused::new("an organization id is a single name"));
        }
        let workspaces = self.data_dir.join(WORKSPACES_DIR);
        Ok(Located {
            base: workspaces.join(org),
            relative,
            within: Some(workspaces),
        })
    }

    /// Checks the `workspace_root` of a `local` gateway of org `org` as a request gives it:
    /// a relative name without `..` (or a path inside an allowed root) that does not lead
    /// outside through a symlink that exists now. Touches nothing; a few metadata lookups.
    pub fn check_workspace_root(&self, org: &str, root: &str) -> Result<(), Refused> {
        let located = self.locate(org, root)?;
        let canonical = |dir: &Path| match std::fs::canonicalize(dir) {
            Ok(dir) => Ok(Some(dir)),
            // Nothing exists below a directory that does not exist: no link to follow.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) => Err(escapes()),
        };
        if let Some(within) = &located.within {
            match canonical(within)? {
                Some(within) => stays_inside(&within, &within.join(located.base.file_name().unwrap_or_default()))?,
                None => return Ok(()),
            }
        }
        match canonical(&located.base)? {
            Some(base) => stays_inside(&base, &base.join(&located.relative)),
            None => Ok(()),
        }
    }

    /// Makes (if needed) and returns the directory `<workspace_root>/<leaf>` of a `local`
    /// gateway of org `org`, checking the root again now and the directory once made, so that a
    /// symlink that appeared since the request cannot lead the write elsewhere. The path
    /// returned is canonical: write there, not through the links it was reached by.
    pub fn workspace_dir(&self, org: &str, root: &str, leaf: &str) -> Result<PathBuf, HostError> {
        let mut leaf_parts = Path::new(leaf).components();
        if !matches!((leaf_parts.next(), leaf_parts.next()), (Some(Component::Normal(_)), None)) {
            return Err(Refused::new("a workspace directory is a single name").into());
        }
        let located = self.locate(org, root)?;
        std::fs::create_dir_all(&located.base)?;
        let base = std::fs::canonicalize(&located.base)?;
        if let Some(within) = &located.within {
            if !base.starts_with(std::fs::canonicalize(within)?) {
                return Err(escapes().into());
            }
        }
        let target = base.join(&located.relative).join(leaf);
        stays_inside(&base, &target)?;
        std::fs::create_dir_all(&target)?;
        let made = std::fs::canonicalize(&target)?;
        if made.starts_with(&base) {
            Ok(made)
        } else {
            Err(escapes().into())
        }
    }
}

/// Where a workspace root lies: `relative` below `base`, which (for an org's own
/// directory) must itself lie inside `within`.
struct Located {
    base: PathBuf,
    relative: PathBuf,
    within: Option<PathBuf>,
}

fn not_listed() -> Refused {
    Refused::new("the gateway's host is not in this server's gateway allow list")
}

fn escapes() -> Refused {
    Refused::new("workspace_root leads outside the directories this server may write to")
}

/// Whether `target` (below canonical `base`) stays inside `base`: its deepest existing
/// ancestor, links resolved, must. What does not exist yet is plain names below it.
fn stays_inside(base: &Path, target: &Path) -> Result<(), Refused> {
    let mut probe = target.to_path_buf();
    while std::fs::symlink_metadata(&probe).is_err() {
        if !probe.pop() || !probe.starts_with(base) {
            return Err(escapes());
        }
    }
    // A dangling link cannot be resolved: where it leads is unknown, so it is refused.
    match std::fs::canonicalize(&probe) {
        Ok(real) if real.starts_with(base) => Ok(()),
        _ => Err(escapes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(roots: &[&Path], allow: &[&str]) -> BoundarySettings {
        BoundarySettings {
            workspace_root_allow: roots.iter().map(|r| allowed_root(r.to_str().unwrap()).unwrap()).collect(),
            gateway_allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    /// The org whose workspaces the tests make.
    const ORG: &str = "0190f1e2-0000-7000-8000-000000000001";

    /// A data dir and a directory outside it, both temporary.
    struct Host {
        data: tempfile::TempDir,
        outside: tempfile::TempDir,
    }

    impl Host {
        fn new() -> Host {
            let host = Host {
                data: tempfile::tempdir().unwrap(),
                outside: tempfile::tempdir().unwrap(),
            };
            std::fs::create_dir_all(host.workspaces()).unwrap();
            host
        }

        /// The org's own workspaces directory.
        fn workspaces(&self) -> PathBuf {
            self.data.path().join(WORKSPACES_DIR).join(ORG)
        }

        fn outside_entries(&self) -> usize {
            std::fs::read_dir(self.outside.path()).unwrap().count()
        }
    }

    #[test]
    fn workspace_roots_are_relative_names_under_the_data_dir_or_inside_an_allowed_root() {
        let host = Host::new();
        let allowed = host.outside.path().join("allowed");
        let boundary = Boundary::new(host.data.path(), &settings(&[&allowed], &[]));
        // A link inside that leads outside, one that stays inside, and a dangling one.
        std::os::unix::fs::symlink(host.outside.path(), host.workspaces().join("escape")).unwrap();
        std::fs::create_dir_all(host.workspaces().join("team")).unwrap();
        std::os::unix::fs::symlink(host.workspaces().join("team"), host.workspaces().join("alias")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/elsewhere", host.workspaces().join("dangling")).unwrap();
        let allowed_text = allowed.to_str().unwrap().to_string();
        let table: Vec<(String, Result<(), &str>)> = vec![
            ("claw".into(), Ok(())),
            ("teams/claw".into(), Ok(())),
            ("./claw".into(), Ok(())),
            ("alias/claw".into(), Ok(())),
            ("/srv/openclaw".into(), Err("absolute")),
            ("/".into(), Err("absolute")),
            (host.workspaces().join("claw").to_str().unwrap().into(), Err("absolute")),
            ("..".into(), Err("'..'")),
            ("../escape".into(), Err("'..'")),
            ("claw/../../escape".into(), Err("'..'")),
            (format!("{allowed_text}/../x"), Err("'..'")),
            ("escape".into(), Err("leads outside")),
            ("escape/deeper/still".into(), Err("leads outside")),
            ("dangling/x".into(), Err("leads outside")),
            ("".into(), Err("empty")),
            ("nul\0byte".into(), Err("directory name")),
            ("new\nline".into(), Err("directory name")),
            (allowed_text.clone(), Ok(())),
            (format!("{allowed_text}/team"), Ok(())),
            (format!("{allowed_text}x"), Err("absolute")),
        ];
        for (root, expected) in table {
            let got = boundary.check_workspace_root(ORG, &root);
            match (expected, &got) {
                (Ok(()), Ok(())) => {}
                (Err(part), Err(refused)) => {
                    assert!(refused.to_string().contains(part), "{root:?}: {refused}");
                    let message = refused.to_string();
                    for path in [host.data.path(), host.outside.path()] {
                        assert!(!message.contains(path.to_str().unwrap()), "{root:?}: {message}");
                    }
                }
                _ => panic!("{root:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_write_time_check_follows_links_made_after_the_request_and_creates_nothing_outside() {
        let host = Host::new();
        let boundary = Boundary::new(host.data.path(), &BoundarySettings::default());
        // Allowed when asked...
        boundary.check_workspace_root(ORG, "later").unwrap();
        let made = boundary.workspace_dir(ORG, "later", "workspace-mc-1").unwrap();
        assert_eq!(made, host.workspaces().canonicalize().unwrap().join("later/workspace-mc-1"));
        // ...then the root becomes a link outside: the write is refused, nothing is made there.
        std::fs::remove_dir_all(host.workspaces().join("later")).unwrap();
        std::os::unix::fs::symlink(host.outside.path(), host.workspaces().join("later")).unwrap();
        let refused = boundary.workspace_dir(ORG, "later", "workspace-mc-2").unwrap_err();
        assert!(refused.to_string().contains("leads outside"), "{refused}");
        // The agent's own directory turned into a link is refused too.
        let own = host.workspaces().join("ok");
        std::fs::create_dir_all(&own).unwrap();
        std::os::unix::fs::symlink(host.outside.path(), own.join("workspace-mc-3")).unwrap();
        assert!(boundary.workspace_dir(ORG, "ok", "workspace-mc-3").is_err());
        assert!(boundary.workspace_dir(ORG, "ok", "../x").is_err());
        assert!(boundary.workspace_dir(ORG, "/etc", "workspace-mc-4").is_err());
        assert_eq!(host.outside_entries(), 0, "nothing was created outside the data dir");
        // The data dir's workspaces directory is made when it is missing.
        let fresh = tempfile::tempdir().unwrap();
        let boundary = Boundary::new(fresh.path(), &BoundarySettings::default());
        assert!(boundary
            .workspace_dir(ORG, "a/b", "workspace-x")
            .unwrap()
            .ends_with(format!("workspaces/{ORG}/a/b/workspace-x")));
    }

    #[test]
    fn two_orgs_naming_the_same_root_get_directories_of_their_own() {
        let host = Host::new();
        let boundary = Boundary::new(host.data.path(), &BoundarySettings::default());
        let other = "0190f1e2-0000-7000-8000-000000000002";
        let mine = boundary.workspace_dir(ORG, "team", "workspace-a").unwrap();
        let theirs = boundary.workspace_dir(other, "team", "workspace-a").unwrap();
        assert_ne!(mine, theirs);
        assert!(mine.starts_with(host.workspaces().canonicalize().unwrap()));
        for org in ["", "..", "a/b", "/"] {
            assert!(boundary.check_workspace_root(org, "team").is_err(), "{org:?}");
        }
        // A link in one org's tree into another's leads outside the org: refused when a
        // request names it and when a worker would write through it.
        let theirs_root = host.data.path().join(WORKSPACES_DIR).join(other).join("team");
        std::os::unix::fs::symlink(&theirs_root, host.workspaces().join("peek")).unwrap();
        std::os::unix::fs::symlink(&theirs_root, mine.join("inner")).unwrap();
        for root in ["peek", "peek/deeper", "team/workspace-a/inner"] {
            let refused = boundary.check_workspace_root(ORG, root).unwrap_err();
            assert!(refused.to_string().contains("leads outside"), "{root}: {refused}");
            assert!(boundary.workspace_dir(ORG, root, "workspace-z").is_err(), "{root}");
        }
        assert_eq!(
            std::fs::read_dir(&theirs_root).unwrap().count(),
            1,
            "only their own agent's directory"
        );
        // An org's directory turned into a link elsewhere is refused at write time.
        std::fs::remove_dir_all(host.data.path().join(WORKSPACES_DIR).join(other)).unwrap();
        std::os::unix::fs::symlink(host.outside.path(), host.data.path().join(WORKSPACES_DIR).join(other)).unwrap();
        assert!(boundary.workspace_dir(other, "team", "workspace-c").is_err());
        assert_eq!(host.outside_entries(), 0);
    }

    #[test]
    fn an_allowed_root_no_longer_allowed_is_refused_at_write_time() {
        let host = Host::new();
        let root = host.outside.path().join("claws");
        let root_text = root.to_str().unwrap();
        let allowing = Boundary::new(host.data.path(), &settings(&[host.outside.path()], &[]));
        assert!(allowing
            .workspace_dir(ORG, root_text, "workspace-a")
            .unwrap()
            .starts_with(host.outside.path().canonicalize().unwrap()));
        let strict = Boundary::new(host.data.path(), &BoundarySettings::default());
        let refused = strict.workspace_dir(ORG, root_text, "workspace-b").unwrap_err();
        assert!(!refused.to_string().contains(root_text), "{refused}");
        assert!(!root.join("workspace-b").exists());
    }

    #[test]
    fn gateway_urls_are_websockets_to_hosts_outside_link_local_and_metadata_ranges() {
        let open = Boundary::new(Path::new("/data"), &BoundarySettings::default());
        let listed = Boundary::new(Path::new("/data"), &settings(&[], &["10.0.0.0/8", "gw.example.com", "[fd12::/16]"]));
        let names_only = Boundary::new(Path::new("/data"), &settings(&[], &["gw.example.com"]));
        let ok = |b: &Boundary, url: &str| assert!(b.gateway_url(url).is_ok(), "{url}: {:?}", b.gateway_url(url));
        let refused = |b: &Boundary, url: &str, part: &str| match b.gateway_url(url) {
            Err(r) => assert!(r.to_string().contains(part), "{url}: {r}"),
            Ok(u) => panic!("{url} was allowed: {u:?}"),
        };
        assert_eq!(open.gateway_url(" ").unwrap(), GatewayUrl::Unset);
        assert_eq!(open.gateway_url("local").unwrap(), GatewayUrl::Local);
        for url in [
            "ws://127.0.0.1:18789",
            "wss://gw.example.com/",
            "ws://localhost:1",
            "ws://[::1]:9",
            "ws://10.1.2.3/",
        ] {
            ok(&open, url);
        }
        let metadata = "link-local or cloud metadata";
        for url in [
            "ws://169.254.169.254/",
            "wss://169.254.0.1:443/",
            "ws://169.254.169.254./",
            "ws://2852039166/",
            "ws://0xa9fea9fe/",
            "ws://[fe80::1]/",
            "ws://[febf::1]/",
            "ws://[fd00:ec2::254]/",
            "ws://[::ffff:169.254.169.254]/",
            "ws://[::169.254.169.254]/",
            "ws://[64:ff9b::a9fe:a9fe]/",
            "ws://[64:ff9b:1::a9fe:a9fe]/",
            "ws://[64:ff9b:1:ffff:ffff:ffff:a9fe:a9fe]/",
            "ws://[::ffff:0:a9fe:a9fe]/",
            "ws://100.100.100.200/",
            "ws://192.0.0.192/",
        ] {
            refused(&open, url, metadata);
            refused(&listed, url, metadata);
        }
        for url in ["ws://0.0.0.0/", "ws://[::]/", "ws://224.0.0.1/", "ws://255.255.255.255/"] {
            refused(&open, url, "not a host address");
        }
        for url in [
            "http://gw.example.com/",
            "https://x",
            "file:///etc/passwd",
            "ftp://x",
            "gw.example.com",
            "ws://",
        ] {
            refused(&open, url, "ws://");
        }
        ok(&open, "ws://[fd00:ec2::253]/");
        ok(&listed, "ws://10.200.0.1:18789/");
        ok(&listed, "wss://GW.example.com./");
        ok(&listed, "ws://[fd12::1]/");
        ok(&listed, "ws://other.example.com/"); // address blocks are checked at connect time
        refused(&listed, "ws://127.0.0.1:18789/", "allow list");
        refused(&listed, "ws://[::1]/", "allow list");
        refused(&listed, "ws://11.0.0.1/", "allow list");
        refused(&names_only, "ws://other.example.com/", "allow list");
        ok(&names_only, "ws://gw.example.com/");
    }

    /// Answers from a fixed table, like a DNS server that says what a test wants.
    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    #[async_trait]
    impl Resolve for Table {
        async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
            self.0
                .get(host)
                .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
        }
    }

    fn resolver() -> Arc<Table> {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        Arc::new(Table(HashMap::from([
            ("gw.example.com", vec![ip("10.1.2.3")]),
            ("metadata.example.com", vec![ip("169.254.169.254")]),
            ("mixed.example.com", vec![ip("10.1.2.4"), ip("fe80::1")]),
            ("mapped.example.com", vec![ip("::ffff:169.254.169.254")]),
            ("public.example.com", vec![ip("203.0.113.7")]),
            ("loop.example.com", vec![ip("127.0.0.1")]),
        ])))
    }

    #[tokio::test]
    async fn resolved_addresses_are_checked_at_connect_time() {
        let open = Boundary::new(Path::new("/data"), &BoundarySettings::default()).with_resolver(resolver());
        let cidr = Boundary::new(Path::new("/data"), &settings(&[], &["10.0.0.0/8"])).with_resolver(resolver());
        let named = Boundary::new(Path::new("/data"), &settings(&[], &["loop.example.com"])).with_resolver(resolver());
        let port = |v: Result<Vec<SocketAddr>, Refused>| v.map(|a| a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            port(open.destination("ws://gw.example.com:18789/").await),
            Ok(vec!["10.1.2.3:18789".into()])
        );
        assert_eq!(
            port(open.destination("wss://public.example.com").await),
            Ok(vec!["203.0.113.7:443".into()])
        );
        for host in ["metadata", "mixed", "mapped"] {
            let refused = open.destination(&format!("ws://{host}.example.com/")).await.unwrap_err();
            assert!(refused.to_string().contains("link-local or cloud metadata"), "{host}: {refused}");
        }
        assert!(open
            .destination("ws://missing.example.com/")
            .await
            .unwrap_err()
            .to_string()
            .contains("cannot resolve"));
        assert!(open.destination("local").await.is_err());
        assert!(open.destination("ws://169.254.169.254/").await.is_err());
        // An allow list of blocks admits a name only by what it resolves to.
        assert!(cidr.destination("ws://gw.example.com/").await.is_ok());
        assert!(cidr
            .destination("ws://public.example.com/")
            .await
            .unwrap_err()
            .to_string()
            .contains("allow list"));
        assert!(cidr.destination("ws://loop.example.com/").await.is_err());
        // A listed name is allowed whatever it resolves to, except a blocked address.
        assert!(named.destination("ws://loop.example.com/").await.is_ok());
        assert!(named.destination("ws://gw.example.com/").await.is_err());
        let named_metadata = Boundary::new(Path::new("/data"), &settings(&[], &["metadata.example.com"])).with_resolver(resolver());
        assert!(named_metadata.destination("ws://metadata.example.com/").await.is_err());
    }

    #[test]
    fn allow_list_entries_parse_as_names_addresses_or_blocks() {
        assert_eq!("GW.Example.com.".parse(), Ok(HostRule::Name("gw.example.com".into())));
        let block = |s: &str| match s.parse::<HostRule>() {
            Ok(HostRule::Block(b)) => b,
            other => panic!("{s}: {other:?}"),
        };
        assert!(block("10.0.0.0/8").contains("10.255.0.1".parse().unwrap()));
        assert!(block("10.0.0.0/8").contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!block("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(block("192.168.1.7").contains("192.168.1.7".parse().unwrap()));
        assert!(!block("192.168.1.7").contains("192.168.1.8".parse().unwrap()));
        assert!(block("fd12::/16").contains("fd12:1::1".parse().unwrap()));
        assert!(block("[::1]").contains("::1".parse().unwrap()));
        assert!(block("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/x",
            "bad host",
            "",
            "a..b",
            "http://x",
        ] {
            assert!(bad.parse::<HostRule>().is_err(), "{bad}");
        }
        assert!(allowed_root("relative/dir").is_err());
        assert!(allowed_root("/srv/../etc").is_err());
        assert_eq!(allowed_root("/srv//openclaw/").unwrap(), PathBuf::from("/srv/openclaw"));
    }

    #[test]
    fn io_failures_and_tool_output_are_described_without_paths() {
        let missing = std::fs::read("/nonexistent/secret/place").unwrap_err();
        assert_eq!(io_reason(&missing), "no such file or directory");
        assert_eq!(
            io_reason(&io::Error::new(io::ErrorKind::PermissionDenied, "/etc/shadow: no")),
            "permission denied"
        );
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("sandboxes").join("abc");
        let text = format!("Config invalid at {}/.openclaw/openclaw.json", sandbox.display());
        assert_eq!(redact_path(&text, &sandbox, "~"), "Config invalid at ~/.openclaw/openclaw.json");
        assert_eq!(
            sandbox_url(Some("file:///srv/data/sandboxes/abc"), "abc").as_deref(),
            Some("local://abc")
        );
        assert_eq!(
            sandbox_url(Some("https://sb.example.com"), "abc").as_deref(),
            Some("https://sb.example.com")
        );
        assert_eq!(sandbox_url(None, "abc"), None);
    }
}
