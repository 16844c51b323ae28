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
