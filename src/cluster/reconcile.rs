//! The reconciler: keeps copies equal to their sources, backfills ServiceAccounts, prunes
//! unwanted copies when asked, retries what admissions could not finish, and reports copies
//! whose source is gone.
//!
//! What to do with the copies is planned by [`plan_copies`], a pure function of the catalog
//! and the index; the loop only carries the plan out and lists ServiceAccounts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::ListParams;
use tokio::sync::Notify;

use super::index::Indexes;
use super::writer::{Made, Writer};
use super::{Shared, lock};
use crate::policy::{
    Catalog, CopyRequest, INJECTED_ANNOTATION, PreparedSource, Subject, SubjectKind,
};
use crate::state::ClusterView;

/// Writes the reconciler keeps in flight at once: enough to hide API latency, few enough to
/// leave room for admissions under the rate limit.
const WRITE_CONCURRENCY: usize = 8;
/// ServiceAccounts per list page.
const PAGE_SIZE: u32 = 500;

/// What asks the reconciler to run, and the work it was handed.
#[derive(Debug, Default)]
pub struct Triggers {
    wake: Notify,
    full_backfill: AtomicBool,
    namespaces: Mutex<BTreeSet<String>>,
    deferred: Mutex<Vec<(CopyRequest, Instant)>>,
}

/// How long a copy an admission could not make is retried before it is given up (the
/// namespace never appeared, or the API kept refusing); backfill covers ServiceAccounts after.
const DEFERRED_FOR: Duration = Duration::from_secs(600);

impl Triggers {
    /// Copies may differ from their sources: compare them.
    pub fn sync(&self) {
        self.wake.notify_one();
    }

    /// Check every ServiceAccount (start-up, config change).
    pub fn backfill_all(&self) {
        self.full_backfill.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Check the ServiceAccounts of one namespace (it is new, or its labels changed).
    pub fn backfill_namespace(&self, namespace: String) {
        lock(&self.namespaces).insert(namespace);
        self.wake.notify_one();
    }

    /// A copy an admission could not make; try again.
    pub fn defer(&self, request: CopyRequest) {
        let mut deferred = lock(&self.deferred);
        if !deferred
            .iter()
            .any(|(d, _)| d.namespace == request.namespace && d.name() == request.name())
        {
            deferred.push((request, Instant::now()));
        }
        drop(deferred);
        self.wake.notify_one();
    }
}

/// How one managed copy stands against the current catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CopyState {
    /// Equal to its source.
    Current,
    /// Older than its source: to update.
    Stale,
    /// Its source secret is gone: kept, reported.
    SourceMissing,
    /// No rule wants it here any more: deleted when `prune` is on.
    Unwanted,
}

impl CopyState {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Current => "current",
            CopyState::Stale => "stale",
            CopyState::SourceMissing => "source_missing",
            CopyState::Unwanted => "unwanted",
        }
    }
}

