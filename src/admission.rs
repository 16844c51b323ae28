//! AdmissionReview v1 in, AdmissionReview v1 out: reads the object being created, asks the
//! decision, and turns its answer into a JSONPatch. Pure: no I/O.
//!
//! The response is always `allowed: true`: the injector mutates, it never blocks a pod.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionReview, Operation};
use serde::Serialize;
use serde_json::Value;

use crate::policy::{Catalog, Decision, INJECTED_ANNOTATION, Subject, SubjectKind};
use crate::state::{ClusterView, NamespaceInfo};

/// Why a request body is not an AdmissionReview the injector can answer (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// The body is not JSON, or not an AdmissionReview.
    #[error("malformed AdmissionReview: {0}")]
    Malformed(String),
    /// The review has no `request`.
    #[error("malformed AdmissionReview: it has no request")]
    NoRequest,
    /// Not `admission.k8s.io/v1`.
    #[error("unsupported AdmissionReview apiVersion {0:?}: only admission.k8s.io/v1 is served")]
    Version(String),
}

/// What was reviewed and decided, for logs and metrics.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `Pod`, `ServiceAccount` or whatever kind arrived.
    pub kind: String,
    /// `CREATE`, `UPDATE`, ...
    pub operation: &'static str,
    /// The request's namespace, or `""`.
    pub namespace: String,
    /// The object's name, `generateName*` when it has none yet, or `""`.
    pub name: String,
    /// The decision, when the object was one the injector mutates.
    pub decision: Option<Decision>,
    /// Set when the object itself could not be read.
    pub object_error: Option<String>,
}

/// The AdmissionResponse we send.
///
/// kube-core's `AdmissionResponse` serialises `patch` as an array of numbers
/// (kube-rs/kube#1781), which kube-apiserver rejects: it wants base64, as Go encodes `[]byte`.
/// So responses are rendered here.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// Copied from the request.
    pub uid: String,
    /// Always true: the injector never blocks.
    pub allowed: bool,
    /// The JSONPatch, base64-encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// `JSONPatch` when there is a patch; kube-apiserver rejects a type without a patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Shown to `kubectl` users.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Response {
    fn allow(uid: &str) -> Self {
        Response {
            uid: uid.to_string(),
            allowed: true,
            patch: None,
            patch_type: None,
            warnings: Vec::new(),
        }
    }

    /// The JSONPatch, decoded (None when the object is left unchanged).
    pub fn decoded_patch(&self) -> Option<Patch> {
        let bytes = STANDARD.decode(self.patch.as_deref()?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: &'a Response,
}

/// A serialised AdmissionReview response and what led to it.
#[derive(Debug, Clone)]
pub struct Reviewed {
    /// The AdmissionReview v1 response body.
    pub body: Vec<u8>,
    /// The response inside it.
    pub response: Response,
    /// What happened.
    pub outcome: Outcome,
}

/// Answers an AdmissionReview request body.
pub fn review(
    catalog: &Catalog,
    view: &dyn ClusterView,
    body: &[u8],
) -> Result<Reviewed, ReviewError> {
    let parsed: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
        .map_err(|e| ReviewError::Malformed(describe_json_error(&e)))?;
    if parsed.types.api_version != "admission.k8s.io/v1" {
        return Err(ReviewError::Version(parsed.types.api_version));
    }
    let request = parsed.request.ok_or(ReviewError::NoRequest)?;
    let (response, outcome) = answer(catalog, view, &request);
    let body = serde_json::to_vec(&ResponseReview {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: &response,
    })
    .map_err(|e| ReviewError::Malformed(e.to_string()))?;
    Ok(Reviewed {
        body,
        response,
        outcome,
    })
}

/// serde_json's position and category, never the offending text (a body may hold secrets).
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "could not be read",
        Category::Syntax => "is not valid JSON",
        Category::Eof => "ends too early",
        Category::Data => {
            return format!(
                "does not fit the AdmissionReview schema ({}) at line {} column {}",
                crate::redact::serde_message(&e.to_string()),
                e.line(),
                e.column()
            );
        }
    };
    format!("body {what} at line {} column {}", e.line(), e.column())
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

