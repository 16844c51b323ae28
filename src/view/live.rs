//! The cluster as the watches last reported it: Namespaces, source and local secrets (whole),
//! the injector's copies (compactly: marks, the hash of their data, their resourceVersion) and
//! the ServiceAccounts `serviceAccounts` names (compactly: their pull secret names). Pure:
//! watch events go in, the decision reads it through [`ClusterView`].
//!
//! Every watch feeds its own [`Feed`] so that a relist (after a restart, a `410 Gone`, or the
//! periodic resync) replaces exactly what that watch reported before, and nothing else.
//!
//! Labelled Secrets and ServiceAccounts are written by tenants too: only what the config
//! accounts for is stored ([`IndexRules`]), so that what a tenant creates cannot grow the
//! index, and the metrics drawn from it, beyond what the config names.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};

use crate::config::{Config, Source};
use crate::marks::{CopyMarks, CopyRules, INJECTED_ANNOTATION};
use crate::registry::dockerconfig::{DOCKER_CONFIG_JSON_KEY, content_hash_of};
use crate::registry::glob::Glob;
use crate::view::{ClusterView, Health, NamespaceInfo, Occupant, RegistryHealth};

/// Which watch an object came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feed {
    /// All Namespaces.
    Namespaces,
    /// Managed copies, every namespace.
    Copies,
    /// ServiceAccounts, every namespace: those of one name (a field selector), or all.
    ServiceAccounts {
        /// The name, when `serviceAccounts` names it literally.
        name: Option<String>,
    },
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

/// What the index admits of what the copies and ServiceAccounts watches report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRules {
    /// Which labelled Secrets are copies.
    pub copies: CopyRules,
    /// Which ServiceAccount names are kept.
    pub service_accounts: Vec<Glob>,
}

impl IndexRules {
    /// The rules of a config.
    pub fn of(config: &Config) -> Self {
        IndexRules {
            copies: CopyRules::of(config),
            service_accounts: config.service_accounts.clone(),
        }
    }

    fn wants_service_account(&self, name: &str) -> bool {
        self.service_accounts.iter().any(|g| g.matches(name))
    }
}

/// The watch each source of the config needs.
pub fn source_feeds(config: &Config) -> BTreeSet<Feed> {
    config
        .credentials
        .iter()
        .map(|c| match &c.source {
            Source::Secret { namespace, name } => Feed::SourceNamed {
                namespace: namespace.clone(),
                name: name.clone(),
            },
            Source::SecretSelector {
                namespace,
                selector,
            } => Feed::SourceSelected {
                namespace: namespace.clone(),
                labels: selector.to_query(),
            },
            Source::LocalSecretSelector { selector } => Feed::Locals {
                labels: selector.to_query(),
            },
        })
        .collect()
}

/// The ServiceAccount watches a config needs: one per literal name of `serviceAccounts`, or a
/// single one for all when a pattern is not literal (kube has no field selector for globs).
pub fn service_account_feeds(config: &Config) -> Vec<Feed> {
    if config.service_accounts.is_empty() {
        return Vec::new();
    }
    if config.service_accounts.iter().all(Glob::is_literal) {
        let mut names: Vec<String> = config
            .service_accounts
            .iter()
            .map(|g| g.as_str().to_string())
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| Feed::ServiceAccounts { name: Some(name) })
            .collect()
    } else {
        vec![Feed::ServiceAccounts { name: None }]
    }
}

/// A managed copy, as much of it as decisions and the reconciler need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyMeta<'a> {
    /// Its credential annotation (a configured credential: nothing else is stored).
    pub credential: &'a str,
    /// Its source annotation.
    pub source: &'a str,
    /// Its content-hash annotation.
    pub hash: Option<&'a str>,
    /// The hash of its `.dockerconfigjson` data as stored: what it really holds.
    pub data_hash: Option<&'a str>,
    /// Its resourceVersion, the precondition of an update.
    pub resource_version: &'a str,
}

/// A ServiceAccount `serviceAccounts` names, as much of it as backfill needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountMeta<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The names in its `imagePullSecrets`, in order; `None` when it holds more than the index
    /// keeps (then the API is asked).
    pub pull_secrets: Option<Vec<&'a str>>,
    /// Its injected annotation.
    pub injected: Option<&'a str>,
    /// Its resourceVersion.
    pub resource_version: &'a str,
}

