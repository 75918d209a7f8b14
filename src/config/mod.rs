//! Reading a config file: text → interpolate `${VAR}` → JSON-schema check →
//! typed [`model::FileConfig`] → semantic checks. Every problem is collected
//! (not only the first) as a [`Diagnostic`] with file, line, column and field
//! path. `gateway validate`, the start and every reload call [`load_file`]
//! and then `runtime::compile`: there is no second validation path.

mod check_acme;
mod check_tls;
mod check_upstream_tls;
pub mod diag;
pub mod edge;
mod hash;
pub mod model;
mod one_or_many;
mod repair;
pub mod seconds;
pub mod source;
pub mod tls;
pub mod upstream_tls;

mod check;
mod check_auth;
mod check_edge;
mod defaults;

pub use check_upstream_tls::host_of as server_host;
pub use defaults::{HEADER_TIMEOUT, MAX_HEADER_BYTES};
pub use diag::{ConfigErrors, Diagnostic, Severity};
pub use hash::ConfigHash;
pub use model::FileConfig;

use source::SourceMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

/// The JSON schema of [`FileConfig`], as committed in `schema/gateway.schema.json`.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(FileConfig)).expect("schema serializes")
}

/// The schema as printed by `gateway schema` (pretty, trailing newline).
pub fn schema_string() -> String {
    let mut s = serde_json::to_string_pretty(&schema()).expect("schema serializes");
    s.push('\n');
    s
}

static SCHEMA: LazyLock<serde_json::Value> = LazyLock::new(schema);
static VALIDATOR: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| jsonschema::validator_for(&SCHEMA).expect("generated schema is valid"));

/// An `https://` or `http://` URL the gateway can fetch from (discovery,
/// JWKS, introspection); the error says what to do.
pub fn fetch_url(url: &str) -> Result<(), String> {
    match url.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Ok(()),
        _ => Err(format!(
            "\"{url}\" is not an http(s) URL (e.g. \"https://auth.example.com\")"
        )),
    }
}

/// A file that passed every check: its typed config, warnings and identity.
#[derive(Debug)]
pub struct Loaded {
    pub config: FileConfig,
    pub warnings: Vec<Diagnostic>,
    /// SHA-256 of the bytes checked: equal hashes mean nothing to reload.
    pub hash: ConfigHash,
    pub(crate) report: Reporter,
}

/// Builds diagnostics that point into one file.
#[derive(Debug)]
pub(crate) struct Reporter {
    pub file: Arc<str>,
    pub map: SourceMap,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// Values nothing more is said about: placeholders of unset variables,
    /// values the schema rejected, and their stand-ins (see `repair`).
    damaged: Vec<String>,
}

impl Reporter {
    fn new(file: &str, text: &str) -> Self {
        Reporter {
            file: file.into(),
            map: SourceMap::build(text),
            errors: vec![],
            warnings: vec![],
            damaged: vec![],
        }
    }

    /// Marks the value under `pointer` (and everything in it) as damaged.
    fn damage(&mut self, pointer: &str) {
        self.damaged.push(pointer.to_string());
    }

