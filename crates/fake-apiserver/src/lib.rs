//! An in-process fake of kube-apiserver's core/v1 REST API and of admissionregistration.k8s.io/v1
//! MutatingWebhookConfigurations, for end-to-end tests that run real kube-rs clients (and the
//! webhook under test) against it through a kubeconfig.
//!
//! It speaks the real protocol (HTTPS with its own CA, bearer tokens, Status errors, list
//! pagination, chunked watch streams with bookmarks and 410 expiry, metadata-only
//! `as=PartialObjectMetadata` responses, the four patch types, dryRun) and behaves like the control
//! plane where clients can tell: NamespaceLifecycle, ServiceAccount admission for pods, mutating
//! webhooks over HTTPS, the `default` ServiceAccount of new namespaces, namespace termination,
//! and RBAC for ServiceAccount users (rules match on API group, resource, verb and
//! resourceNames).
//!
//! Mutating webhooks are the MutatingWebhookConfigurations in the store, served at
//! `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations` with every verb, error,
//! record and fault core resources get. [`FakeApiServer::register_webhook`] writes to the same
//! store, and admission reads the configurations afresh for every call: a `caBundle` patched
//! through the API is what the next call verifies the webhook's certificate against. Every PEM
//! certificate in `caBundle` is a trust root (old and new CA during a renewal); an empty bundle,
//! or one that did not sign the webhook's certificate, fails the call with a TLS error, which
//! `failurePolicy` then decides about. `/apis`, `/apis/admissionregistration.k8s.io` and
//! `/apis/admissionregistration.k8s.io/v1` answer discovery.
//!
//! Leases (`/apis/coordination.k8s.io/v1/namespaces/{ns}/leases`) are served the same way, with
//! `ValidateLeaseSpec`'s checks on the numbers and the resourceVersion precondition leader
//! electors rely on (a replace from a stale read is 409 Conflict).
//!
//! Objects are stored as kube encodes them: `stringData` folded into `data`, nulls and empty
//! maps and lists (all `omitempty`) left out. Strategic merge follows apimachinery's
//! `strategicpatch` with the struct tags of every list of the served types, and apply merges
//! by their `+listType` markers (`schema.rs`): ServiceAccount `imagePullSecrets` is atomic,
//! PodSpec `imagePullSecrets` merges by name. JSON patch failures are kube's generic 422.
//! Immutable Secrets and ConfigMaps refuse changes. The `default` ServiceAccount comes from a
//! model of the service account controller that, like the real one, is driven by events: a task
//! started with the server follows the store's event stream (as the controller's informers do)
//! and creates the account after a Namespace's ADDED event or a ServiceAccount's DELETED one,
//! relisting when the stream is cut; the verbs never call it. Tests can set its timing
//! ([`FakeApiServer::set_default_service_account_delay`],
//! [`FakeApiServer::hold_default_service_accounts`]), and webhook calls can present a client
//! certificate ([`FakeApiServer::set_webhook_client_identity`]).
//!
//! [`SEMANTICS.md`](../SEMANTICS.md), at the root of this crate, lists every behaviour the injector
//! relies on with the Kubernetes source that defines it, what the fake does, and the test that
//! proves it.
//!
//! Simplified against the real apiserver, knowingly:
//! - Server-side apply merges as structured-merge-diff does, but keeps no managedFields: it
//!   never removes what a manager applied before and now leaves out, never reports
//!   field-manager conflicts (`force` is accepted and ignored), and returns no managedFields.
//! - Strategic merge errors that Go returns untyped are 500s with an approximation of Go's
//!   message.
//! - Unknown fields are stored and returned as sent (kube drops them with a warning, or refuses
//!   them under `fieldValidation=Strict`); only the `$` directives a strategic merge leaves in
//!   an atomic list are dropped.
//! - A list with an exact or not-older-than resourceVersion, and the later pages of a paginated
//!   list, are served from the current state (the reported resourceVersion is the requested one);
//!   only a version older than the retained history gets 410. A version newer than the current
//!   one fails at once with kube's 504 "Too large resource version" instead of waiting 3 s.
//! - A watch from a version newer than the current one starts from now.
//! - Webhooks are called on CREATE only (UPDATE/DELETE/CONNECT rules never fire), for every
//!   resource their rules match; `reinvocationPolicy`, `matchPolicy` and `matchConditions` are
//!   not supported. A `clientConfig.service` has no Service object behind it: the test says
//!   where it is served with `route_service`, and the call dials that address with the name
//!   `service.namespace.svc`, as kube-apiserver does (no route: the call fails). As in kube, no
//!   webhook is called on webhook configurations themselves.
//! - An empty `caBundle` trusts nothing (kube would fall back to the system roots, which do not
//!   hold a test CA either). A new HTTPS client is made for every call, so nothing of an earlier
//!   TLS session carries over. Client certificates are chosen as kubeConfigFile users are, but
//!   without the in-cluster and current-context fallbacks, and there are no other credentials.
//! - MutatingWebhookConfiguration validation covers webhook names (three DNS segments, no
//!   duplicates), `sideEffects` (None/NoneOnDryRun), `failurePolicy`, `admissionReviewVersions`,
//!   url-or-service and `timeoutSeconds`; rules, selectors, URLs and `matchConditions` are not
//!   checked. v1 defaults are applied (failurePolicy, matchPolicy, selectors, timeoutSeconds,
//!   reinvocationPolicy, rule scope, service port); `metadata.generation` counts changes of
//!   `webhooks`. [`FakeApiServer::register_webhook`] skips validation (tests register
//!   `sideEffects: Unknown` hooks), not defaulting. ValidatingWebhookConfigurations and the other
//!   admissionregistration resources are not served.
//! - ServiceAccount admission does not add the projected token volume and mounts.
//! - The AdmissionReview request leaves `name` out for a generateName create (as kube does:
//!   the field is omitempty), rather than sending an empty string.
//! - Validation covers names, dockerconfigjson/dockercfg Secrets, Secret `type` immutability and
//!   immutable Secrets/ConfigMaps (where an absent and an empty `data` compare equal); Pod
//!   spec immutability is not enforced, and Pods get no defaults beyond the ServiceAccount and
//!   `status.phase: Pending`.
//! - The service account controller creates the `default` ServiceAccount at once unless told
//!   otherwise (see above), and a Namespace update does not make it retry a failed creation
//!   (its backoff does); it has no periodic resync, only the relist after its stream is cut.
//! - Field selectors: the Pod labels `spec.hostNetwork`, `status.podIPs` and `spec.host` are
//!   refused.
//! - Bookmarks go out every second (kube: about a minute). Faults apply to resource requests
//!   only, not to discovery paths.
//! - Objects are deleted at once (no kubelet, no grace period, finalizers do not hold them);
//!   only Namespaces finalise, until [`FakeApiServer::finish_namespace_deletion`].
//! - Only core/v1 namespaces, secrets, serviceaccounts, configmaps, pods and events, and
//!   admissionregistration.k8s.io/v1 mutatingwebhookconfigurations exist; no subresources, no
//!   deletecollection, no `/api/v1/watch/...` legacy paths, no aggregated discovery (`/apis` answers
//!   the plain APIGroupList whatever the Accept header asks for), HTTP/1.1 only.
//! - The direct methods (`create`, `create_as`, ...) skip authentication, faults and RBAC and are
//!   not recorded as requests; they do go through validation, admission and watch events.

