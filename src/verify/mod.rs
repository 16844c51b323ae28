//! Credentials that are known to work: each credential is probed at each registry its keys
//! name, as a container runtime would log in ([`probe`]), on a jittered interval, never on the
//! admission path. What the probes find becomes a [`Health`] the decision reads through the
//! view; tokens shaped as JWTs have their expiry read ([`jwt`]).
//!
//! An expired or revoked credential hurts more than a missing one: attached to a pull, it makes
//! the registry refuse even public images. Hence `warn` (the default: inject, and tell
//! everyone) and `skip` (stop injecting it for a registry that rejected it twice in a row;
//! never for `unreachable`).

pub mod jwt;
pub mod probe;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::admission::slot::Snapshot;
use crate::config::VerifyMode;
use crate::metrics::Metrics;
use crate::policy::Catalog;
use crate::registry::keyring::{Location, RegistryKey};
use crate::view::{Health, ProbeState, RegistryHealth};
pub use probe::{ProbeResult, ProbeTarget, api_host};

/// Concrete registries probed per credential for its glob keys (`*.icr.io`): images choose
/// them, so they are bounded.
pub const MAX_GLOB_REGISTRIES: usize = 16;
/// Each request of a probe is bounded by this.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Probes in flight at once, across every credential.
const PROBE_CONCURRENCY: usize = 4;
/// The global rate limit: probes start at least this far apart (at most 4 a second), however
/// many credentials fall due at once.
const PROBE_SPACING: Duration = Duration::from_millis(250);
/// The first retry after a registry was unreachable; doubled each time, up to the interval.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(60);
/// A first rejection is confirmed this soon, not an interval later: `skip` stops spreading a
/// dead credential within seconds, yet one stray 401 withholds nothing.
const CONFIRM_REJECTION: Duration = Duration::from_secs(5);

/// What to probe for `catalog`: every (credential, registry) of the credentials whose
/// verification is not off, with the login its source holds there. Glob keys name no single
/// registry: they are probed at the concrete registries `glob_seen` holds for them (hosts
/// admitted images reached through them). One login per (credential, registry): the first
/// source's, in name order.
pub fn targets(catalog: &Catalog, glob_seen: &BTreeSet<(String, String)>) -> Vec<ProbeTarget> {
    let mut out: BTreeMap<(String, String), ProbeTarget> = BTreeMap::new();
    for (credential, source) in catalog.prepared_sources() {
        if credential.verify.mode == VerifyMode::Off {
            continue;
        }
        for (raw, entry) in source.content.entries() {
            let Ok(key) = RegistryKey::parse(raw) else {
                continue;
            };
            let registries: Vec<String> = match key.registry() {
                Some(registry) => vec![registry],
                None => glob_seen
                    .iter()
                    .filter(|(c, _)| *c == credential.name)
                    .filter(|(_, r)| Location::parse(r).is_ok_and(|loc| key.matches(&loc)))
                    .map(|(_, r)| r.clone())
                    .take(MAX_GLOB_REGISTRIES)
                    .collect(),
            };
            for registry in registries {
                out.entry((credential.name.clone(), registry.clone()))
                    .or_insert_with(|| ProbeTarget {
                        credential: credential.name.clone(),
                        registry,
                        source: source.source_ref(),
                        login: entry.login(),
                        verify: credential.verify.clone(),
                    });
            }
        }
    }
    out.into_values().collect()
}

/// The expiry of a target's token, when its password or identity token is a JWT.
pub fn expiry(target: &ProbeTarget) -> Option<i64> {
    [&target.login.password, &target.login.identity_token]
        .into_iter()
        .flatten()
        .find_map(|t| jwt::expiry(t))
}

/// What the verifier says happened, for Events (deduplicated by the verifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A registry started rejecting a credential.
    Rejected {
        /// The credential.
        credential: String,
        /// The registry.
        registry: String,
        /// Its source secret, `namespace/name`.
        source: String,
        /// Why, without secret data.
        detail: String,
    },
    /// A credential's token expires within the warning window (or has expired).
    ExpiresSoon {
        /// The credential.
        credential: String,
        /// The registry.
        registry: String,
        /// Its source secret, `namespace/name`.
        source: String,
        /// When, Unix seconds.
        expires: i64,
    },
}

