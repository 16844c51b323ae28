//! Copies: rotation reaches every copy with one write each, terminating namespaces are never
//! written, copies outlive a deleted source, API faults lose no copy, and a refused prune backs
//! off.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Injector, eventually, pull_secrets};
use crate::{ICR_CONFIG, ICR_PODS_ONLY, auth_of, copies_hold, icr_cluster, icr_source, rotate};
use fake_apiserver::{Fault, FaultKind};
use pull_secret_injector::view::ClusterView;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_source_reaches_every_copy_with_one_write_each() {
    let c = icr_cluster(ICR_CONFIG).await;
    let mut namespaces = Vec::new();
    for i in 0..6 {
        namespaces.push(c.namespace(&format!("team-{i}"), json!({})).await);
    }
    let injector = c.start_injector().await;
    for ns in &namespaces {
        c.wait_for_reference(ns, "default", "all-icr-io").await;
    }
    let default = c.ns("default");
    let old = auth_of(&c.secret(&default, "all-icr-io").await.expect("source"));
    let new = rotate(&c, "2").await;
    assert_ne!(old, new);
    eventually("every copy to hold the rotated key", || async {
        copies_hold(&c, &namespaces, &new).await
    })
    .await;
    let updates = || async {
        injector
            .metric("pull_secret_injector_api_writes_total{action=\"update_copy\"}")
            .await
    };
    eventually("every write to be counted", || async {
        updates().await >= namespaces.len() as f64
    })
    .await;
    assert_eq!(
        updates().await,
        namespaces.len() as f64,
        "one write per copy"
    );
    eventually("the copies metric to show them current", || async {
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"current\"}")
            .await
            == namespaces.len() as f64
    })
    .await;
    // Settled: a new namespace costs its copy, and nothing done is written again.
    let late = c.namespace("team-late", json!({})).await;
    c.wait_for_reference(&late, "default", "all-icr-io").await;
    assert_eq!(updates().await, namespaces.len() as f64);
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_is_never_written() {
    let c = icr_cluster(ICR_CONFIG).await;
    let live = c.namespace("team-live", json!({})).await;
    let gone = c.namespace("team-gone", json!({})).await;
    let injector = c.start_injector().await;
    for ns in [&live, &gone] {
        c.wait_for_reference(ns, "default", "all-icr-io").await;
    }
    c.delete("namespaces", None, &gone).await.expect("delete");
    let index = injector.running.index.clone().expect("cluster mode");
    eventually(
        "the injector to see the namespace terminating or gone",
        || async { index.read().namespace(&gone).is_none_or(|n| n.terminating) },
    )
    .await;
    let writes_before = injector
        .metric("pull_secret_injector_api_writes_total{action=\"update_copy\"}")
        .await;
    let new = rotate(&c, "2").await;
    eventually("the live copy to follow", || async {
        c.secret(&live, "all-icr-io")
            .await
            .is_some_and(|s| auth_of(&s) == new)
    })
    .await;
    // Exactly one copy was updated: the live one.
    eventually("the live update to be counted", || async {
        injector
            .metric("pull_secret_injector_api_writes_total{action=\"update_copy\"}")
            .await
            >= writes_before + 1.0
    })
    .await;
    assert_eq!(
        injector
            .metric("pull_secret_injector_api_writes_total{action=\"update_copy\"}")
            .await,
        writes_before + 1.0
    );
    if let Some(copy) = c.secret(&gone, "all-icr-io").await {
        assert_ne!(
            auth_of(&copy),
            new,
            "a terminating namespace is not written"
        );
    }
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_outlive_a_deleted_source_and_it_is_reported() {
    let c = icr_cluster(&ICR_CONFIG.replace("prune: false", "prune: true")).await;
    c.grant_prune();
    let team = c.namespace("team-k", json!({})).await;
    let injector = c.start_injector().await;
    c.wait_for_reference(&team, "default", "all-icr-io").await;
    let default = c.ns("default");
    c.delete("secrets", Some(&default), "all-icr-io")
        .await
        .expect("delete source");
    eventually("the copy to be counted source_missing", || async {
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"source_missing\"}")
            .await
            == 1.0
    })
    .await;
    // Even with prune on, running workloads keep their credential.
    assert!(c.secret(&team, "all-icr-io").await.is_some());
    assert_eq!(
        injector
            .metric("pull_secret_injector_api_writes_total{action=\"delete_copy\"}")
            .await,
        0.0
    );
    // New pods are told why nothing is injected.
    c.runner(&team).await;
    let (pod, warnings) = c.create_pod_with(&team, &["icr.io/a/b:1"], false).await;
    assert!(pull_secrets(&pod).is_empty());
    assert!(
        warnings.iter().any(|w| {
            w.contains("credential icr not injected: its source secret does not exist")
        }),
        "{warnings:?}"
    );
    // The source comes back: the copy is current again without being rewritten.
    c.create(icr_source(&c, "1")).await.expect("source back");
    eventually("the copy to be current again", || async {
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"current\"}")
            .await
            == 1.0
    })
    .await;
    assert_eq!(
        injector
            .metric("pull_secret_injector_api_writes_total{action=\"update_copy\"}")
            .await,
        0.0
    );
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_and_dropped_watches_lose_no_copy() {
    let c = icr_cluster(ICR_PODS_ONLY).await;
    let fake = crate::fake_only!(c, "500s, latency and dropped watches are the fake's faults");
    let team = c.namespace("team-a", json!({})).await;
    c.runner(&team).await;
    let injector = c.start_injector().await;

    // The copy cannot be created at admission: the pod still names it, with a warning, and the
    // reconciler makes it once the API recovers.
    let fault = fake.add_fault(
        Fault::new(FaultKind::Status(500))
            .method("POST")
            .path(&format!("/namespaces/{team}/secrets"))
            .times(3),
    );
    let (pod, warnings) = c.create_pod_with(&team, &["icr.io/a/b:1"], false).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    assert!(
        warnings.iter().any(|w| w.contains("not created yet")),
        "{warnings:?}"
    );
    eventually("the deferred copy", || async {
        c.secret(&team, "all-icr-io").await.is_some()
    })
    .await;
    fake.remove_fault(fault);

    // A slow API: the admission answers within its copy budget, the copy follows.
    let slow_ns = c.namespace("team-slow", json!({})).await;
    c.runner(&slow_ns).await;
    let slow = fake.add_fault(
        Fault::new(FaultKind::Latency(Duration::from_secs(4)))
            .method("POST")
            .path(&format!("/namespaces/{slow_ns}/secrets"))
            .times(1),
    );
    let pod = c.create_pod(&slow_ns, &["icr.io/a/b:1"]).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    eventually("the slow copy", || async {
        c.secret(&slow_ns, "all-icr-io").await.is_some()
    })
    .await;
    fake.remove_fault(slow);

    // Watches dropped and history expired: the rotation still arrives (by relisting).
    fake.drop_watches();
    fake.expire_history();
    let new = rotate(&c, "2").await;
    eventually("the copies to follow the rotation", || async {
        copies_hold(&c, &[team.clone(), slow_ns.clone()], &new).await
    })
    .await;
    assert!(
        injector
            .metric("pull_secret_injector_reconcile_errors_total{action=\"create_copy\"}")
            .await
            >= 1.0
    );
    injector.stop().await;
}