mod admission;
mod api;
mod controllers;
mod ctx;
mod faults;
mod http;
mod meta;
pub mod objects;
mod patch;
mod rbac;
mod schema;
mod selectors;
mod status;
mod store;
mod tls;
mod validation;
mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use serde_json::Value;

pub use faults::{Fault, FaultId, FaultKind};
pub use tls::{TestPair, test_pair};

/// Polls `check` until it holds; panics naming `what` after 30 s. Tests wait on outcomes this
/// way, never on durations.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}
pub use status::Status;

use ctx::Ctx;
use meta::{by_kind, by_resource, meta_str};
use rbac::{Rbac, UserInfo};
use status::Failure;
use store::Store;

/// One HTTP request as the fake saw it; `verb` is the Kubernetes authorization verb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub verb: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// "" when unauthenticated.
    pub user: String,
    pub status: u16,
    pub dry_run: bool,
    pub metadata_only: bool,
}

/// One call of a mutating webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionCall {
    /// The webhook's name within its configuration.
    pub webhook: String,
    pub kind: String,
    /// "" for cluster-scoped objects.
    pub namespace: String,
    /// "" when the object is created with generateName.
    pub name: String,
    pub dry_run: bool,
    /// A non-empty JSONPatch was applied.
    pub patched: bool,
    /// Why the call failed or was denied (whatever the failurePolicy made of it).
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