    /// Whether `pointer` is a damaged value or inside one.
    fn is_damaged(&self, pointer: &str) -> bool {
        self.damaged.iter().any(|d| {
            pointer
                .strip_prefix(d.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    fn diag(
        &self,
        severity: Severity,
        pos: source::Pos,
        pointer: &str,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: diag::display_path(pointer, |p| {
                let parent = &p[..p.rfind('/').unwrap_or(0)];
                self.map.is_sequence(parent)
            }),
            message,
        }
    }

    /// An error at the value under `pointer` (none about a damaged value).
    pub fn error(&mut self, pointer: &str, message: impl Into<String>) {
        if self.is_damaged(pointer) {
            return;
        }
        let d = self.diag(
            Severity::Error,
            self.map.value(pointer),
            pointer,
            message.into(),
        );
        self.errors.push(d);
    }

    /// An error at the key of the entry under `pointer` (unknown fields).
    pub fn error_at_key(&mut self, pointer: &str, message: impl Into<String>) {
        if self.is_damaged(pointer) {
            return;
        }
        let d = self.diag(
            Severity::Error,
            self.map.key(pointer),
            pointer,
            message.into(),
        );
        self.errors.push(d);
    }

    /// Where the value under `pointer` is, as an error without a message
    /// yet (for problems found later, reported in the same form).
    pub fn locate(&self, pointer: &str) -> Diagnostic {
        self.diag(
            Severity::Error,
            self.map.value(pointer),
            pointer,
            String::new(),
        )
    }

    /// A warning at the value under `pointer` (never about a placeholder).
    pub fn warning(&mut self, pointer: &str, message: impl Into<String>) {
        if self.is_damaged(pointer) {
            return;
        }
        let d = self.diag(
            Severity::Warning,
            self.map.value(pointer),
            pointer,
            message.into(),
        );
        self.warnings.push(d);
    }

    fn error_at(&mut self, pos: source::Pos, message: String) {
        let d = self.diag(Severity::Error, pos, "", message);
        self.errors.push(d);
    }

    pub fn into_errors(mut self) -> ConfigErrors {
        let by_position = |d: &Diagnostic| (d.line, d.column);
        self.errors.sort_by_key(by_position);
        self.warnings.sort_by_key(by_position);
        ConfigErrors {
            errors: self.errors,
            warnings: self.warnings,
        }
    }
}

/// The bytes of `path`, read once, or the "cannot read file" diagnostic.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ConfigErrors> {
    std::fs::read(path).map_err(|e| {
        let mut r = Reporter::new(&path.display().to_string(), "");
        r.error_at(
            source::Pos { line: 1, column: 1 },
            format!("cannot read file: {e}"),
        );
        r.into_errors()
    })
}

/// Reads `path` once and checks those bytes. The file name in
/// diagnostics is `path` as given.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigErrors> {
    let bytes = read_file(path)?;
    let name = path.display().to_string();
    load_bytes(&name, &bytes, &|k| std::env::var(k).ok(), false)
}

/// Checks `text` as the content of file `name`, with `env` for `${VAR}`.
pub fn load_str(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    load_bytes(name, text.as_bytes(), env, false)
}

/// Checks `bytes` as the content of file `name`; [`Loaded::hash`] is their
/// SHA-256. With `allow_missing_env` (`gateway validate --allow-missing-env`)
/// a string naming an unset variable is a placeholder: no error, and
/// nothing (no length warning, no follow-on error) is concluded from it.
/// Every check that can run does, whatever else failed: a document that
/// parses gets its schema and semantic problems reported together.
pub fn load_bytes(
    name: &str,
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
    allow_missing_env: bool,
) -> Result<Loaded, ConfigErrors> {
    let hash = ConfigHash::of(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let mut r = Reporter::new(name, "");
            let before = &bytes[..e.valid_up_to()];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            r.error_at(
                source::Pos { line, column },
                "invalid UTF-8: a config file is UTF-8 text".into(),
            );
            return Err(r.into_errors());
        }
    };
    let mut r = Reporter::new(name, text);

    if text.trim().is_empty() {
        r.error_at(source::Pos { line: 1, column: 1 }, "file is empty".into());
        return Err(r.into_errors());
    }
    let mut yaml: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            if let Some(pos) = source::tab_in_indentation(text) {
                r.error_at(
                    pos,
                    "invalid YAML: a tab in the indentation (YAML indents with spaces only)".into(),
                );
                return Err(r.into_errors());
            }
            let pos = e
                .location()
                .map(|l| source::Pos {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or(source::Pos { line: 1, column: 1 });
            r.error_at(
                pos,
                format!("invalid YAML: {}", strip_location(&e.to_string())),
            );
            return Err(r.into_errors());
        }
    };

    let mut unresolved = source::Unresolved::default();
    source::interpolate(
        &mut yaml,
        &mut String::new(),
        env,
        allow_missing_env,
        &mut unresolved,
    );
    for (pointer, msg) in unresolved.errors {
        r.error(&pointer, msg);
        r.damage(&pointer);
    }
    for pointer in unresolved.placeholders {
        r.damage(&pointer);
    }

    let json: serde_json::Value = match serde_json::to_value(&yaml) {
        Ok(v) => v,
        Err(e) => {
            r.error("", format!("unsupported YAML value: {e}"));
            return Err(r.into_errors());
        }
    };

    schema_errors(&json, &mut r);
    // The semantic checks run on the document repaired where the schema
    // failed, so one run reports everything.
    let Some(config) = repair::typed(json, &mut r) else {
        return Err(r.into_errors());
    };
    check::check(&config, &mut r);
    if !r.errors.is_empty() {
        return Err(r.into_errors());
    }
    let warnings = std::mem::take(&mut r.warnings);
    Ok(Loaded {
        config,
        warnings,
        hash,
        report: r,
    })
}

