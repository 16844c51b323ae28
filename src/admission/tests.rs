use super::*;
use crate::config::Config;
use crate::view::ClusterState;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use proptest::prelude::*;
use serde_json::json;

const CONFIG: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    namespaces: {include: ["*"]}
  - name: hub
    secret: creds/dockerhub
    namespaces: {include: ["team-*"]}
"#;

fn secret(ns: &str, name: &str, key: &str) -> serde_json::Value {
    let config = json!({"auths": {key: {"auth": STANDARD.encode("u:fake-password")}}});
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name, "namespace": ns},
            "data": {".dockerconfigjson": STANDARD.encode(config.to_string())}})
}

fn setup() -> (Catalog, ClusterState) {
    let mut state = ClusterState::new();
    let docs = [
        secret("default", "all-icr-io", "us.icr.io"),
        secret("creds", "dockerhub", "https://index.docker.io/v1/"),
    ];
    for d in docs {
        state.load_manifests("test", &d.to_string()).unwrap();
    }
    let catalog = Catalog::build(Config::from_yaml(CONFIG).unwrap(), &state, Some("psi"));
    (catalog, state)
}

fn review_of(
    kind: &str,
    resource: &str,
    operation: &str,
    object: serde_json::Value,
    dry_run: bool,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0f5b6a1e-1111-2222-3333-444455556666",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "namespace": "team-a", "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object, "oldObject": null, "dryRun": dry_run
        }
    }))
    .unwrap()
}

fn pod(
    images: &[&str],
    pull_secrets: Option<&[&str]>,
    annotations: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-5d8f7-", "namespace": "team-a"},
        "spec": {
            "serviceAccountName": "default",
            "containers": images.iter().enumerate()
                .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
                .collect::<Vec<_>>()
        }
    });
    if let Some(names) = pull_secrets {
        pod["spec"]["imagePullSecrets"] = names.iter().map(|n| json!({"name": n})).collect();
    }
    if let Some(a) = annotations {
        pod["metadata"]["annotations"] = a;
    }
    pod
}

/// Reviews the CREATE of a Pod.
fn create_pod(
    catalog: &Catalog,
    state: &ClusterState,
    object: serde_json::Value,
    dry_run: bool,
) -> Result<Reviewed, ReviewError> {
    review(
        catalog,
        state,
        &review_of("Pod", "pods", "CREATE", object, dry_run),
    )
}

fn apply(object: &serde_json::Value, response: &Response) -> serde_json::Value {
    let mut patched = object.clone();
    if let Some(patch) = response.decoded_patch() {
        json_patch::patch(&mut patched, &patch).expect("the patch applies");
    }
    patched
}

fn pull_secret_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .map(|l| l.iter().map(|r| r.name.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn pod_without_pull_secrets_gets_the_array_and_the_annotation_created() {
    let (catalog, state) = setup();
    let object = pod(&["us.icr.io/ns/app:1", "nginx"], None, None);
    let reviewed = create_pod(&catalog, &state, object.clone(), false).unwrap();
    let patched: Pod = serde_json::from_value(apply(&object, &reviewed.response)).unwrap();
    assert_eq!(pull_secret_names(&patched), ["all-icr-io", "dockerhub"]);
    assert_eq!(
        patched.metadata.annotations.unwrap()[INJECTED_ANNOTATION],
        "all-icr-io,dockerhub"
    );
    assert_eq!(reviewed.outcome.name, "web-5d8f7-*");
    assert_eq!(reviewed.outcome.decision.unwrap().copies.len(), 2);
}

/// Found by `fuzz/patch_applies`: an object without `metadata` (a hand-made review) still gets
/// a patch that applies, creating `metadata` with the record, and the reference agrees.
#[test]
fn an_object_without_metadata_gets_a_patch_that_applies() {
    let (catalog, state) = setup();
    let mut object = pod(&["us.icr.io/ns/app:1"], None, None);
    object.as_object_mut().unwrap().remove("metadata");
    let reviewed = create_pod(&catalog, &state, object.clone(), false).unwrap();
    let patched: Pod = serde_json::from_value(apply(&object, &reviewed.response)).unwrap();
    assert_eq!(pull_secret_names(&patched), ["all-icr-io"]);
    assert_eq!(
        patched.metadata.annotations.unwrap()[INJECTED_ANNOTATION],
        "all-icr-io"
    );
    assert_like_reference(
        &catalog,
        &state,
        &review_of("Pod", "pods", "CREATE", object, false),
    );
}

#[test]
fn existing_entries_and_annotations_are_kept_and_extended() {
    let (catalog, state) = setup();
    let object = pod(
        &["us.icr.io/ns/app:1", "nginx"],
        Some(&["mine", "dockerhub"]),
        Some(json!({"team": "a", INJECTED_ANNOTATION: "dockerhub"})),
    );
    let reviewed = create_pod(&catalog, &state, object.clone(), false).unwrap();
    let patched: Pod = serde_json::from_value(apply(&object, &reviewed.response)).unwrap();
    assert_eq!(
        pull_secret_names(&patched),
        ["mine", "dockerhub", "all-icr-io"]
    );
    let annotations = patched.metadata.annotations.unwrap();
    assert_eq!(annotations["team"], "a");
    assert_eq!(annotations[INJECTED_ANNOTATION], "dockerhub,all-icr-io");
}

#[test]
fn nothing_to_add_means_no_patch() {
    let (catalog, state) = setup();
    let object = pod(&["us.icr.io/ns/app:1"], Some(&["all-icr-io"]), None);
    let reviewed = create_pod(&catalog, &state, object, false).unwrap();
    assert!(reviewed.response.patch.is_none());
    assert!(reviewed.response.patch_type.is_none());
    assert!(reviewed.response.allowed);
}

#[test]
fn service_account_patch_targets_the_top_level_list() {
    let (catalog, state) = setup();
    let object = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "team-a"}});
    let reviewed = review(
        &catalog,
        &state,
        &review_of(
            "ServiceAccount",
            "serviceaccounts",
            "CREATE",
            object.clone(),
            false,
        ),
    )
    .unwrap();
    let patched: ServiceAccount =
        serde_json::from_value(apply(&object, &reviewed.response)).unwrap();
    let names: Vec<String> = patched
        .image_pull_secrets
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["all-icr-io", "dockerhub"]);
}