/// State shared by the HTTP front and the direct methods.
pub(crate) struct Core {
    pub store: Mutex<Store>,
    pub tokens: Mutex<HashMap<String, UserInfo>>,
    pub rbac: Mutex<Rbac>,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub admission_calls: Mutex<Vec<AdmissionCall>>,
    pub faults: Mutex<faults::Faults>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Where each Service (namespace, name) is served: its endpoints, for webhook calls.
    pub services: Mutex<HashMap<(String, String), std::net::SocketAddr>>,
    /// The service account controller's knobs and the creations it holds.
    pub sa_controller: Mutex<controllers::SaController>,
    /// Wakes held creations when the test releases some.
    pub sa_wakeup: tokio::sync::Notify,
    /// The client certificates webhook calls present, by kubeconfig user name (`host:port`,
    /// `host`, `*.domain`, `*`), as the AdmissionConfiguration's `kubeConfigFile` names them.
    pub webhook_identities: Mutex<HashMap<String, admission::ClientIdentity>>,
    /// Whether terminating namespaces are emptied and removed moments after their delete, as
    /// kube-controller-manager's namespace controller does (off: tests finish them by hand).
    pub finish_namespaces: std::sync::atomic::AtomicBool,
    /// Suffixes `generateName` uses before it draws random ones, so that a test can make
    /// generated names collide.
    pub scripted_suffixes: Mutex<std::collections::VecDeque<String>>,
}

impl Core {
    /// What the namespace controller does for a terminating namespace: deletes everything in
    /// it (with DELETED events), then the namespace itself.
    pub(crate) fn finish_namespace(&self, name: &str) {
        let mut store = lock(&self.store);
        let keys: Vec<store::Key> = store
            .objects
            .keys()
            .filter(|(_, ns, _)| ns == name)
            .cloned()
            .collect();
        for key in keys {
            store.remove(&key);
        }
        store.remove(&store::key("namespaces", "", name));
    }
}

/// A poisoned lock only means another test thread panicked; the data is still what we want.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The fake apiserver; dropping it stops serving and ends every watch.
pub struct FakeApiServer {
    core: Arc<Core>,
    url: String,
    ca_pem: String,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn admin() -> UserInfo {
    UserInfo::new("admin", &["system:masters", "system:authenticated"])
}

impl FakeApiServer {
    pub const ADMIN_TOKEN: &'static str = "fake-apiserver-admin-token";

    /// Serves on 127.0.0.1 at a free port. Needs a Tokio runtime.
    pub async fn start() -> FakeApiServer {
        let cert = tls::serving_cert();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let mut tokens = HashMap::new();
        tokens.insert(Self::ADMIN_TOKEN.to_string(), admin());
        let core = Arc::new(Core {
            store: Mutex::new(Store::new()),
            tokens: Mutex::new(tokens),
            rbac: Mutex::new(Rbac::default()),
            requests: Mutex::new(Vec::new()),
            admission_calls: Mutex::new(Vec::new()),
            services: Mutex::new(HashMap::new()),
            sa_controller: Mutex::new(controllers::SaController::default()),
            sa_wakeup: tokio::sync::Notify::new(),
            finish_namespaces: std::sync::atomic::AtomicBool::new(false),
            scripted_suffixes: Mutex::default(),
            webhook_identities: Mutex::new(HashMap::new()),
            faults: Mutex::new(faults::Faults::default()),
            shutdown: shutdown_rx,
        });
        controllers::start(&core);
        tokio::spawn(http::serve(core.clone(), listener, cert.config));
        FakeApiServer {
            core,
            url: format!("https://127.0.0.1:{port}"),
            ca_pem: cert.ca_pem,
            shutdown,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// A token that authenticates as `system:serviceaccount:{namespace}:{name}`.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let token = format!("fake-sa-token.{namespace}.{name}");
        lock(&self.core.tokens).insert(token.clone(), UserInfo::service_account(namespace, name));
        token
    }

    pub fn kubeconfig(&self, token: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: fake-user\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake-user\ncurrent-context: fake\npreferences: {{}}\n",
            url = self.url
        )
    }

    /// Writes `kubeconfig` into `dir` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig(token)).expect("write kubeconfig");
        path
    }

    /// Adds the ClusterRoles, Roles and bindings of a multi-document YAML stream (other kinds
    /// are skipped); objects with the name of an earlier one replace it.
    pub fn load_rbac(&self, yaml: &str) -> Result<(), String> {
        lock(&self.core.rbac).load(yaml)
    }

