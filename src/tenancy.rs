//! Operations on organizations, workspaces and keys, shared by the CLI and the HTTP
//! surfaces, through the one write path; and how the audit API shows orgs and keys.

use chrono::{DateTime, Utc};
use fleetledger_events::key::KeyScope;
use fleetledger_events::{Actor, Metadata};
use fleetledger_projections::{key::Key, lookup, org::Org};
use uuid::Uuid;

use crate::api::Surface;
use crate::auth::ApiKey;
use crate::domain::{self, DomainError};
use crate::ledger::{Ledger, WriteContext, WriteError};
use crate::store::StoreError;
use crate::streams::Audited;

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<WriteError<DomainError>> for TenancyError {
    fn from(error: WriteError<DomainError>) -> Self {
        match error {
            WriteError::Rejected(e) => TenancyError::Domain(e),
            WriteError::Missing => TenancyError::Domain(DomainError::NotFound),
            WriteError::PreconditionFailed { current } => {
                TenancyError::Domain(DomainError::Conflict(format!("the resource is at version {current}")))
            }
            WriteError::Duplicate => TenancyError::Store(StoreError::DuplicateEvent),
            WriteError::TooLarge { bytes, limit } => TenancyError::Store(StoreError::TooLarge { bytes, limit }),
            WriteError::Unstorable(why) => TenancyError::Store(StoreError::Unstorable(why)),
            WriteError::Store(e) => TenancyError::Store(e),
        }
    }
}

fn context(org_id: Uuid, actor: Actor) -> WriteContext {
    WriteContext::new(Metadata {
        org_id: org_id.to_string(),
        actor,
        ..Default::default()
    })
}

impl Audited for Org {
    const SURFACE: Surface = Surface::Ledger;
}

/// Its hash never leaves the process: `Key::PRIVATE_FIELDS`.
impl Audited for Key {
    const SURFACE: Surface = Surface::Ledger;
    const ADMIN_ONLY: bool = true;
}

pub fn org_by_slug(ledger: &Ledger, slug: &str) -> Option<Org> {
    let id = ledger.models.lookup(lookup::ORG_SLUG, slug)?;
    ledger.models.cache::<Org>().get(&id).map(|c| (*c.model).clone())
}

/// Finds an org by slug, asking the store when another process may have just made it.
pub async fn find_org(ledger: &Ledger, slug: &str) -> Result<Option<Org>, StoreError> {
    if let Some(org) = org_by_slug(ledger, slug) {
        return Ok(Some(org));
    }
    let id = domain::org::org_id_for_slug(slug).to_string();
    Ok(ledger.models.refresh::<Org>(&id).await?.map(|c| (*c.model).clone()))
}

pub async fn create_org(ledger: &Ledger, slug: &str, name: &str, actor: Actor, now: DateTime<Utc>) -> Result<Org, TenancyError> {
    let id = domain::org::org_id_for_slug(slug);
    let written = ledger
        .write_stream::<Org, DomainError>(&id.to_string(), &context(id, actor), |existing| {
            domain::org::create_org(
                existing,
                domain::org::CreateOrg {
                    slug: slug.to_string(),
                    name: name.to_string(),
                    now,
                },
            )
        })
        .await?;
    Ok(written.into_model())
}

pub async fn create_workspace(
    ledger: &Ledger,
    org: &Org,
    slug: &str,
    name: &str,
    actor: Actor,
    now: DateTime<Utc>,
) -> Result<Org, TenancyError> {
    let written = ledger
        .write::<Org, DomainError>(&org.id.to_string(), &context(org.id, actor), |current| {
            domain::org::create_workspace(Some(current), slug, name, now)
        })
        .await?;
    Ok(written.into_model())
}

pub struct NewKey {
    pub org_id: Uuid,
    pub name: String,
    pub role: String,
    pub scopes: Vec<KeyScope>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The principal the key acts for; a fresh service principal when `None`.
    pub principal_id: Option<String>,
    /// The token's prefix; `flk_` unless a surface shows keys in its own style.
    pub token_prefix: &'static str,
}

/// Issues a key; the token is returned once and only its hash is stored.
pub async fn issue_key(ledger: &Ledger, new: NewKey, actor: Actor, now: DateTime<Utc>) -> Result<(ApiKey, Key), TenancyError> {
    let token = ApiKey::generate_with(new.token_prefix);
    let key_id = Uuid::now_v7();
    let command = domain::key::IssueKey {
        key_id,
        org_id: new.org_id,
        principal_id: new.principal_id.unwrap_or_else(|| format!("service:{key_id}")),
        name: new.name,
        role: new.role,
        scopes: new.scopes,
        expires_at: new.expires_at,
        key_hash: token.hash(),
        key_prefix: token.prefix(),
        now,
    };
    let written = ledger
        .write_stream::<Key, DomainError>(&key_id.to_string(), &context(new.org_id, actor), |existing| {
            domain::key::issue_key(existing, command.clone())
        })
        .await?;
    Ok((token, written.into_model()))
}

/// Revokes a key, as `context` says (who, and the version it must be at); returns the
/// key and its stream version.
pub async fn revoke_key(ledger: &Ledger, key_id: Uuid, context: &WriteContext, now: DateTime<Utc>) -> Result<(Key, i64), TenancyError> {
    let written = ledger
        .write::<Key, DomainError>(&key_id.to_string(), context, |current| domain::key::revoke_key(Some(current), now))
        .await?;
    let version = written.version;
    Ok((written.into_model(), version))
}

/// The context of a write the host makes on an org's behalf (the CLI, bootstrap).
pub fn host_context(org_id: Uuid, actor: Actor) -> WriteContext {
    context(org_id, actor)
}

/// On an empty store: org `default` with workspace `default` and an admin key, whose
/// token is returned to be shown once. Does nothing when any event exists.
pub async fn bootstrap(ledger: &Ledger, now: DateTime<Utc>) -> Result<Option<ApiKey>, TenancyError> {
    if ledger.store.head().await? > 0 {
        return Ok(None);
    }
    let actor = Actor::system("bootstrap");
    let org = match create_org(ledger, "default", "Default", actor.clone(), now).await {
        Ok(org) => org,
        // Another replica bootstrapped at the same moment.
        Err(TenancyError::Domain(DomainError::AlreadyExists(_))) => return Ok(None),
        Err(e) => return Err(e),
    };
    create_workspace(ledger, &org, "default", "Default", actor.clone(), now).await?;
    let (token, _) = issue_key(
        ledger,
        NewKey {
            org_id: org.id,
            name: "admin".into(),
            role: "admin".into(),
            scopes: vec![],
            expires_at: None,
            principal_id: None,
            token_prefix: crate::auth::TOKEN_PREFIX,
        },
        actor,
        now,
    )
    .await?;
    Ok(Some(token))
}
