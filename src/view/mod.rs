//! What the decision reads of the cluster: the [`ClusterView`] trait, with two views behind
//! it, the snapshot of manifest files ([`files`]) and the live index the watches feed
//! ([`live`]). The decision only sees the trait, so it never knows which.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret};

use crate::marks::{CopyMarks, is_managed};

pub mod files;
pub mod health;
pub mod live;

pub use files::{ClusterState, ManifestError};
pub use health::{Health, ProbeState, RegistryHealth};
pub use live::ClusterIndex;

/// What the decision needs to know about a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace's name.
    pub name: String,
    /// Its labels (for `namespaces.selector` and the opt-out label).
    pub labels: BTreeMap<String, String>,
    /// Its annotations (for the opt-out annotation).
    pub annotations: BTreeMap<String, String>,
    /// True once deletion has started: nothing may be written there.
    pub terminating: bool,
}

impl NamespaceInfo {
    /// A namespace known only by name (no labels, not terminating).
    pub fn named(name: &str) -> Self {
        NamespaceInfo {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// Reads the fields the decision uses from a Namespace object.
    pub fn from_namespace(ns: &Namespace) -> Option<Self> {
        let name = ns.metadata.name.clone()?;
        let terminating = ns.metadata.deletion_timestamp.is_some()
            || ns
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Terminating");
        Some(NamespaceInfo {
            name,
            labels: ns.metadata.labels.clone().unwrap_or_default(),
            annotations: ns.metadata.annotations.clone().unwrap_or_default(),
            terminating,
        })
    }
}

/// Read access to cluster state, as the decision needs it.
pub trait ClusterView {
    /// A namespace by name.
    fn namespace(&self, name: &str) -> Option<&NamespaceInfo>;
    /// A secret by namespace and name.
    fn secret(&self, namespace: &str, name: &str) -> Option<&Secret>;
    /// Every secret of one namespace, ordered by name.
    fn secrets_in(&self, namespace: &str) -> Vec<&Secret>;

    /// What holds a secret name in a namespace, as far as copies are concerned. Views that
    /// keep only the marks of copies answer this without a [`Secret`].
    fn occupant(&self, namespace: &str, name: &str) -> Option<Occupant<'_>>;

    /// Whether the view holds every namespace of the cluster, so that one it does not know
    /// does not exist (yet): true of the live index, not of manifest files, which may hold
    /// only some.
    fn lists_every_namespace(&self) -> bool {
        false
    }

    /// What probing taught about `credential` at `registry` (`host[:port]`), when it was
    /// probed.
    fn registry_health(&self, credential: &str, registry: &str) -> Option<&RegistryHealth> {
        let _ = (credential, registry);
        None
    }

    /// Whether some registry rejected `credential` on its last probe: when not, nothing else
    /// about its health changes a decision.
    fn rejected_somewhere(&self, credential: &str) -> bool {
        let _ = credential;
        false
    }

    /// Every registry `credential` was probed at, with what probing taught.
    fn credential_health(&self, credential: &str) -> Vec<(&str, &RegistryHealth)> {
        let _ = credential;
        Vec::new()
    }

    /// A count that moves whenever anything a decision reads may have changed: decisions
    /// made at equal counts (from the same snapshot) are interchangeable. Fixed views stay
    /// at 0.
    fn changes(&self) -> u64 {
        0
    }
}

/// The secret holding a name where a copy would go: whether it is one of ours, and which
/// credential, source and content it was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupant<'a> {
    /// Carries the managed-by label: the injector may update it.
    pub managed: bool,
    /// Its credential annotation.
    pub credential: Option<&'a str>,
    /// Its source annotation (`namespace/name`).
    pub source: Option<&'a str>,
    /// The hash of what it holds (of its data, not what its annotation claims), for copies.
    pub hash: Option<&'a str>,
}

impl<'a> Occupant<'a> {
    /// Reads the marks of a secret; `data_hash` is the hash of its `.dockerconfigjson` data,
    /// when the caller computed it.
    pub fn of(secret: &'a Secret, data_hash: Option<&'a str>) -> Self {
        let meta = &secret.metadata;
        match CopyMarks::read(meta) {
            Some(marks) => Occupant {
                managed: true,
                credential: Some(marks.credential),
                source: Some(marks.source),
                hash: data_hash,
            },
            None => Occupant {
                managed: is_managed(meta),
                credential: None,
                source: None,
                hash: None,
            },
        }
    }

    /// An occupant the injector does not manage, known by name only.
    pub fn foreign() -> Self {
        Occupant {
            managed: false,
            credential: None,
            source: None,
            hash: None,
        }
    }
}
