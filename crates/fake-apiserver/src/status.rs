//! Errors in the shape kube-apiserver gives them (`metav1.Status`), since kube-rs and the webhook
//! under test branch on `code` and `reason`, and tests compare messages with real clusters'.

use serde_json::{Map, Value, json};

/// A failed request as the client sees it: the HTTP code, the Status `reason` and `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for Status {}

/// One entry of `details.causes` for a 422, in `field.Error` terms.
#[derive(Clone, Debug)]
pub(crate) enum FieldError {
    Required {
        field: String,
        detail: String,
    },
    Invalid {
        field: String,
        value: Value,
        detail: String,
    },
    Duplicate {
        field: String,
        value: Value,
    },
    NotSupported {
        field: String,
        value: Value,
        supported: Vec<String>,
    },
    Forbidden {
        field: String,
        detail: String,
    },
}

/// How `field.Error` prints a value: strings quoted, the rest as JSON.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

impl FieldError {
    pub fn required(field: &str, detail: &str) -> Self {
        FieldError::Required {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub fn invalid(field: &str, value: Value, detail: &str) -> Self {
        FieldError::Invalid {
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    pub fn duplicate(field: &str, value: Value) -> Self {
        FieldError::Duplicate {
            field: field.into(),
            value,
        }
    }

    pub fn not_supported(field: &str, value: Value, supported: &[&str]) -> Self {
        FieldError::NotSupported {
            field: field.into(),
            value,
            supported: supported.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        FieldError::Forbidden {
            field: field.into(),
            detail: detail.into(),
        }
    }

    fn field(&self) -> &str {
        match self {
            FieldError::Required { field, .. }
            | FieldError::Invalid { field, .. }
            | FieldError::Duplicate { field, .. }
            | FieldError::NotSupported { field, .. }
            | FieldError::Forbidden { field, .. } => field,
        }
    }

    /// The part after `field: `, as `field.Error.ErrorBody()` renders it.
    fn body(&self) -> String {
        match self {
            FieldError::Required { detail, .. } if detail.is_empty() => "Required value".into(),
            FieldError::Required { detail, .. } => format!("Required value: {detail}"),
            FieldError::Forbidden { detail, .. } if detail.is_empty() => "Forbidden".into(),
            FieldError::Forbidden { detail, .. } => format!("Forbidden: {detail}"),
            FieldError::Duplicate { value, .. } => format!("Duplicate value: {}", render(value)),
            FieldError::NotSupported {
                value, supported, ..
            } => {
                let supported: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
                format!(
                    "Unsupported value: {}: supported values: {}",
                    render(value),
                    supported.join(", ")
                )
            }
            FieldError::Invalid { value, detail, .. } => {
                let value = render(value);
                if detail.is_empty() {
                    format!("Invalid value: {value}")
                } else {
                    format!("Invalid value: {value}: {detail}")
                }
            }
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            FieldError::Required { .. } => "FieldValueRequired",
            FieldError::Invalid { .. } => "FieldValueInvalid",
            FieldError::Duplicate { .. } => "FieldValueDuplicate",
            FieldError::NotSupported { .. } => "FieldValueNotSupported",
            FieldError::Forbidden { .. } => "FieldValueForbidden",
        }
    }
}

/// `v1.NamespaceTerminatingCause`: the cause NamespaceLifecycle gives its refusal of new content
/// in a terminating namespace, by which the service account controller tells it from others.
pub(crate) const TERMINATING_CAUSE: &str = "NamespaceTerminating";

/// A failure inside the fake, with everything the Status body needs.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
}

impl Failure {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Failure {
            code,
            reason: reason.into(),
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// `details.name`/`details.group`/`details.kind`; kube leaves an empty name or group out.
    /// `kind` is a resource or kind qualified by its group (`resource.group`), as the message
    /// names it; neither resources nor kinds hold dots, so the first one splits off the group.
    pub fn with_details(mut self, name: &str, kind: &str) -> Self {
        let mut details = Map::new();
        if !name.is_empty() {
            details.insert("name".into(), json!(name));
        }
        let (kind, group) = kind.split_once('.').unwrap_or((kind, ""));
        if !group.is_empty() {
            details.insert("group".into(), json!(group));
        }
        if !kind.is_empty() {
            details.insert("kind".into(), json!(kind));
        }
        self.details = Some(Value::Object(details));
        self
    }

    pub fn not_found(resource: &str, name: &str) -> Self {
        Failure::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
            .with_details(name, resource)
    }

    pub fn already_exists(resource: &str, name: &str) -> Self {
        Failure::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .with_details(name, resource)
    }

    pub fn conflict(resource: &str, name: &str, why: &str) -> Self {
        Failure::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
        )
        .with_details(name, resource)
    }

    pub fn stale(resource: &str, name: &str) -> Self {
        Failure::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `admission.NewForbidden` / RBAC: a name-less request says `{resource} is forbidden`.
    pub fn forbidden(resource: &str, name: &str, why: &str) -> Self {
        let message = if name.is_empty() {
            format!("{resource} is forbidden: {why}")
        } else {
            format!("{resource} \"{name}\" is forbidden: {why}")
        };
        Failure::new(403, "Forbidden", message).with_details(name, resource)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(400, "BadRequest", message)
    }

    pub fn invalid(kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let rendered: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field(), e.body()))
            .collect();
        let joined = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason(), "message": e.body(), "field": e.field()}))
            .collect();
        let mut failure = Failure::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {joined}"),
        )
        .with_details(name, kind);
        if let Some(Value::Object(details)) = failure.details.as_mut() {
            details.insert("causes".into(), Value::Array(causes));
        }
        failure
    }

    pub fn internal(message: &str) -> Self {
        Failure {
            details: Some(json!({"causes": [{"message": message}]})),
            ..Failure::new(
                500,
                "InternalError",
                format!("Internal error occurred: {message}"),
            )
        }
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Failure::new(410, "Expired", message)
    }

    pub fn unauthorized() -> Self {
        Failure::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed() -> Self {
        Failure::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn no_such_path() -> Self {
        Failure::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_empty_details()
    }

    fn with_empty_details(mut self) -> Self {
        self.details = Some(json!({}));
        self
    }

    /// What an injected fault answers: the reason and message kube-apiserver uses for the code.
    pub fn injected(code: u16) -> Self {
        match code {
            400 => Failure::bad_request("injected fault"),
            401 => Failure::unauthorized(),
            403 => Failure::new(403, "Forbidden", "injected fault: forbidden"),
            404 => Failure::no_such_path(),
            409 => Failure::new(409, "Conflict", "injected fault: conflict"),
            410 => Failure::expired("injected fault: expired"),
            429 => Failure {
                details: Some(
                    json!({"causes": [{"reason": "", "message": "injected fault"}], "retryAfterSeconds": 1}),
                ),
                retry_after: Some(1),
                ..Failure::new(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                )
            },
            500 => Failure::internal("injected fault"),
            503 => Failure {
                retry_after: Some(1),
                ..Failure::new(
                    503,
                    "ServiceUnavailable",
                    "The server is currently unable to handle the request (injected fault)",
                )
            },
            504 => Failure::new(504, "Timeout", "Timeout: injected fault"),
            other => Failure::new(other, "", format!("injected fault {other}")),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut status = Map::new();
        status.insert("kind".into(), json!("Status"));
        status.insert("apiVersion".into(), json!("v1"));
        status.insert("metadata".into(), json!({}));
        status.insert("status".into(), json!("Failure"));
        status.insert("message".into(), json!(self.message));
        if !self.reason.is_empty() {
            status.insert("reason".into(), json!(self.reason));
        }
        if let Some(details) = &self.details {
            status.insert("details".into(), details.clone());
        }
        status.insert("code".into(), json!(self.code));
        Value::Object(status)
    }

    pub fn to_status(&self) -> Status {
        Status {
            code: self.code,
            reason: self.reason.clone(),
            message: self.message.clone(),
        }
    }
}
