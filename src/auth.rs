//! Keys and principals: bearer tokens `flk_<base64url(32 bytes)>`, stored only as sha256,
//! resolved to a principal with an org, a role and optional scopes. Key use is recorded
//! in memory and flushed in batches, so authentication never writes per request.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use fleetledger_events::key::KeyScope;
use fleetledger_projections::key::Key;
use fleetledger_projections::lookup;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::store::cache::ReadModels;
use crate::store::EventStore;

pub const TOKEN_PREFIX: &str = "flk_";

/// A bearer token; `Debug` never shows it.
pub struct ApiKey(String);

impl ApiKey {
    pub fn generate() -> Self {
        Self::generate_with(TOKEN_PREFIX)
    }

    /// A key shown in a surface's own style (Chowder's `chd_org_`/`chd_sk_`): only the
    /// prefix differs; it authenticates like any key.
    pub fn generate_with(prefix: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        ApiKey(format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hash_token(&self.0)
    }

    /// What lists show to recognise a key.
    pub fn prefix(&self) -> String {
        self.0.chars().take(12).collect()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

pub fn hash_token(token: &str) -> String {
    hash_token_into(token, &mut hex::Buffer::new()).to_string()
}

/// `hash_token` written into `hex`: every request hashes the key it presents, and the
/// lookup needs no string of its own.
fn hash_token_into<'a>(token: &str, hex: &'a mut hex::Buffer<32>) -> &'a str {
    hex.format(&Sha256::digest(token.as_bytes()).into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Member,
    Admin,
}

impl Role {
    pub fn parse(role: &str) -> Option<Role> {
        match role {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// Who is making a request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub principal_id: String,
    pub key_id: Uuid,
    pub org_id: Uuid,
    pub role: Role,
    pub scopes: Vec<KeyScope>,
}

impl Principal {
    /// Whether this principal may do `permission` (`read`, `configure`, …) on a resource.
    /// Unscoped keys act by role; scoped keys only on the resources they list.
    pub fn may(&self, resource_id: &str, permission: &str) -> bool {
        let by_role = match permission {
            "read" => true,
            _ => self.role >= Role::Member,
        };
        by_role
            && (self.scopes.is_empty()
                || self
                    .scopes
                    .iter()
                    .any(|s| s.resource_id == resource_id && s.permissions.iter().any(|p| p == permission)))
    }

    /// Whether this principal may read a stream of its org on the ledger: admins every
    /// stream, members and viewers every stream but key material, scoped keys only the
    /// streams their scopes let them read. (The org itself is checked by the caller.)
    pub fn may_read_stream(&self, stream_type: &str, stream_id: &str) -> bool {
        if !self.scopes.is_empty() {
            return self.may(stream_id, "read");
        }
        // A stream type this build does not know is treated as key material.
        self.role == Role::Admin || crate::streams::get(stream_type).is_some_and(|s| !s.admin_only())
    }

    /// Whether this principal may write at all (create resources, change anything).
    pub fn may_write(&self) -> bool {
        self.role >= Role::Member && self.scopes.is_empty()
    }

    pub fn actor(&self) -> fleetledger_events::Actor {
        fleetledger_events::Actor {
            principal_id: self.principal_id.clone(),
            key_id: Some(self.key_id.to_string()),
        }
    }
}

/// Why a token does not authenticate.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Invalid,
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthFailure> {
    // ASCII trimming: header text is ASCII (`header_text`), and `str::trim` decodes and
    // classifies characters, which showed on the read path (every request asks twice).
    let value = header.map(str::trim_ascii).unwrap_or("");
    if value.is_empty() {
        return Err(AuthFailure::Missing);
    }
    match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") && value.len() > 7 => {
            let token = value[7..].trim_ascii();
            if token.is_empty() {
                Err(AuthFailure::Invalid)
            } else {
                Ok(token)
            }
        }
        _ => Err(AuthFailure::Invalid),
    }
}

/// The header a key may come in instead of `Authorization` (parsed once, not per request).
pub const X_API_KEY: axum::http::HeaderName = axum::http::HeaderName::from_static("x-api-key");

/// A header's value as text, when it is ASCII. Checked as UTF-8 then for ASCII (both a
/// word at a time) rather than by `HeaderValue::to_str`, byte by byte: every request reads
/// its key twice. Visible ASCII and tabs are all a value can otherwise hold.
pub fn header_text(value: &axum::http::HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok().filter(|text| text.is_ascii())
}

/// The token a request presents: `Authorization: Bearer <token>`, else `X-API-Key: <token>`.
pub fn presented_token(headers: &axum::http::HeaderMap) -> Result<&str, AuthFailure> {
    let bearer = bearer_token(headers.get(axum::http::header::AUTHORIZATION).and_then(header_text));
    // `X-API-Key` only when there is no usable bearer token: most requests carry one, and
    // every request asks (the rate limit, then the surface's authentication).
    bearer.or_else(|failure| {
        headers
            .get(X_API_KEY)
            .and_then(header_text)
            .map(str::trim_ascii)
            .filter(|k| !k.is_empty())
            .ok_or(failure)
    })
}

/// Resolves tokens to principals from the read-model cache, asking the store on a miss
/// (a key issued by another process a moment ago).
#[derive(Clone)]
pub struct Authenticator {
    models: Arc<ReadModels>,
    store: Arc<dyn EventStore>,
    usage: Arc<KeyUsage>,
}

impl Authenticator {
    pub fn new(models: Arc<ReadModels>, store: Arc<dyn EventStore>, usage: Arc<KeyUsage>) -> Self {
        Authenticator { models, store, usage }
    }

    pub async fn authenticate(&self, token: &str, now: DateTime<Utc>) -> Result<Principal, AuthFailure> {
        let mut hex = hex::Buffer::new();
        let hash = hash_token_into(token, &mut hex);
        let key = match self.models.looked_up::<Key>(lookup::KEY_HASH, hash) {
            Some(cached) => cached.model,
            // Boxed: a key issued by another process a moment ago is rare, and the store
            // query's state would otherwise be carried (and moved) by every request.
            None => Box::pin(self.load_key(hash)).await.ok_or(AuthFailure::Invalid)?,
        };
        self.principal(&key, now)
    }

    /// The principal of a key known by its id (what a console session names: it keeps no
    /// token), with the same checks as a presented token's: a revoked or expired key, or
    /// one of another org, is no one.
    pub async fn principal_of_key(&self, key_id: &str, org_id: &str, now: DateTime<Utc>) -> Result<Principal, AuthFailure> {
        let key = match self.models.get_or_load::<Key>(key_id).await {
            Ok(Some(cached)) => cached.model,
            _ => return Err(AuthFailure::Invalid),
        };
        if key.org_id.to_string() != org_id {
            return Err(AuthFailure::Invalid);
        }
        self.principal(&key, now)
    }

    fn principal(&self, key: &Key, now: DateTime<Utc>) -> Result<Principal, AuthFailure> {
        if !key.is_active(now) {
            return Err(AuthFailure::Invalid);
        }
        let role = Role::parse(&key.role).ok_or(AuthFailure::Invalid)?;
        self.usage.touch(key.id, now);
        Ok(Principal {
            principal_id: key.principal_id.clone(),
            key_id: key.id,
            org_id: key.org_id,
            role,
            scopes: key.scopes.clone(),
        })
    }

    /// `authenticate` for the token a request presents, now. A token that does not
    /// authenticate is noted for the login throttle (`answering::note_failed_login`).
    pub async fn authenticate_request(&self, token: &str) -> Result<Principal, AuthFailure> {
        let result = self.authenticate(token, Utc::now()).await;
        if result.is_err() {
            crate::answering::note_failed_login();
        }
        result
    }

    async fn load_key(&self, hash: &str) -> Option<Arc<Key>> {
        let row = self.store.load_model(lookup::KEY_HASH, hash).await.ok()??;
        self.models.refresh::<Key>(&row.doc).await.ok()?.map(|c| c.model)
    }
}

/// Last-use times of keys, flushed to the store every few seconds.
pub struct KeyUsage {
    store: Arc<dyn EventStore>,
    pending: crate::FastMap<Uuid, DateTime<Utc>>,
}

impl KeyUsage {
    pub fn new(store: Arc<dyn EventStore>) -> Arc<Self> {
        Arc::new(KeyUsage {
            store,
            pending: Default::default(),
        })
    }

    /// Notes a use of a key. A use within a second of the one already noted changes
    /// nothing worth a write lock on every request.
    fn touch(&self, key_id: Uuid, at: DateTime<Utc>) {
        if let Some(noted) = self.pending.get(&key_id) {
            if at.signed_duration_since(*noted) < chrono::TimeDelta::seconds(1) {
                return;
            }
        }
        self.pending.insert(key_id, at);
    }

    /// Writes what has been recorded since the last flush.
    pub async fn flush(&self) {
        let batch: Vec<(String, DateTime<Utc>)> = self.pending.iter().map(|e| (e.key().to_string(), *e.value())).collect();
        if batch.is_empty() {
            return;
        }
        for (id, at) in &batch {
            self.pending.remove_if(&id.parse().unwrap_or_default(), |_, v| v == at);
        }
        if let Err(error) = self.store.record_key_usage(&batch).await {
            tracing::warn!(%error, "could not record key usage");
        }
    }

    pub async fn run(self: Arc<Self>, every: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => self.flush().await,
                _ = shutdown.changed() => { self.flush().await; return }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_matches_fleeti() {
        assert_eq!(bearer_token(None), Err(AuthFailure::Missing));
        assert_eq!(bearer_token(Some("  ")), Err(AuthFailure::Missing));
        assert_eq!(bearer_token(Some("Basic abc")), Err(AuthFailure::Invalid));
        assert_eq!(bearer_token(Some("Bearer ")), Err(AuthFailure::Invalid));
        assert_eq!(bearer_token(Some("bearer  flk_x ")), Ok("flk_x"));
    }

    #[test]
    fn keys_are_flk_base64url_and_hash_to_hex() {
        let key = ApiKey::generate();
        assert!(key.expose().starts_with("flk_"));
        assert_eq!(key.expose().len(), 4 + 43);
        assert_eq!(key.hash().len(), 64);
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
    }
}
