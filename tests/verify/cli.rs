//! `check --verify` and `validate --verify` against a real registry, through the binary.

use std::path::Path;

use assert_cmd::Command;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::registry::{Auth, PASSWORD, Registry};

/// A config for the registry's credential, trusting its CA, and the source Secret holding
/// `password`, in `dir`.
fn files(dir: &Path, registry: &Registry, password: &str, mode: &str) {
    let config = format!(
        "credentials:\n  - name: lab\n    secret: creds/lab\n    namespaces: {{include: [\"team-*\"]}}\n    verify:\n      mode: {mode}\n      caBundle: {}\n",
        serde_json::to_string(&registry.ca_pem).expect("json")
    );
    std::fs::write(dir.join("config.yaml"), config).expect("config");
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: lab, namespace: creds}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
        STANDARD.encode(registry.dockerconfig(password))
    );
    std::fs::write(dir.join("cluster.yaml"), secret).expect("cluster");
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("pull-secret-injector")
        .expect("binary")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("joined")
}

#[tokio::test]
async fn check_verify_shows_each_registrys_answer_and_decides_with_it() {
    let registry = Registry::start(Auth::Htpasswd).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = format!("{}/team/app:1", registry.host);
    let host = registry.host.clone();

    files(dir.path(), &registry, PASSWORD, "warn");
    let path = dir.path().to_path_buf();
    let args = [
        "check",
        "--config",
        "config.yaml",
        "--cluster",
        "cluster.yaml",
        "--namespace",
        "team-a",
        "--verify",
    ];
    let (code, out, err) = blocking({
        let (path, image) = (path.clone(), image.clone());
        move || run(&path, &[&args[..], &[image.as_str()]].concat())
    })
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imagePullSecrets += lab"), "{out}");
    assert!(
        out.contains(&format!(
            "verify: credential lab at {host}: ok (the registry accepts Basic auth)"
        )),
        "{out}"
    );

    files(dir.path(), &registry, "expired-password", "warn");
    let (code, out, _) = blocking({
        let (path, image) = (path.clone(), image.clone());
        move || run(&path, &[&args[..], &[image.as_str()]].concat())
    })
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("verify: credential lab at {host}: rejected")),
        "{out}"
    );
    assert!(
        out.contains("in warn mode the webhook still injects it"),
        "{out}"
    );
    // The decision read the answer: still injected, with the warning pods would get.
    assert!(out.contains("imagePullSecrets += lab"), "{out}");
    assert!(
        out.contains(&format!("credential lab is rejected by {host} since")),
        "{out}"
    );
    assert!(!out.contains("expired-password"));

    let (_, json, _) = blocking({
        let (path, image) = (path.clone(), image.clone());
        move || run(&path, &[&args[..], &["--json", image.as_str()]].concat())
    })
    .await;
    let value: serde_json::Value = serde_json::from_str(&json).expect(&json);
    let probes = &value["verification"]["probes"];
    assert_eq!(probes[0]["credential"], "lab");
    assert_eq!(probes[0]["registry"], host.as_str());
    assert_eq!(probes[0]["state"], "rejected");
    assert_eq!(probes[0]["mode"], "warn");
}

#[tokio::test]
async fn validate_verify_exits_1_when_a_registry_rejects_a_credential() {
    let registry = Registry::start(Auth::Htpasswd).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let args = [
        "validate",
        "--config",
        "config.yaml",
        "--cluster",
        "cluster.yaml",
        "--verify",
    ];

    files(dir.path(), &registry, PASSWORD, "skip");
    let (code, out, _) = blocking({
        let path = path.clone();
        move || run(&path, &args)
    })
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": ok ("), "{out}");

    files(dir.path(), &registry, "revoked-password", "skip");
    let (code, out, _) = blocking({
        let path = path.clone();
        move || run(&path, &args)
    })
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(": rejected ("), "{out}");
    assert!(
        out.contains("in skip mode the webhook stops injecting it"),
        "{out}"
    );

    let (code, _, err) = blocking(move || run(&path, &args[..5])).await;
    assert_eq!(code, 0, "without --verify nothing is probed: {err}");
}

#[test]
fn validate_verify_without_manifests_says_what_it_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config.yaml"),
        "credentials:\n  - name: a\n    secret: creds/a\n    namespaces: {include: [\"*\"]}\n",
    )
    .expect("config");
    let (code, _, err) = run(
        dir.path(),
        &["validate", "--config", "config.yaml", "--verify"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("give --cluster manifests, or read the live cluster"),
        "{err}"
    );
}
