//! Test support shared by the integration test binaries.

// Every test binary compiles this module for itself and each uses only part of it, so what one
// binary leaves unused is not dead code of the project.
#![allow(dead_code, unused_imports)]

pub mod fake_api;
pub mod objects;

pub use fake_api::{
    AdmissionCall, FakeApiServer, Fault, FaultId, FaultKind, RequestRecord, Status,
};
