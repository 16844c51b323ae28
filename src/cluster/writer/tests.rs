//! The writer against a scripted kube API: which requests each write makes, and what it makes
//! of each answer kube-apiserver can give.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde_json::{Value, json};

use super::{Budget, Made, PATCH_ATTEMPTS, Writer};
use crate::cluster::Shared;
use crate::cluster::api::{WriteError, status_code};
use crate::cluster::mock::{self, ApiMock, exchange, stored};
use crate::marks::{
    CONTENT_HASH_ANNOTATION, CREDENTIAL_ANNOTATION, INJECTED_ANNOTATION, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE, SOURCE_ANNOTATION,
};
use crate::policy::{CopyRequest, PreparedSource};
use crate::registry::dockerconfig::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DockerConfig,
};
use crate::view::{ClusterView, Occupant};

/// Two credentials whose copies may land on the same name: `icr` copies `default/all-icr-io`
/// as `icr`, and `mirror` copies every selected secret of `mirrors` under its own name, so a
/// secret `mirrors/icr` makes a second, different `icr`. The index admits both as copies.
const CONFIG: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    copyName: icr
    namespaces: {include: ["*"]}
  - name: mirror
    secretSelector:
      namespace: mirrors
      matchLabels: {mirror: "true"}
    namespaces: {include: ["*"]}
serviceAccounts: ["default"]
"#;

const NAMESPACE: &str = "team-a";
const SECRETS: &str = "/api/v1/namespaces/team-a/secrets";
const COPY: &str = "/api/v1/namespaces/team-a/secrets/icr";
const SERVICE_ACCOUNT: &str = "/api/v1/namespaces/team-a/serviceaccounts/default";
const INJECTED_PATH: &str = "/metadata/annotations/pull-secret-injector~1injected";

fn setup() -> (Arc<Shared>, Writer, ApiMock) {
    let (shared, api) = mock::shared(Some(CONFIG));
    let writer = Writer::new(shared.clone());
    (shared, writer, api)
}

