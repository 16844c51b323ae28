//! Cluster-mode benchmark, against the project's in-process fake kube-apiserver
//! (`crates/fake-apiserver`) with a fixed latency added to every API request. The injector runs as
//! it is deployed: the release binary as a child process, through a kubeconfig, with its
//! default flags (client-side rate limit 50 requests/s, burst 100).
//!
//! Run: `cargo bench --bench cluster` (about a minute with the defaults).
//!
//! 1. Rotation: `CLUSTER_NAMESPACES` namespaces (1,000) each hold a current copy of one source,
//!    referenced by their `default` ServiceAccount. The source is rotated; the clock runs until
//!    every copy holds the new content, read from the fake's store. Reports the time and the
//!    API requests the injector made meanwhile. Target: under 30 s.
//! 2. Memory: `CLUSTER_MEM_NAMESPACES` namespaces (10,000), `CLUSTER_MEM_CREDENTIALS`
//!    credentials (100) and `CLUSTER_MEM_COPIES` copies (100,000, spread evenly) exist before
//!    the injector starts. Once it is ready and counts every copy as current, reports its
//!    resident memory (VmRSS) and peak (VmHWM). Target: under 50 MiB.
//!
//! `CLUSTER_LATENCY_MS` (5) sets the added latency. `CLUSTER_STRICT=1` makes a missed target
//! exit with status 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use fake_apiserver::{FakeApiServer, Fault, FaultKind};
use pull_secret_injector::config::Config;
use pull_secret_injector::policy::{Catalog, PreparedSource};
use pull_secret_injector::tls::certs;
use pull_secret_injector::view::ClusterState;

const BIN: &str = env!("CARGO_BIN_EXE_pull-secret-injector");
const OWN: &str = "pull-secret-injector";
const INJECTOR: &str = "system:serviceaccount:pull-secret-injector:pull-secret-injector";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A FAKE pull secret for `registry`, its key told apart by `version`.
fn source(name: &str, registry: &str, version: &str) -> Value {
    let auth = STANDARD.encode(format!("user:fake-password-{version}"));
    let config = json!({"auths": {registry: {"auth": auth}}});
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(config.to_string())},
    })
}

/// The sources as the injector prepares them, for the copies' content and hash.
fn prepared(config: &str, sources: &[Value]) -> Vec<PreparedSource> {
    let mut state = ClusterState::new();
    for s in sources {
        let secret: Secret = serde_json::from_value(s.clone()).expect("secret");
        state.insert_secret(secret);
    }
    let config = Config::from_raw_yaml(config).expect("config");
    let catalog = Catalog::build(config, &state, Some(OWN));
    catalog
        .prepared_sources()
        .map(|(_, p)| (**p).clone())
        .collect()
}

fn copy_object(source: &PreparedSource, ns: &str) -> Value {
    let mut copy = serde_json::to_value(source.copy_secret(ns)).expect("copy");
    copy["apiVersion"] = json!("v1");
    copy["kind"] = json!("Secret");
    copy
}

/// A fake cluster with the injector's namespace, RBAC and config.
async fn cluster(config: &str) -> FakeApiServer {
    let api = FakeApiServer::start().await;
    let rbac = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/base/rbac.yaml"),
    )
    .expect("rbac");
    api.load_rbac(&rbac).expect("rbac");
    for ns in [OWN, "default"] {
        api.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .await
            .expect("namespace");
    }
    api.create(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "pull-secret-injector", "namespace": OWN},
        "data": {"config.yaml": config},
    }))
    .await
    .expect("config map");
    api
}

/// The injector as a child process, its logs in a file.
struct Injector {
    child: Child,
    metrics: String,
}

