//! The cluster as the watches last reported it: Namespaces, source and local secrets (whole),
//! and the injector's copies (metadata only, compactly). Pure: watch events go in, the
//! decision reads it through [`ClusterView`].
//!
//! Every watch feeds its own [`Feed`] so that a relist (after a restart, a `410 Gone`, or the
//! periodic resync) replaces exactly what that watch reported before, and nothing else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::policy::{
    CONTENT_HASH_ANNOTATION, CREDENTIAL_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    SOURCE_ANNOTATION,
};
use crate::state::{ClusterView, NamespaceInfo, Occupant};

/// Which watch an object came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feed {
    /// All Namespaces.
    Namespaces,
    /// Managed copies, every namespace, metadata only.
    Copies,
    /// One source secret, by namespace and name.
    SourceNamed {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The source secrets a `secretSelector` selects in one namespace.
    SourceSelected {
        /// The source namespace.
        namespace: String,
        /// The label selector, as a query.
        labels: String,
    },
    /// Secrets selected by a `localSecretSelector`, every namespace.
    Locals {
        /// The label selector, as a query.
        labels: String,
    },
}

/// A managed copy, as much of it as decisions and the reconciler need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyMeta {
    /// Its credential annotation.
    pub credential: Option<Arc<str>>,
    /// Its source annotation.
    pub source: Option<Arc<str>>,
    /// Its content-hash annotation.
    pub hash: Option<Arc<str>>,
    /// Its resourceVersion, the precondition of an update.
    pub resource_version: String,
    generation: u64,
}

/// A watched object by namespace and name, tagged with the list generation that last saw it.
#[derive(Debug, Clone)]
struct Entry<T> {
    value: T,
    generation: u64,
}

/// Everything the watches reported. Read it through [`ClusterIndex::read`].
#[derive(Debug, Default)]
pub struct Indexes {
    namespaces: HashMap<String, Entry<NamespaceInfo>>,
    /// Per feed, namespace, then name.
    secrets: BTreeMap<Feed, BTreeMap<String, BTreeMap<String, Entry<Secret>>>>,
    copies: HashMap<Arc<str>, HashMap<Arc<str>, CopyMeta>>,
    /// Names the injector found taken by a secret it does not manage.
    foreign: HashSet<(String, String)>,
    /// Per feed: the generation of the list in progress, and whether a list has completed.
    lists: HashMap<Feed, (u64, bool)>,
    next_generation: u64,
    strings: HashSet<Arc<str>>,
}

/// The shared index: many readers (admissions), one writer at a time (watch events).
#[derive(Debug, Default)]
pub struct ClusterIndex {
    inner: RwLock<Indexes>,
}

impl ClusterIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read access; hold it only for a decision, never across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, Indexes> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Write access, for watch events and writes the injector made itself.
    pub fn write(&self) -> RwLockWriteGuard<'_, Indexes> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Whether an object carries the managed-by label.
pub fn is_managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

