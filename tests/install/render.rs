//! Rendering the install as `kubectl apply -k` and `helm install` would: `kubectl kustomize`
//! and `helm template`, with the tools `.ci/run` installs into `target/ci-tools/bin` (or
//! `$KUBECTL` and `$HELM`, else whatever is on the PATH).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn manifests() -> PathBuf {
    repo().join("manifests")
}

pub fn chart() -> PathBuf {
    repo().join("charts/pull-secret-injector")
}

/// `$VAR`, else the binary `.ci/run` installs, else `name` on the PATH.
fn tool(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let installed = repo().join("target/ci-tools/bin").join(name);
    if installed.exists() {
        return installed;
    }
    PathBuf::from(name)
}

fn run(tool_var: &str, name: &str, args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(tool(tool_var, name))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {name} ({e}); .ci/run installs kubectl 1.36 and Helm 4 into \
                 target/ci-tools/bin, or set {tool_var}"
            )
        })
}

/// Every document of a YAML stream, as JSON, empty documents left out.
pub fn parse_stream(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{origin}: not YAML: {e}"));
            serde_json::to_value(value).unwrap_or_else(|e| panic!("{origin}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubectl kustomize DIR [extra]`.
pub fn kustomize(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let dir_arg = dir.to_str().expect("utf-8 path");
    let mut args = vec!["kustomize", dir_arg];
    args.extend_from_slice(extra);
    let output = run("KUBECTL", "kubectl", &args, &repo());
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    parse_stream(&text, &format!("kubectl kustomize {}", dir.display()))
}

/// A kustomization of the user's own, as docs/install.md suggests, in a directory under
/// target/ (kustomize takes relative paths only, so it names the repository as `../../`).
pub fn user_overlay(kustomization: &str) -> Vec<Value> {
    let target = repo().join("target");
    std::fs::create_dir_all(&target).expect("target dir");
    let dir = tempfile::tempdir_in(&target).expect("tempdir");
    std::fs::write(dir.path().join("kustomization.yaml"), kustomization).expect("write");
    kustomize(dir.path(), &["--load-restrictor", "LoadRestrictionsNone"])
}

/// `helm template RELEASE charts/pull-secret-injector --namespace NAMESPACE [args]`: the
/// objects, or Helm's error message.
pub fn helm_template(release: &str, namespace: &str, args: &[&str]) -> Result<Vec<Value>, String> {
    let chart = chart();
    let chart_arg = chart.to_str().expect("utf-8 path");
    let mut all = vec!["template", release, chart_arg, "--namespace", namespace];
    all.extend_from_slice(args);
    let output = run("HELM", "helm", &all, &repo());
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8(output.stdout).expect("utf-8");
    Ok(parse_stream(&text, &format!("helm template {args:?}")))
}

/// The chart's CI values files, `ci/*-values.yaml`: one per certificate mode, and one with
/// every option.
pub fn chart_ci_values() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("charts/pull-secret-injector/ci")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with("-values.yaml")))
        .collect();
    files.sort();
    files
}

/// Every YAML document of the manifest files directly in `dir` (kustomizations excluded),
/// with the file it came from.
pub fn documents(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("manifests dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let origin = file.display().to_string();
        let text = std::fs::read_to_string(&file).expect("read");
        for v in parse_stream(&text, &origin) {
            out.push((origin.clone(), v));
        }
    }
    out
}
