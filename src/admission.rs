//! AdmissionReview v1 in, AdmissionReview v1 out: reads the object being created, asks the
//! decision, and turns its answer into a JSONPatch. Pure: no I/O.
//!
//! The response is always `allowed: true`: the injector mutates, it never blocks a pod.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde::Serialize;
use serde_json::Value;

use crate::marks::INJECTED_ANNOTATION;
use crate::policy::{Catalog, Decision, Subject, SubjectKind};
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
    decide(catalog, view, body)?.finish()
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
    pub fn finish(self) -> Result<Reviewed, ReviewError> {
        let Pending {
            response,
            mut outcome,
            patch,
        } = self;
        let (response, outcome) = match (patch, outcome.decision.take()) {
            (Some(ctx), Some(decision)) => finish(response, outcome, decision, &ctx),
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
        render(response, outcome)
    }
}

/// Parses an AdmissionReview request body and decides, without rendering the patch.
pub fn decide(
    catalog: &Catalog,
    view: &dyn ClusterView,
    body: &[u8],
) -> Result<Pending, ReviewError> {
    let parsed: wire::AdmissionReview = serde_json::from_slice(body)
        .map_err(|e| ReviewError::Malformed(describe_json_error(&e)))?;
    if parsed.api_version.as_str() != "admission.k8s.io/v1" {
        return Err(ReviewError::Version(
            parsed.api_version.as_str().to_string(),
        ));
    }
    let request = parsed.request.ok_or(ReviewError::NoRequest)?;
    Ok(answer(catalog, view, &request))
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

fn answer(
    catalog: &Catalog,
    view: &dyn ClusterView,
    request: &wire::AdmissionRequest<'_>,
) -> Pending {
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
            has_annotations: subject.annotations.is_some(),
            injected: subject
                .annotations
                .and_then(|a| a.get(INJECTED_ANNOTATION))
                .cloned(),
        }),
    }
}

/// Turns the decision into warnings and a patch.
fn finish(
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
        let patch = injection_patch(ctx, &decision.add);
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

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// The JSONPatch appending `names` to `imagePullSecrets` (creating the array when absent) and
/// recording them in the injected annotation (creating the annotations map when absent).
fn injection_patch(ctx: &PatchContext, names: &[String]) -> Patch {
    let list: &[&str] = match ctx.kind {
        SubjectKind::Pod => &["spec", "imagePullSecrets"],
        SubjectKind::ServiceAccount => &["imagePullSecrets"],
    };
    let entry = |n: &String| serde_json::json!({ "name": n });
    let mut ops = Vec::with_capacity(names.len() + 1);
    if ctx.has_pull_secrets {
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
    let mut recorded: Vec<&str> = ctx
        .injected
        .as_deref()
        .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    for n in names {
        if !recorded.contains(&n.as_str()) {
            recorded.push(n);
        }
    }
    let value = Value::String(recorded.join(","));
    if ctx.has_annotations {
        ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations", INJECTED_ANNOTATION]),
            value,
        ));
    } else {
        ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations"]),
            serde_json::json!({ INJECTED_ANNOTATION: value }),
        ));
    }
    Patch(ops)
}

/// The parts of an AdmissionReview the injector reads, borrowed from the body; everything else
/// is skipped by the parser (checked to be JSON, never built).
///
/// Review-level fields keep the strictness of kube-core's `AdmissionReview<DynamicObject>`,
/// which this replaces: a wrong type there is a malformed review. Inside the object, `metadata`
/// is strict as k8s-openapi's `ObjectMeta` was, while `spec` and `imagePullSecrets` are read
/// leniently, as `serde_json::Value` was: a wrong type is recorded for `read_object` to report
/// as a warning, and a repeated key keeps its last value.
mod wire {
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::Deserialize;

