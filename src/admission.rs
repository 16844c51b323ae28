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
                strip_values(&e.to_string()),
                e.line(),
                e.column()
            );
        }
    };
    format!("body {what} at line {} column {}", e.line(), e.column())
}

/// Keeps serde's structural message (`missing field `uid``, `expected a string`) and drops
/// quoted input values.
fn strip_values(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    match message.find(", expected") {
        Some(i) if message.starts_with("invalid") => format!("invalid value{}", &message[i..]),
        _ => message.to_string(),
    }
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
