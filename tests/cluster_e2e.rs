//! End to end: the real `serve` in cluster mode against the in-process fake kube-apiserver
//! (`tests/support/`), through a kubeconfig, with `manifests/base/rbac.yaml` enforced. The fake calls
//! the webhook over CA-verified HTTPS on Pod and ServiceAccount creation, as kube-apiserver
//! does, and stores what the patch makes of the object; the tests read back the stored objects.
//!
//! No test waits for a duration: each polls for an outcome (an object, a metric) with a
//! generous deadline.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use pull_secret_injector::certs;
use pull_secret_injector::daemon::{self, ClusterOptions, Running, ServeArgs, TlsSource};
use pull_secret_injector::server::Limits;
use support::{FakeApiServer, Fault, FaultKind};

const OWN_NAMESPACE: &str = "pull-secret-injector";
const INJECTOR: &str = "system:serviceaccount:pull-secret-injector:pull-secret-injector";
const RUNNER: &str = "e2e-runner";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> PathBuf {
    repo().join("examples")
}

/// Polls `check` until it holds; fails after 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A fake cluster with the injector's namespace, RBAC and config in place.
struct Cluster {
    api: FakeApiServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn new(config_yaml: &str) -> Cluster {
        let api = FakeApiServer::start().await;
        let rbac = std::fs::read_to_string(repo().join("manifests/base/rbac.yaml")).expect("rbac");
        api.load_rbac(&rbac).expect("rbac loads");
        let cluster = Cluster {
            api,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        cluster.namespace(OWN_NAMESPACE, json!({})).await;
        cluster
            .api
            .create(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "pull-secret-injector", "namespace": OWN_NAMESPACE},
                "data": {"config.yaml": config_yaml},
            }))
            .await
            .expect("config map");
        cluster
    }

    /// Grants what `manifests/components/prune` grants (delete on Secrets), as an install with
    /// `prune: true` has it.
    fn grant_prune(&self) {
        let rbac = std::fs::read_to_string(repo().join("manifests/components/prune/rbac.yaml"))
            .expect("prune rbac");
        self.api.load_rbac(&rbac).expect("prune rbac loads");
    }

    async fn namespace(&self, name: &str, labels: Value) {
        self.api
            .create(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": labels},
            }))
            .await
            .expect("namespace");
    }

    /// Creates every object of a manifest file (Namespaces first); an object that exists
    /// already (a namespace's `default` ServiceAccount) is replaced.
    async fn load(&self, dir: &Path) {
        let mut objects = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("manifest");
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value = serde_yaml::Value::deserialize(doc).expect("yaml");
                if value.is_null() {
                    continue;
                }
                let mut json: Value = serde_json::to_value(value).expect("json");
                if json["kind"] != "Namespace" && json["metadata"]["namespace"].is_null() {
                    json["metadata"]["namespace"] = json!("default");
                }
                objects.push(json);
            }
        }
        let rank = |v: &Value| match v["kind"].as_str() {
            Some("Namespace") => 0,
            Some("Secret") => 1,
            _ => 2,
        };
        objects.sort_by_key(rank);
        let mut terminating_namespaces = Vec::new();
        for mut object in objects {
            let terminating = object["metadata"]["deletionTimestamp"].is_string()
                || object["status"]["phase"] == "Terminating";
            if object["kind"] == "Namespace" {
                if let Some(map) = object["metadata"].as_object_mut() {
                    map.remove("deletionTimestamp");
                }
                object["status"] = json!({});
            }
            let kind = object["kind"].as_str().unwrap_or("").to_string();
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let ns = object["metadata"]["namespace"].as_str().map(str::to_string);
            // A namespace's `default` ServiceAccount may be created by the fake's controller
            // at any moment: whichever comes second replaces.
            let exists = self
                .api
                .get(&resource(&kind), ns.as_deref(), &name)
                .is_some();
            if exists {
                self.api.replace(object).await.expect("replace");
            } else if let Err(e) = self.api.create(object.clone()).await {
                assert_eq!(e.code, 409, "{kind} {name}: {e}");
                self.api.replace(object).await.expect("replace");
            }
            if terminating {
                terminating_namespaces.push(name);
            }
        }
        // Deleted last, so that their contents could be created first.
        for name in terminating_namespaces {
            self.api
                .delete("namespaces", None, &name)
                .await
                .expect("delete namespace");
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        let token = self
            .api
            .service_account_token(OWN_NAMESPACE, "pull-secret-injector");
        self.api.write_kubeconfig(self.dir.path(), &token)
    }

    /// Starts a replica and points the webhook at it.
    async fn start_injector(&self) -> Injector {
        let injector = Injector::start(self, &format!("r{}", rand_suffix())).await;
        injector.register(&self.api);
        injector
    }

    async fn create_pod(&self, ns: &str, images: &[&str]) -> Value {
        self.create_pod_as(ns, images, false).await
    }

    async fn create_pod_as(&self, ns: &str, images: &[&str], dry_run: bool) -> Value {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
            .collect();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "e2e-", "namespace": ns},
            "spec": {"serviceAccountName": RUNNER, "containers": containers},
        });
        self.api
            .create_as("e2e-user", &["system:authenticated"], pod, dry_run)
            .await
            .expect("pod created")
    }

    async fn runner(&self, ns: &str) {
        if self.api.get("serviceaccounts", Some(ns), RUNNER).is_none() {
            self.api
                .create(json!({
                    "apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": RUNNER, "namespace": ns},
                }))
                .await
                .expect("runner ServiceAccount");
        }
    }

    fn secret(&self, ns: &str, name: &str) -> Option<Value> {
        self.api.get("secrets", Some(ns), name)
    }

    fn writes_by_injector(&self, verb: &str, resource: &str) -> usize {
        self.api.count(INJECTOR, verb, resource)
    }
}

