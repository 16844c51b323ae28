//! Two replicas share the work: every copy is written once per change, nothing is duplicated,
//! and neither undoes the other.

use serde_json::json;

use crate::harness::{Injector, eventually, pull_secrets};
use crate::{ICR_CONFIG, copies_hold, icr_cluster, rotate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_work_without_duplicates_or_flapping() {
    let c = icr_cluster(ICR_CONFIG).await;
    let mut namespaces = Vec::new();
    for i in 0..2 {
        namespaces.push(c.namespace(&format!("team-{i}"), json!({})).await);
    }
    let first = Injector::start(&c, "first").await;
    let second = Injector::start(&c, "second").await;
    first.register(&c).await;
    for i in 2..4 {
        namespaces.push(c.namespace(&format!("team-{i}"), json!({})).await);
    }
    for ns in &namespaces {
        c.wait_for_reference(ns, "default", "all-icr-io").await;
    }
    second.register(&c).await;
    let updates = || async {
        first
            .metric("pull_secret_injector_api_writes_total{action=\"update_copy\"}")
            .await
            + second
                .metric("pull_secret_injector_api_writes_total{action=\"update_copy\"}")
                .await
    };
    let new = rotate(&c, "2").await;
    eventually("every copy to hold the rotated key", || async {
        copies_hold(&c, &namespaces, &new).await
    })
    .await;
    // Both replicas may try each copy, but a conditional write lands once per copy.
    eventually("every update to be counted", || async {
        updates().await >= namespaces.len() as f64
    })
    .await;
    assert_eq!(updates().await, namespaces.len() as f64);
    for ns in &namespaces {
        let sa = c.service_account(ns, "default").await.expect("sa");
        assert_eq!(pull_secrets(&sa), ["all-icr-io"], "{ns}: no duplicate");
    }
    // New pods through the second replica.
    let nine = c.namespace("team-9", json!({})).await;
    c.runner(&nine).await;
    let pod = c.create_pod(&nine, &["icr.io/a/b:1"]).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    // Settled: one more namespace costs its copy and ServiceAccount, and nothing already done
    // is written again.
    let ten = c.namespace("team-10", json!({})).await;
    c.wait_for_reference(&ten, "default", "all-icr-io").await;
    assert_eq!(updates().await, namespaces.len() as f64);
    first.stop().await;
    second.stop().await;
}