#[test]
fn dry_run_gives_the_same_patch_and_no_copies() {
    let (catalog, state) = setup();
    let object = pod(&["us.icr.io/ns/app:1"], None, None);
    let wet = create_pod(&catalog, &state, object.clone(), false).unwrap();
    let dry = create_pod(&catalog, &state, object, true).unwrap();
    assert_eq!(wet.response.patch, dry.response.patch);
    assert!(dry.outcome.decision.unwrap().copies.is_empty());
    assert_eq!(wet.outcome.decision.unwrap().copies.len(), 1);
}

#[test]
fn other_operations_kinds_and_subresources_pass_unchanged() {
    let (catalog, state) = setup();
    let object = pod(&["us.icr.io/ns/app:1"], None, None);
    for body in [
        review_of("Pod", "pods", "UPDATE", object.clone(), false),
        review_of(
            "Deployment",
            "deployments",
            "CREATE",
            json!({"spec": {}}),
            false,
        ),
        review_of("Pod", "pods", "DELETE", object.clone(), false),
    ] {
        let reviewed = review(&catalog, &state, &body).unwrap();
        assert!(reviewed.response.allowed && reviewed.response.patch.is_none());
        assert!(reviewed.outcome.decision.is_none());
    }
    let mut with_sub: serde_json::Value =
        serde_json::from_slice(&review_of("Pod", "pods", "CREATE", object, false)).unwrap();
    with_sub["request"]["subResource"] = json!("binding");
    let reviewed = review(&catalog, &state, &serde_json::to_vec(&with_sub).unwrap()).unwrap();
    assert!(reviewed.response.patch.is_none());
}

#[test]
fn response_is_admission_review_v1_with_a_base64_patch() {
    let (catalog, state) = setup();
    let object = pod(&["us.icr.io/ns/app:1"], None, None);
    let reviewed = create_pod(&catalog, &state, object, false).unwrap();
    let body: serde_json::Value = serde_json::from_slice(&reviewed.body).unwrap();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(
        body["response"]["uid"],
        "0f5b6a1e-1111-2222-3333-444455556666"
    );
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    // kube-apiserver decodes []byte from base64: an array of numbers would be refused.
    let patch = body["response"]["patch"]
        .as_str()
        .expect("patch is a string");
    let ops: serde_json::Value = serde_json::from_slice(&STANDARD.decode(patch).unwrap()).unwrap();
    assert_eq!(ops[0]["op"], "add");
    assert_eq!(ops[0]["path"], "/spec/imagePullSecrets");
    assert_eq!(ops[1]["path"], "/metadata/annotations");
}

#[test]
fn warnings_reach_the_response() {
    let (catalog, state) = setup();
    let object = pod(&["Bad/Image", "nginx"], None, None);
    let reviewed = create_pod(&catalog, &state, object, false).unwrap();
    assert_eq!(reviewed.response.warnings.len(), 1);
    assert!(reviewed.response.warnings[0].contains("\"Bad/Image\""));
    assert!(reviewed.response.patch.is_some());
}

#[test]
fn unreadable_objects_are_allowed_with_a_warning() {
    let (catalog, state) = setup();
    let object = json!({"metadata": {"name": "p", "namespace": "team-a"}, "spec": {"containers": {"image": "x"}}});
    let reviewed = create_pod(&catalog, &state, object, false).unwrap();
    assert!(reviewed.response.allowed && reviewed.response.patch.is_none());
    assert!(
        reviewed.response.warnings[0].contains("spec.containers is not a list"),
        "{:?}",
        reviewed.response.warnings
    );
}

