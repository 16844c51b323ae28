//! The fake apiserver behaves like kube-apiserver as kube-rs sees it: these tests drive it with
//! kube's own client, watchers and patch types, so that end-to-end tests of the webhook against
//! it mean something.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_apiserver::objects::{
    config_map, dockerconfigjson_secret, namespace, pod, registry_auth, service_account,
    webhook_config,
};
use fake_apiserver::{FakeApiServer, Fault, FaultKind, eventually};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);

/// A kube client configured the way the webhook is: from a kubeconfig file.
async fn client(server: &FakeApiServer, token: &str) -> kube::Client {
    let dir = tempfile::tempdir().unwrap();
    let path = server.write_kubeconfig(dir.path(), token);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn admin(server: &FakeApiServer) -> kube::Client {
    client(server, FakeApiServer::ADMIN_TOKEN).await
}

/// The Status of a failed kube call.
fn status<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn make_namespace(server: &FakeApiServer, name: &str, labels: &[(&str, &str)]) {
    server.create(namespace(name, labels)).await.unwrap();
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn crud_and_status_errors_match_kube() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces
        .create(&PostParams::default(), &typed(namespace("app", &[])))
        .await
        .unwrap();
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/metadata.name"], "app");
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    assert!(ns.metadata.uid.is_some() && ns.metadata.creation_timestamp.is_some());

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "app");
    let auths = registry_auth("registry.example.com", "u", "p");
    let secret: Secret = typed(dockerconfigjson_secret("app", "pull", &auths));
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let rv1: u64 = created
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        secrets.get("pull").await.unwrap().metadata.uid,
        created.metadata.uid
    );

    let exists = status(secrets.create(&PostParams::default(), &secret).await);
    assert_eq!(
        (exists.code, exists.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(exists.message, "secrets \"pull\" already exists");
    assert_eq!(exists.details.unwrap().kind, "secrets");

    let missing = status(secrets.get("nope").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "secrets \"nope\" not found");

    let mut bad_name = secret.clone();
    bad_name.metadata.name = Some("Bad_Name".into());
    let invalid = status(secrets.create(&PostParams::default(), &bad_name).await);
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    assert!(invalid.message.starts_with(
        "Secret \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
    ));
    assert_eq!(invalid.details.unwrap().causes[0].field, "metadata.name");

    let mut no_key = secret.clone();
    no_key.metadata.name = Some("empty".into());
    no_key.data = Some(BTreeMap::new());
    let invalid = status(secrets.create(&PostParams::default(), &no_key).await);
    assert_eq!(invalid.code, 422);
    assert_eq!(
        invalid.message,
        "Secret \"empty\" is invalid: data[.dockerconfigjson]: Required value"
    );

    let elsewhere: Api<Secret> = Api::namespaced(client.clone(), "ghost");
    let mut unplaced = secret.clone();
    unplaced.metadata.namespace = None;
    let no_ns = status(elsewhere.create(&PostParams::default(), &unplaced).await);
    assert_eq!(
        (no_ns.code, no_ns.message.as_str()),
        (404, "namespaces \"ghost\" not found")
    );
    let mismatch = status(
        Api::<Secret>::namespaced(client.clone(), "other")
            .create(&PostParams::default(), &secret)
            .await,
    );
    assert_eq!(
        (mismatch.code, mismatch.reason.as_str()),
        (400, "BadRequest")
    );

    // Updates: a stale resourceVersion conflicts, none is unconditional, type is immutable.
    let mut changed = created.clone();
    changed.metadata.labels = Some([("a".to_string(), "1".to_string())].into());
    let updated = secrets
        .replace("pull", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    let conflict = status(
        secrets
            .replace("pull", &PostParams::default(), &changed)
            .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        "Operation cannot be fulfilled on secrets \"pull\": the object has been modified; please apply your changes to the latest version and try again"
    );
    changed.metadata.resource_version = None;
    secrets
        .replace("pull", &PostParams::default(), &changed)
        .await
        .unwrap();
    let mut retyped = changed.clone();
    retyped.type_ = Some("Opaque".into());
    let immutable = status(
        secrets
            .replace("pull", &PostParams::default(), &retyped)
            .await,
    );
    assert_eq!(immutable.code, 422);
    assert!(
        immutable
            .message
            .contains("type: Invalid value: \"Opaque\": field is immutable")
    );

    // A terminating namespace keeps its content and refuses new content.
    namespaces
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = namespaces.get("app").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    secrets.get("pull").await.unwrap();
    let mut fresh = secret.clone();
    fresh.metadata.name = Some("fresh".into());
    let forbidden = status(secrets.create(&PostParams::default(), &fresh).await);
    assert_eq!(
        (forbidden.code, forbidden.reason.as_str()),
        (403, "Forbidden")
    );
    assert_eq!(
        forbidden.message,
        "secrets \"fresh\" is forbidden: unable to create new content in namespace app because it is being terminated"
    );
    server.finish_namespace_deletion("app");
    assert_eq!(status(namespaces.get("app").await).code, 404);
    assert_eq!(status(secrets.get("pull").await).code, 404);

    // Plain deletes answer with the object and leave nothing behind.
    make_namespace(&server, "b", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "b");
    cms.create(
        &PostParams::default(),
        &typed(config_map("b", "c", &[("k", "v")])),
    )
    .await
    .unwrap();
    let deleted = cms.delete("c", &DeleteParams::default()).await.unwrap();
    assert!(deleted.left().is_some());
    assert_eq!(status(cms.get("c").await).code, 404);
    assert_eq!(
        status(cms.delete("c", &DeleteParams::default()).await).code,
        404
    );
}

#[tokio::test]
async fn unknown_tokens_are_unauthorized() {
    let server = FakeApiServer::start().await;
    let client = client(&server, "not-a-token").await;
    let unauthorized = status(
        Api::<Namespace>::all(client)
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(
        (unauthorized.code, unauthorized.reason.as_str()),
        (401, "Unauthorized")
    );
    assert_eq!(server.requests()[0].status, 401);
}

#[tokio::test]
async fn lists_filter_by_selectors_and_paginate() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "l", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "l");
    for (name, tier) in [
        ("a", "web"),
        ("b", "db"),
        ("c", "web"),
        ("d", ""),
        ("e", "cache"),
    ] {
        let mut cm = config_map("l", name, &[]);
        if !tier.is_empty() {
            cm["metadata"]["labels"] = json!({"tier": tier});
        }
        server.create(cm).await.unwrap();
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect()
    };
    let with = |labels: &str| ListParams::default().labels(labels);
    assert_eq!(
        names(cms.list(&with("tier=web")).await.unwrap()),
        ["a", "c"]
    );
    assert_eq!(names(cms.list(&with("tier==db")).await.unwrap()), ["b"]);
    assert_eq!(
        names(cms.list(&with("tier!=web")).await.unwrap()),
        ["b", "d", "e"]
    );
    assert_eq!(
        names(cms.list(&with("tier in (db,cache)")).await.unwrap()),
        ["b", "e"]
    );
    assert_eq!(
        names(cms.list(&with("tier notin (web)")).await.unwrap()),
        ["b", "d", "e"]
    );
    assert_eq!(
        names(cms.list(&with("tier")).await.unwrap()),
        ["a", "b", "c", "e"]
    );
    assert_eq!(names(cms.list(&with("!tier")).await.unwrap()), ["d"]);
    let by_name = ListParams::default().fields("metadata.name=c");
    assert_eq!(names(cms.list(&by_name).await.unwrap()), ["c"]);
    let not_name = ListParams::default().fields("metadata.name!=c,metadata.namespace=l");
    assert_eq!(
        names(cms.list(&not_name).await.unwrap()),
        ["a", "b", "d", "e"]
    );
    let bad = status(cms.list(&ListParams::default().fields("spec.nope=1")).await);
    assert_eq!(bad.code, 400);

    let all = cms.list(&ListParams::default()).await.unwrap();
    let list_rv = all.metadata.resource_version.clone().unwrap();
    assert_eq!(list_rv, server.resource_version().to_string());

    let mut pages = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = cms.list(&params).await.unwrap();
        assert_eq!(
            page.metadata.resource_version.as_deref(),
            Some(list_rv.as_str())
        );
        pages.push(names(page.clone()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]);

    // Across namespaces, and metadata-only.
    make_namespace(&server, "m", &[]).await;
    server.create(config_map("m", "z", &[])).await.unwrap();
    let everywhere: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        everywhere
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        6
    );
    let meta = everywhere
        .list_metadata(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(meta.items.len(), 6);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.verb == "list" && r.metadata_only)
    );
}

/// Collects what a kube-rs watcher reports, as the webhook's watchers would see it.
fn collect<K, S>(stream: S) -> Arc<Mutex<Vec<String>>>
where
    K: kube::Resource + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let line = match event {
                Ok(watcher::Event::Apply(o)) => format!("apply {}", o.meta().name.clone().unwrap()),
                Ok(watcher::Event::Delete(o)) => {
                    format!("delete {}", o.meta().name.clone().unwrap())
                }
                Ok(watcher::Event::Init) => "init".into(),
                Ok(watcher::Event::InitApply(o)) => {
                    format!("initapply {}", o.meta().name.clone().unwrap())
                }
                Ok(watcher::Event::InitDone) => "initdone".into(),
                Err(e) => format!("error {e}"),
            };
            sink.lock().unwrap().push(line);
        }
    });
    seen
}

fn saw(seen: &Arc<Mutex<Vec<String>>>, line: &str) -> bool {
    seen.lock().unwrap().iter().any(|l| l == line)
}

#[tokio::test]
async fn watchers_follow_changes_and_recover_from_drops_and_expiry() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "w", &[]).await;
    server.create(config_map("w", "before", &[])).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "w");
    let seen = collect(watcher(cms.clone(), watcher::Config::default()).default_backoff());
    eventually("the initial list", || async { saw(&seen, "initdone") }).await;
    assert!(saw(&seen, "initapply before"));

    server.create(config_map("w", "one", &[])).await.unwrap();
    eventually("the new object", || async { saw(&seen, "apply one") }).await;
    cms.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deletion", || async { saw(&seen, "delete before") }).await;

    // A dropped connection: the watcher re-watches from where it was, without a relist.
    let lists = server.count("admin", "list", "configmaps");
    server.drop_watches();
    server.create(config_map("w", "two", &[])).await.unwrap();
    eventually("an object created across the drop", || async {
        saw(&seen, "apply two")
    })
    .await;

    // Expired history: the re-watch gets 410 and the watcher relists.
    server.expire_history();
    server.create(config_map("w", "three", &[])).await.unwrap();
    eventually("the relist after 410", || async {
        saw(&seen, "initapply three") && server.count("admin", "list", "configmaps") > lists
    })
    .await;
    assert!(saw(&seen, "initapply two"));
}

