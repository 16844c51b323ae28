//! At admission: a new namespace's `default` ServiceAccount and new pods get their secrets,
//! dry runs write nothing, foreign secrets are left alone, reviews for unknown namespaces write
//! nothing, warnings name nothing of another namespace, and client certificates keep other
//! callers out.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::harness::{Injector, annotation, decoded_auths, eventually, pull_secrets};
use crate::{ICR_CONFIG, ICR_PODS_ONLY, icr_cluster, icr_source};
use pull_secret_injector::tls::certs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_namespace_gets_its_default_service_account_patched_at_creation() {
    let c = icr_cluster(ICR_CONFIG).await;
    let injector = c.start_injector().await;
    let team = c.namespace("team-new", json!({})).await;
    c.wait_for_reference(&team, "default", "all-icr-io").await;

    // It happened in admission, not only by backfill.
    eventually("the ServiceAccount admission to be counted as patched", || async {
        injector
            .metric(
                "pull_secret_injector_admission_requests_total{kind=\"ServiceAccount\",operation=\"CREATE\",outcome=\"patched\"}",
            )
            .await
            >= 1.0
    })
    .await;
    let sa = c.service_account(&team, "default").await.expect("sa");
    assert_eq!(
        annotation(&sa, "pull-secret-injector/injected").as_deref(),
        Some("all-icr-io")
    );

    // The copy is ours, filtered, labelled and annotated.
    let copy = c.secret(&team, "all-icr-io").await.expect("copy");
    assert_eq!(copy["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        copy["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "pull-secret-injector"
    );
    assert_eq!(
        annotation(&copy, "pull-secret-injector/source"),
        Some(format!("{}/all-icr-io", c.ns("default")))
    );
    assert_eq!(
        decoded_auths(&copy),
        BTreeSet::from(["icr.io".to_string(), "us.icr.io".to_string()])
    );
    // Out of scope: no copy, no reference.
    let elsewhere = c.namespace("elsewhere", json!({})).await;
    c.runner(&elsewhere).await;
    let pod = c.create_pod(&elsewhere, &["us.icr.io/x/y:1"]).await;
    assert!(pull_secrets(&pod).is_empty());
    assert!(c.secret(&elsewhere, "all-icr-io").await.is_none());
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_secret_with_the_copy_name_is_never_touched() {
    let c = icr_cluster(ICR_PODS_ONLY).await;
    let team = c.namespace("team-f", json!({})).await;
    let mut foreign = icr_source(&c, "hand-made");
    foreign["metadata"]["namespace"] = json!(team);
    let foreign = c.create(foreign).await.expect("foreign");
    let injector = c.start_injector().await;
    c.runner(&team).await;
    let (pod, warnings) = c
        .create_pod_with(&team, &["us.icr.io/team/app:1"], false)
        .await;
    assert!(pull_secrets(&pod).is_empty(), "{pod}");
    assert!(
        warnings.iter().any(|w| w.contains("not managed")),
        "{warnings:?}"
    );
    let after = c.secret(&team, "all-icr-io").await.expect("still there");
    assert_eq!(
        after["metadata"]["resourceVersion"],
        foreign["metadata"]["resourceVersion"]
    );
    assert_eq!(
        injector
            .metric("pull_secret_injector_api_writes_total{action=\"update_copy\"}")
            .await,
        0.0
    );
    assert_eq!(
        injector
            .metric("pull_secret_injector_api_writes_total{action=\"delete_copy\"}")
            .await,
        0.0
    );
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_returns_the_patch_and_creates_nothing() {
    let c = icr_cluster(ICR_PODS_ONLY).await;
    let team = c.namespace("team-d", json!({})).await;
    c.runner(&team).await;
    let injector = c.start_injector().await;
    let (pod, _) = c.create_pod_with(&team, &["icr.io/team/app:1"], true).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    assert!(c.secret(&team, "all-icr-io").await.is_none());
    assert!(c.list("pods", Some(&team)).await.is_empty());
    assert_eq!(
        injector
            .metric("pull_secret_injector_api_writes_total{action=\"create_copy\"}")
            .await,
        0.0
    );

    let pod = c.create_pod(&team, &["icr.io/team/app:1"]).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    assert!(c.secret(&team, "all-icr-io").await.is_some());
    injector.stop().await;
}

/// Admission warnings name nothing of another namespace: a broken credential whose source lives
/// in the admin's namespace is named by credential only, and only to pods it concerns; the admin
/// reads the whole story in an Event on the ConfigMap, and in a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_for_a_pod_name_nothing_of_another_namespace() {
    let config = ICR_CONFIG.replace(
        "serviceAccounts:",
        "  - name: broken\n    secret: \"{P}creds/broken\"\n    namespaces: {include: [\"{P}team-*\"]}\nserviceAccounts:",
    );
    let c = icr_cluster(&config).await;
    let creds = c.namespace("creds", json!({})).await;
    let broken = json!({"auths": {"broken.example.com": {"auth": 12345}}});
    c.create(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "broken", "namespace": creds},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(broken.to_string())},
    }))
    .await
    .expect("broken source");
    let team = c.namespace("team-w", json!({})).await;
    c.runner(&team).await;
    let injector = c.start_injector().await;
    let (pod, warnings) = c.create_pod_with(&team, &["icr.io/a/b:1"], false).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    assert!(warnings.is_empty(), "{warnings:?}");
    let (_, warnings) = c
        .create_pod_with(&team, &["broken.example.com/a/b:1"], false)
        .await;
    assert_eq!(
        warnings,
        [
            "pull-secret-injector: credential broken not injected: its source secret is not a valid pull secret; ask your cluster admin"
        ]
    );
    let source = format!("{creds}/broken");
    eventually("an Event naming the source", || async {
        c.list("events", Some(&c.own)).await.iter().any(|e| {
            e["reason"] == "CredentialUnusable"
                && e["message"].as_str().is_some_and(|m| m.contains(&source))
        })
    })
    .await;
    assert_eq!(
        injector
            .metric(
                "pull_secret_injector_credential_problems{credential=\"broken\",reason=\"source_invalid\"}"
            )
            .await,
        1.0
    );
    injector.stop().await;
}

