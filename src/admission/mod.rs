//! AdmissionReview v1 in, AdmissionReview v1 out, in four steps with one verb each:
//! [`read`] the body (the borrowing [`wire`] reader), [`decide`] what the object gets (asking
//! the policy), let cluster mode make the copies the decision needs (through the
//! [`ports::CopyMaker`] it implements), and [`Pending::render`] the response with its JSONPatch
//! ([`patch`]). Pure but for that port: no I/O here.
//!
//! The response is always `allowed: true`: the injector mutates, it never blocks a pod.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use json_patch::Patch;
use serde::Serialize;

use crate::marks::INJECTED_ANNOTATION;
use crate::policy::{Catalog, Decision, Subject, SubjectKind};
use crate::view::{ClusterView, NamespaceInfo};

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

/// How an admission request ended; stable names for the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answered with a patch.
    Patched,
    /// Answered, allowed without a patch.
    Unchanged,
    /// Answered before a config was served: allowed, no patch.
    NotReady,
    /// Refused with a 4xx: malformed review, wrong content type, too large, too slow.
    Rejected,
    /// Answered at once, allowed without a patch, because every slot stayed busy for half of
    /// kube-apiserver's timeout.
    Overloaded,
}

impl Verdict {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Patched => "patched",
            Verdict::Unchanged => "unchanged",
            Verdict::NotReady => "not_ready",
            Verdict::Rejected => "rejected",
            Verdict::Overloaded => "overloaded",
        }
    }
}

/// What was reviewed, decided and answered, for logs and metrics.
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
    /// How it was answered (set when rendered).
    pub verdict: Verdict,
}

impl Outcome {
    /// The kind as a metric label: `Pod`, `ServiceAccount`, or `other`.
    pub fn kind_label(&self) -> &'static str {
        match self.kind.as_str() {
            "Pod" => "Pod",
            "ServiceAccount" => "ServiceAccount",
            _ => "other",
        }
    }
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

/// Answers an AdmissionReview request body, with no copies made: [`read`], [`decide`],
/// [`Pending::render`] (what `review` prints, and what file mode serves).
pub fn review(
    catalog: &Catalog,
    view: &dyn ClusterView,
    body: &[u8],
) -> Result<Reviewed, ReviewError> {
    decide(catalog, view, &read(body)?).render()
}

/// An AdmissionReview request, read from (and borrowing) its body.
pub struct Request<'a>(wire::AdmissionRequest<'a>);

impl std::fmt::Debug for Request<'_> {
    /// The uid only: the object may hold anything.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("uid", &self.0.uid.as_str())
            .finish_non_exhaustive()
    }
}

impl Request<'_> {
    /// `request.uid`, borrowed from the body unless it had escapes.
    pub fn uid(&self) -> &str {
        self.0.uid.as_str()
    }
}

/// Reads an AdmissionReview v1 body; only the fields the decision uses are built.
pub fn read(body: &[u8]) -> Result<Request<'_>, ReviewError> {
    let parsed: wire::AdmissionReview = serde_json::from_slice(body)
        .map_err(|e| ReviewError::Malformed(describe_json_error(&e)))?;
    if parsed.api_version.as_str() != "admission.k8s.io/v1" {
        return Err(ReviewError::Version(
            parsed.api_version.as_str().to_string(),
        ));
    }
    parsed.request.map(Request).ok_or(ReviewError::NoRequest)
}

/// A decided review whose patch is not rendered yet: the server makes the copies the decision
/// asks for in between, and may drop names whose copy turned out impossible.
#[derive(Debug)]
pub struct Pending {
    response: Response,
    outcome: Outcome,
    patch: Option<PatchContext>,
}

/// What the patch needs to know about the object, owned so that the body can be released.
#[derive(Debug)]
struct PatchContext {
    kind: SubjectKind,
    has_pull_secrets: bool,
    has_metadata: bool,
    has_annotations: bool,
    injected: Option<String>,
}

impl Pending {
    /// The decision, when the object is one the injector mutates.
    pub fn decision(&self) -> Option<&Decision> {
        self.outcome.decision.as_ref()
    }

    /// The namespace, when nothing was decided because the view does not know it.
    pub fn unknown_namespace(&self) -> Option<String> {
        let decision = self.outcome.decision.as_ref()?;
        decision
            .warnings
            .iter()
            .any(|w| w.reason == crate::policy::WarningReason::NamespaceUnknown)
            .then(|| self.outcome.namespace.clone())
    }

    /// Takes the copies the decision asks for, leaving none behind.
    pub fn take_copies(&mut self) -> Vec<crate::policy::CopyRequest> {
        self.outcome
            .decision
            .as_mut()
            .map(|d| std::mem::take(&mut d.copies))
            .unwrap_or_default()
    }