/// Pull secret names kept per ServiceAccount; a longer list is read from the API when needed.
const MAX_STORED_PULL_SECRETS: usize = 64;
/// Longest pull secret name kept (a Secret name is at most 253 bytes).
const MAX_NAME_LEN: usize = 253;
/// Longest injected annotation kept.
const MAX_INJECTED_LEN: usize = 4096;

/// A string by its number in the [`Strings`] table: copies and ServiceAccounts repeat a few
/// credentials, sources, hashes and names, and 100,000 of them must stay small.
type Id = u32;

/// Interned strings, renumbered at each full list of copies or ServiceAccounts so that names of
/// namespaces long gone do not pile up.
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

    /// Bytes held by the table's text (each string is stored twice: key and entry).
    fn bytes(&self) -> usize {
        self.text.iter().map(|s| 2 * s.len()).sum()
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
    credential: Id,
    source: Id,
    hash: Option<Id>,
    data_hash: Option<Id>,
    resource_version: Version,
    generation: u64,
}

/// A ServiceAccount as stored: ids into the string table.
#[derive(Debug, Clone)]
struct StoredServiceAccount {
    /// `None`: more names than the index keeps.
    pull_secrets: Option<Box<[Id]>>,
    injected: Option<Id>,
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
    /// By (namespace, name) ids.
    service_accounts: HashMap<(Id, Id), StoredServiceAccount>,
    strings: Strings,
    /// Names the injector found taken by a secret it does not manage.
    foreign: HashSet<(String, String)>,
    /// Per feed: the generation of the list in progress, and whether a list has completed.
    lists: HashMap<Feed, (u64, bool)>,
    next_generation: u64,
    rules: IndexRules,
    /// What the verifier last learnt of each credential at each registry.
    health: Health,
    /// Write accesses so far (see [`ClusterView::changes`]).
    changes: u64,
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
        crate::lock::read(&self.inner)
    }

    /// Write access, for watch events and writes the injector made itself.
    pub fn write(&self) -> RwLockWriteGuard<'_, Indexes> {
        let mut indexes = crate::lock::write(&self.inner);
        // Counted per access rather than per actual change: a writer may change anything a
        // decision reads, and an answer reused past a change would be wrong.
        indexes.changes = indexes.changes.wrapping_add(1);
        indexes
    }
}

/// What a watch event did to the stored ServiceAccounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Kept (new, or changed in what backfill reads).
    Changed,
    /// Kept, with nothing backfill reads changed.
    Unchanged,
    /// Not kept: not named by `serviceAccounts`, or not readable.
    Ignored,
}

impl Indexes {
    fn generation(&self, feed: &Feed) -> u64 {
        self.lists.get(feed).map_or(0, |(g, _)| *g)
    }

