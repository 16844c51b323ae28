//! Verification against real servers: a real registry (Debian's `docker-registry`,
//! distribution 2.8) with `htpasswd` and `token` auth, servers of the tests' own that record
//! where credentials went, and the `check --verify` / `validate --verify` commands.

#[path = "../common/https.rs"]
mod https;
#[path = "../common/registry.rs"]
mod registry;

mod cli;
mod leaks;
mod probes;

use std::time::Duration;

use pull_secret_injector::config::Verify;
use pull_secret_injector::registry::dockerconfig::Login;
use pull_secret_injector::verify::{ProbeResult, ProbeTarget, probe};
use pull_secret_injector::view::ProbeState;

/// A login with a username and password.
fn password(user: &str, password: &str) -> Login {
    Login {
        username: Some(user.to_string()),
        password: Some(password.to_string()),
        identity_token: None,
    }
}

/// Probes `registry` with `login`, trusting `ca_pem` (or only the system's roots).
async fn probe_with(
    registry: &str,
    login: Login,
    ca_pem: Option<&str>,
    insecure: bool,
) -> ProbeResult {
    let target = ProbeTarget {
        credential: "test".to_string(),
        registry: registry.to_string(),
        source: "creds/test".to_string(),
        login,
        verify: Verify {
            ca_bundle: ca_pem.map(str::to_string),
            insecure,
            ..Verify::default()
        },
    };
    probe::probe(&target, Duration::from_secs(5)).await
}

/// Asserts the state, showing the detail when it differs.
fn assert_state(found: &ProbeResult, want: ProbeState) {
    assert_eq!(found.state, want, "probe said: {}", found.detail);
}