/// `credential`'s prepared copy of `namespace/name` holding one `icr.io` entry.
fn prepared(credential: &str, namespace: &str, name: &str, token: &str) -> PreparedSource {
    let auth = STANDARD.encode(format!("iamapikey:{token}"));
    let json = format!(r#"{{"auths":{{"icr.io":{{"auth":"{auth}"}}}}}}"#);
    let content = DockerConfig::from_dockerconfigjson(json.as_bytes()).expect("a pull secret");
    PreparedSource {
        credential: credential.to_string(),
        source_namespace: namespace.to_string(),
        source_name: name.to_string(),
        copy_name: "icr".to_string(),
        data: content.to_dockerconfigjson(),
        hash: content.content_hash(),
        content,
        source_version: "9".to_string(),
    }
}

fn icr() -> Arc<PreparedSource> {
    Arc::new(prepared("icr", "default", "all-icr-io", "current"))
}

fn request(source: Arc<PreparedSource>) -> CopyRequest {
    CopyRequest {
        namespace: NAMESPACE.to_string(),
        source,
        update: false,
    }
}

/// The copy of `source` as the API would hold it.
fn copy_of(source: &PreparedSource, resource_version: &str) -> Value {
    let secret = serde_json::to_value(source.copy_secret(NAMESPACE)).expect("a secret");
    stored(secret, resource_version)
}

fn metrics(shared: &Shared) -> String {
    shared.metrics.render()
}

fn api_writes(action: &str) -> String {
    format!(r#"pull_secret_injector_api_writes_total{{action="{action}"}} 1"#)
}

fn reconcile_errors(action: &str) -> String {
    format!(r#"pull_secret_injector_reconcile_errors_total{{action="{action}"}}"#)
}

fn occupant(shared: &Shared) -> Option<(bool, Option<String>)> {
    shared
        .index
        .read()
        .occupant(NAMESPACE, "icr")
        .map(|o| (o.managed, o.credential.map(str::to_string)))
}

#[tokio::test]
async fn a_created_copy_is_ready_and_in_the_index() {
    let (shared, writer, mut api) = setup();
    let source = icr();
    let made = exchange(
        &mut api,
        async |api| {
            let call = api
                .next("the copy's create")
                .await
                .expect(Method::POST, SECRETS);
            assert_eq!(call.query("fieldManager"), Some("pull-secret-injector"));
            let meta = &call.body["metadata"];
            assert_eq!(meta["name"], "icr");
            assert_eq!(meta["labels"][MANAGED_BY_LABEL], MANAGED_BY_VALUE);
            assert_eq!(meta["annotations"][CREDENTIAL_ANNOTATION], "icr");
            assert_eq!(meta["annotations"][SOURCE_ANNOTATION], "default/all-icr-io");
            assert_eq!(
                meta["annotations"][CONTENT_HASH_ANNOTATION],
                source.hash.as_str()
            );
            assert_eq!(call.body["type"], DOCKER_CONFIG_JSON_TYPE);
            assert_eq!(
                call.body["data"][DOCKER_CONFIG_JSON_KEY],
                STANDARD.encode(&source.data)
            );
            let created = stored(call.body.clone(), "101");
            call.respond(201, created);
        },
        writer.ensure(&request(source.clone()), Budget::Admission),
    )
    .await;
    assert!(matches!(made, Made::Ready), "{made:?}");
    let ix = shared.index.read();
    let copy = ix.copy(NAMESPACE, "icr").expect("the copy is indexed");
    assert_eq!(copy.credential, "icr");
    assert_eq!(copy.resource_version, "101");
    assert_eq!(copy.data_hash, Some(source.hash.as_str()));
    drop(ix);
    assert!(metrics(&shared).contains(&api_writes("create_copy")));
}

#[tokio::test]
async fn a_name_taken_by_our_own_copy_is_adopted_without_a_write() {
    let (shared, writer, mut api) = setup();
    // Another replica made it first, from an older version of the source: still ours (the
    // reconciler brings its content up to date), so no write now.
    let older = prepared("icr", "default", "all-icr-io", "older");
    let made = exchange(
        &mut api,
        async |api| {
            api.next("the create")
                .await
                .expect(Method::POST, SECRETS)
                .fail(409, "AlreadyExists", r#"secrets "icr" already exists"#);
            api.next("a read of what holds the name")
                .await
                .expect(Method::GET, COPY)
                .respond(200, copy_of(&older, "55"));
        },
        writer.ensure(&request(icr()), Budget::Admission),
    )
    .await;
    assert!(matches!(made, Made::Ready), "{made:?}");
    let ix = shared.index.read();
    let copy = ix
        .copy(NAMESPACE, "icr")
        .expect("the adopted copy is indexed");
    assert_eq!(copy.resource_version, "55");
    assert_eq!(copy.data_hash, Some(older.hash.as_str()));
    drop(ix);
    assert!(!metrics(&shared).contains("api_writes_total{"));
}

#[tokio::test]
async fn an_unlabelled_secret_holding_the_name_is_foreign_and_left_alone() {
    let (shared, writer, mut api) = setup();
    let made = exchange(
        &mut api,
        async |api| {
            api.next("the create")
                .await
                .expect(Method::POST, SECRETS)
                .fail(409, "AlreadyExists", r#"secrets "icr" already exists"#);
            // The tenant's own pull secret, which happens to be called `icr`.
            let theirs = stored(
                json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "icr", "namespace": NAMESPACE},
                    "type": DOCKER_CONFIG_JSON_TYPE,
                    "data": {DOCKER_CONFIG_JSON_KEY: STANDARD.encode(r#"{"auths":{}}"#)},
                }),
                "31",
            );
            api.next("a read of what holds the name")
                .await
                .expect(Method::GET, COPY)
                .respond(200, theirs);
            // Nothing more: the exchange fails on any update or delete of it.
        },
        writer.ensure(&request(icr()), Budget::Admission),
    )
    .await;
    assert!(matches!(made, Made::Foreign), "{made:?}");
    let ix = shared.index.read();
    assert!(ix.copy(NAMESPACE, "icr").is_none());
    assert_eq!(ix.occupant(NAMESPACE, "icr"), Some(Occupant::foreign()));
}

#[tokio::test]
async fn a_labelled_secret_naming_an_unknown_credential_is_foreign() {
    let (shared, writer, mut api) = setup();
    let made = exchange(
        &mut api,
        async |api| {
            api.next("the create")
                .await
                .expect(Method::POST, SECRETS)
                .fail(409, "AlreadyExists", r#"secrets "icr" already exists"#);
            // Anyone who can write Secrets here can put the label on one: marks the config
            // does not account for make it someone else's.
            let forged = stored(
                json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": "icr",
                        "namespace": NAMESPACE,
                        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
                        "annotations": {
                            CREDENTIAL_ANNOTATION: "someone-else",
                            SOURCE_ANNOTATION: "team-a/theirs",
                        },
                    },
                    "type": DOCKER_CONFIG_JSON_TYPE,
                    "data": {DOCKER_CONFIG_JSON_KEY: STANDARD.encode(r#"{"auths":{}}"#)},
                }),
                "32",
            );
            api.next("a read of what holds the name")
                .await
                .expect(Method::GET, COPY)
                .respond(200, forged);
        },
        writer.ensure(&request(icr()), Budget::Admission),
    )
    .await;
    assert!(matches!(made, Made::Foreign), "{made:?}");
    assert_eq!(occupant(&shared), Some((false, None)));
}

#[tokio::test]
async fn another_credentials_copy_with_other_content_is_a_conflict() {
    let (shared, writer, mut api) = setup();
    let mirrors = prepared("mirror", "mirrors", "icr", "mirror-token");
    let made = exchange(
        &mut api,
        async |api| {
            api.next("the create")
                .await
                .expect(Method::POST, SECRETS)
                .fail(409, "AlreadyExists", r#"secrets "icr" already exists"#);
            api.next("a read of what holds the name")
                .await
                .expect(Method::GET, COPY)
                .respond(200, copy_of(&mirrors, "33"));
        },
        writer.ensure(&request(icr()), Budget::Admission),
    )
    .await;
    assert!(
        matches!(&made, Made::Conflict(other) if other == "mirror"),
        "{made:?}"
    );
    // It is a copy the config accounts for, so the index knows it as mirror's.
    assert_eq!(occupant(&shared), Some((true, Some("mirror".to_string()))));
}

#[tokio::test]
async fn a_create_the_api_refuses_fails_with_its_status_and_is_counted() {
    let (shared, writer, mut api) = setup();
    let made = exchange(
        &mut api,
        async |api| {
            api.next("the create")
                .await
                .expect(Method::POST, SECRETS)
                .fail(500, "InternalError", "etcdserver: request timed out");
        },
        writer.ensure(&request(icr()), Budget::Reconciler),
    )
    .await;
    let Made::Failed(error @ WriteError::Api(cause)) = &made else {
        panic!("expected an API failure, got {made:?}");
    };
    assert_eq!(status_code(cause), Some(500));
    assert_eq!(
        error.to_string(),
        "500 InternalError: etcdserver: request timed out"
    );
    assert!(shared.index.read().copy(NAMESPACE, "icr").is_none());
    assert!(metrics(&shared).contains(&format!("{} 1", reconcile_errors("create_copy"))));
}

#[tokio::test]
async fn concurrent_ensures_of_one_copy_make_one_create() {
    let (shared, writer, mut api) = setup();
    let source = icr();
    let (first, second, third) = exchange(
        &mut api,
        async |api| {
            let call = api
                .next("the one create")
                .await
                .expect(Method::POST, SECRETS);
            let created = stored(call.body.clone(), "101");
            call.respond(201, created);
            // A second create would be left unanswered: the exchange fails naming it.
        },
        // A ReplicaSet's pods are admitted together and all need the same copy; the
        // reconciler may want it at the same moment.
        async {
            let (a, b, c) = (
                request(source.clone()),
                request(source.clone()),
                request(source.clone()),
            );
            tokio::join!(
                writer.ensure(&a, Budget::Admission),
                writer.ensure(&b, Budget::Admission),
                writer.ensure(&c, Budget::Reconciler),
            )
        },
    )
    .await;
    for made in [first, second, third] {
        assert!(matches!(made, Made::Ready), "{made:?}");
    }
    assert!(metrics(&shared).contains(&api_writes("create_copy")));
}

#[tokio::test]
async fn an_update_that_lost_a_race_is_not_an_error() {
    let (shared, writer, mut api) = setup();
    let source = icr();
    let updated = exchange(
        &mut api,
        async |api| {
            let call = api.next("the update").await.expect(Method::PATCH, COPY);
            assert_eq!(
                call.content_type.as_deref(),
                Some("application/merge-patch+json")
            );
            assert_eq!(call.query("fieldManager"), Some("pull-secret-injector"));
            // The resourceVersion the update was computed from makes it conditional.
            assert_eq!(call.body["metadata"]["resourceVersion"], "41");
            assert_eq!(
                call.body["metadata"]["annotations"][CONTENT_HASH_ANNOTATION],
                source.hash.as_str()
            );
            assert_eq!(
                call.body["data"][DOCKER_CONFIG_JSON_KEY],
                STANDARD.encode(&source.data)
            );
            call.fail(
                409,
                "Conflict",
                r#"Operation cannot be fulfilled on secrets "icr": the object has been modified; please apply your changes to the latest version and try again"#,
            );
        },
        writer.update(NAMESPACE, &source, "41"),
    )
    .await;
    assert!(matches!(updated, Ok(false)), "{updated:?}");
    assert!(!metrics(&shared).contains(&reconcile_errors("update_copy")));
}

#[tokio::test]
async fn an_update_the_api_rejects_is_an_error() {
    let (shared, writer, mut api) = setup();
    let source = icr();
    let updated = exchange(
        &mut api,
        async |api| {
            api.next("the update").await.expect(Method::PATCH, COPY).fail(
                422,
                "Invalid",
                r#"Secret "icr" is invalid: data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": invalid character 'x' looking for beginning of value"#,
            );
        },
        writer.update(NAMESPACE, &source, "41"),
    )
    .await;
    let Err(WriteError::Api(cause)) = &updated else {
        panic!("expected an API error, got {updated:?}");
    };
    assert_eq!(status_code(cause), Some(422));
    assert!(metrics(&shared).contains(&format!("{} 1", reconcile_errors("update_copy"))));
}

#[tokio::test]
async fn a_delete_is_conditional_on_the_resource_version_it_was_planned_from() {
    let (shared, writer, mut api) = setup();
    let source = icr();
    let copy: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(copy_of(&source, "77")).expect("a secret");
    assert!(shared.index.write().apply_copy(&copy));
    let deleted = exchange(
        &mut api,
        async |api| {
            let call = api.next("the delete").await.expect(Method::DELETE, COPY);
            assert_eq!(
                call.body["preconditions"],
                json!({"resourceVersion": "77"}),
                "{call:#?}"
            );
            // kube-apiserver answers a delete with the object as it was.
            call.respond(200, copy_of(&source, "77"));
        },
        writer.delete(NAMESPACE, "icr", "77"),
    )
    .await;
    assert!(matches!(deleted, Ok(true)), "{deleted:?}");
    assert!(shared.index.read().copy(NAMESPACE, "icr").is_none());
    assert!(metrics(&shared).contains(&api_writes("delete_copy")));
}

#[tokio::test]
async fn a_delete_whose_precondition_failed_is_not_an_error_and_keeps_the_copy() {
    let (shared, writer, mut api) = setup();
    let source = icr();
    let copy: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(copy_of(&source, "77")).expect("a secret");
    assert!(shared.index.write().apply_copy(&copy));
    let deleted = exchange(
        &mut api,
        async |api| {
            api.next("the delete").await.expect(Method::DELETE, COPY).fail(
                409,
                "Conflict",
                r#"Operation cannot be fulfilled on secrets "icr": the ResourceVersion in the precondition (77) does not match the ResourceVersion in record (78). The object might have been modified"#,
            );
        },
        writer.delete(NAMESPACE, "icr", "77"),
    )
    .await;
    assert!(matches!(deleted, Ok(false)), "{deleted:?}");
    // The watch reports the newer version; the next pass decides again.
    assert!(shared.index.read().copy(NAMESPACE, "icr").is_some());
    assert!(!metrics(&shared).contains(&reconcile_errors("delete_copy")));
}

fn service_account(
    resource_version: &str,
    pull_secrets: Option<&[&str]>,
    annotations: Value,
) -> Value {
    let mut sa = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "default",
            "namespace": NAMESPACE,
            "uid": "0d6f3c1e-8a2b-4f5c-9e7d-1a2b3c4d5e6f",
            "resourceVersion": resource_version,
        },
    });
    if let Some(names) = pull_secrets {
        sa["imagePullSecrets"] = names.iter().map(|n| json!({"name": n})).collect();
    }
    if !annotations.is_null() {
        sa["metadata"]["annotations"] = annotations;
    }
    sa
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Asserts the call is the guarded JSON patch of the ServiceAccount, and returns its ops.
fn json_patch(call: &mock::Call) -> &Vec<Value> {
    call.assert_is(Method::PATCH, SERVICE_ACCOUNT);
    assert_eq!(
        call.content_type.as_deref(),
        Some("application/json-patch+json"),
        "never a merge or an apply: imagePullSecrets is atomic"
    );
    assert_eq!(call.query("fieldManager"), Some("pull-secret-injector"));
    call.body.as_array().expect("a JSON patch is an array")
}

#[tokio::test]
async fn references_create_the_list_and_the_annotations_when_absent() {
    let (shared, writer, mut api) = setup();
    let added = exchange(
        &mut api,
        async |api| {
            api.next("a fresh read of the ServiceAccount")
                .await
                .expect(Method::GET, SERVICE_ACCOUNT)
                .respond(200, service_account("12", None, Value::Null));
            let call = api.next("the patch").await;
            assert_eq!(
                json_patch(&call),
                &vec![
                    json!({"op": "test", "path": "/metadata/resourceVersion", "value": "12"}),
                    json!({"op": "add", "path": "/imagePullSecrets",
                           "value": [{"name": "icr"}, {"name": "mirror"}]}),
                    json!({"op": "add", "path": "/metadata/annotations",
                           "value": {INJECTED_ANNOTATION: "icr,mirror"}}),
                ]
            );
            let patched = service_account(
                "13",
                Some(&["icr", "mirror"]),
                json!({INJECTED_ANNOTATION: "icr,mirror"}),
            );
            call.respond(200, patched);
        },
        writer.add_references(NAMESPACE, "default", &names(&["icr", "mirror"])),
    )
    .await;
    assert_eq!(added.expect("added"), names(&["icr", "mirror"]));
    assert!(metrics(&shared).contains(&api_writes("patch_service_account")));
}

#[tokio::test]
async fn references_are_appended_in_order_leaving_existing_entries_alone() {
    let (_shared, writer, mut api) = setup();
    let added = exchange(
        &mut api,
        async |api| {
            // OpenShift's own entry first, then one the injector added earlier.
            let current = service_account(
                "12",
                Some(&["default-dockercfg-x7k2p", "icr"]),
                json!({
                    "openshift.io/internal-registry-pull-secret-ref": "default-dockercfg-x7k2p",
                    INJECTED_ANNOTATION: "icr",
                }),
            );
            api.next("a fresh read of the ServiceAccount")
                .await
                .expect(Method::GET, SERVICE_ACCOUNT)
                .respond(200, current);
            let call = api.next("the patch").await;
            // A test first, then appends only: nothing replaces or removes what is there.
            assert_eq!(
                json_patch(&call),
                &vec![
                    json!({"op": "test", "path": "/metadata/resourceVersion", "value": "12"}),
                    json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "mirror"}}),
                    json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "quay"}}),
                    json!({"op": "add", "path": INJECTED_PATH, "value": "icr,mirror,quay"}),
                ]
            );
            let patched = service_account(
                "13",
                Some(&["default-dockercfg-x7k2p", "icr", "mirror", "quay"]),
                json!({INJECTED_ANNOTATION: "icr,mirror,quay"}),
            );
            call.respond(200, patched);
        },
        writer.add_references(NAMESPACE, "default", &names(&["icr", "mirror", "quay"])),
    )
    .await;
    assert_eq!(added.expect("added"), names(&["mirror", "quay"]));
}