fn resource(kind: &str) -> String {
    match kind {
        "Namespace" => "namespaces",
        "Secret" => "secrets",
        "ServiceAccount" => "serviceaccounts",
        "ConfigMap" => "configmaps",
        "Pod" => "pods",
        other => panic!("unexpected kind {other}"),
    }
    .to_string()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn pull_secrets(object: &Value) -> Vec<String> {
    let list = if object["kind"] == "Pod" {
        &object["spec"]["imagePullSecrets"]
    } else {
        &object["imagePullSecrets"]
    };
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn decoded_auths(secret: &Value) -> BTreeSet<String> {
    let data = secret["data"][".dockerconfigjson"]
        .as_str()
        .expect("dockerconfigjson");
    let bytes = STANDARD.decode(data).expect("base64");
    let config: Value = serde_json::from_slice(&bytes).expect("json");
    config["auths"]
        .as_object()
        .expect("auths")
        .keys()
        .cloned()
        .collect()
}

/// The admission warnings of the last Pod the webhook was called for.
fn last_pod_warnings(cluster: &Cluster) -> Vec<String> {
    cluster
        .api
        .admission_calls()
        .into_iter()
        .rev()
        .find(|c| c.kind == "Pod")
        .expect("an admission call for a pod")
        .warnings
}

fn annotation(object: &Value, key: &str) -> Option<String> {
    object["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

/// One running replica of the injector.
struct Injector {
    running: Running,
    stop: Option<oneshot::Sender<()>>,
    ca_pem: String,
}

impl Injector {
    async fn start(cluster: &Cluster, name: &str) -> Injector {
        Self::start_with(cluster, name, |_| {}).await
    }

    /// A replica in self-signed mode, as the base manifests run it.
    async fn start_self_signed(cluster: &Cluster, name: &str) -> Injector {
        Self::launch(cluster, name, |_| {}, true).await
    }

    async fn start_with(
        cluster: &Cluster,
        name: &str,
        tweak: impl FnOnce(&mut ClusterOptions),
    ) -> Injector {
        Self::launch(cluster, name, |args| tweak(&mut args.cluster_mode), false).await
    }

    async fn launch(
        cluster: &Cluster,
        name: &str,
        tweak: impl FnOnce(&mut ServeArgs),
        self_signed: bool,
    ) -> Injector {
        let dir = cluster.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let generated = certs::generate(&["127.0.0.1".into()], 2).expect("certs");
        certs::write(&dir, &generated, true).expect("write certs");
        let options = ClusterOptions {
            kubeconfig: Some(cluster.kubeconfig()),
            retry_interval: Duration::from_millis(200),
            api_qps: 1000,
            api_burst: 1000,
            ..ClusterOptions::default()
        };
        let mut args = ServeArgs {
            config: None,
            cluster: Vec::new(),
            own_namespace: OWN_NAMESPACE.to_string(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            metrics_listen: "127.0.0.1:0".parse().expect("addr"),
            tls: if self_signed {
                TlsSource::SelfSigned {
                    service: "pull-secret-injector".to_string(),
                    secret: "pull-secret-injector-tls".to_string(),
                    webhook_configuration: "pull-secret-injector".to_string(),
                    validity: Duration::from_secs(365 * 24 * 3600),
                }
            } else {
                TlsSource::Files {
                    cert: dir.join(certs::CERT_FILE),
                    key: dir.join(certs::KEY_FILE),
                }
            },
            client_ca: None,
            reload_interval: Duration::from_millis(200),
            limits: Limits::default(),
            cluster_mode: options,
        };
        tweak(&mut args);
        let (tx, rx) = oneshot::channel::<()>();
        let running = daemon::start(&args, async move {
            let _ = rx.await;
        })
        .await
        .expect("injector starts");
        let injector = Injector {
            running,
            stop: Some(tx),
            ca_pem: generated.ca_pem,
        };
        let app = injector.running.app.clone();
        eventually("the injector to be ready", || {
            let app = app.clone();
            async move { app.is_ready() }
        })
        .await;
        injector
    }

    /// Registers this replica as the cluster's mutating webhook: the configuration of
    /// `manifests/base/webhook.yaml`, with the Service reference replaced by this replica's URL.
    fn register(&self, api: &FakeApiServer) {
        let text = std::fs::read_to_string(repo().join("manifests/base/webhook.yaml"))
            .expect("webhook manifest");
        let mut config: MutatingWebhookConfiguration =
            serde_yaml::from_str(&text).expect("webhook configuration");
        for webhook in config.webhooks.iter_mut().flatten() {
            webhook.client_config.service = None;
            webhook.client_config.url = Some(format!(
                "https://127.0.0.1:{}/mutate",
                self.running.admission_addr.port()
            ));
            webhook.client_config.ca_bundle =
                Some(k8s_openapi::ByteString(self.ca_pem.clone().into_bytes()));
        }
        api.register_webhook(config);
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.running.metrics_addr))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    async fn metric(&self, prefix: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.running.task).await;
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expectation {
    setup: String,
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    namespace_labels: BTreeMap<String, String>,
    #[serde(default)]
    images: Vec<String>,
    expect_injected: Vec<String>,
}

/// The config of an example as the text of `config.yaml` (the examples hold either raw config
/// or a whole ConfigMap manifest).
fn example_config(setup: &str) -> String {
    let text = std::fs::read_to_string(examples().join(setup).join("config.yaml")).expect("config");
    let value: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    match value.get("kind").and_then(|k| k.as_str()) {
        Some("ConfigMap") => value["data"]["config.yaml"]
            .as_str()
            .expect("config.yaml key")
            .to_string(),
        _ => text,
    }
}

fn is_terminating(cluster: &Cluster, ns: &str) -> bool {
    cluster
        .api
        .get("namespaces", None, ns)
        .is_some_and(|n| n["status"]["phase"] == "Terminating")
}

/// Every setup of the examples (one per seed document): the cluster of `cluster/` exists
/// before the injector starts, and each `check` expectation becomes a pod created through the
/// API. The stored pod must carry exactly the expected secrets, each of which must exist in
/// the namespace as a usable pull secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_setup_injects_and_copies_what_kubelet_needs() {
    let text = std::fs::read_to_string(examples().join("expectations.json")).expect("file");
    let expectations: Vec<Expectation> = serde_json::from_str(&text).expect("expectations");
    let setups: BTreeSet<&str> = expectations.iter().map(|e| e.setup.as_str()).collect();
    let mut checked = 0;
    for setup in setups {
        let cluster = Cluster::new(&example_config(setup)).await;
        cluster.load(&examples().join(setup).join("cluster")).await;
        let injector = cluster.start_injector().await;
        for e in expectations
            .iter()
            .filter(|e| e.setup == setup && e.kind == "check")
        {
            if cluster.api.get("namespaces", None, &e.namespace).is_none() {
                cluster
                    .namespace(&e.namespace, json!(e.namespace_labels))
                    .await;
            }
            if is_terminating(&cluster, &e.namespace) {
                continue;
            }
            cluster.runner(&e.namespace).await;
            let images: Vec<&str> = e.images.iter().map(String::as_str).collect();
            let pod = cluster.create_pod(&e.namespace, &images).await;
            let what = format!("{setup}: {} {:?}", e.namespace, e.images);
            assert_eq!(pull_secrets(&pod), e.expect_injected, "{what}");
            for name in &e.expect_injected {
                let secret = cluster
                    .secret(&e.namespace, name)
                    .unwrap_or_else(|| panic!("{what}: secret {name} missing"));
                assert!(
                    !decoded_auths(&secret).is_empty(),
                    "{what}: {name} is empty"
                );
            }
            checked += 1;
        }
        injector.stop().await;
    }
    assert!(checked >= 40, "only {checked} expectations were checked");
}

const ICR_CONFIG: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    namespaces: {include: ["team-*"]}
serviceAccounts: ["default"]
pods: true
prune: false
"#;

/// The same, without ServiceAccount injection: copies are made only for pods.
const ICR_PODS_ONLY: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    namespaces: {include: ["team-*"]}
serviceAccounts: []
pods: true
"#;

const ICR_AND_HUB: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    namespaces: {include: ["team-*"]}
  - name: hub
    secret: default/dockerhub-pull
    namespaces: {include: ["team-*"]}
serviceAccounts: []
"#;

/// IBM's `all-icr-io`, with a FAKE key that `version` tells apart.
fn icr_source(version: &str) -> Value {
    let auth = STANDARD.encode(format!("iamapikey:fake-apikey-{version}"));
    let config = json!({"auths": {
        "icr.io": {"auth": auth},
        "us.icr.io": {"auth": auth},
    }});
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "all-icr-io", "namespace": "default"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(config.to_string())},
    })
}

fn auth_of(secret: &Value) -> String {
    let data = secret["data"][".dockerconfigjson"].as_str().expect("data");
    let config: Value = serde_json::from_slice(&STANDARD.decode(data).expect("b64")).expect("json");
    config["auths"]["icr.io"]["auth"]
        .as_str()
        .expect("auth")
        .to_string()
}

async fn icr_cluster(config: &str) -> Cluster {
    let cluster = Cluster::new(config).await;
    if cluster.api.get("namespaces", None, "default").is_none() {
        cluster.namespace("default", json!({})).await;
    }
    cluster.api.create(icr_source("1")).await.expect("source");
    cluster
}

async fn wait_for_reference(cluster: &Cluster, ns: &str, sa: &str, name: &str) {
    eventually(&format!("{ns}/{sa} to reference {name}"), || async {
        cluster
            .api
            .get("serviceaccounts", Some(ns), sa)
            .is_some_and(|sa| pull_secrets(&sa).contains(&name.to_string()))
            && cluster.secret(ns, name).is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_namespace_gets_its_default_service_account_patched_at_creation() {
    let cluster = icr_cluster(ICR_CONFIG).await;
    let injector = cluster.start_injector().await;
    cluster.namespace("team-new", json!({})).await;
    wait_for_reference(&cluster, "team-new", "default", "all-icr-io").await;

    // It happened in admission, not only by backfill.
    let calls = cluster.api.admission_calls();
    let sa_call = calls
        .iter()
        .find(|c| c.kind == "ServiceAccount" && c.namespace == "team-new")
        .expect("the default ServiceAccount went through the webhook");
    assert!(sa_call.patched, "{:?}", sa_call.error);
    let sa = cluster
        .api
        .get("serviceaccounts", Some("team-new"), "default")
        .expect("sa");
    assert_eq!(
        annotation(&sa, "pull-secret-injector/injected").as_deref(),
        Some("all-icr-io")
    );

    // The copy is ours, filtered, labelled and annotated.
    let copy = cluster.secret("team-new", "all-icr-io").expect("copy");
    assert_eq!(copy["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(
        copy["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "pull-secret-injector"
    );
    assert_eq!(
        annotation(&copy, "pull-secret-injector/source").as_deref(),
        Some("default/all-icr-io")
    );
    assert_eq!(
        decoded_auths(&copy),
        BTreeSet::from(["icr.io".to_string(), "us.icr.io".to_string()])
    );
    // Out of scope: no copy, no reference.
    cluster.namespace("elsewhere", json!({})).await;
    cluster.runner("elsewhere").await;
    let pod = cluster.create_pod("elsewhere", &["us.icr.io/x/y:1"]).await;
    assert!(pull_secrets(&pod).is_empty());
    assert!(cluster.secret("elsewhere", "all-icr-io").is_none());
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_that_existed_before_the_injector_are_backfilled() {
    let cluster = icr_cluster(ICR_CONFIG).await;
    cluster.namespace("team-old", json!({})).await;
    cluster.namespace("team-mine", json!({})).await;
    // A ServiceAccount that already names a secret of its own keeps it, first.
    eventually("the default ServiceAccount of team-mine", || async {
        cluster
            .api
            .get("serviceaccounts", Some("team-mine"), "default")
            .is_some()
    })
    .await;
    cluster
        .api
        .replace(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "team-mine"},
            "imagePullSecrets": [{"name": "mine"}],
        }))
        .await
        .expect("replace");

    let injector = cluster.start_injector().await;
    wait_for_reference(&cluster, "team-old", "default", "all-icr-io").await;
    wait_for_reference(&cluster, "team-mine", "default", "all-icr-io").await;
    let sa = cluster
        .api
        .get("serviceaccounts", Some("team-mine"), "default")
        .expect("sa");
    assert_eq!(pull_secrets(&sa), ["mine", "all-icr-io"]);
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_source_reaches_every_copy_with_one_write_each() {
    let cluster = icr_cluster(ICR_CONFIG).await;
    let namespaces: Vec<String> = (0..6).map(|i| format!("team-{i}")).collect();
    for ns in &namespaces {
        cluster.namespace(ns, json!({})).await;
    }
    let injector = cluster.start_injector().await;
    for ns in &namespaces {
        wait_for_reference(&cluster, ns, "default", "all-icr-io").await;
    }
    let old = auth_of(&cluster.secret("default", "all-icr-io").expect("source"));
    cluster.api.clear_requests();
    cluster.api.replace(icr_source("2")).await.expect("rotate");
    let new = auth_of(&cluster.secret("default", "all-icr-io").expect("source"));
    assert_ne!(old, new);
    eventually("every copy to hold the rotated key", || async {
        namespaces.iter().all(|ns| {
            cluster
                .secret(ns, "all-icr-io")
                .is_some_and(|s| auth_of(&s) == new)
        })
    })
    .await;
    // The fake records a request once its response is sent, a moment after the store changed.
    eventually("every write to be recorded", || async {
        cluster.writes_by_injector("patch", "secrets") >= namespaces.len()
    })
    .await;
    assert_eq!(
        cluster.writes_by_injector("patch", "secrets"),
        namespaces.len(),
        "one write per copy"
    );
    assert_eq!(cluster.writes_by_injector("create", "secrets"), 0);
    eventually("the copies metric to show them current", || async {
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"current\"}")
            .await
            == namespaces.len() as f64
    })
    .await;
    // Settled: nothing more is written.
    let writes = cluster.writes_by_injector("patch", "secrets");
    cluster.namespace("team-late", json!({})).await;
    wait_for_reference(&cluster, "team-late", "default", "all-icr-io").await;
    assert_eq!(cluster.writes_by_injector("patch", "secrets"), writes);
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_secret_with_the_copy_name_is_never_touched() {
    let cluster = icr_cluster(ICR_PODS_ONLY).await;
    cluster.namespace("team-f", json!({})).await;
    let mut foreign = icr_source("hand-made");
    foreign["metadata"]["namespace"] = json!("team-f");
    let foreign = cluster.api.create(foreign).await.expect("foreign");
    let injector = cluster.start_injector().await;
    cluster.runner("team-f").await;
    let pod = cluster
        .create_pod("team-f", &["us.icr.io/team/app:1"])
        .await;
    assert!(pull_secrets(&pod).is_empty(), "{pod}");
    let warnings = last_pod_warnings(&cluster);
    assert!(
        warnings.iter().any(|w| w.contains("not managed")),
        "{warnings:?}"
    );
    let after = cluster.secret("team-f", "all-icr-io").expect("still there");
    assert_eq!(
        after["metadata"]["resourceVersion"],
        foreign["metadata"]["resourceVersion"]
    );
    assert_eq!(cluster.writes_by_injector("patch", "secrets"), 0);
    assert_eq!(cluster.writes_by_injector("delete", "secrets"), 0);
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_returns_the_patch_and_creates_nothing() {
    let cluster = icr_cluster(ICR_PODS_ONLY).await;
    cluster.namespace("team-d", json!({})).await;
    cluster.runner("team-d").await;
    let injector = cluster.start_injector().await;
    let pod = cluster
        .create_pod_as("team-d", &["icr.io/team/app:1"], true)
        .await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    assert!(cluster.secret("team-d", "all-icr-io").is_none());
    assert!(cluster.api.list("pods", Some("team-d")).is_empty());
    assert_eq!(cluster.writes_by_injector("create", "secrets"), 0);

    let pod = cluster.create_pod("team-d", &["icr.io/team/app:1"]).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    assert!(cluster.secret("team-d", "all-icr-io").is_some());
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_and_an_invalid_config_is_rejected_with_an_event() {
    let cluster = icr_cluster(ICR_PODS_ONLY).await;
    let hub = json!({"auths": {"https://index.docker.io/v1/": {"auth": STANDARD.encode("u:fake-password-1")}}});
    cluster
        .api
        .create(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "dockerhub-pull", "namespace": "default"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": STANDARD.encode(hub.to_string())},
        }))
        .await
        .expect("hub source");
    cluster.namespace("team-c", json!({})).await;
    cluster.runner("team-c").await;
    let injector = cluster.start_injector().await;
    let pod = cluster.create_pod("team-c", &["nginx:1.27"]).await;
    assert!(pull_secrets(&pod).is_empty());

    set_config(&cluster, ICR_AND_HUB).await;
    eventually("the new credential to be injected", || async {
        let pod = cluster.create_pod("team-c", &["nginx:1.27"]).await;
        pull_secrets(&pod) == ["dockerhub-pull"]
    })
    .await;

    set_config(
        &cluster,
        "credentials:\n  - name: Bad_Name\n    secret: nowhere\n",
    )
    .await;
    eventually("an InvalidConfig Event on the ConfigMap", || async {
        cluster
            .api
            .list("events", Some(OWN_NAMESPACE))
            .iter()
            .any(|e| {
                e["reason"] == "InvalidConfig"
                    && e["involvedObject"]["kind"] == "ConfigMap"
                    && e["involvedObject"]["name"] == "pull-secret-injector"
                    && e["type"] == "Warning"
            })
    })
    .await;
    eventually("the reload error to be counted", || async {
        injector
            .metric("pull_secret_injector_config_reloads_total{result=\"error\"}")
            .await
            >= 1.0
    })
    .await;
    // The last good config stays in force.
    let pod = cluster.create_pod("team-c", &["nginx:1.27"]).await;
    assert_eq!(pull_secrets(&pod), ["dockerhub-pull"]);
    assert!(injector.running.app.is_ready());
    injector.stop().await;
}

async fn set_config(cluster: &Cluster, text: &str) {
    let mut cm = cluster
        .api
        .get("configmaps", Some(OWN_NAMESPACE), "pull-secret-injector")
        .expect("config map");
    cm["data"]["config.yaml"] = json!(text);
    if let Some(meta) = cm["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    cluster.api.replace(cm).await.expect("config updated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_work_without_duplicates_or_flapping() {
    let cluster = icr_cluster(ICR_CONFIG).await;
    let namespaces: Vec<String> = (0..4).map(|i| format!("team-{i}")).collect();
    for ns in &namespaces[..2] {
        cluster.namespace(ns, json!({})).await;
    }
    let first = Injector::start(&cluster, "first").await;
    let second = Injector::start(&cluster, "second").await;
    first.register(&cluster.api);
    for ns in &namespaces[2..] {
        cluster.namespace(ns, json!({})).await;
    }
    for ns in &namespaces {
        wait_for_reference(&cluster, ns, "default", "all-icr-io").await;
    }
    second.register(&cluster.api);
    cluster.api.clear_requests();
    cluster.api.replace(icr_source("2")).await.expect("rotate");
    let new = auth_of(&cluster.secret("default", "all-icr-io").expect("source"));
    eventually("every copy to hold the rotated key", || async {
        namespaces.iter().all(|ns| {
            cluster
                .secret(ns, "all-icr-io")
                .is_some_and(|s| auth_of(&s) == new)
        })
    })
    .await;
    // Both replicas may try each copy, but a conditional write lands once per copy. (The fake
    // records a request once its response is sent, a moment after the store changed.)
    let succeeded = || {
        cluster
            .api
            .requests()
            .iter()
            .filter(|r| {
                r.user == INJECTOR && r.verb == "patch" && r.resource == "secrets" && r.status < 300
            })
            .count()
    };
    eventually("every successful write to be recorded", || async {
        succeeded() >= namespaces.len()
    })
    .await;
    assert_eq!(succeeded(), namespaces.len());
    assert!(cluster.writes_by_injector("patch", "secrets") <= 2 * namespaces.len());
    for ns in &namespaces {
        let sa = cluster
            .api
            .get("serviceaccounts", Some(ns), "default")
            .expect("sa");
        assert_eq!(pull_secrets(&sa), ["all-icr-io"], "{ns}: no duplicate");
    }
    // New pods through the second replica.
    cluster.namespace("team-9", json!({})).await;
    cluster.runner("team-9").await;
    let pod = cluster.create_pod("team-9", &["icr.io/a/b:1"]).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    // Settled: one more namespace costs one copy and one ServiceAccount patch, and nothing
    // already done is written again.
    let patches = cluster.writes_by_injector("patch", "secrets");
    cluster.namespace("team-10", json!({})).await;
    wait_for_reference(&cluster, "team-10", "default", "all-icr-io").await;
    assert_eq!(cluster.writes_by_injector("patch", "secrets"), patches);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_and_dropped_watches_lose_no_copy() {
    let cluster = icr_cluster(ICR_PODS_ONLY).await;
    cluster.namespace("team-a", json!({})).await;
    cluster.runner("team-a").await;
    let injector = cluster.start_injector().await;

    // The copy cannot be created at admission: the pod still names it, with a warning, and the
    // reconciler makes it once the API recovers.
    let fault = cluster.api.add_fault(Fault {
        method: Some("POST".to_string()),
        path_contains: "/namespaces/team-a/secrets".to_string(),
        kind: FaultKind::Status(500),
        times: Some(3),
        watch_only: false,
    });
    let pod = cluster.create_pod("team-a", &["icr.io/a/b:1"]).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    let warnings = last_pod_warnings(&cluster);
    assert!(
        warnings.iter().any(|w| w.contains("not created yet")),
        "{warnings:?}"
    );
    eventually("the deferred copy", || async {
        cluster.secret("team-a", "all-icr-io").is_some()
    })
    .await;
    cluster.api.remove_fault(fault);

    // A slow API: the admission answers within its copy budget, the copy follows.
    cluster.namespace("team-slow", json!({})).await;
    cluster.runner("team-slow").await;
    let slow = cluster.api.add_fault(Fault {
        method: Some("POST".to_string()),
        path_contains: "/namespaces/team-slow/secrets".to_string(),
        kind: FaultKind::Latency(Duration::from_secs(4)),
        times: Some(1),
        watch_only: false,
    });
    let pod = cluster.create_pod("team-slow", &["icr.io/a/b:1"]).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    eventually("the slow copy", || async {
        cluster.secret("team-slow", "all-icr-io").is_some()
    })
    .await;
    cluster.api.remove_fault(slow);

    // Watches dropped and history expired: the rotation still arrives (by relisting).
    cluster.api.drop_watches();
    cluster.api.expire_history();
    cluster.api.replace(icr_source("2")).await.expect("rotate");
    let new = auth_of(&cluster.secret("default", "all-icr-io").expect("source"));
    eventually("the copies to follow the rotation", || async {
        ["team-a", "team-slow"].iter().all(|ns| {
            cluster
                .secret(ns, "all-icr-io")
                .is_some_and(|s| auth_of(&s) == new)
        })
    })
    .await;
    assert!(
        injector
            .metric("pull_secret_injector_reconcile_errors_total{action=\"create_copy\"}")
            .await
            >= 1.0
    );
    injector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_is_never_written() {
    let cluster = icr_cluster(ICR_CONFIG).await;
    for ns in ["team-live", "team-gone"] {
        cluster.namespace(ns, json!({})).await;
    }
    let injector = cluster.start_injector().await;
    for ns in ["team-live", "team-gone"] {
        wait_for_reference(&cluster, ns, "default", "all-icr-io").await;
    }
    cluster
        .api
        .delete("namespaces", None, "team-gone")
        .await
        .expect("delete");
    eventually("the injector to see team-gone terminating", || async {
        injector.running.index.as_ref().is_some_and(|ix| {
            use pull_secret_injector::state::ClusterView;
            ix.read()
                .namespace("team-gone")
                .is_some_and(|n| n.terminating)
        })
    })
    .await;
    cluster.api.clear_requests();
    cluster.api.replace(icr_source("2")).await.expect("rotate");
    let new = auth_of(&cluster.secret("default", "all-icr-io").expect("source"));
    eventually("the live copy to follow", || async {
        cluster
            .secret("team-live", "all-icr-io")
            .is_some_and(|s| auth_of(&s) == new)
    })
    .await;
    let written: Vec<_> = cluster
        .api
        .requests()
        .into_iter()
        .filter(|r| {
            r.user == INJECTOR
                && r.namespace.as_deref() == Some("team-gone")
                && !matches!(r.verb.as_str(), "get" | "list" | "watch")
        })
        .collect();
    assert!(written.is_empty(), "{written:?}");
    assert_ne!(
        auth_of(&cluster.secret("team-gone", "all-icr-io").expect("copy")),
        new
    );
    injector.stop().await;
}

/// `manifests/base/rbac.yaml` grants exactly what the injector uses: a scenario that drives every
/// code path that talks to the API (watches, copies made, adopted and refused, rotation,
/// backfill, prune, an Event) runs with the manifest enforced, and the requests the injector
/// made are compared with the grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rbac_manifest_grants_exactly_what_the_injector_uses() {
    let pruning = ICR_CONFIG.replace("prune: false", "prune: true");
    let cluster = icr_cluster(&pruning).await;
    cluster.grant_prune();
    for ns in ["team-a", "team-b", "team-f"] {
        cluster.namespace(ns, json!({})).await;
    }
    let mut foreign = icr_source("hand-made");
    foreign["metadata"]["namespace"] = json!("team-f");
    cluster.api.create(foreign).await.expect("foreign");
    // Self-signed, as installed: its Secret and the webhook's caBundle are written too.
    register_manifest_webhook(&cluster.api);
    let injector = Injector::start_self_signed(&cluster, "rbac").await;
    cluster.api.route_service(
        OWN_NAMESPACE,
        "pull-secret-injector",
        injector.running.admission_addr,
    );
    for ns in ["team-a", "team-b"] {
        wait_for_reference(&cluster, ns, "default", "all-icr-io").await;
    }
    // Rotation (patch), then a narrower scope (prune deletes team-b's copy).
    cluster.api.replace(icr_source("2")).await.expect("rotate");
    let new = auth_of(&cluster.secret("default", "all-icr-io").expect("source"));
    eventually("the rotation", || async {
        cluster
            .secret("team-a", "all-icr-io")
            .is_some_and(|s| auth_of(&s) == new)
    })
    .await;
    set_config(&cluster, &pruning.replace("team-*", "team-a")).await;
    eventually("the pruned copy", || async {
        cluster.secret("team-b", "all-icr-io").is_none()
    })
    .await;
    set_config(&cluster, "credentials: [{name: x}]\n").await;
    eventually("an Event", || async {
        !cluster.api.list("events", Some(OWN_NAMESPACE)).is_empty()
    })
    .await;
    injector.stop().await;

    let requests = cluster.api.requests();
    let injector_requests: Vec<_> = requests.iter().filter(|r| r.user == INJECTOR).collect();
    let denied: Vec<_> = injector_requests
        .iter()
        .filter(|r| r.status == 403)
        .collect();
    assert!(denied.is_empty(), "denied: {denied:?}");
    let used: BTreeSet<(String, String)> = injector_requests
        .iter()
        .map(|r| (r.resource.clone(), r.verb.clone()))
        .collect();
    assert_eq!(used, granted(), "used (left) versus granted (right)");
    // The webhook grant is for one object: only the injector's own configuration was touched.
    assert!(
        injector_requests
            .iter()
            .filter(|r| r.resource == "mutatingwebhookconfigurations")
            .all(|r| r.name.as_deref() == Some("pull-secret-injector"))
    );
}

/// Every (resource, verb) the manifests grant, from the Roles and ClusterRoles of the base and
/// of the prune component.
fn granted() -> BTreeSet<(String, String)> {
    let text = [
        "manifests/base/rbac.yaml",
        "manifests/components/prune/rbac.yaml",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(repo().join(f)).expect("rbac"))
    .collect::<Vec<_>>()
    .join("\n---\n");
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc).expect("yaml");
        let kind = value["kind"].as_str().unwrap_or("");
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        for rule in value["rules"].as_sequence().expect("rules") {
            let groups: Vec<&str> = rule["apiGroups"]
                .as_sequence()
                .expect("apiGroups")
                .iter()
                .filter_map(|g| g.as_str())
                .collect();
            assert!(
                groups == [""] || groups == ["admissionregistration.k8s.io"],
                "only the core and admissionregistration groups are used: {groups:?}"
            );
            for resource in rule["resources"].as_sequence().expect("resources") {
                for verb in rule["verbs"].as_sequence().expect("verbs") {
                    let (r, v) = (resource.as_str().expect("r"), verb.as_str().expect("v"));
                    assert!(r != "*" && v != "*", "no wildcard in the RBAC manifest");
                    out.insert((r.to_string(), v.to_string()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_outlive_a_deleted_source_and_it_is_reported() {
    let cluster = icr_cluster(ICR_CONFIG.replace("prune: false", "prune: true").as_str()).await;
    cluster.grant_prune();
    cluster.namespace("team-k", json!({})).await;
    let injector = cluster.start_injector().await;
    wait_for_reference(&cluster, "team-k", "default", "all-icr-io").await;
    cluster
        .api
        .delete("secrets", Some("default"), "all-icr-io")
        .await
        .expect("delete source");
    eventually("the copy to be counted source_missing", || async {
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"source_missing\"}")
            .await
            == 1.0
    })
    .await;
    // Even with prune on, running workloads keep their credential.
    assert!(cluster.secret("team-k", "all-icr-io").is_some());
    assert_eq!(cluster.writes_by_injector("delete", "secrets"), 0);
    // New pods are told why nothing is injected.
    cluster.runner("team-k").await;
    let pod = cluster.create_pod("team-k", &["icr.io/a/b:1"]).await;
    assert!(pull_secrets(&pod).is_empty());
    let warnings = last_pod_warnings(&cluster);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("credential icr not injected: its source secret does not exist")),
        "{warnings:?}"
    );
    // The source comes back: the copy is current again without being rewritten.
    cluster
        .api
        .create(icr_source("1"))
        .await
        .expect("source back");
    eventually("the copy to be current again", || async {
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"current\"}")
            .await
            == 1.0
    })
    .await;
    assert_eq!(cluster.writes_by_injector("patch", "secrets"), 0);
    injector.stop().await;
}

/// Self-signed mode, as the base manifests install it: the webhook configuration is the
/// manifest's own (a Service reference, no caBundle); the fake routes the Service to a replica
/// and verifies its certificate by the Service's DNS name against the caBundle stored in the
/// API, as kube-apiserver does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_mode_makes_shares_publishes_and_renews_its_certificate() {
    let cluster = icr_cluster(ICR_PODS_ONLY).await;
    register_manifest_webhook(&cluster.api);
    cluster.namespace("team-s", json!({})).await;
    cluster.runner("team-s").await;

    let first = Injector::start_self_signed(&cluster, "first").await;
    cluster.api.route_service(
        OWN_NAMESPACE,
        "pull-secret-injector",
        first.running.admission_addr,
    );
    let secret = cluster
        .secret(OWN_NAMESPACE, "pull-secret-injector-tls")
        .expect("the certificate Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(pem_count(&secret_text(&secret, "ca.crt")), 1);
    eventually("caBundle to hold the Secret's CA", || async {
        webhook_ca_bundle(&cluster.api) == secret_text(&secret, "ca.crt")
    })
    .await;
    let pod = cluster.create_pod("team-s", &["icr.io/a/b:1"]).await;
    assert_eq!(
        pull_secrets(&pod),
        ["all-icr-io"],
        "TLS verified with the published CA"
    );

    // A second replica adopts the same pair: the Secret is not written again.
    let version = secret["metadata"]["resourceVersion"].clone();
    let second = Injector::start_self_signed(&cluster, "second").await;
    cluster.api.route_service(
        OWN_NAMESPACE,
        "pull-secret-injector",
        second.running.admission_addr,
    );
    let pod = cluster.create_pod("team-s", &["icr.io/a/b:1"]).await;
    assert_eq!(
        pull_secrets(&pod),
        ["all-icr-io"],
        "the second replica serves the same pair"
    );
    let after = cluster
        .secret(OWN_NAMESPACE, "pull-secret-injector-tls")
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
    cluster.api.replace(expiring).await.expect("expiring");
    let old_ca = secret_text(&after, "ca.crt");
    eventually("a renewed pair with both CAs in the bundle", || async {
        cluster
            .secret(OWN_NAMESPACE, "pull-secret-injector-tls")
            .is_some_and(|s| {
                let bundle = secret_text(&s, "ca.crt");
                pem_count(&bundle) == 2 && bundle.trim_end().ends_with(old_ca.trim_end())
            })
    })
    .await;
    let renewed = cluster
        .secret(OWN_NAMESPACE, "pull-secret-injector-tls")
        .expect("secret");
    eventually("caBundle to follow the renewal", || async {
        webhook_ca_bundle(&cluster.api) == secret_text(&renewed, "ca.crt")
    })
    .await;
    for injector in [&first, &second] {
        cluster.api.route_service(
            OWN_NAMESPACE,
            "pull-secret-injector",
            injector.running.admission_addr,
        );
        eventually("the replica to serve the renewed pair", || async {
            let pod = cluster.create_pod("team-s", &["icr.io/a/b:1"]).await;
            pull_secrets(&pod) == ["all-icr-io"]
                && served_leaf(injector).await == secret_text(&renewed, "tls.crt")
        })
        .await;
    }
    first.stop().await;
    second.stop().await;
}

/// Registers `manifests/base/webhook.yaml` exactly as `kubectl apply` would.
fn register_manifest_webhook(api: &FakeApiServer) {
    let text = std::fs::read_to_string(repo().join("manifests/base/webhook.yaml"))
        .expect("webhook manifest");
    let config: MutatingWebhookConfiguration =
        serde_yaml::from_str(&text).expect("webhook configuration");
    api.register_webhook(config);
}

fn webhook_ca_bundle(api: &FakeApiServer) -> String {
    let config = api
        .get(
            "mutatingwebhookconfigurations",
            None,
            "pull-secret-injector",
        )
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

// ---------------------------------------------------------------------------------------------
// Data safety and tenant isolation: what a tenant writes is input, and backfill only adds.
// ---------------------------------------------------------------------------------------------

fn service_account(ns: &str, name: &str, pull_secrets: &[&str]) -> Value {
    let entries: Vec<Value> = pull_secrets.iter().map(|n| json!({"name": n})).collect();
    json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": ns},
        "imagePullSecrets": entries,
    })
}

/// Successful writes of one verb and resource by the injector (a request is recorded once its
/// response is sent).
fn successful_writes(cluster: &Cluster, verb: &str, resource: &str) -> usize {
    cluster
        .api
        .requests()
        .iter()
        .filter(|r| {
            r.user == INJECTOR && r.verb == verb && r.resource == resource && r.status < 300
        })
        .count()
}

/// A ServiceAccount that already lists pull secrets, OpenShift's `*-dockercfg-*` among them,
/// keeps every one of them, in order, when backfill adds the injector's: kube-apiserver
/// replaces an atomic list on a strategic merge, so only an appending JSON patch is safe. Two
/// replicas backfilling at once add the name once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_keeps_every_existing_entry_in_order_even_with_two_replicas() {
    let cluster = icr_cluster(ICR_CONFIG).await;
    cluster.api.hold_default_service_accounts(true);
    let existing = ["mine", "default-dockercfg-x7k2p", "other-mine"];
    for ns in ["team-o", "team-p"] {
        cluster.namespace(ns, json!({})).await;
        cluster
            .api
            .create(service_account(ns, "default", &existing))
            .await
            .expect("default ServiceAccount");
    }
    // Not named by serviceAccounts: never touched.
    cluster
        .api
        .create(service_account(
            "team-o",
            "builder",
            &["builder-dockercfg-1"],
        ))
        .await
        .expect("builder");
    let first = Injector::start(&cluster, "first").await;
    let second = Injector::start(&cluster, "second").await;
    for ns in ["team-o", "team-p"] {
        wait_for_reference(&cluster, ns, "default", "all-icr-io").await;
        let sa = cluster
            .api
            .get("serviceaccounts", Some(ns), "default")
            .expect("sa");
        assert_eq!(
            pull_secrets(&sa),
            [
                "mine",
                "default-dockercfg-x7k2p",
                "other-mine",
                "all-icr-io"
            ],
            "{ns}"
        );
    }
    eventually("both patches to be recorded", || async {
        successful_writes(&cluster, "patch", "serviceaccounts") >= 2
    })
    .await;
    assert_eq!(successful_writes(&cluster, "patch", "serviceaccounts"), 2);
    let builder = cluster
        .api
        .get("serviceaccounts", Some("team-o"), "builder")
        .expect("builder");
    assert_eq!(pull_secrets(&builder), ["builder-dockercfg-1"]);

    // A second credential, added later, is appended after everything.
    let mut hub = icr_source("1");
    hub["metadata"]["name"] = json!("hub");
    cluster.api.create(hub).await.expect("hub source");
    set_config(
        &cluster,
        &ICR_CONFIG.replace(
            "serviceAccounts:",
            "  - name: hub\n    secret: default/hub\n    namespaces: {include: [\"team-*\"]}\nserviceAccounts:",
        ),
    )
    .await;
    wait_for_reference(&cluster, "team-o", "default", "hub").await;
    let sa = cluster
        .api
        .get("serviceaccounts", Some("team-o"), "default")
        .expect("sa");
    assert_eq!(
        pull_secrets(&sa),
        [
            "mine",
            "default-dockercfg-x7k2p",
            "other-mine",
            "all-icr-io",
            "hub"
        ]
    );
    first.stop().await;
    second.stop().await;
}

/// A namespace's ServiceAccounts converge without the webhook and without the periodic
/// backfill (set to an hour): whether the `default` ServiceAccount appears after the injector
/// saw the namespace, or before (the Namespace watch lagging), with two replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_made_while_the_webhook_is_not_called_get_their_references() {
    let cluster = icr_cluster(ICR_CONFIG).await;
    let hour = |o: &mut ClusterOptions| o.backfill_interval = Duration::from_secs(3600);
    // Never registered as the webhook: as when it is not yet, or times out and fails open.
    let first = Injector::start_with(&cluster, "first", hour).await;
    let second = Injector::start_with(&cluster, "second", hour).await;

    // After: held until both replicas know the namespace.
    cluster.api.hold_default_service_accounts(true);
    cluster.namespace("team-late", json!({})).await;
    for replica in [&first, &second] {
        let index = replica.running.index.clone().expect("cluster mode");
        eventually("the replica to see the namespace", || {
            let index = index.clone();
            async move {
                pull_secret_injector::state::ClusterView::namespace(&*index.read(), "team-late")
                    .is_some()
            }
        })
        .await;
    }
    cluster.api.release_default_service_account("team-late");
    wait_for_reference(&cluster, "team-late", "default", "all-icr-io").await;
    cluster.api.hold_default_service_accounts(false);

    // Before: the Namespace watch lags, the ServiceAccount watch does not.
    let lag = cluster.api.add_fault(
        Fault::new(FaultKind::Latency(Duration::from_millis(1500)))
            .path("/api/v1/namespaces?")
            .watch_only(),
    );
    cluster.api.drop_watches();
    cluster.namespace("team-early", json!({})).await;
    wait_for_reference(&cluster, "team-early", "default", "all-icr-io").await;
    cluster.api.remove_fault(lag);

    // And a ServiceAccount made by hand later, named by serviceAccounts.
    cluster.namespace("team-hand", json!({})).await;
    wait_for_reference(&cluster, "team-hand", "default", "all-icr-io").await;
    cluster
        .api
        .delete("serviceaccounts", Some("team-hand"), "default")
        .await
        .expect("delete");
    wait_for_reference(&cluster, "team-hand", "default", "all-icr-io").await;
    assert!(
        cluster.api.admission_calls().is_empty(),
        "no webhook was ever called"
    );
    first.stop().await;
    second.stop().await;
}

const RUNAI_CONFIG: &str = r#"
credentials:
  - name: runai-cluster-wide
    secretSelector:
      namespace: runai
      matchLabels: {runai/cluster-wide: "true"}
    namespaces: {include: ["runai-*"]}
serviceAccounts: ["default"]
"#;

fn runai_secret(name: &str, registry: &str) -> Value {
    let config = json!({"auths": {registry: {"auth": STANDARD.encode("u:fake-password-r")}}});
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "runai", "labels": {"runai/cluster-wide": "true"}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": STANDARD.encode(config.to_string())},
    })
}

/// Run:ai's "may take up to a minute": a new secret the selector matches reaches every
/// ServiceAccount in scope without a config change, and without the periodic backfill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newly_selected_secret_reaches_existing_service_accounts() {
    let cluster = Cluster::new(RUNAI_CONFIG).await;
    cluster.namespace("runai", json!({})).await;
    cluster
        .api
        .create(runai_secret("hub", "https://index.docker.io/v1/"))
        .await
        .expect("hub");
    for ns in ["runai-p1", "runai-p2"] {
        cluster.namespace(ns, json!({})).await;
    }
    let hour = |o: &mut ClusterOptions| o.backfill_interval = Duration::from_secs(3600);
    let first = Injector::start_with(&cluster, "first", hour).await;
    let second = Injector::start_with(&cluster, "second", hour).await;
    for ns in ["runai-p1", "runai-p2"] {
        wait_for_reference(&cluster, ns, "default", "hub").await;
    }
    cluster
        .api
        .create(runai_secret("nvcr", "nvcr.io"))
        .await
        .expect("nvcr");
    for ns in ["runai-p1", "runai-p2"] {
        wait_for_reference(&cluster, ns, "default", "nvcr").await;
        let sa = cluster
            .api
            .get("serviceaccounts", Some(ns), "default")
            .expect("sa");
        assert_eq!(pull_secrets(&sa), ["hub", "nvcr"], "{ns}");
        assert_eq!(
            decoded_auths(&cluster.secret(ns, "nvcr").expect("copy")),
            BTreeSet::from(["nvcr.io".to_string()])
        );
    }
    first.stop().await;
    second.stop().await;
}

/// A labelled Secret marked like a copy in a tenant's namespace.
fn forged_copy(ns: &str, name: &str, credential: &str, source: &str, padding: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "pull-secret-injector"},
            "annotations": {
                "pull-secret-injector/credential": credential,
                "pull-secret-injector/source": source,
                "pull-secret-injector/content-hash": "sha256:forged",
                "padding": "x".repeat(padding),
            },
        },
        "type": "Opaque",
        "data": {"k": STANDARD.encode("tenant data")},
    })
}

