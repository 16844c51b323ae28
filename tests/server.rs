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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_review_is_answered_over_http1_and_http2() {
    let text = std::fs::read_to_string(examples().join("expectations.json")).expect("read");
    let expectations: Vec<Expectation> = serde_json::from_str(&text).expect("parse");
    let mut setups: Vec<&str> = expectations.iter().map(|e| e.setup.as_str()).collect();
    setups.dedup();
    let mut checked = 0;
    for setup in setups {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = start_example(setup, dir.path(), Limits::default()).await;
        for http1 in [true, false] {
            let client = client(&server.ca_pem, http1);
            for e in expectations
                .iter()
                .filter(|e| e.setup == setup && e.kind == "review")
            {
                let file = e.review.as_deref().expect("review file");
                let path = examples().join(file);
                let body = std::fs::read(&path).expect("review");
                let review: Value = serde_json::from_slice(&body).expect("json");
                let response = client
                    .post(server.url("/mutate?timeout=10s"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                let expected_version = if http1 {
                    reqwest::Version::HTTP_11
                } else {
                    reqwest::Version::HTTP_2
                };
                assert_eq!(response.version(), expected_version, "{file}");
                assert_eq!(response.status(), 200, "{file}");
                let answer: Value = response.json().await.expect("json answer");
                assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
                assert_eq!(answer["kind"], "AdmissionReview");
                assert_eq!(
                    answer["response"]["uid"], review["request"]["uid"],
                    "{file}"
                );
                assert_eq!(answer["response"]["allowed"], true, "{file}");
                let kind = review["request"]["kind"]["kind"].as_str().unwrap_or("");
                let before = pull_secret_names(&review["request"]["object"], kind);
                let patched = apply(&review, &answer);
                let after = pull_secret_names(&patched, kind);
                let added: Vec<String> = after[before.len().min(after.len())..].to_vec();
                assert_eq!(added, e.expect_injected, "{setup}/{file}");
                let warned = answer["response"]["warnings"]
                    .as_array()
                    .is_some_and(|w| !w.is_empty());
                assert_eq!(warned, e.expect_warnings, "{setup}/{file}: {answer}");
                // The patched object is still a valid object of its kind.
                match kind {
                    "Pod" => drop(serde_json::from_value::<Pod>(patched).expect("valid Pod")),
                    "ServiceAccount" => {
                        drop(serde_json::from_value::<ServiceAccount>(patched).expect("valid SA"))
                    }
                    _ => {}
                }
                checked += 1;
            }
        }
        server.stop().await.expect("clean stop");
    }
    assert!(checked >= 100, "only {checked} reviews checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_trusting_the_ca_get_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_example("docker-hub", dir.path(), Limits::default()).await;
    let other = certs::generate(&["127.0.0.1".into()], 1).expect("other CA");
    let stranger = client(&other.ca_pem, true);
    let err = stranger
        .get(server.url("/healthz"))
        .send()
        .await
        .expect_err("a client trusting another CA is refused");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    let ok = client(&server.ca_pem, true)
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(ok.status(), 200);
    server.stop().await.expect("clean stop");
}

/// With --client-ca, reviews need a client certificate from that CA, over HTTP/1.1 and HTTP/2;
/// the probes' paths need none (kubelet presents none); a certificate from another CA fails
/// the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_its_clients_get_reviews_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = make_certs(dir.path());
    let apiserver = certs::generate_client("kube-apiserver", 1).expect("client pair");
    let client_dir = dir.path().join("client");
    certs::write(&client_dir, &apiserver, true).expect("write client pair");
    let setup = examples().join("docker-hub");
    let mut serve = args(
        &setup.join("config.yaml"),
        vec![setup.join("cluster")],
        dir.path(),
        Limits::default(),
    );
    serve.client_ca = Some(client_dir.join(certs::CA_FILE));
    let server = start_with(serve, g.ca_pem.clone()).await;

    let with_identity = |pair: &certs::Generated, http1: bool| {
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", pair.cert_pem, pair.key_pem).as_bytes())
                .expect("identity");
        let builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(g.ca_pem.as_bytes()).expect("ca"))
            .tls_built_in_root_certs(false)
            .identity(identity)
            .timeout(Duration::from_secs(30));
        let builder = if http1 { builder.http1_only() } else { builder };
        builder.build().expect("client")
    };
    for http1 in [true, false] {
        let anonymous = client(&server.ca_pem, http1);
        let (status, _) = post_review(&anonymous, &server.url("/mutate"), hub_review()).await;
        assert_eq!(status, 403, "no client certificate");
        let health = anonymous
            .get(server.url("/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(health.status(), 200, "probes need no certificate");

        let apiserver_client = with_identity(&apiserver, http1);
        let (status, review) =
            post_review(&apiserver_client, &server.url("/mutate"), hub_review()).await;
        assert_eq!(status, 200, "{review}");
        assert_eq!(review["response"]["allowed"], true);
    }
    let stranger = certs::generate_client("someone", 1).expect("other pair");
    let err = with_identity(&stranger, true)
        .post(server.url("/mutate"))
        .header("content-type", "application/json")
        .body(hub_review())
        .send()
        .await;
    assert!(
        err.as_ref().is_err() || err.as_ref().is_ok_and(|r| r.status() != 200),
        "a certificate from another CA is refused: {err:?}"
    );
    server.stop().await.expect("clean stop");
}

fn hub_review() -> Vec<u8> {
    std::fs::read(examples().join("docker-hub/reviews/pod-nginx.json")).expect("review")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx_and_the_server_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_example("docker-hub", dir.path(), Limits::default()).await;
    let c = client(&server.ca_pem, true);
    let url = server.url("/mutate");

    // Wrong or missing content type.
    for content_type in [Some("text/plain"), Some("application/yaml"), None] {
        let mut request = c.post(&url).body(hub_review());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 415, "{content_type:?}");
        let text = response.text().await.expect("text");
        assert!(text.contains("application/json"), "{text}");
    }
    // Parameters and case are fine.
    let response = c
        .post(&url)
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(hub_review())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);

    // Too large, declared up front (answered before the body is sent) and streamed without a
    // length.
    let mut tls = tls_connect(
        server.running.admission_addr.port(),
        &[&server.ca_pem],
        &[b"http/1.1"],
    )
    .await;
    tls.write_all(
        format!(
            "POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            8 * 1024 * 1024 + 1
        )
        .as_bytes(),
    )
    .await
    .expect("write headers");
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("8388608-byte limit"), "{answer}");
    let big = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "padding": "x".repeat(9 * 1024 * 1024)}
    }))
    .expect("json");
    let status = streamed_post(&server, big).await;
    assert_eq!(status, 413);

    // Not JSON, not an AdmissionReview, no request, wrong version.
    let secret_marker = "fake-password-not-for-logs";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not valid JSON"),
        (
            format!("{{\"x\": \"{secret_marker}").into_bytes(),
            "ends too early",
        ),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})
                .to_string()
                .into_bytes(),
            "no request",
        ),
        (
            {
                let mut r: Value = serde_json::from_slice(&hub_review()).expect("json");
                r["apiVersion"] = json!("admission.k8s.io/v1beta1");
                r.to_string().into_bytes()
            },
            "only admission.k8s.io/v1",
        ),
        (
            {
                let mut r: Value = serde_json::from_slice(&hub_review()).expect("json");
                r["request"]["uid"] = json!(7);
                r["request"]["name"] = json!(secret_marker);
                r.to_string().into_bytes()
            },
            "AdmissionReview",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = post_review(&c, &url, body).await;
        assert_eq!(status, 400, "{answer}");
        let text = answer.as_str().unwrap_or_default();
        assert!(text.contains(expected), "{text:?} lacks {expected:?}");
        assert!(!text.contains(secret_marker), "{text}");
    }

    // Kinds and operations the injector does not handle: allowed, no patch.
    let mut review: Value = serde_json::from_slice(&hub_review()).expect("json");
    let mut update = review.clone();
    update["request"]["operation"] = json!("UPDATE");
    let mut deployment = review.clone();
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let mut delete = review.clone();
    delete["request"]["operation"] = json!("DELETE");
    delete["request"]["oldObject"] = delete["request"]["object"].take();
    let mut future_operation = review.clone();
    future_operation["request"]["operation"] = json!("SOMETHING_NEW");
    for body in [update, deployment, delete, future_operation] {
        let (status, answer) = post_review(&c, &url, body.to_string().into_bytes()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["response"]["allowed"], true);
        assert!(answer["response"].get("patch").is_none(), "{answer}");
    }

    // Wrong method and unknown path.
    let get = c.get(&url).send().await.expect("get");
    assert_eq!(get.status(), 405);
    let missing = c.post(server.url("/validate")).send().await.expect("post");
    assert_eq!(missing.status(), 404);

    // Arbitrary bytes never take the server down.
    for body in [
        vec![0u8; 100],
        vec![0xff; 3],
        b"[]".to_vec(),
        b"null".to_vec(),
        b"{}".to_vec(),
    ] {
        let (status, _) = post_review(&c, &url, body).await;
        assert!(status == 400 || status == 200, "{status}");
    }
    review["request"]["object"]["spec"]["containers"] = json!("not a list");
    let (status, answer) = post_review(&c, &url, review.to_string().into_bytes()).await;
    assert_eq!(status, 200);
    assert!(answer["response"].get("patch").is_none());
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("is not a list")
    );

    let health = c.get(server.url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(server.metrics_url())
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            r#"admission_requests_total{kind="unknown",operation="unknown",outcome="rejected"}"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains(secret_marker));
    server.stop().await.expect("clean stop");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_concurrency_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = Limits {
        body_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_millis(300),
        max_concurrent: 1,
        ..Limits::default()
    };
    let server = start_example("docker-hub", dir.path(), limits).await;
    let port = server.running.admission_addr.port();

    // Headers that never end: the connection is closed.
    let mut tls = tls_connect(port, &[&server.ca_pem], &[b"http/1.1"]).await;
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a connection with unfinished headers open"
    );

    // A body that never ends holds the only slot until it times out with 408; a second
    // request waits for the slot instead of running beside it.
    let tls = tls_connect(port, &[&server.ca_pem], &[b"http/1.1"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let (mut tx, channel) = Channel::<Bytes, std::convert::Infallible>::new(1);
    tx.send_data(Bytes::from_static(b"{\"apiVersion\":"))
        .await
        .expect("first chunk");
    let slow = tokio::spawn(async move {
        let response = sender
            .send_request(
                Request::post("/mutate")
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json")
                    .body(channel)
                    .expect("request"),
            )
            .await
            .expect("response");
        drop(tx);
        response.status().as_u16()
    });
    let c = client(&server.ca_pem, true);
    let (status, answer) = post_review(&c, &server.url("/mutate"), hub_review()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(slow.await.expect("slow task"), 408);
    server.stop().await.expect("clean stop");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_to_new_connections_and_old_ones_carry_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = certs::generate(&["127.0.0.1".into()], 2).expect("first");
    let second = certs::generate(&["127.0.0.1".into()], 2).expect("second");
    let mut mount = MountedSecret::new(dir.path());
    mount.publish_pair(&first);
    let setup = examples().join("docker-hub");
    let server = start_with(
        args(
            &setup.join("config.yaml"),
            vec![setup.join("cluster")],
            dir.path(),
            Limits::default(),
        ),
        first.ca_pem.clone(),
    )
    .await;
    let port = server.running.admission_addr.port();
    let cas = [first.ca_pem.as_str(), second.ca_pem.as_str()];
    let der = |pem: &str| {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .as_ref()
            .to_vec()
    };

    // An HTTP/1.1 connection opened before the rotation.
    let tls = tls_connect(port, &cas, &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&tls), der(&first.cert_pem));
    let (mut old, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let post = || {
        Request::post("/mutate?timeout=10s")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(hub_review())))
            .expect("request")
    };
    let response = old.send_request(post()).await.expect("before rotation");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");

    mount.publish_pair(&second);
    eventually("the new certificate on new connections", || async {
        peer_leaf(&tls_connect(port, &cas, &[b"h2"]).await) == der(&second.cert_pem)
    })
    .await;
    let response = old
        .send_request(post())
        .await
        .expect("old connection still served");
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.expect("body");
    assert_eq!(
        metric_value(
            &server,
            r#"pull_secret_injector_certificate_reloads_total{result="success"}"#
        )
        .await,
        Some(1.0)
    );

    // A broken pair (a key of another certificate) is refused; the second pair stays.
    let third = certs::generate(&["127.0.0.1".into()], 2).expect("third");
    mount.publish(&[
        (certs::CERT_FILE, third.cert_pem.as_bytes()),
        (certs::KEY_FILE, first.key_pem.as_bytes()),
    ]);
    eventually("the broken pair to be reported", || async {
        metric_value(
            &server,
            r#"pull_secret_injector_certificate_reloads_total{result="error"}"#,
        )
        .await
            == Some(1.0)
    })
    .await;
    let tls = tls_connect(port, &cas, &[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&tls), der(&second.cert_pem));
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_config_and_a_bad_reload_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = make_certs(dir.path());
    let setup = examples().join("docker-hub");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "credentials: [").expect("write");
    let server = start_with(
        args(
            &config,
            vec![setup.join("cluster")],
            dir.path(),
            Limits::default(),
        ),
        g.ca_pem.clone(),
    )
    .await;
    let c = client(&server.ca_pem, false);

    let ready = c.get(server.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
    let reason = ready.text().await.expect("text");
    assert!(reason.contains("config.yaml"), "{reason}");
    assert_eq!(
        c.get(server.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    // Not ready: pods are allowed untouched, with a warning saying why.
    let (status, answer) = post_review(&c, &server.url("/mutate"), hub_review()).await;
    assert_eq!(status, 200);
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("not ready"),
        "{answer}"
    );

    std::fs::copy(setup.join("config.yaml"), &config).expect("fix config");
    eventually("ready after the config is fixed", || async {
        c.get(server.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let (_, answer) = post_review(&c, &server.url("/mutate"), hub_review()).await;
    assert!(answer["response"]["patch"].is_string(), "{answer}");

    std::fs::write(&config, "credentials: [").expect("break config");
    eventually("the broken reload to be counted", || async {
        metric_value(
            &server,
            r#"pull_secret_injector_config_reloads_total{result="error"}"#,
        )
        .await
            == Some(2.0)
    })
    .await;
    assert_eq!(
        c.get(server.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );
    let (_, answer) = post_review(&c, &server.url("/mutate"), hub_review()).await;
    assert!(
        answer["response"]["patch"].is_string(),
        "still served: {answer}"
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_injections_warnings_and_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_example("docker-hub", dir.path(), Limits::default()).await;
    let c = client(&server.ca_pem, false);
    let reviews = examples().join("docker-hub/reviews");
    for file in [
        "pod-nginx.json",
        "pod-bad-image.json",
        "sa-default-batch.json",
    ] {
        let body = std::fs::read(reviews.join(file)).expect("review");
        let (status, _) = post_review(&c, &server.url("/mutate"), body).await;
        assert_eq!(status, 200);
    }
    let response = reqwest::get(server.metrics_url()).await.expect("metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("text");
    for expected in [
        r#"pull_secret_injector_admission_requests_total{kind="Pod",operation="CREATE",outcome="patched"} 2"#,
        r#"pull_secret_injector_admission_requests_total{kind="ServiceAccount",operation="CREATE",outcome="patched"} 1"#,
        "pull_secret_injector_admission_duration_seconds_count 3",
        r#"pull_secret_injector_injections_total{credential="dockerhub"} 3"#,
        r#"pull_secret_injector_warnings_total{reason="invalid_image"} 1"#,
        r#"pull_secret_injector_config_reloads_total{result="success"} 1"#,
        "pull_secret_injector_config_credentials 1",
        "pull_secret_injector_build_info{version=",
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
    // Nothing in the metrics names a namespace, an image or secret content.
    assert!(!text.contains("shop") && !text.contains("nginx"), "{text}");
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start_example("docker-hub", dir.path(), Limits::default()).await;
    let port = server.running.admission_addr.port();

    // A request whose body is still arriving when the shutdown starts.
    let tls = tls_connect(port, &[&server.ca_pem], &[b"h2"]).await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let (mut tx, channel) = Channel::<Bytes, std::convert::Infallible>::new(1);
    let body = hub_review();
    let (head, tail) = body.split_at(body.len() / 2);
    tx.send_data(Bytes::copy_from_slice(head))
        .await
        .expect("first half");
    let in_flight = tokio::spawn(async move {
        let response = sender
            .send_request(
                Request::post("https://127.0.0.1/mutate")
                    .header("content-type", "application/json")
                    .body(channel)
                    .expect("request"),
            )
            .await
            .expect("in-flight request answered");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body)
    });
    eventually("the request to be in flight", || async {
        metric_value(&server, "pull_secret_injector_admission_in_flight ").await == Some(1.0)
    })
    .await;

    if let Some(stop) = server.stop.take() {
        let _ = stop.send(());
    }
    eventually("new connections to be refused", || async {
        TcpStream::connect(("127.0.0.1", port)).await.is_err()
    })
    .await;
    tx.send_data(Bytes::copy_from_slice(tail))
        .await
        .expect("second half");
    drop(tx);
    let (status, body) = in_flight.await.expect("in-flight task");
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).expect("json");
    assert!(answer["response"]["patch"].is_string(), "{answer}");
    server
        .stop()
        .await
        .expect("server stops cleanly after finishing");
}