#[tokio::test]
async fn raw_watch_speaks_kube_protocol() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "r", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "r");
    let start = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let params = WatchParams::default().labels("app=x");
    let mut stream = cms.watch(&params, &start).await.unwrap().boxed();

    let mut cm = config_map("r", "w", &[]);
    cm["metadata"]["labels"] = json!({"app": "x"});
    server.create(cm).await.unwrap();
    let patch = |labels: Value| Patch::Merge(json!({"metadata": {"labels": labels}}));
    cms.patch(
        "w",
        &PatchParams::default(),
        &patch(json!({"app": "x", "more": "1"})),
    )
    .await
    .unwrap();
    // Stops matching: DELETED; matches again: ADDED.
    cms.patch("w", &PatchParams::default(), &patch(json!({"app": "y"})))
        .await
        .unwrap();
    cms.patch("w", &PatchParams::default(), &patch(json!({"app": "x"})))
        .await
        .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();

    let mut kinds = Vec::new();
    let mut last_rv = 0u64;
    while kinds.len() < 5 {
        let event = tokio::time::timeout(DEADLINE, stream.try_next())
            .await
            .unwrap()
            .unwrap();
        let (kind, obj) = match event.unwrap() {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("error event {e:?}"),
        };
        let rv: u64 = obj.metadata.resource_version.unwrap().parse().unwrap();
        assert!(rv > last_rv, "resourceVersions increase");
        last_rv = rv;
        kinds.push(kind);
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED", "ADDED", "DELETED"]);
    // Bookmarks come every second or so; the stream is otherwise idle now.
    let bookmark = tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(bookmark, Some(WatchEvent::Bookmark(_))),
        "{bookmark:?}"
    );

    // Too old a version: one ERROR event with kube's 410, then the end of the stream.
    server.expire_history();
    let mut stream = cms
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(
                e.message
                    .starts_with(&format!("too old resource version: {start} ("))
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(stream.try_next().await.unwrap().is_none());

    // timeoutSeconds ends the stream cleanly.
    let now = server.resource_version().to_string();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(1), &now)
        .await
        .unwrap()
        .boxed();
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = stream.try_next().await.unwrap() {
            assert!(matches!(event, WatchEvent::Bookmark(_)), "{event:?}");
        }
    });
    ended.await.unwrap();
}

#[tokio::test]
async fn metadata_watcher_gets_partial_objects() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "mw", &[]).await;
    // kube 5's metadata watcher: `Api<PartialObjectMeta<K>>` sends the as=PartialObjectMetadata
    // Accept headers.
    let secrets: Api<PartialObjectMeta<Secret>> = Api::namespaced(client.clone(), "mw");
    let seen = collect(watcher(secrets, watcher::Config::default()).default_backoff());
    eventually("the initial list", || async { saw(&seen, "initdone") }).await;
    let auths = registry_auth("r.example", "u", "p");
    server
        .create(dockerconfigjson_secret("mw", "pull", &auths))
        .await
        .unwrap();
    eventually("the secret's metadata", || async {
        saw(&seen, "apply pull")
    })
    .await;
    let records = server.requests();
    assert!(
        records
            .iter()
            .any(|r| r.verb == "watch" && r.metadata_only && r.resource == "secrets")
    );
}

#[tokio::test]
async fn every_patch_type_behaves_like_kube() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "p", &[]).await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "p");
    server
        .create(service_account("p", "robot", &["a", "b"]))
        .await
        .unwrap();

    // Strategic merge: ServiceAccount.imagePullSecrets has no patch strategy (it is
    // `+listType=atomic`), so the patch's list replaces it, as on a real cluster.
    let smp = Patch::Strategic(json!({"imagePullSecrets": [{"name": "c"}, {"name": "a"}]}));
    let sa = sas
        .patch("robot", &PatchParams::default(), &smp)
        .await
        .unwrap();
    let names: Vec<String> = sa
        .image_pull_secrets
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["c", "a"]);
    // A plain merge patch replaces the list.
    let merge = Patch::Merge(json!({"imagePullSecrets": [{"name": "z"}]}));
    let sa = sas
        .patch("robot", &PatchParams::default(), &merge)
        .await
        .unwrap();
    assert_eq!(sa.image_pull_secrets.unwrap().len(), 1);

    // Merge patch with metadata.resourceVersion is a precondition.
    let stale = Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}}));
    let conflict = status(sas.patch("robot", &PatchParams::default(), &stale).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    let current = sa.metadata.resource_version.unwrap();
    let fresh =
        Patch::Merge(json!({"metadata": {"resourceVersion": current, "labels": {"x": "y"}}}));
    sas.patch("robot", &PatchParams::default(), &fresh)
        .await
        .unwrap();

    // JSON patch, with `test`.
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels/x", "value": "y"},
        {"op": "add", "path": "/metadata/labels/j", "value": "1"},
    ]))
    .unwrap();
    let sa = sas
        .patch("robot", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(sa.metadata.labels.unwrap()["j"], "1");
    let failing: json_patch::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/metadata/labels/x", "value": "no"}]),
    )
    .unwrap();
    let failed = status(
        sas.patch(
            "robot",
            &PatchParams::default(),
            &Patch::Json::<()>(failing),
        )
        .await,
    );
    assert_eq!(failed.code, 422);

    // Server-side apply needs a field manager, creates, then merges.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "p");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}});
    let no_manager = status(
        cms.patch("cfg", &PatchParams::default(), &Patch::Apply(&applied))
            .await,
    );
    assert_eq!(no_manager.code, 422);
    let ssa = PatchParams::apply("tests").force();
    cms.patch("cfg", &ssa, &Patch::Apply(&applied))
        .await
        .unwrap();
    let again = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"b": "2"}});
    let cm = cms.patch("cfg", &ssa, &Patch::Apply(&again)).await.unwrap();
    assert_eq!(cm.data.unwrap().get("b").map(String::as_str), Some("2"));

    // Patching nothing is 404.
    let missing = status(sas.patch("ghost", &PatchParams::default(), &merge).await);
    assert_eq!(missing.code, 404);
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "d", &[]).await;
    eventually("the default ServiceAccount", || async {
        server
            .get("serviceaccounts", Some("d"), "default")
            .is_some()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "d");
    let rv = server.resource_version();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut cm: ConfigMap = typed(config_map("d", "x", &[]));
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("gen-".into());
    let returned = cms.create(&dry, &cm).await.unwrap();
    assert!(returned.metadata.name.unwrap().starts_with("gen-"));
    assert!(
        cms.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(server.resource_version(), rv);

    server.create(config_map("d", "real", &[])).await.unwrap();
    let rv = server.resource_version();
    let patch = Patch::Merge(json!({"data": {"k": "v"}}));
    let patched = cms
        .patch("real", &PatchParams::default().dry_run(), &patch)
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["k"], "v");
    cms.delete("real", &DeleteParams::default().dry_run())
        .await
        .unwrap();
    assert!(
        !cms.get("real")
            .await
            .unwrap()
            .data
            .unwrap_or_default()
            .contains_key("k")
    );
    assert_eq!(server.resource_version(), rv);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.dry_run && r.verb == "delete")
    );
}

const RBAC: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: injector, namespace: system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: sa-reader}
rules:
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: injector-sa-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: sa-reader}
subjects:
- {kind: ServiceAccount, name: injector, namespace: system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pull-secrets, namespace: system}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [only-this]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: injector-pull-secrets, namespace: system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pull-secrets}
subjects:
- {kind: ServiceAccount, name: injector, namespace: system}
"#;

#[tokio::test]
async fn rbac_allows_and_denies_service_accounts() {
    let server = FakeApiServer::start().await;
    server.load_rbac(RBAC).unwrap();
    make_namespace(&server, "system", &[]).await;
    make_namespace(&server, "tenant", &[]).await;
    server
        .create(config_map("system", "only-this", &[]))
        .await
        .unwrap();
    server
        .create(config_map("system", "other", &[]))
        .await
        .unwrap();
    let token = server.service_account_token("system", "injector");
    let client = client(&server, &token).await;
    let user = "system:serviceaccount:system:injector";

    Api::<Secret>::namespaced(client.clone(), "system")
        .list(&ListParams::default())
        .await
        .unwrap();
    Api::<ServiceAccount>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let denied = status(
        Api::<Secret>::namespaced(client.clone(), "tenant")
            .list(&ListParams::default())
            .await,
    );
    assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        denied.message,
        format!(
            "secrets is forbidden: User \"{user}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"tenant\""
        )
    );
    let cluster = status(
        Api::<Secret>::all(client.clone())
            .list(&ListParams::default())
            .await,
    );
    assert_eq!(
        cluster.message,
        format!(
            "secrets is forbidden: User \"{user}\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
        )
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "system");
    cms.get("only-this").await.unwrap();
    let other = status(cms.get("other").await);
    assert_eq!(
        other.message,
        format!(
            "configmaps \"other\" is forbidden: User \"{user}\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"system\""
        )
    );
    let create = status(
        Api::<Secret>::namespaced(client.clone(), "system")
            .create(
                &PostParams::default(),
                &typed(dockerconfigjson_secret("system", "s", &json!({}))),
            )
            .await,
    );
    assert_eq!(create.code, 403);
    assert_eq!(server.count(user, "list", "secrets"), 3);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.user == user && r.status == 403 && r.verb == "create")
    );
}