/// What the verifier is given by the mode it runs in.
pub trait Hooks: Send + Sync {
    /// The snapshot being served, if any (its catalog says what to probe).
    fn snapshot(&self) -> Option<Arc<Snapshot>>;
    /// The concrete registries admitted images reached through glob keys, as (credential,
    /// registry).
    fn glob_registries(&self) -> BTreeSet<(String, String)>;
    /// What probing taught, whole, each time it changes.
    fn publish(&self, health: Health);
    /// Something admins should hear of (an Event on the source secret).
    fn report(&self, report: Report);
}

/// One (credential, registry) as the verifier tracks it.
#[derive(Debug, Clone)]
struct Tracked {
    health: RegistryHealth,
    /// A digest of the login probed, so that a rotated password is probed at once.
    login: [u8; 32],
    next: Instant,
    unreachable: u32,
    reported_expiry: Option<i64>,
}

fn login_digest(target: &ProbeTarget) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [
        &target.login.username,
        &target.login.password,
        &target.login.identity_token,
    ] {
        hasher.update([u8::from(part.is_some())]);
        if let Some(p) = part {
            hasher.update((p.len() as u64).to_le_bytes());
            hasher.update(p.as_bytes());
        }
    }
    hasher.update(target.verify.insecure.to_string().as_bytes());
    hasher.update(target.verify.ca_bundle.as_deref().unwrap_or("").as_bytes());
    hasher.finalize().into()
}

/// The interval, spread ±10% by a hash of the pair and the round, so that probes of many
/// credentials (and of several replicas) do not fall on the same instant.
fn jittered(interval: Duration, target: &ProbeTarget, round: u64) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        &target.credential,
        &target.registry,
        round,
        std::process::id(),
    )
        .hash(&mut h);
    let spread = (h.finish() % 2001) as f64 / 1000.0 - 1.0; // -1.0 ..= 1.0
    interval.mul_f64(1.0 + 0.1 * spread)
}