    use crate::marks::{INJECTED_ANNOTATION, OPT_OUT_KEY};
    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };

    /// A JSON string, borrowed from the body unless it had escapes to decode.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Str<'a>(Cow<'a, str>);

    impl Str<'_> {
        /// The decoded text.
        pub fn as_str(&self) -> &str {
            &self.0
        }
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct StrVisitor<'a>(PhantomData<Str<'a>>);
            impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
                type Value = Str<'a>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                    Ok(Str(Cow::Borrowed(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                    Ok(Str(Cow::Owned(v.to_owned())))
                }
                fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'a>, E> {
                    Ok(Str(Cow::Owned(v)))
                }
            }
            deserializer.deserialize_str(StrVisitor(PhantomData))
        }
    }

    // The type names below are kube-core's: serde's schema errors name them, and should read
    // as they did.

    /// The top level of an AdmissionReview request body.
    pub struct AdmissionReview<'a> {
        pub api_version: Str<'a>,
        pub request: Option<AdmissionRequest<'a>>,
    }

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "camelCase")]
    enum ReviewKey {
        ApiVersion,
        Kind,
        Request,
        #[serde(other)]
        Other,
    }

    // Written out rather than derived because a derived struct also accepts a JSON array
    // (`[1, 2, 3]` would be "expected a string"); kube-core's, being flattened, did not.
    impl<'de: 'a, 'a> Deserialize<'de> for AdmissionReview<'a> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct ReviewVisitor<'a>(PhantomData<AdmissionReview<'a>>);
            impl<'de: 'a, 'a> Visitor<'de> for ReviewVisitor<'a> {
                type Value = AdmissionReview<'a>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("struct AdmissionReview")
                }
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<AdmissionReview<'a>, A::Error> {
                    let mut api_version = None;
                    // Required to be a string, as kube-core required it, but not otherwise used.
                    let mut kind: Option<Str<'a>> = None;
                    let mut request = None;
                    while let Some(key) = map.next_key::<ReviewKey>()? {
                        match key {
                            ReviewKey::ApiVersion if api_version.is_some() => {
                                return Err(de::Error::duplicate_field("apiVersion"));
                            }
                            ReviewKey::ApiVersion => api_version = Some(map.next_value()?),
                            ReviewKey::Kind if kind.is_some() => {
                                return Err(de::Error::duplicate_field("kind"));
                            }
                            ReviewKey::Kind => kind = Some(map.next_value()?),
                            ReviewKey::Request if request.is_some() => {
                                return Err(de::Error::duplicate_field("request"));
                            }
                            ReviewKey::Request => request = Some(map.next_value()?),
                            ReviewKey::Other => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    let api_version =
                        api_version.ok_or_else(|| de::Error::missing_field("apiVersion"))?;
                    if kind.is_none() {
                        return Err(de::Error::missing_field("kind"));
                    }
                    Ok(AdmissionReview {
                        api_version,
                        request: request.flatten(),
                    })
                }
            }
            deserializer.deserialize_map(ReviewVisitor(PhantomData))
        }
    }

    /// `request`: what is needed to decide, ignoring `userInfo`, `oldObject`, `options` ...
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct AdmissionRequest<'a> {
        #[serde(borrow)]
        pub uid: Str<'a>,
        #[serde(borrow)]
        pub kind: GroupVersionKind<'a>,
        #[serde(borrow, default)]
        pub sub_resource: Option<Str<'a>>,
        #[serde(borrow, default)]
        pub name: Option<Str<'a>>,
        #[serde(borrow, default)]
        pub namespace: Option<Str<'a>>,
        pub operation: Operation,
        #[serde(default)]
        pub dry_run: Option<bool>,
        #[serde(borrow, default)]
        pub object: Option<Object<'a>>,
    }

    /// `request.kind`.
    #[derive(Deserialize)]
    pub struct GroupVersionKind<'a> {
        #[serde(borrow)]
        pub group: Str<'a>,
        /// Required, as kube-core required it, but not otherwise used.
        #[serde(borrow, rename = "version")]
        _version: Str<'a>,
        #[serde(borrow)]
        pub kind: Str<'a>,
    }

    /// `request.operation`. An operation a later Kubernetes adds is not a malformed review:
    /// it is answered like UPDATE or DELETE, allowed with no patch.
    #[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    pub enum Operation {
        Create,
        Update,
        Delete,
        Connect,
        #[serde(other)]
        Other,
    }

    impl Operation {
        /// The name kube-apiserver uses.
        pub fn name(self) -> &'static str {
            match self {
                Operation::Create => "CREATE",
                Operation::Update => "UPDATE",
                Operation::Delete => "DELETE",
                Operation::Connect => "CONNECT",
                // Never the value itself: it is unbounded (metric label) and untrusted (logs).
                Operation::Other => "OTHER",
            }
        }
    }

    /// `request.object`, a superset of what Pods and ServiceAccounts need, since its kind is
    /// only known from `request.kind`, which may come after it.
    #[derive(Debug, Default)]
    pub struct Object<'a> {
        pub metadata: Metadata<'a>,
        /// `None` when absent; Pods only.
        pub spec: Option<Spec<'a>>,
        /// Top level; ServiceAccounts only.
        pub image_pull_secrets: List<'a>,
    }

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "camelCase")]
    enum ObjectKey {
        Metadata,
        Spec,
        ImagePullSecrets,
        #[serde(other)]
        Other,
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Object<'a> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct ObjectVisitor<'a>(PhantomData<Object<'a>>);
            impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
                type Value = Object<'a>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("struct DynamicObject")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'a>, A::Error> {
                    let mut object = Object::default();
                    let mut seen_metadata = false;
                    while let Some(key) = map.next_key::<ObjectKey>()? {
                        match key {
                            // A typed field of DynamicObject: serde refused it twice.
                            ObjectKey::Metadata if seen_metadata => {
                                return Err(de::Error::duplicate_field("metadata"));
                            }
                            ObjectKey::Metadata => {
                                seen_metadata = true;
                                object.metadata = map.next_value()?;
                            }
                            ObjectKey::Spec => {
                                object.spec = Some(map.next_value_seed(Lenient(ExpectSpec))?);
                            }
                            ObjectKey::ImagePullSecrets => {
                                object.image_pull_secrets =
                                    map.next_value_seed(Lenient(ExpectList("name")))?;
                            }
                            ObjectKey::Other => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    Ok(object)
                }
            }
            deserializer.deserialize_map(ObjectVisitor(PhantomData))
        }
    }

    /// `metadata`: only what naming, opt-outs and the injected record need.
    #[derive(Debug, Default)]
    pub struct Metadata<'a> {
        pub name: Option<Str<'a>>,
        pub generate_name: Option<Str<'a>>,
        pub namespace: Option<Str<'a>>,
        /// Only the opt-out label: `Subject::labels` is documented to be read for nothing else.
        pub labels: Option<BTreeMap<String, String>>,
        /// Only the opt-out annotation and the injected record, which is all `Subject` and
        /// the patch read. `Some` whenever the object has annotations, since the patch differs.
        pub annotations: Option<BTreeMap<String, String>>,
    }

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "camelCase")]
    enum MetadataKey {
        Name,
        GenerateName,
        Namespace,
        Labels,
        Annotations,
        #[serde(other)]
        Other,
    }

    impl<'de: 'a, 'a> Deserialize<'de> for Metadata<'a> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct MetadataVisitor<'a>(PhantomData<Metadata<'a>>);
            impl<'de: 'a, 'a> Visitor<'de> for MetadataVisitor<'a> {
                type Value = Metadata<'a>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("ObjectMeta")
                }
                // k8s-openapi's ObjectMeta keeps the last of repeated keys: so does this.
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Metadata<'a>, A::Error> {
                    let mut meta = Metadata::default();
                    while let Some(key) = map.next_key::<MetadataKey>()? {
                        match key {
                            MetadataKey::Name => meta.name = map.next_value()?,
                            MetadataKey::GenerateName => meta.generate_name = map.next_value()?,
                            MetadataKey::Namespace => meta.namespace = map.next_value()?,
                            MetadataKey::Labels => {
                                meta.labels = map.next_value_seed(Picked(&[OPT_OUT_KEY]))?;
                            }
                            MetadataKey::Annotations => {
                                meta.annotations = map
                                    .next_value_seed(Picked(&[OPT_OUT_KEY, INJECTED_ANNOTATION]))?;
                            }
                            MetadataKey::Other => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    Ok(meta)
                }
            }
            deserializer.deserialize_map(MetadataVisitor(PhantomData))
        }
    }

    /// A string map (labels, annotations) keeping only the given keys: the others are checked
    /// to be strings, as a `BTreeMap<String, String>` would, but not copied. Pods often carry
    /// long annotations (`kubectl.kubernetes.io/last-applied-configuration`).
    struct Picked(&'static [&'static str]);

    impl<'de> DeserializeSeed<'de> for Picked {
        type Value = Option<BTreeMap<String, String>>;
        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_option(self)
        }
    }

    impl<'de> Visitor<'de> for Picked {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_map(self)
        }
        // Repeated keys: the last wins, as in a BTreeMap.
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut picked = BTreeMap::new();
            while let Some(key) = map.next_key::<Str>()? {
                let value: Str = map.next_value()?;
                if self.0.contains(&key.as_str()) {
                    picked.insert(key.as_str().to_string(), value.as_str().to_string());
                }
            }
            Ok(Some(picked))
        }
    }

    /// `spec`, as far as a Pod's pull secrets go.
    #[derive(Debug)]
    pub enum Spec<'a> {
        Fields(PodSpec<'a>),
        /// Not an object (including null).
        NotObject,
    }

    /// The image lists of a Pod and its `imagePullSecrets`.
    #[derive(Debug, Default)]
    pub struct PodSpec<'a> {
        pub init_containers: List<'a>,
        pub containers: List<'a>,
        pub ephemeral_containers: List<'a>,
        pub image_pull_secrets: List<'a>,
    }

    /// A list of objects of which one string field is read (`image`, `name`).
    #[derive(Debug, Default, PartialEq, Eq)]
    pub enum List<'a> {
        /// Absent or null.
        #[default]
        Absent,
        /// The field of every item that has it as a string, in order; items that are not
        /// objects, or lack the field, or have it null, contribute nothing.
        Items(Vec<Str<'a>>),
        /// Not an array.
        NotArray,
        /// The first item whose field is neither a string nor null.
        WrongItem(usize),
    }

    /// One value read with [`Lenient`]: what to make of each JSON type.
    trait Expect<'de>: Sized {
        type Out;
        /// `null`, which Kubernetes treats as absent.
        fn null(self) -> Self::Out;
        /// A value of another type, already skipped.
        fn wrong(self) -> Self::Out;
        fn string(self, _: Str<'de>) -> Self::Out {
            self.wrong()
        }
        fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Out, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(self.wrong())
        }
        fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Out, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(self.wrong())
        }
    }

    /// Reads a value of any JSON type without failing on the type: only invalid JSON is an
    /// error. A value of the wrong type is skipped without being built.
    struct Lenient<E>(E);

    impl<'de, E: Expect<'de>> DeserializeSeed<'de> for Lenient<E> {
        type Value = E::Out;
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<E::Out, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de, E: Expect<'de>> Visitor<'de> for Lenient<E> {
        type Value = E::Out;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_unit<Er: de::Error>(self) -> Result<E::Out, Er> {
            Ok(self.0.null())
        }
        fn visit_none<Er: de::Error>(self) -> Result<E::Out, Er> {
            Ok(self.0.null())
        }
        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<E::Out, D::Error> {
            deserializer.deserialize_any(self)
        }
        fn visit_bool<Er: de::Error>(self, _: bool) -> Result<E::Out, Er> {
            Ok(self.0.wrong())
        }
        fn visit_i64<Er: de::Error>(self, _: i64) -> Result<E::Out, Er> {
            Ok(self.0.wrong())
        }
        fn visit_u64<Er: de::Error>(self, _: u64) -> Result<E::Out, Er> {
            Ok(self.0.wrong())
        }
        fn visit_i128<Er: de::Error>(self, _: i128) -> Result<E::Out, Er> {
            Ok(self.0.wrong())
        }
        fn visit_u128<Er: de::Error>(self, _: u128) -> Result<E::Out, Er> {
            Ok(self.0.wrong())
        }
        fn visit_f64<Er: de::Error>(self, _: f64) -> Result<E::Out, Er> {
            Ok(self.0.wrong())
        }
        fn visit_borrowed_str<Er: de::Error>(self, v: &'de str) -> Result<E::Out, Er> {
            Ok(self.0.string(Str(Cow::Borrowed(v))))
        }
        fn visit_str<Er: de::Error>(self, v: &str) -> Result<E::Out, Er> {
            Ok(self.0.string(Str(Cow::Owned(v.to_owned()))))
        }
        fn visit_string<Er: de::Error>(self, v: String) -> Result<E::Out, Er> {
            Ok(self.0.string(Str(Cow::Owned(v))))
        }
        fn visit_bytes<Er: de::Error>(self, _: &[u8]) -> Result<E::Out, Er> {
            Ok(self.0.wrong())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<E::Out, A::Error> {
            self.0.seq(seq)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<E::Out, A::Error> {
            self.0.map(map)
        }
    }

    #[derive(Deserialize)]
    #[serde(field_identifier, rename_all = "camelCase")]
    enum SpecKey {
        InitContainers,
        Containers,
        EphemeralContainers,
        ImagePullSecrets,
        #[serde(other)]
        Other,
    }

    struct ExpectSpec;

    impl<'de> Expect<'de> for ExpectSpec {
        type Out = Spec<'de>;
        fn null(self) -> Spec<'de> {
            Spec::NotObject
        }
        fn wrong(self) -> Spec<'de> {
            Spec::NotObject
        }
        // A repeated key keeps its last value, as in a `serde_json::Value`.
        fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spec<'de>, A::Error> {
            let mut spec = PodSpec::default();
            while let Some(key) = map.next_key::<SpecKey>()? {
                let list = match key {
                    SpecKey::InitContainers => &mut spec.init_containers,
                    SpecKey::Containers => &mut spec.containers,
                    SpecKey::EphemeralContainers => &mut spec.ephemeral_containers,
                    SpecKey::ImagePullSecrets => {
                        spec.image_pull_secrets =
                            map.next_value_seed(Lenient(ExpectList("name")))?;
                        continue;
                    }
                    SpecKey::Other => {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                };
                *list = map.next_value_seed(Lenient(ExpectList("image")))?;
            }
            Ok(Spec::Fields(spec))
        }
    }

    /// A list of objects, reading the string field named here from each.
    struct ExpectList(&'static str);

    impl<'de> Expect<'de> for ExpectList {
        type Out = List<'de>;
        fn null(self) -> List<'de> {
            List::Absent
        }
        fn wrong(self) -> List<'de> {
            List::NotArray
        }
        fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<'de>, A::Error> {
            let mut values = Vec::new();
            let mut index = 0;
            while let Some(item) = seq.next_element_seed(Lenient(ExpectItem(self.0)))? {
                match item {
                    Field::Absent => {}
                    Field::Value(v) => values.push(v),
                    Field::Wrong => {
                        // The rest is still read, so that invalid JSON is refused as before.
                        while seq.next_element::<IgnoredAny>()?.is_some() {}
                        return Ok(List::WrongItem(index));
                    }
                }
                index += 1;
            }
            Ok(List::Items(values))
        }
    }

    /// One string field of a list item.
    enum Field<'a> {
        /// The item is not an object, or lacks the field, or has it null.
        Absent,
        Value(Str<'a>),
        Wrong,
    }

    /// A list item, of which only the field named here is read.
    struct ExpectItem(&'static str);

    impl<'de> Expect<'de> for ExpectItem {
        type Out = Field<'de>;
        fn null(self) -> Field<'de> {
            Field::Absent
        }
        fn wrong(self) -> Field<'de> {
            Field::Absent
        }
        // A repeated key keeps its last value, as in a `serde_json::Value`.
        fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
            let mut field = Field::Absent;
            while let Some(wanted) = map.next_key_seed(KeyIs(self.0))? {
                if wanted {
                    field = map.next_value_seed(Lenient(ExpectString))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(field)
        }
    }

    struct ExpectString;

    impl<'de> Expect<'de> for ExpectString {
        type Out = Field<'de>;
        fn null(self) -> Field<'de> {
            Field::Absent
        }
        fn wrong(self) -> Field<'de> {
            Field::Wrong
        }
        fn string(self, s: Str<'de>) -> Field<'de> {
            Field::Value(s)
        }
    }

    /// Whether a map key is the given name, compared without copying it.
    struct KeyIs(&'static str);

    impl<'de> DeserializeSeed<'de> for KeyIs {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
            deserializer.deserialize_identifier(self)
        }
    }

    impl<'de> Visitor<'de> for KeyIs {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a field name")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(v == self.0)
        }
    }
}

/// The parser this module used before: kube-core's `AdmissionReview<DynamicObject>`, which
/// builds the whole body. Kept to check that the borrowing parser answers the same.
#[cfg(test)]
mod reference {
    use kube_core::DynamicObject;
    use kube_core::admission::{AdmissionRequest, AdmissionReview, Operation};

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
        let (response, outcome) = answer(catalog, view, &request);
        render(response, outcome)
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
            has_annotations: annotations.is_some(),
            injected: annotations
                .and_then(|a| a.get(INJECTED_ANNOTATION))
                .cloned(),
        };
        finish(response, outcome, decision, &ctx)
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
                                    return Err(format!(
                                        "{prefix}{list}[{i}].image is not a string"
                                    ));
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
                    let config = crate::cli::load_config(&setup.join("config.yaml")).unwrap();
                    let state = crate::cli::load_cluster(&[setup.join("cluster")]).unwrap();
                    let catalog =
                        Catalog::build(config, &state, Some(crate::cli::DEFAULT_OWN_NAMESPACE));
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
        noisy["request"]["object"]["metadata"]["managedFields"] =
            json!([{"fieldsV1": {"f:spec": {}}}]);
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
}