    /// Withdraws a secret name from the patch (its copy cannot be made) and says why.
    pub fn withdraw(&mut self, name: &str, credential: &str, warning: crate::policy::Warning) {
        if let Some(d) = self.outcome.decision.as_mut() {
            if let Some(i) = d.add.iter().position(|n| n == name) {
                d.add.remove(i);
                // The metric counts injections: a credential with nothing left injected goes.
                if d.add.is_empty() {
                    d.credentials.clear();
                } else {
                    d.credentials.retain(|c| c != credential);
                }
            }
            d.warnings.push(warning);
        }
    }

    /// Adds a warning for the user (a copy that is late, say).
    pub fn warn(&mut self, warning: crate::policy::Warning) {
        if let Some(d) = self.outcome.decision.as_mut() {
            d.warnings.push(warning);
        }
    }

    /// Renders the patch and the AdmissionReview response.
    pub fn render(self) -> Result<Reviewed, ReviewError> {
        let Pending {
            response,
            mut outcome,
            patch,
        } = self;
        let (response, mut outcome) = match (patch, outcome.decision.take()) {
            (Some(ctx), Some(decision)) => with_patch(response, outcome, decision, &ctx),
            (None, Some(decision)) => {
                // Decided not to patch at all (an unknown namespace): only the warnings.
                let warnings = decision
                    .warnings
                    .iter()
                    .map(|w| w.message.clone())
                    .collect();
                outcome.decision = Some(decision);
                (with_warnings(response, warnings), outcome)
            }
            (_, None) => (response, outcome),
        };
        outcome.verdict = if response.patch.is_some() {
            Verdict::Patched
        } else {
            Verdict::Unchanged
        };
        render(response, outcome)
    }

    /// Renders the answer given while no config is served: allowed, no patch, and for the
    /// kinds the injector mutates a warning saying why nothing was injected.
    pub fn render_not_ready(self, reason: &str) -> Result<Reviewed, ReviewError> {
        let Pending {
            mut response,
            mut outcome,
            ..
        } = self;
        if outcome.kind_label() != "other" {
            response.warnings.push(format!(
                "pull-secret-injector is not ready ({reason}); no pull secrets injected"
            ));
        }
        outcome.decision = None;
        outcome.verdict = Verdict::NotReady;
        render(response, outcome)
    }

    /// Renders an answer without the decision, for a review that waited too long for a slot:
    /// allowed, no patch, and a warning that says what the pod may miss and what to do.
    pub fn render_overloaded(self, waited: std::time::Duration) -> Result<Reviewed, ReviewError> {
        let Pending {
            mut response,
            mut outcome,
            ..
        } = self;
        if outcome.kind_label() != "other" {
            response.warnings.push(format!(
                "pull-secret-injector was busy for {waited:?} and answered without injecting pull secrets; if this pod cannot pull its images, create it again"
            ));
        }
        outcome.decision = None;
        outcome.verdict = Verdict::Overloaded;
        render(response, outcome)
    }
}

