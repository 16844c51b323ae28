//! The token minter: one replica at a time (a `coordination.k8s.io` Lease) mints each token
//! credential's token and keeps it in its managed Secret, `<credential>-token` in the
//! injector's namespace, refreshing it at about half its lifetime. From that Secret on, the
//! token is a source like any other: the watches see it, copies follow it, verification
//! probes it. A failed mint keeps the last token until it expires, retries with backoff and
//! says so (metric, Event on the ConfigMap); once the token has expired the Secret is marked,
//! and the catalog stops injecting it and tells the pods why.
//!
//! [`Minter::tick`] is one pass at a given time, so that the schedule is tested by calling it
//! with the times a test chooses; [`run`] calls it with the wall clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use sha2::Digest;

use crate::config::Config;
use crate::config::token::{TokenSource, managed_secret_name};
use crate::metrics::Metrics;
use crate::token::schedule::{
    self, EXPIRED_ANNOTATION, EXPIRES_ANNOTATION, LeaseRecord, LeaseStep, MINTED_FOR_LABEL,
    Observed, PROVIDER_ANNOTATION, REFRESH_ANNOTATION, SPEC_ANNOTATION, Stored,
};
use crate::token::{MintContext, MintError, Minted};

/// The Lease replicas elect the minter with.
pub const LEASE_NAME: &str = "pull-secret-injector-token-minter";
/// How long a holder's claim lasts without renewal (client-go's default).
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews, and how often others look.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How long the holder keeps minting when renewals fail, before it steps down: well inside
/// the duration, so that a replica taking over never overlaps.
const RENEW_DEADLINE: Duration = Duration::from_secs(10);

/// What mints a token: the providers' clients in production, a script in tests.
pub trait Mint: Send + Sync {
    /// Mints a token for `source` with the key Secret's data, at `now`.
    fn mint<'a>(
        &'a self,
        source: &'a TokenSource,
        key: Option<&'a BTreeMap<String, Vec<u8>>>,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Minted, MintError>>;
}

/// The providers' clients over HTTPS, with the process environment.
pub struct Providers {
    http: reqwest::Client,
}

impl Providers {
    /// The clients, with the minting HTTP client.
    pub fn new() -> Result<Self, String> {
        Ok(Providers {
            http: crate::token::http_client()?,
        })
    }
}

impl Mint for Providers {
    fn mint<'a>(
        &'a self,
        source: &'a TokenSource,
        key: Option<&'a BTreeMap<String, Vec<u8>>>,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Minted, MintError>> {
        Box::pin(async move {
            let env = |name: &str| std::env::var(name).ok();
            let cx = MintContext {
                http: &self.http,
                key,
                now,
                env: &env,
            };
            crate::token::mint(source, &cx).await
        })
    }
}

/// Where the minter says what went wrong: Warning Events on the ConfigMap in production.
pub trait Notices: Send + Sync {
    /// Posts a Warning with this reason and message.
    fn warn(&self, reason: &'static str, message: String) -> BoxFuture<'_, ()>;
}

/// The resourceVersion a watch last saw of a managed Secret (`None`: absent), so that a Secret
/// edited or deleted by someone else is read again rather than trusted from memory.
pub type Observe = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Who the minter is and where it works.
#[derive(Debug, Clone)]
pub struct MinterSettings {
    /// The injector's namespace: the Lease and the managed Secrets live there.
    pub namespace: String,
    /// This replica's identity in the Lease (its pod name).
    pub identity: String,
}

/// What the minter knows of one credential between passes.
#[derive(Debug, Default)]
struct CredentialState {
    /// The managed Secret has been read since this replica became the minter.
    loaded: bool,
    /// Its resourceVersion, for conditional writes; `None`: it does not exist.
    resource_version: Option<String>,
    /// What it says of its token.
    stored: Option<Stored>,
    /// Failed mints in a row.
    failures: u32,
    /// No mint before this time (backoff).
    not_before: Option<SystemTime>,
}

/// The minter of one replica.
pub struct Minter {
    client: kube::Client,
    settings: MinterSettings,
    mint: Arc<dyn Mint>,
    notices: Arc<dyn Notices>,
    metrics: Arc<Metrics>,
    observed: Observed,
    leading: bool,
    last_renew: Option<SystemTime>,
    lease_version: Option<String>,
    states: BTreeMap<String, CredentialState>,
    jitter: Box<dyn FnMut() -> f64 + Send + Sync>,
    observe: Option<Observe>,
}

impl Minter {
    /// A minter that has not looked at the Lease yet; `jitter` draws from [-1, 1].
    pub fn new(
        client: kube::Client,
        settings: MinterSettings,
        mint: Arc<dyn Mint>,
        notices: Arc<dyn Notices>,
        metrics: Arc<Metrics>,
        jitter: Box<dyn FnMut() -> f64 + Send + Sync>,
    ) -> Self {
        Minter {
            client,
            settings,
            mint,
            notices,
            metrics,
            observed: Observed::default(),
            leading: false,
            last_renew: None,
            lease_version: None,
            states: BTreeMap::new(),
            jitter,
            observe: None,
        }
    }