#[tokio::test]
async fn a_reference_someone_removed_is_not_added_back() {
    let (shared, writer, mut api) = setup();
    let added = exchange(
        &mut api,
        async |api| {
            // The injector added `icr` once (the annotation says so) and someone took it out.
            let current = service_account(
                "12",
                Some(&["team-own"]),
                json!({INJECTED_ANNOTATION: "icr"}),
            );
            api.next("a fresh read of the ServiceAccount")
                .await
                .expect(Method::GET, SERVICE_ACCOUNT)
                .respond(200, current);
            // No patch: the exchange fails on one.
        },
        writer.add_references(NAMESPACE, "default", &names(&["icr"])),
    )
    .await;
    assert_eq!(added.expect("nothing to add"), Vec::<String>::new());
    assert!(!metrics(&shared).contains("api_writes_total{"));
}

#[tokio::test]
async fn a_failed_test_reads_the_service_account_again_and_patches_that() {
    let (shared, writer, mut api) = setup();
    let added = exchange(
        &mut api,
        async |api| {
            api.next("the first read")
                .await
                .expect(Method::GET, SERVICE_ACCOUNT)
                .respond(200, service_account("12", None, Value::Null));
            let call = api.next("the first patch").await;
            assert_eq!(json_patch(&call)[0]["value"], "12");
            // kube answers a JSON patch whose `test` fails with 422.
            call.fail(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
            );
            // Meanwhile someone else added their own entry.
            api.next("a second read")
                .await
                .expect(Method::GET, SERVICE_ACCOUNT)
                .respond(200, service_account("14", Some(&["team-own"]), Value::Null));
            let call = api
                .next("a second patch, from what the second read saw")
                .await;
            assert_eq!(
                json_patch(&call),
                &vec![
                    json!({"op": "test", "path": "/metadata/resourceVersion", "value": "14"}),
                    json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "icr"}}),
                    json!({"op": "add", "path": "/metadata/annotations",
                           "value": {INJECTED_ANNOTATION: "icr"}}),
                ]
            );
            let patched = service_account(
                "15",
                Some(&["team-own", "icr"]),
                json!({INJECTED_ANNOTATION: "icr"}),
            );
            call.respond(200, patched);
        },
        writer.add_references(NAMESPACE, "default", &names(&["icr"])),
    )
    .await;
    assert_eq!(added.expect("added"), names(&["icr"]));
    assert!(!metrics(&shared).contains(&reconcile_errors("patch_service_account")));
}

