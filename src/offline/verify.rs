//! `--verify` for the offline commands: probe the credentials a command reports, live, once,
//! and say what each registry answered. The answers also become the health the decision reads,
//! so that `check --verify` shows what the webhook would do with them.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::config::VerifyMode;
use crate::policy::Catalog;
use crate::verify::{self, ProbeTarget, now_unix};
use crate::view::health::utc;
use crate::view::{Health, ProbeState};

/// What one probe found, as the commands print it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// The credential.
    pub credential: String,
    /// The registry probed.
    pub registry: String,
    /// Its source secret, `namespace/name`.
    pub source: String,
    /// `ok`, `rejected`, `unreachable` or `unknown`.
    pub state: &'static str,
    /// Why, without secret data.
    pub detail: String,
    /// When the credential's token expires (RFC 3339), for JWT-shaped passwords.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The credential's verification mode.
    pub mode: &'static str,
}

/// The credentials of `catalog` that `only` names (every one when `None`), probed at each
/// registry their keys name, glob keys at the registries of `glob_seen`. Returns the answers
/// and the health they make.
pub fn probe(
    catalog: &Catalog,
    only: Option<&BTreeSet<String>>,
    glob_seen: &BTreeSet<(String, String)>,
) -> Result<(Vec<Verified>, Health), String> {
    let targets: Vec<ProbeTarget> = verify::targets(catalog, glob_seen)
        .into_iter()
        .filter(|t| only.is_none_or(|names| names.contains(&t.credential)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the probes: {e}"))?;
    let results = runtime.block_on(verify::probe_all(&targets));
    let now = now_unix();
    let mut health = Health::new();
    let mut out = Vec::new();
    for (target, found) in results {
        let expires = verify::expiry(&target);
        health.set(
            &target.credential,
            &target.registry,
            verify::next_health(None, found.state, expires, now),
        );
        out.push(Verified {
            credential: target.credential.clone(),
            registry: target.registry.clone(),
            source: target.source.clone(),
            state: found.state.as_str(),
            detail: found.detail,
            expires: expires.map(utc),
            mode: target.verify.mode.as_str(),
        });
    }
    Ok((out, health))
}

/// The credentials `only` names (every one when `None`) whose verification is off, and glob
/// keys with no registry to probe: said, so that silence is not read as "ok".
pub fn not_probed(
    catalog: &Catalog,
    only: Option<&BTreeSet<String>>,
    probed: &[Verified],
) -> Vec<String> {
    let mut out = Vec::new();
    for (credential, source) in catalog.prepared_sources() {
        if only.is_some_and(|names| !names.contains(&credential.name)) {
            continue;
        }
        if credential.verify.mode == VerifyMode::Off {
            let line = format!(
                "credential {}: verify mode off, not probed",
                credential.name
            );
            if !out.contains(&line) {
                out.push(line);
            }
            continue;
        }
        for (raw, _) in source.content.entries() {
            let Ok(key) = crate::registry::keyring::RegistryKey::parse(raw) else {
                continue;
            };
            if key.is_glob() && !probed.iter().any(|v| v.credential == credential.name) {
                let line = format!(
                    "credential {}: key {raw:?} names no single registry; it is probed at the registries images use (check --verify IMAGE...)",
                    credential.name
                );
                if !out.contains(&line) {
                    out.push(line);
                }
            }
        }
    }
    out
}

/// One line per answer, for text output.
pub fn text(verified: &[Verified], not_probed: &[String]) -> String {
    let mut out = String::new();
    if verified.is_empty() && not_probed.is_empty() {
        out.push_str("  verify: nothing to probe\n");
    }
    for v in verified {
        out.push_str(&format!(
            "  verify: credential {} at {}: {} ({})",
            v.credential, v.registry, v.state, v.detail
        ));
        if let Some(at) = &v.expires {
            out.push_str(&format!("; its token expires at {at}"));
        }
        if v.state == ProbeState::Rejected.as_str() {
            out.push_str(match v.mode {
                "skip" => "; in skip mode the webhook stops injecting it after two rejected probes in a row",
                _ => "; in warn mode the webhook still injects it, with a warning",
            });
        }
        out.push('\n');
    }
    for line in not_probed {
        out.push_str(&format!("  verify: {line}\n"));
    }
    out
}

/// Whether any registry rejected a credential (`validate --verify` then exits 1).
pub fn any_rejected(verified: &[Verified]) -> bool {
    verified
        .iter()
        .any(|v| v.state == ProbeState::Rejected.as_str())
}
