//! `gateway validate FILE...`: the same function a start or reload runs
//! ([`prepare_bytes`]), for CI pipelines, pre-commit hooks and editors.

use crate::config::{Diagnostic, Severity, read_file};
use crate::runtime::{CompileContext, prepare_bytes};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The file name that means standard input, and its name in diagnostics.
pub const STDIN: &str = "-";
const STDIN_NAME: &str = "<stdin>";

/// How problems are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One line per problem, `FILE:LINE:COLUMN: field.path: message`, and
    /// `FILE: ok` per valid file.
    #[default]
    Text,
    /// One JSON array of `{file, line, column, path, severity, message}`.
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Look up server names (a start does); off for pipelines without the
    /// production DNS.
    pub resolve_names: bool,
    /// Unset `${VAR}` are placeholders, not errors (pipelines without the
    /// secrets); nothing is concluded from a placeholder.
    pub allow_missing_env: bool,
    pub format: Format,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            resolve_names: true,
            allow_missing_env: false,
            format: Format::Text,
        }
    }
}

/// Checks every file (`-` is standard input), writes its problems
/// (warnings too) to `out`, and returns whether all files are valid.
pub fn validate_files(files: &[PathBuf], opts: &Options, out: &mut dyn Write) -> bool {
    let ctx = CompileContext {
        resolve_names: opts.resolve_names,
        ..CompileContext::default()
    };
    let mut ok = true;
    let mut all = vec![];
    for f in files {
        let (name, bytes) = match read(f) {
            Ok(read) => read,
            Err(diags) => {
                ok = false;
                report(out, opts.format, &diags, None, &mut all);
                continue;
            }
        };
        match prepare_bytes(&name, &bytes, &ctx, opts.allow_missing_env) {
            Ok(p) => report(out, opts.format, &p.warnings, Some(&name), &mut all),
            Err(e) => {
                ok = false;
                let mut diags = e.warnings;
                diags.extend(e.errors);
                report(out, opts.format, &diags, None, &mut all);
            }
        }
    }
    if opts.format == Format::Json {
        let text = serde_json::to_string_pretty(&all).unwrap_or_default();
        let _ = writeln!(out, "{text}");
    }
    ok
}

/// The name in diagnostics and the bytes of `f` (standard input for `-`).
fn read(f: &Path) -> Result<(String, Vec<u8>), Vec<Diagnostic>> {
    if f.as_os_str() == STDIN {
        let mut bytes = vec![];
        return match std::io::stdin().read_to_end(&mut bytes) {
            Ok(_) => Ok((STDIN_NAME.to_string(), bytes)),
            Err(e) => Err(vec![Diagnostic {
                severity: Severity::Error,
                file: STDIN_NAME.into(),
                line: 1,
                column: 1,
                path: String::new(),
                message: format!("cannot read standard input: {e}"),
            }]),
        };
    }
    match read_file(f) {
        Ok(bytes) => Ok((f.display().to_string(), bytes)),
        Err(e) => Err(e.errors),
    }
}

/// Text: one line per problem now (then `FILE: ok` for a valid file);
/// JSON: collected into `all`, printed once at the end.
fn report(
    out: &mut dyn Write,
    format: Format,
    diags: &[Diagnostic],
    ok_file: Option<&str>,
    all: &mut Vec<serde_json::Value>,
) {
    for d in diags {
        match format {
            Format::Text => {
                let _ = writeln!(out, "{d}");
            }
            Format::Json => all.push(serde_json::json!({
                "file": &*d.file,
                "line": d.line,
                "column": d.column,
                "path": d.path,
                "severity": match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                },
                "message": d.message,
            })),
        }
    }
    if let (Format::Text, Some(file)) = (format, ok_file) {
        let _ = writeln!(out, "{file}: ok");
    }
}
