//! Organizations and their workspaces.

use chrono::{DateTime, Utc};
use fleetledger_events::org::{OrgCreated, OrgEvent, WorkspaceCreated};
use fleetledger_projections::org::Org;
use uuid::Uuid;

use super::DomainError;

/// Namespace for org stream ids: an org's id is derived from its slug, so the stream's
/// uniqueness makes slugs unique without a check-then-insert.
const ORG_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6700_0000_4000_8000_666c_6565_746c);

pub fn org_id_for_slug(slug: &str) -> Uuid {
    Uuid::new_v5(&ORG_NAMESPACE, slug.as_bytes())
}

/// Slugs are lowercase letters, digits and dashes, starting with a letter or digit.
pub fn validate_slug(what: &str, slug: &str) -> Result<(), DomainError> {
    let ok = !slug.is_empty()
        && slug.len() <= 63
        && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(format!(
            "{what} slug must be 1-63 lowercase letters, digits or dashes, not starting with a dash"
        )))
    }
}

pub struct CreateOrg {
    pub slug: String,
    pub name: String,
    pub now: DateTime<Utc>,
}

pub fn create_org(state: Option<&Org>, cmd: CreateOrg) -> Result<Vec<OrgEvent>, DomainError> {
    validate_slug("organization", &cmd.slug)?;
    if state.is_some() {
        return Err(DomainError::AlreadyExists(format!("organization {} already exists", cmd.slug)));
    }
    let name = if cmd.name.trim().is_empty() {
        cmd.slug.clone()
    } else {
        cmd.name.trim().to_string()
    };
    Ok(vec![OrgEvent::Created(OrgCreated {
        org_id: org_id_for_slug(&cmd.slug),
        slug: cmd.slug,
        name,
        created_at: cmd.now,
    })])
}

pub fn create_workspace(state: Option<&Org>, slug: &str, name: &str, now: DateTime<Utc>) -> Result<Vec<OrgEvent>, DomainError> {
    validate_slug("workspace", slug)?;
    let org = state.ok_or(DomainError::NotFound)?;
    if org.workspaces.iter().any(|w| w.slug == slug) {
        return Err(DomainError::AlreadyExists(format!(
            "workspace {slug} already exists in {}",
            org.slug
        )));
    }
    let name = if name.trim().is_empty() { slug } else { name.trim() };
    Ok(vec![OrgEvent::WorkspaceCreated(WorkspaceCreated {
        slug: slug.to_string(),
        name: name.to_string(),
        created_at: now,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::given;

    #[test]
    fn an_org_slug_can_be_taken_once() {
        let now = Utc::now();
        given(None)
            .when(|s| {
                create_org(
                    s,
                    CreateOrg {
                        slug: "acme".into(),
                        name: String::new(),
                        now,
                    },
                )
            })
            .then(|events| {
                assert!(matches!(&events[0], OrgEvent::Created(e) if e.name == "acme" && e.org_id == org_id_for_slug("acme")));
            });
        let existing = Org {
            id: org_id_for_slug("acme"),
            slug: "acme".into(),
            name: "Acme".into(),
            created_at: now,
            workspaces: vec![],
        };
        given(Some(existing))
            .when(|s| {
                create_org(
                    s,
                    CreateOrg {
                        slug: "acme".into(),
                        name: String::new(),
                        now,
                    },
                )
            })
            .then_err(DomainError::AlreadyExists("organization acme already exists".into()));
        given::<Org>(None)
            .when(|s| {
                create_org(
                    s,
                    CreateOrg {
                        slug: "Bad Slug".into(),
                        name: String::new(),
                        now,
                    },
                )
            })
            .then_err(DomainError::invalid(
                "organization slug must be 1-63 lowercase letters, digits or dashes, not starting with a dash",
            ));
    }
}
