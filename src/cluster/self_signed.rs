//! `serve --self-signed`: the injector makes its own CA and serving certificate, keeps them in a
//! Secret so that every replica serves the same pair, and writes the CA into its
//! MutatingWebhookConfiguration's `caBundle`. Nothing else is needed to install it.
//!
//! Renewal: once less than a third of the validity is left, one replica makes a new pair. It
//! first puts the new CA into `caBundle` next to the current one, then writes the Secret
//! (conditionally: when two replicas renew at once, one wins and the other adopts its pair).
//! Every replica checks the Secret each `--reload-interval`, serves what it holds, and keeps
//! `caBundle` equal to the Secret's CA bundle, so kube-apiserver trusts the old and the new
//! certificate during the switch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::task::JoinHandle;

use super::FIELD_MANAGER;
use super::api::describe;
use crate::metrics::Metrics;
use crate::tls::ServingCert;
use crate::tls::certs;

/// Annotation on the Secret: when its certificates expire (RFC 3339).
pub const NOT_AFTER_ANNOTATION: &str = "pull-secret-injector/not-after";
/// Annotation on the Secret: the DNS names the serving certificate holds.
pub const NAMES_ANNOTATION: &str = "pull-secret-injector/dns-names";
/// Secret key of the CA bundle (newest first).
pub const CA_KEY: &str = "ca.crt";
/// Secret key of the serving certificate.
pub const CERT_KEY: &str = "tls.crt";
/// Secret key of its private key.
pub const KEY_KEY: &str = "tls.key";

/// Where self-signed mode keeps and publishes its certificates.
#[derive(Debug, Clone)]
pub struct SelfSignedArgs {
    /// The injector's namespace: the Secret's and the Service's.
    pub namespace: String,
    /// The Service kube-apiserver calls (`clientConfig.service.name`).
    pub service: String,
    /// The Secret holding the pair.
    pub secret: String,
    /// The MutatingWebhookConfiguration whose `caBundle` is kept.
    pub webhook_configuration: String,
    /// Validity of each new pair.
    pub validity: Duration,
    /// How often the Secret and `caBundle` are checked.
    pub interval: Duration,
}

impl SelfSignedArgs {
    /// The names kube-apiserver may dial: it uses `service.namespace.svc`.
    pub fn dns_names(&self) -> Vec<String> {
        vec![
            format!("{}.{}.svc", self.service, self.namespace),
            format!("{}.{}.svc.cluster.local", self.service, self.namespace),
        ]
    }

    fn secret_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.secret)
    }
}

/// Why self-signed mode cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    /// The API refused or failed.
    #[error("self-signed certificate: Secret {secret}: {reason}")]
    Api {
        /// The Secret.
        secret: String,
        /// Why.
        reason: String,
    },
    /// Making or loading the pair failed.
    #[error("self-signed certificate: {0}")]
    Certificate(String),
}

