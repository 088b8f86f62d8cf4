//! The layers of `src/` and the absence of import cycles, checked on every
//! path the code names (`crate::`, `super::`, `self::` and a child module's
//! name, in `use` lines, expressions, types and macro arguments alike): the
//! files are tokenized, not grepped, so comments and strings do not count
//! and grouped imports (`use crate::{a, b::{c, d}}`) are expanded.
//!
//! A module may name modules of its own top-level folder and of the layers
//! below it, never one above. Within that, the graph of files has no cycle.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Top-level modules from the top layer down; each may use only those after
/// it (and itself). Keep docs/architecture.md in step with this list.
const LAYERS: &[&str] = &[
    "cli", "ops", "guest", "backend", "machine", "spec", "envfile", "boxes", "util",
];

/// Crate-level test and fuzzing modules (compiled for tests or `--features
/// fuzzing` only) that exercise every layer, like `main.rs` does: in no
/// layer, and named here.
const TEST_ONLY: &[&str] = &["robustness", "fuzz"];

type ModPath = Vec<String>;

/// A module's file, its `mod` children, and the names it re-exports.
#[derive(Default)]
struct Module {
    file: PathBuf,
    children: BTreeSet<String>,
    reexports: HashMap<String, ModPath>,
}

/// A path found in a file: the module it was written in (inline modules
/// included, for `super::`) and its segments.
struct Found {
    scope: ModPath,
    segments: Vec<String>,
    public_use: bool,
}

fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_punct(t: &TokenTree, c: char) -> bool {
    matches!(t, TokenTree::Punct(p) if p.as_char() == c)
}

fn ident(t: &TokenTree) -> Option<String> {
    match t {
        TokenTree::Ident(i) => Some(i.to_string().trim_start_matches("r#").to_string()),
        _ => None,
    }
}

/// Expands a `use` tree's tokens (after `use`, up to `;`) into full paths.
fn use_paths(tokens: &[TokenTree], prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if let Some(name) = ident(t) {
            if name == "as" {
                break;
            }
            path.push(name);
        } else if let TokenTree::Group(g) = t
            && g.delimiter() == Delimiter::Brace
        {
            let inner: Vec<TokenTree> = g.stream().into_iter().collect();
            for item in inner.split(|t| is_punct(t, ',')) {
                if !item.is_empty() {
                    use_paths(item, path.clone(), out);
                }
            }
            return;
        } else if is_punct(t, '*') {
            break;
        }
        i += 1;
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// The name a `use` item binds (its alias, or its last segment).
fn use_binding(tokens: &[TokenTree], path: &[String]) -> Option<String> {
    let as_at = tokens
        .iter()
        .position(|t| ident(t).as_deref() == Some("as"));
    match as_at {
        Some(i) => tokens.get(i + 1).and_then(ident),
        None => path.last().cloned(),
    }
}

/// Walks a file's tokens, collecting every path that starts with `crate`,
/// `super`, `self` or any identifier followed by `::` (resolved later), the
/// `mod` declarations, and the public re-exports.
fn scan(
    tokens: Vec<TokenTree>,
    scope: ModPath,
    found: &mut Vec<Found>,
    declared: &mut Vec<(ModPath, String)>,
) {
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let word = ident(t);
        // `mod name;` declares a child file; `mod name { ... }` is inline.
        if word.as_deref() == Some("mod")
            && let Some(name) = tokens.get(i + 1).and_then(ident)
        {
            match tokens.get(i + 2) {
                Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                    let mut inner = scope.clone();
                    inner.push(name);
                    scan(g.stream().into_iter().collect(), inner, found, declared);
                    i += 3;
                    continue;
                }
                _ => {
                    declared.push((scope.clone(), name));
                    i += 2;
                    continue;
                }
            }
        }
        if word.as_deref() == Some("use") {
            let public = i > 0 && ident(&tokens[i - 1]).as_deref() == Some("pub")
                || i > 1
                    && matches!(&tokens[i - 1], TokenTree::Group(g) if g.delimiter() == Delimiter::Parenthesis)
                    && ident(&tokens[i - 2]).as_deref() == Some("pub");
            let end = tokens[i..]
                .iter()
                .position(|t| is_punct(t, ';'))
                .map_or(tokens.len(), |p| i + p);
            let tree = &tokens[i + 1..end];
            let mut paths = Vec::new();
            use_paths(tree, Vec::new(), &mut paths);
            for segments in paths {
                found.push(Found {
                    scope: scope.clone(),
                    segments,
                    public_use: public,
                });
            }
            // Re-exports need their binding: a grouped `pub use` binds each
            // item's last name, which `segments` already ends with.
            i = end + 1;
            continue;
        }
        if let Some(first) = word
            && tokens.get(i + 1).is_some_and(|t| is_punct(t, ':'))
            && tokens.get(i + 2).is_some_and(|t| is_punct(t, ':'))
            && !(i > 1 && is_punct(&tokens[i - 1], ':') && is_punct(&tokens[i - 2], ':'))
        {
            let mut segments = vec![first];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|t| is_punct(t, ':'))
                && tokens.get(j + 1).is_some_and(|t| is_punct(t, ':'))
            {
                match tokens.get(j + 2).and_then(ident) {
                    Some(name) => segments.push(name),
                    None => break,
                }
                j += 3;
            }
            found.push(Found {
                scope: scope.clone(),
                segments,
                public_use: false,
            });
            i = j;
            continue;
        }
        if let TokenTree::Group(g) = t {
            scan(
                g.stream().into_iter().collect(),
                scope.clone(),
                found,
                declared,
            );
        }
        i += 1;
    }
}

