//! Runs the built binary on every setup in `examples/` and checks it against
//! `examples/expectations.json`, which states, per `check` command and per AdmissionReview, the
//! secret names that must be added (in order) and whether warnings are expected.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Expectation {
    setup: String,
    kind: String,
    namespace: Option<String>,
    #[serde(default)]
    namespace_labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    images: Vec<String>,
    review: Option<String>,
    expect_injected: Vec<String>,
    expect_warnings: bool,
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn expectations() -> Vec<Expectation> {
    let text = std::fs::read_to_string(examples().join("expectations.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("pull-secret-injector").unwrap();
    cmd.env_remove("POD_NAMESPACE");
    cmd
}

fn setup_args(setup: &str) -> Vec<String> {
    let dir = examples().join(setup);
    vec![
        "--config".into(),
        dir.join("config.yaml").display().to_string(),
        "--cluster".into(),
        dir.join("cluster").display().to_string(),
    ]
}

/// Runs the binary and reads its standard output as JSON; a failure carries stderr.
fn run_json(args: &[String]) -> Result<Value, String> {
    let out = bin().args(args).output().unwrap();
    if !out.status.success() {
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn run_check(e: &Expectation) -> Result<(), String> {
    let namespace = e.namespace.as_deref().ok_or("check without namespace")?;
    let mut args = vec!["check".to_string()];
    args.extend(setup_args(&e.setup));
    args.extend(["--namespace".into(), namespace.into(), "--json".into()]);
    for (k, v) in &e.namespace_labels {
        args.extend(["--namespace-label".into(), format!("{k}={v}")]);
    }
    args.extend(e.images.iter().cloned());
    let report = run_json(&args)?;
    let got: Vec<String> = serde_json::from_value(report["imagePullSecrets"].clone()).unwrap();
    let warnings = report["warnings"].as_array().map_or(0, Vec::len);
    if got != e.expect_injected || (warnings > 0) != e.expect_warnings {
        return Err(format!(
            "injected {got:?} (want {:?}), warnings {} (want some: {})",
            e.expect_injected, report["warnings"], e.expect_warnings
        ));
    }
    if report["namespace"] != namespace
        || report["images"].as_array().map(Vec::len) != Some(e.images.len())
    {
        return Err(format!("report shape: {report}"));
    }
    Ok(())
}

fn run_review(e: &Expectation) -> Result<(), String> {
    let file = examples().join(e.review.as_deref().ok_or("review without file")?);
    let request: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut args = vec!["review".to_string()];
    args.extend(setup_args(&e.setup));
    args.push(file.display().to_string());
    let review = run_json(&args)?;
    let response = &review["response"];
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return Err(format!("not an AdmissionReview v1: {review}"));
    }
    if response["uid"] != request["request"]["uid"] || response["allowed"] != true {
        return Err(format!("uid or allowed wrong: {response}"));
    }
    let object = request["request"]["object"].clone();
    let list_pointer = if request["request"]["kind"]["kind"] == "Pod" {
        "/spec/imagePullSecrets"
    } else {
        "/imagePullSecrets"
    };
    let names = |v: &Value| -> Vec<String> {
        v.pointer(list_pointer)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = names(&object);
    let mut after_object = object.clone();
    if let Some(patch) = response["patch"].as_str() {
        if response["patchType"] != "JSONPatch" {
            return Err(format!("patchType {}", response["patchType"]));
        }
        let bytes = STANDARD.decode(patch).map_err(|e| e.to_string())?;
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        json_patch::patch(&mut after_object, &patch)
            .map_err(|e| format!("patch does not apply: {e}"))?;
    }
    let after = names(&after_object);
    if after[..before.len().min(after.len())] != before[..] {
        return Err(format!("existing entries changed: {before:?} -> {after:?}"));
    }
    let added = after[before.len()..].to_vec();
    let warnings = response["warnings"].as_array().map_or(0, Vec::len);
    if added != e.expect_injected || (warnings > 0) != e.expect_warnings {
        return Err(format!(
            "added {added:?} (want {:?}), warnings {} (want some: {})",
            e.expect_injected, response["warnings"], e.expect_warnings
        ));
    }
    if !added.is_empty() {
        let recorded = after_object
            .pointer("/metadata/annotations/pull-secret-injector~1injected")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !added.iter().all(|n| recorded.split(',').any(|r| r == n)) {
            return Err(format!("injected annotation {recorded:?} misses {added:?}"));
        }
    }
    Ok(())
}

#[test]
fn every_example_gives_the_expected_answer() {
    let all = expectations();
    assert!(all.len() > 50, "expectations.json looks truncated");
    let mut failures = Vec::new();
    for e in &all {
        let result = match e.kind.as_str() {
            "check" => run_check(e),
            "review" => run_review(e),
            other => Err(format!("unknown kind {other}")),
        };
        if let Err(why) = result {
            failures.push(format!(
                "{} {} {:?}{:?}: {why}",
                e.setup, e.kind, e.review, e.images
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn every_setup_config_validates() {
    for entry in std::fs::read_dir(examples()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let out = bin()
            .args(["validate", "--config"])
            .arg(dir.join("config.yaml"))
            .arg("--cluster")
            .arg(dir.join("cluster"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {stdout}", dir.display());
        assert!(stdout.contains(": valid ("), "{stdout}");
        assert!(!stdout.contains("warning"), "{}: {stdout}", dir.display());
    }
}
