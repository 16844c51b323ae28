//! pull-secret-injector: decides which registry pull secrets a Pod or ServiceAccount needs,
//! using kubelet's own matching rules, and answers admission reviews with the patch.

pub mod admission;
pub mod cli;
pub mod config;
pub mod dockerconfig;
pub mod glob;
pub mod image;
pub mod keyring;
pub mod policy;
pub mod redact;
pub mod state;