    /// Sets what copies and ServiceAccounts are admitted; returns whether it changed (then the
    /// copies and ServiceAccounts watches must list again: what was ignored may now count).
    /// Stored entries the new rules do not admit are dropped at once.
    pub fn set_rules(&mut self, rules: IndexRules) -> bool {
        if self.rules == rules {
            return false;
        }
        self.rules = rules;
        let strings = &self.strings;
        let rules = &self.rules;
        self.copies.retain(|(_, name), c| {
            let marks = CopyMarks {
                credential: strings.get(c.credential),
                source: strings.get(c.source),
                hash: None,
            };
            rules.copies.admits(strings.get(*name), &marks)
        });
        self.service_accounts
            .retain(|(_, name), _| rules.wants_service_account(strings.get(*name)));
        true
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
            Feed::ServiceAccounts { name } => {
                let id = name.as_deref().and_then(|n| self.strings.id(n));
                self.service_accounts.retain(|(_, n), sa| {
                    sa.generation == generation || name.is_some() && Some(*n) != id
                });
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

    /// Rebuilds the string table with only the strings live copies and ServiceAccounts use,
    /// once at least half of it is garbage (renumbering rehashes every entry, and briefly holds
    /// two maps).
    fn renumber(&mut self) {
        let mut live = vec![false; self.strings.text.len()];
        let mut mark = |id: Id| {
            if let Some(slot) = live.get_mut(id as usize) {
                *slot = true;
            }
        };
        for ((ns, name), copy) in &self.copies {
            for id in [*ns, *name, copy.credential, copy.source] {
                mark(id);
            }
            copy.hash
                .into_iter()
                .chain(copy.data_hash)
                .for_each(&mut mark);
        }
        for ((ns, name), sa) in &self.service_accounts {
            mark(*ns);
            mark(*name);
            sa.injected.into_iter().for_each(&mut mark);
            sa.pull_secrets
                .iter()
                .flatten()
                .copied()
                .for_each(&mut mark);
        }
        let used = live.iter().filter(|l| **l).count();
        if used * 2 >= live.len() {
            return;
        }
        let old = std::mem::take(&mut self.strings);
        let strings = &mut self.strings;
        let mut remap = |id: Id| strings.intern(old.get(id));
        let copies = std::mem::take(&mut self.copies);
        let mut renumbered = HashMap::with_capacity(copies.len());
        for ((ns, name), mut copy) in copies {
            let key = (remap(ns), remap(name));
            copy.credential = remap(copy.credential);
            copy.source = remap(copy.source);
            copy.hash = copy.hash.map(&mut remap);
            copy.data_hash = copy.data_hash.map(&mut remap);
            renumbered.insert(key, copy);
        }
        self.copies = renumbered;
        let service_accounts = std::mem::take(&mut self.service_accounts);
        let mut renumbered = HashMap::with_capacity(service_accounts.len());
        for ((ns, name), mut sa) in service_accounts {
            let key = (remap(ns), remap(name));
            sa.injected = sa.injected.map(&mut remap);
            if let Some(names) = sa.pull_secrets.as_mut() {
                for id in names.iter_mut() {
                    *id = remap(*id);
                }
            }
            renumbered.insert(key, sa);
        }
        self.service_accounts = renumbered;
    }

    /// Whether `feed` has completed a list since it was added.
    pub fn is_synced(&self, feed: &Feed) -> bool {
        self.lists.get(feed).is_some_and(|(_, s)| *s)
    }

    /// Forgets a feed the config no longer needs, with everything it reported.
    pub fn remove_feed(&mut self, feed: &Feed) {
        self.lists.remove(feed);
        self.secrets.remove(feed);
        if let Feed::ServiceAccounts { name } = feed {
            match name.as_deref().map(|n| self.strings.id(n)) {
                None => self.service_accounts.clear(),
                Some(Some(id)) => self.service_accounts.retain(|(_, n), _| *n != id),
                Some(None) => {}
            }
        }
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

    /// Adds or replaces a managed copy, keeping its marks and the hash of its data (the data
    /// itself is the source's, and is dropped). A Secret that is not a copy the config accounts
    /// for (no label, marks naming no configured credential or source, another name) is not
    /// stored, and replaces any copy stored under its name. Returns whether it was stored.
    pub fn apply_copy(&mut self, secret: &Secret) -> bool {
        let meta = &secret.metadata;
        let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
            return false;
        };
        let marks = match CopyMarks::read(meta) {
            Some(m) if self.rules.copies.admits(name, &m) => m,
            _ => {
                self.delete_copy(ns, name);
                return false;
            }
        };
        let data_hash = secret
            .data
            .as_ref()
            .and_then(|d| d.get(DOCKER_CONFIG_JSON_KEY))
            .map(|b| content_hash_of(&b.0));
        let generation = self.generation(&Feed::Copies);
        let strings = &mut self.strings;
        let copy = StoredCopy {
            credential: strings.intern(marks.credential),
            source: strings.intern(marks.source),
            hash: marks.hash.map(|h| strings.intern(h)),
            data_hash: data_hash.map(|h| strings.intern(&h)),
            resource_version: Version::new(meta.resource_version.as_deref().unwrap_or("")),
            generation,
        };
        let key = (strings.intern(ns), strings.intern(name));
        self.foreign.remove(&(ns.to_string(), name.to_string()));
        self.copies.insert(key, copy);
        true
    }

    /// Removes a managed copy.
    pub fn delete_copy(&mut self, namespace: &str, name: &str) {
        if let (Some(ns), Some(name)) = (self.strings.id(namespace), self.strings.id(name)) {
            self.copies.remove(&(ns, name));
        }
    }

    /// Adds or replaces a ServiceAccount `serviceAccounts` names (others are not stored);
    /// says whether anything backfill reads changed.
    pub fn apply_service_account(&mut self, feed: &Feed, sa: &ServiceAccount) -> Stored {
        let meta = &sa.metadata;
        let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
            return Stored::Ignored;
        };
        if !self.rules.wants_service_account(name) {
            self.delete_service_account(ns, name);
            return Stored::Ignored;
        }
        let generation = self.generation(feed);
        let strings = &mut self.strings;
        let names = sa.image_pull_secrets.as_deref().unwrap_or_default();
        let pull_secrets = (names.len() <= MAX_STORED_PULL_SECRETS
            && names.iter().all(|r| r.name.len() <= MAX_NAME_LEN))
        .then(|| names.iter().map(|r| strings.intern(&r.name)).collect());
        let injected = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(INJECTED_ANNOTATION))
            .filter(|v| v.len() <= MAX_INJECTED_LEN)
            .map(|v| strings.intern(v));
        let stored = StoredServiceAccount {
            pull_secrets,
            injected,
            resource_version: Version::new(meta.resource_version.as_deref().unwrap_or("")),
            generation,
        };
        let key = (strings.intern(ns), strings.intern(name));
        let changed = self.service_accounts.get(&key).is_none_or(|before| {
            before.pull_secrets != stored.pull_secrets || before.injected != stored.injected
        });
        self.service_accounts.insert(key, stored);
        if changed {
            Stored::Changed
        } else {
            Stored::Unchanged
        }
    }