/// Whether a token expiring at `at` is due a warning at `now`: within `window`, or expired.
pub fn expiry_due(at: i64, now: i64, window: Duration) -> bool {
    at.saturating_sub(now) <= i64::try_from(window.as_secs()).unwrap_or(i64::MAX)
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The health a probe result makes of what was known before.
pub fn next_health(
    before: Option<&RegistryHealth>,
    found: ProbeState,
    expires: Option<i64>,
    now: i64,
) -> RegistryHealth {
    let since = match before {
        Some(b) if b.state == found => b.since,
        _ => now,
    };
    let rejections = match (found, before) {
        (ProbeState::Rejected, Some(b)) if b.state == ProbeState::Rejected => b.rejections + 1,
        (ProbeState::Rejected, _) => 1,
        _ => 0,
    };
    RegistryHealth {
        state: found,
        since,
        rejections,
        expires,
    }
}

/// Probes every target of `targets` now, at most a few at a time and a few a second: what
/// `check --verify` and `validate --verify` do, and each round of the verifier.
pub async fn probe_all(targets: &[ProbeTarget]) -> Vec<(ProbeTarget, ProbeResult)> {
    let pace = Arc::new(tokio::sync::Mutex::new(tokio::time::interval(
        PROBE_SPACING,
    )));
    futures::stream::iter(targets.iter().cloned())
        .map(|t| {
            let pace = pace.clone();
            async move {
                pace.lock().await.tick().await;
                let r = probe::probe(&t, PROBE_TIMEOUT).await;
                (t, r)
            }
        })
        .buffered(PROBE_CONCURRENCY)
        .collect()
        .await
}

/// Runs the verifier until the task is aborted: every second, probes what is due, publishes
/// the health when it changed, and keeps the metrics.
pub async fn run(hooks: Arc<dyn Hooks>, metrics: Arc<Metrics>) {
    let mut tracked: BTreeMap<(String, String), Tracked> = BTreeMap::new();
    let mut round: u64 = 0;
    let mut published: Option<Health> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        round += 1;
        let Some(snapshot) = hooks.snapshot() else {
            continue;
        };
        let targets = targets(&snapshot.catalog, &hooks.glob_registries());
        let wanted: BTreeSet<(String, String)> = targets
            .iter()
            .map(|t| (t.credential.clone(), t.registry.clone()))
            .collect();
        tracked.retain(|k, _| wanted.contains(k));
        let now = Instant::now();
        let due: Vec<ProbeTarget> = targets
            .iter()
            .filter(|t| {
                tracked
                    .get(&(t.credential.clone(), t.registry.clone()))
                    .is_none_or(|k| k.next <= now || k.login != login_digest(t))
            })
            .cloned()
            .collect();
        for (target, found) in probe_all(&due).await {
            metrics.probe(found.state.as_str());
            let key = (target.credential.clone(), target.registry.clone());
            let before = tracked.get(&key);
            let expires = expiry(&target);
            let health = next_health(before.map(|b| &b.health), found.state, expires, now_unix());
            let unreachable = if found.state == ProbeState::Unreachable {
                before.map_or(0, |b| b.unreachable) + 1
            } else {
                0
            };
            let wait = if unreachable > 0 {
                UNREACHABLE_RETRY
                    .saturating_mul(1 << (unreachable - 1).min(10))
                    .min(target.verify.interval)
            } else if health.state == ProbeState::Rejected && health.rejections == 1 {
                CONFIRM_REJECTION
            } else {
                jittered(target.verify.interval, &target, round)
            };
            let became_rejected = found.state == ProbeState::Rejected
                && before.is_none_or(|b| b.health.state != ProbeState::Rejected);
            match found.state {
                ProbeState::Rejected => tracing::warn!(
                    credential = %target.credential,
                    registry = %target.registry,
                    source = %target.source,
                    rejections = health.rejections,
                    "credential rejected by its registry: {}",
                    found.detail
                ),
                ProbeState::Unreachable => tracing::info!(
                    credential = %target.credential,
                    registry = %target.registry,
                    "registry not reachable for verification: {}",
                    found.detail
                ),
                _ => tracing::debug!(
                    credential = %target.credential,
                    registry = %target.registry,
                    state = found.state.as_str(),
                    "credential verified: {}",
                    found.detail
                ),
            }
            if became_rejected {
                hooks.report(Report::Rejected {
                    credential: target.credential.clone(),
                    registry: target.registry.clone(),
                    source: target.source.clone(),
                    detail: found.detail.clone(),
                });
            }
            let mut reported_expiry = before.and_then(|b| b.reported_expiry);
            if let Some(at) = expires
                && expiry_due(at, now_unix(), target.verify.expiry_warning)
                && reported_expiry != Some(at)
            {
                hooks.report(Report::ExpiresSoon {
                    credential: target.credential.clone(),
                    registry: target.registry.clone(),
                    source: target.source.clone(),
                    expires: at,
                });
                reported_expiry = Some(at);
            }
            tracked.insert(
                key,
                Tracked {
                    health,
                    login: login_digest(&target),
                    next: Instant::now() + wait,
                    unreachable,
                    reported_expiry,
                },
            );
        }
        let mut health = Health::new();
        for ((credential, registry), t) in &tracked {
            health.set(credential, registry, t.health.clone());
        }
        if published.as_ref() != Some(&health) {
            let states: Vec<&'static str> = ProbeState::ALL.iter().map(|s| s.as_str()).collect();
            let current: Vec<(String, String, &'static str, Option<i64>)> = health
                .iter()
                .map(|(c, r, h)| (c.to_string(), r.to_string(), h.state.as_str(), h.expires))
                .collect();
            metrics.set_verification(&current, &states);
            hooks.publish(health.clone());
            published = Some(health);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_warnings_fall_due_within_the_window_and_after_expiry() {
        let day = 86_400;
        let window = Duration::from_secs(3 * day as u64);
        let now = 1_800_000_000;
        let cases = [
            (now + 10 * day, false),    // far off
            (now + 3 * day + 1, false), // a second outside the window
            (now + 3 * day, true),      // at its edge
            (now + 60, true),           // soon
            (now, true),                // now
            (now - day, true),          // past
            (i64::MIN, true),           // nonsense still warns, never overflows
            (i64::MAX, false),
        ];
        for (at, due) in cases {
            assert_eq!(expiry_due(at, now, window), due, "exp {at}");
        }
    }

    #[test]
    fn expiry_is_read_from_passwords_and_identity_tokens_only_when_they_are_jwts() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = |exp: &str| format!("{}.{}.sig", b64(r#"{"alg":"ES256"}"#), b64(exp));
        let target = |password: Option<String>, identity_token: Option<String>| ProbeTarget {
            credential: "c".to_string(),
            registry: "r.example".to_string(),
            source: "ns/s".to_string(),
            login: crate::registry::dockerconfig::Login {
                username: Some("u".to_string()),
                password,
                identity_token,
            },
            verify: crate::config::Verify::default(),
        };
        let cases = [
            (
                target(Some(jwt(r#"{"exp":1900000000}"#)), None),
                Some(1_900_000_000),
            ),
            (
                target(None, Some(jwt(r#"{"exp":1800000000}"#))),
                Some(1_800_000_000),
            ),
            (target(Some("plain-password".to_string()), None), None),
            (target(Some(jwt(r#"{"sub":"no exp"}"#)), None), None),
            (target(Some("x.not-json.y".to_string()), None), None),
            (target(None, None), None),
        ];
        for (t, want) in cases {
            assert_eq!(expiry(&t), want, "{t:?}");
        }
    }

    #[test]
    fn health_keeps_its_since_and_counts_rejections_in_a_row() {
        let first = next_health(None, ProbeState::Rejected, None, 100);
        assert_eq!((first.since, first.rejections), (100, 1));
        let second = next_health(Some(&first), ProbeState::Rejected, None, 200);
        assert_eq!((second.since, second.rejections), (100, 2));
        assert!(second.withheld());
        let unreachable = next_health(Some(&second), ProbeState::Unreachable, None, 300);
        assert_eq!((unreachable.since, unreachable.rejections), (300, 0));
        assert!(!unreachable.withheld());
        let again = next_health(Some(&unreachable), ProbeState::Rejected, None, 400);
        assert_eq!(again.rejections, 1, "an unreachable probe breaks the run");
    }

    #[test]
    fn targets_follow_the_keys_and_glob_keys_the_registries_seen() {
        use crate::config::Config;
        use crate::view::ClusterState;
        let mut state = ClusterState::new();
        let yaml = format!(
            "kind: Secret\nmetadata: {{name: s, namespace: creds}}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpwdw=="},"*.icr.io":{"username":"iamapikey","password":"pw"},"quay.io":{"auth":"dTpwdw=="}}}"#
            )
        );
        state.load_manifests("s", &yaml).expect("manifest");
        let config = Config::from_raw_yaml(
            r#"
credentials:
  - name: all
    secret: creds/s
    namespaces: {include: ["*"]}
  - name: quiet
    secret: creds/s
    copyName: quiet
    verify: {mode: off}
    namespaces: {include: ["*"]}
"#,
        )
        .expect("config");
        let catalog = Catalog::build(config, &state, None);
        let seen = BTreeSet::from([
            ("all".to_string(), "us.icr.io".to_string()),
            ("all".to_string(), "quay.io".to_string()),
            ("quiet".to_string(), "de.icr.io".to_string()),
        ]);
        let targets = targets(&catalog, &seen);
        let pairs: Vec<(&str, &str)> = targets
            .iter()
            .map(|t| (t.credential.as_str(), t.registry.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("all", "index.docker.io"),
                ("all", "quay.io"),
                ("all", "us.icr.io")
            ]
        );
        let glob = &targets[2];
        assert_eq!(glob.login.username.as_deref(), Some("iamapikey"));
        assert!(!format!("{glob:?}").contains("pw"));
    }
}
