//! A typed config from a document that failed the schema, so the semantic
//! checks still run and one `gateway validate` reports every problem.
//!
//! Each value serde cannot take is removed (its default applies) or, where
//! a value is required, replaced by a stand-in of some type serde accepts.
//! Every value touched is marked damaged in the [`Reporter`]: nothing is
//! reported about it again (the schema error already was), so a stand-in
//! never produces an error or warning of its own.

use super::Reporter;
use super::diag::escape_segment;
use super::model::FileConfig;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Repairs per document at most: a bound, not an expectation.
const MAX_REPAIRS: usize = 256;

/// The document as a [`FileConfig`], repaired where needed; `None` when it
/// cannot be repaired (the errors found so far stand).
pub(super) fn typed(mut json: Value, r: &mut Reporter) -> Option<FileConfig> {
    let stand_ins = || [json!(""), json!(0), json!(false), json!([]), json!({})];
    // Per value: removed already, and how many stand-ins were tried.
    let mut tried: HashMap<String, (bool, usize)> = HashMap::new();
    for _ in 0..MAX_REPAIRS {
        let e = match serde_path_to_error::deserialize::<_, FileConfig>(&json) {
            Ok(c) => return Some(c),
            Err(e) => e,
        };
        let at = path_to_pointer(e.path());
        let msg = e.into_inner().to_string();
        let (target, remove) = match quoted(&msg, "missing field `") {
            Some(field) => (format!("{at}/{}", escape_segment(field)), false),
            None => match quoted(&msg, "unknown field `") {
                Some(field) if !at.ends_with(&format!("/{}", escape_segment(field))) => {
                    (format!("{at}/{}", escape_segment(field)), true)
                }
                _ => (at, true),
            },
        };
        // The schema should have caught it; if it did not, say it here.
        r.error(&target, msg);
        r.damage(&target);
        let (parent, key) = target.split_at(target.rfind('/')?);
        let key = unescape(&key[1..]);
        let container = json.pointer_mut(parent)?;
        let (removed, n) = tried.entry(target).or_default();
        match container {
            Value::Object(o) if remove && !*removed && o.contains_key(&key) => {
                o.remove(&key);
                *removed = true;
                continue;
            }
            Value::Object(o) => {
                o.insert(key, stand_ins().get(*n)?.clone());
            }
            Value::Array(a) => {
                let i: usize = key.parse().ok()?;
                *a.get_mut(i)? = stand_ins().get(*n)?.clone();
            }
            _ => return None,
        }
        *n += 1;
    }
    None
}

/// The name in `` prefix`name` ``, from a serde message.
fn quoted<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &msg[msg.find(prefix)? + prefix.len()..];
    Some(&rest[..rest.find('`')?])
}

fn unescape(seg: &str) -> String {
    seg.replace("~1", "/").replace("~0", "~")
}

pub(super) fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut s = String::new();
    for seg in path.iter() {
        s.push('/');
        match seg {
            Segment::Seq { index } => s.push_str(&index.to_string()),
            Segment::Map { key } => s.push_str(&escape_segment(key)),
            Segment::Enum { variant } => s.push_str(variant),
            Segment::Unknown => s.push('?'),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    const DEFAULT: &str = include_str!("../../config/default.yaml");

    /// Every value of the seed config replaced, one at a time, by values of
    /// the wrong shape (or null): never a panic, never an endless repair.
    #[test]
    fn any_value_of_the_wrong_shape_is_an_error_not_a_panic() {
        for (i, line) in DEFAULT.lines().enumerate() {
            let Some((key, _)) = line.split_once(": ") else {
                continue;
            };
            for bad in ["[1, {a: b}]", "{x: [y]}", "-1e400", "\"\"", "~"] {
                let text: Vec<String> = DEFAULT
                    .lines()
                    .enumerate()
                    .map(|(j, l)| {
                        if i == j {
                            format!("{key}: {bad}")
                        } else {
                            l.to_string()
                        }
                    })
                    .collect();
                let _ = super::super::load_str("t.yaml", &text.join("\n"), &|_| None);
            }
        }
    }
}