/// A tiny HTTPS admission webhook that labels what it sees, and the CA that signed it.
async fn webhook(patch: Value) -> (String, String) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use rustls::pki_types::pem::PemObject;
    let g = fake_apiserver::test_pair(&["127.0.0.1"]);
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(g.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(g.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/mutate",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let patch = patch.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let patch = patch.clone();
                        async move {
                            assert!(req.uri().query().unwrap().starts_with("timeout="));
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            let request = &review["request"];
                            use base64::Engine;
                            let patch =
                                base64::engine::general_purpose::STANDARD.encode(patch.to_string());
                            let response = json!({
                                "apiVersion": "admission.k8s.io/v1",
                                "kind": "AdmissionReview",
                                "response": {"uid": request["uid"], "allowed": true, "patchType": "JSONPatch", "patch": patch, "warnings": ["labelled"]},
                            });
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(response.to_string()),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, g.ca_pem)
}

#[tokio::test]
async fn webhooks_mutate_pods_and_honour_policies() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "hooked", &[("inject", "on")]).await;
    make_namespace(&server, "plain", &[]).await;
    for ns in ["hooked", "plain"] {
        eventually("the default ServiceAccount", || async {
            server.get("serviceaccounts", Some(ns), "default").is_some()
        })
        .await;
    }
    let (url, ca) =
        webhook(json!([{"op": "add", "path": "/metadata/labels", "value": {"injected": "yes"}}]))
            .await;
    let mut config = webhook_config("injector", &url, &ca, "Fail");
    let hooks = config.webhooks.as_mut().unwrap();
    hooks[0].namespace_selector =
        Some(serde_json::from_value(json!({"matchLabels": {"inject": "on"}})).unwrap());
    hooks[0].side_effects = "Unknown".into();
    server.register_webhook(config);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "hooked");
    let mut p: Pod = typed(pod("hooked", "", &["nginx"]));
    p.metadata.name = None;
    p.metadata.generate_name = Some("web-".into());
    let created = pods.create(&PostParams::default(), &p).await.unwrap();
    assert_eq!(created.metadata.labels.unwrap()["injected"], "yes");
    let calls = server.admission_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (
            calls[0].kind.as_str(),
            calls[0].namespace.as_str(),
            calls[0].name.as_str()
        ),
        ("Pod", "hooked", "")
    );
    assert!(calls[0].patched && calls[0].error.is_none());
    assert_eq!(calls[0].warnings, ["labelled"]);

    // namespaceSelector leaves other namespaces alone.
    let plain: Api<Pod> = Api::namespaced(client.clone(), "plain");
    let stored = plain
        .create(
            &PostParams::default(),
            &typed(pod("plain", "p", &["nginx"])),
        )
        .await
        .unwrap();
    assert!(stored.metadata.labels.is_none());
    assert_eq!(server.admission_calls().len(), 1);

    // A webhook with side effects refuses dry runs, as kube does.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let refused = status(
        pods.create(&dry, &typed(pod("hooked", "dry", &["nginx"])))
            .await,
    );
    assert_eq!(refused.code, 400);
    assert!(refused.message.contains("does not support dry run"));

    // A dead webhook: Ignore stores the pod unmutated, Fail rejects it.
    let dead = "https://127.0.0.1:9/mutate";
    server.register_webhook(webhook_config("injector", dead, &ca, "Ignore"));
    let stored = pods
        .create(
            &PostParams::default(),
            &typed(pod("hooked", "ignored", &["nginx"])),
        )
        .await
        .unwrap();
    assert!(stored.metadata.labels.is_none());
    assert!(
        server
            .admission_calls()
            .last()
            .unwrap()
            .error
            .as_ref()
            .unwrap()
            .contains("failed calling webhook")
    );
    server.register_webhook(webhook_config("injector", dead, &ca, "Fail"));
    let failed = status(
        pods.create(
            &PostParams::default(),
            &typed(pod("hooked", "failed", &["nginx"])),
        )
        .await,
    );
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (500, "InternalError")
    );
    assert!(
        failed.message.starts_with(
            "Internal error occurred: failed calling webhook \"injector.example.com\""
        )
    );
    assert_eq!(status(pods.get("failed").await).code, 404);
}

#[tokio::test]
async fn pods_get_service_account_admission() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "sa", &[]).await;
    eventually("the default ServiceAccount", || async {
        server
            .get("serviceaccounts", Some("sa"), "default")
            .is_some()
    })
    .await;
    server
        .create(service_account("sa", "builder", &["regcred"]))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "sa");

    let p = pods
        .create(
            &PostParams::default(),
            &typed(pod("sa", "plain", &["nginx"])),
        )
        .await
        .unwrap();
    assert_eq!(
        p.spec.unwrap().service_account_name.as_deref(),
        Some("default")
    );

    let mut with_sa: Pod = typed(pod("sa", "built", &["nginx"]));
    with_sa.spec.as_mut().unwrap().service_account_name = Some("builder".into());
    let p = pods.create(&PostParams::default(), &with_sa).await.unwrap();
    let secrets: Vec<String> = p
        .spec
        .unwrap()
        .image_pull_secrets
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(secrets, ["regcred"]);

    let mut missing: Pod = typed(pod("sa", "lost", &["nginx"]));
    missing.spec.as_mut().unwrap().service_account_name = Some("ghost".into());
    let forbidden = status(pods.create(&PostParams::default(), &missing).await);
    assert_eq!(forbidden.code, 403);
    assert_eq!(
        forbidden.message,
        "pods \"lost\" is forbidden: error looking up service account sa/ghost: serviceaccount \"ghost\" not found"
    );
}

#[tokio::test]
async fn faults_fail_then_recover_and_delay() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "f", &[]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "f");
    server.add_fault(
        Fault::new(FaultKind::Status(500))
            .method("list")
            .path("/configmaps")
            .times(1),
    );
    let failed = status(cms.list(&ListParams::default()).await);
    assert_eq!(
        (failed.code, failed.reason.as_str()),
        (500, "InternalError")
    );
    cms.list(&ListParams::default()).await.unwrap();

    // kube-rs retries 429 after Retry-After, as it would against a throttling apiserver.
    let id = server.add_fault(Fault::new(FaultKind::Status(429)).method("GET").times(1));
    cms.list(&ListParams::default()).await.unwrap();
    server.remove_fault(id);

    server
        .add_fault(Fault::new(FaultKind::Latency(Duration::from_millis(300))).path("/configmaps"));
    let start = Instant::now();
    cms.list(&ListParams::default()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    server.clear_faults();
    let statuses: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.resource == "configmaps")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 200, 429, 200, 200]);
}

/// The `caBundle` of a configuration's first webhook, as PEM text.
fn ca_bundle(config: &MutatingWebhookConfiguration) -> String {
    let hook = &config.webhooks.as_ref().unwrap()[0];
    String::from_utf8(hook.client_config.ca_bundle.clone().unwrap().0).unwrap()
}

fn generation(config: &MutatingWebhookConfiguration) -> i64 {
    config.metadata.generation.unwrap()
}

