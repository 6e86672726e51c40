//! Egress allow-list entries: a host name (FQDN), a `*.suffix` wildcard, an IP address, a
//! CIDR block without host bits, or `tcp://host:port`. A bare `*`, URLs and single-label
//! names are rejected: each would open far more than the author meant.

use std::net::IpAddr;

/// The normalized entry, or why it is not one.
pub fn normalize_target(raw: &str) -> Result<String, String> {
    let entry = raw.trim();
    if entry.is_empty() {
        return Err("an egress target must not be empty".into());
    }
    if entry == "*" {
        return Err("'*' would allow every destination; list the hosts instead".into());
    }
    if let Some(rest) = entry.strip_prefix("tcp://") {
        return tcp_target(rest).map(|t| format!("tcp://{t}"));
    }
    if entry.contains("://") {
        return Err(format!("'{entry}' is a URL; give the host name (or tcp://host:port)"));
    }
    if let Some((address, prefix)) = entry.split_once('/') {
        return cidr(address, prefix);
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if let Some(suffix) = entry.strip_prefix("*.") {
        return fqdn(suffix).map(|s| format!("*.{s}"));
    }
    fqdn(entry)
}

fn tcp_target(rest: &str) -> Result<String, String> {
    let invalid = || format!("'tcp://{rest}' must be tcp://host:port with a port from 1 to 65535");
    let (host, port) = match rest.strip_prefix('[') {
        // [v6]:port
        Some(v6) => {
            let (address, port) = v6.split_once("]:").ok_or_else(invalid)?;
            let ip: std::net::Ipv6Addr = address.parse().map_err(|_| invalid())?;
            (format!("[{ip}]"), port)
        }
        None => {
            let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
            let host = match host.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) => ip.to_string(),
                Ok(IpAddr::V6(_)) => return Err(invalid()),
                Err(_) => fqdn(host)?,
            };
            (host, port)
        }
    };
    match port.parse::<u16>() {
        Ok(p) if p >= 1 && port.chars().all(|c| c.is_ascii_digit()) => Ok(format!("{host}:{p}")),
        _ => Err(invalid()),
    }
}

fn cidr(address: &str, prefix: &str) -> Result<String, String> {
    let invalid = || format!("'{address}/{prefix}' is not a CIDR block");
    let ip: IpAddr = address.parse().map_err(|_| invalid())?;
    let bits: u32 = prefix
        .parse()
        .ok()
        .filter(|_| prefix.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(invalid)?;
    let (value, width): (u128, u32) = match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    if bits > width {
        return Err(invalid());
    }
    let host_mask = if bits == width { 0 } else { (1u128 << (width - bits)) - 1 };
    if value & host_mask != 0 {
        return Err(format!("'{address}/{prefix}' has host bits set"));
    }
    Ok(format!("{ip}/{bits}"))
}

/// A fully qualified host name: at least two labels of letters, digits and hyphens, not
/// starting or ending with a hyphen, a non-numeric top label, at most 253 characters.
fn fqdn(name: &str) -> Result<String, String> {
    let host = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.len() > 253 || !labels.iter().all(label_ok) {
        return Err(format!("'{name}' is not a valid host name"));
    }
    if labels.len() < 2 {
        return Err(format!("'{name}' is a single-label name; give a fully qualified domain name"));
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err(format!("'{name}' is not a valid host name or IP address"));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::normalize_target;

    #[test]
    fn accepted_targets_are_normalized() {
        for (raw, want) in [
            ("API.Example.com", "api.example.com"),
            ("example.com.", "example.com"),
            ("*.example.com", "*.example.com"),
            ("10.0.0.1", "10.0.0.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("tcp://db.internal.example:5432", "tcp://db.internal.example:5432"),
            ("tcp://10.1.2.3:22", "tcp://10.1.2.3:22"),
            ("tcp://[::1]:8080", "tcp://[::1]:8080"),
        ] {
            assert_eq!(normalize_target(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn wildcards_urls_single_labels_and_host_bits_are_rejected() {
        for raw in [
            "*",
            "",
            "https://example.com",
            "http://example.com/path",
            "localhost",
            "*.com",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "tcp://example.com",
            "tcp://example.com:0",
            "tcp://example.com:70000",
            "exa_mple.com",
            "-bad.example.com",
            "1.2.3",
            "example.com/path",
        ] {
            assert!(normalize_target(raw).is_err(), "{raw:?} should be rejected");
        }
    }
}
