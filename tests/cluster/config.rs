//! The config ConfigMap: a change applies at once; an invalid one is refused with an Event and
//! a metric, and the last good config stays in force.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::harness::{eventually, pull_secrets};
use crate::{ICR_PODS_ONLY, icr_cluster};

const ICR_AND_HUB: &str = r#"
credentials:
  - name: icr
    secret: "{P}default/all-icr-io"
    namespaces: {include: ["{P}team-*"]}
  - name: hub
    secret: "{P}default/dockerhub-pull"
    namespaces: {include: ["{P}team-*"]}
serviceAccounts: []
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_and_an_invalid_config_is_rejected_with_an_event() {
    let c = icr_cluster(ICR_PODS_ONLY).await;
    let hub = json!({"auths": {"https://index.docker.io/v1/": {"auth": STANDARD.encode("u:fake-password-1")}}});
    c.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "dockerhub-pull", "namespace": c.ns("default")},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(hub.to_string())},
    }))
    .await
    .expect("hub source");
    let team = c.namespace("team-c", json!({})).await;
    c.runner(&team).await;
    let injector = c.start_injector().await;
    let pod = c.create_pod(&team, &["nginx:1.27"]).await;
    assert!(pull_secrets(&pod).is_empty());

    c.set_config(ICR_AND_HUB).await;
    eventually("the new credential to be injected", || async {
        let pod = c.create_pod(&team, &["nginx:1.27"]).await;
        pull_secrets(&pod) == ["dockerhub-pull"]
    })
    .await;

    c.set_config("credentials:\n  - name: Bad_Name\n    secret: nowhere\n")
        .await;
    eventually("an InvalidConfig Event on the ConfigMap", || async {
        c.list("events", Some(&c.own)).await.iter().any(|e| {
            e["reason"] == "InvalidConfig"
                && e["involvedObject"]["kind"] == "ConfigMap"
                && e["involvedObject"]["name"] == "pull-secret-injector"
                && e["type"] == "Warning"
        })
    })
    .await;
    eventually("the reload error to be counted", || async {
        injector
            .metric("pull_secret_injector_config_reloads_total{result=\"error\"}")
            .await
            >= 1.0
    })
    .await;
    // The last good config stays in force.
    let pod = c.create_pod(&team, &["nginx:1.27"]).await;
    assert_eq!(pull_secrets(&pod), ["dockerhub-pull"]);
    assert!(injector.running.app.is_ready());
    injector.stop().await;
}

/// A watch the config stops needing stops reporting its last list: a frozen timestamp would
/// fire the "watch not listing" alert for as long as the pod runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_the_config_no_longer_needs_leaves_the_metrics() {
    let with_locals = r#"
credentials:
  - name: icr
    secret: "{P}default/all-icr-io"
    namespaces: {include: ["{P}team-*"]}
  - name: project-local
    localSecretSelector: {matchLabels: {e2e.pull-secret-injector/local: "true"}}
    namespaces: {include: ["{P}team-*"]}
serviceAccounts: []
"#;
    let c = icr_cluster(with_locals).await;
    let injector = c.start_injector().await;
    let locals = "pull_secret_injector_watch_last_list_timestamp_seconds{watch=\"local_secrets\"}";
    eventually("the local secrets watch to list", || async {
        injector.metric(locals).await > 0.0
    })
    .await;
    c.set_config(ICR_PODS_ONLY).await;
    eventually("the local secrets watch to leave the metrics", || async {
        !injector.metrics().await.contains(locals)
    })
    .await;
    let sources = "pull_secret_injector_watch_last_list_timestamp_seconds{watch=\"sources\"}";
    assert!(injector.metric(sources).await > 0.0, "the others stay");
    injector.stop().await;
}