#[tokio::test]
async fn webhook_configurations_are_served_like_kube() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let group = "admissionregistration.k8s.io";

    // Discovery finds the resource in its group, and only there.
    let discovered = kube::discovery::group(&client, group).await.unwrap();
    let (resource, caps) = discovered
        .recommended_kind("MutatingWebhookConfiguration")
        .unwrap();
    assert_eq!(resource.plural, "mutatingwebhookconfigurations");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    let core = kube::discovery::group(&client, "").await.unwrap();
    assert!(
        core.recommended_kind("MutatingWebhookConfiguration")
            .is_none()
    );

    // Create: defaults, generation and the server's metadata.
    let created = configs
        .create(
            &PostParams::default(),
            &webhook_config("alpha", "https://127.0.0.1:9/mutate", "ca-one", "Ignore"),
        )
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(generation(&created), 1);
    let hook = &created.webhooks.as_ref().unwrap()[0];
    assert_eq!(hook.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(hook.match_policy.as_deref(), Some("Equivalent"));
    assert_eq!(hook.reinvocation_policy.as_deref(), Some("Never"));
    assert_eq!(hook.rules.as_ref().unwrap()[0].scope.as_deref(), Some("*"));
    assert_eq!(ca_bundle(&created), "ca-one");
    let fetched = configs.get("alpha").await.unwrap();
    assert_eq!(fetched.metadata.uid, created.metadata.uid);
    assert!(
        server
            .get("mutatingwebhookconfigurations", None, "alpha")
            .is_some()
    );

    // Status errors name the resource with its group, as kube's do.
    let exists = status(
        configs
            .create(
                &PostParams::default(),
                &webhook_config("alpha", "https://x", "", "Fail"),
            )
            .await,
    );
    assert_eq!(
        (exists.code, exists.message.as_str()),
        (
            409,
            "mutatingwebhookconfigurations.admissionregistration.k8s.io \"alpha\" already exists"
        )
    );
    let details = exists.details.unwrap();
    assert_eq!(
        (details.group.as_str(), details.kind.as_str()),
        (group, "mutatingwebhookconfigurations")
    );
    let missing = status(configs.get("nope").await);
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (
            404,
            "mutatingwebhookconfigurations.admissionregistration.k8s.io \"nope\" not found"
        )
    );
    let mut unknown = webhook_config("bad", "https://127.0.0.1:9/mutate", "", "Fail");
    unknown.webhooks.as_mut().unwrap()[0].side_effects = "Unknown".into();
    let invalid = status(configs.create(&PostParams::default(), &unknown).await);
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        invalid.message,
        "MutatingWebhookConfiguration.admissionregistration.k8s.io \"bad\" is invalid: webhooks[0].sideEffects: Unsupported value: \"Unknown\": supported values: \"None\", \"NoneOnDryRun\""
    );
    let mut twice = webhook_config("twice", "https://127.0.0.1:9/mutate", "", "Fail");
    let hooks = twice.webhooks.as_mut().unwrap();
    hooks.push(hooks[0].clone());
    let duplicate = status(configs.create(&PostParams::default(), &twice).await);
    assert!(
        duplicate
            .message
            .ends_with("webhooks[1].name: Duplicate value: \"twice.example.com\"")
    );
    // Watches see every change.
    let seen = collect(watcher(configs.clone(), watcher::Config::default()).default_backoff());
    eventually("the initial list", || async { saw(&seen, "initdone") }).await;
    assert!(saw(&seen, "initapply alpha"));

    // Update: conditional on the resourceVersion; a change of webhooks is a new generation.
    let mut changed = fetched.clone();
    changed.metadata.labels = Some([("a".to_string(), "1".to_string())].into());
    let updated = configs
        .replace("alpha", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(generation(&updated), 1);
    let stale = status(
        configs
            .replace("alpha", &PostParams::default(), &changed)
            .await,
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(stale.message.starts_with(
        "Operation cannot be fulfilled on mutatingwebhookconfigurations.admissionregistration.k8s.io \"alpha\""
    ));

    // The patch the self-signed mode sends: a JSON patch of the caBundle.
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let patch: Patch<()> = Patch::Json(
        serde_json::from_value(json!([
            {"op": "test", "path": "/webhooks/0/name", "value": "alpha.example.com"},
            {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": b64("ca-two")},
        ]))
        .unwrap(),
    );
    let patched = configs
        .patch("alpha", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(ca_bundle(&patched), "ca-two");
    assert_eq!(generation(&patched), 2);
    eventually("the patch in the watch", || async {
        saw(&seen, "apply alpha")
    })
    .await;

    // Strategic merge merges webhooks by name: the named one keeps its other fields, a new
    // name is appended, `$patch: delete` removes one.
    let strategic = Patch::Strategic(json!({"webhooks": [
        {"name": "alpha.example.com", "clientConfig": {"caBundle": b64("ca-three")}},
        {"name": "beta.example.com", "clientConfig": {"url": "https://127.0.0.1:9/beta"},
         "sideEffects": "None", "admissionReviewVersions": ["v1"]},
    ]}));
    let merged = configs
        .patch("alpha", &PatchParams::default(), &strategic)
        .await
        .unwrap();
    let hooks = merged.webhooks.clone().unwrap();
    assert_eq!(
        hooks.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["alpha.example.com", "beta.example.com"]
    );
    assert_eq!(ca_bundle(&merged), "ca-three");
    assert_eq!(
        hooks[0].client_config.url.as_deref(),
        Some("https://127.0.0.1:9/mutate")
    );
    assert_eq!(hooks[0].failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(hooks[1].timeout_seconds, Some(10));
    let removed = configs
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"webhooks": [{"name": "beta.example.com", "$patch": "delete"}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(removed.webhooks.unwrap().len(), 1);

    // Merge patch replaces the list whole; dry runs store nothing.
    let rv = server.resource_version();
    let merge = Patch::Merge(json!({"webhooks": [{
        "name": "only.example.com", "clientConfig": {"url": "https://127.0.0.1:9/only"},
        "sideEffects": "None", "admissionReviewVersions": ["v1"],
    }]}));
    let dry = configs
        .patch("alpha", &PatchParams::default().dry_run(), &merge)
        .await
        .unwrap();
    assert_eq!(dry.webhooks.unwrap()[0].name, "only.example.com");
    assert_eq!(server.resource_version(), rv);
    let replaced = configs
        .patch("alpha", &PatchParams::default(), &merge)
        .await
        .unwrap();
    assert_eq!(
        replaced
            .webhooks
            .unwrap()
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        ["only.example.com"]
    );

    // register_webhook is the same object: it replaces, keeps the uid, and shows in lists.
    server.register_webhook(webhook_config(
        "alpha",
        "https://127.0.0.1:9/r",
        "ca-r",
        "Fail",
    ));
    server.register_webhook(webhook_config(
        "gamma",
        "https://127.0.0.1:9/g",
        "ca-g",
        "Fail",
    ));
    let listed = configs.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        ["alpha", "gamma"]
    );
    assert_eq!(
        listed.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    let registered = configs.get("alpha").await.unwrap();
    assert_eq!(registered.metadata.uid, created.metadata.uid);
    assert_eq!(ca_bundle(&registered), "ca-r");
    eventually("the registration in the watch", || async {
        saw(&seen, "apply gamma")
    })
    .await;

    // Faults and request records cover the resource like any other.
    server.add_fault(
        Fault::new(FaultKind::Status(500))
            .method("list")
            .path("/mutatingwebhookconfigurations")
            .times(1),
    );
    assert_eq!(status(configs.list(&ListParams::default()).await).code, 500);
    configs.list(&ListParams::default()).await.unwrap();

    // Delete, by the API and by unregister_webhook.
    configs
        .delete("alpha", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(status(configs.get("alpha").await).code, 404);
    eventually("the deletion in the watch", || async {
        saw(&seen, "delete alpha")
    })
    .await;
    server.unregister_webhook("gamma");
    assert!(
        configs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let records: Vec<(String, u16)> = server
        .requests()
        .iter()
        .filter(|r| r.resource == "mutatingwebhookconfigurations" && r.verb != "watch")
        .map(|r| (r.verb.clone(), r.status))
        .collect();
    let verbs: Vec<(&str, u16)> = records.iter().map(|(v, s)| (v.as_str(), *s)).collect();
    assert_eq!(
        verbs,
        [
            ("create", 201),
            ("get", 200),
            ("create", 409),
            ("get", 404),
            ("create", 422),
            ("create", 422),
            ("list", 200),
            ("update", 200),
            ("update", 409),
            ("patch", 200),
            ("patch", 200),
            ("patch", 200),
            ("patch", 200),
            ("patch", 200),
            ("list", 200),
            ("get", 200),
            ("list", 500),
            ("list", 200),
            ("delete", 200),
            ("get", 404),
            ("list", 200),
        ]
    );
}

const WEBHOOK_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: own-webhook}
rules:
- apiGroups: [admissionregistration.k8s.io]
  resources: [mutatingwebhookconfigurations]
  resourceNames: [own]
  verbs: [get, patch, update]
# The same resource in the core group is another resource: this grants nothing on the real one.
- apiGroups: [""]
  resources: [mutatingwebhookconfigurations]
  verbs: [list, watch, create, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: injector-own-webhook}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: own-webhook}
subjects:
- {kind: ServiceAccount, name: injector, namespace: system}
"#;

#[tokio::test]
async fn rbac_grants_webhook_configurations_by_group_and_name() {
    let server = FakeApiServer::start().await;
    server.load_rbac(WEBHOOK_RBAC).unwrap();
    server.register_webhook(webhook_config(
        "own",
        "https://127.0.0.1:9/own",
        "ca",
        "Ignore",
    ));
    server.register_webhook(webhook_config(
        "other",
        "https://127.0.0.1:9/x",
        "ca",
        "Ignore",
    ));
    let token = server.service_account_token("system", "injector");
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client(&server, &token).await);
    let user = "system:serviceaccount:system:injector";

    let own = configs.get("own").await.unwrap();
    let patch = Patch::Merge(json!({"metadata": {"labels": {"renewed": "yes"}}}));
    configs
        .patch("own", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let mut replaced = configs.get("own").await.unwrap();
    replaced.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
    configs
        .replace("own", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_ne!(
        configs.get("own").await.unwrap().metadata.resource_version,
        own.metadata.resource_version
    );

    let forbidden = |verb: &str, name: Option<&str>| {
        let resource = "mutatingwebhookconfigurations";
        let subject = match name {
            Some(n) => format!("{resource}.admissionregistration.k8s.io \"{n}\""),
            None => format!("{resource}.admissionregistration.k8s.io"),
        };
        format!(
            "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"admissionregistration.k8s.io\" at the cluster scope"
        )
    };
    let other = status(configs.get("other").await);
    assert_eq!(
        (other.code, other.message.clone()),
        (403, forbidden("get", Some("other")))
    );
    assert_eq!(other.details.unwrap().group, "admissionregistration.k8s.io");
    let other = status(
        configs
            .patch("other", &PatchParams::default(), &patch)
            .await,
    );
    assert_eq!(other.message, forbidden("patch", Some("other")));
    let listed = status(configs.list(&ListParams::default()).await);
    assert_eq!(listed.message, forbidden("list", None));
    // A list pinned to the one name is a request for that name, which `get` does not cover.
    let pinned = status(
        configs
            .list(&ListParams::default().fields("metadata.name=own"))
            .await,
    );
    assert_eq!(pinned.code, 403);
    let deleted = status(configs.delete("own", &DeleteParams::default()).await);
    assert_eq!(deleted.message, forbidden("delete", Some("own")));
    let created = status(
        configs
            .create(
                &PostParams::default(),
                &webhook_config("new", "https://127.0.0.1:9/n", "", "Fail"),
            )
            .await,
    );
    assert_eq!(created.message, forbidden("create", None));
    assert!(
        server
            .get("mutatingwebhookconfigurations", None, "own")
            .is_some()
    );
    assert_eq!(
        server.count(user, "patch", "mutatingwebhookconfigurations"),
        2
    );
}

#[tokio::test]
async fn webhooks_trust_the_ca_bundle_stored_at_each_call() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "tls", &[]).await;
    eventually("the default ServiceAccount", || async {
        server
            .get("serviceaccounts", Some("tls"), "default")
            .is_some()
    })
    .await;
    let (url, right_ca) =
        webhook(json!([{"op": "add", "path": "/metadata/labels", "value": {"injected": "yes"}}]))
            .await;
    // Another CA: what the webhook signed with before a renewal, say.
    let wrong_ca = fake_apiserver::test_pair(&["127.0.0.1"]).ca_pem;
    server.register_webhook(webhook_config("injector", &url, &wrong_ca, "Ignore"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "tls");
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let create = |name: &'static str| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &typed(pod("tls", name, &["nginx"])))
                .await
                .unwrap()
        }
    };
    let injected = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.get("injected").is_some_and(|v| v == "yes"))
    };
    let last_error = || server.admission_calls().last().unwrap().error.clone();

    // A CA that did not sign the serving certificate: a TLS failure, which Ignore lets pass.
    let p = create("untrusted").await;
    assert!(!injected(&p));
    let error = last_error().unwrap();
    assert!(
        error.starts_with("failed calling webhook \"injector.example.com\""),
        "{error}"
    );
    assert!(error.contains("certificate"), "{error}");

    // The self-signed mode's patch through the API: old and new CA together, as during a
    // renewal. Each certificate of the bundle is trusted, from the next call on.
    let caset = Patch::Json::<()>(
        serde_json::from_value(json!([{
            "op": "replace", "path": "/webhooks/0/clientConfig/caBundle",
            "value": b64(&format!("{wrong_ca}{right_ca}")),
        }]))
        .unwrap(),
    );
    configs
        .patch("injector", &PatchParams::default(), &caset)
        .await
        .unwrap();
    let p = create("trusted").await;
    assert!(injected(&p));
    assert_eq!(last_error(), None);

    // Only the old CA again, then none at all: both fail the call.
    for (name, bundle) in [("old-only", wrong_ca.as_str()), ("empty", "")] {
        let strategic = Patch::Strategic(json!({"webhooks": [
            {"name": "injector.example.com", "clientConfig": {"caBundle": b64(bundle)}},
        ]}));
        configs
            .patch("injector", &PatchParams::default(), &strategic)
            .await
            .unwrap();
        let p = create(name).await;
        assert!(!injected(&p), "{name}");
        assert!(last_error().is_some(), "{name}");
    }

    // The right CA alone, and under Fail: the call succeeds.
    let fixed = Patch::Strategic(json!({"webhooks": [{
        "name": "injector.example.com", "failurePolicy": "Fail",
        "clientConfig": {"caBundle": b64(&right_ca)},
    }]}));
    configs
        .patch("injector", &PatchParams::default(), &fixed)
        .await
        .unwrap();
    assert!(injected(&create("renewed").await));
    assert_eq!(last_error(), None);
    assert_eq!(server.admission_calls().len(), 5);

    // Deleted through the API, the webhook is no longer called.
    configs
        .delete("injector", &DeleteParams::default())
        .await
        .unwrap();
    assert!(!injected(&create("unhooked").await));
    assert_eq!(server.admission_calls().len(), 5);
}

/// The `name`s of a list of references (`imagePullSecrets`, `secrets`), in order.
fn names_in(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn json_patch(ops: Value) -> Patch<()> {
    Patch::Json(serde_json::from_value(ops).unwrap())
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn default_service_account(server: &FakeApiServer, ns: &str) {
    eventually(&format!("the default ServiceAccount of {ns}"), || async {
        server.get("serviceaccounts", Some(ns), "default").is_some()
    })
    .await;
}

#[tokio::test]
async fn strategic_merge_replaces_service_account_image_pull_secrets() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "smp", &[]).await;
    let mut robot = service_account("smp", "robot", &["a", "b"]);
    robot["secrets"] = json!([{"name": "s1", "namespace": "smp"}]);
    server.create(robot).await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "smp");
    let patch = |p: Patch<Value>| {
        let sas = sas.clone();
        async move {
            sas.patch("robot", &PatchParams::default(), &p)
                .await
                .map(|sa| serde_json::to_value(sa).unwrap())
        }
    };

    // The patch the production code once sent to add a reference: on a real cluster it leaves
    // only the new one, since ServiceAccount.imagePullSecrets is `+listType=atomic` with no
    // patchStrategy.
    let sa = patch(Patch::Strategic(
        json!({"imagePullSecrets": [{"name": "c"}]}),
    ))
    .await
    .unwrap();
    assert_eq!(names_in(&sa["imagePullSecrets"]), ["c"]);
    // Directives mean nothing in an atomic list: the list is the patch's, `$patch` an unknown
    // field the decoder drops.
    let sa = patch(Patch::Strategic(json!({"imagePullSecrets": [
        {"name": "c", "$patch": "delete"}, {"name": "d"},
    ]})))
    .await
    .unwrap();
    assert_eq!(names_in(&sa["imagePullSecrets"]), ["c", "d"]);
    let stored = server.get("serviceaccounts", Some("smp"), "robot").unwrap();
    assert!(stored["imagePullSecrets"][0].get("$patch").is_none());

    // ServiceAccount.secrets does merge by name; strategicpatch puts an item it did not have
    // before the ones it keeps.
    let sa = patch(Patch::Strategic(
        json!({"secrets": [{"name": "s2", "namespace": "smp"}]}),
    ))
    .await
    .unwrap();
    assert_eq!(names_in(&sa["secrets"]), ["s2", "s1"]);

    // What adds a reference and keeps the others: a JSON patch appending to the list as read,
    // guarded by a `test` of it.
    let sa = patch(Patch::Json(
        serde_json::from_value(json!([
            {"op": "test", "path": "/imagePullSecrets", "value": [{"name": "c"}, {"name": "d"}]},
            {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "e"}},
        ]))
        .unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(names_in(&sa["imagePullSecrets"]), ["c", "d", "e"]);
    // A merge patch replaces every list.
    let sa = patch(Patch::Merge(json!({"imagePullSecrets": [{"name": "f"}]})))
        .await
        .unwrap();
    assert_eq!(names_in(&sa["imagePullSecrets"]), ["f"]);
}

#[tokio::test]
async fn strategic_merge_merges_pod_image_pull_secrets_by_name() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "pm", &[]).await;
    default_service_account(&server, "pm").await;
    let mut p = pod("pm", "web", &["nginx"]);
    p["spec"]["imagePullSecrets"] = json!([{"name": "a"}, {"name": "b"}]);
    server.create(p).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "pm");
    // A real apiserver refuses these updates (a Pod's spec is immutable but for images and a
    // few fields; the fake does not enforce that). What is shown is the merge strategicpatch
    // computes for every PodSpec: `patchStrategy:"merge" patchMergeKey:"name"`.
    let patch = |p: Value| {
        let pods = pods.clone();
        async move {
            let pod = pods
                .patch("web", &PatchParams::default(), &Patch::Strategic(p))
                .await
                .unwrap();
            let names: Vec<String> = pod
                .spec
                .unwrap()
                .image_pull_secrets
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .collect();
            names
        }
    };
    // A name the list did not have goes first (mergeSortedSlice), the others keep their order.
    assert_eq!(
        patch(json!({"spec": {"imagePullSecrets": [{"name": "c"}]}})).await,
        ["c", "a", "b"]
    );
    // A name it had changes nothing.
    assert_eq!(
        patch(json!({"spec": {"imagePullSecrets": [{"name": "b"}]}})).await,
        ["c", "a", "b"]
    );
    // `$setElementOrder` orders the result.
    assert_eq!(
        patch(json!({"spec": {
            "$setElementOrder/imagePullSecrets": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}],
            "imagePullSecrets": [{"name": "d"}],
        }}))
        .await,
        ["a", "b", "c", "d"]
    );
    // `$patch: delete` removes by name; `$patch: replace` makes the list the patch's.
    assert_eq!(
        patch(json!({"spec": {"imagePullSecrets": [{"name": "a", "$patch": "delete"}]}})).await,
        ["b", "c", "d"]
    );
    assert_eq!(
        patch(json!({"spec": {"imagePullSecrets": [{"$patch": "replace"}, {"name": "z"}]}})).await,
        ["z"]
    );
    // Containers merge by name too: the named one keeps its other fields.
    let pod = pods
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"containers": [{"name": "c0", "image": "nginx:2"}]}}),
            ),
        )
        .await
        .unwrap();
    let containers = pod.spec.unwrap().containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("nginx:2"));
}

