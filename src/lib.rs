//! pull-secret-injector: decides which registry pull secrets a Pod or ServiceAccount needs,
//! using kubelet's own matching rules, copies them where they are needed, and answers
//! admission reviews with the patch.
//!
//! The modules are layered, and arrows run downward only: the foundations import nothing of
//! the project but each other; the core is pure (no I/O) and tested directly; the edges talk to
//! the network, the Kubernetes API, files and the clock, and use the core. Cluster mode never
//! imports the HTTP server: it is handed the serving slot and hands back the ports the server
//! calls (`admission::ports`).

// Foundations.
pub mod lock;
pub mod metrics;
pub mod redact;
pub mod reload;
pub mod telemetry;

// The core, from the bottom up: kubelet's matching, the config, the copy contract, the view of
// the cluster, the decision, the admission pipeline.
pub mod admission;
pub mod config;
pub mod marks;
pub mod policy;
pub mod registry;
pub mod view;
pub mod workload;

// The edges.
pub mod cluster;
pub mod inputs;
pub mod inspect;
pub mod offline;
pub mod serve;
pub mod tls;
pub mod token;
pub mod verify;

// The command line: flags in, the edges called.
pub mod cli;

#[cfg(test)]
mod testing;
