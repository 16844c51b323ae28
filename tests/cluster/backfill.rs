//! Backfill: ServiceAccounts named by `serviceAccounts` get every credential in scope, whenever
//! and however they were made, and backfill only ever adds.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::harness::{Cluster, Injector, eventually, pull_secrets};
use crate::{ICR_CONFIG, icr_cluster};
use fake_apiserver::{Fault, FaultKind};
use pull_secret_injector::serve::ClusterOptions;
use pull_secret_injector::view::ClusterView;

fn service_account(ns: &str, name: &str, pull_secrets: &[&str]) -> Value {
    let entries: Vec<Value> = pull_secrets.iter().map(|n| json!({"name": n})).collect();
    json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": ns},
        "imagePullSecrets": entries,
    })
}

/// Waits for a namespace's `default` ServiceAccount, which the control plane makes.
async fn default_service_account(c: &Cluster, ns: &str) {
    eventually(&format!("the default ServiceAccount of {ns}"), || async {
        c.service_account(ns, "default").await.is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_that_existed_before_the_injector_are_backfilled() {
    let c = icr_cluster(ICR_CONFIG).await;
    let old = c.namespace("team-old", json!({})).await;
    let mine = c.namespace("team-mine", json!({})).await;
    // A ServiceAccount that already names a secret of its own keeps it, first.
    default_service_account(&c, &mine).await;
    c.put(service_account(&mine, "default", &["mine"])).await;

    let injector = c.start_injector().await;
    c.wait_for_reference(&old, "default", "all-icr-io").await;
    c.wait_for_reference(&mine, "default", "all-icr-io").await;
    let sa = c.service_account(&mine, "default").await.expect("sa");
    assert_eq!(pull_secrets(&sa), ["mine", "all-icr-io"]);
    injector.stop().await;
}

/// A ServiceAccount that already lists pull secrets, OpenShift's `*-dockercfg-*` among them,
/// keeps every one of them, in order, when backfill adds the injector's: kube-apiserver
/// replaces an atomic list on a strategic merge, so only an appending JSON patch is safe. Two
/// replicas backfilling at once add the name once. A ServiceAccount not named by
/// `serviceAccounts` is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_keeps_every_existing_entry_in_order_even_with_two_replicas() {
    let c = icr_cluster(ICR_CONFIG).await;
    let existing = ["mine", "default-dockercfg-x7k2p", "other-mine"];
    let o = c.namespace("team-o", json!({})).await;
    let p = c.namespace("team-p", json!({})).await;
    for ns in [&o, &p] {
        default_service_account(&c, ns).await;
        c.put(service_account(ns, "default", &existing)).await;
    }
    c.put(service_account(&o, "builder", &["builder-dockercfg-1"]))
        .await;
    let first = Injector::start(&c, "first").await;
    let second = Injector::start(&c, "second").await;
    for ns in [&o, &p] {
        c.wait_for_reference(ns, "default", "all-icr-io").await;
        let sa = c.service_account(ns, "default").await.expect("sa");
        assert_eq!(
            pull_secrets(&sa),
            [
                "mine",
                "default-dockercfg-x7k2p",
                "other-mine",
                "all-icr-io"
            ],
            "{ns}"
        );
    }
    let patches = || async {
        first
            .metric("pull_secret_injector_api_writes_total{action=\"patch_service_account\"}")
            .await
            + second
                .metric("pull_secret_injector_api_writes_total{action=\"patch_service_account\"}")
                .await
    };
    eventually("both patches to be counted", || async {
        patches().await >= 2.0
    })
    .await;
    assert_eq!(patches().await, 2.0, "one patch per ServiceAccount");
    let builder = c.service_account(&o, "builder").await.expect("builder");
    assert_eq!(pull_secrets(&builder), ["builder-dockercfg-1"]);

    // A second credential, added later, is appended after everything.
    let mut hub = crate::icr_source(&c, "1");
    hub["metadata"]["name"] = json!("hub");
    c.create(hub).await.expect("hub source");
    c.set_config(&ICR_CONFIG.replace(
        "serviceAccounts:",
        "  - name: hub\n    secret: \"{P}default/hub\"\n    namespaces: {include: [\"{P}team-*\"]}\nserviceAccounts:",
    ))
    .await;
    c.wait_for_reference(&o, "default", "hub").await;
    let sa = c.service_account(&o, "default").await.expect("sa");
    assert_eq!(
        pull_secrets(&sa),
        [
            "mine",
            "default-dockercfg-x7k2p",
            "other-mine",
            "all-icr-io",
            "hub"
        ]
    );
    first.stop().await;
    second.stop().await;
}

/// A namespace's ServiceAccounts converge without the webhook and without the periodic
/// backfill (set to an hour), with two replicas: the `default` one whenever the control plane
/// makes it, and, on the fake, one that appears after the injector saw the namespace (held
/// back) and one that appears before (the Namespace watch lagging).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_made_while_the_webhook_is_not_called_get_their_references() {
    let c = icr_cluster(ICR_CONFIG).await;
    let hour = |o: &mut ClusterOptions| o.backfill_interval = Duration::from_secs(3600);
    // Never registered as the webhook: as when it is not yet, or times out and fails open.
    let first = Injector::start_with(&c, "first", hour).await;
    let second = Injector::start_with(&c, "second", hour).await;

    let plain = c.namespace("team-plain", json!({})).await;
    c.wait_for_reference(&plain, "default", "all-icr-io").await;

    let fake = crate::fake_only!(
        c,
        "holding a default ServiceAccount back and delaying a watch need the fake"
    );
    // After: held until both replicas know the namespace.
    fake.hold_default_service_accounts(true);
    let late = c.namespace("team-late", json!({})).await;
    for replica in [&first, &second] {
        let index = replica.running.index.clone().expect("cluster mode");
        let late = late.clone();
        eventually("the replica to see the namespace", || {
            let index = index.clone();
            let late = late.clone();
            async move { index.read().namespace(&late).is_some() }
        })
        .await;
    }
    fake.release_default_service_account(&late);
    c.wait_for_reference(&late, "default", "all-icr-io").await;
    fake.hold_default_service_accounts(false);

    // Before: the Namespace watch lags, the ServiceAccount watch does not.
    let lag = fake.add_fault(
        Fault::new(FaultKind::Latency(Duration::from_millis(1500)))
            .path("/api/v1/namespaces?")
            .watch_only(),
    );
    fake.drop_watches();
    let early = c.namespace("team-early", json!({})).await;
    c.wait_for_reference(&early, "default", "all-icr-io").await;
    fake.remove_fault(lag);
    assert!(
        fake.admission_calls().is_empty(),
        "no webhook was ever called"
    );
    first.stop().await;
    second.stop().await;
}

const RUNAI_CONFIG: &str = r#"
credentials:
  - name: runai-cluster-wide
    secretSelector:
      namespace: "{P}runai"
      matchLabels: {runai/cluster-wide: "true"}
    namespaces: {include: ["{P}runai-*"]}
serviceAccounts: ["default"]
"#;

fn runai_secret(ns: &str, name: &str, registry: &str) -> Value {
    let config = json!({"auths": {registry: {"auth": STANDARD.encode("u:fake-password-r")}}});
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": {"runai/cluster-wide": "true"}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(config.to_string())},
    })
}

