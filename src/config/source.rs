//! Where each value of a YAML document sits (line and column per JSON
//! pointer), and `${VAR}` / `${VAR:-default}` interpolation.
//!
//! serde_yaml gives the data but no spans, so positions come from a second,
//! event-level pass with yaml-rust2. Positions only decorate diagnostics:
//! if the two parsers ever disagree, a message points at the parent value.

use super::diag::escape_segment;
use std::collections::{HashMap, HashSet};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Positions of values and mapping keys, by JSON pointer.
#[derive(Debug, Default)]
pub struct SourceMap {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    sequences: HashSet<String>,
}

impl SourceMap {
    pub fn build(text: &str) -> SourceMap {
        let mut b = Builder::default();
        // A syntax error is reported by serde_yaml with its own position;
        // whatever was mapped before it is still useful.
        let _ = Parser::new_from_str(text).load(&mut b, false);
        b.map
    }

    /// Position of the value at `pointer`, else of its nearest ancestor.
    pub fn value(&self, pointer: &str) -> Pos {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, column: 1 },
            }
        }
    }

    /// Position of the key of the entry at `pointer` (for unknown fields),
    /// falling back to the value's position.
    pub fn key(&self, pointer: &str) -> Pos {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.value(pointer))
    }

    /// Whether the value at `pointer` is a sequence (for `routes[2]` display).
    pub fn is_sequence(&self, pointer: &str) -> bool {
        self.sequences.contains(pointer)
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        index: usize,
    },
    /// A complex (non-scalar) mapping key: ignored with everything inside.
    Skip,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    map: SourceMap,
}

fn pos(m: Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

impl Builder {
    /// Path of a value starting now, or None while the event is a mapping key.
    fn value_path(&mut self, ev: &Event, mark: Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Skip) => None,
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(format!("{path}/{}", escape_segment(&k))),
                None => {
                    if let Event::Scalar(k, ..) = ev {
                        let p = format!("{path}/{}", escape_segment(k));
                        self.map.keys.insert(p, pos(mark));
                        *key = Some(k.clone());
                    } else {
                        *key = Some(String::from("?"));
                    }
                    None
                }
            },
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}/{index}");
                *index += 1;
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Scalar(..) | Event::Alias(..) => {
                if let Some(p) = self.value_path(&ev, mark) {
                    self.map.values.insert(p, pos(mark));
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                match self.value_path(&ev, mark) {
                    Some(p) => {
                        self.map.values.insert(p.clone(), pos(mark));
                        if matches!(ev, Event::MappingStart(..)) {
                            self.stack.push(Frame::Map { path: p, key: None });
                        } else {
                            self.map.sequences.insert(p.clone());
                            self.stack.push(Frame::Seq { path: p, index: 0 });
                        }
                    }
                    None if is_key || matches!(self.stack.last(), Some(Frame::Skip)) => {
                        self.stack.push(Frame::Skip)
                    }
                    None => self.stack.push(Frame::Skip),
                }
            }
            _ => {}
        }
    }
}

/// Where the first line indented with a tab has it: YAML indents with
/// spaces only, and the parser's own message does not say "tab".
pub fn tab_in_indentation(text: &str) -> Option<Pos> {
    text.lines().enumerate().find_map(|(i, line)| {
        let indent = &line[..line.len() - line.trim_start_matches([' ', '\t']).len()];
        indent.find('\t').map(|c| Pos {
            line: i + 1,
            column: c + 1,
        })
    })
}

/// An interpolation failure: the JSON pointer of the string and the message.
pub type InterpolationError = (String, String);

/// What [`interpolate`] could not replace.
#[derive(Debug, Default)]
pub struct Unresolved {
    /// Errors (a bad `${`, or an unset variable without `allow_missing`).
    pub errors: Vec<InterpolationError>,
    /// Pointers of strings left as written because a variable is unset
    /// (with `allow_missing`): placeholders nothing may be concluded from.
    pub placeholders: Vec<String>,
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string scalar of `value`.
/// A scalar that is exactly one `${...}` is re-read as YAML, so
/// `worker_threads: ${WORKERS}` yields a number. `$${` escapes a literal `${`.
/// With `allow_missing`, a string naming an unset variable is left as
/// written and listed as a placeholder instead of being an error.
pub fn interpolate(
    value: &mut serde_yaml::Value,
    pointer: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    allow_missing: bool,
    out: &mut Unresolved,
) {
    match value {
        serde_yaml::Value::String(s) if s.contains("${") => match substitute(s, env) {
            Ok(out) => {
                let whole = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
                *value = if whole {
                    match serde_yaml::from_str::<serde_yaml::Value>(&out) {
                        Ok(v @ (serde_yaml::Value::Number(_) | serde_yaml::Value::Bool(_))) => v,
                        _ => serde_yaml::Value::String(out),
                    }
                } else {
                    serde_yaml::Value::String(out)
                };
            }
            Err(Failure::Unset(_)) if allow_missing => out.placeholders.push(pointer.clone()),
            Err(Failure::Unset(msg) | Failure::Invalid(msg)) => {
                out.errors.push((pointer.clone(), msg))
            }
        },
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                interpolate(item, pointer, env, allow_missing, out);
                pointer.truncate(len);
            }
        }
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&escape_segment(k.as_str().unwrap_or("?")));
                interpolate(v, pointer, env, allow_missing, out);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// Why a string could not be interpolated (the message names it).
