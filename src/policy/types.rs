//! The decision's vocabulary: what is decided about (a [`Subject`]), what comes out (a
//! [`Decision`]: names to add, copies to make, [`Warning`]s), and the reports `check` prints.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::marks::{copy_annotations, copy_labels};
use crate::registry::dockerconfig::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DockerConfig,
};

/// Why a warning was raised; stable names for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WarningReason {
    /// An image reference could not be parsed.
    InvalidImage,
    /// A credential's source secret does not exist.
    SourceMissing,
    /// A source secret is not a valid pull secret.
    SourceInvalid,
    /// A source secret holds no entry the credential's `registries` select.
    SourceEmpty,
    /// A minted token has expired and no new one could be minted.
    TokenExpired,
    /// The copy's name is taken by a secret the injector does not manage.
    NameTaken,
    /// Two credentials want the same copy name with different content.
    CopyConflict,
    /// A local secret selected by `localSecretSelector` is not a valid pull secret.
    LocalSecretInvalid,
    /// The namespace is being deleted.
    NamespaceTerminating,
    /// The copy could not be made in time at admission; the reconciler retries it.
    CopyDeferred,
    /// The namespace is not (yet) known to the injector's view of the cluster.
    NamespaceUnknown,
    /// The registry rejects the credential; it is injected anyway (`verify.mode: warn`).
    CredentialRejected,
    /// The registry rejected the credential twice in a row; it is not injected for that
    /// registry (`verify.mode: skip`).
    CredentialWithheld,
}

impl WarningReason {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningReason::InvalidImage => "invalid_image",
            WarningReason::SourceMissing => "source_missing",
            WarningReason::SourceInvalid => "source_invalid",
            WarningReason::TokenExpired => "token_expired",
            WarningReason::SourceEmpty => "source_empty",
            WarningReason::NameTaken => "name_taken",
            WarningReason::CopyConflict => "copy_conflict",
            WarningReason::LocalSecretInvalid => "local_secret_invalid",
            WarningReason::NamespaceTerminating => "namespace_terminating",
            WarningReason::CopyDeferred => "copy_deferred",
            WarningReason::NamespaceUnknown => "namespace_unknown",
            WarningReason::CredentialRejected => "credential_rejected",
            WarningReason::CredentialWithheld => "credential_withheld",
        }
    }
}

/// Something a user should know: goes to the admission response, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Machine-readable cause.
    pub reason: WarningReason,
    /// Human-readable text naming the object and the cause; never secret data. This is what
    /// the user creating the object reads, so it names nothing of other namespaces.
    pub message: String,
    /// More for admins (`check`, logs), when the message holds back what a tenant must not
    /// read: which source secret, and what is wrong with it. Never secret data either.
    pub detail: Option<String>,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A namespace-independent problem of one credential, for logs, metrics and Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The credential.
    pub credential: String,
    /// What kind of problem.
    pub reason: WarningReason,
    /// The whole story, naming the source secret and the cause (never its data).
    pub message: String,
}

impl WarningReason {
    /// What a tenant is told about an unusable credential: the kind of problem, and nothing
    /// of where the admin keeps the credential.
    pub(super) fn tenant_text(self) -> &'static str {
        match self {
            WarningReason::SourceMissing => "its source secret does not exist",
            WarningReason::SourceInvalid => "its source secret is not a valid pull secret",
            WarningReason::TokenExpired => {
                "its registry token has expired and a new one cannot be minted now"
            }
            WarningReason::SourceEmpty => {
                "its source secret holds no entry for the registries it serves"
            }
            _ => "it cannot be used",
        }
    }
}

/// What the object being admitted is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// A Pod: image-based injection.
    Pod,
    /// A ServiceAccount: name-based injection.
    ServiceAccount,
}

/// The parts of a Pod or ServiceAccount the decision reads.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Pod or ServiceAccount.
    pub kind: SubjectKind,
    /// `metadata.name`; pods from controllers have none at admission.
    pub name: Option<&'a str>,
    /// Every image of init, regular and ephemeral containers (Pods only).
    pub images: Vec<&'a str>,
    /// Names already in `imagePullSecrets`, in order.
    pub existing: Vec<&'a str>,
    /// The object's labels (for the opt-out label).
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// The object's annotations (for the opt-out annotation and the injected record).
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