/// What a tenant can write into its own namespace: a flood of labelled Secrets with large
/// annotations (some naming an unknown credential, a missing source, a newline) is not kept
/// and adds no metric series; a copy whose data the tenant replaced is restored; a copy the
/// tenant made immutable is retried with backoff, not every pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_tenant_writes_cannot_grow_the_index_nor_keep_a_copy_wrong() {
    let cluster = icr_cluster(ICR_CONFIG).await;
    cluster.namespace("team-t", json!({})).await;
    let injector = cluster.start_injector().await;
    wait_for_reference(&cluster, "team-t", "default", "all-icr-io").await;
    let index = injector.running.index.clone().expect("cluster mode");
    eventually("the copy to be indexed", || {
        let index = index.clone();
        async move { index.read().copy_count() == 1 }
    })
    .await;
    eventually("the copy to be counted", || async {
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"current\"}")
            .await
            == 1.0
    })
    .await;
    let before_bytes = index.read().approx_bytes();
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("pull_secret_injector_copies{"))
            .count()
    };
    let before_series = series(&injector.metrics().await);

    const FLOOD: usize = 1500;
    for i in 0..FLOOD {
        let (credential, source) = match i % 4 {
            0 => (format!("tenant-{i}"), "default/all-icr-io".to_string()),
            1 => ("icr".to_string(), format!("default/missing-{i}")),
            2 => (
                "icr".to_string(),
                "default/all-icr-io\n2026-12-01T00:00:00Z ERROR forged".to_string(),
            ),
            // The right marks under another name than the copy's.
            _ => ("icr".to_string(), "default/all-icr-io".to_string()),
        };
        let padding = if i % 100 == 0 { 100_000 } else { 4_000 };
        cluster
            .api
            .create(forged_copy(
                "team-t",
                &format!("forged-{i}"),
                &credential,
                &source,
                padding,
            ))
            .await
            .expect("forged secret");
    }
    // Everything the watch streams has been seen once a later event is: a real copy made in a
    // namespace created after the flood.
    cluster.namespace("team-u", json!({})).await;
    wait_for_reference(&cluster, "team-u", "default", "all-icr-io").await;
    eventually("the new copy to be indexed", || {
        let index = index.clone();
        async move { index.read().copy_count() == 2 }
    })
    .await;
    let after_bytes = index.read().approx_bytes();
    eprintln!("index: {before_bytes} bytes before the flood, {after_bytes} after");
    // One more copy (and its namespace's strings) at most: the flood of 1,500 Secrets and
    // about 7 MB of annotations left nothing behind.
    assert!(
        after_bytes < before_bytes + 4 * 1024,
        "index grew from {before_bytes} to {after_bytes} bytes"
    );
    eventually("both copies to be counted", || async {
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"current\"}")
            .await
            == 2.0
    })
    .await;
    assert_eq!(series(&injector.metrics().await), before_series);
    assert_eq!(
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"source_missing\"}")
            .await,
        0.0
    );

    // A tampered copy, marks intact: restored to the source's content.
    let mut tampered = cluster.secret("team-t", "all-icr-io").expect("copy");
    let good = auth_of(&tampered);
    let forged = json!({"auths": {"icr.io": {"auth": STANDARD.encode("tenant:stolen")}, "us.icr.io": {"auth": STANDARD.encode("tenant:stolen")}}});
    tampered["data"][".dockerconfigjson"] = json!(STANDARD.encode(forged.to_string()));
    cluster.api.replace(tampered).await.expect("tamper");
    eventually("the tampered copy to be restored", || async {
        cluster
            .secret("team-t", "all-icr-io")
            .is_some_and(|s| auth_of(&s) == good)
    })
    .await;

    // Tampered and made immutable: cannot be restored; reported, and retried with backoff.
    let mut frozen = cluster.secret("team-u", "all-icr-io").expect("copy");
    frozen["data"][".dockerconfigjson"] = json!(STANDARD.encode(forged.to_string()));
    frozen["immutable"] = json!(true);
    cluster.api.replace(frozen).await.expect("freeze");
    eventually("the copy to be counted unwritable", || async {
        injector
            .metric("pull_secret_injector_copies{credential=\"icr\",state=\"unwritable\"}")
            .await
            == 1.0
    })
    .await;
    let attempts = || {
        cluster
            .api
            .requests()
            .iter()
            .filter(|r| {
                r.user == INJECTOR
                    && r.verb == "patch"
                    && r.resource == "secrets"
                    && r.namespace.as_deref() == Some("team-u")
            })
            .count()
    };
    let start = attempts();
    // Passes run every 200 ms here; without backoff 4 s would see about 20 attempts.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let more = attempts() - start;
    assert!(more <= 5, "{more} attempts in 4 s: not backing off");
    injector.stop().await;
}