#[tokio::test]
async fn a_service_account_that_keeps_changing_is_given_up_as_contended() {
    let (shared, writer, mut api) = setup();
    let added = exchange(
        &mut api,
        async |api| {
            for attempt in 0..PATCH_ATTEMPTS {
                let version = (20 + attempt).to_string();
                api.next("a read")
                    .await
                    .expect(Method::GET, SERVICE_ACCOUNT)
                    .respond(200, service_account(&version, None, Value::Null));
                let call = api.next("a patch").await;
                assert_eq!(json_patch(&call)[0]["value"], version.as_str());
                call.fail(
                    409,
                    "Conflict",
                    r#"Operation cannot be fulfilled on serviceaccounts "default": the object has been modified; please apply your changes to the latest version and try again"#,
                );
            }
            // No sixth read: the exchange fails on one.
        },
        writer.add_references(NAMESPACE, "default", &names(&["icr"])),
    )
    .await;
    match added {
        Err(WriteError::Contended { attempts, last }) => {
            assert_eq!(attempts, PATCH_ATTEMPTS);
            assert!(last.starts_with("409 Conflict: "), "{last}");
        }
        other => panic!("expected Contended, got {other:?}"),
    }
    assert!(metrics(&shared).contains(&format!("{} 1", reconcile_errors("patch_service_account"))));
}

#[tokio::test]
async fn a_service_account_that_is_gone_gets_nothing() {
    let (shared, writer, mut api) = setup();
    let added = exchange(
        &mut api,
        async |api| {
            api.next("a fresh read of the ServiceAccount")
                .await
                .expect(Method::GET, SERVICE_ACCOUNT)
                .fail(404, "NotFound", r#"serviceaccounts "default" not found"#);
        },
        writer.add_references(NAMESPACE, "default", &names(&["icr"])),
    )
    .await;
    assert_eq!(added.expect("nothing to add"), Vec::<String>::new());
    assert!(!metrics(&shared).contains("reconcile_errors_total{"));
}

#[tokio::test]
async fn another_credentials_copy_already_indexed_is_a_conflict_without_a_request() {
    let (shared, writer, mut api) = setup();
    let mirrors = prepared("mirror", "mirrors", "icr", "mirror-token");
    let indexed: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(copy_of(&mirrors, "33")).expect("a Secret");
    assert!(shared.index.write().apply_copy(&indexed));
    let made = writer.ensure(&request(icr()), Budget::Admission).await;
    assert!(
        matches!(&made, Made::Conflict(other) if other == "mirror"),
        "{made:?}"
    );
    api.assert_idle();
}