/// One credential applying to one image, for explanations (`check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchReport {
    /// The credential's name.
    pub credential: String,
    /// The secret name referenced in `imagePullSecrets`.
    pub secret: String,
    /// The auths key that matched, as written in the secret, with any userinfo masked.
    pub pattern: String,
}

/// What the decision found for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReport {
    /// The image as written in the pod.
    pub image: String,
    /// Its normalised registry (`docker.io`, `us.icr.io`), when it parses.
    pub registry: Option<String>,
    /// The credentials kubelet would use for it, most specific key first.
    pub matches: Vec<MatchReport>,
}

/// A copy that must exist in a namespace before the pod can pull.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    /// The target namespace.
    pub namespace: String,
    /// What to copy.
    pub source: Arc<PreparedSource>,
    /// True when a managed copy exists but holds older content.
    pub update: bool,
}

impl CopyRequest {
    /// The secret name in the target namespace.
    pub fn name(&self) -> &str {
        &self.source.copy_name
    }
}

/// The outcome for one object.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Secret names to append to `imagePullSecrets`, in config order.
    pub add: Vec<String>,
    /// The credentials behind `add`, in the same order and deduplicated (for metrics).
    pub credentials: Vec<String>,
    /// Copies to create or refresh (none on dry runs).
    pub copies: Vec<CopyRequest>,
    /// Problems worth telling the user.
    pub warnings: Vec<Warning>,
    /// Per image, what matched (Pods only).
    pub images: Vec<ImageReport>,
    /// Why the object was not considered at all, when it was not.
    pub skipped: Option<String>,
    /// Registries reached through glob keys (`*.icr.io`), as (credential, `host[:port]`):
    /// the concrete hosts a verifier probes for keys that name no single registry.
    pub glob_registries: Vec<(String, String)>,
}

impl Decision {
    /// Nothing to do: the namespace is not known to a view that holds every namespace.
    pub fn unknown_namespace(namespace: &str) -> Decision {
        Decision {
            skipped: Some(format!(
                "namespace {namespace} is not known to the injector"
            )),
            warnings: vec![Warning {
                reason: WarningReason::NamespaceUnknown,
                message: format!(
                    "pull-secret-injector: namespace {namespace} is not known to the injector yet; no pull secret injected"
                ),
                detail: None,
            }],
            ..Decision::default()
        }
    }
}

/// A source secret, filtered and ready to be copied or matched.
#[derive(Clone)]
pub struct PreparedSource {
    /// The credential it belongs to.
    pub credential: String,
    /// Namespace of the source secret.
    pub source_namespace: String,
    /// Name of the source secret.
    pub source_name: String,
    /// Name of the copy in target namespaces.
    pub copy_name: String,
    /// The selected entries only.
    pub content: DockerConfig,
    /// `content` serialised as `.dockerconfigjson`.
    pub data: Vec<u8>,
    /// Hash of `data`, written to the copy's content-hash annotation.
    pub hash: String,
    /// The source secret's resourceVersion when it was read (empty when unknown): a writer
    /// checks it against the API's before overwriting copies, so that a replica whose watch
    /// lags never writes older content over newer.
    pub source_version: String,
}

impl fmt::Debug for PreparedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedSource")
            .field("credential", &self.credential)
            .field(
                "source",
                &format_args!("{}/{}", self.source_namespace, self.source_name),
            )
            .field("copy_name", &self.copy_name)
            .field("keys", &self.content.keys().collect::<Vec<_>>())
            .field("hash", &self.hash)
            .finish()
    }
}

impl PreparedSource {
    /// `namespace/name` of the source secret.
    pub fn source_ref(&self) -> String {
        format!("{}/{}", self.source_namespace, self.source_name)
    }

    /// The copy as it must exist in `namespace`.
    pub fn copy_secret(&self, namespace: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.copy_name.clone()),
                namespace: Some(namespace.to_string()),
                labels: Some(copy_labels()),
                annotations: Some(copy_annotations(
                    &self.credential,
                    &self.source_ref(),
                    &self.hash,
                )),
                ..Default::default()
            },
            type_: Some(DOCKER_CONFIG_JSON_TYPE.to_string()),
            data: Some(BTreeMap::from([(
                DOCKER_CONFIG_JSON_KEY.to_string(),
                ByteString(self.data.clone()),
            )])),
            ..Default::default()
        }
    }
}
