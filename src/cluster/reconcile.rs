//! The reconciler: keeps copies equal to their sources, backfills ServiceAccounts, prunes
//! unwanted copies when asked, retries what admissions could not finish, and reports copies
//! whose source is gone.
//!
//! What to do with the copies is planned by [`plan_copies`], a pure function of the catalog
//! and the index; the loop only carries the plan out. ServiceAccounts are read from the index
//! (the ServiceAccounts watch keeps it), so a backfill of every namespace costs no API call
//! but the patches it makes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Notify;

use super::Shared;
use super::api::{ApiAction, WriteError, describe};
use super::writer::{Budget, Made, Writer};
use crate::lock::lock;
use crate::policy::{
    Catalog, CopyRequest, CopyState, PreparedSource, Subject, SubjectKind, plan_copies,
};
use crate::view::ClusterView;
use crate::view::live::Indexes;

/// Writes the reconciler keeps in flight at once: enough to hide API latency, few enough to
/// leave room for admissions under the rate limit.
const WRITE_CONCURRENCY: usize = 8;
/// The longest wait between attempts to update a copy that keeps refusing.
const MAX_UPDATE_BACKOFF: Duration = Duration::from_secs(600);

/// What asks the reconciler to run, and the work it was handed.
#[derive(Debug, Default)]
pub struct Triggers {
    wake: Notify,
    full_backfill: AtomicBool,
    namespaces: Mutex<BTreeSet<String>>,
    service_accounts: Mutex<BTreeSet<(String, String)>>,
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

