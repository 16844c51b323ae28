//! Self-signed mode, as the base manifests install it: the injector makes, shares, publishes
//! and renews its own certificate. The fake routes the manifest's Service to a replica in this
//! process, so the scenario runs on the fake only.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::harness::{Cluster, Injector, eventually, pull_secrets, repo};
use crate::{ICR_PODS_ONLY, icr_cluster};

/// Self-signed mode, as the base manifests install it: the webhook configuration is the
/// manifest's own (a Service reference, no caBundle); the fake routes the Service to a replica
/// and verifies its certificate by the Service's DNS name against the caBundle stored in the
/// API, as kube-apiserver does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_mode_makes_shares_publishes_and_renews_its_certificate() {
    let cluster = icr_cluster(ICR_PODS_ONLY).await;
    let fake = crate::fake_only!(
        cluster,
        "the fake routes the webhook's Service to a replica in this process"
    );
    register_manifest_webhook(&cluster).await;
    let team = cluster.namespace("team-s", json!({})).await;
    cluster.runner(&team).await;

    let first = Injector::start_self_signed(&cluster, "first").await;
    fake.route_service(
        &cluster.own,
        "pull-secret-injector",
        first.running.admission_addr,
    );
    let secret = cluster
        .secret(&cluster.own, "pull-secret-injector-tls")
        .await
        .expect("the certificate Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(pem_count(&secret_text(&secret, "ca.crt")), 1);
    eventually("caBundle to hold the Secret's CA", || async {
        webhook_ca_bundle(&cluster).await == secret_text(&secret, "ca.crt")
    })
    .await;
    let pod = cluster.create_pod(&team, &["icr.io/a/b:1"]).await;
    assert_eq!(
        pull_secrets(&pod),
        ["all-icr-io"],
        "TLS verified with the published CA"
    );

    // A second replica adopts the same pair: the Secret is not written again.
    let version = secret["metadata"]["resourceVersion"].clone();
    let second = Injector::start_self_signed(&cluster, "second").await;
    fake.route_service(
        &cluster.own,
        "pull-secret-injector",
        second.running.admission_addr,
    );
    let pod = cluster.create_pod(&team, &["icr.io/a/b:1"]).await;
    assert_eq!(
        pull_secrets(&pod),
        ["all-icr-io"],
        "the second replica serves the same pair"
    );
    let after = cluster
        .secret(&cluster.own, "pull-secret-injector-tls")
        .await
        .expect("secret");
    assert_eq!(after["metadata"]["resourceVersion"], version);

    // Close to expiry: one replica renews, the new CA joins the old one in caBundle, and the
    // webhook keeps working throughout.
    let mut expiring = after.clone();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    expiring["metadata"]["annotations"]["pull-secret-injector/not-after"] = json!(
        soon.format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    );
    if let Some(meta) = expiring["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    cluster.replace(expiring).await.expect("expiring");
    let old_ca = secret_text(&after, "ca.crt");
    eventually("a renewed pair with both CAs in the bundle", || async {
        cluster
            .secret(&cluster.own, "pull-secret-injector-tls")
            .await
            .is_some_and(|s| {
                let bundle = secret_text(&s, "ca.crt");
                pem_count(&bundle) == 2 && bundle.trim_end().ends_with(old_ca.trim_end())
            })
    })
    .await;
    let renewed = cluster
        .secret(&cluster.own, "pull-secret-injector-tls")
        .await
        .expect("secret");
    eventually("caBundle to follow the renewal", || async {
        webhook_ca_bundle(&cluster).await == secret_text(&renewed, "ca.crt")
    })
    .await;
    for injector in [&first, &second] {
        fake.route_service(
            &cluster.own,
            "pull-secret-injector",
            injector.running.admission_addr,
        );
        eventually("the replica to serve the renewed pair", || async {
            let pod = cluster.create_pod(&team, &["icr.io/a/b:1"]).await;
            pull_secrets(&pod) == ["all-icr-io"]
                && served_leaf(injector).await == secret_text(&renewed, "tls.crt")
        })
        .await;
    }
    first.stop().await;
    second.stop().await;
}

/// Registers `manifests/base/webhook.yaml` exactly as `kubectl apply` would, its Service in the
/// injector's namespace.
pub async fn register_manifest_webhook(cluster: &Cluster) {
    let text = std::fs::read_to_string(repo().join("manifests/base/webhook.yaml"))
        .expect("webhook manifest");
    let mut config: serde_json::Value = serde_yaml::from_str(&text).expect("webhook configuration");
    for webhook in config["webhooks"].as_array_mut().into_iter().flatten() {
        webhook["clientConfig"]["service"]["namespace"] = json!(cluster.own);
    }
    cluster
        .create(config)
        .await
        .expect("webhook configuration registered");
}

async fn webhook_ca_bundle(cluster: &Cluster) -> String {
    let config = cluster
        .get(
            "mutatingwebhookconfigurations",
            None,
            "pull-secret-injector",
        )
        .await
        .expect("webhook configuration");
    let encoded = config["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap_or("");
    String::from_utf8(STANDARD.decode(encoded).unwrap_or_default()).unwrap_or_default()
}

fn secret_text(secret: &Value, key: &str) -> String {
    let encoded = secret["data"][key].as_str().unwrap_or("");
    String::from_utf8(STANDARD.decode(encoded).unwrap_or_default()).unwrap_or_default()
}

fn pem_count(bundle: &str) -> usize {
    bundle.matches("-----BEGIN CERTIFICATE-----").count()
}

/// The leaf certificate a replica serves, as PEM, read from a TLS handshake.
async fn served_leaf(injector: &Injector) -> String {
    use rustls::pki_types::ServerName;
    // The handshake is only read for the certificate; verifying it is the fake's job.
    let config = rustls::ClientConfig::builder_with_provider(pull_secret_injector::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAny))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let Ok(tcp) = tokio::net::TcpStream::connect(injector.running.admission_addr).await else {
        return String::new();
    };
    let name = ServerName::try_from("pull-secret-injector.pull-secret-injector.svc")
        .expect("name")
        .to_owned();
    let Ok(tls) = connector.connect(name, tcp).await else {
        return String::new();
    };
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|der| {
            let b64 = STANDARD.encode(der.as_ref());
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap_or(""))
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        })
        .unwrap_or_default()
}

/// Accepts any server certificate: used only to read which one a replica serves.
#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &pull_secret_injector::tls::provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &pull_secret_injector::tls::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        pull_secret_injector::tls::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