/// Wraps the response in an AdmissionReview v1 body.
fn render(response: Response, outcome: Outcome) -> Result<Reviewed, ReviewError> {
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

/// Decides what the object of `request` gets, without rendering the patch: the server makes
/// the copies the decision asks for in between.
pub fn decide(catalog: &Catalog, view: &dyn ClusterView, request: &Request<'_>) -> Pending {
    let request = &request.0;
    let plain = |response, outcome| Pending {
        response,
        outcome,
        patch: None,
    };
    let response = Response::allow(request.uid.as_str());
    let object = request.object.as_ref();
    let meta = object.map(|o| &o.metadata);
    let name = match (
        meta.and_then(|m| m.name.as_ref()),
        meta.and_then(|m| m.generate_name.as_ref()),
    ) {
        (Some(name), _) => name.as_str().to_string(),
        (None, Some(generate)) => format!("{}*", generate.as_str()),
        (None, None) => request
            .name
            .as_ref()
            .map_or_else(String::new, |n| n.as_str().to_string()),
    };
    let namespace = request
        .namespace
        .as_ref()
        .or_else(|| meta.and_then(|m| m.namespace.as_ref()))
        .map_or_else(String::new, |n| n.as_str().to_string());
    let mut outcome = Outcome {
        kind: request.kind.kind.as_str().to_string(),
        operation: request.operation.name(),
        namespace,
        name,
        decision: None,
        object_error: None,
        verdict: Verdict::Unchanged,
    };

    let kind = match (request.kind.group.as_str(), request.kind.kind.as_str()) {
        ("", "Pod") => SubjectKind::Pod,
        ("", "ServiceAccount") => SubjectKind::ServiceAccount,
        _ => return plain(response, outcome),
    };
    // imagePullSecrets is immutable after creation, and subresources are not the object.
    if request.operation != wire::Operation::Create || request.sub_resource.is_some() {
        return plain(response, outcome);
    }
    let Some(object) = object else {
        outcome.object_error = Some("the request carries no object".to_string());
        return plain(response, outcome);
    };
    if outcome.namespace.is_empty() {
        outcome.object_error = Some("the request names no namespace".to_string());
        return plain(
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
    let fields = match read_object(kind, object) {
        Ok(f) => f,
        Err(why) => {
            let message = format!(
                "pull-secret-injector: cannot read {} {}/{}: {why}; nothing injected",
                outcome.kind, outcome.namespace, outcome.name
            );
            outcome.object_error = Some(why);
            return plain(with_warnings(response, vec![message]), outcome);
        }
    };
    let subject = Subject {
        kind,
        name: object.metadata.name.as_ref().map(wire::Str::as_str),
        images: fields.images,
        existing: fields.existing,
        labels: object.metadata.labels.as_ref(),
        annotations: object.metadata.annotations.as_ref(),
    };
    let unknown;
    let ns = match view.namespace(&outcome.namespace) {
        Some(ns) => ns,
        // The live view holds every namespace: a review for one it does not hold is forged,
        // or ahead of the Namespace watch by moments. Either way nothing is written for it;
        // ServiceAccounts are brought in line once the namespace is seen.
        None if view.lists_every_namespace() => {
            outcome.decision = Some(Decision::unknown_namespace(&outcome.namespace));
            return Pending {
                response,
                outcome,
                patch: None,
            };
        }
        None => {
            unknown = NamespaceInfo::named(&outcome.namespace);
            &unknown
        }
    };
    let decision = catalog.decide(&subject, ns, view, request.dry_run.unwrap_or(false));
    outcome.decision = Some(decision);
    Pending {
        response,
        outcome,
        patch: Some(PatchContext {
            kind,
            has_pull_secrets: fields.has_pull_secrets,
            has_metadata: object.has_metadata,
            has_annotations: subject.annotations.is_some(),
            injected: subject
                .annotations
                .and_then(|a| a.get(INJECTED_ANNOTATION))
                .cloned(),
        }),
    }
}

/// Turns the decision into warnings and a patch.
fn with_patch(
    response: Response,
    mut outcome: Outcome,
    decision: Decision,
    ctx: &PatchContext,
) -> (Response, Outcome) {
    let warnings: Vec<String> = decision
        .warnings
        .iter()
        .map(|w| w.message.clone())
        .collect();
    let mut response = with_warnings(response, warnings);
    if !decision.add.is_empty() {
        let patch = patch::injection_patch(ctx, &decision.add);
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

/// What the decision needs from the object, borrowed from the request body.
#[derive(Debug, Default)]
struct ObjectFields<'a> {
    images: Vec<&'a str>,
    existing: Vec<&'a str>,
    /// Whether `imagePullSecrets` is present as an array (so the patch appends to it).
    has_pull_secrets: bool,
}

/// The images and pull secrets of a Pod (under `spec`) or ServiceAccount (top level), or the
/// first field, in a fixed order, whose type is wrong: which one is reported must not depend
/// on the order of keys in the body.
fn read_object<'a>(
    kind: SubjectKind,
    object: &'a wire::Object<'_>,
) -> Result<ObjectFields<'a>, String> {
    let mut fields = ObjectFields::default();
    let (pull_secrets, prefix) = match kind {
        SubjectKind::Pod => {
            let spec = match &object.spec {
                Some(wire::Spec::Fields(spec)) => spec,
                Some(wire::Spec::NotObject) => return Err("spec is not an object".to_string()),
                None => return Err("the pod has no spec".to_string()),
            };
            for (name, list) in [
                ("initContainers", &spec.init_containers),
                ("containers", &spec.containers),
                ("ephemeralContainers", &spec.ephemeral_containers),
            ] {
                match list {
                    wire::List::Absent => {}
                    wire::List::Items(images) => {
                        fields.images.extend(images.iter().map(wire::Str::as_str));
                    }
                    wire::List::NotArray => return Err(format!("spec.{name} is not a list")),
                    wire::List::WrongItem(i) => {
                        return Err(format!("spec.{name}[{i}].image is not a string"));
                    }
                }
            }
            (&spec.image_pull_secrets, "spec.")
        }
        SubjectKind::ServiceAccount => (&object.image_pull_secrets, ""),
    };
    match pull_secrets {
        wire::List::Absent => {}
        wire::List::Items(names) => {
            fields.has_pull_secrets = true;
            fields.existing.extend(names.iter().map(wire::Str::as_str));
        }
        wire::List::NotArray => return Err(format!("{prefix}imagePullSecrets is not a list")),
        wire::List::WrongItem(i) => {
            return Err(format!(
                "{prefix}imagePullSecrets[{i}].name is not a string"
            ));
        }
    }
    Ok(fields)
}

mod patch;
pub mod ports;
pub mod repeat;
pub mod slot;
mod wire;

/// The parser this module used before: kube-core's `AdmissionReview<DynamicObject>`, which
/// builds the whole body. Kept to check that the borrowing parser answers the same.
#[cfg(any(test, feature = "fuzzing"))]
pub mod reference;

#[cfg(test)]
mod tests;
