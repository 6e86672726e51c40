//! Device/image profiles with Fleeti's config rules: convenience fields (`packages`,
//! `kernel`, `openclaw_microvm_enabled`), config validation with Fleeti's messages, kernel
//! selection, and the revision hash over Go's canonical JSON.

use std::collections::HashSet;

use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine;
use chrono::{DateTime, Utc};
use fleetledger_events::go_json;
use fleetledger_events::profile::{ConfigChangeMode, ProfileConfigReplaced, ProfileCreated, ProfileDeleted, ProfileEvent};
use fleetledger_projections::profile::Profile;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::DomainError;

pub type Config = Map<String, Value>;

const INVALID_JSON: &str = "Profile config must be valid JSON";
const MAX_PATCH_COUNT: usize = 32;
const MAX_PATCH_BYTES: usize = 512 * 1024;
const MAX_PATCH_TOTAL_BYTES: usize = 4 * 1024 * 1024;
const OPENCLAW_KEY: &str = "openclaw_microvm_enabled";
const WEBSITE_CATEGORIES: [&str; 4] = ["fakenews", "gambling", "porn", "social"];

/// Kernels offered when none are configured: the attributes pinned nixpkgs carries.
pub const DEFAULT_AVAILABLE_KERNELS: &str = "linux_5_4,linux_5_10,linux_5_15,linux_6_1,linux_6_6,linux_6_12,\
linux_6_15,linux_6_16,linux_6_17,linux_6_18,linux_6_19,linux_5_10_hardened,linux_5_15_hardened,linux_6_1_hardened,\
linux_6_6_hardened,linux_6_12_hardened";

/// Go's `StdEncoding`: padded, and lenient about trailing bits.
const STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::Invalid(message.into())
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct KernelPatch {
    pub name: String,
    pub sha256: String,
    pub content_base64: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceOverride {
    pub enabled: bool,
    pub url: String,
    pub git_ref: String,
    pub rev: String,
    pub patches: Vec<KernelPatch>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelConfig {
    pub attr: String,
    pub source_override: SourceOverride,
}

impl KernelConfig {
    /// Trims everything and drops the override's details when it is disabled.
    pub fn normalized(mut self) -> Self {
        self.attr = self.attr.trim().to_string();
        let so = &mut self.source_override;
        so.url = so.url.trim().to_string();
        so.git_ref = so.git_ref.trim().to_string();
        so.rev = so.rev.trim().to_string();
        for patch in &mut so.patches {
            patch.name = patch.name.trim().to_string();
            patch.sha256 = patch.sha256.trim().to_lowercase();
            patch.content_base64 = patch.content_base64.trim().to_string();
        }
        if !so.enabled {
            *so = SourceOverride::default();
        }
        self
    }
}

fn optional_str(values: &Config, key: &str) -> Result<String, DomainError> {
    match values.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(_) => Err(invalid(INVALID_JSON)),
    }
}

fn optional_bool(values: &Config, key: &str) -> Result<bool, DomainError> {
    match values.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(INVALID_JSON)),
    }
}

fn optional_object<'a>(values: &'a Config, key: &str) -> Result<Option<&'a Config>, DomainError> {
    match values.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(invalid(INVALID_JSON)),
    }
}

/// A whole number held as a float64, as Go reads it.
fn int_value(value: &Value) -> Result<i64, DomainError> {
    let f = value.as_f64().ok_or_else(|| invalid(INVALID_JSON))?;
    if f.fract() != 0.0 || !(-9.2e18..=9.2e18).contains(&f) {
        return Err(invalid(INVALID_JSON));
    }
    Ok(f as i64)
}

fn optional_int(values: &Config, key: &str) -> Result<i64, DomainError> {
    match values.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => int_value(v),
    }
}

fn optional_list<'a>(values: &'a Config, key: &str) -> Result<&'a [Value], DomainError> {
    match values.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(invalid(INVALID_JSON)),
    }
}