#[test]
fn malformed_reviews_are_errors_that_name_the_cause_and_not_the_content() {
    let (catalog, state) = setup();
    let cases: &[(&[u8], &str)] = &[
            (b"", "malformed AdmissionReview: body ends too early"),
            (b"{not json fake-password-7", "malformed AdmissionReview: body is not valid JSON at line 1 column 2"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "malformed AdmissionReview: it has no request"),
            (br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":null}"#, "only admission.k8s.io/v1 is served"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"fake-password-7"}}"#,
                "malformed AdmissionReview: does not fit the AdmissionReview schema (missing field `kind`)"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":["fake-password-7"]}}"#,
                "malformed AdmissionReview: does not fit the AdmissionReview schema (unexpected value, expected a string)"),
        ];
    for (body, want) in cases {
        let err = review(&catalog, &state, body).unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} lacks {want:?}");
        assert!(!err.contains("fake-password"), "{err}");
    }
}

/// Everything a caller can observe, for comparing two answers.
fn observable(r: &Result<Reviewed, ReviewError>) -> Result<String, ReviewError> {
    match r {
        Ok(r) => Ok(format!(
            "{}\n{:?}\n{:?} {:?} {:?} {:?} {:?}\n{:?}",
            String::from_utf8_lossy(&r.body),
            r.response,
            r.outcome.kind,
            r.outcome.operation,
            r.outcome.namespace,
            r.outcome.name,
            r.outcome.object_error,
            r.outcome.decision
        )),
        Err(e) => Err(e.clone()),
    }
}

/// Whenever the kube-core parser answered, the borrowing one answers the same.
fn assert_like_reference(catalog: &Catalog, state: &ClusterState, body: &[u8]) {
    let old = reference::review(catalog, state, body);
    let new = review(catalog, state, body);
    if old.is_ok() {
        assert_eq!(
            observable(&new),
            observable(&old),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

struct Example {
    catalog: Catalog,
    state: ClusterState,
    file: std::path::PathBuf,
    body: Vec<u8>,
}

/// Every review under `examples/*/reviews/`, with its setup.
fn examples() -> &'static [Example] {
    static EXAMPLES: std::sync::OnceLock<Vec<Example>> = std::sync::OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut out = Vec::new();
        let mut setups: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("reviews").is_dir())
            .collect();
        setups.sort();
        for setup in setups {
            let mut files: Vec<_> = std::fs::read_dir(setup.join("reviews"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for file in files {
                let config = crate::offline::load_config(&setup.join("config.yaml")).unwrap();
                let state = crate::offline::load_cluster(&[setup.join("cluster")]).unwrap();
                let catalog =
                    Catalog::build(config, &state, Some(crate::offline::DEFAULT_OWN_NAMESPACE));
                let body = std::fs::read(&file).unwrap();
                out.push(Example {
                    catalog,
                    state,
                    file,
                    body,
                });
            }
        }
        out
    })
}

#[test]
fn every_example_review_is_answered_as_the_kube_core_parser_did() {
    let examples = examples();
    assert!(examples.len() >= 50, "{} examples", examples.len());
    let mut patched = 0;
    for e in examples {
        let old = reference::review(&e.catalog, &e.state, &e.body);
        let new = review(&e.catalog, &e.state, &e.body);
        assert!(old.is_ok(), "{}: {old:?}", e.file.display());
        assert_eq!(observable(&new), observable(&old), "{}", e.file.display());
        patched += usize::from(new.is_ok_and(|r| r.response.patch.is_some()));
    }
    assert!(patched > examples.len() / 2, "only {patched} patches");
}

/// Where a mutation may land: everything the parser reads, and its neighbours.
const MUTATED: &[&str] = &[
    "/request/uid",
    "/request/kind/kind",
    "/request/kind/group",
    "/request/name",
    "/request/namespace",
    "/request/operation",
    "/request/dryRun",
    "/request/subResource",
    "/request/oldObject",
    "/request/object",
    "/request/object/metadata",
    "/request/object/metadata/name",
    "/request/object/metadata/generateName",
    "/request/object/metadata/namespace",
    "/request/object/metadata/labels",
    "/request/object/metadata/annotations",
    "/request/object/metadata/annotations/pull-secret-injector~1injected",
    "/request/object/metadata/annotations/pull-secret-injector~1inject",
    "/request/object/metadata/labels/pull-secret-injector~1inject",
    "/request/object/spec",
    "/request/object/spec/initContainers",
    "/request/object/spec/initContainers/0/image",
    "/request/object/spec/containers",
    "/request/object/spec/containers/0",
    "/request/object/spec/containers/0/image",
    "/request/object/spec/containers/1/image",
    "/request/object/spec/ephemeralContainers",
    "/request/object/spec/imagePullSecrets",
    "/request/object/spec/imagePullSecrets/0",
    "/request/object/spec/imagePullSecrets/0/name",
    "/request/object/imagePullSecrets",
    "/request/object/imagePullSecrets/0/name",
];

fn junk() -> impl Strategy<Value = Option<serde_json::Value>> {
    proptest::option::of(proptest::sample::select(vec![
        json!(null),
        json!(7),
        json!(-1.5),
        json!(true),
        json!("fake-password-9"),
        json!("us.icr.io/ns/app:1"),
        json!("Pod"),
        json!("CREATE"),
        json!("false"),
        json!(""),
        json!([]),
        json!([1, "x", null]),
        json!({}),
        json!({"image": 1}),
        json!({"name": "all-icr-io"}),
        json!([{"image": "nginx"}, {"image": null}, "x"]),
        json!([{"name": "mine"}, {"name": null}, {}]),
        json!({"a": "b"}),
        json!({"a": 1}),
    ]))
}

/// Sets (or with `None` removes) the value at `pointer`, creating it in an existing object.
fn mutate(body: &mut serde_json::Value, pointer: &str, value: Option<serde_json::Value>) {
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let key = last.replace("~1", "/").replace("~0", "~");
    match body.pointer_mut(parent) {
        Some(serde_json::Value::Object(map)) => match value {
            Some(v) => {
                map.insert(key, v);
            }
            None => {
                map.remove(&key);
            }
        },
        Some(serde_json::Value::Array(items)) => {
            if let Ok(i) = key.parse::<usize>()
                && i < items.len()
            {
                match value {
                    Some(v) => items[i] = v,
                    None => {
                        items.remove(i);
                    }
                }
            }
        }
        _ => {}
    }
}

proptest! {
    #[test]
    fn mutated_example_reviews_are_answered_as_the_kube_core_parser_did(
        example in any::<proptest::sample::Index>(),
        mutations in proptest::collection::vec(
            (proptest::sample::select(MUTATED.to_vec()), junk()), 1..4),
    ) {
        let e = example.get(examples());
        let mut body: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        for (pointer, value) in mutations {
            mutate(&mut body, pointer, value);
        }
        let body = serde_json::to_vec(&body).unwrap();
        assert_like_reference(&e.catalog, &e.state, &body);
        if let Err(err) = review(&e.catalog, &e.state, &body) {
            prop_assert!(!err.to_string().contains("fake-password"), "{}", err);
        }
    }
}

/// A Pod CREATE written by hand, so that key order, escapes and repeats are as given.
fn raw_review(request_fields: &str) -> Vec<u8> {
    format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{{request_fields}}}}}"#
        )
        .into_bytes()
}