impl Indexes {
    /// Interns a string: copies repeat a handful of credentials, sources and hashes.
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let arc: Arc<str> = Arc::from(s);
        self.strings.insert(arc.clone());
        arc
    }

    fn generation(&self, feed: &Feed) -> u64 {
        self.lists.get(feed).map_or(0, |(g, _)| *g)
    }

    /// A (re)list of `feed` begins: objects it does not list again are dropped at its end.
    pub fn list_started(&mut self, feed: &Feed) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let synced = self.lists.get(feed).is_some_and(|(_, s)| *s);
        self.lists.insert(feed.clone(), (generation, synced));
    }

    /// The (re)list of `feed` is complete: drop what it did not list.
    pub fn list_done(&mut self, feed: &Feed) {
        let generation = self.generation(feed);
        self.lists.insert(feed.clone(), (generation, true));
        match feed {
            Feed::Namespaces => self.namespaces.retain(|_, e| e.generation == generation),
            Feed::Copies => {
                for names in self.copies.values_mut() {
                    names.retain(|_, c| c.generation == generation);
                }
                self.copies.retain(|_, names| !names.is_empty());
            }
            Feed::SourceNamed { .. } | Feed::SourceSelected { .. } | Feed::Locals { .. } => {
                if let Some(by_ns) = self.secrets.get_mut(feed) {
                    for names in by_ns.values_mut() {
                        names.retain(|_, e| e.generation == generation);
                    }
                    by_ns.retain(|_, names| !names.is_empty());
                }
            }
        }
        self.strings.retain(|s| Arc::strong_count(s) > 1);
    }

    /// Whether `feed` has completed a list since it was added.
    pub fn is_synced(&self, feed: &Feed) -> bool {
        self.lists.get(feed).is_some_and(|(_, s)| *s)
    }

    /// Forgets a feed the config no longer needs, with everything it reported.
    pub fn remove_feed(&mut self, feed: &Feed) {
        self.lists.remove(feed);
        self.secrets.remove(feed);
    }

    /// Adds or replaces a namespace.
    pub fn apply_namespace(&mut self, feed: &Feed, ns: NamespaceInfo) {
        let generation = self.generation(feed);
        self.namespaces.insert(
            ns.name.clone(),
            Entry {
                value: ns,
                generation,
            },
        );
    }

    /// Removes a namespace.
    pub fn delete_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// Adds or replaces a secret reported by a source or local feed.
    pub fn apply_secret(&mut self, feed: &Feed, secret: Secret) {
        let generation = self.generation(feed);
        let (Some(ns), Some(name)) = (
            secret.metadata.namespace.clone(),
            secret.metadata.name.clone(),
        ) else {
            return;
        };
        self.secrets
            .entry(feed.clone())
            .or_default()
            .entry(ns)
            .or_default()
            .insert(
                name,
                Entry {
                    value: secret,
                    generation,
                },
            );
    }

    /// Removes a secret reported by a source or local feed.
    pub fn delete_secret(&mut self, feed: &Feed, namespace: &str, name: &str) {
        if let Some(names) = self
            .secrets
            .get_mut(feed)
            .and_then(|by_ns| by_ns.get_mut(namespace))
        {
            names.remove(name);
        }
    }

    /// Adds or replaces a managed copy from its metadata. An object without the managed-by
    /// label (a copy someone took over) is dropped from the copies.
    pub fn apply_copy(&mut self, meta: &ObjectMeta) {
        let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
            return;
        };
        if !is_managed(meta) {
            self.delete_copy(ns, name);
            return;
        }
        let generation = self.generation(&Feed::Copies);
        let copy = CopyMeta {
            credential: annotation(meta, CREDENTIAL_ANNOTATION).map(|s| self.intern(s)),
            source: annotation(meta, SOURCE_ANNOTATION).map(|s| self.intern(s)),
            hash: annotation(meta, CONTENT_HASH_ANNOTATION).map(|s| self.intern(s)),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            generation,
        };
        let ns = self.intern(ns);
        let name = self.intern(name);
        self.foreign.remove(&(ns.to_string(), name.to_string()));
        self.copies.entry(ns).or_default().insert(name, copy);
    }

    /// Removes a managed copy.
    pub fn delete_copy(&mut self, namespace: &str, name: &str) {
        if let Some(names) = self.copies.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                self.copies.remove(namespace);
            }
        }
    }

    /// Records that a secret the injector does not manage holds this name.
    pub fn mark_foreign(&mut self, namespace: &str, name: &str) {
        self.foreign
            .insert((namespace.to_string(), name.to_string()));
    }

    /// Forgets every foreign name, so that they are looked at again.
    pub fn clear_foreign(&mut self) {
        self.foreign.clear();
    }

    /// Every known namespace.
    pub fn namespaces(&self) -> impl Iterator<Item = &NamespaceInfo> {
        self.namespaces.values().map(|e| &e.value)
    }

    /// How many namespaces are known.
    pub fn namespace_count(&self) -> usize {
        self.namespaces.len()
    }

    /// Every managed copy: namespace, name, metadata.
    pub fn copies(&self) -> impl Iterator<Item = (&str, &str, &CopyMeta)> {
        self.copies
            .iter()
            .flat_map(|(ns, names)| names.iter().map(move |(n, c)| (&**ns, &**n, c)))
    }

    /// One managed copy.
    pub fn copy(&self, namespace: &str, name: &str) -> Option<&CopyMeta> {
        self.copies.get(namespace)?.get(name)
    }

    /// How many managed copies are known.
    pub fn copy_count(&self) -> usize {
        self.copies.values().map(HashMap::len).sum()
    }
}

impl ClusterView for Indexes {
    fn namespace(&self, name: &str) -> Option<&NamespaceInfo> {
        self.namespaces.get(name).map(|e| &e.value)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets
            .values()
            .find_map(|by_ns| by_ns.get(namespace)?.get(name))
            .map(|e| &e.value)
    }

    fn secrets_in(&self, namespace: &str) -> Vec<&Secret> {
        let mut found: BTreeMap<&str, &Secret> = BTreeMap::new();
        for by_ns in self.secrets.values() {
            if let Some(names) = by_ns.get(namespace) {
                for (name, e) in names {
                    found.entry(name).or_insert(&e.value);
                }
            }
        }
        found.into_values().collect()
    }

