//! Mission Control: gateways, boards and agents, with the Update Agent rules (board moves,
//! gateway-main conversion, what makes a change reprovision the workspace).

use chrono::{DateTime, Utc};
use fleetledger_events::mission_control::{
    AgentChanges, AgentCreated, AgentEvent, AgentHeartbeat, AgentUpdated, BoardChanges, BoardCreated, BoardEvent, BoardUpdated, Deleted,
    GatewayChanges, GatewayCreated, GatewayEvent, GatewayUpdated,
};
use fleetledger_events::secret::StoredSecret;
use fleetledger_projections::mission_control::{Board, Gateway, McAgent};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{diff, DomainError};

pub const STATUSES: [&str; 3] = ["active", "paused", "retired"];

/// The heartbeat policy an agent has when none is set (or it is cleared).
pub fn default_heartbeat() -> Value {
    json!({"every": "10m", "target": "last", "includeReasoning": false})
}

// ---- gateways -----------------------------------------------------------------------------

/// The settable fields of a gateway. The token arrives sealed: the handler seals it
/// before deciding, so no event is ever decided with a plaintext secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GatewayFields {
    pub name: String,
    pub url: String,
    pub token: Option<StoredSecret>,
    pub workspace_root: String,
}

/// A gateway's own rules. Where its URL leads and where a `local` workspace root lies are
/// the trust boundary's to decide (`crate::boundary`), before a command is built.
fn check_gateway(f: &GatewayFields) -> Result<(), DomainError> {
    if f.name.trim().is_empty() {
        return Err(DomainError::invalid("name must not be empty"));
    }
    if f.workspace_root.trim().is_empty() {
        return Err(DomainError::invalid("workspace_root must not be empty"));
    }
    Ok(())
}

impl From<&Gateway> for GatewayFields {
    fn from(g: &Gateway) -> Self {
        GatewayFields {
            name: g.name.clone(),
            url: g.url.clone(),
            token: g.token.clone(),
            workspace_root: g.workspace_root.clone(),
        }
    }
}

pub fn create_gateway(id: Uuid, org_id: Uuid, f: GatewayFields, now: DateTime<Utc>) -> Result<Vec<GatewayEvent>, DomainError> {
    check_gateway(&f)?;
    Ok(vec![GatewayEvent::Created(GatewayCreated {
        gateway_id: id,
        org_id,
        name: f.name.trim().to_string(),
        url: f.url.trim().to_string(),
        token: f.token,
        workspace_root: f.workspace_root.trim().to_string(),
        created_at: now,
    })])
}

/// Why a gateway's new URL needs its token again.
pub const URL_NEEDS_TOKEN: &str =
    "Changing the gateway url needs its token again (or \"token\": null): the stored token is only sent to the url it was set for";

pub fn update_gateway(state: &Gateway, after: GatewayFields, now: DateTime<Utc>) -> Result<Vec<GatewayEvent>, DomainError> {
    check_gateway(&after)?;
    let before = GatewayFields::from(state);
    // A token is sealed afresh whenever a body sends one, so an unchanged token is one the
    // body did not send: whoever may move the URL must not thereby have the worker hand
    // the stored token to a host of their choosing.
    if after.url != before.url && before.token.is_some() && after.token == before.token {
        return Err(DomainError::invalid(URL_NEEDS_TOKEN));
    }
    let changed = |differs: bool| differs.then_some(());
    let changes = GatewayChanges {
        name: changed(after.name != before.name).map(|_| after.name.clone()),
        url: changed(after.url != before.url).map(|_| after.url.clone()),
        token: changed(after.token != before.token).map(|_| after.token.clone()),
        workspace_root: changed(after.workspace_root != before.workspace_root).map(|_| after.workspace_root.clone()),
    };
    Ok(if changes.is_empty() {
        vec![]
    } else {
        vec![GatewayEvent::Updated(GatewayUpdated { changes, at: now })]
    })
}

// ---- boards -------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BoardFields {
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub gateway_id: Option<Uuid>,
    pub objective: Option<String>,
}

