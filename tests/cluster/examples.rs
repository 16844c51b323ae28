//! Every example setup (one per seed document): the cluster of `examples/<setup>/cluster/`
//! exists before the injector starts, and each `check` expectation of
//! `examples/expectations.json` becomes a pod created through the API. The stored pod must
//! carry exactly the expected secrets, each of which must exist in the namespace as a usable
//! pull secret.
//!
//! On a real cluster every namespace of the setup, and every namespace the config names, gets
//! the run's prefix; expectations for kube-system and its like are left out there (a prefixed
//! `kube-system` is not protected).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::json;

use crate::harness::{Cluster, decoded_auths, pull_secrets, repo};

fn examples() -> PathBuf {
    repo().join("examples")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expectation {
    setup: String,
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    namespace_labels: BTreeMap<String, String>,
    #[serde(default)]
    images: Vec<String>,
    expect_injected: Vec<String>,
}

/// The config of an example as the text of `config.yaml` (the examples hold either raw config
/// or a whole ConfigMap manifest), every namespace in it given the `{P}` placeholder.
fn example_config(setup: &str) -> String {
    let text = std::fs::read_to_string(examples().join(setup).join("config.yaml")).expect("config");
    let value: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    let raw = match value.get("kind").and_then(|k| k.as_str()) {
        Some("ConfigMap") => value["data"]["config.yaml"]
            .as_str()
            .expect("config.yaml key")
            .to_string(),
        _ => text,
    };
    let mut config: serde_yaml::Value = serde_yaml::from_str(&raw).expect("config yaml");
    let prefixed = |s: &str| serde_yaml::Value::String(format!("{{P}}{s}"));
    if let Some(credentials) = config
        .get_mut("credentials")
        .and_then(|c| c.as_sequence_mut())
    {
        for credential in credentials {
            if let Some(source) = credential.get("secret").and_then(|s| s.as_str()) {
                let source = prefixed(source);
                credential["secret"] = source;
            }
            if let Some(ns) = credential
                .get("secretSelector")
                .and_then(|s| s.get("namespace"))
                .and_then(|n| n.as_str())
            {
                let ns = prefixed(ns);
                credential["secretSelector"]["namespace"] = ns;
            }
            for field in ["include", "exclude"] {
                if let Some(patterns) = credential
                    .get_mut("namespaces")
                    .and_then(|n| n.get_mut(field))
                    .and_then(|p| p.as_sequence_mut())
                {
                    for pattern in patterns.iter_mut() {
                        if let Some(p) = pattern.as_str() {
                            *pattern = prefixed(p);
                        }
                    }
                }
            }
        }
    }
    serde_yaml::to_string(&config).expect("config text")
}

const UNPREFIXABLE: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_setup_injects_and_copies_what_kubelet_needs() {
    let text = std::fs::read_to_string(examples().join("expectations.json")).expect("file");
    let expectations: Vec<Expectation> = serde_json::from_str(&text).expect("expectations");
    let setups: BTreeSet<&str> = expectations.iter().map(|e| e.setup.as_str()).collect();
    let mut checked = 0;
    for setup in setups {
        let c = Cluster::new(&example_config(setup)).await;
        c.load(&examples().join(setup).join("cluster")).await;
        let injector = c.start_injector().await;
        for e in expectations
            .iter()
            .filter(|e| e.setup == setup && e.kind == "check")
        {
            if c.is_real() && UNPREFIXABLE.contains(&e.namespace.as_str()) {
                continue;
            }
            let ns = c.ns(&e.namespace);
            if c.get("namespaces", None, &ns).await.is_none() {
                c.namespace(&e.namespace, json!(e.namespace_labels)).await;
            }
            if c.is_terminating(&ns).await {
                continue;
            }
            c.runner(&ns).await;
            let images: Vec<&str> = e.images.iter().map(String::as_str).collect();
            let pod = c.create_pod(&ns, &images).await;
            let what = format!("{setup}: {} {:?}", e.namespace, e.images);
            assert_eq!(pull_secrets(&pod), e.expect_injected, "{what}");
            for name in &e.expect_injected {
                let secret = c
                    .secret(&ns, name)
                    .await
                    .unwrap_or_else(|| panic!("{what}: secret {name} missing"));
                assert!(
                    !decoded_auths(&secret).is_empty(),
                    "{what}: {name} is empty"
                );
            }
            checked += 1;
        }
        injector.stop().await;
    }
    assert!(checked >= 40, "only {checked} expectations were checked");
}