impl Injector {
    fn start(api: &FakeApiServer, dir: &Path) -> Injector {
        let generated = certs::generate(&["127.0.0.1".into()], 2).expect("certs");
        certs::write(dir, &generated, true).expect("write certs");
        let token = api.service_account_token(OWN, "pull-secret-injector");
        let kubeconfig = api.write_kubeconfig(dir, &token);
        let log_path = dir.join("injector.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--tls-cert")
            .arg(dir.join(certs::CERT_FILE))
            .arg("--tls-key")
            .arg(dir.join(certs::KEY_FILE))
            .env("POD_NAMESPACE", OWN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the injector");
        let deadline = Instant::now() + Duration::from_secs(30);
        let metrics = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.split("metrics listening on http://").nth(1))
            {
                break format!("http://{}/metrics", addr.trim());
            }
            assert!(
                Instant::now() < deadline,
                "the injector did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Injector { child, metrics }
    }

    async fn copies(&self, state: &str) -> f64 {
        let Ok(response) = reqwest::get(&self.metrics).await else {
            return -1.0;
        };
        let text = response.text().await.unwrap_or_default();
        let prefix = "pull_secret_injector_copies{";
        text.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(&format!("state=\"{state}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// CPU seconds the injector has used (user + system).
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at the state, field 3.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15, at 11 and 12 here; the kernel counts 100/s.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

fn latency_fault() -> Option<Fault> {
    let ms: u64 = env_or("CLUSTER_LATENCY_MS", 5);
    (ms > 0).then(|| Fault::new(FaultKind::Latency(Duration::from_millis(ms))))
}

/// Returns whether the target was met.
async fn rotation(dir: &Path) -> bool {
    let namespaces: usize = env_or("CLUSTER_NAMESPACES", 1000);
    // Fake keys for real registries: verification off, so they are never sent there.
    let config = r#"
verify: {mode: "off"}
credentials:
  - name: icr
    secret: default/all-icr-io
    namespaces: {include: ["team-*"]}
serviceAccounts: ["default"]
"#;
    let api = cluster(config).await;
    let v1 = source("all-icr-io", "icr.io", "1");
    api.create(v1.clone()).await.expect("source");
    let old = &prepared(config, &[v1])[0];
    let setup = Instant::now();
    for i in 0..namespaces {
        let ns = format!("team-{i}");
        api.create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .await
            .expect("namespace");
        api.create(copy_object(old, &ns)).await.expect("copy");
    }
    // The namespaces' default ServiceAccounts reference the copy already: nothing to backfill.
    for i in 0..namespaces {
        let ns = format!("team-{i}");
        let sa = json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": ns,
                         "annotations": {"pull-secret-injector/injected": "all-icr-io"}},
            "imagePullSecrets": [{"name": "all-icr-io"}],
        });
        if api.create(sa.clone()).await.is_err() {
            api.replace(sa).await.expect("service account");
        }
    }
    println!(
        "rotation: {namespaces} namespaces with a current copy, set up in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let fault = latency_fault().map(|f| api.add_fault(f));
    let injector = Injector::start(&api, dir);
    let startup = wait_for(
        "every copy to be counted current",
        Duration::from_secs(300),
        async || injector.copies("current").await == namespaces as f64,
    )
    .await;
    println!(
        "rotation: injector ready, {namespaces} copies current, after {:.1} s",
        startup.as_secs_f64()
    );

    let v2 = source("all-icr-io", "icr.io", "2");
    let new_hash = prepared(config, std::slice::from_ref(&v2))[0].hash.clone();
    api.clear_requests();
    api.replace(v2).await.expect("rotate");
    let took = wait_for(
        "every copy to hold the rotated content",
        Duration::from_secs(300),
        async || {
            (0..namespaces).all(|i| {
                api.get("secrets", Some(&format!("team-{i}")), "all-icr-io")
                    .is_some_and(|s| {
                        s["metadata"]["annotations"]["pull-secret-injector/content-hash"]
                            == new_hash.as_str()
                    })
            })
        },
    )
    .await;
    let mut by_verb: BTreeMap<String, usize> = BTreeMap::new();
    for r in api.requests().iter().filter(|r| r.user == INJECTOR) {
        *by_verb
            .entry(format!("{} {}", r.verb, r.resource))
            .or_default() += 1;
    }
    if let Some(f) = fault {
        api.remove_fault(f);
    }
    let ok = took < Duration::from_secs(30);
    println!(
        "rotation: {namespaces} copies updated in {:.2} s (target < 30 s: {}); injector API requests meanwhile: {}",
        took.as_secs_f64(),
        if ok { "met" } else { "MISSED" },
        by_verb
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    ok
}

async fn memory(dir: &Path) -> bool {
    let namespaces: usize = env_or("CLUSTER_MEM_NAMESPACES", 10_000);
    let credentials: usize = env_or("CLUSTER_MEM_CREDENTIALS", 100);
    let copies: usize = env_or("CLUSTER_MEM_COPIES", 100_000);
    let mut config = String::from("verify: {mode: \"off\"}\ncredentials:\n");
    for c in 0..credentials {
        config.push_str(&format!(
            "  - name: cred-{c}\n    secret: default/src-{c}\n    namespaces: {{include: [\"ns-*\"]}}\n"
        ));
    }
    config.push_str("serviceAccounts: []\n");
    let api = cluster(&config).await;
    let sources: Vec<Value> = (0..credentials)
        .map(|c| source(&format!("src-{c}"), &format!("reg-{c}.example.com"), "1"))
        .collect();
    for s in &sources {
        api.create(s.clone()).await.expect("source");
    }
    let prepared = prepared(&config, &sources);
    let setup = Instant::now();
    let per_namespace = copies.div_ceil(namespaces).max(1);
    let mut made = 0;
    for i in 0..namespaces {
        let ns = format!("ns-{i}");
        api.create(json!({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": ns, "labels": {"team": format!("t{}", i % 50)}}}))
            .await
            .expect("namespace");
        for j in 0..per_namespace {
            if made == copies {
                break;
            }
            let source = &prepared[(i * per_namespace + j) % prepared.len()];
            api.create(copy_object(source, &ns)).await.expect("copy");
            made += 1;
        }
    }
    println!(
        "memory: {namespaces} namespaces, {credentials} credentials, {made} copies, set up in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let fault = latency_fault().map(|f| api.add_fault(f));
    let injector = Injector::start(&api, dir);
    let synced = wait_for(
        "every copy to be counted",
        Duration::from_secs(600),
        async || injector.copies("current").await == made as f64,
    )
    .await;
    let (rss, hwm) = injector.memory_kib();
    let cpu = injector.cpu_seconds();
    if let Some(f) = fault {
        api.remove_fault(f);
    }
    let ok = hwm < 50 * 1024;
    println!(
        "memory: synced after {:.1} s, {cpu:.1} s of injector CPU; RSS {:.1} MiB, peak {:.1} MiB (target < 50 MiB: {})",
        synced.as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        if ok { "met" } else { "MISSED" }
    );
    ok
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with nothing to measure.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (rotation_dir, memory_dir): (PathBuf, PathBuf) =
        (dir.path().join("rotation"), dir.path().join("memory"));
    std::fs::create_dir_all(&rotation_dir).expect("dir");
    std::fs::create_dir_all(&memory_dir).expect("dir");
    let ok = runtime.block_on(async {
        let rotation = rotation(&rotation_dir).await;
        let memory = memory(&memory_dir).await;
        rotation && memory
    });
    if !ok && std::env::var("CLUSTER_STRICT").is_ok_and(|v| v == "1") {
        std::process::exit(1);
    }
}