impl From<&Board> for BoardFields {
    fn from(b: &Board) -> Self {
        BoardFields {
            name: b.name.clone(),
            slug: b.slug.clone(),
            description: b.description.clone(),
            gateway_id: b.gateway_id,
            objective: b.objective.clone(),
        }
    }
}

/// Lowercase words joined by dashes.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_string()
}

fn check_board(f: &BoardFields) -> Result<(), DomainError> {
    if f.name.trim().is_empty() {
        return Err(DomainError::invalid("name must not be empty"));
    }
    if f.slug.is_empty() {
        return Err(DomainError::invalid("slug must not be empty"));
    }
    Ok(())
}

pub fn create_board(id: Uuid, org_id: Uuid, mut f: BoardFields, now: DateTime<Utc>) -> Result<Vec<BoardEvent>, DomainError> {
    if f.slug.trim().is_empty() {
        f.slug = slugify(&f.name);
    }
    check_board(&f)?;
    Ok(vec![BoardEvent::Created(BoardCreated {
        board_id: id,
        org_id,
        name: f.name.trim().to_string(),
        slug: f.slug.trim().to_string(),
        description: f.description,
        gateway_id: f.gateway_id,
        objective: f.objective,
        created_at: now,
    })])
}

pub fn update_board(state: &Board, after: BoardFields, now: DateTime<Utc>) -> Result<Vec<BoardEvent>, DomainError> {
    check_board(&after)?;
    let before = BoardFields::from(state);
    let changes = BoardChanges {
        name: diff(&before.name, &after.name),
        slug: diff(&before.slug, &after.slug),
        description: diff(&before.description, &after.description),
        gateway_id: diff(&before.gateway_id, &after.gateway_id),
        objective: diff(&before.objective, &after.objective),
    };
    Ok(if changes.names().is_empty() {
        vec![]
    } else {
        vec![BoardEvent::Updated(BoardUpdated { changes, at: now })]
    })
}

/// Deleting is recorded once; deleting again changes nothing.
pub fn deleted_at(already: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Deleted> {
    already.is_none().then_some(Deleted { at: now })
}

// ---- agents -------------------------------------------------------------------------------

/// A board as agent placement sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoardRef {
    pub id: Uuid,
    pub gateway_id: Option<Uuid>,
}

impl From<&Board> for BoardRef {
    fn from(b: &Board) -> Self {
        BoardRef {
            id: b.id,
            gateway_id: b.gateway_id,
        }
    }
}

pub struct CreateAgent {
    pub agent_id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// The board to join; `None` makes the gateway's main agent.
    pub board: Option<BoardRef>,
    pub gateway_id: Option<Uuid>,
    pub heartbeat_config: Option<Value>,
    pub identity_profile: Option<Value>,
    pub identity_template: Option<String>,
    pub soul_template: Option<String>,
    pub now: DateTime<Utc>,
}

fn board_gateway(board: &BoardRef) -> Result<Uuid, DomainError> {
    board.gateway_id.ok_or_else(|| DomainError::invalid("Board gateway_id is required"))
}

pub fn create_agent(cmd: CreateAgent) -> Result<Vec<AgentEvent>, DomainError> {
    let name = cmd.name.trim().to_string();
    if name.is_empty() {
        return Err(DomainError::invalid("name must not be empty"));
    }
    let gateway_id = match &cmd.board {
        Some(board) => board_gateway(board)?,
        None => cmd.gateway_id.ok_or_else(|| DomainError::invalid("gateway_id is required"))?,
    };
    Ok(vec![AgentEvent::Created(AgentCreated {
        agent_id: cmd.agent_id,
        org_id: cmd.org_id,
        gateway_id,
        board_id: cmd.board.map(|b| b.id),
        name,
        status: "active".into(),
        heartbeat_config: cmd.heartbeat_config.unwrap_or_else(default_heartbeat),
        identity_profile: cmd.identity_profile,
        identity_template: cmd.identity_template,
        soul_template: cmd.soul_template,
        created_at: cmd.now,
    })])
}

