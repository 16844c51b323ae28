//! Prometheus metrics, served as text on the plain-HTTP metrics port. Label values are the
//! object's kind, operation and outcome, credential names and warning reasons: never a secret,
//! a namespace or an image (namespaces and images are unbounded and belong in logs).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The content type Prometheus expects for the text exposition format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of an admission request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `Pod`, `ServiceAccount`, `other` (a kind the injector ignores) or `unknown` (unreadable).
    pub kind: &'static str,
    /// `CREATE`, `UPDATE`, ... or `unknown`.
    pub operation: &'static str,
    /// `patched`, `unchanged`, `not_ready` or `rejected`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabels {
    credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CopyStateLabels {
    credential: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProblemLabels {
    credential: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerificationLabels {
    credential: String,
    registry: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabels {
    credential: String,
    registry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    watch: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Keeps a request counted in `admission_in_flight`; dropping it (even when the client goes
/// away mid-request) stops counting it.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every metric the injector exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histogram,
    in_flight: Gauge,
    injections: Family<CredentialLabels, Counter>,
    warnings: Family<ReasonLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    config_credentials: Gauge,
    certificate_reloads: Family<ResultLabels, Counter>,
    copies: Family<CopyStateLabels, Gauge>,
    credential_problems: Family<ProblemLabels, Gauge>,
    verification_state: Family<VerificationLabels, Gauge>,
    expiry: Family<RegistryLabels, Gauge>,
    probes: Family<ResultLabels, Counter>,
    writes: Family<ActionLabels, Counter>,
    reconcile_errors: Family<ActionLabels, Counter>,
    watch_errors: Family<WatchLabels, Counter>,
    watch_synced: Family<WatchLabels, Gauge>,
    oldest_stale_copy: Gauge,
    token_expiry: Family<CredentialLabels, Gauge>,
    token_mints: Family<MintLabels, Counter>,
    token_minter: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MintLabels {
    credential: String,
    result: &'static str,
}

fn result_label(ok: bool) -> ResultLabels {
    ResultLabels {
        result: if ok { "success" } else { "error" },
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `pull_secret_injector_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pull_secret_injector");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests by object kind, operation and outcome",
            requests.clone(),
        );
        // 25 µs to about 0.8 s: the decision takes microseconds, kube-apiserver gives up at
        // the webhook's timeoutSeconds.
        let latency = Histogram::new(exponential_buckets(0.000_025, 2.0, 16));
        registry.register(
            "admission_duration_seconds",
            "Time from a complete request body to the response, in seconds",
            latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "admission_in_flight",
            "Admission requests being received or answered now",
            in_flight.clone(),
        );
        let injections = Family::<CredentialLabels, Counter>::default();
        registry.register(
            "injections",
            "Pull secrets injected, by credential",
            injections.clone(),
        );
        let warnings = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "warnings",
            "Admission warnings returned, by reason",
            warnings.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config loads, by result (an error keeps the last good config)",
            config_reloads.clone(),
        );
        let config_credentials = Gauge::default();
        registry.register(
            "config_credentials",
            "Credentials in the config being served",
            config_credentials.clone(),
        );
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads, by result (an error keeps the old certificate)",
            certificate_reloads.clone(),
        );
        let copies = Family::<CopyStateLabels, Gauge>::default();
        registry.register(
            "copies",
            "Managed copies by credential and state: current, stale (data or marks differ from \
             the source's, being updated), unwritable (stale, and its update was refused: \
             retried with backoff), source_missing (kept, the source is gone), source_unusable \
             (kept, the source no longer parses), orphaned (kept, names a selected source never \
             seen), unwanted (no rule wants it; deleted when prune is on)",
            copies.clone(),
        );
        let credential_problems = Family::<ProblemLabels, Gauge>::default();
        registry.register(
            "credential_problems",
            "Unusable sources of configured credentials, by credential and reason \
             (source_missing, source_invalid, source_empty): not injected until fixed",
            credential_problems.clone(),
        );
        let verification_state = Family::<VerificationLabels, Gauge>::default();
        registry.register(
            "credential_verification_state",
            "1 for the state each credential's last probe at each registry found (ok, rejected, \
             unreachable, unknown), 0 for the others",
            verification_state.clone(),
        );
        let expiry = Family::<RegistryLabels, Gauge>::default();
        registry.register(
            "credential_expiry_timestamp_seconds",
            "When a credential's token (a JWT password or identity token) expires, Unix time",
            expiry.clone(),
        );
        let probes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "verification_probes",
            "Registry probes made, by result (ok, rejected, unreachable, unknown)",
            probes.clone(),
        );
        let writes = Family::<ActionLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Writes to the Kubernetes API, by action",
            writes.clone(),
        );
        let reconcile_errors = Family::<ActionLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciler actions, by action (each is retried)",
            reconcile_errors.clone(),
        );
        let watch_errors = Family::<WatchLabels, Counter>::default();
        registry.register(
            "watch_errors",
            "Watch failures, by watch (each watch restarts with backoff)",
            watch_errors.clone(),
        );
        let watch_synced = Family::<WatchLabels, Gauge>::default();
        registry.register(
            "watch_last_list_timestamp_seconds",
            "When each watch last completed a full list (Unix time): alert when it falls far \
             behind the resync interval",
            watch_synced.clone(),
        );
        let token_expiry = Family::<CredentialLabels, Gauge>::default();
        registry.register(
            "token_expiry_timestamp_seconds",
            "When the token minted for a credential stops working, as Unix time",
            token_expiry.clone(),
        );
        let token_mints = Family::<MintLabels, Counter>::default();
        registry.register(
            "token_mints",
            "Token mints by credential and result (success, or why it failed: config, rejected, unreachable, protocol, write)",
            token_mints.clone(),
        );
        let token_minter = Gauge::default();
        registry.register(
            "token_minter",
            "1 while this replica holds the minting Lease",
            token_minter.clone(),
        );
        let oldest_stale_copy = Gauge::default();
        registry.register(
            "oldest_stale_copy_seconds",
            "How long the oldest copy that differs from its source has been stale (0: none)",
            oldest_stale_copy.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Metrics {
            registry,
            requests,
            latency,
            in_flight,
            injections,
            warnings,
            config_reloads,
            config_credentials,
            certificate_reloads,
            copies,
            credential_problems,
            verification_state,
            expiry,
            probes,
            writes,
            reconcile_errors,
            watch_errors,
            watch_synced,
            oldest_stale_copy,
            token_expiry,
            token_mints,
            token_minter,
        }
    }

    /// Replaces the copy counts: `(credential, state) -> count`.
    pub fn set_copies(&self, counts: &std::collections::BTreeMap<(String, &'static str), i64>) {
        self.copies.clear();
        for ((credential, state), n) in counts {
            self.copies
                .get_or_create(&CopyStateLabels {
                    credential: credential.clone(),
                    state,
                })
                .set(*n);
        }
    }

    /// Replaces the credential problem counts: `(credential, reason) -> count`. Credential
    /// names come from the config only.
    pub fn set_credential_problems(
        &self,
        counts: &std::collections::BTreeMap<(String, &'static str), i64>,
    ) {
        self.credential_problems.clear();
        for ((credential, reason), n) in counts {
            self.credential_problems
                .get_or_create(&ProblemLabels {
                    credential: credential.clone(),
                    reason,
                })
                .set(*n);
        }
    }

    /// Replaces the verification states: `(credential, registry, state)`, every state of
    /// `states` for each pair, 1 for the current one. Names come from the config and the
    /// registries its keys (or bounded glob matches) name.
    pub fn set_verification(
        &self,
        current: &[(String, String, &'static str, Option<i64>)],
        states: &[&'static str],
    ) {
        self.verification_state.clear();
        self.expiry.clear();
        for (credential, registry, state, expires) in current {
            for s in states {
                self.verification_state
                    .get_or_create(&VerificationLabels {
                        credential: credential.clone(),
                        registry: registry.clone(),
                        state: s,
                    })
                    .set(i64::from(s == state));
            }
            if let Some(at) = expires {
                self.expiry
                    .get_or_create(&RegistryLabels {
                        credential: credential.clone(),
                        registry: registry.clone(),
                    })
                    .set(*at);
            }
        }
    }

    /// Sets when a credential's minted token expires (Unix seconds).
    pub fn set_token_expiry(&self, credential: &str, at: i64) {
        self.token_expiry
            .get_or_create(&CredentialLabels {
                credential: credential.to_string(),
            })
            .set(at);
    }

    /// Forgets the expiry of a credential no longer minted.
    pub fn forget_token_expiry(&self, credential: &str) {
        self.token_expiry.remove(&CredentialLabels {
            credential: credential.to_string(),
        });
    }

    /// Counts one mint by credential and result.
    pub fn token_mint(&self, credential: &str, result: &'static str) {
        self.token_mints
            .get_or_create(&MintLabels {
                credential: credential.to_string(),
                result,
            })
            .inc();
    }

    /// Whether this replica is the one minting.
    pub fn set_token_minter(&self, leading: bool) {
        self.token_minter.set(i64::from(leading));
    }

    /// Counts one registry probe by its result.
    pub fn probe(&self, result: &'static str) {
        self.probes.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts one write to the API.
    pub fn api_write(&self, action: &'static str) {
        self.writes.get_or_create(&ActionLabels { action }).inc();
    }

    /// Counts one failed reconciler action.
    pub fn reconcile_error(&self, action: &'static str) {
        self.reconcile_errors
            .get_or_create(&ActionLabels { action })
            .inc();
    }

    /// Counts one watch failure.
    pub fn watch_error(&self, watch: &'static str) {
        self.watch_errors
            .get_or_create(&WatchLabels { watch })
            .inc();
    }

    /// Forgets a watch the config no longer needs (its last-list time would look stalled).
    pub fn watch_stopped(&self, watch: &'static str) {
        self.watch_synced.remove(&WatchLabels { watch });
    }

    /// Records that a watch completed a list, now.
    pub fn watch_listed(&self, watch: &'static str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.watch_synced
            .get_or_create(&WatchLabels { watch })
            .set(now);
    }

    /// Records how long the oldest stale copy has been stale.
    pub fn set_oldest_stale_copy(&self, age: Duration) {
        self.oldest_stale_copy
            .set(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
    }

    /// Counts one admission request and, when it was answered, its latency.
    pub fn admission(&self, labels: &RequestLabels, elapsed: Option<Duration>) {
        self.requests.get_or_create(labels).inc();
        if let Some(elapsed) = elapsed {
            self.latency.observe(elapsed.as_secs_f64());
        }
    }

    /// Counts a request as in flight until the returned guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts one injected secret for `credential`.
    pub fn injection(&self, credential: &str) {
        let labels = CredentialLabels {
            credential: credential.to_string(),
        };
        self.injections.get_or_create(&labels).inc();
    }

    /// Counts one admission warning.
    pub fn warning(&self, reason: &'static str) {
        self.warnings.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts a config load and, when it succeeded, how many credentials it holds.
    pub fn config_reload(&self, ok: bool, credentials: Option<usize>) {
        self.config_reloads.get_or_create(&result_label(ok)).inc();
        if let Some(n) = credentials {
            self.config_credentials
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts a certificate reload.
    pub fn certificate_reload(&self, ok: bool) {
        self.certificate_reloads
            .get_or_create(&result_label(ok))
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_labels() {
        let m = Metrics::new();
        m.admission(
            &RequestLabels {
                kind: "Pod",
                operation: "CREATE",
                outcome: "patched",
            },
            Some(Duration::from_micros(40)),
        );
        m.injection("icr");
        m.injection("icr");
        m.warning("source_missing");
        m.config_reload(true, Some(3));
        m.config_reload(false, None);
        m.certificate_reload(true);
        let text = m.render();
        for line in [
            r#"pull_secret_injector_admission_requests_total{kind="Pod",operation="CREATE",outcome="patched"} 1"#,
            r#"pull_secret_injector_admission_duration_seconds_bucket{le="0.00005"} 1"#,
            "pull_secret_injector_admission_duration_seconds_count 1",
            r#"pull_secret_injector_injections_total{credential="icr"} 2"#,
            r#"pull_secret_injector_warnings_total{reason="source_missing"} 1"#,
            r#"pull_secret_injector_config_reloads_total{result="success"} 1"#,
            r#"pull_secret_injector_config_reloads_total{result="error"} 1"#,
            "pull_secret_injector_config_credentials 3",
            r#"pull_secret_injector_certificate_reloads_total{result="success"} 1"#,
            r#"pull_secret_injector_build_info{version=""#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
