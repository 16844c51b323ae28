//! The command examples in the documents are what the binary prints: every ```text (or sh,
//! console, shell, bash) block of
//! README.md and docs/**/*.md whose commands all run `pull-secret-injector` offline (or set a
//! shell variable) is run with bash from the repository root, and its output must be the
//! block's output lines exactly. Blocks that need something else (a running server, `jq`,
//! `curl`, a registry for `--verify`, files `certs` writes) are not run.
//!
//! `PSI_BLESS=1 cargo test --test docs_examples` rewrites the blocks with what the binary
//! prints now; review the diff like any other change.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    let mut stack = vec![root().join("docs")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// One example: steps of commands (consecutive `$ ` lines, with their continuations) each
/// followed by the lines it prints, and where the block sits in the document.
struct Example {
    steps: Vec<Step>,
    /// Line numbers (0-based) of the block's first and one-past-last content lines.
    start: usize,
    end: usize,
}

struct Step {
    commands: Vec<String>,
    output: Vec<String>,
}

/// Tools an example may pipe to besides the binary.
const SHELL_WORDS: &[&str] = &["echo"];

fn is_assignment(command: &str) -> bool {
    let first = command.split_whitespace().next().unwrap_or("");
    first.contains('=') && !command.trim().contains(' ')
}

fn runnable(example: &Example) -> bool {
    example.steps.iter().flat_map(|s| &s.commands).all(|c| {
        let first = c.split_whitespace().next().unwrap_or("");
        let offline = first == "pull-secret-injector"
            && ![
                " --verify",
                " serve",
                " certs",
                "--kubeconfig",
                "--live",
                "--context",
            ]
            .iter()
            .any(|w| c.contains(w));
        let then_only_shell = c
            .split(['|', ';'])
            .skip(1)
            .all(|part| SHELL_WORDS.contains(&part.split_whitespace().next().unwrap_or("")));
        is_assignment(c) || (offline && then_only_shell)
    })
}

fn examples(text: &str) -> Vec<Example> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        if !["```text", "```sh", "```console", "```shell", "```bash"].contains(&fence) {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && lines[end].trim_start() != "```" {
            end += 1;
        }
        let block = &lines[start..end];
        if block.first().is_some_and(|l| l.starts_with("$ ")) {
            let mut steps: Vec<Step> = Vec::new();
            let mut continued = false;
            for line in block {
                if continued {
                    let step = steps.last_mut().unwrap();
                    let last = step.commands.last_mut().unwrap();
                    last.push('\n');
                    last.push_str(line);
                    continued = line.ends_with('\\');
                } else if let Some(command) = line.strip_prefix("$ ") {
                    if steps.last().is_none_or(|s| !s.output.is_empty()) {
                        steps.push(Step {
                            commands: Vec::new(),
                            output: Vec::new(),
                        });
                    }
                    steps.last_mut().unwrap().commands.push(command.to_string());
                    continued = command.ends_with('\\');
                } else {
                    steps.last_mut().unwrap().output.push(line.to_string());
                }
            }
            out.push(Example { steps, start, end });
        }
        i = end + 1;
    }
    out
}

/// The variables an example sets (`$ E=examples/gcr`), for the examples after it in the same
/// document, as a reader's shell keeps them.
fn assignments(example: &Example) -> String {
    let mut out = String::new();
    for c in example.steps.iter().flat_map(|s| &s.commands) {
        if is_assignment(c) {
            out.push_str(c);
            out.push('\n');
        }
    }
    out
}

/// What each step prints, run by bash from the repository root after the variables the
/// document set before it.
fn run(example: &Example, earlier: &str, bin_dir: &Path) -> Vec<Vec<String>> {
    // One stream, as a terminal shows it: stderr lines where they were written.
    let mut prefix = format!("set +e\nexec 2>&1\n{earlier}");
    let mut printed = Vec::new();
    for step in &example.steps {
        let script = step.commands.join("\n");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("{prefix}{script}\n"))
            .current_dir(root())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env_remove("POD_NAMESPACE")
            .env_remove("CLICOLOR_FORCE")
            .env("NO_COLOR", "1")
            .output()
            .expect("bash");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        printed.push(text.lines().map(str::to_string).collect());
        for c in step.commands.iter().filter(|c| is_assignment(c)) {
            prefix.push_str(c);
            prefix.push('\n');
        }
    }
    printed
}

#[test]
fn the_documents_show_what_the_binary_prints() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_pull-secret-injector"));
    let bin_dir = bin.parent().unwrap().to_path_buf();
    let bless = std::env::var_os("PSI_BLESS").is_some();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for doc in documents() {
        let text = fs::read_to_string(&doc).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut changed = false;
        let found = examples(&text);
        let mut earlier = vec![String::new()];
        for example in &found {
            let mut next = earlier.last().unwrap().clone();
            next.push_str(&assignments(example));
            earlier.push(next);
        }
        // Back to front, so that rewriting one block leaves the others' positions.
        for (n, example) in found.iter().enumerate().rev() {
            if !runnable(example) {
                continue;
            }
            checked += 1;
            let got = run(example, &earlier[n], &bin_dir);
            let shown: Vec<&Vec<String>> = example.steps.iter().map(|s| &s.output).collect();
            if got.iter().collect::<Vec<_>>() == shown {
                continue;
            }
            let name = doc.strip_prefix(root()).unwrap().display().to_string();
            if bless {
                let mut block = Vec::new();
                for (step, output) in example.steps.iter().zip(&got) {
                    for c in &step.commands {
                        for (k, part) in c.split('\n').enumerate() {
                            block.push(if k == 0 {
                                format!("$ {part}")
                            } else {
                                part.to_string()
                            });
                        }
                    }
                    block.extend(output.iter().cloned());
                }
                lines.splice(example.start..example.end, block);
                changed = true;
            } else {
                for (step, output) in example.steps.iter().zip(&got) {
                    if &step.output != output {
                        wrong.push(format!(
                            "{name}:{}: `{}` printed:\n{}\nthe document shows:\n{}\n",
                            example.start + 1,
                            step.commands.join("; "),
                            output.join("\n"),
                            step.output.join("\n")
                        ));
                    }
                }
            }
        }
        if changed {
            let mut text = lines.join("\n");
            text.push('\n');
            fs::write(&doc, text).unwrap();
        }
    }
    assert!(
        checked >= 5,
        "only {checked} examples found: is the parser broken?"
    );
    assert!(
        wrong.is_empty(),
        "{} document examples differ from the binary (PSI_BLESS=1 rewrites them):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