    /// Reads managed Secrets again whenever `observe` reports a version other than the one
    /// last written or read (cluster mode: the source watch's index).
    pub fn observing(mut self, observe: Observe) -> Self {
        self.observe = Some(observe);
        self
    }

    /// Whether this replica held the Lease at its last pass.
    pub fn leading(&self) -> bool {
        self.leading
    }

    /// One pass at `now`: holds or follows the Lease, and as the holder mints every token
    /// that is due. Returns when the next pass is needed.
    pub async fn tick(&mut self, config: &Config, now: SystemTime) -> SystemTime {
        let minted: Vec<_> = config
            .credentials
            .iter()
            .filter_map(|c| c.token.as_ref().map(|t| (c.name.as_str(), t)))
            .collect();
        let names: BTreeSet<&str> = minted.iter().map(|(n, _)| *n).collect();
        for gone in self
            .states
            .keys()
            .filter(|k| !names.contains(k.as_str()))
            .cloned()
            .collect::<Vec<_>>()
        {
            self.states.remove(&gone);
            self.metrics.forget_token_expiry(&gone);
        }
        // No token credential: nothing to elect, no Lease written.
        if minted.is_empty() {
            self.step_down();
            return now + RENEW_EVERY;
        }
        if !self.lead(now).await {
            return now + RENEW_EVERY;
        }
        let mut next = self.last_renew.unwrap_or(now) + RENEW_EVERY;
        for (name, token) in minted {
            next = next.min(self.keep(name, token, now).await);
        }
        next.max(now + Duration::from_millis(100))
    }

    fn step_down(&mut self) {
        if self.leading {
            tracing::info!(lease = LEASE_NAME, "no longer the token minter");
        }
        self.leading = false;
        self.last_renew = None;
        // A replica that leads again reads every managed Secret afresh.
        self.states.clear();
        self.metrics.set_token_minter(false);
    }

    /// Holds or takes the Lease; whether this replica is the minter now.
    async fn lead(&mut self, now: SystemTime) -> bool {
        if self.leading
            && self
                .last_renew
                .is_some_and(|at| now < at + RENEW_EVERY && now >= at)
        {
            return true;
        }
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let outcome = match leases.get_opt(LEASE_NAME).await {
            Ok(current) => self.claim(&leases, current, now).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(true) => {
                if !self.leading {
                    tracing::info!(
                        lease = LEASE_NAME,
                        identity = %self.settings.identity,
                        "this replica is now the token minter"
                    );
                }
                self.leading = true;
                self.last_renew = Some(now);
                self.metrics.set_token_minter(true);
                true
            }
            Ok(false) => {
                self.step_down();
                false
            }
            Err(e) => {
                tracing::warn!(lease = LEASE_NAME, error = %e, "cannot read or renew the minting Lease");
                let within = self.last_renew.is_some_and(|at| now < at + RENEW_DEADLINE);
                if !(self.leading && within) {
                    self.step_down();
                }
                self.leading
            }
        }
    }

