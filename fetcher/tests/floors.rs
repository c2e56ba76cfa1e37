//! The fetcher's floors import only downward, and its modules form no
//! circle (docs/ARCHITECTURE.md, "Floors"). Read from the source itself:
//! every `crate::<module>` a file names outside a comment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowest first. A module may name modules of its own floor or below.
/// The swarm is a crate of its own below all of them (`hypernar-swarm`,
/// named by its crate name, never `crate::`).
const FLOORS: &[(&str, &[&str])] = &[
    (
        "catalog tables (what the node knows)",
        &[
            "publishers",
            "sets",
            "channels",
            "following",
            "groups",
            "recent",
            "fault",
        ],
    ),
    ("catalog (the node: following, pins, the disk)", &["node"]),
    ("sources", &["sources"]),
    ("front-ends", &["http", "mount", "pins"]),
];

/// The top-level module a file under `src/` belongs to.
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().expect("a path under src");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

/// The top-level modules `text` names as `crate::<module>` outside comments.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let ident: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                out.insert(ident);
            }
            rest = after;
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            if rel == Path::new("lib.rs") {
                continue;
            }
            let module = module_of(rel);
            let text = std::fs::read_to_string(&path).unwrap();
            let names = graph.entry(module.clone()).or_default();
            names.extend(named(&text).into_iter().filter(|n| *n != module));
        }
    }
    graph
}

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|(_, ms)| ms.contains(&module))
}

#[test]
fn every_module_has_a_floor_and_imports_only_downward() {
    let graph = graph();
    let mut wrong = Vec::new();
    for (module, names) in &graph {
        let Some(mine) = floor_of(module) else {
            wrong.push(format!("{module} is on no floor: add it to FLOORS"));
            continue;
        };
        for n in names {
            match floor_of(n) {
                Some(theirs) if theirs > mine => wrong.push(format!(
                    "{module} ({}) imports {n} ({}), a floor above it",
                    FLOORS[mine].0, FLOORS[theirs].0
                )),
                Some(_) => {}
                None => wrong.push(format!("{module} names crate::{n}, on no floor")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_two_modules_import_each_other_even_through_others() {
    let graph = graph();
    // Depth-first, with the path so far: a module met again on it closes a
    // circle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut circle = path[at..].to_vec();
            circle.push(m.to_owned());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for n in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(n, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(circle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("an import circle: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_swarm_crate_cannot_reach_http_fuse_or_the_floors_above() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("swarm/Cargo.toml");
    let text = std::fs::read_to_string(manifest).unwrap();
    let deps = text
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table")
        .split("\n[")
        .next()
        .unwrap();
    let names: Vec<&str> = deps
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['.', ' ', '=']).next())
        .collect();
    for banned in [
        "reqwest",
        "hyper",
        "hyper-util",
        "http",
        "fuser",
        "hypernar-fetcher",
    ] {
        assert!(
            !names.contains(&banned),
            "hypernar-swarm depends on {banned}"
        );
    }
    assert!(names.contains(&"hypernar-feed"), "{names:?}");
}

#[test]
fn front_ends_never_see_a_hub() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("mount.rs"), src.join("pins.rs")];
    for e in std::fs::read_dir(src.join("http")).unwrap() {
        files.push(e.unwrap().path());
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            assert!(
                !code.contains("hypernar_swarm::hub") && !code.contains(".hub("),
                "{}:{}: a front-end reaches a hub: read through sources::PathReader",
                f.display(),
                n + 1
            );
        }
    }
}

#[test]
fn the_reader_of_imports_sees_through_comments_and_paths() {
    let text = "use crate::hub::{self, HubHandle};\n\
                // crate::http is only mentioned here\n\
                let x = crate::metrics::WEB_SEED; // and crate::mount here\n";
    let got: Vec<String> = named(text).into_iter().collect();
    assert_eq!(got, ["hub", "metrics"]);
}
