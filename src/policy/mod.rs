//! The decision: for an object being created in a namespace, which pull secrets to add, which
//! copies must exist, and what to warn about. Pure: it reads a [`Catalog`] and a
//! [`ClusterView`](crate::view::ClusterView) and performs no I/O.
//!
//! The expensive, namespace-independent work (parsing and filtering source secrets, compiling
//! their keys into a keyring) is done once per config or source change in [`Catalog::build`]
//! ([`catalog`]); a decision ([`evaluate`]) is then a handful of hash lookups per image. What
//! the reconciler should do with the copies that exist is planned here too ([`plan`]).

pub mod audit;
pub mod catalog;
pub mod evaluate;
pub mod explain;
pub mod plan;
pub mod types;

pub use audit::Audit;
pub use catalog::Catalog;
pub use explain::{Consideration, KeyMiss, Outcome, WhyNot};
pub use plan::{CopyPlan, CopyState, plan_copies};
pub use types::{
    CopyRequest, Decision, ImageReport, MatchReport, PreparedSource, Problem, Subject, SubjectKind,
    Warning, WarningReason,
};

#[cfg(test)]
mod tests;
