//! What the templates show, made from the log's types: actors by key name, times, links,
//! and JSON written out line by line with the pointer of what each line shows, so a diff
//! can highlight the lines its changed paths touch.

use chrono::{DateTime, Utc};
use fleetledger_events::envelope::micros;
use fleetledger_events::{Actor, EventEnvelope};
use fleetledger_projections::key::Key;
use serde::Serialize;
use serde_json::Value;

use super::Signed;
use crate::auth::Role;
use crate::store::cache::ReadModels;

/// The signed-in key, as the header shows it.
#[derive(Serialize)]
pub struct User {
    pub key_name: String,
    pub key_id: String,
    pub role: &'static str,
    pub scoped: bool,
}

impl User {
    pub fn of(signed: &Signed) -> User {
        let p = &signed.principal;
        User {
            key_name: signed.key_name.clone(),
            key_id: p.key_id.to_string(),
            role: match p.role {
                Role::Admin => "admin",
                Role::Member => "member",
                Role::Viewer => "viewer",
            },
            scoped: !p.scopes.is_empty(),
        }
    }
}

/// Who made a change: the name of the key it was made with (and the key's id), or the
/// principal the system acted as.
#[derive(Serialize)]
pub struct ActorView {
    pub name: String,
    pub key_id: Option<String>,
    pub principal: String,
}

impl ActorView {
    pub fn of(actor: &Actor, models: &ReadModels) -> ActorView {
        let name = actor
            .key_id
            .as_deref()
            .and_then(|id| models.cache::<Key>().get(id))
            .map(|c| c.model.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| actor.principal_id.clone());
        ActorView {
            name,
            key_id: actor.key_id.clone(),
            principal: actor.principal_id.clone(),
        }
    }
}

/// A moment, machine-readable and as people read it.
#[derive(Serialize)]
pub struct Time {
    pub iso: String,
    pub text: String,
}

impl Time {
    pub fn of(t: &DateTime<Utc>) -> Time {
        Time {
            iso: micros::format(t),
            text: t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        }
    }
}

/// An event as a row of the feed or a list.
#[derive(Serialize)]
pub struct EventRow {
    pub position: i64,
    pub stream_type: String,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub summary: String,
    pub actor: ActorView,
    pub at: Time,
    pub href: String,
}

impl EventRow {
    pub fn of(e: &EventEnvelope, models: &ReadModels) -> EventRow {
        EventRow {
            position: e.global_position,
            stream_type: e.stream_type.clone(),
            stream_id: e.stream_id.clone(),
            version: e.stream_version,
            event_type: e.event_type.clone(),
            summary: crate::streams::summary(e),
            actor: ActorView::of(&e.metadata.actor, models),
            at: Time::of(&e.recorded_at),
            href: format!("{}?version={}", resource_href(&e.stream_type, &e.stream_id), e.stream_version),
        }
    }
}

/// A resource's timeline page.
pub fn resource_href(stream_type: &str, id: &str) -> String {
    format!("/ui/resources/{}/{}", segment(stream_type), segment(id))
}

/// A path segment, percent-encoded but for unreserved characters.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query-string value, percent-encoded.
pub fn query_value(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// One line of pretty-printed JSON.
#[derive(Serialize, Debug, PartialEq)]
pub struct JsonLine {
    /// The line with its indentation.
    pub text: String,
    /// The JSON pointer of the value the line shows (its container's, for a closing line).
    pub pointer: String,
    /// Whether the line lies at or under one of the marked pointers.
    pub marked: bool,
}

/// `value` pretty-printed one line per scalar or bracket, each line marked when its
/// pointer is one of `marked` or lies under one.
pub fn json_lines(value: &Value, marked: &[String]) -> Vec<JsonLine> {
    let mut out = Vec::new();
    walk(value, "", String::new(), 0, false, marked, &mut out);
    out
}

fn is_marked(pointer: &str, marked: &[String]) -> bool {
    marked.iter().any(|m| {
        m.is_empty() || pointer == m || (pointer.len() > m.len() && pointer.starts_with(m.as_str()) && pointer.as_bytes()[m.len()] == b'/')
    })
}

fn walk(value: &Value, label: &str, pointer: String, depth: usize, comma: bool, marked: &[String], out: &mut Vec<JsonLine>) {
    let indent = "  ".repeat(depth);
    let end = if comma { "," } else { "" };
    let mut line = |text: String, pointer: &str| {
        out.push(JsonLine {
            text,
            marked: is_marked(pointer, marked),
            pointer: pointer.to_string(),
        })
    };
    let children: Vec<(String, String, &Value)> = match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                (
                    format!("{}: ", Value::from(k.as_str())),
                    format!("{pointer}/{}", escape_token(k)),
                    v,
                )
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (String::new(), format!("{pointer}/{i}"), v))
            .collect(),
        _ => Vec::new(),
    };
    if children.is_empty() {
        line(format!("{indent}{label}{value}{end}"), &pointer);
        return;
    }
    let (open, close) = if value.is_object() { ("{", "}") } else { ("[", "]") };
    line(format!("{indent}{label}{open}"), &pointer);
    let last = children.len() - 1;
    for (i, (child_label, child_pointer, child)) in children.into_iter().enumerate() {
        walk(child, &child_label, child_pointer, depth + 1, i < last, marked, out);
    }
    out.push(JsonLine {
        text: format!("{indent}{close}{end}"),
        marked: is_marked(&pointer, marked),
        pointer,
    });
}

fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A JSON value in one line, cut to `max` characters.
pub fn compact(value: &Value, max: usize) -> String {
    let text = value.to_string();
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_line_knows_the_pointer_it_shows() {
        let value = json!({"config": {"packages": ["vim", "git"], "a/b": 1}, "name": "P", "empty": {}});
        let lines = json_lines(&value, &["/config/packages/1".to_string()]);
        let shown: Vec<(&str, &str, bool)> = lines.iter().map(|l| (l.text.as_str(), l.pointer.as_str(), l.marked)).collect();
        assert_eq!(
            shown,
            vec![
                ("{", "", false),
                ("  \"config\": {", "/config", false),
                ("    \"packages\": [", "/config/packages", false),
                ("      \"vim\",", "/config/packages/0", false),
                ("      \"git\"", "/config/packages/1", true),
                ("    ],", "/config/packages", false),
                ("    \"a/b\": 1", "/config/a~1b", false),
                ("  },", "/config", false),
                ("  \"name\": \"P\",", "/name", false),
                ("  \"empty\": {}", "/empty", false),
                ("}", "", false),
            ]
        );
    }

    #[test]
    fn a_marked_pointer_marks_what_lies_under_it_but_not_its_siblings() {
        let value = json!({"packages": ["vim"], "packages2": 1});
        let marked: Vec<String> = json_lines(&value, &["/packages".to_string()])
            .into_iter()
            .filter(|l| l.marked)
            .map(|l| l.pointer)
            .collect();
        assert_eq!(marked, vec!["/packages", "/packages/0", "/packages"]);
        assert!(json_lines(&value, &[String::new()]).iter().all(|l| l.marked), "the root marks all");
    }

    #[test]
    fn links_and_values_are_encoded() {
        assert_eq!(resource_href("profile", "a b/c"), "/ui/resources/profile/a%20b%2Fc");
        assert_eq!(query_value("/ui/resources?type=x&q=a b"), "%2Fui%2Fresources%3Ftype%3Dx%26q%3Da+b");
        assert_eq!(compact(&json!("abcdef"), 3), "\"ab…");
        assert_eq!(compact(&json!(1), 3), "1");
    }
}