    /// Writes the Lease with this replica as holder when the elector says so; `Ok(false)`
    /// when someone else holds it or won the race.
    async fn claim(
        &mut self,
        leases: &Api<Lease>,
        current: Option<Lease>,
        now: SystemTime,
    ) -> Result<bool, kube::Error> {
        let me = self.settings.identity.clone();
        let record = current.as_ref().map(|l| {
            let spec = l.spec.clone().unwrap_or_default();
            LeaseRecord {
                holder: spec.holder_identity.unwrap_or_default(),
                duration: Duration::from_secs(
                    spec.lease_duration_seconds
                        .and_then(|d| u64::try_from(d).ok())
                        .unwrap_or(LEASE_DURATION.as_secs()),
                ),
                renew_time: spec.renew_time.map(|t| t.0.to_string()).unwrap_or_default(),
                transitions: spec.lease_transitions.unwrap_or(0),
            }
        });
        let micro = MicroTime(
            k8s_openapi::jiff::Timestamp::try_from(now)
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        let duration_seconds = i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(15);
        let result = match self.observed.step(record.clone(), &me, now) {
            LeaseStep::Follow => return Ok(false),
            LeaseStep::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.to_string()),
                        namespace: Some(self.settings.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.clone()),
                        lease_duration_seconds: Some(duration_seconds),
                        acquire_time: Some(micro.clone()),
                        renew_time: Some(micro),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                leases.create(&PostParams::default(), &lease).await
            }
            LeaseStep::Claim { takeover } => {
                let Some(mut lease) = current else {
                    return Ok(false);
                };
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.holder_identity = Some(me.clone());
                spec.lease_duration_seconds = Some(duration_seconds);
                spec.renew_time = Some(micro.clone());
                if takeover {
                    spec.acquire_time = Some(micro);
                    spec.lease_transitions =
                        Some(record.map_or(0, |r| r.transitions).saturating_add(1));
                }
                // The resourceVersion read makes the write conditional: of two replicas
                // claiming from the same read, one gets 409 Conflict.
                leases
                    .replace(LEASE_NAME, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(written) => {
                self.lease_version = written.metadata.resource_version.clone();
                self.observed.forget();
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.observed.forget();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes sure one credential's managed Secret holds a live token; returns when to look
    /// again.
    async fn keep(&mut self, credential: &str, token: &TokenSource, now: SystemTime) -> SystemTime {
        let name = managed_secret_name(credential);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let spec = spec_hash(token);
        let mut state = self.states.remove(credential).unwrap_or_default();
        let next = self
            .keep_state(&secrets, &name, credential, token, &spec, &mut state, now)
            .await;
        self.states.insert(credential.to_string(), state);
        next
    }

    #[allow(clippy::too_many_arguments)]
    async fn keep_state(
        &mut self,
        secrets: &Api<Secret>,
        name: &str,
        credential: &str,
        token: &TokenSource,
        spec: &str,
        state: &mut CredentialState,
        now: SystemTime,
    ) -> SystemTime {
        if state.loaded
            && let Some(observe) = &self.observe
            && observe(name) != state.resource_version
        {
            // Edited or deleted by someone else, or a watch still behind our own write: a
            // read settles which.
            state.loaded = false;
        }
        if !state.loaded {
            match secrets.get_opt(name).await {
                Ok(found) => {
                    if let Some(s) = &found
                        && !minted_for(s, credential)
                    {
                        let message = format!(
                            "credential {credential}: the Secret {}/{name} exists and was not minted by the injector; it is left alone and nothing is minted until it is deleted or renamed",
                            self.settings.namespace
                        );
                        return self
                            .failed(credential, state, now, MintError::Config(message))
                            .await;
                    }
                    state.resource_version = found
                        .as_ref()
                        .and_then(|s| s.metadata.resource_version.clone());
                    state.stored = found.as_ref().and_then(stored_of);
                    state.loaded = true;
                }
                Err(e) => {
                    tracing::warn!(credential, secret = name, error = %e, "cannot read the managed token Secret");
                    return now + schedule::retry_after(1);
                }
            }
        }
        if let Some(stored) = &state.stored {
            self.metrics
                .set_token_expiry(credential, schedule::unix(stored.expires_at));
        }
        if !schedule::due(state.stored.as_ref(), spec, now) {
            return state.stored.as_ref().map_or(now, |s| s.refresh_at);
        }
        if let Some(not_before) = state.not_before
            && now < not_before
        {
            return not_before;
        }
        let key = match self.key_data(token).await {
            Ok(key) => key,
            Err(e) => return self.failed(credential, state, now, e).await,
        };
        let minted = match self.mint.mint(token, key.as_ref(), now).await {
            Ok(m) => m,
            Err(e) => return self.failed(credential, state, now, e).await,
        };
        if minted.expires_at <= now {
            tracing::warn!(
                credential,
                expires_at = %schedule::format_time(minted.expires_at),
                "the provider answered a token that has already expired; it is stored, and asked again in a minute"
            );
        }
        let refresh_at = schedule::refresh_at(now, minted.expires_at, (self.jitter)());
        match self
            .write(
                secrets, name, credential, token, spec, &minted, refresh_at, state,
            )
            .await
        {
            Ok(()) => {
                if state.failures > 0 {
                    tracing::info!(credential, "minting works again");
                }
                tracing::info!(
                    credential,
                    provider = token.provider(),
                    secret = name,
                    registries = ?minted.auths.iter().map(|a| a.registry.as_str()).collect::<Vec<_>>(),
                    expires_at = %schedule::format_time(minted.expires_at),
                    refresh_at = %schedule::format_time(refresh_at),
                    "minted a registry token"
                );
                state.failures = 0;
                state.not_before = None;
                state.stored = Some(Stored {
                    expires_at: minted.expires_at,
                    refresh_at,
                    spec: spec.to_string(),
                    marked_expired: false,
                });
                self.metrics.token_mint(credential, "success");
                self.metrics
                    .set_token_expiry(credential, schedule::unix(minted.expires_at));
                refresh_at
            }
            Err(e) => {
                // Conflict or a lost create: read it again next pass.
                state.loaded = false;
                tracing::warn!(credential, secret = name, error = %e, "cannot write the minted token");
                self.metrics.token_mint(credential, "write");
                state.failures += 1;
                let at = now + schedule::retry_after(state.failures);
                state.not_before = Some(at);
                at
            }
        }
    }

    /// Counts a failed mint, says so once per run of failures, marks an expired token, and
    /// returns when to try again.
    async fn failed(
        &mut self,
        credential: &str,
        state: &mut CredentialState,
        now: SystemTime,
        error: MintError,
    ) -> SystemTime {
        state.failures += 1;
        let at = now + schedule::retry_after(state.failures);
        state.not_before = Some(at);
        self.metrics.token_mint(credential, error.metric_label());
        let kept = match &state.stored {
            Some(s) if now < s.expires_at => format!(
                "the last token stays in use until it expires at {}",
                schedule::format_time(s.expires_at)
            ),
            Some(_) => "the last token has expired".to_string(),
            None => "there is no token yet".to_string(),
        };
        tracing::warn!(credential, failures = state.failures, error = %error, "cannot mint a registry token; {kept}");
        if state.failures == 1 {
            self.notices
                .warn(
                    "TokenMintFailed",
                    format!("credential {credential}: cannot mint a registry token: {error}; {kept}; retrying with backoff"),
                )
                .await;
        }
        if let Some(stored) = &mut state.stored
            && now >= stored.expires_at
            && !stored.marked_expired
            && state.resource_version.is_some()
        {
            let secrets: Api<Secret> =
                Api::namespaced(self.client.clone(), &self.settings.namespace);
            let patch = serde_json::json!({
                "metadata": {
                    "resourceVersion": state.resource_version,
                    "annotations": {EXPIRED_ANNOTATION: error.to_string()},
                }
            });
            let name = managed_secret_name(credential);
            match secrets
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(s) => {
                    stored.marked_expired = true;
                    state.resource_version = s.metadata.resource_version.clone();
                    self.notices
                        .warn(
                            "TokenExpired",
                            format!("credential {credential}: its token expired at {} and no new one could be minted ({error}); it is not injected until minting works", schedule::format_time(stored.expires_at)),
                        )
                        .await;
                }
                Err(e) => {
                    state.loaded = false;
                    tracing::warn!(credential, error = %e, "cannot mark the expired token");
                }
            }
        }
        at
    }

    /// The key Secret's data, when the token source names one.
    async fn key_data(
        &self,
        token: &TokenSource,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, MintError> {
        let Some(reference) = token.key_secret() else {
            return Ok(None);
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &reference.namespace);
        match secrets.get_opt(&reference.name).await {
            Ok(Some(secret)) => Ok(Some(
                secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect(),
            )),
            Ok(None) => Err(MintError::Config(format!(
                "the key Secret {}/{} does not exist",
                reference.namespace, reference.name
            ))),
            Err(e) => Err(MintError::Config(format!(
                "cannot read the key Secret {}/{}: {}",
                reference.namespace,
                reference.name,
                crate::cluster::api::describe(&e)
            ))),
        }
    }

    /// Creates or updates the managed Secret with the minted token, conditional on the
    /// version last read.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        secrets: &Api<Secret>,
        name: &str,
        credential: &str,
        token: &TokenSource,
        spec: &str,
        minted: &Minted,
        refresh_at: SystemTime,
        state: &mut CredentialState,
    ) -> Result<(), kube::Error> {
        let annotations = BTreeMap::from([
            (
                EXPIRES_ANNOTATION.to_string(),
                schedule::format_time(minted.expires_at),
            ),
            (
                REFRESH_ANNOTATION.to_string(),
                schedule::format_time(refresh_at),
            ),
            (SPEC_ANNOTATION.to_string(), spec.to_string()),
            (
                PROVIDER_ANNOTATION.to_string(),
                token.provider().to_string(),
            ),
        ]);
        let data = BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            ByteString(dockerconfigjson(minted)),
        )]);
        let written = match &state.resource_version {
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(self.settings.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            MINTED_FOR_LABEL.to_string(),
                            credential.to_string(),
                        )])),
                        annotations: Some(annotations),
                        ..Default::default()
                    },
                    type_: Some("kubernetes.io/dockerconfigjson".to_string()),
                    data: Some(data),
                    ..Default::default()
                };
                secrets.create(&PostParams::default(), &secret).await?
            }
            Some(version) => {
                // A merge patch: the expired mark goes (null), the rest is replaced, and the
                // resourceVersion makes it conditional.
                let mut annotations: serde_json::Map<String, serde_json::Value> = annotations
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                annotations.insert(EXPIRED_ANNOTATION.to_string(), serde_json::Value::Null);
                let b64 = base64::engine::general_purpose::STANDARD;
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": version, "annotations": annotations},
                    "data": {".dockerconfigjson": b64.encode(dockerconfigjson(minted))},
                });
                secrets
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?
            }
        };
        state.resource_version = written.metadata.resource_version;
        Ok(())
    }
}

