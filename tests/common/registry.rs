//! A real registry for the tests: Debian's `docker-registry` (distribution 2.8), started on
//! 127.0.0.1 with TLS from the project's own `certs` code, and either `auth: htpasswd` or
//! `auth: token`. For token auth the realm is a token server of the test's own
//! ([`super::https::Server`]) that checks Basic credentials or an identity (refresh) token and
//! signs ES256 tokens with a key whose certificate chains to the registry's `rootcertbundle`,
//! so the registry itself accepts them, as it would Docker Hub's or Harbor's.
//!
//! Shared by several test binaries, each of which uses part of it.
//!
//! The binary is `$PSI_DOCKER_REGISTRY`, else `docker-registry` on `PATH` (`.ci/run` installs
//! the package).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use pull_secret_injector::tls::certs::{self, Generated};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use super::https::{Answer, Seen, Server};

/// The user the registry knows.
pub const USER: &str = "robot";
/// Its password (a test value).
pub const PASSWORD: &str = "right-password";
/// The identity (refresh) token the token server accepts for [`USER`] (a test value).
pub const IDENTITY_TOKEN: &str = "right-refresh-token";
/// The `service` the registry names in its challenge and the token's audience.
const SERVICE: &str = "psi-test-registry";
const ISSUER: &str = "psi-test-token-server";

/// How the registry authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `auth: htpasswd`: a Basic challenge.
    Htpasswd,
    /// `auth: token`: a Bearer challenge naming the test's token server.
    Token,
    /// The same, but the token server signs with a key the registry does not trust: the realm
    /// accepts the password, the registry refuses the token.
    TokenUntrustedSigner,
}

/// A running registry; stopped when dropped.
pub struct Registry {
    /// `127.0.0.1:port`, as an image reference and a dockerconfig key name it.
    pub host: String,
    /// The CA its certificate (and the token server's) chains to, for `verify.caBundle`.
    pub ca_pem: String,
    /// The token server, with `Auth::Token`.
    pub token_server: Option<Server>,
    child: Option<Child>,
    /// Holds the config, certificates, storage and log while the registry runs.
    _dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PSI_DOCKER_REGISTRY") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("docker-registry"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "these tests run a real registry: install Debian's docker-registry package \
             (apt-get install docker-registry; .ci/run does) or set PSI_DOCKER_REGISTRY"
        )
    })
}

/// A port nothing listens on now. The registry cannot be told to pick one and say which, so
/// the system picks it here and the registry binds it right after.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Registry {
    /// Starts a registry with `auth` that knows [`USER`] with [`PASSWORD`], and waits until it
    /// answers.
    pub async fn start(auth: Auth) -> Registry {
        Registry::start_with(auth, PASSWORD).await
    }

    /// [`Registry::start`] with another password for [`USER`] (htpasswd only).
    pub async fn start_with(auth: Auth, password: &str) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = certs::generate(&["127.0.0.1".to_string()], 1).expect("certificates");
        write(dir.path(), "tls.crt", &tls.cert_pem);
        write(dir.path(), "tls.key", &tls.key_pem);
        let mut token_server = None;
        let auth_config = match auth {
            Auth::Htpasswd => {
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                write(dir.path(), "htpasswd", &format!("{USER}:{hash}\n"));
                format!(
                    "  htpasswd:\n    realm: psi-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                )
            }
            Auth::Token | Auth::TokenUntrustedSigner => {
                let signer = certs::generate(&["token-signer".to_string()], 1).expect("signer");
                let trusted = if auth == Auth::Token {
                    signer.ca_pem.clone()
                } else {
                    certs::generate(&["someone-else".to_string()], 1)
                        .expect("other CA")
                        .ca_pem
                };
                write(dir.path(), "token-ca.crt", &trusted);
                let server = Server::https(&tls, token_handler(&signer)).await;
                let realm = format!("{}/token", server.url("https"));
                token_server = Some(server);
                format!(
                    "  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    dir.path().join("token-ca.crt").display()
                )
            }
        };
        let mut last_error = String::new();
        // The port may be taken between picking and binding: try a few.
        for _ in 0..5 {
            let host = format!("127.0.0.1:{}", free_port());
            let config = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {host}\n  secret: psi-test-http-secret\n  tls:\n    certificate: {cert}\n    key: {key}\nauth:\n{auth_config}",
                data = dir.path().join("data").display(),
                cert = dir.path().join("tls.crt").display(),
                key = dir.path().join("tls.key").display(),
            );
            write(dir.path(), "config.yml", &config);
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
            let mut child = Command::new(binary())
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .env_clear()
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .expect("docker-registry starts");
            match wait_ready(&host, &tls.ca_pem, &mut child).await {
                Ok(()) => {
                    return Registry {
                        host,
                        ca_pem: tls.ca_pem.clone(),
                        token_server,
                        child: Some(child),
                        _dir: dir,
                    };
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(dir.path().join("registry.log"))
                        .unwrap_or_default();
                    last_error = format!("{why}; its log:\n{log}");
                }
            }
        }
        panic!("the registry did not start: {last_error}");
    }

    /// Stops the registry (a later probe finds nothing listening).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A `.dockerconfigjson` holding `password` for [`USER`] at this registry.
    pub fn dockerconfig(&self, password: &str) -> String {
        let auth = STANDARD.encode(format!("{USER}:{password}"));
        json!({"auths": {self.host.clone(): {"auth": auth}}}).to_string()
    }

    /// The requests the token server received.
    pub fn token_requests(&self) -> Vec<Seen> {
        self.token_server
            .as_ref()
            .map(Server::seen)
            .unwrap_or_default()
    }
}