#[tokio::test]
async fn strategic_merge_merges_finalizers_as_an_ordered_set() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "fin", &[]).await;
    let mut cm = config_map("fin", "c", &[]);
    cm["metadata"]["finalizers"] = json!(["example.com/a"]);
    server.create(cm).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "fin");
    let patch = |p: Patch<Value>| {
        let cms = cms.clone();
        async move {
            cms.patch("c", &PatchParams::default(), &p)
                .await
                .unwrap()
                .metadata
                .finalizers
                .unwrap_or_default()
        }
    };
    // metadata.finalizers: `patchStrategy:"merge"` on a list of strings, a set union where
    // new values go first.
    let smp = |f: Value| Patch::Strategic(json!({"metadata": {"finalizers": f}}));
    assert_eq!(
        patch(smp(json!(["example.com/b"]))).await,
        ["example.com/b", "example.com/a"]
    );
    assert_eq!(
        patch(smp(json!(["example.com/a"]))).await,
        ["example.com/b", "example.com/a"]
    );
    assert_eq!(
        patch(Patch::Strategic(json!({"metadata": {
            "$deleteFromPrimitiveList/finalizers": ["example.com/b"],
        }})))
        .await,
        ["example.com/a"]
    );
    // A merge patch replaces the list.
    assert_eq!(
        patch(Patch::Merge(
            json!({"metadata": {"finalizers": ["example.com/z"]}})
        ))
        .await,
        ["example.com/z"]
    );
}

#[tokio::test]
async fn every_patch_type_merges_the_maps_the_injector_writes() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "maps", &[]).await;
    default_service_account(&server, "maps").await;
    server
        .create(fake_apiserver::objects::opaque_secret(
            "maps",
            "s",
            &[("k1", "1")],
        ))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "maps");
    let patch = |p: Patch<Value>| {
        let secrets = secrets.clone();
        async move { secrets.patch("s", &PatchParams::default(), &p).await }
    };
    let keys = |s: &Secret| -> Vec<String> { s.data.clone().unwrap().into_keys().collect() };

    // Strategic merge and merge patch: maps merge key by key, null removes a key.
    let s = patch(Patch::Strategic(json!({
        "data": {"k2": b64("2")},
        "metadata": {"labels": {"l": "1"}, "annotations": {"example.com/a": "1"}},
    })))
    .await
    .unwrap();
    assert_eq!(keys(&s), ["k1", "k2"]);
    assert_eq!(s.metadata.labels.unwrap()["l"], "1");
    let s = patch(Patch::Merge(json!({
        "data": {"k1": null, "k3": b64("3")},
        "metadata": {"labels": {"l": null}},
    })))
    .await
    .unwrap();
    assert_eq!(keys(&s), ["k2", "k3"]);
    assert!(s.metadata.labels.unwrap_or_default().is_empty());

    // JSON patch: `/` in a key is `~1`; `add` needs the parent to exist (labels are gone).
    let s = patch(json_patch_value(json!([
        {"op": "add", "path": "/metadata/annotations/pull-secret-injector~1source", "value": "x"},
    ])))
    .await
    .unwrap();
    assert_eq!(
        s.metadata.annotations.unwrap()["pull-secret-injector/source"],
        "x"
    );
    let rv = server.resource_version();
    let missing = status(
        patch(json_patch_value(
            json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]),
        ))
        .await,
    );
    assert_eq!((missing.code, missing.reason.as_str()), (422, "Invalid"));
    assert_eq!(server.resource_version(), rv);

    // Apply merges maps key by key too.
    let applied = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"k4": b64("4")}});
    let s = secrets
        .patch("s", &PatchParams::apply("tests"), &Patch::Apply(applied))
        .await
        .unwrap();
    assert_eq!(keys(&s), ["k2", "k3", "k4"]);
}

