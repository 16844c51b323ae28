//! Writes to the API: copies (create, update, delete) and ServiceAccount references. Every
//! write is idempotent or conditional, so that several replicas can make the same one at once:
//! a create that finds the copy made by another replica adopts it, an update or delete carries
//! the resourceVersion it was computed from (a conflict means someone else was first, and the
//! next pass looks again), and ServiceAccounts get a strategic merge patch that adds by name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use tokio::sync::OnceCell;

use super::index::is_managed;
use super::{FIELD_MANAGER, Shared, lock};
use crate::admission::Pending;
use crate::dockerconfig::DOCKER_CONFIG_JSON_KEY;
use crate::policy::{
    CONTENT_HASH_ANNOTATION, CREDENTIAL_ANNOTATION, CopyRequest, INJECTED_ANNOTATION,
    PreparedSource, SOURCE_ANNOTATION, Warning, WarningReason,
};
use crate::server::CopyMaker;

/// How a copy stands after an attempt to make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Made {
    /// It exists and is ours (possibly with older content, which the reconciler updates).
    Ready,
    /// A secret the injector does not manage holds the name; it is left alone.
    Foreign,
    /// Another credential's copy holds the name.
    Conflict(String),
    /// Not made now (API error, terminating namespace); worth another try.
    Failed(String),
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

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// A copy by namespace and name.
type CopyKey = (String, String);

/// Makes copies, coalescing concurrent requests for the same one (a ReplicaSet's pods arrive
/// together and all need the same copy).
pub struct Writer {
    shared: Arc<Shared>,
    in_flight: Mutex<HashMap<CopyKey, Arc<OnceCell<Made>>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Writer {
            shared,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.shared.client.clone(), namespace)
    }

    /// Makes sure the copy exists; concurrent calls for one copy share one attempt.
    pub async fn ensure(&self, request: &CopyRequest) -> Made {
        let key = (request.namespace.clone(), request.name().to_string());
        let cell = lock(&self.in_flight)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let made = cell.get_or_init(|| self.create(request)).await.clone();
        let mut in_flight = lock(&self.in_flight);
        if in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(&key);
        }
        made
    }

    async fn create(&self, request: &CopyRequest) -> Made {
        let ns = &request.namespace;
        let name = request.name();
        if self.shared.index.read().copy(ns, name).is_some() {
            return Made::Ready;
        }
        self.shared.throttle().await;
        let params = PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.to_string()),
        };
        match self
            .secrets(ns)
            .create(&params, &request.source.copy_secret(ns))
            .await
        {
            Ok(created) => {
                self.shared.metrics.api_write("create_copy");
                self.shared.index.write().apply_copy(&created.metadata);
                tracing::info!(
                    namespace = %ns,
                    secret = %name,
                    credential = %request.source.credential,
                    "copy created"
                );
                Made::Ready
            }
            Err(e) if status_code(&e) == Some(409) => self.adopt(request).await,
            Err(e) => {
                self.shared.metrics.reconcile_error("create_copy");
                Made::Failed(describe(&e))
            }
        }
    }

    /// The name exists: ours (another replica was first), or someone else's.
    async fn adopt(&self, request: &CopyRequest) -> Made {
        let ns = &request.namespace;
        let name = request.name();
        self.shared.throttle().await;
        let existing = match self.secrets(ns).get_metadata_opt(name).await {
            Ok(Some(m)) => m,
            Ok(None) => return Made::Failed(format!("secret {ns}/{name} vanished meanwhile")),
            Err(e) => return Made::Failed(describe(&e)),
        };
        if !is_managed(&existing.metadata) {
            self.shared.index.write().mark_foreign(ns, name);
            tracing::warn!(
                namespace = %ns,
                secret = %name,
                credential = %request.source.credential,
                "a secret not managed by pull-secret-injector holds the copy's name; left alone"
            );
            return Made::Foreign;
        }
        let annotations = existing.metadata.annotations.clone().unwrap_or_default();
        let credential = annotations.get(CREDENTIAL_ANNOTATION).cloned();
        let ours = credential.as_deref() == Some(request.source.credential.as_str())
            && annotations.get(SOURCE_ANNOTATION).map(String::as_str)
                == Some(request.source.source_ref().as_str());
        let same_content = annotations.get(CONTENT_HASH_ANNOTATION).map(String::as_str)
            == Some(request.source.hash.as_str());
        self.shared.index.write().apply_copy(&existing.metadata);
        if ours || same_content {
            Made::Ready
        } else {
            Made::Conflict(credential.unwrap_or_else(|| "(unknown)".to_string()))
        }
    }

    /// Brings a copy to its source's content, if it is still the version the caller saw.
    /// A conflict is not an error: someone (another replica) changed it first.
    pub async fn update(
        &self,
        namespace: &str,
        source: &PreparedSource,
        resource_version: &str,
    ) -> Result<bool, String> {
        self.shared.throttle().await;
        let data = ByteString(source.data.clone());
        let patch = json!({
            "metadata": {
                "resourceVersion": resource_version,
                "annotations": {
                    CREDENTIAL_ANNOTATION: source.credential,
                    SOURCE_ANNOTATION: source.source_ref(),
                    CONTENT_HASH_ANNOTATION: source.hash,
                },
            },
            "data": { DOCKER_CONFIG_JSON_KEY: data },
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        match self
            .secrets(namespace)
            .patch(&source.copy_name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(updated) => {
                self.shared.metrics.api_write("update_copy");
                self.shared.index.write().apply_copy(&updated.metadata);
                Ok(true)
            }
            Err(e) if matches!(status_code(&e), Some(409) | Some(404)) => Ok(false),
            Err(e) => {
                self.shared.metrics.reconcile_error("update_copy");
                Err(describe(&e))
            }
        }
    }

    /// Deletes a copy no rule wants any more, if it is still the version the caller saw.
    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
        resource_version: &str,
    ) -> Result<bool, String> {
        self.shared.throttle().await;
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(resource_version.to_string()),
                uid: None,
            }),
            ..Default::default()
        };
        match self.secrets(namespace).delete(name, &params).await {
            Ok(_) => {
                self.shared.metrics.api_write("delete_copy");
                self.shared.index.write().delete_copy(namespace, name);
                Ok(true)
            }
            Err(e) if matches!(status_code(&e), Some(409) | Some(404)) => Ok(false),
            Err(e) => {
                self.shared.metrics.reconcile_error("delete_copy");
                Err(describe(&e))
            }
        }
    }

    /// Adds pull secret references to a ServiceAccount. A strategic merge patch merges
    /// `imagePullSecrets` by name: existing entries keep their order, nothing is removed, and
    /// two replicas adding the same name add it once.
    pub async fn add_references(
        &self,
        namespace: &str,
        service_account: &str,
        names: &[String],
        injected: &str,
    ) -> Result<(), String> {
        self.shared.throttle().await;
        let entries: Vec<_> = names.iter().map(|n| json!({ "name": n })).collect();
        let patch = json!({
            "metadata": { "annotations": { INJECTED_ANNOTATION: injected } },
            "imagePullSecrets": entries,
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), namespace);
        match api
            .patch(service_account, &params, &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {
                self.shared.metrics.api_write("patch_service_account");
                Ok(())
            }
            Err(e) => {
                self.shared.metrics.reconcile_error("patch_service_account");
                Err(describe(&e))
            }
        }
    }
}