    /// Removes a ServiceAccount.
    pub fn delete_service_account(&mut self, namespace: &str, name: &str) {
        if let (Some(ns), Some(name)) = (self.strings.id(namespace), self.strings.id(name)) {
            self.service_accounts.remove(&(ns, name));
        }
    }

    /// Replaces what the verifier knows; returns whether anything changed.
    pub fn set_health(&mut self, health: Health) -> bool {
        if self.health == health {
            return false;
        }
        self.health = health;
        true
    }

    /// What the verifier knows now.
    pub fn health(&self) -> &Health {
        &self.health
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
            credential: self.strings.get(copy.credential),
            source: self.strings.get(copy.source),
            hash: text(copy.hash),
            data_hash: text(copy.data_hash),
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

    fn sa_view<'a>(
        &'a self,
        (ns, name): (Id, Id),
        sa: &'a StoredServiceAccount,
    ) -> ServiceAccountMeta<'a> {
        ServiceAccountMeta {
            namespace: self.strings.get(ns),
            name: self.strings.get(name),
            pull_secrets: sa
                .pull_secrets
                .as_ref()
                .map(|ids| ids.iter().map(|id| self.strings.get(*id)).collect()),
            injected: sa.injected.map(|id| self.strings.get(id)),
            resource_version: sa.resource_version.as_str(),
        }
    }

    /// Every stored ServiceAccount, in no particular order.
    pub fn service_accounts(&self) -> impl Iterator<Item = ServiceAccountMeta<'_>> {
        self.service_accounts
            .iter()
            .map(|(key, sa)| self.sa_view(*key, sa))
    }

    /// The stored ServiceAccounts of one namespace.
    pub fn service_accounts_in<'a>(
        &'a self,
        namespace: &str,
    ) -> impl Iterator<Item = ServiceAccountMeta<'a>> {
        let ns = self.strings.id(namespace);
        self.service_accounts
            .iter()
            .filter(move |((n, _), _)| Some(*n) == ns)
            .map(|(key, sa)| self.sa_view(*key, sa))
    }

    /// One stored ServiceAccount.
    pub fn service_account(&self, namespace: &str, name: &str) -> Option<ServiceAccountMeta<'_>> {
        let key = (self.strings.id(namespace)?, self.strings.id(name)?);
        self.service_accounts
            .get(&key)
            .map(|sa| self.sa_view(key, sa))
    }

    /// How many ServiceAccounts are stored.
    pub fn service_account_count(&self) -> usize {
        self.service_accounts.len()
    }

    /// An estimate of the heap the copies and ServiceAccounts take: entries at their size
    /// (hash maps hold about one spare slot per entry) and the string table. For the tests
    /// and benchmarks that bound what tenants can make the index hold.
    pub fn approx_bytes(&self) -> usize {
        let copy = std::mem::size_of::<((Id, Id), StoredCopy)>() * 2;
        let sa = std::mem::size_of::<((Id, Id), StoredServiceAccount)>() * 2;
        let names: usize = self
            .service_accounts
            .values()
            .filter_map(|s| s.pull_secrets.as_ref())
            .map(|n| n.len() * std::mem::size_of::<Id>())
            .sum();
        self.copies.len() * copy
            + self.service_accounts.len() * sa
            + names
            + self.strings.bytes()
            + self.strings.text.len() * (std::mem::size_of::<Box<str>>() * 2 + 8)
    }
}