/// A review for a namespace the injector does not know (forged, or for one that does not
/// exist) is answered allowed, with no patch, and nothing is written for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_for_an_unknown_namespace_writes_nothing() {
    let c = icr_cluster(ICR_PODS_ONLY).await;
    let injector = c.start_injector().await;
    let ghost = c.ns("team-ghost");
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "forged-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": ghost, "operation": "CREATE",
            "userInfo": {"username": "someone"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": ghost},
                "spec": {"containers": [{"name": "c", "image": "icr.io/a/b:1"}]},
            },
        },
    });
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(injector.ca_pem.as_bytes()).expect("ca"),
        )
        .build()
        .expect("client");
    let url = format!(
        "https://127.0.0.1:{}/mutate",
        injector.running.admission_addr.port()
    );
    let answer: Value = client
        .post(&url)
        .header("content-type", "application/json")
        .body(review.to_string())
        .send()
        .await
        .expect("review")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["patch"].is_null(), "{answer}");
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("not known")),
        "{answer}"
    );
    let writes = injector.metrics().await;
    assert!(
        !writes
            .lines()
            .any(|l| l.starts_with("pull_secret_injector_api_writes_total{")),
        "{writes}"
    );
    injector.stop().await;
}

/// With --client-ca, kube-apiserver's calls carry its client certificate (AdmissionConfiguration
/// kubeConfigFile) and are answered; without it they are refused, and the webhook's
/// failurePolicy Ignore lets the pod through uninjected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_keep_other_callers_out() {
    let c = icr_cluster(ICR_PODS_ONLY).await;
    let fake = crate::fake_only!(
        c,
        "the fake presents the client certificate kube-apiserver's AdmissionConfiguration would"
    );
    let team = c.namespace("team-c", json!({})).await;
    c.runner(&team).await;
    let apiserver = certs::generate_client("kube-apiserver", 1).expect("client pair");
    let dir = c.dir.path().join("client-ca");
    certs::write(&dir, &apiserver, true).expect("write");
    let ca = dir.join(certs::CA_FILE);
    let injector = Injector::launch(&c, "mtls", |args| args.client_ca = Some(ca), false).await;
    injector.register(&c).await;
    let pod = c.create_pod(&team, &["icr.io/a/b:1"]).await;
    assert!(pull_secrets(&pod).is_empty(), "no certificate presented");
    fake.set_webhook_client_identity(&apiserver.cert_pem, &apiserver.key_pem);
    let pod = c.create_pod(&team, &["icr.io/a/b:1"]).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    injector.stop().await;
}