fn optional_string_list(values: &Config, key: &str) -> Result<Vec<String>, DomainError> {
    optional_list(values, key)?
        .iter()
        .map(|v| v.as_str().map(|s| s.trim().to_string()).ok_or_else(|| invalid(INVALID_JSON)))
        .collect()
}

/// Trims, drops blanks and duplicates, keeps first-seen order. Duplicates are found with
/// a set, so a body's worth of names costs one pass, not a scan of the output per name.
pub fn normalize_packages(packages: &[String]) -> Vec<String> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(packages.len());
    let mut out: Vec<String> = Vec::with_capacity(packages.len());
    for p in packages {
        let p = p.trim();
        if !p.is_empty() && seen.insert(p) {
            out.push(p.to_string());
        }
    }
    out
}

/// The config's package list, normalized; a non-list or non-string item is invalid.
pub fn packages_from_config(config: &Config) -> Result<Vec<String>, DomainError> {
    let raw: Vec<String> = optional_list(config, "packages")?
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(|| invalid(INVALID_JSON)))
        .collect::<Result<_, _>>()?;
    Ok(normalize_packages(&raw))
}

/// The config's kernel section, normalized.
pub fn kernel_from_config(config: &Config) -> Result<KernelConfig, DomainError> {
    let Some(kernel) = optional_object(config, "kernel")? else {
        return Ok(KernelConfig::default());
    };
    let attr = optional_str(kernel, "attr")?;
    let Some(so) = optional_object(kernel, "source_override")? else {
        return Ok(KernelConfig {
            attr,
            ..Default::default()
        }
        .normalized());
    };
    let mut patches = Vec::new();
    for raw in optional_list(so, "patches")? {
        let patch = raw.as_object().ok_or_else(|| invalid(INVALID_JSON))?;
        patches.push(KernelPatch {
            name: optional_str(patch, "name")?,
            sha256: optional_str(patch, "sha256")?,
            content_base64: optional_str(patch, "content_base64")?,
        });
    }
    Ok(KernelConfig {
        attr,
        source_override: SourceOverride {
            enabled: optional_bool(so, "enabled")?,
            url: optional_str(so, "url")?,
            git_ref: optional_str(so, "ref")?,
            rev: optional_str(so, "rev")?,
            patches,
        },
    }
    .normalized())
}

pub fn openclaw_from_config(config: &Config) -> Result<bool, DomainError> {
    optional_bool(config, OPENCLAW_KEY)
}

/// Writes a kernel section in Fleeti's stored shape (or removes it when empty).
pub fn set_kernel(config: &mut Config, kernel: KernelConfig) {
    let kernel = kernel.normalized();
    let so = &kernel.source_override;
    if kernel.attr.is_empty() && !so.enabled {
        config.remove("kernel");
        return;
    }
    let mut section = Map::new();
    section.insert("attr".into(), Value::String(kernel.attr.clone()));
    if so.enabled {
        let mut over = Map::new();
        over.insert("enabled".into(), Value::Bool(true));
        over.insert("url".into(), Value::String(so.url.clone()));
        over.insert("rev".into(), Value::String(so.rev.clone()));
        if !so.git_ref.is_empty() {
            over.insert("ref".into(), Value::String(so.git_ref.clone()));
        }
        if !so.patches.is_empty() {
            over.insert("patches".into(), serde_json::to_value(&so.patches).unwrap_or(Value::Null));
        }
        section.insert("source_override".into(), Value::Object(over));
    }
    config.insert("kernel".into(), Value::Object(section));
}

fn patch_name_ok(name: &str) -> bool {
    let name = name.trim();
    !name.is_empty()
        && name.len() <= 128
        && !name.contains('/')
        && !name.contains('\\')
        && name != "."
        && name != ".."
        && name.chars().all(|c| (' '..='~').contains(&c))
}