fn answer(
    catalog: &Catalog,
    view: &dyn ClusterView,
    request: &AdmissionRequest<DynamicObject>,
) -> (Response, Outcome) {
    let response = Response::allow(&request.uid);
    let object = request.object.as_ref();
    let meta = object.map(|o| &o.metadata);
    let name = meta
        .and_then(|m| m.name.clone())
        .or_else(|| meta.and_then(|m| m.generate_name.as_ref().map(|g| format!("{g}*"))))
        .unwrap_or_else(|| request.name.clone());
    let namespace = request
        .namespace
        .clone()
        .or_else(|| meta.and_then(|m| m.namespace.clone()))
        .unwrap_or_default();
    let mut outcome = Outcome {
        kind: request.kind.kind.clone(),
        operation: operation_name(&request.operation),
        namespace,
        name,
        decision: None,
        object_error: None,
    };

    let kind = match (request.kind.group.as_str(), request.kind.kind.as_str()) {
        ("", "Pod") => SubjectKind::Pod,
        ("", "ServiceAccount") => SubjectKind::ServiceAccount,
        _ => return (response, outcome),
    };
    // imagePullSecrets is immutable after creation, and subresources are not the object.
    if request.operation != Operation::Create || request.sub_resource.is_some() {
        return (response, outcome);
    }
    let Some(object) = object else {
        outcome.object_error = Some("the request carries no object".to_string());
        return (response, outcome);
    };
    if outcome.namespace.is_empty() {
        outcome.object_error = Some("the request names no namespace".to_string());
        return (
            with_warnings(
                response,
                vec![
                    "pull-secret-injector: the request names no namespace; nothing injected"
                        .to_string(),
                ],
            ),
            outcome,
        );
    }
    let fields = match read_object(kind, &object.data) {
        Ok(f) => f,
        Err(why) => {
            let message = format!(
                "pull-secret-injector: cannot read {} {}/{}: {why}; nothing injected",
                outcome.kind, outcome.namespace, outcome.name
            );
            outcome.object_error = Some(why);
            return (with_warnings(response, vec![message]), outcome);
        }
    };
    let subject = Subject {
        kind,
        name: object.metadata.name.as_deref(),
        images: fields.images.iter().map(String::as_str).collect(),
        existing: fields.existing.iter().map(String::as_str).collect(),
        labels: object.metadata.labels.as_ref(),
        annotations: object.metadata.annotations.as_ref(),
    };
    let unknown;
    let ns = match view.namespace(&outcome.namespace) {
        Some(ns) => ns,
        None => {
            unknown = NamespaceInfo::named(&outcome.namespace);
            &unknown
        }
    };
    let decision = catalog.decide(&subject, ns, view, request.dry_run);
    let warnings: Vec<String> = decision
        .warnings
        .iter()
        .map(|w| w.message.clone())
        .collect();
    let mut response = with_warnings(response, warnings);
    if !decision.add.is_empty() {
        let patch = injection_patch(
            kind,
            &fields,
            object.metadata.annotations.as_ref(),
            &decision.add,
        );
        match serde_json::to_vec(&patch) {
            Ok(bytes) => {
                response.patch = Some(STANDARD.encode(bytes));
                response.patch_type = Some("JSONPatch");
            }
            Err(e) => outcome.object_error = Some(format!("cannot serialise the patch: {e}")),
        }
    }
    outcome.decision = Some(decision);
    (response, outcome)
}

fn with_warnings(mut response: Response, warnings: Vec<String>) -> Response {
    response.warnings.extend(warnings);
    response
}

/// What the decision needs from the object, read without deserialising a whole Pod.
#[derive(Debug, Default)]
struct ObjectFields {
    images: Vec<String>,
    existing: Vec<String>,
    /// Whether `imagePullSecrets` is present as an array (so the patch appends to it).
    has_pull_secrets: bool,
}

fn read_object(kind: SubjectKind, data: &Value) -> Result<ObjectFields, String> {
    let mut fields = ObjectFields::default();
    let (holder, prefix) = match kind {
        SubjectKind::Pod => match data.get("spec") {
            Some(spec @ Value::Object(_)) => (spec, "spec."),
            Some(_) => return Err("spec is not an object".to_string()),
            None => return Err("the pod has no spec".to_string()),
        },
        SubjectKind::ServiceAccount => (data, ""),
    };
    if kind == SubjectKind::Pod {
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            match holder.get(list) {
                None | Some(Value::Null) => {}
                Some(Value::Array(containers)) => {
                    for (i, c) in containers.iter().enumerate() {
                        match c.get("image") {
                            None | Some(Value::Null) => {}
                            Some(Value::String(image)) => fields.images.push(image.clone()),
                            Some(_) => {
                                return Err(format!("{prefix}{list}[{i}].image is not a string"));
                            }
                        }
                    }
                }
                Some(_) => return Err(format!("{prefix}{list} is not a list")),
            }
        }
    }
    match holder.get("imagePullSecrets") {
        None | Some(Value::Null) => {}
        Some(Value::Array(refs)) => {
            fields.has_pull_secrets = true;
            for (i, r) in refs.iter().enumerate() {
                match r.get("name") {
                    Some(Value::String(n)) => fields.existing.push(n.clone()),
                    None | Some(Value::Null) => {}
                    Some(_) => {
                        return Err(format!(
                            "{prefix}imagePullSecrets[{i}].name is not a string"
                        ));
                    }
                }
            }
        }
        Some(_) => return Err(format!("{prefix}imagePullSecrets is not a list")),
    }
    Ok(fields)
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// The JSONPatch appending `names` to `imagePullSecrets` (creating the array when absent) and
/// recording them in the injected annotation (creating the annotations map when absent).
fn injection_patch(
    kind: SubjectKind,
    fields: &ObjectFields,
    annotations: Option<&BTreeMap<String, String>>,
    names: &[String],
) -> Patch {
    let list: &[&str] = match kind {
        SubjectKind::Pod => &["spec", "imagePullSecrets"],
        SubjectKind::ServiceAccount => &["imagePullSecrets"],
    };
    let entry = |n: &String| serde_json::json!({ "name": n });
    let mut ops = Vec::with_capacity(names.len() + 1);
    if fields.has_pull_secrets {
        for n in names {
            let mut path = PointerBuf::from_tokens(list.iter().copied());
            path.push_back("-");
            ops.push(add(path, entry(n)));
        }
    } else {
        ops.push(add(
            PointerBuf::from_tokens(list.iter().copied()),
            Value::Array(names.iter().map(entry).collect()),
        ));
    }
    // Reinvocation can add more names later: keep the record cumulative.
    let mut recorded: Vec<&str> = annotations
        .and_then(|a| a.get(INJECTED_ANNOTATION))
        .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    for n in names {
        if !recorded.contains(&n.as_str()) {
            recorded.push(n);
        }
    }
    let value = Value::String(recorded.join(","));
    match annotations {
        Some(_) => ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations", INJECTED_ANNOTATION]),
            value,
        )),
        None => ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations"]),
            serde_json::json!({ INJECTED_ANNOTATION: value }),
        )),
    }
    Patch(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::ClusterState;
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
        let ops: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(patch).unwrap()).unwrap();
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
}