/// Waits until the registry's `/v2/` answers over TLS (401: it asks for credentials).
async fn wait_ready(host: &str, ca_pem: &str, child: &mut Child) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("docker-registry exited: {status}"));
        }
        match client.get(format!("https://{host}/v2/")).send().await {
            Ok(r) if r.status() == 401 => return Ok(()),
            Ok(r) => return Err(format!("/v2/ answered {} without credentials", r.status())),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => return Err(format!("/v2/ does not answer: {e}")),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

/// The token server: `GET /token` with Basic credentials, or `POST /token` with a
/// refresh-token grant, as the distribution token specification describes.
fn token_handler(signer: &Generated) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    let der = PrivateKeyDer::from_pem_slice(signer.key_pem.as_bytes()).expect("signer key");
    let key = Arc::new(
        EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_der(),
            &SystemRandom::new(),
        )
        .expect("ECDSA key"),
    );
    let cert = CertificateDer::from_pem_slice(signer.cert_pem.as_bytes()).expect("signer cert");
    let x5c = STANDARD.encode(cert.as_ref());
    let right_basic = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    move |seen: &Seen| {
        if !seen.target.starts_with("/token") {
            return Answer::new(404, "not found");
        }
        let accepted = match seen.method.as_str() {
            "GET" => seen.authorization.as_deref() == Some(right_basic.as_str()),
            "POST" => {
                form(&seen.body, "grant_type").as_deref() == Some("refresh_token")
                    && form(&seen.body, "refresh_token").as_deref() == Some(IDENTITY_TOKEN)
            }
            _ => false,
        };
        if !accepted {
            return match seen.method.as_str() {
                "POST" => Answer::new(400, r#"{"error":"invalid_grant"}"#),
                _ => Answer::new(401, r#"{"details":"incorrect username or password"}"#)
                    .header("WWW-Authenticate", "Basic realm=\"psi-test-token\""),
            };
        }
        let token = sign(&key, &x5c);
        Answer::new(
            200,
            json!({"token": token, "access_token": token, "expires_in": 300}).to_string(),
        )
        .header("Content-Type", "application/json")
    }
}

/// A value of an `application/x-www-form-urlencoded` body.
fn form(body: &str, key: &str) -> Option<String> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// An ES256 token for the registry: issuer, audience and times as it checks them, no access
/// (`GET /v2/` needs none).
fn sign(key: &EcdsaKeyPair, x5c: &str) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", std::process::id()),
        "access": [],
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .expect("sign");
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    )
}
