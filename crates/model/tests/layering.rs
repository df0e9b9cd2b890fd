//! The model crate's modules depend one way: each group uses only the groups before it (the order
//! lib.rs documents), and no two files use each other. Read from the sources (`crate::` paths
//! outside comments and test modules), so a new import cycle fails here rather than in review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The groups in dependency order: each may use only those before it.
const ORDER: [&str; 11] =
    ["error", "kernels", "load", "text", "layers", "arch", "heads", "embedder", "scorer", "preference", "cli"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file (`kernels::attention::fused`; `kernels::attention` for its
/// mod.rs).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests`.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// Every `crate::a::b::...` path in `code`, as its segments.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
        out.push(path.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect());
    }
    out
}

#[test]
fn groups_depend_one_way_and_files_never_in_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files.iter().map(|f| (module_of(&src, f), f.clone())).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let group = module.split("::").next().unwrap_or_default();
        for path in crate_paths(&code(file)) {
            // The longest prefix that is a module: the file this path uses.
            let target = (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|m| modules.contains_key(m));
            let Some(target) = target else { continue };
            if &target == module || module.starts_with(&format!("{target}::")) {
                continue;
            }
            let used = target.split("::").next().unwrap();
            if used != group && !group.is_empty() {
                let rank =
                    |g: &str| ORDER.iter().position(|o| *o == g).unwrap_or_else(|| panic!("group {g} is not in ORDER"));
                assert!(rank(used) < rank(group), "{module} uses {target}: {group} may not use {used}");
            }
            edges.entry(module.clone()).or_default().insert(target);
        }
    }
    // No cycle between files: a depth-first search that never meets a module on its own stack.
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, bool>,
        stack: &mut Vec<&'a str>,
    ) {
        match state.get(m) {
            Some(true) => return,
            Some(false) => panic!("import cycle: {} -> {m}", stack.join(" -> ")),
            None => {}
        }
        state.insert(m, false);
        stack.push(m);
        for next in edges.get(m).into_iter().flatten() {
            visit(next, edges, state, stack);
        }
        stack.pop();
        state.insert(m, true);
    }
    let mut state = BTreeMap::new();
    for m in modules.keys() {
        visit(m, &edges, &mut state, &mut Vec::new());
    }
}
