//! `gateway validate FILE...`: the same [`prepare`] a start or reload runs.

use crate::runtime::{CompileContext, prepare};
use std::io::Write;
use std::path::PathBuf;

/// Checks every file, writes one line per problem (warnings too) to `out`,
/// and returns whether all files are valid.
/// `resolve_names: false` skips DNS lookups of server names (for CI
/// pipelines without the production DNS); everything else is checked.
pub fn validate_files(files: &[PathBuf], resolve_names: bool, out: &mut dyn Write) -> bool {
    let ctx = CompileContext {
        resolve_names,
        ..CompileContext::default()
    };
    let mut ok = true;
    for f in files {
        match prepare(f, &ctx) {
            Ok(p) => {
                for w in &p.warnings {
                    let _ = writeln!(out, "{w}");
                }
                let _ = writeln!(out, "{}: ok", f.display());
            }
            Err(e) => {
                ok = false;
                for d in e.warnings.iter().chain(&e.errors) {
                    let _ = writeln!(out, "{d}");
                }
            }
        }
    }
    ok
}