const POD_REQUEST: &str = r#""uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"team-a","operation":"CREATE""#;

fn raw_pod_review(object: &str) -> Vec<u8> {
    raw_review(&format!(r#"{POD_REQUEST},"object":{object}"#))
}

#[test]
fn escaped_strings_and_keys_read_as_their_text() {
    let (catalog, state) = setup();
    // icr is wanted by the first image, hub by the second; the pod already names icr.
    for (existing, add) in [
        (r#"[{"n\u0061me":"\u0061ll-icr-io"}]"#, vec!["dockerhub"]),
        ("[]", vec!["all-icr-io", "dockerhub"]),
    ] {
        let plain = raw_pod_review(&format!(
            r#"{{"metadata":{{"name":"p","annotations":{{"pull-secret-injector/injected":"dockerhub"}}}},
                    "spec":{{"containers":[{{"image":"us.icr.io/ns/app:1"}},{{"image":"docker.io/library/nginx"}}],
                    "imagePullSecrets":{}}}}}"#,
            existing.replace(r"\u0061", "a")
        ));
        let escaped = raw_pod_review(&format!(
            r#"{{"metad\u0061ta":{{"name":"\u0070","annotations":{{"pull-secret-injector\u002finjected":"docker\u0068ub"}}}},
                    "spec":{{"cont\u0061iners":[{{"image":"us.icr.io\u002fns\u002fapp:1"}},{{"im\u0061ge":"docker.io\/library\/nginx"}}],
                    "imagePullSecrets":{existing}}}}}"#
        ));
        let plain = review(&catalog, &state, &plain).unwrap();
        let reviewed = review(&catalog, &state, &escaped).unwrap();
        assert_eq!(reviewed.response, plain.response);
        assert_eq!(reviewed.outcome.name, "p");
        assert_eq!(reviewed.outcome.decision.unwrap().add, add);
        assert_like_reference(&catalog, &state, &escaped);
    }
}

