//! The watches that feed the index. Each runs forever: kube-runtime's watcher lists, then
//! watches, and retries with backoff after an error (a `410 Gone` makes it list again). On top
//! of that every watch is restarted with a full list each `--resync-interval`, so that a watch
//! that stalls without an error cannot leave the index stale for longer than that.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use tokio::task::JoinHandle;

use super::Shared;
use super::api::WatchKind;
use crate::marks::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::view::NamespaceInfo;
use crate::view::live::{Feed, Stored};

/// Runs the stream `open` makes, hands each event to `handle`, and starts over after
/// `resync`. Errors are counted, and logged once until the watch recovers.
async fn run<K, S>(
    shared: Arc<Shared>,
    name: WatchKind,
    mut open: impl FnMut() -> S,
    mut handle: impl FnMut(Event<K>),
) where
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
{
    let resync = shared
        .args
        .options
        .resync_interval
        .max(Duration::from_secs(1));
    let mut failing: Option<String> = None;
    loop {
        let stream = open();
        futures::pin_mut!(stream);
        let restart = tokio::time::sleep(resync);
        tokio::pin!(restart);
        loop {
            tokio::select! {
                () = &mut restart => {
                    tracing::debug!(watch = name.as_str(), "periodic resync: listing again");
                    break;
                }
                item = stream.next() => match item {
                    Some(Ok(event)) => {
                        if matches!(event, Event::InitDone) {
                            shared.metrics.watch_listed(name.as_str());
                            if failing.take().is_some() {
                                tracing::info!(watch = name.as_str(), "watch recovered");
                            }
                        }
                        handle(event);
                    }
                    Some(Err(e)) => {
                        shared.metrics.watch_error(name.as_str());
                        let message = e.to_string();
                        if failing.as_deref() != Some(message.as_str()) {
                            tracing::warn!(
                                watch = name.as_str(),
                                "watch failed, retrying with backoff: {message}"
                            );
                            failing = Some(message);
                        }
                    }
                    None => break,
                },
            }
        }
    }
}

/// All Namespaces: labels and annotations for scopes and opt-outs, terminating or not.
pub(super) async fn namespaces(shared: Arc<Shared>) {
    let api: Api<Namespace> = Api::all(shared.client.clone());
    let feed = Feed::Namespaces;
    let handler = shared.clone();
    run(
        shared,
        WatchKind::Namespaces,
        move || watcher(api.clone(), watcher::Config::default()).default_backoff(),
        move |event| {
            let mut changed: Option<String> = None;
            {
                let mut ix = handler.index.write();
                match event {
                    Event::Init => ix.list_started(&feed),
                    Event::InitApply(ns) => {
                        if let Some(info) = NamespaceInfo::from_namespace(&ns) {
                            ix.apply_namespace(&feed, info);
                        }
                    }
                    Event::Apply(ns) => {
                        if let Some(info) = NamespaceInfo::from_namespace(&ns) {
                            let before = crate::view::ClusterView::namespace(&*ix, &info.name);
                            // A new namespace, or one whose labels may change its scope.
                            if before.is_none_or(|b| {
                                b.labels != info.labels || b.annotations != info.annotations
                            }) && !info.terminating
                            {
                                changed = Some(info.name.clone());
                            }
                            ix.apply_namespace(&feed, info);
                        }
                    }
                    Event::Delete(ns) => {
                        if let Some(name) = ns.metadata.name.as_deref() {
                            ix.delete_namespace(name);
                        }
                    }
                    Event::InitDone => {
                        ix.list_done(&feed);
                        drop(ix);
                        handler.rebuild.notify_one();
                        return;
                    }
                }
            }
            handler.namespaces_seen.send_modify(|n| *n += 1);
            if let Some(name) = changed {
                handler.triggers.backfill_namespace(name);
            }
        },
    )
    .await;
}

/// The injector's copies, every namespace. Whole objects stream in so that what a copy holds
/// is known by the hash of its data, but only the marks and that hash are kept (the data is
/// the sources'), and only for Secrets the config accounts for.
pub(super) fn copies(shared: Arc<Shared>) -> JoinHandle<()> {
    let api: Api<Secret> = Api::all(shared.client.clone());
    let config =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let handler = shared.clone();
    tokio::spawn(run(
        shared,
        WatchKind::Copies,
        move || watcher(api.clone(), config.clone()).default_backoff(),
        move |event| {
            let mut ix = handler.index.write();
            match event {
                Event::Init => ix.list_started(&Feed::Copies),
                Event::InitApply(s) | Event::Apply(s) => {
                    ix.apply_copy(&s);
                }
                Event::Delete(s) => {
                    if let (Some(ns), Some(name)) =
                        (s.metadata.namespace.as_deref(), s.metadata.name.as_deref())
                    {
                        ix.delete_copy(ns, name);
                        drop(ix);
                        // A ServiceAccount there may still need it.
                        handler.triggers.backfill_namespace(ns.to_string());
                    }
                }
                Event::InitDone => {
                    ix.list_done(&Feed::Copies);
                    drop(ix);
                    handler.rebuild.notify_one();
                }
            }
        },
    ))
}

