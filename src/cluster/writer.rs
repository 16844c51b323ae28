//! Writes to the API: copies (create, update, delete) and ServiceAccount references. Every
//! write is idempotent or conditional, so that several replicas can make the same one at once:
//! a create that finds the copy made by another replica adopts it, an update or delete carries
//! the resourceVersion it was computed from (a conflict means someone else was first, and the
//! next pass looks again), and a ServiceAccount gets a JSON patch that appends the missing
//! names, guarded by a `test` of the resourceVersion it was computed from.
//!
//! Never a strategic merge or an apply for `imagePullSecrets` on a ServiceAccount: that list
//! has no patch merge key in the Go type (`ServiceAccount.ImagePullSecrets` is
//! `+listType=atomic` in k8s.io/api `core/v1/types.go`), so kube-apiserver replaces the whole
//! list with the patch's, dropping every name the patch does not repeat (OpenShift's
//! `*-dockercfg-*` among them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, TestOperation};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::api::{ApiAction, WriteError, describe, status_code};
use super::{FIELD_MANAGER, Shared};
use crate::admission::Pending;
use crate::admission::ports::CopyMaker;
use crate::lock::lock;
use crate::marks::{CopyMarks, INJECTED_ANNOTATION, copy_annotations, injected_names, is_managed};
use crate::policy::{CopyRequest, PreparedSource, Warning, WarningReason};
use crate::registry::dockerconfig::DOCKER_CONFIG_JSON_KEY;

/// Whose rate budget a write spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// An admission waits for it.
    Admission,
    /// The reconciler's background work.
    Reconciler,
}

/// How often a ServiceAccount patch is computed afresh after losing a race to another writer.
const PATCH_ATTEMPTS: usize = 5;

