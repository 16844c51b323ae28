//! The documents' links stay true: every relative link or image in README.md, CONTRIBUTING.md,
//! docs/**/*.md, examples/README.md and certs/README.md must name a file or directory of the
//! repository (and, for a link into a Markdown file with `#anchor`, a heading of that file), no
//! document may send readers to files that are not in the repository, and README.md stays short
//! with the test command on its first screen.
//!
//! Links are found by hand (no regex crate): inline `[text](target)` and `![alt](target)`, and
//! reference definitions `[label]: target`, outside fenced code blocks and code spans.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// Strings that name files outside the repository: the design notes and source documents the
/// project started from, and the shared folder they live in.
const FORBIDDEN: &[&str] = &["DESIGN.md", "../shared", "seeds/"];

const README_MAX_LINES: usize = 250;
const README_FIRST_SCREEN: usize = 40;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents this test reads, relative to the repository root, in a stable order.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut docs = vec![
        PathBuf::from("README.md"),
        PathBuf::from("CONTRIBUTING.md"),
        PathBuf::from("examples/README.md"),
        PathBuf::from("certs/README.md"),
    ];
    let mut under_docs = Vec::new();
    collect_markdown(&root, Path::new("docs"), &mut under_docs);
    under_docs.sort();
    docs.extend(under_docs);
    docs
}

fn collect_markdown(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let rel = dir.join(entry.file_name());
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_markdown(root, &rel, out);
        } else if rel.extension().is_some_and(|e| e == "md") {
            out.push(rel);
        }
    }
}

/// A link found in a document: its 1-based line and its target as written.
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// Every link and image target of a Markdown text, outside code.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim_start();
        if let Some((ch, len)) = fence {
            let run = trimmed.chars().take_while(|&c| c == ch).count();
            if run >= len && trimmed[run * ch.len_utf8()..].trim().is_empty() {
                fence = None;
            }
            continue;
        }
        if let Some(ch) = ['`', '~'].into_iter().find(|&c| trimmed.starts_with(c)) {
            let run = trimmed.chars().take_while(|&c| c == ch).count();
            if run >= 3 {
                fence = Some((ch, run));
                continue;
            }
        }
        let prose = without_code_spans(raw);
        if let Some(target) = reference_definition(&prose) {
            found.push(Link { line, target });
            continue;
        }
        for target in inline_targets(&prose) {
            found.push(Link { line, target });
        }
    }
    found
}

/// The line with every code span (`` `...` ``, ``` ``...`` ```) blanked out.
fn without_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        // Find the closing run of exactly the same length.
        let mut j = i + run;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let r = chars[j..].iter().take_while(|&&c| c == '`').count();
                if r == run {
                    close = Some(j);
                    break;
                }
                j += r;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                out.extend(std::iter::repeat_n(' ', j + run - i));
                i = j + run;
            }
            None => {
                // An unmatched backtick run is literal text.
                out.extend(std::iter::repeat_n('`', run));
                i += run;
            }
        }
    }
    out
}

/// `[label]: target` at the start of a line (up to three spaces of indentation).
fn reference_definition(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = line[indent..].strip_prefix('[')?;
    if rest.starts_with('^') {
        return None; // a footnote
    }
    let close = rest.find("]:")?;
    if rest[..close].is_empty() || rest[..close].contains('[') {
        return None;
    }
    let target = rest[close + 2..].trim_start();
    let target = match target.strip_prefix('<') {
        Some(t) => t.split('>').next().unwrap_or(""),
        None => target.split_whitespace().next().unwrap_or(""),
    };
    (!target.is_empty()).then(|| target.to_string())
}

/// The targets of every `](target)` on the line.
fn inline_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let (target, consumed) = link_destination(after);
        if !target.is_empty() {
            targets.push(target);
        }
        rest = &after[consumed..];
    }
    targets
}

/// A link destination at the start of `s` (after `](`): `<...>`, or characters up to whitespace
/// or the `)` that balances the opening one. Returns it and how many bytes it spans.
fn link_destination(s: &str) -> (String, usize) {
    let s_trim = s.trim_start();
    let skipped = s.len() - s_trim.len();
    if let Some(inner) = s_trim.strip_prefix('<') {
        if let Some(end) = inner.find('>') {
            return (inner[..end].to_string(), skipped + end + 2);
        }
        return (String::new(), skipped + 1);
    }
    let mut depth = 0usize;
    for (i, c) in s_trim.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return (s_trim[..i].to_string(), skipped + i),
            ')' => depth -= 1,
            c if c.is_whitespace() => return (s_trim[..i].to_string(), skipped + i),
            _ => {}
        }
    }
    (String::new(), s.len())
}

/// Targets that leave the repository's files alone: web and mail addresses, and anchors within
/// the same document (checked separately).
fn is_external(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:")
}