    fn occupant(&self, namespace: &str, name: &str) -> Option<Occupant<'_>> {
        if let Some(copy) = self.copy(namespace, name) {
            return Some(Occupant {
                managed: true,
                credential: copy.credential.as_deref(),
                source: copy.source.as_deref(),
                hash: copy.hash.as_deref(),
            });
        }
        if let Some(secret) = self.secret(namespace, name) {
            return Some(Occupant::of(secret));
        }
        self.foreign
            .contains(&(namespace.to_string(), name.to_string()))
            .then(Occupant::foreign)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &str, name: &str, managed: bool, hash: &str, rv: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            resource_version: Some(rv.to_string()),
            labels: managed.then(|| {
                BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())])
            }),
            annotations: Some(BTreeMap::from([
                (CREDENTIAL_ANNOTATION.to_string(), "icr".to_string()),
                (
                    SOURCE_ANNOTATION.to_string(),
                    "default/all-icr-io".to_string(),
                ),
                (CONTENT_HASH_ANNOTATION.to_string(), hash.to_string()),
            ])),
            ..Default::default()
        }
    }

    fn secret(ns: &str, name: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some(ns.to_string()),
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_relist_drops_what_it_did_not_list_again() {
        let mut ix = Indexes::default();
        ix.list_started(&Feed::Copies);
        ix.apply_copy(&meta("a", "icr", true, "h1", "1"));
        ix.apply_copy(&meta("b", "icr", true, "h1", "2"));
        assert!(!ix.is_synced(&Feed::Copies));
        ix.list_done(&Feed::Copies);
        assert!(ix.is_synced(&Feed::Copies));
        assert_eq!(ix.copy_count(), 2);

        ix.list_started(&Feed::Copies);
        ix.apply_copy(&meta("a", "icr", true, "h2", "3"));
        // During the relist the old view stays readable.
        assert_eq!(ix.copy_count(), 2);
        assert!(ix.is_synced(&Feed::Copies));
        ix.list_done(&Feed::Copies);
        assert_eq!(ix.copy_count(), 1);
        let copy = ix.copy("a", "icr").unwrap();
        assert_eq!(copy.hash.as_deref(), Some("h2"));
        assert_eq!(copy.resource_version, "3");
    }

    #[test]
    fn copies_share_their_strings() {
        let mut ix = Indexes::default();
        ix.apply_copy(&meta("a", "icr", true, "h1", "1"));
        ix.apply_copy(&meta("b", "icr", true, "h1", "2"));
        let a = ix.copy("a", "icr").unwrap().hash.clone().unwrap();
        let b = ix.copy("b", "icr").unwrap().hash.clone().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn an_unlabelled_copy_leaves_the_copies() {
        let mut ix = Indexes::default();
        ix.apply_copy(&meta("a", "icr", true, "h1", "1"));
        ix.apply_copy(&meta("a", "icr", false, "h1", "2"));
        assert!(ix.copy("a", "icr").is_none());
    }

    #[test]
    fn occupants_come_from_copies_then_secrets_then_foreign_names() {
        let mut ix = Indexes::default();
        ix.apply_copy(&meta("a", "icr", true, "h1", "1"));
        let feed = Feed::SourceNamed {
            namespace: "default".into(),
            name: "all-icr-io".into(),
        };
        ix.apply_secret(&feed, secret("default", "all-icr-io"));
        ix.mark_foreign("b", "icr");

        let copy = ix.occupant("a", "icr").unwrap();
        assert!(copy.managed);
        assert_eq!(copy.hash, Some("h1"));
        assert!(!ix.occupant("default", "all-icr-io").unwrap().managed);
        assert_eq!(ix.occupant("b", "icr"), Some(Occupant::foreign()));
        assert_eq!(ix.occupant("c", "icr"), None);

        // A copy made later in place of the foreign secret wins.
        ix.apply_copy(&meta("b", "icr", true, "h1", "4"));
        assert!(ix.occupant("b", "icr").unwrap().managed);
        ix.delete_copy("b", "icr");
        assert_eq!(ix.occupant("b", "icr"), None);
    }

    #[test]
    fn feeds_are_replaced_independently() {
        let mut ix = Indexes::default();
        let one = Feed::SourceSelected {
            namespace: "default".into(),
            labels: "a=b".into(),
        };
        let two = Feed::Locals {
            labels: "l=true".into(),
        };
        ix.list_started(&one);
        ix.apply_secret(&one, secret("default", "s1"));
        ix.list_done(&one);
        ix.list_started(&two);
        ix.apply_secret(&two, secret("team", "local"));
        ix.apply_secret(&two, secret("default", "s0"));
        ix.list_done(&two);
        ix.list_started(&one);
        ix.list_done(&one);
        assert!(ix.secret("default", "s1").is_none());
        assert!(ix.secret("team", "local").is_some());
        let names: Vec<_> = ix
            .secrets_in("default")
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["s0"]);
        ix.remove_feed(&two);
        assert!(ix.secret("team", "local").is_none());
    }

    #[test]
    fn namespaces_follow_their_feed() {
        let mut ix = Indexes::default();
        ix.list_started(&Feed::Namespaces);
        ix.apply_namespace(&Feed::Namespaces, NamespaceInfo::named("a"));
        ix.apply_namespace(&Feed::Namespaces, NamespaceInfo::named("b"));
        ix.list_done(&Feed::Namespaces);
        ix.delete_namespace("a");
        assert!(ix.namespace("a").is_none());
        ix.list_started(&Feed::Namespaces);
        ix.apply_namespace(&Feed::Namespaces, NamespaceInfo::named("c"));
        ix.list_done(&Feed::Namespaces);
        assert!(ix.namespace("b").is_none());
        assert_eq!(ix.namespace_count(), 1);
    }
}