/// ServiceAccounts `serviceAccounts` names, every namespace: one name by field selector, or
/// all of them. Each that appears or changes is backfilled at once, so that one created while
/// the webhook was not called (not registered yet, timed out, failed open) gets its
/// references within seconds, whether or not the injector has seen its namespace yet.
pub(super) fn service_accounts(shared: Arc<Shared>, feed: Feed) -> JoinHandle<()> {
    let api: Api<ServiceAccount> = Api::all(shared.client.clone());
    let config = match &feed {
        Feed::ServiceAccounts { name: Some(name) } => {
            watcher::Config::default().fields(&format!("metadata.name={name}"))
        }
        _ => watcher::Config::default(),
    };
    let handler = shared.clone();
    tokio::spawn(run(
        shared,
        WatchKind::ServiceAccounts,
        move || watcher(api.clone(), config.clone()).default_backoff(),
        move |event| {
            let mut ix = handler.index.write();
            match event {
                Event::Init => ix.list_started(&feed),
                Event::InitApply(sa) => {
                    ix.apply_service_account(&feed, &sa);
                }
                Event::Apply(sa) => {
                    if ix.apply_service_account(&feed, &sa) == Stored::Changed
                        && let (Some(ns), Some(name)) =
                            (sa.metadata.namespace.clone(), sa.metadata.name.clone())
                    {
                        drop(ix);
                        handler.triggers.backfill_service_account(ns, name);
                    }
                }
                Event::Delete(sa) => {
                    if let (Some(ns), Some(name)) = (
                        sa.metadata.namespace.as_deref(),
                        sa.metadata.name.as_deref(),
                    ) {
                        ix.delete_service_account(ns, name);
                    }
                }
                Event::InitDone => {
                    ix.list_done(&feed);
                    drop(ix);
                    // Whatever changed while the watch was down is looked at now.
                    handler.triggers.backfill_all();
                }
            }
        },
    ))
}

/// The config ConfigMap, by name.
pub(super) async fn config_map(shared: Arc<Shared>) {
    let api: Api<ConfigMap> =
        Api::namespaced(shared.client.clone(), &shared.args.config_map_namespace);
    let config = watcher::Config::default()
        .fields(&format!("metadata.name={}", shared.args.config_map_name));
    let handler = shared.clone();
    let mut listed = false;
    run(
        shared,
        WatchKind::Config,
        move || watcher(api.clone(), config.clone()).default_backoff(),
        move |event| match event {
            Event::Init => listed = false,
            Event::InitApply(cm) | Event::Apply(cm) => {
                listed = true;
                handler.config_seen(Some(&cm));
            }
            Event::Delete(_) => handler.config_seen(None),
            Event::InitDone => {
                if !listed {
                    handler.config_seen(None);
                }
            }
        },
    )
    .await;
}

/// The watch a feed is counted under in the metrics.
pub(super) fn kind(feed: &Feed) -> WatchKind {
    match feed {
        Feed::Namespaces => WatchKind::Namespaces,
        Feed::Copies => WatchKind::Copies,
        Feed::ServiceAccounts { .. } => WatchKind::ServiceAccounts,
        Feed::SourceNamed { .. } | Feed::SourceSelected { .. } => WatchKind::Sources,
        Feed::Locals { .. } => WatchKind::LocalSecrets,
    }
}

/// Source or local secrets for one feed of the config, whole (their data is copied).
pub(super) fn secrets(shared: Arc<Shared>, feed: Feed) -> JoinHandle<()> {
    let client = shared.client.clone();
    let (api, config, name): (Api<Secret>, watcher::Config, WatchKind) = match &feed {
        Feed::SourceNamed { namespace, name } => (
            Api::namespaced(client, namespace),
            watcher::Config::default().fields(&format!("metadata.name={name}")),
            WatchKind::Sources,
        ),
        Feed::SourceSelected { namespace, labels } => (
            Api::namespaced(client, namespace),
            watcher::Config::default().labels(labels),
            WatchKind::Sources,
        ),
        Feed::Locals { labels } => (
            Api::all(client),
            watcher::Config::default().labels(labels),
            WatchKind::LocalSecrets,
        ),
        Feed::Namespaces | Feed::Copies | Feed::ServiceAccounts { .. } => {
            return tokio::spawn(async {});
        }
    };
    let local = matches!(feed, Feed::Locals { .. });
    let handler = shared.clone();
    tokio::spawn(run(
        shared,
        name,
        move || watcher(api.clone(), config.clone()).default_backoff(),
        move |event| {
            // A local secret that comes or goes changes what its namespace's ServiceAccounts
            // should reference.
            let mut local_namespace: Option<String> = None;
            let mut ix = handler.index.write();
            let settled = match event {
                Event::Init => {
                    ix.list_started(&feed);
                    false
                }
                Event::InitApply(s) => {
                    ix.apply_secret(&feed, s);
                    false
                }
                Event::Apply(s) => {
                    local_namespace = s.metadata.namespace.clone().filter(|_| local);
                    ix.apply_secret(&feed, s);
                    true
                }
                Event::Delete(s) => {
                    if let (Some(ns), Some(n)) =
                        (s.metadata.namespace.as_deref(), s.metadata.name.as_deref())
                    {
                        ix.delete_secret(&feed, ns, n);
                    }
                    local_namespace = s.metadata.namespace.clone().filter(|_| local);
                    true
                }
                Event::InitDone => {
                    ix.list_done(&feed);
                    true
                }
            };
            drop(ix);
            if settled {
                handler.rebuild.notify_one();
            }
            if let Some(ns) = local_namespace {
                handler.triggers.backfill_namespace(ns);
            }
        },
    ))
}