/// The pair and bundle a Secret holds.
#[derive(Clone, PartialEq, Eq)]
struct Material {
    ca_bundle: String,
    cert_pem: String,
    key_pem: String,
    not_after: Option<OffsetDateTime>,
    names: String,
    resource_version: Option<String>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("not_after", &self.not_after)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

impl Material {
    fn read(secret: &Secret) -> Option<Material> {
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        Some(Material {
            ca_bundle: text(secret, CA_KEY)?,
            cert_pem: text(secret, CERT_KEY)?,
            key_pem: text(secret, KEY_KEY)?,
            not_after: annotations
                .get(NOT_AFTER_ANNOTATION)
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
            names: annotations
                .get(NAMES_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            resource_version: secret.metadata.resource_version.clone(),
        })
    }

    /// Whether a new pair is due: too close to expiry, unknown expiry, or other names.
    fn due(&self, args: &SelfSignedArgs, now: OffsetDateTime) -> bool {
        let Some(not_after) = self.not_after else {
            return true;
        };
        let margin = time::Duration::try_from(args.validity / 3).unwrap_or(time::Duration::ZERO);
        now + margin >= not_after || self.names != args.dns_names().join(",")
    }

    /// The newest CA of the bundle (the first PEM block).
    fn newest_ca(&self) -> Option<&str> {
        let end = "-----END CERTIFICATE-----";
        self.ca_bundle
            .find(end)
            .map(|i| &self.ca_bundle[..i + end.len()])
    }
}

/// Keeps the served pair, the Secret and `caBundle` in step.
pub struct SelfSigned {
    client: Client,
    args: SelfSignedArgs,
    cert: Arc<ServingCert>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

fn api_error(args: &SelfSignedArgs, e: &kube::Error) -> SelfSignedError {
    SelfSignedError::Api {
        secret: args.secret_ref(),
        reason: describe(e),
    }
}

/// Loads or makes the pair, publishes its CA, and keeps both current in the background.
pub async fn start(
    client: Client,
    args: SelfSignedArgs,
    metrics: Arc<Metrics>,
) -> Result<(Arc<ServingCert>, JoinHandle<()>), SelfSignedError> {
    let material = obtain(&client, &args).await?;
    let cert = Arc::new(
        ServingCert::from_pem(
            &format!("Secret {}", args.secret_ref()),
            material.cert_pem.as_bytes(),
            material.key_pem.as_bytes(),
        )
        .map_err(|e| SelfSignedError::Certificate(e.to_string()))?,
    );
    let keeper = SelfSigned {
        client,
        args,
        cert: cert.clone(),
        metrics,
    };
    if let Err(reason) = keeper.publish(&material.ca_bundle).await {
        tracing::warn!(
            "cannot set the caBundle of MutatingWebhookConfiguration {} yet, retrying: {reason}",
            keeper.args.webhook_configuration
        );
    }
    let task = tokio::spawn(async move { keeper.run().await });
    Ok((cert, task))
}

/// The Secret's pair, made (and the Secret created or renewed) when there is none usable.
async fn obtain(client: &Client, args: &SelfSignedArgs) -> Result<Material, SelfSignedError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &args.namespace);
    // A few rounds: each lost race (another replica creating or renewing) means the next read
    // finds its pair.
    for _ in 0..5 {
        let existing = api
            .get_opt(&args.secret)
            .await
            .map_err(|e| api_error(args, &e))?;
        let previous = existing.as_ref().and_then(Material::read);
        match &previous {
            Some(m) if !m.due(args, OffsetDateTime::now_utc()) => return Ok(m.clone()),
            _ => {}
        }
        match renew(client, args, existing.as_ref(), previous.as_ref()).await? {
            Some(made) => return Ok(made),
            None => continue,
        }
    }
    Err(SelfSignedError::Api {
        secret: args.secret_ref(),
        reason: "kept changing while being read; giving up".to_string(),
    })
}

/// Makes a new pair and writes it; `None` when another replica wrote first.
async fn renew(
    client: &Client,
    args: &SelfSignedArgs,
    existing: Option<&Secret>,
    previous: Option<&Material>,
) -> Result<Option<Material>, SelfSignedError> {
    let validity = time::Duration::try_from(args.validity)
        .map_err(|e| SelfSignedError::Certificate(e.to_string()))?;
    let generated = certs::generate_for(&args.dns_names(), validity)
        .map_err(|e| SelfSignedError::Certificate(e.to_string()))?;
    // The new CA first, then the one in use, so that kube-apiserver trusts both while
    // replicas switch; older ones are dropped.
    let mut bundle = generated.ca_pem.trim_end().to_string();
    bundle.push('\n');
    if let Some(old) = previous.and_then(Material::newest_ca) {
        bundle.push_str(old);
        bundle.push('\n');
    }
    let not_after = generated
        .not_after
        .format(&Rfc3339)
        .map_err(|e| SelfSignedError::Certificate(e.to_string()))?;
    let names = args.dns_names().join(",");
    // Published before the Secret changes: no replica serves the new certificate before
    // kube-apiserver trusts it.
    if previous.is_some()
        && let Err(reason) = publish(client, args, &bundle).await
    {
        tracing::warn!("cannot add the new CA to caBundle before renewing: {reason}");
    }
    let data = BTreeMap::from([
        (CA_KEY.to_string(), ByteString(bundle.clone().into_bytes())),
        (
            CERT_KEY.to_string(),
            ByteString(generated.cert_pem.clone().into_bytes()),
        ),
        (
            KEY_KEY.to_string(),
            ByteString(generated.key_pem.clone().into_bytes()),
        ),
    ]);
    let annotations = BTreeMap::from([
        (NOT_AFTER_ANNOTATION.to_string(), not_after),
        (NAMES_ANNOTATION.to_string(), names.clone()),
    ]);
    let api: Api<Secret> = Api::namespaced(client.clone(), &args.namespace);
    let written = match existing {
        None => {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(args.secret.clone()),
                    namespace: Some(args.namespace.clone()),
                    labels: Some(BTreeMap::from([
                        (
                            "app.kubernetes.io/name".to_string(),
                            "pull-secret-injector".to_string(),
                        ),
                        (
                            "app.kubernetes.io/component".to_string(),
                            "webhook-tls".to_string(),
                        ),
                    ])),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                type_: Some("kubernetes.io/tls".to_string()),
                data: Some(data),
                ..Default::default()
            };
            let params = PostParams {
                dry_run: false,
                field_manager: Some(FIELD_MANAGER.to_string()),
            };
            api.create(&params, &secret).await
        }
        Some(existing) => {
            let patch = json!({
                "metadata": {
                    "resourceVersion": existing.metadata.resource_version,
                    "annotations": annotations,
                },
                "data": data,
            });
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..Default::default()
            };
            api.patch(&args.secret, &params, &Patch::Merge(&patch))
                .await
        }
    };
    match written {
        Ok(secret) => {
            tracing::info!(
                secret = %args.secret_ref(),
                not_after = %generated.not_after,
                "made a new self-signed CA and serving certificate"
            );
            Ok(Material::read(&secret))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(api_error(args, &e)),
    }
}