/// What to do with the copies.
#[derive(Debug, Default)]
pub struct CopyPlan {
    /// Copies to bring to their source's content: namespace, source, resourceVersion seen.
    pub updates: Vec<(String, Arc<PreparedSource>, String)>,
    /// Copies to delete (only with `prune: true`): namespace, name, resourceVersion seen.
    pub deletes: Vec<(String, String, String)>,
    /// Copies by credential (or `(unknown)`) and state.
    pub counts: BTreeMap<(String, &'static str), i64>,
    /// Per credential, sources that are gone while copies of them remain.
    pub missing_sources: BTreeMap<String, BTreeSet<String>>,
}

/// Compares every managed copy with the catalog. Copies in terminating or unknown namespaces
/// are left alone (nothing may be written there).
pub fn plan_copies(catalog: &Catalog, ix: &Indexes) -> CopyPlan {
    let config = catalog.config();
    let mut wanted: HashMap<(&str, String), &Arc<PreparedSource>> = HashMap::new();
    for (credential, source) in catalog.prepared_sources() {
        wanted.insert((credential.name.as_str(), source.source_ref()), source);
    }
    let mut plan = CopyPlan::default();
    for (ns, name, copy) in ix.copies() {
        let Some(info) = ix.namespace(ns) else {
            continue;
        };
        if info.terminating {
            continue;
        }
        let credential_name = copy.credential.unwrap_or("(unknown)");
        let source_ref = copy.source.unwrap_or("");
        let credential = config.credential(credential_name);
        let in_scope = credential.is_some_and(|c| c.namespaces.admits(ns, &info.labels))
            && catalog.namespace_exclusion(info).is_none();
        let state = match wanted.get(&(credential_name, source_ref.to_string())) {
            _ if !in_scope => CopyState::Unwanted,
            Some(source) if source.copy_name != name => CopyState::Unwanted,
            Some(source) if copy.hash == Some(source.hash.as_str()) => CopyState::Current,
            Some(source) => {
                plan.updates.push((
                    ns.to_string(),
                    (*source).clone(),
                    copy.resource_version.to_string(),
                ));
                CopyState::Stale
            }
            None => {
                let exists = source_ref
                    .split_once('/')
                    .is_some_and(|(sns, sname)| ix.secret(sns, sname).is_some());
                if exists {
                    // The source is there but no longer selected, or no longer usable: the
                    // catalog's problems say why; the copy is not wanted from it.
                    CopyState::Unwanted
                } else {
                    plan.missing_sources
                        .entry(credential_name.to_string())
                        .or_default()
                        .insert(source_ref.to_string());
                    CopyState::SourceMissing
                }
            }
        };
        if state == CopyState::Unwanted && config.prune {
            plan.deletes.push((
                ns.to_string(),
                name.to_string(),
                copy.resource_version.to_string(),
            ));
        }
        *plan
            .counts
            .entry((credential_name.to_string(), state.as_str()))
            .or_default() += 1;
    }
    plan.updates
        .sort_by(|a, b| (&a.0, &a.1.copy_name).cmp(&(&b.0, &b.1.copy_name)));
    plan.deletes.sort();
    plan
}

/// What the loop remembers between passes.
#[derive(Default)]
struct Memory {
    /// Since when each stale copy has been stale.
    stale_since: HashMap<(String, String), Instant>,
    /// Credentials whose missing source was reported.
    missing_reported: BTreeSet<String>,
    /// Whether the first full backfill ran.
    backfilled: bool,
    /// Namespaces whose backfill failed, tried again at the next retry tick.
    retry_namespaces: BTreeSet<String>,
}

/// Runs the reconciler until the task is aborted.
pub(crate) async fn run(shared: Arc<Shared>, writer: Arc<Writer>) {
    let mut memory = Memory::default();
    let mut backfill = tokio::time::interval(
        shared
            .args
            .options
            .backfill_interval
            .max(Duration::from_secs(1)),
    );
    backfill.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(
        shared
            .args
            .options
            .retry_interval
            .max(Duration::from_millis(100)),
    );
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Both fire at once; the first pass waits for a snapshot anyway.
    backfill.tick().await;
    retry.tick().await;
    loop {
        let mut retry_now = false;
        tokio::select! {
            () = shared.triggers.wake.notified() => {}
            _ = backfill.tick() => shared.triggers.full_backfill.store(true, Ordering::Relaxed),
            _ = retry.tick() => retry_now = true,
        }
        let Some(snapshot) = shared.snapshot() else {
            continue;
        };
        let catalog = &snapshot.catalog;
        retry_deferred(&shared, &writer).await;
        sync_copies(&shared, &writer, catalog, &mut memory).await;
        let full =
            shared.triggers.full_backfill.swap(false, Ordering::Relaxed) || !memory.backfilled;
        let mut namespaces = std::mem::take(&mut *lock(&shared.triggers.namespaces));
        if retry_now {
            namespaces.append(&mut memory.retry_namespaces);
        }
        if full {
            let failed = backfill_service_accounts(&shared, &writer, catalog, None).await;
            match failed {
                // The list itself failed: the whole backfill is retried.
                None => shared.triggers.full_backfill.store(true, Ordering::Relaxed),
                Some(failed) => {
                    memory.backfilled = true;
                    memory.retry_namespaces.extend(failed);
                }
            }
        } else {
            for ns in namespaces {
                match backfill_service_accounts(&shared, &writer, catalog, Some(&ns)).await {
                    None => {
                        memory.retry_namespaces.insert(ns);
                    }
                    Some(failed) => memory.retry_namespaces.extend(failed),
                }
            }
        }
    }
}

async fn retry_deferred(shared: &Shared, writer: &Writer) {
    let deferred = std::mem::take(&mut *lock(&shared.triggers.deferred));
    for (request, since) in deferred {
        let ns = &request.namespace;
        if since.elapsed() > DEFERRED_FOR {
            tracing::warn!(
                namespace = %ns,
                secret = %request.name(),
                "copy given up after {DEFERRED_FOR:?} of failures"
            );
            continue;
        }
        // Nothing is written into a terminating namespace; one the watch has not reported yet
        // (just created) is waited for.
        let state = shared.index.read().namespace(ns).map(|n| n.terminating);
        match state {
            Some(true) => continue,
            None => {
                lock(&shared.triggers.deferred).push((request, since));
                continue;
            }
            Some(false) => {}
        }
        match writer.ensure(&request).await {
            Made::Failed(reason) => {
                tracing::warn!(
                    namespace = %ns,
                    secret = %request.name(),
                    "copy still not made, retrying later: {reason}"
                );
                lock(&shared.triggers.deferred).push((request, since));
            }
            Made::Ready => tracing::info!(
                namespace = %ns,
                secret = %request.name(),
                "deferred copy made"
            ),
            Made::Foreign | Made::Conflict(_) => {}
        }
    }
}

async fn sync_copies(
    shared: &Shared,
    writer: &Arc<Writer>,
    catalog: &Catalog,
    memory: &mut Memory,
) {
    let plan = plan_copies(catalog, &shared.index.read());
    shared.metrics.set_copies(&plan.counts);

    // Missing sources: reported when they go, and when they come back.
    let missing: BTreeSet<String> = plan.missing_sources.keys().cloned().collect();
    for (credential, sources) in &plan.missing_sources {
        if !memory.missing_reported.contains(credential) {
            let copies = plan
                .counts
                .get(&(credential.clone(), CopyState::SourceMissing.as_str()))
                .copied()
                .unwrap_or(0);
            tracing::warn!(
                credential = %credential,
                copies,
                "source secret {} is gone; its copies are kept so that running workloads keep pulling",
                sources.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    for credential in memory.missing_reported.difference(&missing) {
        tracing::info!(credential = %credential, "no copy is left without its source");
    }
    memory.missing_reported = missing;

    // Staleness, for the metric.
    let now = Instant::now();
    let stale: BTreeSet<(String, String)> = plan
        .updates
        .iter()
        .map(|(ns, s, _)| (ns.clone(), s.copy_name.clone()))
        .collect();
    memory.stale_since.retain(|k, _| stale.contains(k));
    for key in &stale {
        memory.stale_since.entry(key.clone()).or_insert(now);
    }
    let oldest = memory
        .stale_since
        .values()
        .map(|t| now.duration_since(*t))
        .max()
        .unwrap_or_default();
    shared.metrics.set_oldest_stale_copy(oldest);

    let current = current_sources(shared, &plan.updates).await;
    let updates: Vec<_> = plan
        .updates
        .iter()
        .filter(|(_, source, _)| current.contains(&source.source_ref()))
        .cloned()
        .collect();
    if !updates.is_empty() {
        let writes = updates.into_iter().map(|(ns, source, rv)| {
            let writer = writer.clone();
            async move {
                let result = writer.update(&ns, &source, &rv).await;
                (ns, source.credential.clone(), result)
            }
        });
        let results: Vec<(String, String, Result<bool, String>)> = futures::stream::iter(writes)
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut updated: BTreeMap<&str, usize> = BTreeMap::new();
        for (ns, credential, result) in &results {
            match result {
                Ok(true) => *updated.entry(credential.as_str()).or_default() += 1,
                Ok(false) => {}
                Err(reason) => tracing::warn!(
                    namespace = %ns,
                    credential = %credential,
                    "copy not updated, retrying later: {reason}"
                ),
            }
        }
        for (credential, n) in updated {
            tracing::info!(credential = %credential, copies = n, "copies updated to their source's content");
        }
    }
    for (ns, name, rv) in &plan.deletes {
        match writer.delete(ns, name, rv).await {
            Ok(true) => tracing::info!(namespace = %ns, secret = %name, "unwanted copy pruned"),
            Ok(false) => {}
            Err(reason) => tracing::warn!(
                namespace = %ns,
                secret = %name,
                "unwanted copy not pruned, retrying later: {reason}"
            ),
        }
    }
}

/// The sources among those of `updates` that the API still holds at the version the catalog
/// was built from. Another replica may have seen a newer version and updated copies already:
/// writing this replica's older content over them would make copies flap between versions.
/// Comparing for equality only (resourceVersions are opaque); a source that differs is
/// skipped until the watch catches up and the catalog is rebuilt.
async fn current_sources(
    shared: &Shared,
    updates: &[(String, Arc<PreparedSource>, String)],
) -> BTreeSet<String> {
    let mut sources: BTreeMap<String, &PreparedSource> = BTreeMap::new();
    for (_, source, _) in updates {
        sources.entry(source.source_ref()).or_insert(source);
    }
    let mut current = BTreeSet::new();
    for (source_ref, source) in sources {
        shared.throttle().await;
        let api: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(shared.client.clone(), &source.source_namespace);
        match api.get_metadata_opt(&source.source_name).await {
            Ok(Some(m))
                if m.metadata.resource_version.as_deref() == Some(&source.source_version) =>
            {
                current.insert(source_ref);
            }
            Ok(_) => tracing::debug!(
                source = %source_ref,
                "source changed since the catalog was built; copies wait for the next pass"
            ),
            Err(e) => {
                shared.metrics.reconcile_error("get_source");
                tracing::warn!(
                    source = %source_ref,
                    "cannot check the source before updating its copies, retrying later: {}",
                    super::writer::describe(&e)
                );
            }
        }
    }
    current
}

/// Lists ServiceAccounts (all, or one namespace's) and gives those named by `serviceAccounts`
/// the references and copies they miss. Returns the namespaces where something failed, or
/// `None` when the list itself failed.
async fn backfill_service_accounts(
    shared: &Shared,
    writer: &Writer,
    catalog: &Catalog,
    namespace: Option<&str>,
) -> Option<BTreeSet<String>> {
    let mut failed = BTreeSet::new();
    if catalog.config().service_accounts.is_empty() {
        return Some(failed);
    }
    let api: Api<ServiceAccount> = match namespace {
        Some(ns) => Api::namespaced(shared.client.clone(), ns),
        None => Api::all(shared.client.clone()),
    };
    let mut continue_token: Option<String> = None;
    let mut checked = 0usize;
    let mut patched = 0usize;
    loop {
        shared.throttle().await;
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(token) = &continue_token {
            params = params.continue_token(token);
        }
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(e) => {
                shared.metrics.reconcile_error("list_service_accounts");
                tracing::warn!(
                    namespace = namespace.unwrap_or("(all)"),
                    "cannot list ServiceAccounts, retrying later: {}",
                    super::writer::describe(&e)
                );
                return None;
            }
        };
        for sa in &page.items {
            checked += 1;
            match backfill_one(shared, writer, catalog, sa).await {
                Backfilled::Patched => patched += 1,
                Backfilled::Unchanged => {}
                Backfilled::Failed => {
                    failed.extend(sa.metadata.namespace.clone());
                }
            }
        }
        continue_token = page.metadata.continue_.filter(|t| !t.is_empty());
        if continue_token.is_none() {
            break;
        }
    }
    if namespace.is_none() || patched > 0 {
        tracing::info!(
            namespace = namespace.unwrap_or("(all)"),
            checked,
            patched,
            "ServiceAccount backfill done"
        );
    }
    Some(failed)
}

/// What backfilling one ServiceAccount did.
enum Backfilled {
    Unchanged,
    Patched,
    /// A copy or the patch failed: try the namespace again later.
    Failed,
}

/// Brings one ServiceAccount in line.
async fn backfill_one(
    shared: &Shared,
    writer: &Writer,
    catalog: &Catalog,
    sa: &ServiceAccount,
) -> Backfilled {
    let (Some(ns), Some(name)) = (
        sa.metadata.namespace.as_deref(),
        sa.metadata.name.as_deref(),
    ) else {
        return Backfilled::Unchanged;
    };
    if !catalog.config().wants_service_account(name) {
        return Backfilled::Unchanged;
    }
    let existing: Vec<&str> = sa
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.as_str())
        .collect();
    let decision = {
        let ix = shared.index.read();
        let Some(info) = ix.namespace(ns) else {
            return Backfilled::Unchanged;
        };
        let subject = Subject {
            kind: SubjectKind::ServiceAccount,
            name: Some(name),
            images: Vec::new(),
            existing: existing.clone(),
            labels: sa.metadata.labels.as_ref(),
            annotations: sa.metadata.annotations.as_ref(),
        };
        catalog.decide(&subject, info, &*ix, false)
    };
    if decision.skipped.is_some() {
        return Backfilled::Unchanged;
    }
    let mut add = decision.add.clone();
    let mut failed = false;
    for copy in decision.copies.iter().filter(|c| !c.update) {
        match writer.ensure(copy).await {
            Made::Ready => {}
            Made::Failed(reason) => {
                tracing::warn!(
                    namespace = %ns,
                    secret = %copy.name(),
                    "copy not made for ServiceAccount {name}, retrying later: {reason}"
                );
                failed = true;
                add.retain(|n| n != copy.name());
            }
            Made::Foreign | Made::Conflict(_) => add.retain(|n| n != copy.name()),
        }
    }
    // A name the injector added before and someone removed since stays removed: backfill adds
    // what is missing, it does not fight other writers.
    let recorded: Vec<&str> = sa
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INJECTED_ANNOTATION))
        .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    add.retain(|n| !recorded.contains(&n.as_str()));
    if add.is_empty() {
        return if failed {
            Backfilled::Failed
        } else {
            Backfilled::Unchanged
        };
    }
    let mut injected: Vec<&str> = recorded.clone();
    injected.extend(add.iter().map(String::as_str));
    match writer
        .add_references(ns, name, &add, &injected.join(","))
        .await
    {
        Ok(()) => {
            tracing::info!(
                namespace = %ns,
                service_account = %name,
                added = %add.join(","),
                "ServiceAccount backfilled"
            );
            if failed {
                Backfilled::Failed
            } else {
                Backfilled::Patched
            }
        }
        Err(reason) => {
            tracing::warn!(
                namespace = %ns,
                service_account = %name,
                "ServiceAccount not patched, retrying later: {reason}"
            );
            Backfilled::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::cluster::index::Feed;
    use crate::config::Config;
    use crate::state::NamespaceInfo;

    const CONFIG: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    namespaces: {include: ["team-*"]}
  - name: hub
    secret: default/hub
    namespaces: {include: ["team-*"]}
prune: PRUNE
"#;

    fn source(name: &str, registry: &str) -> Secret {
        let json = format!(r#"{{"auths":{{"{registry}":{{"auth":"dTpw"}}}}}}"#);
        Secret {
            metadata: ObjectMeta {
                namespace: Some("default".to_string()),
                name: Some(name.to_string()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/dockerconfigjson".to_string()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                ByteString(json.into_bytes()),
            )])),
            ..Default::default()
        }
    }

    fn feed(name: &str) -> Feed {
        Feed::SourceNamed {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    /// An index with both sources, namespaces team-a, team-b (terminating) and other, and a
    /// catalog built from it.
    fn setup(prune: bool) -> (Indexes, Catalog) {
        let mut ix = Indexes::default();
        ix.apply_secret(&feed("all-icr-io"), source("all-icr-io", "icr.io"));
        ix.apply_secret(&feed("hub"), source("hub", "docker.io"));
        for name in ["team-a", "other", "default"] {
            ix.apply_namespace(&Feed::Namespaces, NamespaceInfo::named(name));
        }
        let mut gone = NamespaceInfo::named("team-b");
        gone.terminating = true;
        ix.apply_namespace(&Feed::Namespaces, gone);
        let config =
            Config::from_raw_yaml(&CONFIG.replace("PRUNE", &prune.to_string())).expect("config");
        let catalog = Catalog::build(config, &ix, Some("pull-secret-injector"));
        (ix, catalog)
    }

    fn copy_of(catalog: &Catalog, credential: &str, ns: &str, rv: &str) -> Secret {
        let (_, source) = catalog
            .prepared_sources()
            .find(|(c, _)| c.name == credential)
            .expect("source");
        let mut copy = source.copy_secret(ns);
        copy.metadata.resource_version = Some(rv.to_string());
        copy
    }

    fn stale(mut copy: Secret) -> Secret {
        copy.metadata
            .annotations
            .as_mut()
            .expect("annotations")
            .insert(
                crate::policy::CONTENT_HASH_ANNOTATION.to_string(),
                "old".to_string(),
            );
        copy
    }

    #[test]
    fn only_stale_copies_are_updated_and_terminating_namespaces_are_left_alone() {
        let (mut ix, catalog) = setup(false);
        ix.apply_copy(&copy_of(&catalog, "icr", "team-a", "5").metadata);
        ix.apply_copy(&stale(copy_of(&catalog, "hub", "team-a", "6")).metadata);
        ix.apply_copy(&stale(copy_of(&catalog, "hub", "team-b", "7")).metadata);
        let plan = plan_copies(&catalog, &ix);
        let updates: Vec<_> = plan
            .updates
            .iter()
            .map(|(ns, s, rv)| (ns.as_str(), s.copy_name.as_str(), rv.as_str()))
            .collect();
        assert_eq!(updates, [("team-a", "hub", "6")]);
        assert_eq!(plan.counts[&("icr".to_string(), "current")], 1);
        assert_eq!(plan.counts[&("hub".to_string(), "stale")], 1);
        assert_eq!(plan.counts.len(), 2, "{:?}", plan.counts);
        assert!(plan.deletes.is_empty());
    }

    #[test]
    fn a_missing_source_keeps_its_copies_and_is_reported() {
        let (mut ix, catalog) = setup(true);
        ix.apply_copy(&copy_of(&catalog, "hub", "team-a", "5").metadata);
        ix.delete_secret(&feed("hub"), "default", "hub");
        let catalog = Catalog::build(catalog.config().clone(), &ix, None);
        let plan = plan_copies(&catalog, &ix);
        assert!(
            plan.deletes.is_empty(),
            "copies of a vanished source are kept"
        );
        assert!(plan.updates.is_empty());
        assert_eq!(plan.counts[&("hub".to_string(), "source_missing")], 1);
        assert_eq!(
            plan.missing_sources["hub"],
            BTreeSet::from(["default/hub".to_string()])
        );
    }

    #[test]
    fn unwanted_copies_are_deleted_only_with_prune() {
        for prune in [false, true] {
            let (mut ix, catalog) = setup(prune);
            // Out of scope (namespace `other`), and a credential the config no longer has.
            ix.apply_copy(&copy_of(&catalog, "icr", "other", "5").metadata);
            let mut orphan = copy_of(&catalog, "icr", "team-a", "6");
            orphan.metadata.name = Some("retired".to_string());
            orphan
                .metadata
                .annotations
                .as_mut()
                .expect("annotations")
                .insert(
                    crate::policy::CREDENTIAL_ANNOTATION.to_string(),
                    "retired".to_string(),
                );
            ix.apply_copy(&orphan.metadata);
            let plan = plan_copies(&catalog, &ix);
            assert_eq!(plan.counts[&("icr".to_string(), "unwanted")], 1);
            assert_eq!(plan.counts[&("retired".to_string(), "unwanted")], 1);
            let deletes: Vec<_> = plan
                .deletes
                .iter()
                .map(|(ns, n, rv)| (ns.as_str(), n.as_str(), rv.as_str()))
                .collect();
            if prune {
                assert_eq!(
                    deletes,
                    [("other", "all-icr-io", "5"), ("team-a", "retired", "6")]
                );
            } else {
                assert!(deletes.is_empty());
            }
        }
    }
}