    /// Stores a MutatingWebhookConfiguration (creating it, or replacing the one of its name) as
    /// the admin would, but without validation, so that configurations a real apiserver refuses
    /// (`sideEffects: Unknown`) can be registered. Defaults apply, watches see the change, and
    /// the configuration is then an ordinary object of the API: what admission calls is what
    /// the store holds at the time of the call.
    pub fn register_webhook(&self, config: MutatingWebhookConfiguration) {
        let info = webhook_configs();
        let obj = serde_json::to_value(&config).expect("a serialisable webhook configuration");
        if let Err(failure) = api::put_unchecked(&self.core, info, obj) {
            panic!("register_webhook: {}", failure.message);
        }
    }

    /// Serves the Service `namespace/name` at `addr` (its endpoints): webhooks whose
    /// `clientConfig.service` names it are dialled at `addr` with the server name
    /// `name.namespace.svc`, as kube-apiserver does.
    pub fn route_service(&self, namespace: &str, name: &str, addr: std::net::SocketAddr) {
        lock(&self.core.services).insert((namespace.to_string(), name.to_string()), addr);
    }

    /// The client certificate (PEM, leaf first, and its PEM private key) that every webhook
    /// call presents, as kube-apiserver does with an AdmissionConfiguration `kubeConfigFile`
    /// whose user `*` has `client-certificate-data` and `client-key-data`. Without it (the
    /// default) calls present none. Panics on PEM that does not parse, as kube-apiserver would
    /// refuse to start.
    pub fn set_webhook_client_identity(&self, cert_pem: &str, key_pem: &str) {
        self.set_webhook_client_identity_for("*", cert_pem, key_pem);
    }

    /// Like [`Self::set_webhook_client_identity`], for the kubeconfig user `name`, which kube
    /// matches against the webhook's `host:port` (a `clientConfig.service` is
    /// `name.namespace.svc:port`): exactly, then as `*.` suffixes (`*.ns.svc`, `*.svc`), then
    /// (port 443 only) the same without the port, then `*`.
    /// (`staging/src/k8s.io/apiserver/pkg/util/webhook/authentication.go`, `clientConfig`.)
    pub fn set_webhook_client_identity_for(&self, name: &str, cert_pem: &str, key_pem: &str) {
        let identity = admission::ClientIdentity::new(cert_pem, key_pem)
            .unwrap_or_else(|e| panic!("set_webhook_client_identity_for({name}): {e}"));
        lock(&self.core.webhook_identities).insert(name.to_string(), identity);
    }

    /// Webhook calls present no client certificate again.
    pub fn clear_webhook_client_identities(&self) {
        lock(&self.core.webhook_identities).clear();
    }

    /// How long the service account controller waits, after it sees a Namespace added (or a
    /// ServiceAccount deleted) from now on, before it creates the namespace's `default`
    /// ServiceAccount; the default is none (the creation starts at once, in its own task,
    /// once the controller has seen the Namespace's ADDED event). The creation still goes
    /// through admission and emits its watch event.
    pub fn set_default_service_account_delay(&self, delay: std::time::Duration) {
        lock(&self.core.sa_controller).delay = delay;
    }

    /// The next `generateName` creates get these suffixes, in order, before random ones again:
    /// a test makes names collide to see the create retried as kube-apiserver retries it.
    pub fn script_generated_name_suffixes(&self, suffixes: &[&str]) {
        lock(&self.core.scripted_suffixes).extend(suffixes.iter().map(|s| s.to_string()));
    }

    /// While true, every `default` ServiceAccount creation that comes due waits (see
    /// [`Self::held_default_service_accounts`]) until [`Self::release_default_service_account`]
    /// for its namespace; false lets every waiting one go.
    pub fn hold_default_service_accounts(&self, hold: bool) {
        let mut c = lock(&self.core.sa_controller);
        c.hold = hold;
        if !hold {
            c.released.clear();
        }
        drop(c);
        self.core.sa_wakeup.notify_waiters();
    }

    /// Lets the held creation of `namespace`'s `default` ServiceAccount go (if none is held
    /// yet, the next one comes due released). It then goes through admission as usual: poll for
    /// the ServiceAccount to see it. Does nothing unless holding.
    pub fn release_default_service_account(&self, namespace: &str) {
        let mut c = lock(&self.core.sa_controller);
        if c.hold {
            c.released.insert(namespace.to_string());
        }
        drop(c);
        self.core.sa_wakeup.notify_waiters();
    }

    /// The namespaces whose `default` ServiceAccount creation is being held, in name order.
    pub fn held_default_service_accounts(&self) -> Vec<String> {
        lock(&self.core.sa_controller)
            .held
            .iter()
            .cloned()
            .collect()
    }

