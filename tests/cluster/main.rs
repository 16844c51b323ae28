//! End to end: the real `serve` in cluster mode against a Kubernetes API, through a kubeconfig.
//!
//! By default the API is the project's fake kube-apiserver (`crates/fake-apiserver`), with
//! `manifests/base/rbac.yaml` enforced; it calls the webhook over CA-verified HTTPS on Pod and
//! ServiceAccount creation, as kube-apiserver does. With `PSI_E2E_KUBECONFIG` naming an admin
//! kubeconfig, the same scenarios run against that cluster instead (`harness` says how it keeps
//! to its own objects); those that need fault injection only the fake can do are skipped with a
//! message. CONTRIBUTING.md gives the command.
//!
//! No test waits for a duration to pass: each polls for an outcome (an object, a metric) with a
//! generous deadline.

// The Google fakes and the Entra ID assertion proof serve only tests/tokens.
#[allow(dead_code)]
#[path = "../common/token_fakes/mod.rs"]
mod fakes;
mod harness;
#[path = "../common/https.rs"]
mod https;
#[allow(dead_code)]
#[path = "../common/moto.rs"]
mod moto;
#[path = "../common/registry.rs"]
mod registry;

mod admission;
mod backfill;
mod config;
mod copies;
mod examples;
mod rbac;
mod replicas;
mod self_signed;
mod tenants;
mod tokens;
mod verification;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use harness::Cluster;

/// One credential, IBM's `all-icr-io`, for `team-*` namespaces; ServiceAccounts and pods.
const ICR_CONFIG: &str = r#"
credentials:
  - name: icr
    secret: "{P}default/all-icr-io"
    namespaces: {include: ["{P}team-*"]}
serviceAccounts: ["default"]
pods: true
prune: false
"#;

/// The same, without ServiceAccount injection: copies are made only for pods.
const ICR_PODS_ONLY: &str = r#"
credentials:
  - name: icr
    secret: "{P}default/all-icr-io"
    namespaces: {include: ["{P}team-*"]}
serviceAccounts: []
pods: true
"#;

/// IBM's `all-icr-io` in the run's `default` namespace, with a FAKE key that `version` tells
/// apart.
fn icr_source(c: &Cluster, version: &str) -> Value {
    let auth = STANDARD.encode(format!("iamapikey:fake-apikey-{version}"));
    let config = json!({"auths": {
        "icr.io": {"auth": auth},
        "us.icr.io": {"auth": auth},
    }});
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "all-icr-io", "namespace": c.ns("default")},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(config.to_string())},
    })
}

/// The `icr.io` auth of a copy or source.
fn auth_of(secret: &Value) -> String {
    let data = secret["data"][".dockerconfigjson"].as_str().expect("data");
    let config: Value = serde_json::from_slice(&STANDARD.decode(data).expect("b64")).expect("json");
    config["auths"]["icr.io"]["auth"]
        .as_str()
        .expect("auth")
        .to_string()
}

/// A cluster with `config` and the `all-icr-io` source in the run's `default` namespace.
async fn icr_cluster(config: &str) -> Cluster {
    let c = Cluster::new(config).await;
    let default = c.ns("default");
    if c.get("namespaces", None, &default).await.is_none() {
        c.namespace("default", json!({})).await;
    }
    c.create(icr_source(&c, "1")).await.expect("source");
    c
}

/// Replaces the run's `all-icr-io` source with a new version of it.
async fn rotate(c: &Cluster, version: &str) -> String {
    let default = c.ns("default");
    let mut source = icr_source(c, version);
    let current = c.secret(&default, "all-icr-io").await.expect("source");
    source["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    c.replace(source).await.expect("rotate");
    auth_of(&c.secret(&default, "all-icr-io").await.expect("source"))
}

/// Whether the copy of `all-icr-io` in every one of `namespaces` holds `auth`.
async fn copies_hold(c: &Cluster, namespaces: &[String], auth: &str) -> bool {
    for ns in namespaces {
        match c.secret(ns, "all-icr-io").await {
            Some(copy) if auth_of(&copy) == auth => {}
            _ => return false,
        }
    }
    true
}