fn kernel_attr_ok(attr: &str) -> bool {
    // ^linux_[0-9]+_[0-9]+(_hardened)?$
    let Some(rest) = attr.strip_prefix("linux_") else {
        return false;
    };
    let rest = rest.strip_suffix("_hardened").unwrap_or(rest);
    let mut parts = rest.split('_');
    let digits = |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

/// Fleeti's kernel rules: a valid, available attribute; an enabled source override needs
/// an attribute, an absolute http(s) URL and a revision; patches are bounded and checked.
pub fn validate_kernel(kernel: &KernelConfig, available: &[String]) -> Result<(), DomainError> {
    if !kernel.attr.is_empty() {
        if !kernel_attr_ok(&kernel.attr) {
            return Err(invalid("selected kernel is invalid"));
        }
        if !available.is_empty() && !available.iter().any(|a| a == &kernel.attr) {
            return Err(invalid("selected kernel is not available in pinned nixpkgs"));
        }
    }
    let so = &kernel.source_override;
    if !so.enabled {
        if !so.patches.is_empty() {
            return Err(invalid("kernel patches require source override to be enabled"));
        }
        return Ok(());
    }
    if kernel.attr.is_empty() {
        return Err(invalid("kernel source override requires selecting a kernel version"));
    }
    if so.url.is_empty() {
        return Err(invalid("kernel source override URL is required"));
    }
    if so.rev.is_empty() {
        return Err(invalid("kernel source override revision is required"));
    }
    let parsed = url::Url::parse(&so.url)
        .ok()
        .filter(|u| u.host_str().is_some_and(|h| !h.is_empty()));
    let Some(parsed) = parsed else {
        return Err(invalid("kernel source override URL must be a valid absolute URL"));
    };
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(invalid("kernel source override URL must use http or https"));
    }
    if so.patches.len() > MAX_PATCH_COUNT {
        return Err(invalid("kernel patch count exceeds limit"));
    }
    let mut total = 0;
    for patch in &so.patches {
        if !patch_name_ok(&patch.name) {
            return Err(invalid("kernel patch filename is invalid"));
        }
        if patch.sha256.len() != 64 || !patch.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(invalid("kernel patch checksum is invalid"));
        }
        // Go's decoder skips line breaks inside base64.
        let compact: String = patch.content_base64.chars().filter(|c| *c != '\n' && *c != '\r').collect();
        let content = STD_BASE64.decode(compact).map_err(|_| invalid("kernel patch payload is invalid"))?;
        if content.is_empty() {
            return Err(invalid("kernel patch payload cannot be empty"));
        }
        if content.len() > MAX_PATCH_BYTES {
            return Err(invalid("kernel patch file is too large"));
        }
        if hex::encode(Sha256::digest(&content)) != patch.sha256 {
            return Err(invalid("kernel patch checksum mismatch"));
        }
        total += content.len();
        if total > MAX_PATCH_TOTAL_BYTES {
            return Err(invalid("kernel patch payload is too large"));
        }
    }
    Ok(())
}

/// Go's `%q` for the strings that reach a message.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn int_list(values: &Config, key: &str) -> Result<Vec<i64>, DomainError> {
    optional_list(values, key)?.iter().map(int_value).collect()
}