/// Admission warnings name nothing of another namespace: a broken credential whose source lives
/// in the admin's namespace is named by credential only, and only to pods it concerns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_for_a_pod_name_nothing_of_another_namespace() {
    let config = ICR_CONFIG.replace(
        "serviceAccounts:",
        "  - name: broken\n    secret: creds/broken\n    namespaces: {include: [\"team-*\"]}\nserviceAccounts:",
    );
    let cluster = icr_cluster(&config).await;
    cluster.namespace("creds", json!({})).await;
    let broken = json!({"auths": {"broken.example.com": {"auth": 12345}}});
    cluster
        .api
        .create(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "broken", "namespace": "creds"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": STANDARD.encode(broken.to_string())},
        }))
        .await
        .expect("broken source");
    cluster.namespace("team-w", json!({})).await;
    cluster.runner("team-w").await;
    let injector = cluster.start_injector().await;
    let pod = cluster.create_pod("team-w", &["icr.io/a/b:1"]).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    assert!(
        last_pod_warnings(&cluster).is_empty(),
        "{:?}",
        last_pod_warnings(&cluster)
    );
    cluster
        .create_pod("team-w", &["broken.example.com/a/b:1"])
        .await;
    let warnings = last_pod_warnings(&cluster);
    assert_eq!(
        warnings,
        [
            "pull-secret-injector: credential broken not injected: its source secret is not a valid pull secret; ask your cluster admin"
        ]
    );
    // The admin reads the whole story in an Event on the ConfigMap, and in a metric.
    eventually("an Event naming the source", || async {
        cluster
            .api
            .list("events", Some(OWN_NAMESPACE))
            .iter()
            .any(|e| {
                e["reason"] == "CredentialUnusable"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("creds/broken"))
            })
    })
    .await;
    assert_eq!(
        injector
            .metric("pull_secret_injector_credential_problems{credential=\"broken\",reason=\"source_invalid\"}")
            .await,
        1.0
    );
    injector.stop().await;
}

