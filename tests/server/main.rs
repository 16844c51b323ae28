//! The served webhook, called the way kube-apiserver calls it: CA-verified HTTPS, HTTP/1.1 and
//! HTTP/2, AdmissionReview v1 bodies, `?timeout=` appended to the path. Patches are applied
//! with json-patch and the results checked. Servers listen on 127.0.0.1, port 0.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Channel, Full};
use hyper::Request;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use fake_apiserver::eventually;
use pull_secret_injector::offline::DEFAULT_OWN_NAMESPACE;
use pull_secret_injector::serve::http::Limits;
use pull_secret_injector::serve::{self, Running, ServeArgs, TlsSource};
use pull_secret_injector::tls::certs;

mod certificates;
mod lifecycle;
mod limits;
mod reviews;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Makes a CA and a serving certificate for 127.0.0.1 and localhost in `dir`.
fn make_certs(dir: &Path) -> certs::Generated {
    let g = certs::generate(&["127.0.0.1".into(), "localhost".into()], 2).expect("certs");
    certs::write(dir, &g, true).expect("write certs");
    g
}

/// A server under test and the handle that stops it.
struct Server {
    running: Running,
    stop: Option<oneshot::Sender<()>>,
    ca_pem: String,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!(
            "https://127.0.0.1:{}{path}",
            self.running.admission_addr.port()
        )
    }

    fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.running.metrics_addr)
    }

    async fn stop(mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(Duration::from_secs(30), &mut self.running.task).await {
            Ok(Ok(result)) => result.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(format!("server task failed: {e}")),
            Err(_) => Err("server did not stop within 30 s".to_string()),
        }
    }
}