impl ClusterView for Indexes {
    fn namespace(&self, name: &str) -> Option<&NamespaceInfo> {
        self.namespaces.get(name).map(|e| &e.value)
    }

    fn lists_every_namespace(&self) -> bool {
        true
    }

    fn registry_health(&self, credential: &str, registry: &str) -> Option<&RegistryHealth> {
        self.health.get(credential, registry)
    }

    fn rejected_somewhere(&self, credential: &str) -> bool {
        self.health.rejected_somewhere(credential)
    }

    fn credential_health(&self, credential: &str) -> Vec<(&str, &RegistryHealth)> {
        self.health.of(credential).collect()
    }

    fn changes(&self) -> u64 {
        self.changes
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
                credential: Some(copy.credential),
                source: Some(copy.source),
                hash: copy.data_hash,
            });
        }
        if let Some(secret) = self.secret(namespace, name) {
            return Some(Occupant::of(secret, None));
        }
        self.foreign
            .contains(&(namespace.to_string(), name.to_string()))
            .then(Occupant::foreign)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::LocalObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::marks::{
        CONTENT_HASH_ANNOTATION, CREDENTIAL_ANNOTATION, SOURCE_ANNOTATION, copy_labels,
    };

    const CONFIG: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    copyName: icr
    namespaces: {include: ["*"]}