/// Runs the JSON schema over the document and turns each violation into a
/// diagnostic; unknown fields get a did-you-mean suggestion.
fn schema_errors(json: &serde_json::Value, r: &mut Reporter) {
    let mut rejected = vec![];
    for e in VALIDATOR.iter_errors(json) {
        let pointer = e.instance_path().as_str().to_string();
        match e.kind() {
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                let schema_path = e.schema_path().as_str();
                let parent = &schema_path[..schema_path.rfind('/').unwrap_or(0)];
                let known: Vec<&str> = SCHEMA
                    .pointer(&format!("{parent}/properties"))
                    .and_then(|p| p.as_object())
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                for name in unexpected {
                    let field = format!("{pointer}/{}", diag::escape_segment(name));
                    r.error_at_key(&field, unknown_field_message(name, &known));
                    rejected.push(field);
                }
            }
            jsonschema::error::ValidationErrorKind::Required { property } => {
                let prop = property.as_str().unwrap_or("?");
                r.error(&pointer, format!("missing required field \"{prop}\""));
                rejected.push(format!("{pointer}/{}", diag::escape_segment(prop)));
            }
            jsonschema::error::ValidationErrorKind::Enum { options } => {
                let choices: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().map(|o| o.to_string()).collect())
                    .unwrap_or_default();
                r.error(
                    &pointer,
                    format!("{} is not one of {}", e.instance(), choices.join(", ")),
                );
                rejected.push(pointer);
            }
            _ => {
                r.error(&pointer, e.to_string());
                rejected.push(pointer);
            }
        }
    }
    for pointer in rejected {
        r.damage(&pointer);
    }
}

/// `unknown field "x"`, with the closest known name when one is close.
pub(crate) fn unknown_field_message(name: &str, known: &[&str]) -> String {
    match did_you_mean(name, known) {
        Some(s) => format!("unknown field \"{name}\", did you mean \"{s}\"?"),
        None if known.is_empty() => format!("unknown field \"{name}\""),
        None => format!(
            "unknown field \"{name}\" (expected one of: {})",
            known.join(", ")
        ),
    }
}

/// The known name closest to `name`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// serde_yaml appends " at line L column C"; the diagnostic already says so.
fn strip_location(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = include_str!("../../config/default.yaml");

    fn load(text: &str) -> Result<Loaded, ConfigErrors> {
        load_str("t.yaml", text, &|_| None)
    }

    fn errors(text: &str) -> Vec<String> {
        load(text)
            .expect_err("should fail")
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn default_config_is_valid() {
        let loaded = load(DEFAULT).unwrap();
        assert_eq!(loaded.config.routes.len(), 6);
        // The seed's secret is short: a warning, not an error.
        assert!(loaded.warnings.iter().any(|w| w.path == "auth.jwt_secret"));
    }

    #[test]
    fn unknown_field_suggests_the_closest() {
        let text = DEFAULT.replace(
            "  bind_address: \"0.0.0.0:6188\"",
            "  bind_adress: \"0.0.0.0:6188\"",
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("t.yaml:4:3: server.bind_adress: unknown field \"bind_adress\", did you mean \"bind_address\"?"),
            "{errs:?}"
        );
    }

    #[test]
    fn every_error_is_reported() {
        let text = DEFAULT
            .replace("upstream: \"kline-service\"", "upstream: \"kline\"")
            .replace("interval_seconds: 30", "interval_seconds: 0");
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let errs = errors("server:\n  bind_address: [\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("t.yaml:3:1: (document): invalid YAML"),
            "{errs:?}"
        );
    }

    #[test]
    fn schema_and_semantic_errors_come_together() {
        let text = DEFAULT
            .replace("worker_threads: 4", "worker_threads: \"four\"")
            .replace("upstream: \"kline-service\"", "upstream: \"kline\"");
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("server.worker_threads"), "{errs:?}");
        assert!(errs[1].contains("unknown upstream \"kline\""), "{errs:?}");
    }

    #[test]
    fn nothing_is_concluded_from_a_placeholder() {
        let text = DEFAULT.replace("\"your-jwt-secret\"", "\"${JWT_SECRET}\"");
        let ok = load_bytes("t.yaml", text.as_bytes(), &|_| None, true).unwrap();
        assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
        // The same bytes, the same hash, whatever the environment.
        assert_eq!(ok.hash, ConfigHash::of(text.as_bytes()));
    }

    #[test]
    fn audience_is_a_string_or_a_list() {
        let with = |aud: &str| {
            let text = DEFAULT.replace(
                "  jwt_secret: \"your-jwt-secret\"",
                &format!("  jwt_secret: \"your-jwt-secret\"\n  audience: {aud}"),
            );
            load(&text).unwrap().config.auth.audience
        };
        assert_eq!(with("api"), Some(vec!["api".to_string()]));
        assert_eq!(
            with("[api, admin]"),
            Some(vec!["api".to_string(), "admin".to_string()])
        );
    }

    #[test]
    fn unset_variable_is_named() {
        let text = DEFAULT.replace("\"your-jwt-secret\"", "\"${JWT_SECRET}\"");
        let errs = errors(&text);
        assert!(
            errs[0].contains("auth.jwt_secret: environment variable JWT_SECRET is not set"),
            "{errs:?}"
        );
        let ok = load_str("t.yaml", &text, &|k| {
            (k == "JWT_SECRET").then(|| "x".repeat(40))
        })
        .unwrap();
        assert_eq!(
            ok.config.auth.jwt_secret.as_deref(),
            Some("x".repeat(40).as_str())
        );
        assert!(ok.warnings.is_empty());
    }
}
