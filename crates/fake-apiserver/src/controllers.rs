//! kube-controller-manager's service account controller
//! (`pkg/controller/serviceaccount/serviceaccounts_controller.go`, `syncNamespace`): when a
//! Namespace is added, and when a ServiceAccount is deleted, it makes sure the namespace has
//! its `default` ServiceAccount, creating it through the API as
//! `system:serviceaccount:kube-system:service-account-controller`, so that admission (and
//! every mutating webhook matching serviceaccounts) sees the create. It does nothing in a
//! namespace that is gone or not Active, and ignores AlreadyExists and the NamespaceTerminating
//! refusal; any other failure (a webhook down under `failurePolicy: Fail`, a denial) is retried
//! with the workqueue's backoff (5 ms doubling, at most 1000 s).
//!
//! When it happens is up to the test: by default the creation starts at once, in a task of its
//! own, after the Namespace's ADDED event is committed (so every watch sees the Namespace
//! first, as in a cluster); [`super::FakeApiServer::set_default_service_account_delay`] adds a
//! delay, and [`super::FakeApiServer::hold_default_service_accounts`] makes every creation wait
//! for [`super::FakeApiServer::release_default_service_account`].

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::api::create;
use super::ctx::Ctx;
use super::meta::by_resource;
use super::rbac::UserInfo;
use super::status::{Failure, TERMINATING_CAUSE};
use super::{Core, lock};

/// What tests set about the controller, and the creations waiting for a release.
#[derive(Default)]
pub(crate) struct SaController {
    /// Added before each creation of a namespace created from now on.
    pub delay: Duration,
    pub hold: bool,
    /// Namespaces whose creation waits for a release.
    pub held: BTreeSet<String>,
    /// Releases not yet used: each lets one waiting (or future) creation of its namespace go.
    pub released: HashSet<String>,
}

/// `DefaultTypedControllerRateLimiter`'s per-item backoff.
const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1000);

fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE
        .checked_mul(2u32.saturating_pow(failures.min(20)))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX)
}

/// Starts the controller's sync of `namespace` (outside a Tokio runtime: nothing).
pub(crate) fn ensure_default_service_account(core: &Arc<Core>, namespace: String) {
    let delay = lock(&core.sa_controller).delay;
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(sync_namespace(core.clone(), namespace, delay));
    }
}

/// Resolves when the test lets the creation in `namespace` go: at once unless holding.
/// False when the server is shutting down.
async fn released(core: &Core, namespace: &str) -> bool {
    let mut shutdown = core.shutdown.clone();
    loop {
        // Registered before the check, so that a release in between is not missed.
        let notified = core.sa_wakeup.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut c = lock(&core.sa_controller);
            if !c.hold || c.released.remove(namespace) {
                c.held.remove(namespace);
                return true;
            }
            c.held.insert(namespace.to_string());
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = shutdown.changed() => return false,
        }
    }
}

/// Whether the namespace exists and is Active, and has no `default` ServiceAccount yet.
fn needs_default(core: &Core, namespace: &str) -> bool {
    let store = lock(&core.store);
    let active = store
        .get("namespaces", "", namespace)
        .is_some_and(|ns| ns.get("status").and_then(|s| s.get("phase")) == Some(&json!("Active")));
    active && store.get("serviceaccounts", namespace, "default").is_none()
}

/// Failures the controller does not retry.
fn settled(failure: &Failure) -> bool {
    let terminating = failure
        .details
        .as_ref()
        .and_then(|d| d.get("causes"))
        .and_then(Value::as_array)
        .is_some_and(|causes| causes.iter().any(|c| c["reason"] == TERMINATING_CAUSE));
    failure.reason == "AlreadyExists" || failure.code == 404 || terminating
}

/// The explicit boxed type breaks the create → spawn → create type cycle.
fn sync_namespace(core: Arc<Core>, namespace: String, delay: Duration) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let mut shutdown = core.shutdown.clone();
        if !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
        }
        if !released(&core, &namespace).await {
            return;
        }
        let Some(info) = by_resource("serviceaccounts") else {
            return;
        };
        let mut failures = 0;
        while needs_default(&core, &namespace) {
            let user = UserInfo::new(
                "system:serviceaccount:kube-system:service-account-controller",
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
            );
            let mut ctx = Ctx::new(user, false);
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}});
            match create(&core, &mut ctx, info, Some(&namespace), sa).await {
                Ok(_) => return,
                Err(failure) if settled(&failure) => return,
                Err(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(failures)) => {}
                        _ = shutdown.changed() => return,
                    }
                    failures += 1;
                }
            }
        }
    })
}