fn json_patch_value(ops: Value) -> Patch<Value> {
    Patch::Json(serde_json::from_value(ops).unwrap())
}

#[tokio::test]
async fn apply_respects_list_types() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "ssa", &[]).await;
    let mut robot = service_account("ssa", "robot", &["a", "b"]);
    robot["secrets"] = json!([{"name": "s1"}]);
    robot["metadata"]["labels"] = json!({"one": "1"});
    server.create(robot).await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "ssa");
    let apply = |body: Value| {
        let sas = sas.clone();
        async move {
            let mut applied = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}});
            json_patch::merge(&mut applied, &body);
            serde_json::to_value(
                sas.patch(
                    "robot",
                    &PatchParams::apply("tests"),
                    &Patch::Apply(applied),
                )
                .await
                .unwrap(),
            )
            .unwrap()
        }
    };
    // imagePullSecrets is `+listType=atomic`: replaced.
    let sa = apply(json!({"imagePullSecrets": [{"name": "c"}]})).await;
    assert_eq!(names_in(&sa["imagePullSecrets"]), ["c"]);
    // secrets is `+listType=map` keyed by name: merged, a new item after the live ones (unlike
    // strategic merge, which puts it first).
    let sa = apply(json!({"secrets": [{"name": "s2"}]})).await;
    assert_eq!(names_in(&sa["secrets"]), ["s1", "s2"]);
    // finalizers is `+listType=set`: a union.
    apply(json!({"metadata": {"finalizers": ["example.com/x"]}})).await;
    let sa = apply(json!({"metadata": {"finalizers": ["example.com/y"]}})).await;
    assert_eq!(
        sa["metadata"]["finalizers"],
        json!(["example.com/x", "example.com/y"])
    );
    // Labels merge key by key.
    let sa = apply(json!({"metadata": {"labels": {"two": "2"}}})).await;
    assert_eq!(sa["metadata"]["labels"], json!({"one": "1", "two": "2"}));
    // The documented simplification: no managedFields, so what this manager applied before
    // and now leaves out stays (kube would remove `two`, which only this manager set).
    let sa = apply(json!({"metadata": {"labels": {"three": "3"}}})).await;
    assert_eq!(sa["metadata"]["labels"]["two"], "2");
    // Duplicate keys in an applied associative list are refused.
    let mut dup =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}});
    dup["secrets"] = json!([{"name": "s3"}, {"name": "s3"}]);
    let refused = status(
        sas.patch("robot", &PatchParams::apply("tests"), &Patch::Apply(dup))
            .await,
    );
    assert_eq!(refused.code, 500);
    assert!(
        refused.message.contains("duplicate entries for key"),
        "{}",
        refused.message
    );
}

#[tokio::test]
async fn json_patch_test_failure_is_422() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "jp", &[]).await;
    // Its creation would move the resourceVersion this test watches.
    default_service_account(&server, "jp").await;
    server
        .create(service_account("jp", "robot", &["a"]))
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "jp");
    let rv = server.resource_version();
    // What patch.go answers for any failed operation: 422 Invalid, the generic message (the
    // json-patch error itself is dropped) and empty details.
    for ops in [
        json!([{"op": "test", "path": "/imagePullSecrets", "value": [{"name": "other"}]},
               {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "b"}}]),
        json!([{"op": "remove", "path": "/metadata/labels/nope"}]),
        json!([{"op": "replace", "path": "/secrets/0", "value": {"name": "x"}}]),
    ] {
        let failed = status(
            sas.patch("robot", &PatchParams::default(), &json_patch(ops.clone()))
                .await,
        );
        assert_eq!(
            (failed.code, failed.reason.as_str()),
            (422, "Invalid"),
            "{ops}"
        );
        assert_eq!(
            failed.message,
            "the server rejected our request due to an error in our request"
        );
        let details = failed.details.unwrap();
        assert!(details.name.is_empty() && details.kind.is_empty() && details.causes.is_empty());
    }
    assert_eq!(server.resource_version(), rv, "nothing was written");

    // A patched object that is no longer a ServiceAccount is 422 too, naming the field `patch`.
    let bad = status(
        sas.patch(
            "robot",
            &PatchParams::default(),
            &json_patch(json!([{"op": "replace", "path": "/imagePullSecrets", "value": "x"}])),
        )
        .await,
    );
    assert_eq!((bad.code, bad.reason.as_str()), (422, "Invalid"));
    assert_eq!(bad.details.unwrap().causes[0].field, "patch");
}

#[tokio::test]
async fn json_patch_resource_version_is_a_precondition() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "rv", &[]).await;
    let created = server
        .create(service_account("rv", "robot", &["a"]))
        .await
        .unwrap();
    let first = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "rv");
    let append = |rv: &str, name: &str| {
        json_patch(json!([
            {"op": "replace", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": name}},
        ]))
    };
    let sa = sas
        .patch("robot", &PatchParams::default(), &append(&first, "b"))
        .await
        .unwrap();
    assert_eq!(sa.image_pull_secrets.unwrap().len(), 2);
    // The resourceVersion the patch sets is the update's precondition: stale is 409.
    let stale = status(
        sas.patch("robot", &PatchParams::default(), &append(&first, "c"))
            .await,
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on serviceaccounts \"robot\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // A `test` of the version is a failed operation instead: 422.
    let tested = status(
        sas.patch(
            "robot",
            &PatchParams::default(),
            &json_patch(
                json!([{"op": "test", "path": "/metadata/resourceVersion", "value": first}]),
            ),
        )
        .await,
    );
    assert_eq!(tested.code, 422);
    // Without one (removed), the update is unconditional.
    let sa = sas
        .patch(
            "robot",
            &PatchParams::default(),
            &json_patch(json!([
                {"op": "remove", "path": "/metadata/resourceVersion"},
                {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "d"}},
            ])),
        )
        .await
        .unwrap();
    assert_eq!(sa.image_pull_secrets.unwrap().len(), 3);
}

#[tokio::test]
async fn delete_preconditions_conflict_like_kube() {
    use kube::api::Preconditions;
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "del", &[]).await;
    let cm = server.create(config_map("del", "c", &[])).await.unwrap();
    let rv = cm["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let uid = cm["metadata"]["uid"].as_str().unwrap().to_string();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "del");
    let with = |resource_version: Option<&str>, uid: Option<&str>| DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: resource_version.map(String::from),
            uid: uid.map(String::from),
        }),
        ..DeleteParams::default()
    };
    let stale = status(cms.delete("c", &with(Some("1"), None)).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        stale.message,
        format!(
            "Operation cannot be fulfilled on ConfigMap \"c\": the ResourceVersion in the precondition (1) does not match the ResourceVersion in record ({rv}). The object might have been modified"
        )
    );
    let other = status(cms.delete("c", &with(Some("1"), Some("not-it"))).await);
    assert_eq!(
        other.message,
        format!(
            "Operation cannot be fulfilled on ConfigMap \"c\": the UID in the precondition (not-it) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )
    );
    cms.delete("c", &with(Some(&rv), Some(&uid))).await.unwrap();

    // Namespaces have their own wording.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = namespaces.get("del").await.unwrap();
    let refused = status(namespaces.delete("del", &with(Some("1"), None)).await);
    assert_eq!(
        refused.message,
        format!(
            "Operation cannot be fulfilled on namespaces \"del\": Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta: {}",
            ns.metadata.resource_version.unwrap()
        )
    );
}

#[tokio::test]
async fn immutable_secret_data_cannot_change() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "im", &[]).await;
    let mut frozen = fake_apiserver::objects::opaque_secret("im", "frozen", &[("k", "v")]);
    frozen["immutable"] = json!(true);
    server.create(frozen).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "im");
    let patch = |p: Value| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch("frozen", &PatchParams::default(), &Patch::Merge(p))
                .await
        }
    };
    const WHEN_SET: &str = "Forbidden: field is immutable when `immutable` is set";
    let changed = status(patch(json!({"data": {"k": b64("other")}})).await);
    assert_eq!((changed.code, changed.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        changed.message,
        format!("Secret \"frozen\" is invalid: data: {WHEN_SET}")
    );
    let cause = &changed.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.field.as_str()),
        ("FieldValueForbidden", "data")
    );
    // stringData is data by the time validation runs.
    let string_data = status(patch(json!({"stringData": {"new": "x"}})).await);
    assert_eq!(
        string_data.message,
        format!("Secret \"frozen\" is invalid: data: {WHEN_SET}")
    );
    let thawed = status(patch(json!({"immutable": false})).await);
    assert_eq!(
        thawed.message,
        format!("Secret \"frozen\" is invalid: immutable: {WHEN_SET}")
    );
    let both = status(patch(json!({"immutable": null, "data": null})).await);
    assert_eq!(
        both.message,
        format!("Secret \"frozen\" is invalid: [immutable: {WHEN_SET}, data: {WHEN_SET}]")
    );
    // type never changes, immutable or not.
    let retyped = status(patch(json!({"type": "example.com/other"})).await);
    assert_eq!(
        retyped.message,
        "Secret \"frozen\" is invalid: type: Invalid value: \"example.com/other\": field is immutable"
    );
    // Metadata still changes, and the Secret can be deleted.
    let labelled = patch(json!({"metadata": {"labels": {"a": "1"}}}))
        .await
        .unwrap();
    assert_eq!(labelled.metadata.labels.unwrap()["a"], "1");
    secrets
        .delete("frozen", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn immutable_config_map_data_cannot_change() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "imc", &[]).await;
    let mut frozen = config_map("imc", "frozen", &[("k", "v")]);
    frozen["immutable"] = json!(true);
    frozen["binaryData"] = json!({"b": b64("bytes")});
    server.create(frozen).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "imc");
    let patch = |p: Value| {
        let cms = cms.clone();
        async move {
            cms.patch("frozen", &PatchParams::default(), &Patch::Merge(p))
                .await
        }
    };
    const WHEN_SET: &str = "Forbidden: field is immutable when `immutable` is set";
    let changed = status(patch(json!({"data": {"k": "w"}, "binaryData": {"b": b64("x")}})).await);
    assert_eq!(
        changed.message,
        format!("ConfigMap \"frozen\" is invalid: [data: {WHEN_SET}, binaryData: {WHEN_SET}]")
    );
    let thawed = status(patch(json!({"immutable": false})).await);
    assert_eq!(
        thawed.message,
        format!("ConfigMap \"frozen\" is invalid: immutable: {WHEN_SET}")
    );
    patch(json!({"metadata": {"annotations": {"a": "1"}}}))
        .await
        .unwrap();
    // A mutable one may become immutable.
    server
        .create(config_map("imc", "thawed", &[]))
        .await
        .unwrap();
    cms.patch(
        "thawed",
        &PatchParams::default(),
        &Patch::Merge(json!({"immutable": true, "data": {"k": "v"}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn string_data_is_merged_into_data() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "sd", &[]).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "sd");
    let seen = collect(watcher(secrets.clone(), watcher::Config::default()).default_backoff());
    eventually("the initial list", || async { saw(&seen, "initdone") }).await;
    let decoded = |s: &Secret| -> BTreeMap<String, String> {
        s.data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect()
    };
    let mut s = fake_apiserver::objects::opaque_secret("sd", "s", &[("a", "1"), ("b", "old")]);
    s["stringData"] = json!({"b": "new", "c": "3"});
    let created = secrets
        .create(&PostParams::default(), &typed(s))
        .await
        .unwrap();
    let want: BTreeMap<String, String> = [("a", "1"), ("b", "new"), ("c", "3")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(decoded(&created), want);
    assert!(created.string_data.is_none());
    let stored = server.get("secrets", Some("sd"), "s").unwrap();
    assert!(stored.get("stringData").is_none());

    // Patches fold it in the same way, overwriting keys of data.
    let patched = secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"a": "x", "d": "4"}})),
        )
        .await
        .unwrap();
    assert_eq!(decoded(&patched)["a"], "x");
    assert_eq!(decoded(&patched)["d"], "4");
    assert!(patched.string_data.is_none());
    // A PUT replaces data whole: what it holds is its data and stringData.
    let mut replaced = patched.clone();
    replaced.data = None;
    replaced.string_data = Some([("only".to_string(), "1".to_string())].into());
    let replaced = secrets
        .replace("s", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(decoded(&replaced).into_keys().collect::<Vec<_>>(), ["only"]);
    let listed = secrets.list(&ListParams::default()).await.unwrap();
    assert!(listed.items.iter().all(|s| s.string_data.is_none()));
    eventually("the watch to see the update", || async {
        saw(&seen, "apply s")
    })
    .await;
}