#[derive(Debug)]
enum Failure {
    Unset(String),
    Invalid(String),
}

impl Failure {
    #[cfg(test)]
    fn message(&self) -> &str {
        match self {
            Failure::Unset(m) | Failure::Invalid(m) => m,
        }
    }
}

fn substitute(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Failure> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            // `$${` is a literal `${`.
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let body_end = rest[i..]
            .find('}')
            .ok_or_else(|| Failure::Invalid(format!("unterminated `${{` in {s:?}")))?;
        let body = &rest[i + 2..i + body_end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Failure::Invalid(format!(
                "invalid variable name {name:?} in {s:?}"
            )));
        }
        match (
            env(name).filter(|v| !v.is_empty() || default.is_none()),
            default,
        ) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(Failure::Unset(format!(
                    "environment variable {name} is not set (use ${{{name}:-default}} for a fallback)"
                )));
            }
        }
        rest = &rest[i + body_end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            "WORKERS" => Some("8".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_variables_and_defaults() {
        assert_eq!(substitute("a-${SECRET}-b", &env).unwrap(), "a-s3cr3t-b");
        assert_eq!(substitute("${MISSING:-x}", &env).unwrap(), "x");
        assert_eq!(substitute("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(substitute("$${SECRET}", &env).unwrap(), "${SECRET}");
        let err = substitute("${MISSING}", &env).unwrap_err();
        assert!(err.message().contains("MISSING is not set"), "{err:?}");
        assert!(substitute("${SECRET", &env).is_err());
        assert!(substitute("${BAD NAME}", &env).is_err());
    }

    #[test]
    fn whole_variable_becomes_a_number() {
        let mut v: serde_yaml::Value =
            serde_yaml::from_str("n: ${WORKERS}\ns: x${WORKERS}").unwrap();
        let mut out = Unresolved::default();
        interpolate(&mut v, &mut String::new(), &env, false, &mut out);
        assert!(out.errors.is_empty());
        assert_eq!(v["n"], serde_yaml::Value::Number(8.into()));
        assert_eq!(v["s"], serde_yaml::Value::String("x8".into()));
    }

    #[test]
    fn unset_variables_become_placeholders_when_allowed() {
        let text = "a: ${MISSING}\nb: [\"x-${MISSING}\"]\nc: ${SECRET}\n";
        let mut v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        let mut out = Unresolved::default();
        interpolate(&mut v, &mut String::new(), &env, true, &mut out);
        assert!(out.errors.is_empty());
        assert_eq!(out.placeholders, ["/a", "/b/0"]);
        assert_eq!(v["a"], serde_yaml::Value::String("${MISSING}".into()));
        assert_eq!(v["c"], serde_yaml::Value::String("s3cr3t".into()));
        let mut v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        let mut out = Unresolved::default();
        interpolate(&mut v, &mut String::new(), &env, false, &mut out);
        assert_eq!(out.errors.len(), 2);
        assert!(out.placeholders.is_empty());
    }

    #[test]
    fn finds_a_tab_in_the_indentation() {
        assert_eq!(tab_in_indentation("a:\n  b: 1\n"), None);
        assert_eq!(tab_in_indentation("a: \"x\ty\"\n"), None);
        assert_eq!(
            tab_in_indentation("a:\n  b: 1\n \tc: 2\n"),
            Some(Pos { line: 3, column: 2 })
        );
    }

    #[test]
    fn maps_positions_of_keys_and_values() {
        let text = "server:\n  bind_address: \"x\"\nroutes:\n  - { path: \"/a\", upstream: u }\n  - path: /b\n";
        let m = SourceMap::build(text);
        assert_eq!(
            m.value("/server/bind_address"),
            Pos {
                line: 2,
                column: 17
            }
        );
        assert_eq!(m.key("/server/bind_address"), Pos { line: 2, column: 3 });
        assert_eq!(
            m.value("/routes/0/upstream"),
            Pos {
                line: 4,
                column: 29
            }
        );
        assert_eq!(
            m.value("/routes/1/path"),
            Pos {
                line: 5,
                column: 11
            }
        );
        assert!(m.is_sequence("/routes"));
        // Unknown pointers fall back to the nearest ancestor.
        assert_eq!(m.value("/routes/1/nothing"), m.value("/routes/1"));
    }
}
