//! The cluster as the watches last reported it: Namespaces, source and local secrets (whole),
//! and the injector's copies (metadata only, compactly). Pure: watch events go in, the
//! decision reads it through [`ClusterView`].
//!
//! Every watch feeds its own [`Feed`] so that a relist (after a restart, a `410 Gone`, or the
//! periodic resync) replaces exactly what that watch reported before, and nothing else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyMeta<'a> {
    /// Its credential annotation.
    pub credential: Option<&'a str>,
    /// Its source annotation.
    pub source: Option<&'a str>,
    /// Its content-hash annotation.
    pub hash: Option<&'a str>,
    /// Its resourceVersion, the precondition of an update.
    pub resource_version: &'a str,
}

/// A string by its number in the [`Strings`] table: copies repeat a few credentials, sources,
/// hashes and names, and 100,000 of them must stay small.
type Id = u32;

/// Interned strings, renumbered at each full list of copies so that names of namespaces long
/// gone do not pile up.
#[derive(Debug, Default)]
struct Strings {
    ids: HashMap<Box<str>, Id>,
    text: Vec<Box<str>>,
}

impl Strings {
    fn intern(&mut self, s: &str) -> Id {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = Id::try_from(self.text.len()).unwrap_or(Id::MAX);
        self.text.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    fn id(&self, s: &str) -> Option<Id> {
        self.ids.get(s).copied()
    }

    fn get(&self, id: Id) -> &str {
        self.text.get(id as usize).map_or("", |s| s)
    }
}

/// A resourceVersion, inline when short (etcd revisions are), so that a copy costs no
/// allocation of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Version {
    Inline(u8, [u8; 22]),
    Boxed(Box<str>),
}

impl Version {
    fn new(s: &str) -> Self {
        let mut bytes = [0u8; 22];
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= bytes.len() => {
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Version::Inline(len, bytes)
            }
            _ => Version::Boxed(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Version::Inline(len, bytes) => {
                std::str::from_utf8(&bytes[..*len as usize]).unwrap_or_default()
            }
            Version::Boxed(s) => s,
        }
    }
}

/// A copy as stored: ids into the string table.
#[derive(Debug, Clone)]
struct StoredCopy {
    credential: Option<Id>,
    source: Option<Id>,
    hash: Option<Id>,
    resource_version: Version,
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
    /// By (namespace, name) ids.
    copies: HashMap<(Id, Id), StoredCopy>,
    strings: Strings,
    /// Names the injector found taken by a secret it does not manage.
    foreign: HashSet<(String, String)>,
    /// Per feed: the generation of the list in progress, and whether a list has completed.
    lists: HashMap<Feed, (u64, bool)>,
    next_generation: u64,
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
                self.copies.retain(|_, c| c.generation == generation);
                self.renumber();
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
    }

    /// Rebuilds the string table with only the strings live copies use, once at least half of
    /// it is garbage (renumbering rehashes every copy, and briefly holds two maps).
    fn renumber(&mut self) {
        let mut live = vec![false; self.strings.text.len()];
        for ((ns, name), copy) in &self.copies {
            for id in [
                Some(*ns),
                Some(*name),
                copy.credential,
                copy.source,
                copy.hash,
            ]
            .into_iter()
            .flatten()
            {
                if let Some(slot) = live.get_mut(id as usize) {
                    *slot = true;
                }
            }
        }
        let used = live.iter().filter(|l| **l).count();
        if used * 2 >= live.len() {
            return;
        }
        let old = std::mem::take(&mut self.strings);
        let remap = |id: Id, strings: &mut Strings| strings.intern(old.get(id));
        let copies = std::mem::take(&mut self.copies);
        let mut renumbered = HashMap::with_capacity(copies.len());
        for ((ns, name), mut copy) in copies {
            let key = (remap(ns, &mut self.strings), remap(name, &mut self.strings));
            copy.credential = copy.credential.map(|i| remap(i, &mut self.strings));
            copy.source = copy.source.map(|i| remap(i, &mut self.strings));
            copy.hash = copy.hash.map(|i| remap(i, &mut self.strings));
            renumbered.insert(key, copy);
        }
        self.copies = renumbered;
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
        let mut intern = |key: &str| annotation(meta, key).map(|s| self.strings.intern(s));
        let copy = StoredCopy {
            credential: intern(CREDENTIAL_ANNOTATION),
            source: intern(SOURCE_ANNOTATION),
            hash: intern(CONTENT_HASH_ANNOTATION),
            resource_version: Version::new(meta.resource_version.as_deref().unwrap_or("")),
            generation,
        };
        let key = (self.strings.intern(ns), self.strings.intern(name));
        self.foreign.remove(&(ns.to_string(), name.to_string()));
        self.copies.insert(key, copy);
    }

    /// Removes a managed copy.
    pub fn delete_copy(&mut self, namespace: &str, name: &str) {
        if let (Some(ns), Some(name)) = (self.strings.id(namespace), self.strings.id(name)) {
            self.copies.remove(&(ns, name));
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

    fn view<'a>(&'a self, copy: &'a StoredCopy) -> CopyMeta<'a> {
        let text = |id: Option<Id>| id.map(|i| self.strings.get(i));
        CopyMeta {
            credential: text(copy.credential),
            source: text(copy.source),
            hash: text(copy.hash),
            resource_version: copy.resource_version.as_str(),
        }
    }

    /// Every managed copy: namespace, name, metadata.
    pub fn copies(&self) -> impl Iterator<Item = (&str, &str, CopyMeta<'_>)> {
        self.copies.iter().map(|((ns, name), copy)| {
            (
                self.strings.get(*ns),
                self.strings.get(*name),
                self.view(copy),
            )
        })
    }

    /// One managed copy.
    pub fn copy(&self, namespace: &str, name: &str) -> Option<CopyMeta<'_>> {
        let key = (self.strings.id(namespace)?, self.strings.id(name)?);
        self.copies.get(&key).map(|c| self.view(c))
    }

    /// How many managed copies are known.
    pub fn copy_count(&self) -> usize {
        self.copies.len()
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
                credential: copy.credential,
                source: copy.source,
                hash: copy.hash,
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
        assert_eq!(copy.hash, Some("h2"));
        assert_eq!(copy.resource_version, "3");
    }

    #[test]
    fn strings_of_copies_gone_are_dropped_once_they_are_most_of_the_table() {
        let mut ix = Indexes::default();
        ix.list_started(&Feed::Copies);
        for ns in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            ix.apply_copy(&meta(ns, "icr", true, "h1", "1"));
        }
        ix.list_done(&Feed::Copies);
        ix.list_started(&Feed::Copies);
        ix.apply_copy(&meta("a", "icr", true, "h1", "2"));
        ix.list_done(&Feed::Copies);
        assert!(ix.strings.id("b").is_none());
        assert_eq!(ix.strings.text.len(), 4, "a, icr, h1, source");
        assert_eq!(ix.copy("a", "icr").unwrap().resource_version, "2");
    }

    #[test]
    fn copies_share_their_strings_and_keep_long_versions() {
        let mut ix = Indexes::default();
        ix.apply_copy(&meta("a", "icr", true, "h1", "1"));
        let long = "9".repeat(40);
        ix.apply_copy(&meta("b", "icr", true, "h1", &long));
        assert_eq!(
            ix.strings.text.len(),
            5,
            "a, b, icr (name and credential), h1, source"
        );
        assert_eq!(ix.copy("b", "icr").unwrap().resource_version, long);
        assert_eq!(ix.copy("a", "icr").unwrap().resource_version, "1");
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