    /// Check every ServiceAccount (start-up, config or source change, a relisted watch).
    pub fn backfill_all(&self) {
        self.full_backfill.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Check the ServiceAccounts of one namespace (it is new, or its labels changed).
    pub fn backfill_namespace(&self, namespace: String) {
        lock(&self.namespaces).insert(namespace);
        self.wake.notify_one();
    }

    /// Check one ServiceAccount (it appeared, or its pull secrets changed).
    pub fn backfill_service_account(&self, namespace: String, name: String) {
        lock(&self.service_accounts).insert((namespace, name));
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

    /// Whether a full backfill was asked for, taking the request as the loop does: for the
    /// unit tests of what asks for one.
    #[cfg(test)]
    pub(super) fn take_full_backfill(&self) -> bool {
        self.full_backfill.swap(false, Ordering::Relaxed)
    }
}

/// A copy whose update or delete was refused: when to try again, and how often it failed.
#[derive(Debug, Clone)]
struct Refused {
    attempts: u32,
    next: Instant,
}

impl Refused {
    /// Counts one more refusal and sets the next try: `retry` doubled per refusal, capped.
    fn refused(
        map: &mut HashMap<(String, String), Refused>,
        key: (String, String),
        now: Instant,
        retry: Duration,
    ) -> (u32, Duration) {
        let entry = map.entry(key).or_insert(Refused {
            attempts: 0,
            next: now,
        });
        entry.attempts += 1;
        let backoff = retry
            .saturating_mul(1 << entry.attempts.min(16))
            .min(MAX_UPDATE_BACKOFF);
        entry.next = now + backoff;
        (entry.attempts, backoff)
    }
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
    /// Copies whose update was refused, by namespace and name.
    refused: HashMap<(String, String), Refused>,
    /// Unwanted copies whose delete was refused (prune without the delete grant, say).
    refused_deletes: HashMap<(String, String), Refused>,
    /// Every source a catalog of this process prepared.
    seen_sources: BTreeSet<String>,
}

/// Runs the reconciler until the task is aborted.
pub(crate) async fn run(shared: Arc<Shared>, writer: Arc<Writer>) {
    let mut memory = Memory::default();
    let mut periodic = tokio::time::interval(
        shared
            .args
            .options
            .backfill_interval
            .max(Duration::from_secs(1)),
    );
    periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(
        shared
            .args
            .options
            .retry_interval
            .max(Duration::from_millis(100)),
    );
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Both fire at once; the first pass waits for a snapshot anyway.
    periodic.tick().await;
    retry.tick().await;
    loop {
        let mut retry_now = false;
        tokio::select! {
            () = shared.triggers.wake.notified() => {}
            _ = periodic.tick() => shared.triggers.full_backfill.store(true, Ordering::Relaxed),
            _ = retry.tick() => retry_now = true,
        }
        let Some(snapshot) = shared.snapshot() else {
            continue;
        };
        let catalog = &snapshot.catalog;
        memory.seen_sources.extend(
            catalog
                .prepared_sources()
                .map(|(_, source)| source.source_ref()),
        );
        retry_deferred(&shared, &writer).await;
        sync_copies(&shared, &writer, catalog, &mut memory).await;
        let synced = shared.service_accounts_synced(catalog.config());
        let full = synced
            && (shared.triggers.full_backfill.swap(false, Ordering::Relaxed) || !memory.backfilled);
        let mut namespaces = std::mem::take(&mut *lock(&shared.triggers.namespaces));
        let service_accounts = std::mem::take(&mut *lock(&shared.triggers.service_accounts));
        if retry_now {
            namespaces.append(&mut memory.retry_namespaces);
        }
        if full {
            memory.backfilled = true;
            let failed = backfill(&shared, &writer, catalog, &Scope::All).await;
            memory.retry_namespaces.extend(failed);
            continue;
        }
        for ns in namespaces {
            let failed = backfill(&shared, &writer, catalog, &Scope::Namespace(ns)).await;
            memory.retry_namespaces.extend(failed);
        }
        for (ns, name) in service_accounts {
            let failed = backfill(&shared, &writer, catalog, &Scope::One(ns, name)).await;
            memory.retry_namespaces.extend(failed);
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
        match writer.ensure(&request, Budget::Reconciler).await {
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
    let plan = plan_copies(catalog, &shared.index.read(), &memory.seen_sources);
    let now = Instant::now();
    let retry = shared
        .args
        .options
        .retry_interval
        .max(Duration::from_millis(100));

    // Copies whose update was refused wait out their backoff, and are counted apart.
    let stale: BTreeSet<(String, String)> = plan
        .updates
        .iter()
        .map(|(ns, s, _)| (ns.clone(), s.copy_name.clone()))
        .collect();
    memory.refused.retain(|k, _| stale.contains(k));
    let mut counts = plan.counts.clone();
    for (ns, source, _) in &plan.updates {
        if memory
            .refused
            .contains_key(&(ns.clone(), source.copy_name.clone()))
        {
            let credential = source.credential.clone();
            if let Some(n) = counts.get_mut(&(credential.clone(), CopyState::Stale.as_str())) {
                *n -= 1;
            }
            *counts
                .entry((credential, CopyState::Unwritable.as_str()))
                .or_default() += 1;
        }
    }
    counts.retain(|_, n| *n > 0);
    shared.metrics.set_copies(&counts);

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

    let due: Vec<_> = plan
        .updates
        .iter()
        .filter(|(ns, source, _)| {
            memory
                .refused
                .get(&(ns.clone(), source.copy_name.clone()))
                .is_none_or(|r| r.next <= now)
        })
        .cloned()
        .collect();
    let current = current_sources(shared, &due).await;
    let updates: Vec<_> = due
        .into_iter()
        .filter(|(_, source, _)| current.contains(&source.source_ref()))
        .collect();
    if !updates.is_empty() {
        let writes = updates.into_iter().map(|(ns, source, rv)| {
            let writer = writer.clone();
            async move {
                let result = writer.update(&ns, &source, &rv).await;
                (ns, source, result)
            }
        });
        let results: Vec<(String, Arc<PreparedSource>, Result<bool, WriteError>)> =
            futures::stream::iter(writes)
                .buffer_unordered(WRITE_CONCURRENCY)
                .collect()
                .await;
        let mut updated: BTreeMap<&str, usize> = BTreeMap::new();
        let retry = shared
            .args
            .options
            .retry_interval
            .max(Duration::from_millis(100));
        for (ns, source, result) in &results {
            let key = (ns.clone(), source.copy_name.clone());
            match result {
                Ok(true) => {
                    memory.refused.remove(&key);
                    *updated.entry(source.credential.as_str()).or_default() += 1;
                }
                Ok(false) => {}
                Err(reason) => {
                    let (attempts, backoff) =
                        Refused::refused(&mut memory.refused, key, now, retry);
                    if attempts == 1 {
                        tracing::warn!(
                            namespace = %ns,
                            secret = %source.copy_name,
                            credential = %source.credential,
                            "copy not updated, retrying with backoff (up to {MAX_UPDATE_BACKOFF:?}): {reason}"
                        );
                    } else {
                        tracing::debug!(
                            namespace = %ns,
                            secret = %source.copy_name,
                            attempts,
                            "copy still not updated, next try in {backoff:?}: {reason}"
                        );
                    }
                }
            }
        }
        for (credential, n) in updated {
            tracing::info!(credential = %credential, copies = n, "copies updated to their source's content");
        }
    }
    let unwanted: BTreeSet<(String, String)> = plan
        .deletes
        .iter()
        .map(|(ns, name, _)| (ns.clone(), name.clone()))
        .collect();
    memory.refused_deletes.retain(|k, _| unwanted.contains(k));
    for (ns, name, rv) in &plan.deletes {
        let key = (ns.clone(), name.clone());
        if memory
            .refused_deletes
            .get(&key)
            .is_some_and(|r| r.next > now)
        {
            continue;
        }
        match writer.delete(ns, name, rv).await {
            Ok(true) => {
                memory.refused_deletes.remove(&key);
                tracing::info!(namespace = %ns, secret = %name, "unwanted copy pruned");
            }
            Ok(false) => {}
            Err(reason) => {
                let (attempts, _) = Refused::refused(&mut memory.refused_deletes, key, now, retry);
                if attempts == 1 {
                    let hint = if reason.is_forbidden() {
                        " (prune: true needs the delete grant of manifests/components/prune)"
                    } else {
                        ""
                    };
                    tracing::warn!(
                        namespace = %ns,
                        secret = %name,
                        "unwanted copy not pruned, retrying with backoff{hint}: {reason}"
                    );
                }
            }
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
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(shared.client.clone(), &source.source_namespace);
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
                shared
                    .metrics
                    .reconcile_error(ApiAction::GetSource.as_str());
                tracing::warn!(
                    source = %source_ref,
                    "cannot check the source before updating its copies, retrying later: {}",
                    describe(&e)
                );
            }
        }
    }
    current
}

/// Which ServiceAccounts a backfill looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    All,
    Namespace(String),
    One(String, String),
}

/// One ServiceAccount to bring in line: what the decision says it lacks.
struct Candidate {
    namespace: String,
    name: String,
    add: Vec<String>,
    copies: Vec<CopyRequest>,
}

/// Gives the ServiceAccounts of `scope` that `serviceAccounts` names the references and
/// copies they miss, deciding from the index. Returns the namespaces where something failed.
async fn backfill(
    shared: &Shared,
    writer: &Writer,
    catalog: &Catalog,
    scope: &Scope,
) -> BTreeSet<String> {
    let mut failed = BTreeSet::new();
    let (candidates, checked) = {
        let ix = shared.index.read();
        candidates(catalog, &ix, scope)
    };
    let mut patched = 0usize;
    for candidate in candidates {
        let ns = &candidate.namespace;
        let name = &candidate.name;
        let mut add = candidate.add;
        let mut broken = false;
        for copy in &candidate.copies {
            match writer.ensure(copy, Budget::Reconciler).await {
                Made::Ready => {}
                Made::Failed(reason) => {
                    tracing::warn!(
                        namespace = %ns,
                        secret = %copy.name(),
                        "copy not made for ServiceAccount {name}, retrying later: {reason}"
                    );
                    broken = true;
                    add.retain(|n| n != copy.name());
                }
                Made::Foreign | Made::Conflict(_) => add.retain(|n| n != copy.name()),
            }
        }
        if broken {
            failed.insert(ns.clone());
        }
        if add.is_empty() {
            continue;
        }
        match writer.add_references(ns, name, &add).await {
            Ok(added) if added.is_empty() => {
                tracing::debug!(namespace = %ns, service_account = %name, "ServiceAccount already in line");
            }
            Ok(added) => {
                patched += 1;
                tracing::info!(
                    namespace = %ns,
                    service_account = %name,
                    added = %added.join(","),
                    "ServiceAccount backfilled"
                );
            }
            Err(reason) => {
                failed.insert(ns.clone());
                tracing::warn!(
                    namespace = %ns,
                    service_account = %name,
                    "ServiceAccount not patched, retrying later: {reason}"
                );
            }
        }
    }
    let what = match scope {
        Scope::All => "(all)".to_string(),
        Scope::Namespace(ns) => ns.clone(),
        Scope::One(ns, name) => format!("{ns}/{name}"),
    };
    if patched > 0 || !failed.is_empty() {
        tracing::info!(scope = %what, checked, patched, failed = failed.len(), "ServiceAccount backfill done");
    } else {
        tracing::debug!(scope = %what, checked, "ServiceAccount backfill: nothing to do");
    }
    failed
}

/// The ServiceAccounts of `scope` that lack references, with what they lack, decided from the
/// index alone (pure); and how many were looked at. A ServiceAccount whose namespace the index
/// does not know yet is left for the Namespace event, which backfills its namespace.
fn candidates(catalog: &Catalog, ix: &Indexes, scope: &Scope) -> (Vec<Candidate>, usize) {
    let mut out = Vec::new();
    if catalog.config().service_accounts.is_empty() {
        return (out, 0);
    }
    let service_accounts: Vec<_> = match scope {
        Scope::All => ix.service_accounts().collect(),
        Scope::Namespace(ns) => ix.service_accounts_in(ns).collect(),
        Scope::One(ns, name) => ix.service_account(ns, name).into_iter().collect(),
    };
    let checked = service_accounts.len();
    for sa in service_accounts {
        let Some(info) = ix.namespace(sa.namespace) else {
            continue;
        };
        let existing = sa.pull_secrets.clone().unwrap_or_default();
        let subject = Subject {
            kind: SubjectKind::ServiceAccount,
            name: Some(sa.name),
            images: Vec::new(),
            existing: existing.clone(),
            labels: None,
            annotations: None,
        };
        let decision = catalog.decide(&subject, info, ix, false);
        if decision.skipped.is_some() {
            continue;
        }
        let recorded: Vec<&str> = sa
            .injected
            .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let add: Vec<String> = decision
            .add
            .iter()
            .filter(|n| !recorded.contains(&n.as_str()))
            .cloned()
            .collect();
        // Copies for the names it references or is about to; not for one someone removed.
        let copies: Vec<CopyRequest> = decision
            .copies
            .into_iter()
            .filter(|c| !c.update)
            .filter(|c| add.iter().any(|n| n == c.name()) || existing.contains(&c.name()))
            .collect();
        if add.is_empty() && copies.is_empty() {
            tracing::trace!(namespace = %sa.namespace, service_account = %sa.name, "in line");
            continue;
        }
        out.push(Candidate {
            namespace: sa.namespace.to_string(),
            name: sa.name.to_string(),
            add,
            copies,
        });
    }
    (out, checked)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::testing::live_catalog as setup;
    use crate::view::live::{Feed, IndexRules};

    #[test]
    fn backfill_candidates_come_from_the_index_and_keep_removed_names_removed() {
        use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceAccount};
        let (mut ix, catalog) = setup(false);
        let config = catalog.config().clone();
        let feed = Feed::ServiceAccounts {
            name: Some("default".into()),
        };
        ix.set_rules(IndexRules::of(&config));
        let sa = |ns: &str, names: &[&str], injected: Option<&str>| ServiceAccount {
            metadata: ObjectMeta {
                namespace: Some(ns.to_string()),
                name: Some("default".to_string()),
                resource_version: Some("1".to_string()),
                annotations: injected.map(|v| {
                    BTreeMap::from([(crate::marks::INJECTED_ANNOTATION.to_string(), v.to_string())])
                }),
                ..Default::default()
            },
            image_pull_secrets: Some(
                names
                    .iter()
                    .map(|n| LocalObjectReference {
                        name: n.to_string(),
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        // Holds one of ours; the other was injected once and removed since.
        ix.apply_service_account(
            &feed,
            &sa("team-a", &["mine", "hub"], Some("all-icr-io,hub")),
        );
        // Out of scope, and terminating.
        ix.apply_service_account(&feed, &sa("other", &[], None));
        ix.apply_service_account(&feed, &sa("team-b", &[], None));
        // In a namespace the index does not know yet.
        ix.apply_service_account(&feed, &sa("team-new", &[], None));
        let (found, checked) = candidates(&catalog, &ix, &Scope::All);
        assert_eq!(checked, 4);
        let found: Vec<_> = found
            .iter()
            .map(|c| {
                (
                    c.namespace.as_str(),
                    c.add.clone(),
                    c.copies
                        .iter()
                        .map(|r| r.name().to_string())
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        // Nothing to add; the copy of `hub`, which it references, is ensured.
        assert_eq!(
            found,
            [("team-a", Vec::<String>::new(), vec!["hub".to_string()])]
        );
        let (found, _) = candidates(&catalog, &ix, &Scope::Namespace("other".into()));
        assert!(found.is_empty());
    }
}
