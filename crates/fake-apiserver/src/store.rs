//! The object store: one map for every resource, one global resourceVersion counter (as etcd's
//! revision is global), and the retained event history that watches replay from.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::meta::meta_mut;

/// (resource, namespace or "" when cluster-scoped, name); its order is etcd's key order, which
/// is the order lists come back in.
pub(crate) type Key = (String, String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// A committed change. `prev` is the object before a modification, which selector-filtered
/// watches need to tell "stopped matching" from "never matched".
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub resource: String,
    pub namespace: String,
    pub object: Value,
    pub prev: Option<Value>,
}

/// What open watches are told, in commit order.
#[derive(Debug)]
pub(crate) enum Signal {
    Event(Arc<Event>),
    /// End the stream cleanly (the watch cache was re-initialised).
    End,
    /// Break the connection without a final chunk.
    Abort,
}

/// Far more than a test writes; trimming exists so a runaway test cannot grow without bound.
const HISTORY_LIMIT: usize = 100_000;

pub(crate) struct Store {
    pub rv: u64,
    pub objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
    /// Watches may start from any resourceVersion >= floor: every event after it is retained.
    pub floor: u64,
    watchers: Vec<UnboundedSender<Signal>>,
}

pub(crate) fn key(resource: &str, namespace: &str, name: &str) -> Key {
    (
        resource.to_string(),
        namespace.to_string(),
        name.to_string(),
    )
}

impl Store {
    pub fn new() -> Self {
        // Not 0 or 1: a client that confuses "0" (any) with a real version shows up at once.
        Store {
            rv: 1000,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            floor: 1000,
            watchers: Vec::new(),
        }
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(resource, namespace, name))
    }

    /// Stores `obj` under a fresh resourceVersion and tells the watches.
    pub fn put(&mut self, key: Key, mut obj: Value) -> Value {
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let prev = self.objects.insert(key.clone(), obj.clone());
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(Event {
            rv: self.rv,
            kind,
            resource: key.0,
            namespace: key.1,
            object: obj.clone(),
            prev,
        });
        obj
    }

    /// Removes an object; the DELETED event carries the deletion's resourceVersion, as etcd's
    /// delete revision.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.emit(Event {
            rv: self.rv,
            kind: EventType::Deleted,
            resource: key.0.clone(),
            namespace: key.1.clone(),
            object: obj.clone(),
            prev: None,
        });
        Some(obj)
    }

    fn emit(&mut self, event: Event) {
        let event = Arc::new(event);
        self.history.push_back(event.clone());
        while self.history.len() > HISTORY_LIMIT {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        self.watchers
            .retain(|w| w.send(Signal::Event(event.clone())).is_ok());
    }

    /// Events after `rv`, or None when some of them are no longer retained.
    pub fn since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.floor {
            return None;
        }
        Some(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// Registers a watch; everything committed from now on reaches the receiver in order.
    pub fn subscribe(&mut self) -> UnboundedReceiver<Signal> {
        let (tx, rx) = unbounded_channel();
        self.watchers.push(tx);
        rx
    }

    pub fn abort_watches(&mut self) {
        for w in self.watchers.drain(..) {
            let _ = w.send(Signal::Abort);
        }
    }

    /// Forgets the history as a compaction does. The counter moves on first (as writes to other
    /// resources move a real cluster's) so that a client's last-seen version is now too old,
    /// and open watches end as they do when the watch cache re-initialises.
    pub fn expire(&mut self) {
        self.rv += 1;
        self.floor = self.rv;
        self.history.clear();
        for w in self.watchers.drain(..) {
            let _ = w.send(Signal::End);
        }
    }
}