serviceAccounts: ["default", "builder"]
"#;

    fn indexes() -> Indexes {
        let mut ix = Indexes::default();
        ix.set_rules(IndexRules::of(
            &Config::from_raw_yaml(CONFIG).expect("config"),
        ));
        ix
    }

    fn copy(ns: &str, name: &str, managed: bool, hash: &str, rv: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some(ns.to_string()),
                name: Some(name.to_string()),
                resource_version: Some(rv.to_string()),
                labels: managed.then(copy_labels),
                annotations: Some(BTreeMap::from([
                    (CREDENTIAL_ANNOTATION.to_string(), "icr".to_string()),
                    (
                        SOURCE_ANNOTATION.to_string(),
                        "default/all-icr-io".to_string(),
                    ),
                    (CONTENT_HASH_ANNOTATION.to_string(), hash.to_string()),
                ])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                DOCKER_CONFIG_JSON_KEY.to_string(),
                ByteString(format!("data of {hash}").into_bytes()),
            )])),
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

    fn sa(ns: &str, name: &str, pull_secrets: &[&str], rv: &str) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                namespace: Some(ns.to_string()),
                name: Some(name.to_string()),
                resource_version: Some(rv.to_string()),
                ..Default::default()
            },
            image_pull_secrets: Some(
                pull_secrets
                    .iter()
                    .map(|n| LocalObjectReference {
                        name: n.to_string(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_relist_drops_what_it_did_not_list_again() {
        let mut ix = indexes();
        ix.list_started(&Feed::Copies);
        ix.apply_copy(&copy("a", "icr", true, "h1", "1"));
        ix.apply_copy(&copy("b", "icr", true, "h1", "2"));
        assert!(!ix.is_synced(&Feed::Copies));
        ix.list_done(&Feed::Copies);
        assert!(ix.is_synced(&Feed::Copies));
        assert_eq!(ix.copy_count(), 2);

        ix.list_started(&Feed::Copies);
        ix.apply_copy(&copy("a", "icr", true, "h2", "3"));
        // During the relist the old view stays readable.
        assert_eq!(ix.copy_count(), 2);
        assert!(ix.is_synced(&Feed::Copies));
        ix.list_done(&Feed::Copies);
        assert_eq!(ix.copy_count(), 1);
        let c = ix.copy("a", "icr").unwrap();
        assert_eq!(c.hash, Some("h2"));
        assert_eq!(c.resource_version, "3");
    }

    #[test]
    fn a_copy_is_known_by_the_hash_of_its_data_not_only_its_annotation() {
        let mut ix = indexes();
        let mut tampered = copy("a", "icr", true, "h1", "1");
        tampered.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_JSON_KEY.to_string(),
            ByteString(b"something else".to_vec()),
        )]));
        ix.apply_copy(&tampered);
        let c = ix.copy("a", "icr").unwrap();
        assert_eq!(c.hash, Some("h1"));
        assert_eq!(
            c.data_hash,
            Some(content_hash_of(b"something else").as_str())
        );
        assert_eq!(ix.occupant("a", "icr").unwrap().hash, c.data_hash);
    }

    #[test]
    fn labelled_secrets_the_config_does_not_account_for_are_not_stored() {
        let mut ix = indexes();
        // Wrong name for the credential, unknown credential, wrong source, huge marks.
        ix.apply_copy(&copy("a", "all-icr-io", true, "h1", "1"));
        let mut other = copy("a", "icr", true, "h1", "1");
        other
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(CREDENTIAL_ANNOTATION.to_string(), "nope".to_string());
        ix.apply_copy(&other);
        let mut source = copy("b", "icr", true, "h1", "1");
        source
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(SOURCE_ANNOTATION.to_string(), "x/y".to_string());
        ix.apply_copy(&source);
        let mut huge = copy("c", "icr", true, "h1", "1");
        huge.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(SOURCE_ANNOTATION.to_string(), "x".repeat(100_000));
        ix.apply_copy(&huge);
        assert_eq!(ix.copy_count(), 0);
        assert!(ix.strings.text.is_empty(), "{:?}", ix.strings.text);

        // A stored copy relabelled into something else leaves.
        ix.apply_copy(&copy("a", "icr", true, "h1", "1"));
        assert_eq!(ix.copy_count(), 1);
        ix.apply_copy(&other);
        assert_eq!(ix.copy_count(), 0);

        // New rules drop copies they do not admit.
        ix.apply_copy(&copy("a", "icr", true, "h1", "1"));
        assert!(ix.set_rules(IndexRules::default()));
        assert_eq!(ix.copy_count(), 0);
        assert!(!ix.set_rules(IndexRules::default()));
    }

    #[test]
    fn strings_of_copies_gone_are_dropped_once_they_are_most_of_the_table() {
        let mut ix = indexes();
        ix.list_started(&Feed::Copies);
        for ns in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            ix.apply_copy(&copy(ns, "icr", true, "h1", "1"));
        }
        ix.list_done(&Feed::Copies);
        ix.list_started(&Feed::Copies);
        ix.apply_copy(&copy("a", "icr", true, "h1", "2"));
        ix.list_done(&Feed::Copies);
        assert!(ix.strings.id("b").is_none());
        assert_eq!(
            ix.strings.text.len(),
            5,
            "a, icr (name and credential), h1, source, data hash"
        );
        assert_eq!(ix.copy("a", "icr").unwrap().resource_version, "2");
    }

    #[test]
    fn copies_share_their_strings_and_keep_long_versions() {
        let mut ix = indexes();
        ix.apply_copy(&copy("a", "icr", true, "h1", "1"));
        let long = "9".repeat(40);
        ix.apply_copy(&copy("b", "icr", true, "h1", &long));
        assert_eq!(
            ix.strings.text.len(),
            6,
            "a, b, icr (name and credential), h1, source, data hash"
        );
        assert_eq!(ix.copy("b", "icr").unwrap().resource_version, long);
        assert_eq!(ix.copy("a", "icr").unwrap().resource_version, "1");
    }

    #[test]
    fn an_unlabelled_copy_leaves_the_copies() {
        let mut ix = indexes();
        ix.apply_copy(&copy("a", "icr", true, "h1", "1"));
        ix.apply_copy(&copy("a", "icr", false, "h1", "2"));
        assert!(ix.copy("a", "icr").is_none());
    }

    #[test]
    fn occupants_come_from_copies_then_secrets_then_foreign_names() {
        let mut ix = indexes();
        ix.apply_copy(&copy("a", "icr", true, "h1", "1"));
        let feed = Feed::SourceNamed {
            namespace: "default".into(),
            name: "all-icr-io".into(),
        };
        ix.apply_secret(&feed, secret("default", "all-icr-io"));
        ix.mark_foreign("b", "icr");

        let c = ix.occupant("a", "icr").unwrap();
        assert!(c.managed);
        assert_eq!(c.hash, Some(content_hash_of(b"data of h1").as_str()));
        assert!(!ix.occupant("default", "all-icr-io").unwrap().managed);
        assert_eq!(ix.occupant("b", "icr"), Some(Occupant::foreign()));
        assert_eq!(ix.occupant("c", "icr"), None);

        // A copy made later in place of the foreign secret wins.
        ix.apply_copy(&copy("b", "icr", true, "h1", "4"));
        assert!(ix.occupant("b", "icr").unwrap().managed);
        ix.delete_copy("b", "icr");
        assert_eq!(ix.occupant("b", "icr"), None);
    }

    #[test]
    fn feeds_are_replaced_independently() {
        let mut ix = indexes();
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
        let mut ix = indexes();
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

    #[test]
    fn only_named_service_accounts_are_kept_with_their_pull_secrets_in_order() {
        let mut ix = indexes();
        let default = Feed::ServiceAccounts {
            name: Some("default".into()),
        };
        let builder = Feed::ServiceAccounts {
            name: Some("builder".into()),
        };
        ix.list_started(&default);
        assert_eq!(
            ix.apply_service_account(
                &default,
                &sa("a", "default", &["x", "default-dockercfg-1"], "1")
            ),
            Stored::Changed
        );
        assert_eq!(
            ix.apply_service_account(&default, &sa("a", "deployer", &[], "1")),
            Stored::Ignored
        );
        ix.list_done(&default);
        ix.list_started(&builder);
        ix.apply_service_account(&builder, &sa("a", "builder", &[], "3"));
        ix.list_done(&builder);
        let stored = ix.service_account("a", "default").unwrap();
        assert_eq!(
            stored.pull_secrets.as_deref(),
            Some(&["x", "default-dockercfg-1"][..])
        );
        assert_eq!(stored.resource_version, "1");
        // Only the resourceVersion changed: nothing for backfill.
        assert_eq!(
            ix.apply_service_account(
                &default,
                &sa("a", "default", &["x", "default-dockercfg-1"], "2")
            ),
            Stored::Unchanged
        );
        // A relist of one name's feed leaves the other name's ServiceAccounts alone.
        ix.list_started(&default);
        ix.list_done(&default);
        assert!(ix.service_account("a", "default").is_none());
        assert!(ix.service_account("a", "builder").is_some());
        assert_eq!(ix.service_account_count(), 1);
    }

    #[test]
    fn a_service_account_with_too_many_names_is_kept_without_them() {
        let mut ix = indexes();
        let feed = Feed::ServiceAccounts { name: None };
        let names: Vec<String> = (0..1000).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        ix.apply_service_account(&feed, &sa("a", "default", &refs, "1"));
        assert_eq!(
            ix.service_account("a", "default").unwrap().pull_secrets,
            None
        );
        assert!(ix.strings.text.len() <= 3, "{}", ix.strings.text.len());
    }

    #[test]
    fn service_account_feeds_follow_the_names() {
        let config = |sas: &str| {
            Config::from_raw_yaml(&format!("credentials: []\nserviceAccounts: {sas}\n"))
                .expect("config")
        };
        assert_eq!(
            service_account_feeds(&config(r#"["default", "builder", "default"]"#)),
            [
                Feed::ServiceAccounts {
                    name: Some("builder".into())
                },
                Feed::ServiceAccounts {
                    name: Some("default".into())
                }
            ]
        );
        assert_eq!(
            service_account_feeds(&config(r#"["default", "ci-*"]"#)),
            [Feed::ServiceAccounts { name: None }]
        );
        assert!(service_account_feeds(&config("[]")).is_empty());
    }
}
