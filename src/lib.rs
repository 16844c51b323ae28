//! pull-secret-injector: decides which registry pull secrets a Pod or ServiceAccount needs,
//! using kubelet's own matching rules, and answers admission reviews with the patch.

pub mod admission;
pub mod cluster;
pub mod config;
pub mod lock;
pub mod marks;
pub mod metrics;
pub mod offline;
pub mod policy;
pub mod redact;
pub mod registry;
pub mod reload;
pub mod serve;

pub mod telemetry;
pub mod tls;
pub mod view;

#[cfg(test)]
mod testing;
