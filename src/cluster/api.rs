//! What cluster mode says about its API calls: the actions it takes and the watches it keeps
//! (stable names for the metrics), and the errors of its writes, described by their status and
//! never by a request body.

use std::sync::Arc;
use std::time::Duration;

/// A call the injector makes outside its watches; the metric label of `api_writes` and
/// `reconcile_errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAction {
    /// A copy created in a namespace.
    CreateCopy,
    /// A copy brought to its source's content.
    UpdateCopy,
    /// A copy no rule wants, deleted (prune).
    DeleteCopy,
    /// A ServiceAccount read afresh before references are added.
    GetServiceAccount,
    /// References appended to a ServiceAccount.
    PatchServiceAccount,
    /// A source's metadata read, before its copies are overwritten.
    GetSource,
    /// A Warning Event on the config ConfigMap.
    CreateEvent,
}

impl ApiAction {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiAction::CreateCopy => "create_copy",
            ApiAction::UpdateCopy => "update_copy",
            ApiAction::DeleteCopy => "delete_copy",
            ApiAction::GetServiceAccount => "get_service_account",
            ApiAction::PatchServiceAccount => "patch_service_account",
            ApiAction::GetSource => "get_source",
            ApiAction::CreateEvent => "create_event",
        }
    }
}

/// One of the watches; the metric label of `watch_errors` and `watch_last_list_timestamp_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// All Namespaces.
    Namespaces,
    /// The injector's copies.
    Copies,
    /// ServiceAccounts named by `serviceAccounts`.
    ServiceAccounts,
    /// The config ConfigMap.
    Config,
    /// Source secrets (named, or selected in their namespace).
    Sources,
    /// Secrets a `localSecretSelector` selects.
    LocalSecrets,
}

impl WatchKind {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchKind::Namespaces => "namespaces",
            WatchKind::Copies => "copies",
            WatchKind::ServiceAccounts => "service_accounts",
            WatchKind::Config => "config",
            WatchKind::Sources => "sources",
            WatchKind::LocalSecrets => "local_secrets",
        }
    }
}

/// Describes an API error by its status, never by a request body.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!(
            "{} {}: {}",
            status.code,
            if status.reason.is_empty() {
                "Error"
            } else {
                status.reason.as_str()
            },
            status.message
        ),
        other => other.to_string(),
    }
}

/// The HTTP status of an API error, when the API answered.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Why a write did not happen now (it is tried again later).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The API refused or could not be reached.
    #[error("{}", describe(.0))]
    Api(#[source] Arc<kube::Error>),
    /// The object was gone when looked up after a conflict.
    #[error("secret {0} vanished meanwhile")]
    Vanished(String),
    /// Not done within the admission's budget (it carries on in the background).
    #[error("not done within {0:?}")]
    TimedOut(Duration),
    /// The task making it stopped abnormally.
    #[error("the copy task failed: {0}")]
    Task(String),
    /// Someone else kept changing the object between reading and patching it.
    #[error("kept changing while being patched ({attempts} attempts; last: {last})")]
    Contended {
        /// How many times it was read and patched.
        attempts: usize,
        /// The last conflict, described.
        last: String,
    },
}

impl WriteError {
    /// The API error, kept as the cause.
    pub fn api(e: kube::Error) -> Self {
        WriteError::Api(Arc::new(e))
    }

    /// Whether the API answered 403 Forbidden (a missing grant, usually).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, WriteError::Api(e) if status_code(e) == Some(403))
    }
}
