//! OpenClaw config paths as `openclaw config set`/`unset` take them, and applying them to a
//! config the way the CLI does. The instance read model folds an `instance.updated` event
//! by applying its paths; the domain computes the merged config, and the local sandbox
//! driver writes its file, with the same function, so the three cannot drift.

use std::collections::HashMap;

use fleetledger_events::instance::ConfigPath;
use serde_json::{Map, Value};

/// The keys of a path as `flatten` writes them.
pub fn segments(path: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(bracketed) = rest.strip_prefix('[') {
            let mut stream = serde_json::Deserializer::from_str(bracketed).into_iter::<String>();
            let key = stream.next().ok_or("empty bracket")?.map_err(|e| e.to_string())?;
            let after = &bracketed[stream.byte_offset()..];
            rest = after.strip_prefix(']').ok_or_else(|| format!("unclosed bracket in {path}"))?;
            out.push(key);
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            if end == 0 {
                return Err(format!("empty key in {path}"));
            }
            out.push(rest_trimmed[..end].to_string());
            rest = &rest_trimmed[end..];
        }
    }
    Ok(out)
}

/// Applies `config set`/`unset` paths to a config, as the CLI does: missing parents are
/// created as objects (replacing a non-object in the way), other keys are untouched. A
/// path that does not parse stops there, with the paths before it applied.
pub fn apply_paths(config: &mut Value, paths: &[ConfigPath]) -> Result<(), String> {
    let mut root = Node::Value(std::mem::take(config));
    let applied = paths.iter().try_for_each(|p| apply_path(&mut root, p));
    *config = root.into_value();
    applied
}

fn apply_path(root: &mut Node, p: &ConfigPath) -> Result<(), String> {
    let keys = segments(&p.path)?;
    let Some((last, parents)) = keys.split_last() else {
        return Ok(());
    };
    let mut node = root;
    for key in parents {
        if !node.is_object() {
            *node = Node::Object(Entries::default());
        }
        node = node.entries().expect("made an object").get_or_insert_object(key);
        if !node.is_object() && p.value.is_some() {
            *node = Node::Object(Entries::default());
        }
    }
    match (&p.value, node.is_object()) {
        (Some(value), true) => node.entries().expect("an object").insert(last, value.clone()),
        (Some(value), false) => {
            let mut entries = Entries::default();
            entries.insert(last, value.clone());
            *node = Node::Object(entries);
        }
        (None, true) => node.entries().expect("an object").remove(last),
        (None, false) => {}
    }
    Ok(())
}

/// A config while paths are applied to it. The objects paths walk into are held as
/// `Entries`; everything else stays the `Value` it was. `serde_json::Map` keeps its order
/// by shifting every later key on a removal, which made unsetting many keys of one object
/// quadratic; `Entries` removes in O(1) and keeps the others' order all the same.
enum Node {
    Value(Value),
    Object(Entries),
}

impl Node {
    fn is_object(&self) -> bool {
        matches!(self, Node::Object(_) | Node::Value(Value::Object(_)))
    }

    /// The entries of an object, once it is walked into; `None` for anything else.
    fn entries(&mut self) -> Option<&mut Entries> {
        if let Node::Value(Value::Object(map)) = self {
            let map = std::mem::take(map);
            *self = Node::Object(Entries::from_map(map));
        }
        match self {
            Node::Object(entries) => Some(entries),
            Node::Value(_) => None,
        }
    }

    fn into_value(self) -> Value {
        match self {
            Node::Value(value) => value,
            Node::Object(entries) => Value::Object(entries.into_map()),
        }
    }
}

/// An object's keys in their order: a removed key leaves an empty slot (dropped when the
/// object becomes a `Value` again), a new key takes a slot at the end, as in the CLI's
/// `openclaw.json`.
#[derive(Default)]
struct Entries {
    slots: Vec<Option<(String, Node)>>,
    index: HashMap<String, usize>,
}

impl Entries {
    fn from_map(map: Map<String, Value>) -> Self {
        let mut entries = Entries {
            slots: Vec::with_capacity(map.len()),
            index: HashMap::with_capacity(map.len()),
        };
        for (key, value) in map {
            entries.index.insert(key.clone(), entries.slots.len());
            entries.slots.push(Some((key, Node::Value(value))));
        }
        entries
    }

    fn slot(&mut self, key: &str) -> Option<&mut Node> {
        let at = *self.index.get(key)?;
        self.slots[at].as_mut().map(|(_, node)| node)
    }

    fn push(&mut self, key: &str, node: Node) -> &mut Node {
        let at = self.slots.len();
        self.index.insert(key.to_string(), at);
        self.slots.push(Some((key.to_string(), node)));
        &mut self.slots[at].as_mut().expect("just pushed").1
    }

    /// The value under `key`, made an empty object when there is none.
    fn get_or_insert_object(&mut self, key: &str) -> &mut Node {
        match self.index.get(key) {
            Some(&at) => &mut self.slots[at].as_mut().expect("indexed slots are filled").1,
            None => self.push(key, Node::Object(Entries::default())),
        }
    }

    /// Sets `key`, in its place when it exists, else at the end.
    fn insert(&mut self, key: &str, value: Value) {
        match self.slot(key) {
            Some(node) => *node = Node::Value(value),
            None => {
                self.push(key, Node::Value(value));
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(at) = self.index.remove(key) {
            self.slots[at] = None;
        }
    }

    fn into_map(self) -> Map<String, Value> {
        self.slots
            .into_iter()
            .flatten()
            .map(|(key, node)| (key, node.into_value()))
            .collect()
    }
}