fn args(config: &Path, cluster: Vec<PathBuf>, cert_dir: &Path, limits: Limits) -> ServeArgs {
    ServeArgs {
        config: Some(config.to_path_buf()),
        cluster,
        own_namespace: DEFAULT_OWN_NAMESPACE.to_string(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: "127.0.0.1:0".parse().expect("addr"),
        tls: TlsSource::Files {
            cert: cert_dir.join(certs::CERT_FILE),
            key: cert_dir.join(certs::KEY_FILE),
        },
        client_ca: None,
        reload_interval: Duration::from_millis(50),
        limits,
        cluster_mode: Default::default(),
    }
}

async fn start_with(args: ServeArgs, ca_pem: String) -> Server {
    let (tx, rx) = oneshot::channel::<()>();
    let running = serve::start(&args, async move {
        let _ = rx.await;
    })
    .await
    .expect("server starts");
    Server {
        running,
        stop: Some(tx),
        ca_pem,
    }
}

/// A server for one of `examples/`, with fresh certificates in `dir`.
async fn start_example(setup: &str, dir: &Path, limits: Limits) -> Server {
    let g = make_certs(dir);
    let setup = examples().join(setup);
    start_with(
        args(
            &setup.join("config.yaml"),
            vec![setup.join("cluster")],
            dir,
            limits,
        ),
        g.ca_pem,
    )
    .await
}

/// A client that trusts only our CA, as kube-apiserver trusts only `caBundle`.
fn client(ca_pem: &str, http1: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca");
    let builder = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .https_only(true)
        .timeout(Duration::from_secs(30));
    let builder = if http1 { builder.http1_only() } else { builder };
    builder.build().expect("client")
}

async fn post_review(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Applies the response's base64 JSONPatch to the object; returns the object unchanged when
/// there is no patch.
fn apply(review: &Value, response: &Value) -> Value {
    let mut object = review["request"]["object"].clone();
    let Some(patch) = response["response"]["patch"].as_str() else {
        assert!(
            response["response"].get("patchType").is_none(),
            "{response}"
        );
        return object;
    };
    assert_eq!(response["response"]["patchType"], "JSONPatch");
    let bytes = STANDARD.decode(patch).expect("patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch is a JSONPatch");
    json_patch::patch(&mut object, &patch).expect("patch applies");
    object
}

fn pull_secret_names(object: &Value, kind: &str) -> Vec<String> {
    let list = if kind == "Pod" {
        &object["spec"]["imagePullSecrets"]
    } else {
        &object["imagePullSecrets"]
    };
    list.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|r| r["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expectation {
    setup: String,
    kind: String,
    review: Option<String>,
    expect_injected: Vec<String>,
    expect_warnings: bool,
}

fn hub_review() -> Vec<u8> {
    std::fs::read(examples().join("docker-hub/reviews/pod-nginx.json")).expect("review")
}

async fn tls_connect(port: u16, ca_pems: &[&str], alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.expect("ca pem")).expect("root");
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

fn peer_leaf(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().expect("peer certs")[0]
        .as_ref()
        .to_vec()
}

/// Posts a body sent as chunks with no Content-Length (HTTP/1.1 chunked encoding).
async fn streamed_post(server: &Server, body: Vec<u8>) -> u16 {
    let tls = tls_connect(
        server.running.admission_addr.port(),
        &[&server.ca_pem],
        &[b"http/1.1"],
    )
    .await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let (mut tx, channel) = Channel::<Bytes, std::convert::Infallible>::new(4);
    let request = Request::post("/mutate")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(channel)
        .expect("request");
    let feed = tokio::spawn(async move {
        for chunk in body.chunks(64 * 1024) {
            if tx.send_data(Bytes::copy_from_slice(chunk)).await.is_err() {
                break;
            }
        }
    });
    let response = sender.send_request(request).await.expect("response");
    feed.abort();
    response.status().as_u16()
}

/// The protocol a test client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
}

/// Posts `body` in 64 KiB chunks as a client that keeps writing while the server answers (with
/// `stall`, it sends the first chunk only and never ends the body), over HTTP/1.1 or HTTP/2.
/// Returns the status and the text the client read, or the client's error.
async fn post_chunks(
    server: &Server,
    proto: Proto,
    content_type: &str,
    body: Vec<u8>,
    stall: bool,
) -> Result<(u16, String), String> {
    let alpn: &[&[u8]] = match proto {
        Proto::Http1 => &[b"http/1.1"],
        Proto::Http2 => &[b"h2"],
    };
    let tls = tls_connect(
        server.running.admission_addr.port(),
        &[&server.ca_pem],
        alpn,
    )
    .await;
    let io = hyper_util::rt::TokioIo::new(tls);
    let (mut tx, channel) = Channel::<Bytes, std::convert::Infallible>::new(4);
    let uri = match proto {
        Proto::Http1 => "/mutate".to_string(),
        Proto::Http2 => server.url("/mutate"),
    };
    let request = Request::post(uri)
        .header("host", "127.0.0.1")
        .header("content-type", content_type)
        .body(channel)
        .expect("request");
    let feed = tokio::spawn(async move {
        for chunk in body.chunks(64 * 1024) {
            if tx.send_data(Bytes::copy_from_slice(chunk)).await.is_err() {
                return;
            }
            if stall {
                // Keeps the body open, unfinished, until the test ends.
                std::future::pending::<()>().await;
            }
        }
    });
    let response = match proto {
        Proto::Http1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("{e:?}"))?;
            tokio::spawn(conn);
            sender.send_request(request).await
        }
        Proto::Http2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("{e:?}"))?;
            tokio::spawn(conn);
            sender.send_request(request).await
        }
    }
    .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e:?}"))?
        .to_bytes();
    feed.abort();
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}

/// A directory laid out as kubelet mounts a Secret: files are symlinks into `..data`, which
/// is itself a symlink swapped atomically to publish a new version.
struct MountedSecret {
    root: PathBuf,
    version: usize,
}

impl MountedSecret {
    fn new(root: &Path) -> Self {
        let mut m = MountedSecret {
            root: root.to_path_buf(),
            version: 0,
        };
        for name in [certs::CERT_FILE, certs::KEY_FILE] {
            std::os::unix::fs::symlink(Path::new("..data").join(name), root.join(name))
                .expect("symlink");
        }
        m.publish(&[]);
        m
    }

    /// Writes `files` (name, content) into a new version directory and swaps `..data` to it.
    fn publish(&mut self, files: &[(&str, &[u8])]) {
        self.version += 1;
        let version = self.root.join(format!("..v{}", self.version));
        std::fs::create_dir(&version).expect("version dir");
        for (name, content) in files {
            std::fs::write(version.join(name), content).expect("write");
        }
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(version.file_name().expect("name"), &tmp).expect("symlink");
        std::fs::rename(&tmp, self.root.join("..data")).expect("swap");
    }

    fn publish_pair(&mut self, g: &certs::Generated) {
        self.publish(&[
            (certs::CERT_FILE, g.cert_pem.as_bytes()),
            (certs::KEY_FILE, g.key_pem.as_bytes()),
        ]);
    }
}

async fn metric_value(server: &Server, line_prefix: &str) -> Option<f64> {
    let text = reqwest::get(server.metrics_url())
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
