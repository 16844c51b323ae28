//! The reference the borrowing [`wire`](super::wire) reader is tested against: the same answer
//! computed from kube-core's own `AdmissionReview<DynamicObject>` parse (what the injector
//! used before the reader existed).

use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionReview, Operation};
use serde_json::Value;

use super::*;

/// `review` as it was.
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
    let has_metadata = has_metadata(body);
    let (response, outcome) = answer(catalog, view, &request, has_metadata);
    render(response, outcome)
}

/// Whether `request.object.metadata` is there: kube-core defaults it when missing. Read with
/// everything else ignored, as kube-core's own parse ignores it (a `Value` would also check
/// the UTF-8 of strings that parse skips).
fn has_metadata(body: &[u8]) -> bool {
    use serde::de::IgnoredAny;
    #[derive(serde::Deserialize)]
    struct Review {
        request: Option<Request>,
    }
    #[derive(serde::Deserialize)]
    struct Request {
        object: Option<Object>,
    }
    #[derive(serde::Deserialize)]
    struct Object {
        metadata: Option<IgnoredAny>,
    }
    serde_json::from_slice::<Review>(body)
        .ok()
        .and_then(|r| r.request?.object?.metadata)
        .is_some()
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
    has_metadata: bool,
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
        verdict: Verdict::Unchanged,
    };

    let kind = match (request.kind.group.as_str(), request.kind.kind.as_str()) {
        ("", "Pod") => SubjectKind::Pod,
        ("", "ServiceAccount") => SubjectKind::ServiceAccount,
        _ => return (response, outcome),
    };
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
    let annotations = object.metadata.annotations.as_ref();
    let ctx = PatchContext {
        kind,
        has_pull_secrets: fields.has_pull_secrets,
        // kube-core defaults a missing metadata: its presence is read from the body.
        has_metadata,
        has_annotations: annotations.is_some(),
        injected: annotations
            .and_then(|a| a.get(INJECTED_ANNOTATION))
            .cloned(),
    };
    let (response, mut outcome) = with_patch(response, outcome, decision, &ctx);
    if response.patch.is_some() {
        outcome.verdict = Verdict::Patched;
    }
    (response, outcome)
}

#[derive(Default)]
struct OwnedFields {
    images: Vec<String>,
    existing: Vec<String>,
    has_pull_secrets: bool,
}

fn read_object(kind: SubjectKind, data: &Value) -> Result<OwnedFields, String> {
    let mut fields = OwnedFields::default();
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
