//! Operations on organizations, workspaces and keys, shared by the CLI and the HTTP
//! surfaces: decide against the cached state, commit, retry once on a lost race.

use chrono::{DateTime, Utc};
use fleetledger_events::key::KeyScope;
use fleetledger_events::{Actor, Metadata};
use fleetledger_projections::{key::Key, lookup, org::Org};
use uuid::Uuid;

use crate::auth::ApiKey;
use crate::domain::{self, DomainError};
use crate::ledger::{Decision, Ledger};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn metadata(org_id: Uuid, actor: Actor) -> Metadata {
    Metadata {
        org_id: org_id.to_string(),
        actor,
        ..Default::default()
    }
}

pub fn org_by_slug(ledger: &Ledger, slug: &str) -> Option<Org> {
    let id = ledger.models.lookup(lookup::ORG_SLUG, slug)?;
    ledger.models.orgs.get(&id).map(|c| (*c.model).clone())
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
    let existing = ledger.models.refresh::<Org>(&id.to_string()).await?;
    let version = existing.as_ref().map(|c| c.version).unwrap_or(0);
    let events = domain::org::create_org(
        existing.as_ref().map(|c| c.model.as_ref()),
        domain::org::CreateOrg {
            slug: slug.to_string(),
            name: name.to_string(),
            now,
        },
    )?;
    let decision = Decision::new(id.to_string(), version, None, events);
    let org = decision.after.clone().expect("a created org exists");
    match ledger.commit(decision, metadata(id, actor), None).await {
        Ok(_) => Ok(org),
        Err(StoreError::Conflict { .. }) => Err(DomainError::AlreadyExists(format!("organization {slug} already exists")).into()),
        Err(e) => Err(e.into()),
    }
}

pub async fn create_workspace(
    ledger: &Ledger,
    org: &Org,
    slug: &str,
    name: &str,
    actor: Actor,
    now: DateTime<Utc>,
) -> Result<Org, TenancyError> {
    for _ in 0..3 {
        let current = ledger
            .models
            .refresh::<Org>(&org.id.to_string())
            .await?
            .ok_or(DomainError::NotFound)?;
        let events = domain::org::create_workspace(Some(&current.model), slug, name, now)?;
        let decision = Decision::new(org.id.to_string(), current.version, Some((*current.model).clone()), events);
        let after = decision.after.clone().expect("the org exists");
        match ledger.commit(decision, metadata(org.id, actor.clone()), None).await {
            Ok(_) => return Ok(after),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict {
        stream_id: org.id.to_string(),
        expected: 0,
        actual: 0,
    }
    .into())
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
    let events = domain::key::issue_key(
        None,
        domain::key::IssueKey {
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
        },
    )?;
    let decision = Decision::new(key_id.to_string(), 0, None, events);
    let key = decision.after.clone().expect("an issued key exists");
    ledger.commit(decision, metadata(new.org_id, actor), None).await?;
    Ok((token, key))
}

pub async fn revoke_key(ledger: &Ledger, key_id: Uuid, actor: Actor, now: DateTime<Utc>) -> Result<Key, TenancyError> {
    let current = ledger
        .models
        .refresh::<Key>(&key_id.to_string())
        .await?
        .ok_or(DomainError::NotFound)?;
    let events = domain::key::revoke_key(Some(&current.model), now)?;
    if events.is_empty() {
        return Ok((*current.model).clone());
    }
    let decision = Decision::new(key_id.to_string(), current.version, Some((*current.model).clone()), events);
    let key = decision.after.clone().expect("a revoked key exists");
    ledger.commit(decision, metadata(current.model.org_id, actor), None).await?;
    Ok(key)
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
