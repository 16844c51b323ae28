//! One end-to-end harness, two backends: the project's fake kube-apiserver (the default), or
//! the cluster an admin kubeconfig names (`PSI_E2E_KUBECONFIG`).
//!
//! Every object goes through the Kubernetes API with an admin client, on both backends, so a
//! scenario means the same on both. What only the fake can do (fault injection, holding a
//! `default` ServiceAccount back, counting requests, enforcing the RBAC manifest) is reached
//! through [`Cluster::fake`], and scenarios that need it are skipped on a real cluster with a
//! message.
//!
//! On a real cluster the harness keeps to its own objects: every namespace it makes carries a
//! per-run prefix and the label [`RUN_LABEL`], configs are written with a `{P}` placeholder that
//! becomes the prefix (so a credential scoped to `{P}team-*` never reaches another namespace),
//! the webhook it registers selects only the run's namespaces, and pods never schedule. When a
//! `Cluster` is dropped, even by a failing test, its namespaces and webhook configurations are
//! deleted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fake_apiserver::FakeApiServer;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use pull_secret_injector::serve::http::Limits;
use pull_secret_injector::serve::{self, ClusterOptions, Running, ServeArgs, TlsSource};
use pull_secret_injector::tls::certs;

pub use fake_apiserver::eventually;

/// The label every namespace of a run carries, on a real cluster: what the webhook selects
/// and what cleanup deletes.
pub const RUN_LABEL: &str = "e2e.pull-secret-injector/run";
/// The injector's identity on the fake, where the RBAC manifest is enforced.
pub const INJECTOR: &str = "system:serviceaccount:pull-secret-injector:pull-secret-injector";
/// The ServiceAccount test pods run as.
pub const RUNNER: &str = "e2e-runner";

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Ends a scenario early on a real cluster, saying why.
#[macro_export]
macro_rules! fake_only {
    ($cluster:expr, $why:expr) => {
        match $cluster.fake() {
            Some(fake) => fake,
            None => {
                eprintln!("skipped on a real cluster: {}", $why);
                return;
            }
        }
    };
}

/// An API error, as the tests look at it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub code: u16,
    /// kube's message.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

enum Backend {
    Fake(FakeApiServer),
    Real {
        kubeconfig: PathBuf,
        webhook_host: String,
    },
}

/// A cluster to run one scenario in.
pub struct Cluster {
    backend: Backend,
    admin: kube::Client,
    prefix: String,
    run: String,
    /// The injector's namespace, where its config ConfigMap lives.
    pub own: String,
    /// Scratch space: certificates, kubeconfigs.
    pub dir: tempfile::TempDir,
    /// Cluster-scoped objects made, for cleanup: (API path prefix, name).
    cluster_scoped: Mutex<BTreeSet<(String, String)>>,
}

/// A short random word, for names that must not collide between runs.
fn random_word() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:06x}", h.finish() & 0xff_ffff)
}

async fn client_from_kubeconfig(text: &str) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(text).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

fn path_of(api_version: &str, resource: &str, namespace: Option<&str>) -> String {
    let base = if api_version == "v1" {
        "/api/v1".to_string()
    } else {
        format!("/apis/{api_version}")
    };
    match namespace {
        Some(ns) => format!("{base}/namespaces/{ns}/{resource}"),
        None => format!("{base}/{resource}"),
    }
}

/// The API version and whether it is namespaced, for the resources the tests use.
fn resource_info(resource: &str) -> (&'static str, bool) {
    match resource {
        "namespaces" => ("v1", false),
        "secrets" | "serviceaccounts" | "configmaps" | "pods" | "events" => ("v1", true),
        "mutatingwebhookconfigurations" => ("admissionregistration.k8s.io/v1", false),
        "leases" => ("coordination.k8s.io/v1", true),
        other => panic!("unexpected resource {other}"),
    }
}