/// Run:ai's "may take up to a minute": a new secret the selector matches reaches every
/// ServiceAccount in scope without a config change, and without the periodic backfill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newly_selected_secret_reaches_existing_service_accounts() {
    let c = Cluster::new(RUNAI_CONFIG).await;
    let runai = c.namespace("runai", json!({})).await;
    c.create(runai_secret(&runai, "hub", "https://index.docker.io/v1/"))
        .await
        .expect("hub");
    let p1 = c.namespace("runai-p1", json!({})).await;
    let p2 = c.namespace("runai-p2", json!({})).await;
    let hour = |o: &mut ClusterOptions| o.backfill_interval = Duration::from_secs(3600);
    let first = Injector::start_with(&c, "first", hour).await;
    let second = Injector::start_with(&c, "second", hour).await;
    for ns in [&p1, &p2] {
        c.wait_for_reference(ns, "default", "hub").await;
    }
    c.create(runai_secret(&runai, "nvcr", "nvcr.io"))
        .await
        .expect("nvcr");
    for ns in [&p1, &p2] {
        c.wait_for_reference(ns, "default", "nvcr").await;
        let sa = c.service_account(ns, "default").await.expect("sa");
        assert_eq!(pull_secrets(&sa), ["hub", "nvcr"], "{ns}");
        assert_eq!(
            crate::harness::decoded_auths(&c.secret(ns, "nvcr").await.expect("copy")),
            std::collections::BTreeSet::from(["nvcr.io".to_string()])
        );
    }
    first.stop().await;
    second.stop().await;
}