/// The `security` section: types, then Fleeti's range and policy rules.
pub fn validate_security(config: &Config) -> Result<(), DomainError> {
    let Some(security) = optional_object(config, "security")? else {
        return Ok(());
    };
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    if let Some(firewall) = optional_object(security, "firewall")? {
        optional_bool(firewall, "enable")?;
        tcp = int_list(firewall, "allowed_tcp_ports")?;
        udp = int_list(firewall, "allowed_udp_ports")?;
    }
    let modules = optional_string_list(security, "blacklisted_kernel_modules")?;
    if let Some(apparmor) = optional_object(security, "apparmor")? {
        optional_bool(apparmor, "enable")?;
    }
    let mut pwquality = None;
    let mut expiry = None;
    if let Some(policy) = optional_object(security, "password_policy")? {
        if let Some(q) = optional_object(policy, "pwquality")? {
            pwquality = Some((
                optional_bool(q, "enable")?,
                optional_int(q, "minimum_length")?,
                optional_int(q, "minimum_digits")?,
                optional_int(q, "minimum_upper")?,
                optional_int(q, "minimum_lower")?,
                optional_int(q, "minimum_other")?,
                optional_int(q, "retry_count")?,
            ));
        }
        if let Some(e) = optional_object(policy, "expiry")? {
            expiry = Some((
                optional_bool(e, "enable")?,
                optional_int(e, "maximum_days")?,
                optional_int(e, "warning_days")?,
            ));
        }
    }
    let mut categories = Vec::new();
    if let Some(blocking) = optional_object(security, "website_blocking")? {
        optional_bool(blocking, "enable")?;
        categories = optional_string_list(blocking, "block_categories")?;
    }

    if tcp.iter().any(|p| !(1..=65535).contains(p)) {
        return Err(invalid("firewall TCP ports must be between 1 and 65535"));
    }
    if udp.iter().any(|p| !(1..=65535).contains(p)) {
        return Err(invalid("firewall UDP ports must be between 1 and 65535"));
    }
    let module_ok = |m: &str| {
        let mut chars = m.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
    };
    if modules.iter().filter(|m| !m.is_empty()).any(|m| !module_ok(m)) {
        return Err(invalid(
            "blacklisted kernel module names may contain only letters, numbers, dots, dashes, underscores, and plus signs",
        ));
    }
    if let Some((true, length, digits, upper, lower, other, retry)) = pwquality {
        let checks = [
            (length < 1, "password minimum length must be at least 1"),
            (digits < 0, "password minimum digits cannot be negative"),
            (upper < 0, "password minimum uppercase characters cannot be negative"),
            (lower < 0, "password minimum lowercase characters cannot be negative"),
            (other < 0, "password minimum special characters cannot be negative"),
            (retry < 1, "password retry count must be at least 1"),
        ];
        if let Some((_, message)) = checks.iter().find(|(bad, _)| *bad) {
            return Err(invalid(*message));
        }
    }
    if let Some((true, max_days, warn_days)) = expiry {
        if max_days < 1 {
            return Err(invalid("password expiry maximum days must be at least 1"));
        }
        if warn_days < 0 {
            return Err(invalid("password expiry warning days cannot be negative"));
        }
        if warn_days > max_days {
            return Err(invalid("password expiry warning days cannot exceed maximum days"));
        }
    }
    if let Some(unknown) = categories
        .iter()
        .find(|c| !c.is_empty() && !WEBSITE_CATEGORIES.contains(&c.as_str()))
    {
        return Err(invalid(format!("website blocking category {} is not supported", go_quote(unknown))));
    }
    Ok(())
}

/// Every typed section of a config, in Fleeti's order.
pub fn validate_config(config: &Config) -> Result<(), DomainError> {
    packages_from_config(config)?;
    kernel_from_config(config)?;
    openclaw_from_config(config)?;
    validate_security(config)
}

/// `hex(sha256("<schema>\n<canonical config>\n<trimmed raw_nix>\n[]"))`; fleetledger
/// profiles have no foreign imports, whose canonical form is then `[]`.
pub fn config_hash(schema_version: i64, config: &Value, raw_nix: &str) -> String {
    let material = format!("{schema_version}\n{}\n{}\n[]", go_json::canonical_string(config), raw_nix.trim());
    hex::encode(Sha256::digest(material.as_bytes()))
}

fn schema_version(requested: Option<i64>, current: i64) -> Result<i64, DomainError> {
    let version = match requested {
        None | Some(0) => current,
        Some(v) => v,
    };
    if version <= 0 {
        return Err(invalid("Config schema version must be a positive number"));
    }
    Ok(version)
}

/// The convenience fields a write may carry besides `config`.
#[derive(Clone, Debug, Default)]
pub struct ConvenienceFields {
    pub packages: Option<Vec<String>>,
    pub kernel: Option<KernelConfig>,
    pub openclaw_microvm_enabled: Option<bool>,
}

impl ConvenienceFields {
    fn any(&self) -> bool {
        self.packages.is_some() || self.kernel.is_some() || self.openclaw_microvm_enabled.is_some()
    }

