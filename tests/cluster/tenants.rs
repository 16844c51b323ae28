//! What a tenant writes into its own namespace is input: labelled Secrets marked like copies
//! are not kept (whatever their size or marks) and add no metric series; a copy whose data the
//! tenant replaced is restored; a copy the tenant made immutable is retried with backoff.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::harness::eventually;
use crate::{ICR_CONFIG, auth_of, icr_cluster};

/// A labelled Secret marked like a copy, in a tenant's namespace.
fn forged_copy(ns: &str, name: &str, credential: &str, source: &str, padding: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "pull-secret-injector"},
            "annotations": {
                "pull-secret-injector/credential": credential,
                "pull-secret-injector/source": source,
                "pull-secret-injector/content-hash": "sha256:forged",
                "padding": "x".repeat(padding),
            },
        },
        "type": "Opaque",
        "data": {"k": STANDARD.encode("tenant data")},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_tenant_writes_cannot_grow_the_index_nor_keep_a_copy_wrong() {
    let c = icr_cluster(ICR_CONFIG).await;
    let t = c.namespace("team-t", json!({})).await;
    let injector = c.start_injector().await;
    c.wait_for_reference(&t, "default", "all-icr-io").await;
    let index = injector.running.index.clone().expect("cluster mode");
    let current = |n: f64| {
        let injector = &injector;
        async move {
            injector
                .metric("pull_secret_injector_copies{credential=\"icr\",state=\"current\"}")
                .await
                == n
        }
    };
    eventually("the copy to be counted", || current(1.0)).await;
    let before_bytes = index.read().approx_bytes();
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("pull_secret_injector_copies{"))
            .count()
    };
    let before_series = series(&injector.metrics().await);

    // Fewer on a real cluster, whose etcd is someone's.
    let flood = if c.is_real() { 300 } else { 1500 };
    let source = format!("{}/all-icr-io", c.ns("default"));
    for i in 0..flood {
        let (credential, source) = match i % 4 {
            0 => (format!("tenant-{i}"), source.clone()),
            1 => (
                "icr".to_string(),
                format!("{}/missing-{i}", c.ns("default")),
            ),
            2 => (
                "icr".to_string(),
                format!("{source}\n2026-12-01T00:00:00Z ERROR forged"),
            ),
            // The right marks under another name than the copy's.
            _ => ("icr".to_string(), source.clone()),
        };
        let padding = if i % 100 == 0 { 100_000 } else { 4_000 };
        c.create(forged_copy(
            &t,
            &format!("forged-{i}"),
            &credential,
            &source,
            padding,
        ))
        .await
        .expect("forged secret");
    }
    // Everything the watch streamed has been seen once a later event is: a real copy made in a
    // namespace created after the flood.
    let u = c.namespace("team-u", json!({})).await;
    c.wait_for_reference(&u, "default", "all-icr-io").await;
    eventually("the new copy to be indexed", || {
        let index = index.clone();
        async move { index.read().copy_count() == 2 }
    })
    .await;
    eventually("both copies to be counted", || current(2.0)).await;
    let after_bytes = index.read().approx_bytes();
    eprintln!("index: {before_bytes} bytes before {flood} forged Secrets, {after_bytes} after");
    // One more copy (and its namespace's strings) at most.
    assert!(
        after_bytes < before_bytes + 4 * 1024,
        "index grew from {before_bytes} to {after_bytes} bytes"
    );
    assert_eq!(series(&injector.metrics().await), before_series);
    assert_eq!(
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"source_missing\"}")
            .await,
        0.0
    );

    // A tampered copy, marks intact: restored to the source's content.
    let mut tampered = c.secret(&t, "all-icr-io").await.expect("copy");
    let good = auth_of(&tampered);
    let stolen = STANDARD.encode("tenant:stolen");
    let forged = json!({"auths": {"icr.io": {"auth": stolen}, "us.icr.io": {"auth": stolen}}});
    tampered["data"][".dockerconfigjson"] = json!(STANDARD.encode(forged.to_string()));
    c.replace(tampered).await.expect("tamper");
    eventually("the tampered copy to be restored", || async {
        c.secret(&t, "all-icr-io")
            .await
            .is_some_and(|s| auth_of(&s) == good)
    })
    .await;

    // Tampered and made immutable: cannot be restored; counted, and retried with backoff.
    let mut frozen = c.secret(&u, "all-icr-io").await.expect("copy");
    frozen["data"][".dockerconfigjson"] = json!(STANDARD.encode(forged.to_string()));
    frozen["immutable"] = json!(true);
    c.replace(frozen).await.expect("freeze");
    eventually("the copy to be counted unwritable", || async {
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"unwritable\"}")
            .await
            == 1.0
    })
    .await;
    let refused = || async {
        injector
            .metric("pull_secret_injector_reconcile_errors_total{action=\"update_copy\"}")
            .await
    };
    let start = refused().await;
    // Passes run every 200 ms here; without backoff 4 s would see about 20 attempts.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let more = refused().await - start;
    assert!(more <= 5.0, "{more} attempts in 4 s: not backing off");
    injector.stop().await;
}