/// How a copy stands after an attempt to make it.
#[derive(Debug, Clone)]
pub enum Made {
    /// It exists and is ours (possibly with older content, which the reconciler updates).
    Ready,
    /// A secret the injector does not manage holds the name; it is left alone.
    Foreign,
    /// Another credential's copy holds the name.
    Conflict(String),
    /// Not made now (API error, timeout); worth another try.
    Failed(WriteError),
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
    pub async fn ensure(&self, request: &CopyRequest, budget: Budget) -> Made {
        let key = (request.namespace.clone(), request.name().to_string());
        let cell = lock(&self.in_flight)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let made = cell
            .get_or_init(|| self.create(request, budget))
            .await
            .clone();
        let mut in_flight = lock(&self.in_flight);
        if in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(&key);
        }
        made
    }

    async fn throttle(&self, budget: Budget) {
        match budget {
            Budget::Admission => self.shared.throttle_admission().await,
            Budget::Reconciler => self.shared.throttle().await,
        }
    }

    async fn create(&self, request: &CopyRequest, budget: Budget) -> Made {
        let ns = &request.namespace;
        let name = request.name();
        // A copy already indexed under the name is ready only if it is this source's (or holds
        // its content): another credential's copy is not referenced in its place.
        if let Some(existing) = self.shared.index.read().copy(ns, name) {
            let ours = existing.credential == request.source.credential
                && existing.source == request.source.source_ref();
            return if ours || existing.data_hash == Some(request.source.hash.as_str()) {
                Made::Ready
            } else {
                Made::Conflict(existing.credential.to_string())
            };
        }
        self.throttle(budget).await;
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
                self.shared
                    .metrics
                    .api_write(ApiAction::CreateCopy.as_str());
                self.shared.index.write().apply_copy(&created);
                tracing::info!(
                    namespace = %ns,
                    secret = %name,
                    credential = %request.source.credential,
                    "copy created"
                );
                Made::Ready
            }
            Err(e) if status_code(&e) == Some(409) => self.adopt(request, budget).await,
            Err(e) => {
                self.shared
                    .metrics
                    .reconcile_error(ApiAction::CreateCopy.as_str());
                Made::Failed(WriteError::api(e))
            }
        }
    }

    /// The name exists: ours (another replica was first), or someone else's. A labelled
    /// Secret whose marks the config does not account for is someone else's too: the label
    /// alone is something any tenant can write.
    async fn adopt(&self, request: &CopyRequest, budget: Budget) -> Made {
        let ns = &request.namespace;
        let name = request.name();
        self.throttle(budget).await;
        let existing = match self.secrets(ns).get_opt(name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.shared
                    .metrics
                    .reconcile_error(ApiAction::CreateCopy.as_str());
                return Made::Failed(WriteError::Vanished(format!("{ns}/{name}")));
            }
            Err(e) => {
                self.shared
                    .metrics
                    .reconcile_error(ApiAction::CreateCopy.as_str());
                return Made::Failed(WriteError::api(e));
            }
        };
        let admitted = self.shared.index.write().apply_copy(&existing);
        let marks = CopyMarks::read(&existing.metadata).filter(|_| admitted);
        let Some(marks) = marks else {
            self.shared.index.write().mark_foreign(ns, name);
            tracing::warn!(
                namespace = %ns,
                secret = %name,
                credential = %request.source.credential,
                labelled = is_managed(&existing.metadata),
                "a secret that is not a copy made by pull-secret-injector holds the copy's name; left alone"
            );
            return Made::Foreign;
        };
        let ours = marks.credential == request.source.credential
            && marks.source == request.source.source_ref();
        let same_content = existing
            .data
            .as_ref()
            .and_then(|d| d.get(DOCKER_CONFIG_JSON_KEY))
            .is_some_and(|d| {
                crate::registry::dockerconfig::content_hash_of(&d.0) == request.source.hash
            });
        if ours || same_content {
            Made::Ready
        } else {
            Made::Conflict(marks.credential.to_string())
        }
    }

    /// Brings a copy to its source's content, if it is still the version the caller saw.
    /// A conflict is not an error: someone (another replica) changed it first.
    pub async fn update(
        &self,
        namespace: &str,
        source: &PreparedSource,
        resource_version: &str,
    ) -> Result<bool, WriteError> {
        self.shared.throttle().await;
        let data = ByteString(source.data.clone());
        let patch = json!({
            "metadata": {
                "resourceVersion": resource_version,
                "annotations": copy_annotations(&source.credential, &source.source_ref(), &source.hash),
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
                self.shared
                    .metrics
                    .api_write(ApiAction::UpdateCopy.as_str());
                self.shared.index.write().apply_copy(&updated);
                Ok(true)
            }
            Err(e) if matches!(status_code(&e), Some(409) | Some(404)) => Ok(false),
            Err(e) => {
                self.shared
                    .metrics
                    .reconcile_error(ApiAction::UpdateCopy.as_str());
                Err(WriteError::api(e))
            }
        }
    }

    /// Deletes a copy no rule wants any more, if it is still the version the caller saw.
    pub async fn delete(
        &self,
        namespace: &str,
        name: &str,
        resource_version: &str,
    ) -> Result<bool, WriteError> {
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
                self.shared
                    .metrics
                    .api_write(ApiAction::DeleteCopy.as_str());
                self.shared.index.write().delete_copy(namespace, name);
                Ok(true)
            }
            Err(e) if matches!(status_code(&e), Some(409) | Some(404)) => Ok(false),
            Err(e) => {
                self.shared
                    .metrics
                    .reconcile_error(ApiAction::DeleteCopy.as_str());
                Err(WriteError::api(e))
            }
        }
    }

    /// Adds to a ServiceAccount those of `names` it lacks, leaving every existing entry and
    /// its place as it is, and not adding back a name the injector added once and someone
    /// removed since (backfill adds what is missing; it does not fight other writers). The
    /// ServiceAccount is read afresh and patched on the condition that it is still that
    /// version; a lost race reads it again. Returns the names added.
    pub async fn add_references(
        &self,
        namespace: &str,
        service_account: &str,
        names: &[String],
    ) -> Result<Vec<String>, WriteError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let mut last_conflict = String::new();
        for _ in 0..PATCH_ATTEMPTS {
            self.shared.throttle().await;
            let current = match api.get_opt(service_account).await {
                Ok(Some(sa)) => sa,
                Ok(None) => return Ok(Vec::new()),
                Err(e) => {
                    self.shared
                        .metrics
                        .reconcile_error(ApiAction::GetServiceAccount.as_str());
                    return Err(WriteError::api(e));
                }
            };
            let Some(patch) = reference_patch(&current, names) else {
                return Ok(Vec::new());
            };
            self.shared.throttle().await;
            match api
                .patch(service_account, &params, &Patch::Json::<()>(patch.patch))
                .await
            {
                Ok(_) => {
                    // The ServiceAccounts watch reports the change; a pass that looks again
                    // before it does reads the API and finds nothing to add.
                    self.shared
                        .metrics
                        .api_write(ApiAction::PatchServiceAccount.as_str());
                    return Ok(patch.added);
                }
                // 422: the `test` failed (kube answers a failed JSON patch test so); 409: a
                // conflict. Either way someone else wrote in between: look again.
                Err(e) if matches!(status_code(&e), Some(409) | Some(422)) => {
                    last_conflict = describe(&e);
                }
                Err(e) if status_code(&e) == Some(404) => return Ok(Vec::new()),
                Err(e) => {
                    self.shared
                        .metrics
                        .reconcile_error(ApiAction::PatchServiceAccount.as_str());
                    return Err(WriteError::api(e));
                }
            }
        }
        self.shared
            .metrics
            .reconcile_error(ApiAction::PatchServiceAccount.as_str());
        Err(WriteError::Contended {
            attempts: PATCH_ATTEMPTS,
            last: last_conflict,
        })
    }
}