/// `%20` and friends, as a browser would decode a relative link.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `base/rel` with `.` and `..` folded, without touching the file system; `None` when it climbs
/// above the repository root.
fn resolve(base_dir: &Path, rel: &str) -> Option<PathBuf> {
    let joined = if let Some(from_root) = rel.strip_prefix('/') {
        PathBuf::from(from_root)
    } else {
        base_dir.join(rel)
    };
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    for component in joined.components() {
        match component {
            Component::Normal(p) => parts.push(p.to_os_string()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

/// GitHub's anchor for a heading: lower case; letters, digits, `-` and `_` kept; spaces become
/// `-`; everything else dropped. Repeated headings get `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut in_fence = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !t.starts_with('#') {
            continue;
        }
        let level = t.chars().take_while(|&c| c == '#').count();
        if level > 6 || !t[level..].starts_with(' ') {
            continue;
        }
        let title = t[level..].trim().trim_end_matches('#').trim();
        let base: String = title
            .chars()
            .flat_map(char::to_lowercase)
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut slug = base.clone();
        let mut n = 1;
        while seen.contains(&slug) {
            slug = format!("{base}-{n}");
            n += 1;
        }
        seen.insert(slug);
    }
    seen
}

#[test]
fn relative_links_resolve_inside_the_repository() {
    let root = root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = fs::read_to_string(root.join(&doc))
            .unwrap_or_else(|e| panic!("{}: cannot read: {e}", doc.display()));
        let dir = doc.parent().unwrap_or(Path::new(""));
        for link in links(&text) {
            if is_external(&link.target) {
                continue;
            }
            checked += 1;
            let (path_part, anchor) = match link.target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.target.as_str(), None),
            };
            let path_part = path_part.split('?').next().unwrap_or("");
            let where_ = format!("{}:{}: {}", doc.display(), link.line, link.target);
            // A pure `#anchor` points into this document.
            let target_file = if path_part.is_empty() {
                Some(doc.clone())
            } else {
                resolve(dir, &percent_decode(path_part))
            };
            let Some(target_file) = target_file else {
                broken.push(format!("{where_} (leaves the repository)"));
                continue;
            };
            let full = root.join(&target_file);
            if !full.exists() {
                broken.push(format!(
                    "{where_} ({} does not exist)",
                    target_file.display()
                ));
                continue;
            }
            if let Some(anchor) = anchor.filter(|a| !a.is_empty())
                && full.is_file()
                && target_file.extension().is_some_and(|e| e == "md")
            {
                let heads = anchors(&fs::read_to_string(&full).unwrap_or_default());
                if !heads.contains(&percent_decode(anchor).to_lowercase()) {
                    broken.push(format!(
                        "{where_} (no heading #{anchor} in {})",
                        target_file.display()
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken link(s):\n  {}",
        broken.len(),
        broken.join("\n  ")
    );
    assert!(checked > 0, "no relative link found: is the parser broken?");
}

#[test]
fn no_document_points_outside_the_repository() {
    let root = root();
    let mut found = Vec::new();
    for doc in documents() {
        let text = fs::read_to_string(root.join(&doc)).unwrap_or_default();
        for (i, line) in text.lines().enumerate() {
            for needle in FORBIDDEN {
                if line.contains(needle) {
                    found.push(format!("{}:{}: mentions {needle}", doc.display(), i + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "documents name files that are not in the repository:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn readme_is_short_and_its_first_screen_runs_the_tests() {
    let text = fs::read_to_string(root().join("README.md")).expect("README.md");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() <= README_MAX_LINES,
        "README.md has {} lines; keep it at most {README_MAX_LINES} and move detail to docs/",
        lines.len()
    );
    let first = lines
        .iter()
        .take(README_FIRST_SCREEN)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        first.contains("cargo test"),
        "README.md's first {README_FIRST_SCREEN} lines must show `cargo test`"
    );
}

#[test]
fn the_link_parser_finds_what_markdown_renders() {
    let text = "\
See [a](docs/a.md), ![img](pic.png \"title\") and [b](<with space.md>).
`[not](code.md)` and ``[nor](this.md)`` are code; [c](x.md#part) has an anchor.
[d](https://example.com) [e](#local) [f](dir/(paren).md)
```sh
[never](fenced.md)
```
  [ref]: ref/target.md \"title\"
";
    let targets: Vec<String> = links(text).into_iter().map(|l| l.target).collect();
    assert_eq!(
        targets,
        [
            "docs/a.md",
            "pic.png",
            "with space.md",
            "x.md#part",
            "https://example.com",
            "#local",
            "dir/(paren).md",
            "ref/target.md",
        ]
    );
    assert_eq!(
        resolve(Path::new("docs/recipes"), "../../README.md"),
        Some(PathBuf::from("README.md"))
    );
    assert_eq!(resolve(Path::new("docs"), "../../shared/x"), None);
    assert_eq!(percent_decode("with%20space.md"), "with space.md");
    let heads = anchors("# Title\n## `check`: which secrets, and why\n## Title\n");
    assert!(heads.contains("check-which-secrets-and-why"), "{heads:?}");
    assert!(heads.contains("title-1"), "{heads:?}");
}