/// The resource of an object's kind.
pub fn resource(kind: &str) -> &'static str {
    match kind {
        "Namespace" => "namespaces",
        "Secret" => "secrets",
        "ServiceAccount" => "serviceaccounts",
        "ConfigMap" => "configmaps",
        "Pod" => "pods",
        "MutatingWebhookConfiguration" => "mutatingwebhookconfigurations",
        "Lease" => "leases",
        other => panic!("unexpected kind {other}"),
    }
}

impl Cluster {
    /// A cluster with the injector's namespace and its config (`config`, `{P}` standing for the
    /// run's prefix), on the backend the environment names.
    pub async fn new(config: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let (backend, admin, prefix) = match std::env::var_os("PSI_E2E_KUBECONFIG") {
            Some(path) => {
                let kubeconfig = PathBuf::from(path);
                let text = std::fs::read_to_string(&kubeconfig).expect("PSI_E2E_KUBECONFIG");
                let admin = client_from_kubeconfig(&text).await;
                let webhook_host = std::env::var("PSI_E2E_WEBHOOK_HOST")
                    .unwrap_or_else(|_| "127.0.0.1".to_string());
                let prefix = format!("e2e-{}-", random_word());
                (
                    Backend::Real {
                        kubeconfig,
                        webhook_host,
                    },
                    admin,
                    prefix,
                )
            }
            None => {
                let fake = FakeApiServer::start().await;
                let rbac =
                    std::fs::read_to_string(repo().join("manifests/base/rbac.yaml")).expect("rbac");
                fake.load_rbac(&rbac).expect("rbac loads");
                let admin =
                    client_from_kubeconfig(&fake.kubeconfig(FakeApiServer::ADMIN_TOKEN)).await;
                (Backend::Fake(fake), admin, String::new())
            }
        };
        let run = prefix.trim_end_matches('-').to_string();
        let own = format!("{prefix}pull-secret-injector");
        let cluster = Cluster {
            backend,
            admin,
            prefix,
            run,
            own: own.clone(),
            dir,
            cluster_scoped: Mutex::new(BTreeSet::new()),
        };
        cluster.namespace_named(&own, json!({})).await;
        cluster
            .create(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "pull-secret-injector", "namespace": own},
                "data": {"config.yaml": cluster.config_text(config)},
            }))
            .await
            .expect("config map");
        cluster
    }

    /// The fake, when that is the backend.
    pub fn fake(&self) -> Option<&FakeApiServer> {
        match &self.backend {
            Backend::Fake(fake) => Some(fake),
            Backend::Real { .. } => None,
        }
    }

    /// Whether the backend is a real cluster.
    pub fn is_real(&self) -> bool {
        self.fake().is_none()
    }

    /// The real name of a namespace the scenario calls `logical`.
    pub fn ns(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// A text with `{P}` standing for the run's prefix.
    pub fn text(&self, template: &str) -> String {
        template.replace("{P}", &self.prefix)
    }

    /// A config as the scenario wrote it, with verification off unless it says otherwise: the
    /// scenarios' credentials are fake keys for real registries (icr.io, quay.io ...), and the
    /// verifier would send them there.
    pub fn config_text(&self, config: &str) -> String {
        let text = self.text(config);
        if text.lines().any(|l| l.starts_with("verify:")) {
            text
        } else {
            format!("verify: {{mode: \"off\"}}\n{text}")
        }
    }

    /// Creates the namespace the scenario calls `logical`.
    pub async fn namespace(&self, logical: &str, labels: Value) -> String {
        let name = self.ns(logical);
        self.namespace_named(&name, labels).await;
        name
    }

    async fn namespace_named(&self, name: &str, labels: Value) {
        let mut labels = if labels.is_object() {
            labels
        } else {
            json!({})
        };
        if !self.run.is_empty() {
            labels[RUN_LABEL] = json!(self.run);
        }
        self.create(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        }))
        .await
        .expect("namespace");
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let mut builder = http::Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        let request = builder.body(body).expect("request");
        let response = self
            .admin
            .send(request.map(Into::into))
            .await
            .map_err(|e| ApiError {
                code: 0,
                message: e.to_string(),
            })?;
        let status = response.status().as_u16();
        let warnings: Vec<String> = response
            .headers()
            .get_all(http::header::WARNING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(warning_text)
            .collect();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status >= 300 {
            return Err(ApiError {
                code: status,
                message: value["message"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok((value, warnings))
    }

    /// Creates an object; returns it as stored.
    pub async fn create(&self, object: Value) -> Result<Value, ApiError> {
        self.create_with(object, false).await.map(|(v, _)| v)
    }

    /// Creates an object, optionally as a dry run; returns it and the admission warnings.
    pub async fn create_with(
        &self,
        object: Value,
        dry_run: bool,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let kind = object["kind"].as_str().unwrap_or("").to_string();
        let resource = resource(&kind);
        let (api_version, namespaced) = resource_info(resource);
        let ns = object["metadata"]["namespace"].as_str();
        let mut path = path_of(api_version, resource, if namespaced { ns } else { None });
        if dry_run {
            path.push_str("?dryRun=All");
        }
        let created = self
            .call(
                http::Method::POST,
                &path,
                Some("application/json"),
                object.to_string().into_bytes(),
            )
            .await?;
        if !namespaced && kind != "Namespace" && !dry_run {
            let name = created.0["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            self.cluster_scoped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((path_of(api_version, resource, None), name));
        }
        Ok(created)
    }

    /// An object by resource, namespace and name.
    pub async fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let (api_version, _) = resource_info(resource);
        let path = format!("{}/{name}", path_of(api_version, resource, namespace));
        self.call(http::Method::GET, &path, None, Vec::new())
            .await
            .ok()
            .map(|(v, _)| v)
    }

    /// Every object of a resource in a namespace (or all).
    pub async fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        let (api_version, _) = resource_info(resource);
        let path = path_of(api_version, resource, namespace);
        self.call(http::Method::GET, &path, None, Vec::new())
            .await
            .ok()
            .and_then(|(v, _)| v["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Replaces an object (conditional when it carries a resourceVersion).
    pub async fn replace(&self, object: Value) -> Result<Value, ApiError> {
        let kind = object["kind"].as_str().unwrap_or("").to_string();
        let resource = resource(&kind);
        let (api_version, namespaced) = resource_info(resource);
        let ns = object["metadata"]["namespace"].as_str();
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let path = format!(
            "{}/{name}",
            path_of(api_version, resource, if namespaced { ns } else { None })
        );
        self.call(
            http::Method::PUT,
            &path,
            Some("application/json"),
            object.to_string().into_bytes(),
        )
        .await
        .map(|(v, _)| v)
    }

    /// Deletes an object.
    pub async fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), ApiError> {
        let (api_version, _) = resource_info(resource);
        let path = format!("{}/{name}", path_of(api_version, resource, namespace));
        self.call(http::Method::DELETE, &path, None, Vec::new())
            .await
            .map(|_| ())
    }

    /// A Secret.
    pub async fn secret(&self, ns: &str, name: &str) -> Option<Value> {
        self.get("secrets", Some(ns), name).await
    }

    /// A ServiceAccount.
    pub async fn service_account(&self, ns: &str, name: &str) -> Option<Value> {
        self.get("serviceaccounts", Some(ns), name).await
    }

    /// Creates a ServiceAccount, or replaces the one of that name (a namespace's `default` is
    /// made by the control plane at any moment: whichever comes second replaces).
    pub async fn put(&self, object: Value) {
        match self.create(object.clone()).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {
                let kind = object["kind"].as_str().unwrap_or("").to_string();
                let ns = object["metadata"]["namespace"].as_str().map(str::to_string);
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let current = self
                    .get(resource(&kind), ns.as_deref(), &name)
                    .await
                    .expect("the object in the way");
                let mut replacement = object;
                replacement["metadata"]["resourceVersion"] =
                    current["metadata"]["resourceVersion"].clone();
                self.replace(replacement).await.expect("replace");
            }
            Err(e) => panic!("create: {e}"),
        }
    }

    /// Makes sure the ServiceAccount test pods run as exists in `ns`.
    pub async fn runner(&self, ns: &str) {
        if self.service_account(ns, RUNNER).await.is_none() {
            self.create(json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": RUNNER, "namespace": ns},
            }))
            .await
            .expect("runner ServiceAccount");
        }
    }

    /// Creates a pod with these images in `ns` (as the runner ServiceAccount; it never
    /// schedules on a real cluster); returns it as stored and the admission warnings.
    pub async fn create_pod_with(
        &self,
        ns: &str,
        images: &[&str],
        dry_run: bool,
    ) -> (Value, Vec<String>) {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
            .collect();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "e2e-", "namespace": ns},
            "spec": {
                "serviceAccountName": RUNNER,
                "containers": containers,
                "nodeSelector": {"e2e.pull-secret-injector/never-schedule": "true"},
            },
        });
        self.create_with(pod, dry_run).await.expect("pod created")
    }

    /// [`Cluster::create_pod_with`], not a dry run, the pod only.
    pub async fn create_pod(&self, ns: &str, images: &[&str]) -> Value {
        self.create_pod_with(ns, images, false).await.0
    }

    /// Replaces the injector's config (`{P}` standing for the prefix).
    pub async fn set_config(&self, config: &str) {
        let mut cm = self
            .get("configmaps", Some(&self.own), "pull-secret-injector")
            .await
            .expect("config map");
        cm["data"]["config.yaml"] = json!(self.config_text(config));
        if let Some(meta) = cm["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        self.replace(cm).await.expect("config updated");
    }

    /// Waits until `ns/sa` references `name` and the secret `name` exists there.
    pub async fn wait_for_reference(&self, ns: &str, sa: &str, name: &str) {
        eventually(&format!("{ns}/{sa} to reference {name}"), || async {
            self.service_account(ns, sa)
                .await
                .is_some_and(|sa| pull_secrets(&sa).contains(&name.to_string()))
                && self.secret(ns, name).await.is_some()
        })
        .await;
    }

    /// Creates every object of the manifests in `dir` (Namespaces first, all namespaces
    /// prefixed); objects in the way are replaced. Terminating namespaces are deleted last,
    /// once their content exists.
    pub async fn load(&self, dir: &Path) {
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
                if json["kind"] == "Namespace" {
                    let name = json["metadata"]["name"].as_str().unwrap_or("").to_string();
                    json["metadata"]["name"] = json!(self.ns(&name));
                } else {
                    let ns = json["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("default")
                        .to_string();
                    json["metadata"]["namespace"] = json!(self.ns(&ns));
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
        let mut terminating = Vec::new();
        for mut object in objects {
            if object["kind"] == "Namespace" {
                let gone = object["metadata"]["deletionTimestamp"].is_string()
                    || object["status"]["phase"] == "Terminating";
                if let Some(map) = object["metadata"].as_object_mut() {
                    map.remove("deletionTimestamp");
                }
                object["status"] = json!({});
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if !self.run.is_empty() {
                    object["metadata"]["labels"][RUN_LABEL] = json!(self.run);
                }
                if gone {
                    terminating.push(name);
                }
            }
            self.put(object).await;
        }
        for name in terminating {
            self.delete("namespaces", None, &name)
                .await
                .expect("delete namespace");
        }
    }

    /// Whether a namespace is terminating.
    pub async fn is_terminating(&self, ns: &str) -> bool {
        self.get("namespaces", None, ns)
            .await
            .is_some_and(|n| n["status"]["phase"] == "Terminating")
    }

    /// The kubeconfig the injector uses: on the fake, a token of its ServiceAccount (the RBAC
    /// manifest applies); on a real cluster, the admin kubeconfig given.
    fn injector_kubeconfig(&self) -> PathBuf {
        match &self.backend {
            Backend::Fake(fake) => {
                let token =
                    fake.service_account_token("pull-secret-injector", "pull-secret-injector");
                fake.write_kubeconfig(self.dir.path(), &token)
            }
            Backend::Real { kubeconfig, .. } => kubeconfig.clone(),
        }
    }

    /// Where the injector listens and the name its certificate carries: loopback for the
    /// fake; on a real cluster, every interface and the host the API server reaches it by.
    fn webhook_endpoint(&self) -> (String, String) {
        match &self.backend {
            Backend::Fake(_) => ("127.0.0.1".into(), "127.0.0.1".into()),
            Backend::Real { webhook_host, .. } => ("0.0.0.0".into(), webhook_host.clone()),
        }
    }

    /// Starts a replica and registers it as the webhook.
    pub async fn start_injector(&self) -> Injector {
        let injector = Injector::start(self, &format!("r{}", random_word())).await;
        injector.register(self).await;
        injector
    }

    /// Grants what `manifests/components/prune` grants (only the fake enforces RBAC).
    pub fn grant_prune(&self) {
        if let Some(fake) = self.fake() {
            let rbac = std::fs::read_to_string(repo().join("manifests/components/prune/rbac.yaml"))
                .expect("prune rbac");
            fake.load_rbac(&rbac).expect("prune rbac loads");
        }
    }
}

impl Drop for Cluster {
    /// On a real cluster, deletes what the run made: its namespaces (by label) and the
    /// cluster-scoped objects it created. Runs on its own thread and runtime, since a test
    /// that failed may be unwinding out of the one it ran on.
    fn drop(&mut self) {
        let Backend::Real { kubeconfig, .. } = &self.backend else {
            return;
        };
        let kubeconfig = kubeconfig.clone();
        let run = self.run.clone();
        let scoped: Vec<(String, String)> = self
            .cluster_scoped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(text) = std::fs::read_to_string(&kubeconfig) else {
                    return;
                };
                let client = client_from_kubeconfig(&text).await;
                for (base, name) in scoped {
                    let request = http::Request::delete(format!("{base}/{name}"))
                        .body(Vec::new())
                        .expect("request");
                    let _ = client.send(request.map(Into::into)).await;
                }
                let list = http::Request::get(format!(
                    "/api/v1/namespaces?labelSelector={RUN_LABEL}%3D{run}"
                ))
                .body(Vec::new())
                .expect("request");
                let Ok(namespaces) = client.request::<Value>(list).await else {
                    return;
                };
                for ns in namespaces["items"].as_array().into_iter().flatten() {
                    if let Some(name) = ns["metadata"]["name"].as_str() {
                        let request = http::Request::delete(format!("/api/v1/namespaces/{name}"))
                            .body(Vec::new())
                            .expect("request");
                        let _ = client.send(request.map(Into::into)).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// The text of a `Warning` header: `299 - "text"`.
fn warning_text(header: &str) -> String {
    let quoted = header.splitn(3, ' ').nth(2).unwrap_or(header);
    quoted
        .trim()
        .trim_matches('"')
        .replace("\\\"", "\"")
        .replace("\\\\", "\\")
}

/// The names in an object's `imagePullSecrets` (a Pod's, under `spec`).
pub fn pull_secrets(object: &Value) -> Vec<String> {
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

/// The registry keys of a pull secret.
pub fn decoded_auths(secret: &Value) -> BTreeSet<String> {
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

/// An annotation of an object.
pub fn annotation(object: &Value, key: &str) -> Option<String> {
    object["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

/// One running replica of the injector, in this process.
pub struct Injector {
    /// The running server.
    pub running: Running,
    stop: Option<oneshot::Sender<()>>,
    /// The CA its serving certificate chains to.
    pub ca_pem: String,
    host: String,
}

impl Injector {
    /// A replica with the test defaults (fast retries, no client-side rate limit to speak of).
    pub async fn start(cluster: &Cluster, name: &str) -> Injector {
        Self::launch(cluster, name, |_| {}, false).await
    }

    /// A replica with its cluster-mode options changed.
    pub async fn start_with(
        cluster: &Cluster,
        name: &str,
        tweak: impl FnOnce(&mut ClusterOptions),
    ) -> Injector {
        Self::launch(cluster, name, |args| tweak(&mut args.cluster_mode), false).await
    }

    /// A replica in self-signed mode, as the base manifests run it.
    pub async fn start_self_signed(cluster: &Cluster, name: &str) -> Injector {
        Self::launch(cluster, name, |_| {}, true).await
    }

    /// A replica with any of its arguments changed.
    pub async fn launch(
        cluster: &Cluster,
        name: &str,
        tweak: impl FnOnce(&mut ServeArgs),
        self_signed: bool,
    ) -> Injector {
        let dir = cluster.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let (listen, host) = cluster.webhook_endpoint();
        let generated = certs::generate(std::slice::from_ref(&host), 2).expect("certs");
        certs::write(&dir, &generated, true).expect("write certs");
        let options = ClusterOptions {
            kubeconfig: Some(cluster.injector_kubeconfig()),
            retry_interval: Duration::from_millis(200),
            api_qps: 1000,
            api_burst: 1000,
            ..ClusterOptions::default()
        };
        let mut args = ServeArgs {
            config: None,
            cluster: Vec::new(),
            own_namespace: cluster.own.clone(),
            listen: format!("{listen}:0").parse().expect("addr"),
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
        let running = serve::start(&args, async move {
            let _ = rx.await;
        })
        .await
        .expect("injector starts");
        let injector = Injector {
            running,
            stop: Some(tx),
            ca_pem: generated.ca_pem,
            host,
        };
        let app = injector.running.app.clone();
        eventually("the injector to be ready", || {
            let app = app.clone();
            async move { app.is_ready() }
        })
        .await;
        injector
    }

    /// The webhook configuration of `manifests/base/webhook.yaml`, calling this replica by URL.
    /// On a real cluster it is named for the run and selects the run's namespaces only.
    pub fn webhook_configuration(&self, cluster: &Cluster) -> MutatingWebhookConfiguration {
        let text = std::fs::read_to_string(repo().join("manifests/base/webhook.yaml"))
            .expect("webhook manifest");
        let mut config: MutatingWebhookConfiguration =
            serde_yaml::from_str(&text).expect("webhook configuration");
        config.metadata.name = Some(cluster.webhook_name());
        for webhook in config.webhooks.iter_mut().flatten() {
            webhook.client_config.service = None;
            webhook.client_config.url = Some(format!(
                "https://{}:{}/mutate",
                self.host,
                self.running.admission_addr.port()
            ));
            webhook.client_config.ca_bundle =
                Some(k8s_openapi::ByteString(self.ca_pem.clone().into_bytes()));
            if !cluster.run.is_empty() {
                let selector = webhook
                    .namespace_selector
                    .get_or_insert_with(Default::default);
                selector
                    .match_expressions
                    .get_or_insert_with(Vec::new)
                    .push(LabelSelectorRequirement {
                        key: RUN_LABEL.to_string(),
                        operator: "In".to_string(),
                        values: Some(vec![cluster.run.clone()]),
                    });
            }
        }
        config
    }

    /// Registers this replica as the cluster's mutating webhook (replacing an earlier one).
    pub async fn register(&self, cluster: &Cluster) {
        let config = serde_json::to_value(self.webhook_configuration(cluster)).expect("json");
        let name = cluster.webhook_name();
        let mut object = config;
        object["apiVersion"] = json!("admissionregistration.k8s.io/v1");
        object["kind"] = json!("MutatingWebhookConfiguration");
        match cluster
            .get("mutatingwebhookconfigurations", None, &name)
            .await
        {
            Some(current) => {
                object["metadata"]["resourceVersion"] =
                    current["metadata"]["resourceVersion"].clone();
                cluster.replace(object).await.expect("webhook replaced");
            }
            None => {
                cluster.create(object).await.expect("webhook registered");
            }
        }
    }

    /// The metrics text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.running.metrics_addr))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of the first metric line starting with `prefix`, or 0.
    pub async fn metric(&self, prefix: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Stops the replica and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.running.task).await;
    }
}

impl Cluster {
    /// The webhook configuration's name for this run.
    pub fn webhook_name(&self) -> String {
        format!("{}pull-secret-injector", self.prefix)
    }
}