/// A review for a namespace the injector does not know (forged, or for one that does not
/// exist) is answered allowed, with no patch, and nothing is written for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_for_an_unknown_namespace_writes_nothing() {
    let cluster = icr_cluster(ICR_PODS_ONLY).await;
    let injector = cluster.start_injector().await;
    cluster.api.clear_requests();
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "forged-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-ghost", "operation": "CREATE",
            "userInfo": {"username": "someone"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "team-ghost"},
                "spec": {"containers": [{"name": "c", "image": "icr.io/a/b:1"}]},
            },
        },
    });
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(injector.ca_pem.as_bytes()).expect("ca"),
        )
        .build()
        .expect("client");
    let url = format!(
        "https://127.0.0.1:{}/mutate",
        injector.running.admission_addr.port()
    );
    let answer: Value = client
        .post(&url)
        .header("content-type", "application/json")
        .body(review.to_string())
        .send()
        .await
        .expect("review")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"]["patch"].is_null(), "{answer}");
    assert!(
        answer["response"]["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("not known")),
        "{answer}"
    );
    let writes: Vec<_> = cluster
        .api
        .requests()
        .into_iter()
        .filter(|r| r.user == INJECTOR && r.verb != "list" && r.verb != "watch" && r.verb != "get")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    injector.stop().await;
}