/// Makes a path absolute from the module it was written in; None for paths
/// into other crates (std, anyhow, ...).
fn absolute(
    scope: &ModPath,
    segments: &[String],
    modules: &BTreeMap<ModPath, Module>,
) -> Option<Vec<String>> {
    let mut base = scope.clone();
    let mut rest = segments;
    match rest.first()?.as_str() {
        "crate" => {
            base.clear();
            rest = &rest[1..];
        }
        "self" => rest = &rest[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        first => {
            // A child module of the file the path is written in (or of an
            // inline module's file): Rust resolves such a name relatively.
            let file_module = (0..=base.len())
                .rev()
                .map(|n| base[..n].to_vec())
                .find(|p| modules.contains_key(p))?;
            if !modules[&file_module].children.contains(first) || base != file_module {
                return None;
            }
        }
    }
    let mut full = base;
    full.extend(rest.iter().cloned());
    Some(full)
}

/// The file module a full path lands in: the deepest module it names,
/// following re-exports of the names after it.
fn resolve(path: &[String], modules: &BTreeMap<ModPath, Module>, depth: usize) -> Option<ModPath> {
    let mut at: ModPath = Vec::new();
    let mut i = 0;
    while i < path.len() {
        let mut next = at.clone();
        next.push(path[i].clone());
        if modules.contains_key(&next) {
            at = next;
            i += 1;
        } else {
            break;
        }
    }
    if let Some(name) = path.get(i)
        && depth < 8
        && let Some(target) = modules[&at].reexports.get(name)
    {
        return resolve(target, modules, depth + 1).or(Some(at));
    }
    Some(at)
}

/// The file module that holds `scope` (inline modules belong to their file).
fn file_of(scope: &ModPath, modules: &BTreeMap<ModPath, Module>) -> ModPath {
    (0..=scope.len())
        .rev()
        .map(|n| scope[..n].to_vec())
        .find(|p| modules.contains_key(p))
        .unwrap_or_default()
}

fn rank(module: &ModPath) -> Option<usize> {
    let top = module.first()?;
    LAYERS.iter().position(|l| l == top)
}

fn name(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Every edge between file modules: (from, to, an example path).
fn edges() -> BTreeMap<(ModPath, ModPath), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules: BTreeMap<ModPath, Module> = BTreeMap::new();
    let mut scanned = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let tokens = TokenStream::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .into_iter()
            .collect();
        let module = module_path(&src, file);
        let (mut found, mut declared) = (Vec::new(), Vec::new());
        scan(tokens, module.clone(), &mut found, &mut declared);
        modules.entry(module.clone()).or_default().file = file.clone();
        scanned.push((module, found, declared));
    }
    for (_, _, declared) in &scanned {
        for (scope, child) in declared {
            modules
                .entry(scope.clone())
                .or_default()
                .children
                .insert(child.clone());
        }
    }
    // Re-exports first (resolution follows them), then the edges.
    let snapshot: Vec<(ModPath, ModPath)> = scanned
        .iter()
        .flat_map(|(_, found, _)| found.iter())
        .filter(|f| f.public_use)
        .filter_map(|f| {
            let full = absolute(&f.scope, &f.segments, &modules)?;
            Some((f.scope.clone(), full))
        })
        .collect();
    for (scope, full) in snapshot {
        if let Some(binding) = use_binding(&[], &full) {
            let file = file_of(&scope, &modules);
            modules
                .get_mut(&file)
                .unwrap()
                .reexports
                .insert(binding, full);
        }
    }
    let mut edges = BTreeMap::new();
    for (_, found, _) in &scanned {
        for f in found {
            let Some(full) = absolute(&f.scope, &f.segments, &modules) else {
                continue;
            };
            let from = file_of(&f.scope, &modules);
            let Some(to) = resolve(&full, &modules, 0) else {
                continue;
            };
            // A module naming itself, or the crate root, is no dependency.
            if to == from || to.is_empty() {
                continue;
            }
            edges
                .entry((from, to))
                .or_insert_with(|| f.segments.join("::"));
        }
    }
    edges
}