    /// Deletes the MutatingWebhookConfiguration `name`, if there is one.
    pub fn unregister_webhook(&self, name: &str) {
        let info = webhook_configs();
        let ctx = Ctx::new(admin(), false);
        let _ = api::delete(&self.core, &ctx, info, None, name, None);
    }

    /// Creates as the admin user; the resource comes from `kind`, the namespace from metadata.
    pub async fn create(&self, object: Value) -> Result<Value, Status> {
        self.create_as(
            "admin",
            &["system:masters", "system:authenticated"],
            object,
            false,
        )
        .await
    }

    /// Creates as any user (as admission sees it; RBAC is not applied).
    pub async fn create_as(
        &self,
        user: &str,
        groups: &[&str],
        object: Value,
        dry_run: bool,
    ) -> Result<Value, Status> {
        let info = kind_of(&object)?;
        let namespace = meta_str(&object, "namespace").to_string();
        let mut ctx = Ctx::new(UserInfo::new(user, groups), dry_run);
        let ns = info.namespaced.then_some(namespace.as_str());
        api::create(&self.core, &mut ctx, info, ns, object)
            .await
            .map_err(|f| f.to_status())
    }

    /// PUT as the admin user; conditional when the object carries a resourceVersion.
    pub async fn replace(&self, object: Value) -> Result<Value, Status> {
        let info = kind_of(&object)?;
        let name = meta_str(&object, "name").to_string();
        let namespace = meta_str(&object, "namespace").to_string();
        let ctx = Ctx::new(admin(), false);
        let ns = info.namespaced.then_some(namespace.as_str());
        api::update(&self.core, &ctx, info, ns, &name, object).map_err(|f| f.to_status())
    }

    /// Deletes as the admin user (a Namespace starts terminating).
    pub async fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), Status> {
        let info = resource_of(resource)?;
        let ctx = Ctx::new(admin(), false);
        api::delete(&self.core, &ctx, info, namespace, name, None)
            .map(|_| ())
            .map_err(|f| f.to_status())
    }

    /// What the namespace controller does for a terminating namespace: deletes everything in
    /// it (with DELETED events), then the namespace itself.
    pub fn finish_namespace_deletion(&self, name: &str) {
        self.core.finish_namespace(name);
    }

    /// Whether terminating namespaces are finished by the fake itself, a moment after their
    /// delete, as the namespace controller does (the standalone server turns it on).
    pub fn finish_namespace_deletions_automatically(&self, on: bool) {
        self.core
            .finish_namespaces
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn get(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let info = by_resource(resource)?;
        api::get(&self.core, info, namespace, name).ok()
    }

    /// Every object of a resource, in one namespace or (None) all.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        let store = lock(&self.core.store);
        store
            .objects
            .iter()
            .filter(|((r, ns, _), _)| r == resource && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.core.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.core.requests).clear();
    }

    /// How many requests `user` made with `verb` on `resource`.
    pub fn count(&self, user: &str, verb: &str, resource: &str) -> usize {
        lock(&self.core.requests)
            .iter()
            .filter(|r| r.user == user && r.verb == verb && r.resource == resource)
            .count()
    }

    pub fn admission_calls(&self) -> Vec<AdmissionCall> {
        lock(&self.core.admission_calls).clone()
    }

    pub fn add_fault(&self, fault: Fault) -> FaultId {
        lock(&self.core.faults).add(fault)
    }

    pub fn remove_fault(&self, id: FaultId) {
        lock(&self.core.faults).remove(id);
    }

    pub fn clear_faults(&self) {
        lock(&self.core.faults).clear();
    }

    /// Breaks every open watch connection, without a final event.
    pub fn drop_watches(&self) {
        lock(&self.core.store).abort_watches();
    }

    /// Forgets the watch history (as a compaction): a watch from any version seen so far gets
    /// the 410 Expired ERROR event. Open watches end, as when the watch cache re-initialises.
    pub fn expire_history(&self) {
        lock(&self.core.store).expire();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.core.store).rv
    }
}

fn kind_of(object: &Value) -> Result<&'static meta::ResourceInfo, Status> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    by_kind(api_version, kind).ok_or_else(|| Failure::no_such_path().to_status())
}

fn webhook_configs() -> &'static meta::ResourceInfo {
    by_resource("mutatingwebhookconfigurations").expect("mutatingwebhookconfigurations is served")
}

fn resource_of(resource: &str) -> Result<&'static meta::ResourceInfo, Status> {
    by_resource(resource).ok_or_else(|| Failure::no_such_path().to_status())
}