#[test]
fn escaped_review_fields_read_as_their_text() {
    let (catalog, state) = setup();
    let body = raw_review(
        r#""u\u0069d":"u\u002f1","kind":{"group":"","version":"v1","kind":"P\u006fd"},
               "namespace":"team\u002da","operation":"CREATE","dryRun":false,
               "object":{"metadata":{"generateName":"web-\u00e9-"},"spec":{"containers":[{"image":"nginx"}]}}"#,
    );
    let reviewed = review(&catalog, &state, &body).unwrap();
    assert_eq!(reviewed.response.uid, "u/1");
    assert_eq!(reviewed.outcome.kind, "Pod");
    assert_eq!(reviewed.outcome.namespace, "team-a");
    assert_eq!(reviewed.outcome.name, "web-é-*");
    assert!(reviewed.response.patch.is_some());
    assert_like_reference(&catalog, &state, &body);
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let (catalog, state) = setup();
    let object = pod(&["us.icr.io/ns/app:1"], Some(&["mine"]), None);
    let plain = review_of("Pod", "pods", "CREATE", object, false);
    let mut noisy: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    let extra = json!({"future": [1, {"deep": [null, true, 2.5, "\u{1F600}"]}], "n": -3e8});
    for pointer in [
        "",
        "/request",
        "/request/kind",
        "/request/object",
        "/request/object/metadata",
        "/request/object/spec",
        "/request/object/spec/containers/0",
        "/request/object/spec/imagePullSecrets/0",
    ] {
        noisy
            .pointer_mut(pointer)
            .and_then(serde_json::Value::as_object_mut)
            .unwrap()
            .insert("zzUnknown".to_string(), extra.clone());
    }
    noisy["response"] = json!({"uid": "x", "allowed": false});
    noisy["request"]["options"] = json!({"kind": "CreateOptions", "fieldManager": 7});
    noisy["request"]["userInfo"]["extra"] = json!({"k": ["v"]});
    noisy["request"]["object"]["metadata"]["managedFields"] = json!([{"fieldsV1": {"f:spec": {}}}]);
    noisy["request"]["object"]["status"] = json!({"phase": "Pending"});
    let noisy = serde_json::to_vec(&noisy).unwrap();
    let (plain, noisy_reviewed) = (
        review(&catalog, &state, &plain).unwrap(),
        review(&catalog, &state, &noisy).unwrap(),
    );
    assert_eq!(noisy_reviewed.response, plain.response);
    assert!(plain.response.patch.is_some());
    assert_like_reference(&catalog, &state, &noisy);
}