/// `prune: true` installed without `components/prune`: the delete is refused (403), the copy
/// stays, and the injector backs off instead of retrying every pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_without_the_delete_grant_backs_off() {
    let pruning = format!("{ICR_PODS_ONLY}prune: true\n");
    let c = icr_cluster(&pruning).await;
    let _ = crate::fake_only!(c, "only the fake enforces the RBAC manifest");
    let team = c.namespace("team-d", json!({})).await;
    c.runner(&team).await;
    let injector = Injector::start(&c, "pruner").await;
    injector.register(&c).await;
    c.create_pod(&team, &["icr.io/a/b:1"]).await;
    assert!(c.secret(&team, "all-icr-io").await.is_some());
    c.set_config(&pruning.replace("{P}team-*", "{P}nobody-*"))
        .await;
    let denied = || async {
        injector
            .metric("pull_secret_injector_reconcile_errors_total{action=\"delete_copy\"}")
            .await
    };
    eventually("a refused delete", || async { denied().await > 0.0 }).await;
    let start = denied().await;
    // Passes run every 200 ms here; without backoff 4 s would see about 20 attempts.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let more = denied().await - start;
    assert!(more <= 5.0, "{more} deletes in 4 s: not backing off");
    assert!(c.secret(&team, "all-icr-io").await.is_some());
    injector.stop().await;
}
