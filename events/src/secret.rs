//! Secret fields of events: what the log stores in place of a secret, and how an event
//! type declares which of its fields must never leave the process.
//!
//! A secret (today: a Mission Control gateway token) is sealed before it reaches the log:
//! the event carries `{"kid", "nonce", "ciphertext"}` — AES-256-GCM under its org's data
//! key, which lives outside the log — and never the plaintext. Events written before
//! secrets were sealed hold the plaintext string; they still decode, as
//! [`StoredSecret::Legacy`], and every view out of the process redacts them. Sealing and
//! opening need keys and randomness, so they happen in the service (`src/secrets.rs`),
//! never here.

use serde::{Deserialize, Serialize};

/// What every view out of the process shows in place of a secret.
pub const REDACTED: &str = "***";

/// A secret sealed with its org's data key: the key's id, and the base64 nonce and
/// ciphertext (which ends with the GCM tag). Opening it needs that data key, which only
/// the service can unwrap.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    pub kid: String,
    pub nonce: String,
    pub ciphertext: String,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// The plaintext an event stored before secrets were sealed (schema version 1). Its field
/// is private and it has no constructor: the only way to get one is decoding such an old
/// event, so no new code can store a secret this way.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LegacyPlaintext(String);

impl LegacyPlaintext {
    /// The old plaintext, for the one place that must send it (the gateway driver).
    pub fn expose_legacy(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for LegacyPlaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LegacyPlaintext(***)")
    }
}

/// A secret field as an event (and the read model folded from it) stores it. Untagged, so
/// a version 1 event's plain string still decodes: that is the upcaster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StoredSecret {
    Sealed(SealedSecret),
    Legacy(LegacyPlaintext),
}

impl From<SealedSecret> for StoredSecret {
    fn from(sealed: SealedSecret) -> Self {
        StoredSecret::Sealed(sealed)
    }
}

/// Where an event type keeps values that must not leave the process, as JSON pointers
/// into its `data`. Declared next to the event's variant in `domain_events!`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Redactions {
    /// Secrets: sealed in new events, plaintext in legacy ones; every public view shows
    /// them as `"***"`, and an archive keeps only the sealed form.
    pub secret: &'static [&'static str],
    /// Values the process needs but no caller may see (a key's verifier hash): public
    /// views drop them; an archive keeps them so an imported log still authenticates.
    pub internal: &'static [&'static str],
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plain_string_decodes_as_legacy_and_an_object_as_sealed() {
        let legacy: StoredSecret = serde_json::from_value(json!("s3cret")).unwrap();
        assert!(matches!(&legacy, StoredSecret::Legacy(p) if p.expose_legacy() == "s3cret"));
        let sealed: StoredSecret = serde_json::from_value(json!({"kid": "k", "nonce": "bg==", "ciphertext": "Yw=="})).unwrap();
        assert!(matches!(&sealed, StoredSecret::Sealed(s) if s.kid == "k"));
        // Both write back exactly as they were read, so folds and rebuilds keep their bytes.
        assert_eq!(serde_json::to_value(&legacy).unwrap(), json!("s3cret"));
        assert_eq!(
            serde_json::to_value(&sealed).unwrap(),
            json!({"kid": "k", "nonce": "bg==", "ciphertext": "Yw=="})
        );
        assert!(serde_json::from_value::<StoredSecret>(json!({"kid": "k"})).is_err());
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let legacy: StoredSecret = serde_json::from_value(json!("s3cret")).unwrap();
        let sealed: StoredSecret = serde_json::from_value(json!({"kid": "k", "nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"})).unwrap();
        let printed = format!("{legacy:?} {sealed:?}");
        assert!(!printed.contains("s3cret") && !printed.contains("Y2lwaGVy"), "{printed}");
    }
}