/// Makes an admission's copies within `--copy-timeout`. A copy that is not made in time keeps
/// its name in the patch (kubelet retries the pull) and is left to the reconciler; a name held
/// by someone else's secret is withdrawn.
pub(crate) struct AdmissionCopier(pub(crate) Arc<Writer>);

impl CopyMaker for AdmissionCopier {
    fn make<'a>(&'a self, pending: &'a mut Pending) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let copies = pending.take_copies();
            let shared = &self.0.shared;
            let budget = shared.args.options.copy_timeout;
            let mut attempts = Vec::new();
            for request in copies {
                if request.update {
                    // The copy exists with older content and still serves pulls.
                    shared.triggers.sync();
                    continue;
                }
                let writer = self.0.clone();
                let r = request.clone();
                // Spawned so that an attempt outliving the budget still completes and lands
                // in the index rather than being cancelled half-way.
                let task = tokio::spawn(async move { writer.ensure(&r).await });
                attempts.push((request, task));
            }
            let deadline = tokio::time::Instant::now() + budget;
            for (request, task) in attempts {
                let made = match tokio::time::timeout_at(deadline, task).await {
                    Ok(Ok(made)) => made,
                    Ok(Err(e)) => Made::Failed(format!("copy task failed: {e}")),
                    Err(_) => Made::Failed(format!("not done within {budget:?}")),
                };
                settle(shared, pending, &request, made);
            }
        })
    }
}

fn settle(shared: &Shared, pending: &mut Pending, request: &CopyRequest, made: Made) {
    let ns = &request.namespace;
    let name = request.name();
    let credential = &request.source.credential;
    match made {
        Made::Ready => {}
        Made::Foreign => pending.withdraw(
            name,
            credential,
            Warning {
                reason: WarningReason::NameTaken,
                message: format!(
                    "pull-secret-injector: credential {credential}: secret {ns}/{name} exists and is not managed by pull-secret-injector; left alone, not injected"
                ),
            },
        ),
        Made::Conflict(other) => pending.withdraw(
            name,
            credential,
            Warning {
                reason: WarningReason::CopyConflict,
                message: format!(
                    "pull-secret-injector: credential {credential}: secret {ns}/{name} is a copy made for credential {other} with other content; not injected"
                ),
            },
        ),
        Made::Failed(reason) => {
            shared.triggers.defer(request.clone());
            tracing::warn!(
                namespace = %ns,
                secret = %name,
                credential = %credential,
                "copy not made at admission, left to the reconciler: {reason}"
            );
            pending.warn(Warning {
                reason: WarningReason::CopyDeferred,
                message: format!(
                    "pull-secret-injector: credential {credential}: secret {ns}/{name} is not created yet ({reason}); it will be retried, and kubelet retries the pull"
                ),
            });
        }
    }
}