/// Sets every webhook's `caBundle` of the configuration to `bundle`, unless it already is;
/// true when it was written.
async fn publish(client: &Client, args: &SelfSignedArgs, bundle: &str) -> Result<bool, String> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let name = &args.webhook_configuration;
    let config = api
        .get_opt(name)
        .await
        .map_err(|e| describe(&e))?
        .ok_or_else(|| format!("MutatingWebhookConfiguration {name} not found"))?;
    let encoded = STANDARD.encode(bundle);
    let webhooks = config.webhooks.unwrap_or_default();
    let mut ops = Vec::new();
    for (i, webhook) in webhooks.iter().enumerate() {
        let current = webhook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.as_slice());
        if current == Some(bundle.as_bytes()) {
            continue;
        }
        // The test guards against the list changing between the read and the patch.
        ops.push(
            json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook.name}),
        );
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
    }
    if ops.is_empty() {
        return Ok(false);
    }
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).map_err(|e| e.to_string())?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    api.patch(name, &params, &Patch::<()>::Json(patch))
        .await
        .map_err(|e| describe(&e))?;
    tracing::info!(
        webhook_configuration = %name,
        "caBundle set to the self-signed CA bundle"
    );
    Ok(true)
}

impl SelfSigned {
    async fn publish(&self, bundle: &str) -> Result<bool, String> {
        publish(&self.client, &self.args, bundle).await
    }

    async fn run(self) {
        let mut ticker = tokio::time::interval(self.args.interval.max(Duration::from_millis(50)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut failing: Option<String> = None;
        loop {
            ticker.tick().await;
            match self.check().await {
                Ok(()) => {
                    if failing.take().is_some() {
                        tracing::info!("self-signed certificate checks succeed again");
                    }
                }
                Err(reason) => {
                    if failing.as_deref() != Some(reason.as_str()) {
                        tracing::warn!("self-signed certificate check failed, retrying: {reason}");
                        failing = Some(reason);
                    }
                }
            }
        }
    }

    /// One round: renew when due, serve what the Secret holds, keep `caBundle` in step.
    async fn check(&self) -> Result<(), String> {
        let material = obtain(&self.client, &self.args)
            .await
            .map_err(|e| e.to_string())?;
        match self
            .cert
            .replace_pem(material.cert_pem.as_bytes(), material.key_pem.as_bytes())
        {
            Ok(crate::tls::Reload::Replaced) => {
                self.metrics.certificate_reload(true);
                tracing::info!(
                    "serving the certificate from Secret {}",
                    self.args.secret_ref()
                );
            }
            Ok(crate::tls::Reload::Unchanged) => {}
            Err(e) => {
                self.metrics.certificate_reload(false);
                return Err(e.to_string());
            }
        }
        self.publish(&material.ca_bundle).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SelfSignedArgs {
        SelfSignedArgs {
            namespace: "psi".to_string(),
            service: "hook".to_string(),
            secret: "hook-tls".to_string(),
            webhook_configuration: "hook".to_string(),
            validity: Duration::from_secs(300 * 24 * 3600),
            interval: Duration::from_secs(10),
        }
    }

    fn material(not_after: Option<OffsetDateTime>, names: &str) -> Material {
        Material {
            ca_bundle: "-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nold\n-----END CERTIFICATE-----\n".to_string(),
            cert_pem: String::new(),
            key_pem: String::new(),
            not_after,
            names: names.to_string(),
            resource_version: None,
        }
    }

    #[test]
    fn the_certificate_names_the_service_as_kube_apiserver_dials_it() {
        assert_eq!(
            args().dns_names(),
            ["hook.psi.svc", "hook.psi.svc.cluster.local"]
        );
    }

    #[test]
    fn a_pair_is_renewed_in_its_last_third_or_when_its_names_or_expiry_are_unknown() {
        let args = args();
        let names = args.dns_names().join(",");
        let now = OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        assert!(!material(Some(now + 101 * day), &names).due(&args, now));
        assert!(material(Some(now + 99 * day), &names).due(&args, now));
        assert!(material(Some(now - day), &names).due(&args, now));
        assert!(material(None, &names).due(&args, now));
        assert!(material(Some(now + 200 * day), "other.psi.svc").due(&args, now));
    }

    #[test]
    fn the_newest_ca_is_the_first_of_the_bundle() {
        let m = material(None, "");
        assert_eq!(
            m.newest_ca(),
            Some("-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----")
        );
    }

    #[test]
    fn a_secret_without_every_key_is_not_usable_and_debug_hides_the_key() {
        let mut secret = Secret {
            data: Some(BTreeMap::from([
                (CA_KEY.to_string(), ByteString(b"ca".to_vec())),
                (CERT_KEY.to_string(), ByteString(b"cert".to_vec())),
            ])),
            ..Default::default()
        };
        assert!(Material::read(&secret).is_none());
        secret.data.as_mut().expect("data").insert(
            KEY_KEY.to_string(),
            ByteString(b"PRIVATE-KEY-BYTES".to_vec()),
        );
        let m = Material::read(&secret).expect("complete");
        assert!(!format!("{m:?}").contains("PRIVATE-KEY-BYTES"));
    }
}