/// A JSON patch adding references to a ServiceAccount, and the names it adds.
#[derive(Debug)]
pub struct ReferencePatch {
    /// The operations, guarded by a `test` of the resourceVersion.
    pub patch: json_patch::Patch,
    /// The names appended, in order.
    pub added: Vec<String>,
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// The patch that appends to `sa` the `names` it lacks and has not had removed since the
/// injector added them, or `None` when there is nothing to add. Existing entries keep their
/// order; the array and the annotations map are created when absent.
pub fn reference_patch(sa: &ServiceAccount, names: &[String]) -> Option<ReferencePatch> {
    let existing: Vec<&str> = sa
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.as_str())
        .collect();
    let recorded = injected_names(sa.metadata.annotations.as_ref());
    let mut added: Vec<String> = Vec::new();
    for name in names {
        if !existing.contains(&name.as_str())
            && !recorded.contains(&name.as_str())
            && !added.contains(name)
        {
            added.push(name.clone());
        }
    }
    if added.is_empty() {
        return None;
    }
    let mut ops = vec![PatchOperation::Test(TestOperation {
        path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
        value: json!(sa.metadata.resource_version.clone().unwrap_or_default()),
    })];
    let entry = |n: &String| json!({ "name": n });
    if sa.image_pull_secrets.is_some() {
        for n in &added {
            ops.push(add(
                PointerBuf::from_tokens(["imagePullSecrets", "-"]),
                entry(n),
            ));
        }
    } else {
        ops.push(add(
            PointerBuf::from_tokens(["imagePullSecrets"]),
            Value::Array(added.iter().map(entry).collect()),
        ));
    }
    let mut injected: Vec<&str> = recorded.clone();
    injected.extend(added.iter().map(String::as_str));
    let value = Value::String(injected.join(","));
    if sa.metadata.annotations.is_some() {
        ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations", INJECTED_ANNOTATION]),
            value,
        ));
    } else {
        ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations"]),
            json!({ INJECTED_ANNOTATION: value }),
        ));
    }
    Some(ReferencePatch {
        patch: json_patch::Patch(ops),
        added,
    })
}

/// Makes an admission's copies within `--copy-timeout`. A copy that is not made in time keeps
/// its name in the patch (kubelet retries the pull) and is left to the reconciler; a name held
/// by someone else's secret is withdrawn.
#[derive(Debug)]
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
                let task = tokio::spawn(async move { writer.ensure(&r, Budget::Admission).await });
                attempts.push((request, task));
            }
            let deadline = tokio::time::Instant::now() + budget;
            for (request, task) in attempts {
                let made = match tokio::time::timeout_at(deadline, task).await {
                    Ok(Ok(made)) => made,
                    Ok(Err(e)) => Made::Failed(WriteError::Task(e.to_string())),
                    Err(_) => Made::Failed(WriteError::TimedOut(budget)),
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
                detail: None,
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
                detail: None,
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
                detail: None,
            });
        }
    }
}

#[cfg(test)]
mod tests;