/// An Update Agent body: `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub status: Option<String>,
    pub board_id: Option<Option<Uuid>>,
    pub is_gateway_main: Option<bool>,
    pub heartbeat_config: Option<Option<Value>>,
    pub identity_profile: Option<Option<Value>>,
    pub identity_template: Option<Option<String>>,
    pub soul_template: Option<Option<String>>,
}

/// What an agent's fields are, for computing exactly what a PATCH changed.
#[derive(Clone, Debug, PartialEq)]
struct AgentFields {
    name: String,
    status: String,
    board_id: Option<Uuid>,
    gateway_id: Uuid,
    is_gateway_main: bool,
    heartbeat_config: Value,
    identity_profile: Option<Value>,
    identity_template: Option<String>,
    soul_template: Option<String>,
}

impl From<&McAgent> for AgentFields {
    fn from(a: &McAgent) -> Self {
        AgentFields {
            name: a.name.clone(),
            status: a.status.clone(),
            board_id: a.board_id,
            gateway_id: a.gateway_id,
            is_gateway_main: a.is_gateway_main,
            heartbeat_config: a.heartbeat_config.clone(),
            identity_profile: a.identity_profile.clone(),
            identity_template: a.identity_template.clone(),
            soul_template: a.soul_template.clone(),
        }
    }
}

/// Applies an Update Agent PATCH. `target_board` is the board named by `board_id` (the
/// caller has checked it exists in the agent's org); `current_board` is the agent's board.
/// Records exactly the changed fields; nothing changed and no `force` records nothing.
pub fn update_agent(
    agent: &McAgent,
    patch: AgentPatch,
    target_board: Option<BoardRef>,
    current_board: Option<BoardRef>,
    force: bool,
    now: DateTime<Utc>,
) -> Result<Vec<AgentEvent>, DomainError> {
    let before = AgentFields::from(agent);
    let mut after = before.clone();
    if let Some(name) = patch.name {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(DomainError::invalid("name must not be empty"));
        }
        after.name = name;
    }
    if let Some(status) = patch.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(DomainError::invalid("status must be one of active, paused, retired"));
        }
        after.status = status;
    }
    if let Some(heartbeat) = patch.heartbeat_config {
        after.heartbeat_config = heartbeat.unwrap_or_else(default_heartbeat);
    }
    if let Some(profile) = patch.identity_profile {
        after.identity_profile = profile;
    }
    if let Some(t) = patch.identity_template {
        after.identity_template = t;
    }
    if let Some(t) = patch.soul_template {
        after.soul_template = t;
    }
    match (patch.board_id, target_board) {
        // Moving to a board moves the agent to that board's gateway.
        (Some(Some(_)), Some(board)) => {
            after.gateway_id = board_gateway(&board)?;
            after.board_id = Some(board.id);
            after.is_gateway_main = false;
        }
        (Some(Some(_)), None) => return Err(DomainError::NotFound),
        // Leaving the board keeps the gateway and makes the agent its main agent.
        (Some(None), _) => {
            after.board_id = None;
            after.is_gateway_main = true;
        }
        (None, _) => {}
    }
    match patch.is_gateway_main {
        // As Mission Control does: making an agent gateway-main always goes through a board
        // (the one named, or the agent's own), even when it already is the main agent.
        Some(true) => {
            let board = target_board
                .filter(|_| patch.board_id.is_some())
                .or(current_board)
                .ok_or_else(|| DomainError::invalid("board_id is required"))?;
            after.gateway_id = board_gateway(&board)?;
            after.board_id = None;
            after.is_gateway_main = true;
        }
        Some(false) if after.board_id.is_none() => {
            return Err(DomainError::invalid(
                "board_id is required when converting a gateway-main agent to board scope",
            ));
        }
        _ => {}
    }
    let changes = AgentChanges {
        name: diff(&before.name, &after.name),
        status: diff(&before.status, &after.status),
        board_id: diff(&before.board_id, &after.board_id),
        gateway_id: diff(&before.gateway_id, &after.gateway_id),
        is_gateway_main: diff(&before.is_gateway_main, &after.is_gateway_main),
        heartbeat_config: diff(&before.heartbeat_config, &after.heartbeat_config),
        identity_profile: diff(&before.identity_profile, &after.identity_profile),
        identity_template: diff(&before.identity_template, &after.identity_template),
        soul_template: diff(&before.soul_template, &after.soul_template),
    };
    if changes.names().is_empty() && !force {
        return Ok(vec![]);
    }
    // Templates and placement are what the workspace files are rendered from.
    let reprovision = force
        || changes.identity_template.is_some()
        || changes.soul_template.is_some()
        || changes.board_id.is_some()
        || changes.gateway_id.is_some()
        || changes.is_gateway_main.is_some();
    Ok(vec![AgentEvent::Updated(AgentUpdated {
        changes,
        reprovision,
        force,
        updated_at: now,
    })])
}