/// Whether a Secret is the managed token Secret of this credential.
fn minted_for(secret: &Secret, credential: &str) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MINTED_FOR_LABEL))
        .is_some_and(|c| c == credential)
}

fn stored_of(secret: &Secret) -> Option<Stored> {
    let annotations = secret.metadata.annotations.as_ref()?;
    Stored::from_annotations(|k| annotations.get(k).cloned())
}

/// A stable hash of the token source, so that editing it (another region, other registry
/// ids) mints at once. The spec holds references and endpoints only, never key material.
fn spec_hash(token: &TokenSource) -> String {
    let digest = sha2::Sha256::digest(format!("{token:?}").as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The `.dockerconfigjson` of what was minted.
fn dockerconfigjson(minted: &Minted) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let auths: serde_json::Map<String, serde_json::Value> = minted
        .auths
        .iter()
        .map(|a| {
            (
                a.registry.clone(),
                serde_json::json!({
                    "username": a.username,
                    "password": a.password,
                    "auth": b64.encode(format!("{}:{}", a.username, a.password)),
                }),
            )
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap_or_default()
}

/// Runs the minter with the wall clock, reading the config `config` gives each pass; wakes
/// early when `changed` is notified (a new config).
pub async fn run(
    mut minter: Minter,
    config: impl Fn() -> Option<Arc<Config>> + Send,
    changed: Arc<tokio::sync::Notify>,
) {
    loop {
        let now = SystemTime::now();
        let next = match config() {
            Some(c) => minter.tick(&c, now).await,
            None => now + RENEW_EVERY,
        };
        let wait = next
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(RENEW_EVERY);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::MintedAuth;

    #[test]
    fn the_stored_config_has_one_entry_per_registry_with_the_auth_runtimes_send() {
        let minted = Minted {
            auths: vec![MintedAuth {
                registry: "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
                username: "AWS".into(),
                password: "tok".into(),
            }],
            expires_at: SystemTime::UNIX_EPOCH,
        };
        let parsed = crate::registry::dockerconfig::DockerConfig::from_dockerconfigjson(
            &dockerconfigjson(&minted),
        )
        .unwrap();
        let keys: Vec<&str> = parsed.keys().collect();
        assert_eq!(keys, ["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]);
        let json: serde_json::Value = serde_json::from_slice(&dockerconfigjson(&minted)).unwrap();
        assert_eq!(
            json["auths"]["123456789012.dkr.ecr.eu-west-1.amazonaws.com"]["auth"],
            "QVdTOnRvaw=="
        );
    }
}
