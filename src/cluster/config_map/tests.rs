//! How cluster mode reacts to the config ConfigMap the watch reports, against a scripted kube
//! API: what it starts for a valid config, what it reports (once) for an invalid or missing
//! one, and that seeing the same text again changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use futures::FutureExt;
use http::Method;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cluster::mock::{self, OWN_NAMESPACE, stored};
use crate::config::{CONFIG_KEY, DEFAULT_CONFIG_MAP};
use crate::lock::lock;
use crate::view::live::Feed;

const VALID: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    copyName: icr
    namespaces: {include: ["*"]}
serviceAccounts: ["default"]
"#;

/// A credential with no source.
const NO_SOURCE: &str = r#"
credentials:
  - name: icr
    namespaces: {include: ["*"]}
"#;
const NO_SOURCE_PROBLEM: &str =
    "no source: set exactly one of secret, secretSelector, localSecretSelector";

/// A credential with two sources.
const TWO_SOURCES: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    localSecretSelector: {matchLabels: {pull: "true"}}
    namespaces: {include: ["*"]}
"#;
const TWO_SOURCES_PROBLEM: &str =
    "several sources: set exactly one of secret, secretSelector, localSecretSelector";

const CONFIG_MAP_UID: &str = "3c9b1f0a-7e2d-4c5b-8a6f-9d0e1f2a3b4c";

/// The config ConfigMap holding `text`, at `resource_version`.
fn config_map(text: &str, resource_version: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(DEFAULT_CONFIG_MAP.to_string()),
            namespace: Some(OWN_NAMESPACE.to_string()),
            uid: Some(CONFIG_MAP_UID.to_string()),
            resource_version: Some(resource_version.to_string()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), text.to_string())])),
        ..Default::default()
    }
}

/// Asserts how many config reloads with `result` were counted.
fn assert_reloads(shared: &crate::cluster::Shared, result: &str, count: u32) {
    let text = shared.metrics.render();
    let line = format!(r#"pull_secret_injector_config_reloads_total{{result="{result}"}} {count}"#);
    let reloads: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pull_secret_injector_config_reloads_total"))
        .collect();
    assert!(
        reloads.contains(&line.as_str()),
        "expected {line}, have {reloads:?}"
    );
}

/// The watches the config is followed by, as task ids: a restarted watch gets a new one.
fn followed(shared: &crate::cluster::Shared) -> BTreeMap<Feed, tokio::task::Id> {
    lock(&shared.feeds)
        .iter()
        .map(|(feed, task)| (feed.clone(), task.id()))
        .collect()
}

#[tokio::test]
async fn a_valid_config_is_accepted_followed_and_backfilled_and_the_same_text_again_is_quiet() {
    let (shared, mut api) = mock::shared(None);
    // The ConfigMap was missing at first: that is why nothing is served.
    shared.config_seen(None);
    assert!(shared.slot.not_ready_reason().contains("not found"));

    shared.config_seen(Some(&config_map(VALID, "1")));
    assert_reloads(&shared, "success", 1);

    // Following it starts one watch per feed, and each lists first. They are left waiting
    // for their answers: what they do with one is the watches' business.
    let mut lists = BTreeSet::new();
    let mut unanswered = Vec::new();
    for _ in 0..3 {
        let call = api.next("a watch's first list").await;
        assert_eq!(call.method, Method::GET, "{call:#?}");
        let selector = call
            .query("labelSelector")
            .or(call.query("fieldSelector"))
            .unwrap_or_default()
            .to_string();
        lists.insert((call.path.clone(), selector));
        unanswered.push(call);
    }
    api.assert_idle();
    let expected: BTreeSet<(String, String)> = [
        (
            "/api/v1/secrets",
            "app.kubernetes.io/managed-by=pull-secret-injector",
        ),
        (
            "/api/v1/namespaces/default/secrets",
            "metadata.name=all-icr-io",
        ),
        ("/api/v1/serviceaccounts", "metadata.name=default"),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_string(), s.to_string()))
    .collect();
    assert_eq!(lists, expected);
    let feeds = followed(&shared);
    assert_eq!(
        feeds.keys().cloned().collect::<Vec<_>>(),
        vec![
            Feed::Copies,
            Feed::ServiceAccounts {
                name: Some("default".to_string())
            },
            Feed::SourceNamed {
                namespace: "default".to_string(),
                name: "all-icr-io".to_string()
            },
        ]
    );

    // A rebuild is asked for, and a backfill of every ServiceAccount.
    assert!(shared.rebuild.notified().now_or_never().is_some());
    assert!(shared.triggers.take_full_backfill());
    // What the build loop does then: the slot now waits for the lists, no longer for the
    // ConfigMap.
    shared.rebuild_now();
    assert_eq!(
        *shared.slot.not_ready_reason(),
        "waiting for the first list of namespaces, copies, secret default/all-icr-io"
    );

    // The same text again, as a relist or an edit of something else in the ConfigMap reports
    // it: nothing is counted, rebuilt, backfilled or restarted.
    shared.config_seen(Some(&config_map(VALID, "2")));
    assert_reloads(&shared, "success", 1);
    assert!(shared.rebuild.notified().now_or_never().is_none());
    assert!(!shared.triggers.take_full_backfill());
    assert_eq!(followed(&shared), feeds);
    api.assert_idle();
    drop(unanswered);
}

