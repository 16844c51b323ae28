//! Watch streams: replay from the retained history, then live events, filtered per watch with
//! kube's selector transitions, periodic bookmarks, `timeoutSeconds`, and the 410 ERROR event.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Bytes, Frame};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::meta::{ResourceInfo, labels, meta_mut, partial};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::Failure;
use super::store::{Event, EventType, Signal};
use super::{Core, lock};

pub(crate) type Chunk = Result<Frame<Bytes>, std::io::Error>;

pub(crate) struct WatchQuery {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub resource_version: String,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Option<Duration>,
    pub metadata_only: bool,
}

/// How often bookmarks go out; kube-apiserver's is about a minute, tests want less waiting.
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

impl WatchQuery {
    fn selects(&self, resource: &str, namespace: &str, obj: &Value) -> bool {
        resource == self.info.resource
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self.labels.matches(&labels(obj))
            && self.fields.matches(obj)
    }

    fn line(&self, kind: &str, obj: &Value) -> Bytes {
        let obj = if self.metadata_only && kind != "ERROR" {
            partial(obj)
        } else {
            obj.clone()
        };
        let mut text = json!({"type": kind, "object": obj}).to_string();
        text.push('\n');
        Bytes::from(text)
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let (kind, api_version) = if self.metadata_only {
            ("PartialObjectMetadata", "meta.k8s.io/v1".to_string())
        } else {
            (self.info.kind, self.info.api_version())
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.line(
            "BOOKMARK",
            &json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}),
        )
    }

    /// What this watch sees of a committed event, as kube's cacheWatcher decides it.
    fn convert(&self, event: &Event) -> Option<Bytes> {
        let cur = self.selects(&event.resource, &event.namespace, &event.object);
        match event.kind {
            EventType::Added if cur => Some(self.line("ADDED", &event.object)),
            EventType::Deleted if cur => Some(self.line("DELETED", &event.object)),
            EventType::Modified => {
                let old = event
                    .prev
                    .as_ref()
                    .is_some_and(|p| self.selects(&event.resource, &event.namespace, p));
                match (old, cur) {
                    (true, true) => Some(self.line("MODIFIED", &event.object)),
                    (false, true) => Some(self.line("ADDED", &event.object)),
                    (true, false) => {
                        // The object as last seen, at the version it stopped matching.
                        let mut last = event.prev.clone()?;
                        meta_mut(&mut last)
                            .insert("resourceVersion".into(), json!(event.rv.to_string()));
                        Some(self.line("DELETED", &last))
                    }
                    (false, false) => None,
                }
            }
            _ => None,
        }
    }
}

/// Starts a watch; the receiver is the response body.
pub(crate) fn start(core: &Arc<Core>, query: WatchQuery) -> Result<mpsc::Receiver<Chunk>, Failure> {
    let mut initial: Vec<Bytes> = Vec::new();
    let mut live = None;
    let mut initial_end_rv = None;
    {
        let mut store = lock(&core.store);
        let rv = query.resource_version.as_str();
        if rv.is_empty() || rv == "0" || query.send_initial_events {
            // "Any"/"most recent": the current state as synthetic ADDED events.
            for ((resource, ns, _), obj) in store.objects.iter() {
                if query.selects(resource, ns, obj) {
                    initial.push(query.line("ADDED", obj));
                }
            }
            if query.send_initial_events {
                initial_end_rv = Some(store.rv);
            }
            live = Some(store.subscribe());
        } else {
            let wanted: u64 = rv
                .parse()
                .map_err(|_| Failure::bad_request(format!("invalid resource version: {rv}")))?;
            match store.since(wanted) {
                Some(events) => {
                    initial.extend(events.iter().filter_map(|e| query.convert(e)));
                    live = Some(store.subscribe());
                }
                None => {
                    let expired = Failure::expired(format!(
                        "too old resource version: {wanted} ({})",
                        store.floor
                    ));
                    initial.push(query.line("ERROR", &expired.to_json()));
                }
            }
        }
    }
    if let Some(rv) = initial_end_rv {
        initial.push(query.bookmark(rv, true));
    }
    let (tx, rx) = mpsc::channel::<Chunk>(64);
    let core = core.clone();
    tokio::spawn(async move {
        for line in initial {
            if tx.send(Ok(Frame::data(line))).await.is_err() {
                return;
            }
        }
        let Some(mut live) = live else { return };
        let mut shutdown = core.shutdown.clone();
        let deadline = query.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            let mut pending = Vec::new();
            tokio::select! {
                signal = live.recv() => match signal {
                    Some(s) => pending.push(s),
                    None => return,
                },
                _ = ticker.tick(), if query.bookmarks => {
                    // Read the version first: everything committed up to it is already queued,
                    // so the bookmark goes out after those events, never before.
                    let rv = lock(&core.store).rv;
                    while let Ok(s) = live.try_recv() {
                        pending.push(s);
                    }
                    pending.push(Signal::Event(Arc::new(Event {
                        rv,
                        kind: EventType::Added,
                        resource: String::new(),
                        namespace: String::new(),
                        object: Value::Null,
                        prev: None,
                    })));
                }
                _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } else { std::future::pending::<()>().await } } => return,
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
            }
            for signal in pending {
                let chunk = match signal {
                    // The bookmark marker queued above.
                    Signal::Event(e) if e.resource.is_empty() => {
                        Some(Ok(Frame::data(query.bookmark(e.rv, false))))
                    }
                    Signal::Event(e) => query.convert(&e).map(|line| Ok(Frame::data(line))),
                    Signal::End => return,
                    Signal::Abort => Some(Err(std::io::Error::other(
                        "watch dropped by the fake apiserver",
                    ))),
                };
                let abort = matches!(chunk, Some(Err(_)));
                if let Some(chunk) = chunk
                    && (tx.send(chunk).await.is_err() || abort)
                {
                    return;
                }
            }
        }
    });
    Ok(rx)
}
