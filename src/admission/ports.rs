//! What the admission path asks of cluster mode, as small traits the server is handed: make the
//! copies a decision needs, and wait briefly for the view to learn of a namespace. File mode
//! has neither.

use futures::future::BoxFuture;

use super::Pending;

/// Makes the copies a decision asks for before the patch names them (cluster mode). It takes
/// them from the pending review and withdraws the names whose copy cannot exist.
pub trait CopyMaker: Send + Sync {
    /// Makes the copies of `pending`, within its own time budget.
    fn make<'a>(&'a self, pending: &'a mut Pending) -> BoxFuture<'a, ()>;
}

/// Hears which concrete registries admitted images reached through glob keys (`*.icr.io`), so
/// that the verifier probes them (cluster mode).
pub trait RegistriesSeen: Send + Sync {
    /// `registries` as (credential, `host[:port]`); cheap, called on the admission path.
    fn seen(&self, registries: &[(String, String)]);
}

/// Waits, briefly and without any API call, for the live view to learn of a namespace a
/// review names (cluster mode): a namespace's `default` ServiceAccount is created moments
/// after the namespace, often before the Namespace watch has reported it.
pub trait NamespaceWait: Send + Sync {
    /// Whether the view knows `namespace` now, or learns of it within the wait's bound.
    fn wait_for<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, bool>;
}
