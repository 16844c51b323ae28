//! kube-controller-manager's service account controller
//! (`pkg/controller/serviceaccount/serviceaccounts_controller.go`): it makes sure every Active
//! namespace has its `default` ServiceAccount, creating it through the API as
//! `system:serviceaccount:kube-system:service-account-controller`, so that admission (and
//! every mutating webhook matching serviceaccounts) sees the create.
//!
//! Like the real one it is driven by what it watches, not called by the API: a task started
//! with the server ([`start`]) follows the store's event stream, as the real controller follows
//! its informers, and a Namespace added (or become Active) or a ServiceAccount deleted from an
//! Active namespace (`namespaceAdded`, `serviceAccountDeleted`) starts a sync of that namespace
//! (`syncNamespace`). The sync does nothing in a namespace that is gone or not Active, and
//! ignores AlreadyExists and the NamespaceTerminating refusal; any other failure (a webhook
//! down under `failurePolicy: Fail`, a denial) is retried with the workqueue's backoff (5 ms
//! doubling, at most 1000 s). When the store drains its subscribers (dropped watches, an
//! expired history), the controller subscribes again and, as an informer relists, syncs every
//! Active namespace that lacks a `default` ServiceAccount and has no sync under way: what was
//! committed in between reached no subscriber.
//!
//! When it happens is up to the test: by default the creation starts at once, in a task of its
//! own, once the controller has seen the Namespace's ADDED event (so every watch sees the
//! Namespace first, as in a cluster); [`super::FakeApiServer::set_default_service_account_delay`]
//! adds a delay, and [`super::FakeApiServer::hold_default_service_accounts`] makes every
//! creation wait for [`super::FakeApiServer::release_default_service_account`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use super::api::create;
use super::ctx::Ctx;
use super::meta::{by_resource, meta_str};
use super::rbac::UserInfo;
use super::status::{Failure, TERMINATING_CAUSE};
use super::store::{Event, EventType, Signal, Store, key};
use super::{Core, lock};

/// What tests set about the controller, the creations waiting for a release, and the syncs
/// under way.
#[derive(Default)]
pub(crate) struct SaController {
    /// Added before each creation the controller starts from now on.
    pub delay: Duration,
    pub hold: bool,
    /// Namespaces whose creation waits for a release.
    pub held: BTreeSet<String>,
    /// Releases not yet used: each lets one waiting (or future) creation of its namespace go.
    pub released: HashSet<String>,
    /// How many syncs of each namespace are under way; a relist leaves these namespaces to them.
    syncing: HashMap<String, usize>,
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

/// Starts the controller for a new server. It subscribes before this returns, so it sees
/// everything committed from now on, and it stops when the server shuts down.
pub(crate) fn start(core: &Arc<Core>) {
    let events = lock(&core.store).subscribe();
    tokio::spawn(run(core.clone(), events));
}

async fn run(core: Arc<Core>, mut events: UnboundedReceiver<Signal>) {
    let mut shutdown = core.shutdown.clone();
    loop {
        let signal = tokio::select! {
            signal = events.recv() => signal,
            _ = shutdown.changed() => return,
        };
        match signal {
            Some(Signal::Event(event)) => {
                if let Some(namespace) = due(&core, &event) {
                    start_sync(&core, namespace);
                }
            }
            // The store drained its subscribers (the stream ends after the signal).
            Some(Signal::Abort | Signal::End) | None => events = relist(&core),
        }
    }
}

fn active(namespace: &Value) -> bool {
    namespace.get("status").and_then(|s| s.get("phase")) == Some(&json!("Active"))
}

/// The namespace an event calls for a sync of, if any: a Namespace added or become Active,
/// a ServiceAccount deleted from an Active namespace (not the accounts the namespace
/// controller removes from a terminating one).
fn due(core: &Core, event: &Event) -> Option<String> {
    match (event.resource.as_str(), event.kind) {
        ("namespaces", EventType::Added | EventType::Modified)
            if active(&event.object) && !event.prev.as_ref().is_some_and(active) =>
        {
            Some(meta_str(&event.object, "name").to_string())
        }
        ("serviceaccounts", EventType::Deleted)
            if lock(&core.store)
                .get("namespaces", "", &event.namespace)
                .is_some_and(active) =>
        {
            Some(event.namespace.clone())
        }
        _ => None,
    }
}

/// Subscribes again and starts a sync of every Active namespace that lacks its `default`
/// ServiceAccount and has none under way. Both are decided under the store lock, as a sync's
/// end is ([`NamespaceSync::done`]), so every namespace is either seen by the new
/// subscription, left to a sync that will look at the store again, or synced now.
fn relist(core: &Arc<Core>) -> UnboundedReceiver<Signal> {
    let (events, missing) = {
        let mut store = lock(&core.store);
        let events = store.subscribe();
        let syncing = &lock(&core.sa_controller).syncing;
        let missing: Vec<String> = store
            .objects
            .range(key("namespaces", "", "")..)
            .take_while(|((resource, _, _), _)| resource == "namespaces")
            .map(|((_, _, name), _)| name)
            .filter(|name| !syncing.contains_key(*name) && needs_default(&store, name))
            .cloned()
            .collect();
        (events, missing)
    };
    for namespace in missing {
        start_sync(core, namespace);
    }
    events
}

/// Starts a sync of `namespace`, with the delay set now.
fn start_sync(core: &Arc<Core>, namespace: String) {
    let delay = {
        let mut c = lock(&core.sa_controller);
        *c.syncing.entry(namespace.clone()).or_default() += 1;
        c.delay
    };
    let sync = NamespaceSync {
        core: core.clone(),
        namespace,
        ended: false,
    };
    tokio::spawn(sync_namespace(sync, delay));
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
fn needs_default(store: &Store, namespace: &str) -> bool {
    store.get("namespaces", "", namespace).is_some_and(active)
        && store.get("serviceaccounts", namespace, "default").is_none()
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

/// One sync of a namespace, counted in [`SaController::syncing`] until it ends.
struct NamespaceSync {
    core: Arc<Core>,
    namespace: String,
    ended: bool,
}

impl NamespaceSync {
    /// Whether the namespace needs no `default` ServiceAccount (any more); if so, the sync
    /// ends here, decided under the store lock as [`relist`] decides.
    fn done(&mut self) -> bool {
        let core = self.core.clone();
        let store = lock(&core.store);
        if needs_default(&store, &self.namespace) {
            return false;
        }
        self.end();
        true
    }

    fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let mut c = lock(&self.core.sa_controller);
        if let Some(count) = c.syncing.get_mut(&self.namespace) {
            *count -= 1;
            if *count == 0 {
                c.syncing.remove(&self.namespace);
            }
        }
    }
}

impl Drop for NamespaceSync {
    fn drop(&mut self) {
        self.end();
    }
}

/// `syncNamespace`, after the test's delay and hold.
async fn sync_namespace(mut sync: NamespaceSync, delay: Duration) {
    let core = sync.core.clone();
    let namespace = sync.namespace.clone();
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
    while !sync.done() {
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
            // The next check sees it and ends the sync.
            Ok(_) => {}
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
}