#[tokio::test]
async fn default_service_account_can_be_delayed_and_held() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_seen =
        collect(watcher(namespaces.clone(), watcher::Config::default()).default_backoff());
    eventually("the initial list", || async { saw(&ns_seen, "initdone") }).await;

    // Held: the Namespace is there and watched, its default ServiceAccount is not.
    server.hold_default_service_accounts(true);
    make_namespace(&server, "held", &[]).await;
    eventually("the held creation", || async {
        server.held_default_service_accounts() == ["held"]
    })
    .await;
    eventually("the namespace in the watch", || async {
        saw(&ns_seen, "apply held")
    })
    .await;
    let absent = status(
        Api::<ServiceAccount>::namespaced(client.clone(), "held")
            .get("default")
            .await,
    );
    assert_eq!(absent.code, 404);
    // A webhook on serviceaccounts is registered meanwhile: the creation goes through it.
    let (url, ca) =
        webhook(json!([{"op": "add", "path": "/metadata/labels", "value": {"injected": "yes"}}]))
            .await;
    server.register_webhook(webhook_config("injector", &url, &ca, "Fail"));
    server.release_default_service_account("held");
    default_service_account(&server, "held").await;
    assert!(server.held_default_service_accounts().is_empty());
    let sa = server
        .get("serviceaccounts", Some("held"), "default")
        .unwrap();
    assert_eq!(sa["metadata"]["labels"]["injected"], "yes");
    assert!(
        server
            .admission_calls()
            .iter()
            .any(|c| c.kind == "ServiceAccount" && c.namespace == "held" && c.patched)
    );
    server.unregister_webhook("injector");

    // Released before it comes due: it does not wait.
    server.release_default_service_account("early");
    make_namespace(&server, "early", &[]).await;
    default_service_account(&server, "early").await;
    // Holding ends: every held creation goes.
    make_namespace(&server, "a", &[]).await;
    make_namespace(&server, "b", &[]).await;
    eventually("two held creations", || async {
        server.held_default_service_accounts() == ["a", "b"]
    })
    .await;
    server.hold_default_service_accounts(false);
    default_service_account(&server, "a").await;
    default_service_account(&server, "b").await;

    // Delayed: it comes no sooner than the delay (a lower bound, whatever the machine's load).
    server.set_default_service_account_delay(Duration::from_millis(300));
    let start = Instant::now();
    make_namespace(&server, "late", &[]).await;
    default_service_account(&server, "late").await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    server.set_default_service_account_delay(Duration::ZERO);

    // Deleted, it comes back: the controller re-syncs the namespace of a deleted account.
    let before = server.get("serviceaccounts", Some("a"), "default").unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "a")
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the default ServiceAccount again", || async {
        server
            .get("serviceaccounts", Some("a"), "default")
            .is_some_and(|sa| sa["metadata"]["uid"] != before["metadata"]["uid"])
    })
    .await;
    // Created by the controller, as a watch sees it.
    let listed = sas
        .list(&ListParams::default().fields("metadata.name=default"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 5);
}

#[tokio::test]
async fn default_service_account_creation_is_retried() {
    let server = FakeApiServer::start().await;
    let (url, ca) =
        webhook(json!([{"op": "add", "path": "/metadata/labels", "value": {"injected": "yes"}}]))
            .await;
    // The webhook is down and fails closed: the controller's create fails...
    server.register_webhook(webhook_config(
        "injector",
        "https://127.0.0.1:9/mutate",
        &ca,
        "Fail",
    ));
    make_namespace(&server, "retry", &[]).await;
    eventually("a failed creation", || async {
        server
            .admission_calls()
            .iter()
            .any(|c| c.kind == "ServiceAccount" && c.error.is_some())
    })
    .await;
    assert!(
        server
            .get("serviceaccounts", Some("retry"), "default")
            .is_none()
    );
    // ...and is retried with backoff until the webhook answers.
    server.register_webhook(webhook_config("injector", &url, &ca, "Fail"));
    default_service_account(&server, "retry").await;
    let sa = server
        .get("serviceaccounts", Some("retry"), "default")
        .unwrap();
    assert_eq!(sa["metadata"]["labels"]["injected"], "yes");
}

/// What a recording webhook saw of one call: the client certificate presented (DER), and the
/// AdmissionReview request.
#[derive(Clone, Debug)]
struct Seen {
    client_cert: Option<Vec<u8>>,
    request: Value,
}

/// An HTTPS webhook that allows everything unchanged and records each call. It asks for a
/// client certificate signed by `client_ca` (DER) and accepts calls without one.
async fn recording_webhook(client_ca: Option<Vec<u8>>) -> (String, String, Arc<Mutex<Vec<Seen>>>) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use rustls::pki_types::pem::PemObject;
    let g = fake_apiserver::test_pair(&["127.0.0.1"]);
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(g.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(g.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(rustls::pki_types::CertificateDer::from(ca))
                .unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .unwrap();
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
                .unwrap()
        }
        None => builder
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}/mutate",
        listener.local_addr().unwrap().port()
    );
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let sink = sink.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec());
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let sink = sink.clone();
                        let client_cert = client_cert.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            let request = review["request"].clone();
                            let response = json!({
                                "apiVersion": "admission.k8s.io/v1",
                                "kind": "AdmissionReview",
                                "response": {"uid": request["uid"], "allowed": true},
                            });
                            sink.lock().unwrap().push(Seen {
                                client_cert,
                                request,
                            });
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(response.to_string()),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, g.ca_pem, seen)
}

/// A CA and a client certificate it signed (PEM), and the CA's DER, for webhook client auth.
fn client_identity(common_name: &str) -> (Vec<u8>, String, String, Vec<u8>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair,
    };
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "webhook client CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, common_name);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (
        ca_cert.der().to_vec(),
        leaf_cert.pem(),
        leaf_key.serialize_pem(),
        leaf_cert.der().to_vec(),
    )
}

#[tokio::test]
async fn webhooks_get_the_configured_client_certificate() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "mtls", &[]).await;
    default_service_account(&server, "mtls").await;
    let (ca_der, cert_pem, key_pem, cert_der) = client_identity("kube-apiserver-webhook-client");
    let (url, ca, seen) = recording_webhook(Some(ca_der)).await;
    let port = url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    server.register_webhook(webhook_config("mtls", &url, &ca, "Fail"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "mtls");
    let presented = |name: &'static str| {
        let pods = pods.clone();
        let seen = seen.clone();
        async move {
            pods.create(
                &PostParams::default(),
                &typed(pod("mtls", name, &["nginx"])),
            )
            .await
            .unwrap();
            seen.lock().unwrap().last().unwrap().client_cert.clone()
        }
    };
    // None configured: none presented.
    assert_eq!(presented("plain").await, None);
    // The `*` user of the kubeconfig: every webhook gets it.
    server.set_webhook_client_identity(&cert_pem, &key_pem);
    assert_eq!(
        presented("star").await.as_deref(),
        Some(cert_der.as_slice())
    );
    // By host:port: a name for another host does not apply, the webhook's own does.
    server.clear_webhook_client_identities();
    server.set_webhook_client_identity_for("webhook.example.com:443", &cert_pem, &key_pem);
    assert_eq!(presented("elsewhere").await, None);
    server.set_webhook_client_identity_for(&format!("127.0.0.1:{port}"), &cert_pem, &key_pem);
    assert_eq!(
        presented("exact").await.as_deref(),
        Some(cert_der.as_slice())
    );
    server.clear_webhook_client_identities();
    assert_eq!(presented("cleared").await, None);
}