#[test]
fn wrong_types_inside_the_object_are_warnings_not_errors() {
    let (catalog, state) = setup();
    let cases: &[(&str, &str)] = &[
        (r#"{"metadata":{"name":"p"}}"#, "the pod has no spec"),
        (r#"{"spec":null}"#, "spec is not an object"),
        (r#"{"spec":"fake-password-3"}"#, "spec is not an object"),
        (r#"{"spec":[{"containers":[]}]}"#, "spec is not an object"),
        (
            r#"{"spec":{"containers":{"image":"x"}}}"#,
            "spec.containers is not a list",
        ),
        (
            r#"{"spec":{"containers":"fake-password-3"}}"#,
            "spec.containers is not a list",
        ),
        (
            r#"{"spec":{"containers":[{"image":"nginx"},"x",{"image":12}]}}"#,
            "spec.containers[2].image is not a string",
        ),
        (
            r#"{"spec":{"initContainers":[{"image":["fake-password-3"]}]}}"#,
            "spec.initContainers[0].image is not a string",
        ),
        (
            r#"{"spec":{"ephemeralContainers":[{"image":{"a":"b"}}]}}"#,
            "spec.ephemeralContainers[0].image is not a string",
        ),
        (
            r#"{"spec":{"imagePullSecrets":7}}"#,
            "spec.imagePullSecrets is not a list",
        ),
        (
            r#"{"spec":{"imagePullSecrets":[{"name":"a"},{"name":false}]}}"#,
            "spec.imagePullSecrets[1].name is not a string",
        ),
        // Several wrong: the first in a fixed order is named, whatever the key order.
        (
            r#"{"spec":{"imagePullSecrets":1,"ephemeralContainers":1,"containers":[{"image":1}],"initContainers":{}}}"#,
            "spec.initContainers is not a list",
        ),
        (
            r#"{"spec":{"imagePullSecrets":1,"containers":[{"image":"nginx"},{"image":1},{"image":true}]}}"#,
            "spec.containers[1].image is not a string",
        ),
    ];
    for (object, why) in cases {
        let body = raw_pod_review(object);
        let reviewed = review(&catalog, &state, &body).unwrap();
        assert!(reviewed.response.allowed && reviewed.response.patch.is_none());
        assert_eq!(
            reviewed.response.warnings,
            [format!(
                "pull-secret-injector: cannot read Pod team-a/{}: {why}; nothing injected",
                if object.contains(r#""name":"p""#) {
                    "p"
                } else {
                    ""
                }
            )],
            "{object}"
        );
        assert_eq!(reviewed.outcome.object_error.as_deref(), Some(*why));
        assert_like_reference(&catalog, &state, &body);
    }
    // A ServiceAccount reads its top-level list, and nothing under a Pod's spec.
    for (object, warning) in [
        (
            r#"{"metadata":{"name":"default"},"imagePullSecrets":{"name":"x"}}"#,
            Some("imagePullSecrets is not a list"),
        ),
        (
            r#"{"metadata":{"name":"default"},"imagePullSecrets":[{"name":1}]}"#,
            Some("imagePullSecrets[0].name is not a string"),
        ),
        (
            r#"{"metadata":{"name":"default"},"spec":"x","imagePullSecrets":[]}"#,
            None,
        ),
    ] {
        let body = raw_review(&format!(
            r#""uid":"u","kind":{{"group":"","version":"v1","kind":"ServiceAccount"}},"namespace":"team-a","operation":"CREATE","object":{object}"#
        ));
        let reviewed = review(&catalog, &state, &body).unwrap();
        match warning {
            Some(why) => assert_eq!(
                reviewed.response.warnings,
                [format!(
                    "pull-secret-injector: cannot read ServiceAccount team-a/default: {why}; nothing injected"
                )]
            ),
            None => assert!(reviewed.response.patch.is_some(), "{:?}", reviewed.response),
        }
        assert_like_reference(&catalog, &state, &body);
    }
    // And a Pod ignores a top-level list.
    let body =
        raw_pod_review(r#"{"imagePullSecrets":"x","spec":{"containers":[{"image":"nginx"}]}}"#);
    assert!(
        review(&catalog, &state, &body)
            .unwrap()
            .response
            .patch
            .is_some()
    );
}

#[test]
fn wrong_types_at_review_level_are_errors_without_the_value() {
    let (catalog, state) = setup();
    let secret = "fake-password-4";
    let cases: Vec<(Vec<u8>, &str)> = vec![
            (raw_review(&format!(r#""uid":{{"s":"{secret}"}}"#)), "expected a string"),
            (
                raw_review(&format!(r#""uid":"u","kind":{{"group":"","version":"v1","kind":["{secret}"]}},"operation":"CREATE""#)),
                "expected a string",
            ),
            (raw_review(&format!(r#"{POD_REQUEST},"dryRun":"{secret}""#)), "expected a boolean"),
            (raw_review(&format!(r#"{POD_REQUEST},"subResource":["{secret}"]"#)), "expected a string"),
            (raw_review(&format!(r#"{POD_REQUEST},"name":{{"{secret}":1}}"#)), "expected a string"),
            (
                raw_review(r#""uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":7,"operation":"CREATE""#),
                "expected a string",
            ),
            (raw_pod_review(&format!(r#""{secret}""#)), "expected struct DynamicObject"),
            (raw_pod_review(&format!(r#"["{secret}"]"#)), "expected struct DynamicObject"),
            (raw_pod_review(&format!(r#"{{"metadata":"{secret}"}}"#)), "expected ObjectMeta"),
            (raw_pod_review(r#"{"metadata":null}"#), "expected ObjectMeta"),
            (raw_pod_review(&format!(r#"{{"metadata":{{"name":["{secret}"]}}}}"#)), "expected a string"),
            (raw_pod_review(&format!(r#"{{"metadata":{{"labels":{{"a":{{"b":"{secret}"}}}}}}}}"#)), "expected a string"),
            (raw_pod_review(&format!(r#"{{"metadata":{{"annotations":"{secret}"}}}}"#)), "expected a map"),
            (raw_pod_review(&format!(r#"{{"spec":{{"containers":[{{"image":"{secret}" oops}}]}}}}"#)), "not valid JSON"),
            (
                format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":{{"{secret}":1}},"request":null}}"#).into_bytes(),
                "expected a string",
            ),
            (format!(r#"["{secret}"]"#).into_bytes(), "expected struct AdmissionReview"),
            (b"[1, 2, 3]".to_vec(), "expected struct AdmissionReview"),
            (b"{}".to_vec(), "missing field `apiVersion`"),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","request":null}"#.to_vec(),
                "missing field `kind`",
            ),
            (
                format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"{secret}"}}"#).into_bytes(),
                "expected struct AdmissionRequest",
            ),
            (raw_review(r#""uid":"u","kind":{"group":"","kind":"Pod"},"operation":"CREATE""#), "missing field `version`"),
            (raw_review(r#""uid":"u","kind":{"group":"","version":"v1","kind":"Pod"}"#), "missing field `operation`"),
        ];
    for (body, want) in cases {
        let err = review(&catalog, &state, &body).unwrap_err().to_string();
        assert!(err.starts_with("malformed AdmissionReview: "), "{err}");
        assert!(err.contains(want), "{err:?} lacks {want:?}");
        assert!(!err.contains(secret), "{err}");
        assert!(reference::review(&catalog, &state, &body).is_err(), "{err}");
    }
}

#[test]
fn repeated_keys_are_treated_as_before() {
    let (catalog, state) = setup();
    // Typed fields of kube-core's structs were refused when repeated.
    for body in [
            raw_review(&format!(r#"{POD_REQUEST},"uid":"u-2","object":{{"spec":{{}}}}"#)),
            raw_review(&format!(r#"{POD_REQUEST},"operation":"UPDATE""#)),
            raw_pod_review(r#"{"metadata":{"name":"a"},"metadata":{"name":"b"},"spec":{}}"#),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null,"request":null}"#.to_vec(),
        ] {
            let err = review(&catalog, &state, &body).unwrap_err().to_string();
            assert!(err.contains("value does not match the schema"), "{err}");
            assert!(reference::review(&catalog, &state, &body).is_err());
        }
    // Inside the object they were read as a serde_json::Value, or by ObjectMeta: last wins.
    for (object, add, name) in [
        (
            r#"{"spec":{"containers":[{"image":"us.icr.io/a"}]},"spec":{"containers":[{"image":"nginx"}]}}"#,
            vec!["dockerhub"],
            "",
        ),
        (
            r#"{"spec":{"containers":[{"image":1}],"containers":[{"image":"nginx","image":"us.icr.io/a"}]}}"#,
            vec!["all-icr-io"],
            "",
        ),
        (
            r#"{"spec":{"imagePullSecrets":"bad","imagePullSecrets":[{"name":1,"name":"dockerhub"}],"containers":[{"image":"nginx"}]}}"#,
            vec![],
            "",
        ),
        (
            r#"{"metadata":{"name":"a","name":"b","labels":{"k":"1","k":"2"}},"spec":{"containers":null}}"#,
            vec![],
            "b",
        ),
    ] {
        let body = raw_pod_review(object);
        let reviewed = review(&catalog, &state, &body).unwrap();
        assert!(
            reviewed.response.warnings.is_empty(),
            "{:?}",
            reviewed.response
        );
        assert_eq!(reviewed.outcome.decision.unwrap().add, add, "{object}");
        assert_eq!(reviewed.outcome.name, name);
        assert_like_reference(&catalog, &state, &body);
    }
}

#[test]
fn only_the_labels_and_annotations_read_are_kept_and_all_are_checked() {
    let (catalog, state) = setup();
    let opted_out = |metadata: &str| {
        let body = raw_pod_review(&format!(
            r#"{{"metadata":{metadata},"spec":{{"containers":[{{"image":"nginx"}}]}}}}"#
        ));
        assert_like_reference(&catalog, &state, &body);
        let reviewed = review(&catalog, &state, &body).unwrap();
        reviewed.outcome.decision.unwrap().skipped.is_some()
    };
    assert!(opted_out(
        r#"{"labels":{"a":"b","pull-secret-injector/inject":"false","z":"y"}}"#
    ));
    assert!(opted_out(
        r#"{"annotations":{"a":"{\"big\":1}","pull-secret-injector\/inject":"false"}}"#
    ));
    assert!(!opted_out(
        r#"{"labels":{"pull-secret-injector/inject":"false","pull-secret-injector/inject":"true"}}"#
    ));
    assert!(!opted_out(r#"{"labels":{"a":"false"},"annotations":{}}"#));
    // Keys not kept are still checked: the review is malformed, as before.
    let body = raw_pod_review(r#"{"metadata":{"annotations":{"a":1}},"spec":{}}"#);
    assert!(review(&catalog, &state, &body).is_err());
    // Empty or unrelated annotations still exist: the record is added to them, not created.
    for (annotations, path) in [
        (
            r#","annotations":{"a":"b"}"#,
            "/metadata/annotations/pull-secret-injector~1injected",
        ),
        ("", "/metadata/annotations"),
    ] {
        let body = raw_pod_review(&format!(
            r#"{{"metadata":{{"name":"p"{annotations}}},"spec":{{"containers":[{{"image":"nginx"}}]}}}}"#
        ));
        let patch = review(&catalog, &state, &body)
            .unwrap()
            .response
            .decoded_patch()
            .unwrap();
        let last = serde_json::to_value(&patch).unwrap()[1]["path"].clone();
        assert_eq!(last, path);
        assert_like_reference(&catalog, &state, &body);
    }
}

#[test]
fn nulls_and_absences_kubernetes_sends_are_accepted() {
    let (catalog, state) = setup();
    let object = r#"{"metadata":{"generateName":"w-","namespace":"team-a"},"spec":{"containers":[{"image":"nginx"}]}}"#;
    let kind = r#""kind":{"group":"","version":"v1","kind":"Pod"}"#;
    let cases = [
        // The request's namespace null or absent: the object's is used.
        format!(
            r#""uid":"u",{kind},"operation":"CREATE","namespace":null,"name":null,"dryRun":null,"subResource":null,"oldObject":null,"object":{object}"#
        ),
        format!(r#""uid":"u",{kind},"operation":"CREATE","object":{object}"#),
        // The object before its kind: it is read before its kind is known.
        format!(r#""object":{object},"operation":"CREATE","uid":"u",{kind}"#),
    ];
    for fields in &cases {
        let body = raw_review(fields);
        let reviewed = review(&catalog, &state, &body).unwrap();
        assert!(reviewed.response.patch.is_some(), "{fields}");
        assert_eq!(reviewed.outcome.namespace, "team-a");
        assert_eq!(reviewed.outcome.name, "w-*");
        assert_eq!(
            reviewed.outcome.decision.unwrap().copies.len(),
            1,
            "not a dry run"
        );
        assert_like_reference(&catalog, &state, &body);
    }
    // DELETE carries no object; a CREATE without one is let through.
    for (operation, object_error) in [
        ("DELETE", None),
        ("CREATE", Some("the request carries no object")),
    ] {
        let body = raw_review(&format!(
            r#""uid":"u",{kind},"namespace":"team-a","name":"p","operation":"{operation}","object":null,"oldObject":{object}"#
        ));
        let reviewed = review(&catalog, &state, &body).unwrap();
        assert!(reviewed.response.patch.is_none() && reviewed.response.warnings.is_empty());
        assert_eq!(reviewed.outcome.name, "p");
        assert_eq!(reviewed.outcome.object_error.as_deref(), object_error);
        assert_like_reference(&catalog, &state, &body);
    }
}

fn images() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(
        proptest::sample::select(vec![
            "us.icr.io/ns/app:1",
            "nginx",
            "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "quay.io/x/y",
            "registry-1.docker.io/a/b",
            "UPPER/case",
            "localhost:5000/x",
        ]),
        0..6,
    )
}

proptest! {
    #[test]
    fn every_patch_applies_and_yields_a_valid_pod_without_duplicates(
        images in images(),
        existing in proptest::option::of(proptest::sample::subsequence(vec!["mine", "all-icr-io", "dockerhub", "other"], 0..4)),
        annotations in proptest::option::of(proptest::option::of("[a-z,-]{0,20}")),
        dry_run in any::<bool>(),
    ) {
        let (catalog, state) = setup();
        let annotations = annotations.map(|recorded| match recorded {
            Some(v) => json!({"x": "y", INJECTED_ANNOTATION: v}),
            None => json!({}),
        });
        let object = pod(&images, existing.as_deref(), annotations);
        let reviewed = review(&catalog, &state, &review_of("Pod", "pods", "CREATE", object.clone(), dry_run)).unwrap();
        prop_assert!(reviewed.response.allowed);
        let patched: Pod = serde_json::from_value(apply(&object, &reviewed.response)).unwrap();
        let names = pull_secret_names(&patched);
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), names.len(), "duplicates in {:?}", names);
        let before: Vec<String> = existing.unwrap_or_default().iter().map(|s| s.to_string()).collect();
        prop_assert_eq!(&names[..before.len()], &before[..]);
        if names.len() > before.len() {
            let recorded = patched.metadata.annotations.unwrap_or_default();
            let recorded = recorded.get(INJECTED_ANNOTATION).cloned().unwrap_or_default();
            for added in &names[before.len()..] {
                prop_assert!(recorded.split(',').any(|r| r == added));
            }
        }
    }

    #[test]
    fn every_service_account_patch_applies(
        existing in proptest::option::of(proptest::sample::subsequence(vec!["mine", "all-icr-io", "dockerhub"], 0..3)),
        name in proptest::sample::select(vec!["default", "builder"]),
    ) {
        let (catalog, state) = setup();
        let mut object = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": "team-a"}});
        if let Some(e) = &existing {
            object["imagePullSecrets"] = e.iter().map(|n| json!({"name": n})).collect();
        }
        let reviewed = review(&catalog, &state, &review_of("ServiceAccount", "serviceaccounts", "CREATE", object.clone(), false)).unwrap();
        let patched: ServiceAccount = serde_json::from_value(apply(&object, &reviewed.response)).unwrap();
        let names: Vec<String> = patched.image_pull_secrets.unwrap_or_default().into_iter().map(|r| r.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), names.len());
        if name == "default" {
            prop_assert!(names.contains(&"all-icr-io".to_string()) && names.contains(&"dockerhub".to_string()));
        } else {
            prop_assert!(reviewed.response.patch.is_none());
        }
    }

    #[test]
    fn review_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (catalog, state) = setup();
        let _ = review(&catalog, &state, &body);
    }
}