    /// Applied in Fleeti's order: packages, kernel, then the MicroVM flag.
    fn apply(&self, config: &mut Config) {
        if let Some(packages) = &self.packages {
            config.insert("packages".into(), Value::from(normalize_packages(packages)));
        }
        if let Some(kernel) = &self.kernel {
            set_kernel(config, kernel.clone());
        }
        match self.openclaw_microvm_enabled {
            Some(true) => {
                config.insert(OPENCLAW_KEY.into(), Value::Bool(true));
            }
            Some(false) => {
                config.remove(OPENCLAW_KEY);
            }
            None => {}
        }
    }
}

/// A PUT (`Replace`), PATCH (`Patch`) or restore of a profile's config.
#[derive(Clone, Debug)]
pub struct ChangeConfig {
    pub mode: ConfigChangeMode,
    /// Top-level fields the request carried, for the audit.
    pub fields: Vec<String>,
    /// For `Replace`/`Restore` the whole config; for `Patch` top-level keys to merge.
    /// `Some(None)` is an explicit `null`.
    pub config: Option<Option<Config>>,
    pub convenience: ConvenienceFields,
    pub raw_nix: Option<String>,
    pub config_schema_version: Option<i64>,
    pub restored_from_version: Option<i64>,
    pub reason: Option<String>,
    pub now: DateTime<Utc>,
}

pub fn change_config(state: Option<&Profile>, cmd: ChangeConfig, available_kernels: &[String]) -> Result<Vec<ProfileEvent>, DomainError> {
    let profile = state.filter(|p| p.deleted_at.is_none()).ok_or(DomainError::NotFound)?;
    let mut config = match (cmd.mode, &cmd.config) {
        (ConfigChangeMode::Patch, None) => profile.config.as_object().cloned().unwrap_or_default(),
        (ConfigChangeMode::Patch, Some(Some(patch))) => {
            let mut merged = profile.config.as_object().cloned().unwrap_or_default();
            for (k, v) in patch {
                merged.insert(k.clone(), v.clone());
            }
            merged
        }
        (_, Some(Some(config))) => config.clone(),
        (_, Some(None)) => return Err(invalid("Config must be a JSON object")),
        (_, None) => return Err(invalid("Config is required")),
    };
    cmd.convenience.apply(&mut config);
    if cmd.config.is_some() || cmd.convenience.any() {
        validate_config(&config)?;
    }
    validate_kernel(&kernel_from_config(&config)?, available_kernels)?;
    let raw_nix = cmd.raw_nix.as_deref().unwrap_or(&profile.raw_nix).trim().to_string();
    let schema = schema_version(cmd.config_schema_version, profile.config_schema_version)?;
    let config = go_json::canonicalize(&Value::Object(config));
    Ok(vec![ProfileEvent::ConfigReplaced(ProfileConfigReplaced {
        mode: cmd.mode,
        fields: cmd.fields,
        config_hash: config_hash(schema, &config, &raw_nix),
        config,
        config_schema_version: schema,
        raw_nix,
        restored_from_version: cmd.restored_from_version,
        reason: cmd.reason,
        replaced_at: cmd.now,
    })])
}

#[derive(Clone)]
pub struct CreateProfile {
    pub profile_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: String,
    /// Already checked to name fleets of the org.
    pub fleet_ids: Vec<String>,
    pub config: Option<Config>,
    pub convenience: ConvenienceFields,
    pub raw_nix: String,
    pub config_schema_version: Option<i64>,
    pub now: DateTime<Utc>,
}