pub fn heartbeat(status: Option<String>, now: DateTime<Utc>) -> Result<Vec<AgentEvent>, DomainError> {
    if let Some(s) = &status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(DomainError::invalid("status must be one of active, paused, retired"));
        }
    }
    Ok(vec![AgentEvent::Heartbeat(AgentHeartbeat { status, seen_at: now })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::given;
    use fleetledger_projections::ReadModel;

    fn board(gateway: Option<Uuid>) -> BoardRef {
        BoardRef {
            id: Uuid::now_v7(),
            gateway_id: gateway,
        }
    }

    #[test]
    fn a_gateway_moved_to_another_url_needs_its_token_again() {
        let sealed = |c: &str| {
            Some(StoredSecret::Sealed(fleetledger_events::secret::SealedSecret {
                kid: "k".into(),
                nonce: "n".into(),
                ciphertext: c.into(),
            }))
        };
        let fields = GatewayFields {
            name: "g".into(),
            url: "ws://one".into(),
            token: sealed("a"),
            workspace_root: "w".into(),
        };
        let events = create_gateway(Uuid::now_v7(), Uuid::nil(), fields.clone(), Utc::now()).unwrap();
        let gateway = events.iter().fold(None, Gateway::evolve).unwrap();
        let moved = |token| GatewayFields {
            url: "ws://two".into(),
            token,
            ..fields.clone()
        };
        assert_eq!(
            update_gateway(&gateway, moved(sealed("a")), Utc::now()),
            Err(DomainError::invalid(URL_NEEDS_TOKEN))
        );
        assert!(
            update_gateway(&gateway, moved(sealed("b")), Utc::now()).is_ok(),
            "a token sent again"
        );
        assert!(update_gateway(&gateway, moved(None), Utc::now()).is_ok(), "the token cleared");
        let renamed = GatewayFields {
            name: "h".into(),
            ..fields.clone()
        };
        assert!(update_gateway(&gateway, renamed, Utc::now()).is_ok(), "the url kept");
        let untokened = Gateway {
            token: None,
            ..gateway.clone()
        };
        assert!(
            update_gateway(&untokened, moved(None), Utc::now()).is_ok(),
            "nothing stored to send"
        );
    }

    fn agent_on(board: BoardRef) -> McAgent {
        let events = create_agent(CreateAgent {
            agent_id: Uuid::now_v7(),
            org_id: Uuid::nil(),
            name: " Ops ".into(),
            board: Some(board),
            gateway_id: None,
            heartbeat_config: None,
            identity_profile: None,
            identity_template: None,
            soul_template: None,
            now: Utc::now(),
        })
        .unwrap();
        events.iter().fold(None, McAgent::evolve).unwrap()
    }

    fn changed(events: &[AgentEvent]) -> (Vec<String>, bool) {
        match events {
            [AgentEvent::Updated(u)] => (u.changes.names().into_iter().map(String::from).collect(), u.reprovision),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_patch_records_nothing_unless_forced() {
        let a = agent_on(board(Some(Uuid::now_v7())));
        assert_eq!(a.name, "Ops");
        assert_eq!(a.heartbeat_config, default_heartbeat());
        assert!(update_agent(&a, AgentPatch::default(), None, None, false, Utc::now())
            .unwrap()
            .is_empty());
        let forced = update_agent(&a, AgentPatch::default(), None, None, true, Utc::now()).unwrap();
        assert_eq!(changed(&forced), (vec![], true));
        // Setting a field to what it is changes nothing either.
        let same = AgentPatch {
            name: Some("Ops".into()),
            ..Default::default()
        };
        assert!(update_agent(&a, same, None, None, false, Utc::now()).unwrap().is_empty());
    }

    #[test]
    fn only_templates_and_placement_reprovision() {
        let a = agent_on(board(Some(Uuid::now_v7())));
        let quiet = AgentPatch {
            status: Some("paused".into()),
            identity_profile: Some(Some(json!({"role": "lead"}))),
            heartbeat_config: Some(None),
            ..Default::default()
        };
        assert_eq!(
            changed(&update_agent(&a, quiet, None, None, false, Utc::now()).unwrap()),
            (vec!["status".into(), "identity_profile".into()], false)
        );
        let soul = AgentPatch {
            soul_template: Some(Some("be brief".into())),
            ..Default::default()
        };
        assert_eq!(
            changed(&update_agent(&a, soul, None, None, false, Utc::now()).unwrap()),
            (vec!["soul_template".into()], true)
        );
        let bad = AgentPatch {
            status: Some("sleeping".into()),
            ..Default::default()
        };
        given(Some(a))
            .when(|s| update_agent(s.unwrap(), bad, None, None, false, Utc::now()))
            .then_err(DomainError::invalid("status must be one of active, paused, retired"));
    }

    #[test]
    fn moving_boards_follows_the_board_gateway_and_gateway_main_needs_a_board() {
        let home = board(Some(Uuid::now_v7()));
        let a = agent_on(home);
        let elsewhere = board(Some(Uuid::now_v7()));
        let moved = AgentPatch {
            board_id: Some(Some(elsewhere.id)),
            ..Default::default()
        };
        let (fields, reprovision) = changed(&update_agent(&a, moved, Some(elsewhere), Some(home), false, Utc::now()).unwrap());
        assert_eq!((fields, reprovision), (vec!["board_id".into(), "gateway_id".into()], true));

        let gatewayless = board(None);
        let to_gatewayless = AgentPatch {
            board_id: Some(Some(gatewayless.id)),
            ..Default::default()
        };
        given(Some(a.clone()))
            .when(|s| update_agent(s.unwrap(), to_gatewayless, Some(gatewayless), Some(home), false, Utc::now()))
            .then_err(DomainError::invalid("Board gateway_id is required"));

        let main = AgentPatch {
            is_gateway_main: Some(true),
            ..Default::default()
        };
        let events = update_agent(&a, main.clone(), None, Some(home), false, Utc::now()).unwrap();
        let promoted = events.iter().fold(Some(a.clone()), McAgent::evolve).unwrap();
        assert_eq!((promoted.board_id, promoted.is_gateway_main), (None, true));
        assert!(promoted.session_key().starts_with("agent:mc-gateway-"));
        given(Some(a.clone()))
            .when(|s| update_agent(s.unwrap(), main, None, None, false, Utc::now()))
            .then_err(DomainError::invalid("board_id is required"));
        let demote = AgentPatch {
            is_gateway_main: Some(false),
            ..Default::default()
        };
        given(Some(promoted.clone()))
            .when(|s| update_agent(s.unwrap(), demote, None, None, false, Utc::now()))
            .then_err(DomainError::invalid(
                "board_id is required when converting a gateway-main agent to board scope",
            ));
        let main_again = AgentPatch {
            is_gateway_main: Some(true),
            ..Default::default()
        };
        given(Some(promoted))
            .when(|s| update_agent(s.unwrap(), main_again, None, None, false, Utc::now()))
            .then_err(DomainError::invalid("board_id is required"));
    }

    #[test]
    fn slugs_are_lowercase_words_joined_by_dashes() {
        assert_eq!(slugify("  Finance Ops / EU  "), "finance-ops-eu");
    }
}