/// With --client-ca, kube-apiserver's calls carry its client certificate (AdmissionConfiguration
/// kubeConfigFile) and are answered; without the certificate they are refused, and the
/// webhook's failurePolicy Ignore lets the pod through uninjected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_keep_other_callers_out() {
    let cluster = icr_cluster(ICR_PODS_ONLY).await;
    cluster.namespace("team-c", json!({})).await;
    cluster.runner("team-c").await;
    let apiserver = certs::generate_client("kube-apiserver", 1).expect("client pair");
    let dir = cluster.dir.path().join("client-ca");
    certs::write(&dir, &apiserver, true).expect("write");
    let ca = dir.join(certs::CA_FILE);
    let injector =
        Injector::launch(&cluster, "mtls", |args| args.client_ca = Some(ca), false).await;
    injector.register(&cluster.api);
    let pod = cluster.create_pod("team-c", &["icr.io/a/b:1"]).await;
    assert!(pull_secrets(&pod).is_empty(), "no certificate presented");
    cluster
        .api
        .set_webhook_client_identity(&apiserver.cert_pem, &apiserver.key_pem);
    let pod = cluster.create_pod("team-c", &["icr.io/a/b:1"]).await;
    assert_eq!(pull_secrets(&pod), ["all-icr-io"]);
    injector.stop().await;
}

/// `prune: true` installed without `components/prune`: the delete is refused (403), the copy
/// stays, and the injector backs off instead of retrying every pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_without_the_delete_grant_backs_off() {
    let pruning = format!("{ICR_PODS_ONLY}prune: true\n");
    let cluster = icr_cluster(&pruning).await;
    cluster.namespace("team-d", json!({})).await;
    cluster.runner("team-d").await;
    let injector = cluster.start_injector().await;
    cluster.create_pod("team-d", &["icr.io/a/b:1"]).await;
    assert!(cluster.secret("team-d", "all-icr-io").is_some());
    set_config(&cluster, &pruning.replace("team-*", "nobody-*")).await;
    let denied = || {
        cluster
            .api
            .requests()
            .iter()
            .filter(|r| r.user == INJECTOR && r.verb == "delete" && r.status == 403)
            .count()
    };
    eventually("a refused delete", || async { denied() > 0 }).await;
    let start = denied();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let more = denied() - start;
    assert!(more <= 5, "{more} deletes in 4 s: not backing off");
    assert!(cluster.secret("team-d", "all-icr-io").is_some());
    injector.stop().await;
}