#[tokio::test]
async fn webhooks_see_admission_order_and_dry_run() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "ar", &[]).await;
    default_service_account(&server, "ar").await;
    server
        .create(service_account("ar", "builder", &["regcred"]))
        .await
        .unwrap();
    let (url, ca, seen) = recording_webhook(None).await;
    let mut config = webhook_config("recorder", &url, &ca, "Fail");
    config.webhooks.as_mut().unwrap()[0].rules.as_mut().unwrap()[0].resources =
        Some(vec!["pods".into(), "secrets".into()]);
    server.register_webhook(config);
    let last = || seen.lock().unwrap().last().unwrap().request.clone();

    // ServiceAccount admission runs before the webhooks: they see the account and the pull
    // secrets it gave the pod.
    let mut p: Pod = typed(pod("ar", "built", &["nginx"]));
    p.spec.as_mut().unwrap().service_account_name = Some("builder".into());
    Api::<Pod>::namespaced(client.clone(), "ar")
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
    let request = last();
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(request["namespace"], "ar");
    assert_eq!(request["name"], "built");
    assert_eq!(request["userInfo"]["username"], "admin");
    assert_eq!(request["dryRun"], false);
    assert_eq!(request["object"]["spec"]["serviceAccountName"], "builder");
    assert_eq!(
        names_in(&request["object"]["spec"]["imagePullSecrets"]),
        ["regcred"]
    );

    // A dry run reaches webhooks (sideEffects None) flagged as such, and stores nothing.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut s = fake_apiserver::objects::opaque_secret("ar", "dry", &[("k", "v")]);
    s["stringData"] = json!({"s": "x"});
    Api::<Secret>::namespaced(client.clone(), "ar")
        .create(&dry, &typed(s))
        .await
        .unwrap();
    let request = last();
    assert_eq!(request["dryRun"], true);
    assert_eq!(request["options"]["dryRun"], json!(["All"]));
    // stringData was folded into data before admission.
    assert!(request["object"].get("stringData").is_none());
    assert_eq!(request["object"]["data"]["s"], b64("x"));
    assert!(server.get("secrets", Some("ar"), "dry").is_none());
}

/// Lists and watches one resource pinned by `metadata.name` (and, when namespaced, by
/// `metadata.namespace`): the objects `one` and `two` exist in `fs` (and `one` in `fs2`).
/// `api` lists everywhere, `at` writes where the objects are.
async fn check_field_selectors<K>(api: Api<K>, at: Api<K>, namespaced: bool, server: &FakeApiServer)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let names = |list: kube::core::ObjectList<K>| -> Vec<(String, String)> {
        list.items
            .iter()
            .map(|o| {
                (
                    o.meta().namespace.clone().unwrap_or_default(),
                    o.meta().name.clone().unwrap(),
                )
            })
            .collect()
    };
    let by = |fields: &str| ListParams::default().fields(fields);
    let one = names(api.list(&by("metadata.name=one")).await.unwrap());
    if namespaced {
        assert_eq!(
            one,
            [
                ("fs".to_string(), "one".to_string()),
                ("fs2".into(), "one".into())
            ]
        );
        let here = names(
            api.list(&by(
                "metadata.namespace=fs,metadata.name!=one,metadata.name!=default",
            ))
            .await
            .unwrap(),
        );
        assert_eq!(here, [("fs".to_string(), "two".to_string())]);
    } else {
        assert_eq!(one, [(String::new(), "one".to_string())]);
    }
    // A watch pinned to the name sees only that object's changes.
    let rv = server.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default().fields("metadata.name=one"), &rv)
        .await
        .unwrap()
        .boxed();
    let label = Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}}));
    at.patch("two", &PatchParams::default(), &label)
        .await
        .unwrap();
    at.patch("one", &PatchParams::default(), &label)
        .await
        .unwrap();
    loop {
        let event = tokio::time::timeout(DEADLINE, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match event {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Modified(o) => {
                assert_eq!(o.meta().name.as_deref(), Some("one"));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn field_selectors_pin_name_and_namespace_on_every_resource() {
    use k8s_openapi::api::core::v1::Event;
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    for ns in ["fs", "fs2"] {
        make_namespace(&server, ns, &[]).await;
        default_service_account(&server, ns).await;
    }
    for (ns, name) in [("fs", "one"), ("fs", "two"), ("fs2", "one")] {
        server
            .create(fake_apiserver::objects::opaque_secret(ns, name, &[]))
            .await
            .unwrap();
        server.create(service_account(ns, name, &[])).await.unwrap();
        server.create(config_map(ns, name, &[])).await.unwrap();
        server.create(pod(ns, name, &["nginx"])).await.unwrap();
        server
            .create(json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {"kind": "Pod", "namespace": ns, "name": name},
                "reason": "Tested", "message": "m", "type": "Normal",
            }))
            .await
            .unwrap();
    }
    make_namespace(&server, "one", &[]).await;
    make_namespace(&server, "two", &[]).await;
    for name in ["one", "two"] {
        server.register_webhook(webhook_config(name, "https://127.0.0.1:9/x", "", "Ignore"));
    }
    check_field_selectors(
        Api::<Secret>::all(client.clone()),
        Api::namespaced(client.clone(), "fs"),
        true,
        &server,
    )
    .await;
    check_field_selectors(
        Api::<ServiceAccount>::all(client.clone()),
        Api::namespaced(client.clone(), "fs"),
        true,
        &server,
    )
    .await;
    check_field_selectors(
        Api::<ConfigMap>::all(client.clone()),
        Api::namespaced(client.clone(), "fs"),
        true,
        &server,
    )
    .await;
    check_field_selectors(
        Api::<Pod>::all(client.clone()),
        Api::namespaced(client.clone(), "fs"),
        true,
        &server,
    )
    .await;
    check_field_selectors(
        Api::<Event>::all(client.clone()),
        Api::namespaced(client.clone(), "fs"),
        true,
        &server,
    )
    .await;
    check_field_selectors(
        Api::<Namespace>::all(client.clone()),
        Api::all(client.clone()),
        false,
        &server,
    )
    .await;
    check_field_selectors(
        Api::<MutatingWebhookConfiguration>::all(client.clone()),
        Api::all(client.clone()),
        false,
        &server,
    )
    .await;

    // The injector's watch: default ServiceAccounts everywhere.
    let sas: Api<ServiceAccount> = Api::all(client.clone());
    let defaults = sas
        .list(&ListParams::default().fields("metadata.name=default"))
        .await
        .unwrap();
    assert!(
        defaults
            .items
            .iter()
            .all(|sa| sa.metadata.name.as_deref() == Some("default"))
    );
    assert_eq!(defaults.items.len(), 4);

    // Unsupported labels, in each conversion function's words.
    let refused = status(
        Api::<Namespace>::all(client.clone())
            .list(&ListParams::default().fields("metadata.namespace=x"))
            .await,
    );
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (400, "field label not supported: metadata.namespace")
    );
    let refused = status(sas.list(&ListParams::default().fields("spec.x=1")).await);
    assert_eq!(
        refused.message,
        "\"spec.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
}

#[tokio::test]
async fn terminating_namespace_refusal_carries_its_cause() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "gone", &[]).await;
    Api::<Namespace>::all(client.clone())
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    let refused = status(
        Api::<ConfigMap>::namespaced(client.clone(), "gone")
            .create(&PostParams::default(), &typed(config_map("gone", "c", &[])))
            .await,
    );
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    let cause = &refused.details.unwrap().causes[0];
    assert_eq!(
        (
            cause.reason.as_str(),
            cause.field.as_str(),
            cause.message.as_str()
        ),
        (
            "NamespaceTerminating",
            "metadata.namespace",
            "namespace gone is being terminated"
        )
    );
}

#[tokio::test]
async fn a_generated_name_that_collides_is_drawn_again_up_to_eight_times() {
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "app", &[]).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "app");
    let generated = || -> ConfigMap {
        typed(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "gen-", "namespace": "app"},
        }))
    };
    let create = || async {
        config_maps
            .create(&PostParams::default(), &generated())
            .await
    };

    server.script_generated_name_suffixes(&["bbbbb", "bbbbb", "ccccc"]);
    let first = create().await.unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("gen-bbbbb"));
    let second = create().await.unwrap();
    assert_eq!(second.metadata.name.as_deref(), Some("gen-ccccc"));

    // Seven collisions and a free eighth name: created.
    let mut draws = vec!["bbbbb"; 7];
    draws.push("eeeee");
    server.script_generated_name_suffixes(&draws);
    let eighth = create().await.unwrap();
    assert_eq!(eighth.metadata.name.as_deref(), Some("gen-eeeee"));

    // Eight collisions: kube-apiserver gives up with AlreadyExists, and the ninth draw is
    // left for the next create.
    let mut draws = vec!["bbbbb"; 8];
    draws.push("fffff");
    server.script_generated_name_suffixes(&draws);
    let exhausted = status(create().await);
    assert_eq!(
        (exhausted.code, exhausted.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(exhausted.message, "configmaps \"gen-bbbbb\" already exists");
    let after = create().await.unwrap();
    assert_eq!(after.metadata.name.as_deref(), Some("gen-fffff"));
}

#[tokio::test]
async fn leases_are_served_with_optimistic_concurrency_as_leader_electors_use_them() {
    use k8s_openapi::api::coordination::v1::Lease;
    let server = FakeApiServer::start().await;
    let client = admin(&server).await;
    make_namespace(&server, "app", &[]).await;
    let leases: Api<Lease> = Api::namespaced(client, "app");
    let lease: Lease = typed(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "minter", "namespace": "app"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                 "renewTime": "2026-12-02T07:00:00.000000Z", "leaseTransitions": 0},
    }));
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert!(spec.renew_time.is_some());

    // Two electors replace from the same read: the second is a 409 Conflict.
    let mut first = created.clone();
    first.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("minter", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut second = created;
    second.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let conflict = status(
        leases
            .replace("minter", &PostParams::default(), &second)
            .await,
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        leases
            .get("minter")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );

    let mut bad = lease.clone();
    bad.metadata.name = Some("bad".into());
    bad.spec.as_mut().unwrap().lease_duration_seconds = Some(0);
    let invalid = status(leases.create(&PostParams::default(), &bad).await);
    assert_eq!((invalid.code, invalid.reason.as_str()), (422, "Invalid"));
    assert!(
        invalid
            .message
            .contains("spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
        "{}",
        invalid.message
    );
}
