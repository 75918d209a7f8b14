//! The module graph points one way. Each top-level module of `src/` may use
//! only modules of lower layers in [`LAYERS`]; a `use crate::…` (or any
//! `crate::` path, doc links included) that points up or sideways fails
//! here, and any cycle between top-level modules fails too. The README's
//! "Architecture" section draws the same layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A module may use modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    // Leaves: parsers and the route matcher, which `config`'s checks reuse
    // (so `validate` and a start cannot disagree on a pattern or a host).
    &["host", "routing"],
    &["forwarding"],
    // The config as written, and its checks.
    &["config"],
    // Components: each sees `config` and the leaves, not the runtime.
    &["auth", "downstream", "health", "logging", "policy", "tls"],
    &["idle", "metrics", "upstream"],
    // The reloadable snapshot, compiled from a checked config, and the
    // process-wide state it borrows.
    &["runtime"],
    &["proxy", "reload"],
    &["admin", "lifecycle"],
    // Composition root and entry points.
    &["cli", "server", "validate"],
];

fn top_modules() -> BTreeMap<String, Vec<std::path::PathBuf>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut mods: BTreeMap<String, Vec<std::path::PathBuf>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(&src).unwrap();
                let top = rel
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy();
                let top = top.trim_end_matches(".rs").to_string();
                if top != "main" && top != "lib" {
                    mods.entry(top).or_default().push(p);
                }
            }
        }
    }
    mods
}

/// `crate::NAME` references outside `#[cfg(test)] mod tests`.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mods = top_modules();
    let mut edges = BTreeMap::new();
    for (m, files) in &mods {
        let mut out = BTreeSet::new();
        for f in files {
            let text = std::fs::read_to_string(f).unwrap();
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => &text[..i],
                None => &text[..],
            };
            let mut rest = text;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + 7..];
                if rest.starts_with('{') {
                    let end = rest.find('}').unwrap_or(rest.len());
                    for part in rest[1..end].split(',') {
                        let name = part.trim().split("::").next().unwrap_or("").trim();
                        if mods.contains_key(name) && name != m {
                            out.insert(name.to_string());
                        }
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if mods.contains_key(&name) && &name != m {
                        out.insert(name);
                    }
                }
            }
        }
        edges.insert(m.clone(), out);
    }
    edges
}

#[test]
fn no_cycles_between_top_level_modules() {
    let edges = edges();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for n in &edges[m] {
            match state.get(n.as_str()) {
                Some(1) => {
                    let i = stack.iter().position(|s| s == n).unwrap();
                    cycles.push(format!("{} -> {n}", stack[i..].join(" -> ")));
                }
                None => visit(n, edges, state, stack, cycles),
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
    }
    let (mut state, mut cycles) = (BTreeMap::new(), vec![]);
    for m in edges.keys() {
        if !state.contains_key(m.as_str()) {
            visit(m, &edges, &mut state, &mut vec![], &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}

#[test]
fn every_module_uses_only_lower_layers() {
    let layer_of = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut wrong = vec![];
    for (m, uses) in edges() {
        let Some(lm) = layer_of(&m) else {
            wrong.push(format!("{m} is in no layer of LAYERS"));
            continue;
        };
        for u in uses {
            match layer_of(&u) {
                Some(lu) if lu < lm => {}
                _ => wrong.push(format!(
                    "{m} (layer {lm}) uses {u} (layer {:?})",
                    layer_of(&u)
                )),
            }
        }
    }
    for m in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(
            top_modules().contains_key(*m),
            "LAYERS names {m}, which is not in src/"
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Units small enough to hold in one's head: no file in `src/` (its tests
/// included) over this many lines.
const MAX_LINES: usize = 600;

#[test]
fn no_source_file_is_over_600_lines() {
    let mut long = vec![];
    for files in top_modules().values() {
        for f in files {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            if n > MAX_LINES {
                long.push(format!("{}: {n} lines", f.display()));
            }
        }
    }
    long.sort();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
}
