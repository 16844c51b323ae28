//! Injected faults: the failures a real control plane produces now and then (slow responses,
//! 5xx, throttling), on demand.

use std::time::Duration;

/// What a matching request gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Wait this long, then serve the request normally.
    Latency(Duration),
    /// Answer with this code and a kube-style Status body (429 and 503 carry `Retry-After: 1`).
    Status(u16),
}

/// Which requests a fault hits. Every given condition must hold.
#[derive(Clone, Debug)]
pub struct Fault {
    /// An HTTP method (`"GET"`, case-insensitive) or a Kubernetes verb (`"list"`, `"watch"`,
    /// `"create"`, ...): either matches. None: any.
    pub method: Option<String>,
    /// A substring of the path with its query string, e.g. `"/namespaces/a/secrets"` or
    /// `"watch=true"`. Empty: any.
    pub path_contains: String,
    /// Only watch requests.
    pub watch_only: bool,
    pub kind: FaultKind,
    /// How many requests it hits; None: until removed.
    pub times: Option<usize>,
}

impl Fault {
    /// A fault on every request, until removed; narrow it with the builder methods.
    pub fn new(kind: FaultKind) -> Self {
        Fault {
            method: None,
            path_contains: String::new(),
            watch_only: false,
            kind,
            times: None,
        }
    }

    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }

    pub fn path(mut self, contains: &str) -> Self {
        self.path_contains = contains.to_string();
        self
    }

    pub fn watch_only(mut self) -> Self {
        self.watch_only = true;
        self
    }

    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

#[derive(Default)]
pub(crate) struct Faults {
    next: u64,
    active: Vec<(FaultId, Fault)>,
}

impl Faults {
    pub fn add(&mut self, fault: Fault) -> FaultId {
        self.next += 1;
        let id = FaultId(self.next);
        self.active.push((id, fault));
        id
    }

    pub fn remove(&mut self, id: FaultId) {
        self.active.retain(|(i, _)| *i != id);
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// The first fault that hits this request, counted as used.
    pub fn take(
        &mut self,
        method: &str,
        verb: &str,
        path_and_query: &str,
        watch: bool,
    ) -> Option<FaultKind> {
        let pos = self.active.iter().position(|(_, f)| {
            f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method) || m == verb)
                && path_and_query.contains(&f.path_contains)
                && (!f.watch_only || watch)
                && f.times != Some(0)
        })?;
        let fault = &mut self.active[pos].1;
        let kind = fault.kind.clone();
        if let Some(n) = fault.times.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.active.remove(pos);
            }
        }
        Some(kind)
    }
}