#[tokio::test]
async fn an_invalid_config_is_refused_once_with_one_invalid_config_event() {
    let (shared, mut api) = mock::shared(None);
    shared.config_seen(Some(&config_map(NO_SOURCE, "7")));
    let reason = shared.slot.not_ready_reason();
    assert!(
        reason
            .starts_with("invalid config in ConfigMap pull-secret-injector/pull-secret-injector:")
            && reason.contains(NO_SOURCE_PROBLEM),
        "{reason}"
    );
    assert_reloads(&shared, "error", 1);

    let call = api.next("the InvalidConfig Event").await.expect(
        Method::POST,
        "/api/v1/namespaces/pull-secret-injector/events",
    );
    let event = &call.body;
    assert_eq!(event["reason"], "InvalidConfig");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["metadata"]["generateName"], "pull-secret-injector.");
    assert_eq!(
        event["involvedObject"],
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": DEFAULT_CONFIG_MAP,
            "namespace": OWN_NAMESPACE,
            "uid": CONFIG_MAP_UID,
            "resourceVersion": "7",
        })
    );
    let message = event["message"].as_str().expect("a message");
    assert!(
        message.starts_with("invalid config.yaml, nothing is injected until it is fixed: ")
            && message.contains(NO_SOURCE_PROBLEM),
        "{message}"
    );
    let posted = stored(call.body.clone(), "900");
    call.respond(201, posted);

    // The same text again, as the watch's periodic relist reports it: already refused.
    shared.config_seen(Some(&config_map(NO_SOURCE, "8")));
    assert_reloads(&shared, "error", 1);
    // Another mistake is news. Its Event is the very next request: the repeat posted none
    // (Events go out in the order the reports were made).
    shared.config_seen(Some(&config_map(TWO_SOURCES, "9")));
    assert_reloads(&shared, "error", 2);
    let call = api.next("the second mistake's Event").await.expect(
        Method::POST,
        "/api/v1/namespaces/pull-secret-injector/events",
    );
    let message = call.body["message"].as_str().expect("a message");
    assert!(
        message.contains(TWO_SOURCES_PROBLEM) && !message.contains(NO_SOURCE_PROBLEM),
        "the Event after the repeat must be the second mistake's (a repeat posts none): {message}"
    );
    assert_eq!(call.body["involvedObject"]["resourceVersion"], "9");
    let posted = stored(call.body.clone(), "901");
    call.respond(201, posted);
    api.assert_idle();
}

#[tokio::test]
async fn a_deleted_config_map_is_refused_as_not_found() {
    let (shared, mut api) = mock::shared(None);
    shared.config_seen(None);
    assert_eq!(
        *shared.slot.not_ready_reason(),
        "ConfigMap pull-secret-injector/pull-secret-injector not found"
    );
    assert_reloads(&shared, "error", 1);
    // Reported again (each relist that finds nothing does): refused already.
    shared.config_seen(None);
    assert_reloads(&shared, "error", 1);
    assert!(shared.rebuild.notified().now_or_never().is_none());
    assert!(lock(&shared.feeds).is_empty());
    api.assert_idle();
}