#[test]
fn every_top_level_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if stem == "main" || TEST_ONLY.contains(&stem.as_str()) {
            continue;
        }
        assert!(
            LAYERS.contains(&stem.as_str()),
            "src/{stem} is in no layer: add it to LAYERS in tests/layers.rs and to docs/architecture.md"
        );
    }
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let mut wrong = Vec::new();
    for ((from, to), example) in edges() {
        let (Some(rf), Some(rt)) = (rank(&from), rank(&to)) else {
            continue;
        };
        if rt < rf {
            wrong.push(format!("{} -> {} (`{example}`)", name(&from), name(&to)));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports up the layers ({}):\n{}",
        LAYERS.join(" > "),
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycles_between_modules() {
    let edges = edges();
    let mut graph: BTreeMap<ModPath, Vec<ModPath>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from.clone()).or_default().push(to.clone());
    }
    // Tarjan's strongly connected components: any with two or more modules
    // is a cycle.
    struct State {
        index: usize,
        stack: Vec<ModPath>,
        on_stack: BTreeSet<ModPath>,
        indices: HashMap<ModPath, usize>,
        low: HashMap<ModPath, usize>,
        cycles: Vec<Vec<ModPath>>,
    }
    fn visit(v: &ModPath, g: &BTreeMap<ModPath, Vec<ModPath>>, s: &mut State) {
        s.indices.insert(v.clone(), s.index);
        s.low.insert(v.clone(), s.index);
        s.index += 1;
        s.stack.push(v.clone());
        s.on_stack.insert(v.clone());
        for w in g.get(v).into_iter().flatten() {
            if !s.indices.contains_key(w) {
                visit(w, g, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v.clone(), low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.indices[w]);
                s.low.insert(v.clone(), low);
            }
        }
        if s.low[v] == s.indices[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(&w);
                let done = &w == v;
                component.push(w);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                s.cycles.push(component);
            }
        }
    }
    let mut state = State {
        index: 0,
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        indices: HashMap::new(),
        low: HashMap::new(),
        cycles: Vec::new(),
    };
    for v in graph.keys() {
        if !state.indices.contains_key(v) {
            visit(v, &graph, &mut state);
        }
    }
    let report: Vec<String> = state
        .cycles
        .iter()
        .map(|c| {
            let members: BTreeSet<&ModPath> = c.iter().collect();
            let inner: Vec<String> = edges
                .iter()
                .filter(|((f, t), _)| members.contains(f) && members.contains(t))
                .map(|((f, t), ex)| format!("  {} -> {} (`{ex}`)", name(f), name(t)))
                .collect();
            inner.join("\n")
        })
        .collect();
    assert!(
        report.is_empty(),
        "import cycles:\n{}",
        report.join("\n---\n")
    );
}

#[test]
fn the_checker_sees_grouped_imports_and_paths_in_macros() {
    let text = "use crate::{a::{b, c::D}, e}; fn f() { format!(\"{}\", super::g::h()); }";
    let (mut found, mut declared) = (Vec::new(), Vec::new());
    scan(
        TokenStream::from_str(text).unwrap().into_iter().collect(),
        vec!["m".into(), "n".into()],
        &mut found,
        &mut declared,
    );
    let paths: Vec<String> = found.iter().map(|f| f.segments.join("::")).collect();
    assert_eq!(
        paths,
        ["crate::a::b", "crate::a::c::D", "crate::e", "super::g::h"]
    );
}