pub fn create_profile(state: Option<&Profile>, cmd: CreateProfile, available_kernels: &[String]) -> Result<Vec<ProfileEvent>, DomainError> {
    if state.is_some() {
        return Err(DomainError::AlreadyExists("Profile already exists".into()));
    }
    let name = cmd.name.trim();
    if name.is_empty() {
        return Err(invalid("Name is required"));
    }
    let mut config = cmd.config.unwrap_or_default();
    cmd.convenience.apply(&mut config);
    validate_config(&config)?;
    validate_kernel(&kernel_from_config(&config)?, available_kernels)?;
    let schema = schema_version(cmd.config_schema_version, 1)?;
    let raw_nix = cmd.raw_nix.trim().to_string();
    let config = go_json::canonicalize(&Value::Object(config));
    Ok(vec![ProfileEvent::Created(ProfileCreated {
        profile_id: cmd.profile_id,
        org_id: cmd.org_id,
        name: name.to_string(),
        description: cmd.description.trim().to_string(),
        fleet_ids: normalize_packages(&cmd.fleet_ids),
        config_hash: config_hash(schema, &config, &raw_nix),
        config,
        config_schema_version: schema,
        raw_nix,
        created_at: cmd.now,
    })])
}

pub fn delete_profile(state: Option<&Profile>, now: DateTime<Utc>) -> Result<Vec<ProfileEvent>, DomainError> {
    state.filter(|p| p.deleted_at.is_none()).ok_or(DomainError::NotFound)?;
    Ok(vec![ProfileEvent::Deleted(ProfileDeleted { deleted_at: now })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::given;
    use fleetledger_projections::ReadModel;
    use serde_json::json;

    fn kernels() -> Vec<String> {
        DEFAULT_AVAILABLE_KERNELS.split(',').map(str::to_string).collect()
    }

    fn profile() -> Profile {
        let events = create_profile(
            None,
            CreateProfile {
                profile_id: Uuid::nil(),
                org_id: Uuid::nil(),
                name: "Production Base".into(),
                description: String::new(),
                fleet_ids: vec![],
                config: None,
                convenience: ConvenienceFields::default(),
                raw_nix: String::new(),
                config_schema_version: None,
                now: Utc::now(),
            },
            &kernels(),
        )
        .unwrap();
        events.iter().fold(None, Profile::evolve).unwrap()
    }

    fn put(body: Value) -> ChangeConfig {
        ChangeConfig {
            mode: ConfigChangeMode::Replace,
            fields: vec!["config".into()],
            config: Some(body["config"].as_object().cloned()),
            convenience: ConvenienceFields::default(),
            raw_nix: body["raw_nix"].as_str().map(str::to_string),
            config_schema_version: body["config_schema_version"].as_i64(),
            restored_from_version: None,
            reason: None,
            now: Utc::now(),
        }
    }

    fn spec_example() -> Value {
        json!({
            "config": {
                "packages": ["vim", "curl"],
                "kernel": {"attr": "linux_6_19", "source_override": {"enabled": true,
                    "url": "https://github.com/example/linux.git", "ref": "refs/heads/main",
                    "rev": "abcd1234abcd1234abcd1234abcd1234abcd1234"}},
                "openclaw_microvm_enabled": true,
                "custom_banner": "Production profile"
            },
            "raw_nix": "{ pkgs, ... }: { services.openssh.enable = true; }",
            "config_schema_version": 2
        })
    }

    #[test]
    fn the_spec_example_hashes_to_the_test_vector() {
        given(Some(profile()))
            .when(|p| change_config(p, put(spec_example()), &kernels()))
            .then(|events| {
                let ProfileEvent::ConfigReplaced(e) = &events[0] else {
                    panic!("expected a replacement")
                };
                assert_eq!(e.config_hash, "75e6463685961f8862ec3daa5a21bcb9e5b34c14679459a4c873aaf105d4cfcc");
                assert_eq!(e.config_schema_version, 2);
            });
    }

    #[test]
    fn kernel_rules_use_fleetis_messages() {
        let mut body = spec_example();
        body["config"]["kernel"]["attr"] = json!("linux_6");
        given(Some(profile()))
            .when(|p| change_config(p, put(body.clone()), &kernels()))
            .then_err(invalid("selected kernel is invalid"));
        body["config"]["kernel"]["attr"] = json!("linux_9_99");
        given(Some(profile()))
            .when(|p| change_config(p, put(body.clone()), &kernels()))
            .then_err(invalid("selected kernel is not available in pinned nixpkgs"));
        body["config"]["kernel"]["attr"] = json!("linux_6_19");
        body["config"]["kernel"]["source_override"]["url"] = json!("ftp://example.com/x");
        given(Some(profile()))
            .when(|p| change_config(p, put(body.clone()), &kernels()))
            .then_err(invalid("kernel source override URL must use http or https"));
    }

    #[test]
    fn a_patch_must_match_its_checksum() {
        let content = STD_BASE64.encode(b"diff --git a b\n");
        let mut body = spec_example();
        body["config"]["kernel"]["source_override"]["patches"] =
            json!([{"name": "fix.patch", "sha256": "0".repeat(64), "content_base64": content}]);
        given(Some(profile()))
            .when(|p| change_config(p, put(body.clone()), &kernels()))
            .then_err(invalid("kernel patch checksum mismatch"));
        body["config"]["kernel"]["source_override"]["patches"][0]["sha256"] = json!(hex::encode(Sha256::digest(b"diff --git a b\n")));
        given(Some(profile()))
            .when(|p| change_config(p, put(body.clone()), &kernels()))
            .then(|e| assert_eq!(e.len(), 1));
    }

    #[test]
    fn patches_are_bounded_in_total() {
        let content = vec![7u8; 500 * 1024];
        let patch = KernelPatch {
            name: "p".into(),
            sha256: hex::encode(Sha256::digest(&content)),
            content_base64: STD_BASE64.encode(&content),
        };
        let kernel = KernelConfig {
            attr: "linux_6_19".into(),
            source_override: SourceOverride {
                enabled: true,
                url: "https://x.org/l.git".into(),
                git_ref: String::new(),
                rev: "r".into(),
                patches: vec![patch; 9],
            },
        };
        assert_eq!(
            validate_kernel(&kernel, &kernels()),
            Err(invalid("kernel patch payload is too large"))
        );
    }

    #[test]
    fn wrong_types_are_invalid_json_and_security_is_checked() {
        let bad_packages = json!({"config": {"packages": "vim"}});
        given(Some(profile()))
            .when(|p| change_config(p, put(bad_packages), &kernels()))
            .then_err(invalid(INVALID_JSON));
        let bad_port = json!({"config": {"security": {"firewall": {"allowed_tcp_ports": [22, 70000]}}}});
        given(Some(profile()))
            .when(|p| change_config(p, put(bad_port), &kernels()))
            .then_err(invalid("firewall TCP ports must be between 1 and 65535"));
        let bad_category = json!({"config": {"security": {"website_blocking": {"block_categories": ["news"]}}}});
        given(Some(profile()))
            .when(|p| change_config(p, put(bad_category), &kernels()))
            .then_err(invalid("website blocking category \"news\" is not supported"));
    }

    #[test]
    fn convenience_fields_rewrite_the_config() {
        let mut cmd = put(json!({"config": {"kernel": {"attr": "linux_6_19"}, "openclaw_microvm_enabled": true}}));
        cmd.convenience = ConvenienceFields {
            packages: Some(vec![" vim ".into(), "".into(), "curl".into(), "vim".into()]),
            kernel: Some(KernelConfig::default()),
            openclaw_microvm_enabled: Some(false),
        };
        given(Some(profile())).when(|p| change_config(p, cmd, &kernels())).then(|events| {
            let ProfileEvent::ConfigReplaced(e) = &events[0] else { panic!() };
            assert_eq!(e.config, json!({"packages": ["vim", "curl"]}));
        });
    }

    #[test]
    fn negative_schema_versions_are_rejected_and_zero_keeps() {
        let mut cmd = put(json!({"config": {}}));
        cmd.config_schema_version = Some(-1);
        given(Some(profile()))
            .when(|p| change_config(p, cmd.clone(), &kernels()))
            .then_err(invalid("Config schema version must be a positive number"));
        cmd.config_schema_version = Some(0);
        given(Some(profile())).when(|p| change_config(p, cmd, &kernels())).then(|events| {
            let ProfileEvent::ConfigReplaced(e) = &events[0] else { panic!() };
            assert_eq!(e.config_schema_version, 1);
        });
    }
}
