//! The structure docs/architecture.md describes, kept: no import cycle between the files of `src/`,
//! no file there over 500 lines, and `src/core/` importing nothing outside itself. A file's imports are its `crate::…` and `super::…` paths
//! outside comments and its `#[cfg(test)]` part, each resolved to the longest module path that is a
//! file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

/// Every `.rs` file under `dir`, by module path (`kafka/worker/mod.rs` is `["kafka", "worker"]`).
fn modules(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<String>, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modules(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                parts.clear();
            }
            out.insert(parts, path);
        }
    }
}

/// The code of a file that counts for its imports: before `#[cfg(test)]`, without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules a file names through `crate::a::b` or `super::a::b` paths.
fn imports(
    module: &[String],
    code: &str,
    files: &BTreeMap<Vec<String>, PathBuf>,
) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("::") {
        let before = &code[..i];
        let word_start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |p| p + 1);
        let path_text = &code[word_start..];
        let path_text = &path_text[..path_text
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(path_text.len())];
        if word_start + path_text.len() < i {
            continue;
        }
        let mut segments = path_text.split("::").filter(|s| !s.is_empty());
        let mut base: Vec<String> = match segments.next() {
            Some("crate") => Vec::new(),
            // A file module's parent; `mod.rs` and `foo.rs` alike name their module `module`.
            Some("super") => module[..module.len().saturating_sub(1)].to_vec(),
            _ => continue,
        };
        base.extend(segments.map(String::from));
        while !base.is_empty() {
            if files.contains_key(&base) {
                // A module's own descendants or ancestors are not imports between files.
                let related = base.starts_with(module) || module.starts_with(&base);
                if !related {
                    out.insert(base.clone());
                }
                break;
            }
            base.pop();
        }
    }
    out
}

#[test]
fn no_import_cycles_no_long_files_and_a_pure_core() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    modules(&root, &root, &mut files);
    assert!(
        files.len() > 40,
        "found only {} files under src/",
        files.len()
    );

    let long: Vec<String> = files
        .values()
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");

    let edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = files
        .iter()
        .map(|(m, p)| (m.clone(), imports(m, &code(p), &files)))
        .collect();
    // The pure core names nothing outside it (no I/O, no clock, no Kafka).
    for (m, deps) in &edges {
        if m.first().is_some_and(|c| c == "core") {
            let outside: Vec<String> = deps
                .iter()
                .filter(|d| d.first().is_none_or(|c| c != "core"))
                .map(|d| d.join("/"))
                .collect();
            assert!(
                outside.is_empty(),
                "core/{} imports {outside:?}",
                m[1..].join("/")
            );
        }
    }
    // A cycle exists iff some module reaches itself.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(Vec<String>, Vec<Vec<String>>)> =
            vec![(start.clone(), vec![start.clone()])];
        while let Some((m, trail)) = stack.pop() {
            for next in &edges[&m] {
                if next == start {
                    let names: Vec<String> = trail.iter().map(|t| t.join("/")).collect();
                    panic!(
                        "import cycle: {} -> {}",
                        names.join(" -> "),
                        start.join("/")
                    );
                }
                if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
}

/// The text of a source file's comments and code with comment markers dropped and lines joined, so
/// that a quotation wrapped over several comment lines reads as one.
fn joined_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let words: Vec<&str> = text
        .lines()
        .map(|l| l.trim_start().trim_start_matches(['/', '!', '#']))
        .flat_map(str::split_whitespace)
        .collect();
    words.join(" ")
}

/// Every file of `dir` (recursively) whose name ends with `ext`.
fn files_with(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_with(&path, ext, out);
        } else if path.to_string_lossy().ends_with(ext) {
            out.push(path);
        }
    }
}

/// Comments keep what the code does and why; the numbers live in BENCHMARKS.md, and a comment that
/// points there (`see BENCHMARKS.md, "<section>"`) names a section that exists.
#[test]
fn benchmark_links_name_sections_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let benchmarks = std::fs::read_to_string(root.join("BENCHMARKS.md")).unwrap();
    let headings: Vec<&str> = benchmarks.lines().filter(|l| l.starts_with('#')).collect();
    let mut files = vec![root.join("Cargo.toml")];
    files_with(&root.join("src"), ".rs", &mut files);
    files_with(&root.join("benches"), ".rs", &mut files);
    let mut links = 0;
    let mut broken = Vec::new();
    for file in &files {
        let text = joined_text(file);
        for (i, _) in text.match_indices("BENCHMARKS.md, \"") {
            let rest = &text[i + "BENCHMARKS.md, \"".len()..];
            let section = &rest[..rest.find('"').unwrap_or(rest.len())];
            links += 1;
            if !headings.iter().any(|h| h.contains(section)) {
                broken.push(format!("{}: {section:?}", file.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to BENCHMARKS.md sections that do not exist: {broken:?}"
    );
    assert!(links >= 5, "found only {links} links to BENCHMARKS.md");
}

/// docs/delivery.md names, for each delivery rule, the tests that enforce it (`file.rs::test`):
/// every one of them exists, as a `fn` of that name in that file or a `scenario!` of
/// `tests/faults.rs`.
#[test]
fn every_test_named_in_the_delivery_rules_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/delivery.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for quoted in doc.split('`').skip(1).step_by(2) {
        let Some((file, test)) = quoted.split_once(".rs::") else {
            continue;
        };
        named += 1;
        let path = root.join(format!("{file}.rs"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let as_fn = format!("fn {test}(");
        let as_scenario = format!(" {test}: ");
        if !text.contains(&as_fn) && !text.contains(&as_scenario) {
            missing.push(quoted.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "docs/delivery.md names tests that do not exist: {missing:?}"
    );
    assert!(named >= 30, "docs/delivery.md names only {named} tests");
}
