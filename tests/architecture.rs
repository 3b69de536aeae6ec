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

/// Longest function (or method, or closure-free `fn` item) allowed in `src/`, in lines from its
/// `fn` line to its closing brace: past that a reader cannot hold it whole; split it into named
/// steps.
const MAX_FN_LINES: usize = 120;

/// `text` with comments, string and char literals blanked (newlines kept), so that braces and
/// `fn` in them are not code. Lifetimes (`'a`) are left alone.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    blank(&mut out, b' ');
                    blank(&mut out, b' ');
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    blank(&mut out, b' ');
                    blank(&mut out, b' ');
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(rest).filter(|_| i == 0 || !word(b[i - 1])) {
            // r"…", r#"…"#, br"…": ends at a quote followed by as many hashes.
            let open = rest.iter().position(|&c| c == b'"').unwrap() + 1;
            let close = format!("\"{}", "#".repeat(hashes)).into_bytes();
            let end = b[i + open..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| i + open + p + close.len());
            while i < end {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if b[i] == b'"' {
            blank(&mut out, b[i]);
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let n = if b[i] == b'\\' { 2 } else { 1 };
                for _ in 0..n.min(b.len() - i) {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            if i < b.len() {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if b[i] == b'\'' && char_literal_len(rest).is_some() {
            for _ in 0..char_literal_len(rest).unwrap() {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The number of `#`s of a raw string literal starting here (`r"`, `r#"`, `br"`…), if one does.
fn raw_string_start(rest: &[u8]) -> Option<usize> {
    let after_r = match rest {
        [b'r', ..] => &rest[1..],
        [b'b', b'r', ..] => &rest[2..],
        _ => return None,
    };
    let hashes = after_r.iter().take_while(|&&c| c == b'#').count();
    (after_r.get(hashes) == Some(&b'"')).then_some(hashes)
}

/// The length of a char literal starting here (`'x'`, `'\n'`, `'\u{1F600}'`, `'é'`), or `None`
/// for a lifetime or label.
fn char_literal_len(rest: &[u8]) -> Option<usize> {
    if rest.get(1) == Some(&b'\\') {
        let close = rest[2..].iter().position(|&c| c == b'\'')?;
        return Some(close + 3);
    }
    // One character of up to four UTF-8 bytes, then the closing quote.
    let first = *rest.get(1)?;
    let width = match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    (rest.get(1 + width) == Some(&b'\'')).then_some(width + 2)
}

/// Every function with a body in `text`: its name, first line (1-based) and length in lines.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let code = code_only(text);
    let b = code.as_bytes();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    for (at, _) in code.match_indices("fn") {
        let before_ok = at == 0 || !word(b[at - 1]);
        let after_ok = b.get(at + 2).is_some_and(|c| c.is_ascii_whitespace());
        if !before_ok || !after_ok {
            continue;
        }
        let name: String = code[at + 2..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue; // `fn(u8) -> u8`, a function pointer type
        }
        // The body opens at the first `{` outside the signature's parentheses and angle
        // brackets; a `;` first means a declaration without a body (a trait's).
        let mut depth = 0i32;
        let mut open = None;
        for (j, &c) in b.iter().enumerate().skip(at) {
            match c {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b'{' if depth == 0 => {
                    open = Some(j);
                    break;
                }
                b';' if depth == 0 => break,
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut braces = 0i32;
        let close = b[open..]
            .iter()
            .position(|&c| {
                match c {
                    b'{' => braces += 1,
                    b'}' => braces -= 1,
                    _ => {}
                }
                braces == 0
            })
            .map(|p| open + p)
            .expect("unbalanced braces");
        let first = line_of(at);
        out.push((name, first, line_of(close) - first + 1));
    }
    out
}

#[test]
fn no_function_in_src_over_the_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    modules(&root, &root, &mut files);
    let mut long = Vec::new();
    let mut seen = 0;
    for path in files.values() {
        for (name, line, n) in functions(&std::fs::read_to_string(path).unwrap()) {
            seen += 1;
            if n > MAX_FN_LINES {
                long.push(format!("{}:{line} fn {name} ({n} lines)", path.display()));
            }
        }
    }
    assert!(seen > 500, "found only {seen} functions under src/");
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them into named steps):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_function_scan_sees_through_strings_comments_and_nesting() {
    let text = "fn a() {\n    let s = \"}\"; // }\n    let c = '{';\n    let r = r#\"}\"#;\n}\n\
                trait T { fn decl(&self); }\n\
                impl X {\n    fn b<'a>(x: &'a [u8; 2]) -> impl Fn(u8) -> u8 {\n        |y| y\n    }\n}\n";
    let found = functions(text);
    assert_eq!(
        found,
        vec![("a".to_string(), 1, 5), ("b".to_string(), 8, 3)],
        "{found:?}"
    );
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
    // Rules are numbered 1, 2, 3, … once each, so that "rule N" names one rule.
    let numbers: Vec<usize> = doc
        .lines()
        .filter_map(|l| l.split_once(". **").and_then(|(n, _)| n.parse().ok()))
        .collect();
    let expected: Vec<usize> = (1..=numbers.len()).collect();
    assert_eq!(numbers, expected, "docs/delivery.md's rule numbers");
}

/// Operational metrics are counted by their events (`src/events/`), which log them too: no other
/// file increments one by hand.
#[test]
fn operational_metrics_are_counted_only_by_their_events() {
    const EVENT_METRICS: [&str; 11] = [
        "producer_errors",
        "schema_registry_errors",
        "delivery_failures",
        "commit_failures",
        "state_evictions",
        "rebalances",
        "state_restored_records",
        "state_restore_seconds",
        "webhook.retries",
        "webhook.dead_letters",
        // The endpoint's own labelled counter (src/webhook/outage.rs holds it as `outages`).
        "outages",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    modules(&root, &root, &mut files);
    let mut by_hand = Vec::new();
    for path in files.values() {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.starts_with("events/") || rel == "metrics.rs" {
            continue;
        }
        let code = code(path);
        for metric in EVENT_METRICS {
            // An increment or observation of the metric: `.metric` then, within its statement,
            // `.inc` or `.observe(` (a series created at 0 is not counted).
            let counted = code.match_indices(&format!(".{metric}")).any(|(i, _)| {
                let rest = &code[i..];
                let statement = &rest[..rest.find(';').unwrap_or(rest.len())];
                statement.contains(".inc") || statement.contains(".observe(")
            });
            if counted {
                by_hand.push(format!("{rel}: {metric}"));
            }
        }
    }
    assert!(
        by_hand.is_empty(),
        "operational metrics counted outside their events (emit the event from src/events/ instead): {by_hand:?}"
    );
}
