//! Runs the built binary on bad inputs of every kind (configs, cluster manifests, AdmissionReview
//! bodies, flags) and on a few good ones, and checks the exit code and that the message names
//! the file or object and the cause, and never carries secret data.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use predicates::prelude::*;
use serde_json::{Value, json};
use tempfile::TempDir;

mod check;
mod cluster_manifests;
mod explain;
mod inputs;
mod live;
mod review;
mod serve;
mod validate;

/// What a finished command left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Both streams, for "never anywhere" assertions.
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("pull-secret-injector").unwrap();
    cmd.env_remove("POD_NAMESPACE");
    cmd
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().expect("terminated by a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The docker-hub setup: one credential `dockerhub`, source `registry-creds/dockerhub-pull`.
fn hub() -> PathBuf {
    examples().join("docker-hub")
}

fn hub_config() -> PathBuf {
    hub().join("config.yaml")
}

fn hub_cluster() -> PathBuf {
    hub().join("cluster")
}

fn hub_review(name: &str) -> PathBuf {
    hub().join("reviews").join(name)
}

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Asserts that an error run exited 2 with a single `error:` message and returns that message.
fn error_message(r: &Run) -> &str {
    assert_eq!(r.code, 2, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.is_empty(),
        "an error printed an answer: {}",
        r.stdout
    );
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    &r.stderr
}

fn assert_no_secret(r: &Run, secret: &str) {
    assert!(
        !r.all().contains(secret),
        "secret data {secret:?} leaked:\nstdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
}

/// A review from the docker-hub examples, as JSON.
fn hub_review_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(hub_review(name)).unwrap()).unwrap()
}

fn review_hub(body: &Value) -> Run {
    run(bin()
        .arg("review")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(hub_cluster())
        .arg("-")
        .write_stdin(serde_json::to_vec(body).unwrap()))
}

fn review_file(path: &Path) -> Run {
    run(bin()
        .arg("review")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(hub_cluster())
        .arg(path))
}

fn check_hub(namespace: &str, extra: &[&str]) -> Run {
    run(bin()
        .arg("check")
        .arg("--config")
        .arg(hub_config())
        .arg("--cluster")
        .arg(hub_cluster())
        .args(["--namespace", namespace])
        .args(extra))
}

/// The answered AdmissionReview's `response`.
fn response_of(r: &Run) -> Value {
    assert_eq!(r.code, 0, "stderr:\n{}", r.stderr);
    let review: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    review["response"].clone()
}

/// A config with four problems in it.
const BAD_CONFIG: &str = r#"
credentials:
  - name: hub
    secret: registry-creds/dockerhub-pull
    namespaces: {include: ["*"]}
  - name: hub
    secret: registry-creds/other
    namespaces: {include: ["*"]}
  - name: two-sources
    secret: registry-creds/x
    localSecretSelector: {matchLabels: {a: b}}
    namespaces: {include: ["*"]}
  - name: globby
    secret: registry-creds/x
    namespaces: {include: ["["]}
  - name: no-registries
    secret: registry-creds/x
    registries: []
    namespaces: {include: ["*"]}
"#;

/// Each problem of `BAD_CONFIG`: the credential, the field and a word of the cause.
const BAD_CONFIG_PROBLEMS: [(&str, &str, &str); 4] = [
    ("credentials[1] (hub)", "name", "duplicate name \"hub\""),
    ("credentials[2] (two-sources)", "secret", "several sources"),
    (
        "credentials[3] (globby)",
        "namespaces.include[0]",
        "invalid glob",
    ),
    ("credentials[4] (no-registries)", "registries", "is empty"),
];

fn assert_lists_bad_config_problems(text: &str) {
    assert!(text.contains("4 problems"), "{text}");
    for (credential, field, cause) in BAD_CONFIG_PROBLEMS {
        let line = text
            .lines()
            .find(|l| l.contains(credential))
            .unwrap_or_else(|| panic!("no problem names {credential}:\n{text}"));
        assert!(
            line.contains(&format!("{credential}: {field}: ")) && line.contains(cause),
            "{credential}: want field {field:?} and cause {cause:?}, got {line:?}"
        );
    }
}
