//! A live cluster, read-only, with the user's own credentials: what `check`, `validate` and
//! `audit` otherwise read from manifest files. It reads what cluster mode watches (the config
//! ConfigMap, Namespaces, the sources, the copies, the ServiceAccounts the config names) and,
//! for `audit`, the Pods; it never writes. Every read that is refused is reported with the
//! permission it needs, all of them at once, so that one round with the cluster admin fixes them.
//!
//! Secret data is read into memory only, as the decision needs it (a source's keys, a copy's
//! content hash); nothing here prints it, and API errors are described by their status alone.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::config::{CONFIG_KEY, Config, Source};
use crate::marks::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::view::live::{Feed, service_account_feeds, source_feeds};
use crate::view::{ClusterState, ClusterView, NamespaceInfo};
use crate::workload::{self, Workload};

/// The ConfigMap the injector reads when `--config-map` is not given: `OWN_NAMESPACE/NAME`.
pub const DEFAULT_CONFIG_MAP_NAME: &str = "pull-secret-injector";

/// How to reach the cluster.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// A kubeconfig file; without it, `KUBECONFIG` or `~/.kube/config`, then the in-cluster
    /// config.
    pub kubeconfig: Option<PathBuf>,
    /// A context of that kubeconfig other than its current one.
    pub context: Option<String>,
}

/// Why the cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// No usable client configuration.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// `--config-map` is not `NAMESPACE/NAME`.
    #[error("--config-map {0:?}: expected NAMESPACE/NAME")]
    ConfigMapRef(String),
    /// The config ConfigMap does not exist.
    #[error(
        "ConfigMap {0} not found: is the injector installed in that namespace? (name another with --config-map NAMESPACE/NAME, or give a config file with --config)"
    )]
    ConfigMapMissing(String),
    /// The ConfigMap has no config.
    #[error("ConfigMap {0} has no key {CONFIG_KEY:?}")]
    ConfigKeyMissing(String),
    /// Reads the user's credentials do not allow; each says the permission it needs.
    #[error("{}", denied_message(.0))]
    Denied(Vec<Denied>),
    /// The API could not be reached or answered an error other than 403.
    #[error("{what}: {reason}")]
    Api {
        /// The read, in words (`list pods in every namespace`).
        what: String,
        /// The status or transport error.
        reason: String,
    },
}

/// One read the API server refused (403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The read, in words.
    pub what: String,
    /// The RBAC rule that allows it: `get configmaps in namespace x`.
    pub needs: String,
    /// The API server's own message.
    pub message: String,
}

fn denied_message(denied: &[Denied]) -> String {
    let mut out = format!(
        "the API server refused {} read{} (403 Forbidden); your credentials need:",
        denied.len(),
        if denied.len() == 1 { "" } else { "s" }
    );
    for d in denied {
        out.push_str(&format!("\n  - {}: to {} ({})", d.needs, d.what, d.message));
    }
    out.push_str(
        "\nsee \"Reading a live cluster\" in docs/cli.md for a ClusterRole that grants them",
    );
    out
}

/// A connection to the cluster, with the runtime its requests run on (the commands are
/// synchronous).
pub struct Session {
    runtime: tokio::runtime::Runtime,
    client: Client,
    server: String,
}

/// What was read from the cluster.
#[derive(Debug)]
pub struct Read {
    /// The cluster's Namespaces, sources, copies and ServiceAccounts.
    pub state: ClusterState,
    /// Its Pods, when asked for.
    pub pods: Vec<Workload>,
}

impl Session {
    /// Builds a client as kubectl would: the kubeconfig (and context) given, else
    /// `KUBECONFIG`/`~/.kube/config`, else the in-cluster service account.
    pub fn connect(target: &Target) -> Result<Self, InspectError> {
        // rustls picks a process-wide provider only when exactly one is compiled in; say which.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| InspectError::Connect(format!("cannot start a runtime: {e}")))?;
        let options = KubeConfigOptions {
            context: target.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = runtime.block_on(async {
            match &target.kubeconfig {
                Some(path) => {
                    let file = Kubeconfig::read_from(path)
                        .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
                    kube::Config::from_custom_kubeconfig(file, &options)
                        .await
                        .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))
                }
                None if target.context.is_some() => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| format!("--context: {e}")),
                None => kube::Config::infer().await.map_err(|e| {
                    format!("no kubeconfig (KUBECONFIG, ~/.kube/config) and not in a cluster: {e}")
                }),
            }
        });
        let config = config.map_err(InspectError::Connect)?;
        let server = config.cluster_url.to_string();
        let client = {
            let _guard = runtime.enter();
            Client::try_from(config).map_err(|e| InspectError::Connect(e.to_string()))?
        };
        Ok(Session {
            runtime,
            client,
            server,
        })
    }

    /// The API server's address, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The config text of the ConfigMap `NAMESPACE/NAME`, and a name for it in messages.
    pub fn config_text(&self, reference: &str) -> Result<(String, String), InspectError> {
        let (namespace, name) = reference
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| InspectError::ConfigMapRef(reference.to_string()))?;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let cm = self
            .runtime
            .block_on(api.get_opt(name))
            .map_err(|e| {
                classify(
                    e,
                    format!("read the config ConfigMap {reference}"),
                    format!("get configmaps {name:?} in namespace {namespace}"),
                )
            })
            .map_err(|e| e.into_error())?
            .ok_or_else(|| InspectError::ConfigMapMissing(reference.to_string()))?;
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(CONFIG_KEY))
            .cloned()
            .ok_or_else(|| InspectError::ConfigKeyMissing(reference.to_string()))?;
        Ok((format!("ConfigMap {reference}"), text))
    }

    /// Reads what the decision needs for `config` (and the Pods, with `pods`), read-only.
    pub fn read(&self, config: &Config, pods: bool) -> Result<Read, InspectError> {
        self.runtime.block_on(self.read_async(config, pods))
    }

    async fn read_async(&self, config: &Config, with_pods: bool) -> Result<Read, InspectError> {
        let mut state = ClusterState::new();
        let mut failures = Failures::default();
        let everywhere = "in every namespace";

        if let Some(list) = failures.take(
            self.list_namespaces().await,
            "list namespaces",
            "list namespaces (cluster scope)",
        ) {
            for ns in &list {
                if let Some(info) = NamespaceInfo::from_namespace(ns) {
                    state.insert_namespace(info);
                }
            }
        }

        // The sources, by the same feeds cluster mode watches.
        let mut source_names = BTreeSet::new();
        for feed in source_feeds(config) {
            let found = match &feed {
                Feed::SourceNamed { namespace, name } => {
                    let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                    failures
                        .take(
                            api.get_opt(name).await.map(|s| s.into_iter().collect()),
                            &format!("read the source secret {namespace}/{name}"),
                            &format!("get secrets {name:?} in namespace {namespace}"),
                        )
                        .unwrap_or_default()
                }
                Feed::SourceSelected { namespace, labels } => failures
                    .take(
                        self.list::<Secret>(Some(namespace), ListParams::default().labels(labels))
                            .await,
                        &format!("list the source secrets {labels} in {namespace}"),
                        &format!("list secrets in namespace {namespace}"),
                    )
                    .unwrap_or_default(),
                Feed::Locals { labels } => failures
                    .take(
                        self.list::<Secret>(None, ListParams::default().labels(labels))
                            .await,
                        &format!("list the local secrets {labels} {everywhere}"),
                        "list secrets (cluster scope)",
                    )
                    .unwrap_or_default(),
                Feed::Namespaces | Feed::Copies | Feed::ServiceAccounts { .. } => Vec::new(),
            };
            for secret in found {
                if !matches!(feed, Feed::Locals { .. }) {
                    source_names.insert(secret.metadata.name.clone().unwrap_or_default());
                }
                state.insert_secret(secret);
            }
        }

        // The copies, by their label, and whatever else holds a copy's name (a name taken by
        // a foreign secret is a reason not to inject).
        let copies = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
        if let Some(list) = failures.take(
            self.list::<Secret>(None, ListParams::default().labels(&copies))
                .await,
            &format!("list the injector's copies ({copies}) {everywhere}"),
            "list secrets (cluster scope)",
        ) {
            list.into_iter().for_each(|s| state.insert_secret(s));
        }
        let mut copy_names = BTreeSet::new();
        for credential in &config.credentials {
            match &credential.source {
                Source::Secret { name, .. } => {
                    copy_names.insert(credential.copy_name_for(name).to_string());
                }
                Source::SecretSelector { .. } => {
                    for name in &source_names {
                        copy_names.insert(credential.copy_name_for(name).to_string());
                    }
                }
                Source::LocalSecretSelector { .. } => {}
            }
        }
        for name in copy_names {
            let params = ListParams::default().fields(&format!("metadata.name={name}"));
            if let Some(list) = failures.take(
                self.list::<Secret>(None, params).await,
                &format!("list secrets named {name} {everywhere}"),
                "list secrets (cluster scope)",
            ) {
                for secret in list {
                    let held = state
                        .secret(
                            secret.metadata.namespace.as_deref().unwrap_or_default(),
                            &name,
                        )
                        .is_some();
                    if !held {
                        state.insert_secret(secret);
                    }
                }
            }
        }

        for feed in service_account_feeds(config) {
            let Feed::ServiceAccounts { name } = &feed else {
                continue;
            };
            let (params, what) = match name {
                Some(name) => (
                    ListParams::default().fields(&format!("metadata.name={name}")),
                    format!("list ServiceAccounts named {name} {everywhere}"),
                ),
                None => (
                    ListParams::default(),
                    format!("list ServiceAccounts {everywhere}"),
                ),
            };
            if let Some(list) = failures.take(
                self.list::<ServiceAccount>(None, params).await,
                &what,
                "list serviceaccounts (cluster scope)",
            ) {
                list.into_iter()
                    .for_each(|sa| state.insert_service_account(sa));
            }
        }

        let mut pods = Vec::new();
        if with_pods
            && let Some(list) = failures.take(
                self.list::<Pod>(None, ListParams::default()).await,
                &format!("list pods {everywhere}"),
                "list pods (cluster scope)",
            )
        {
            for pod in list {
                let origin = format!(
                    "pod {}/{}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default()
                );
                // Typed objects serialise with their apiVersion and kind, which the reader
                // keys on.
                let value = serde_json::to_value(&pod).unwrap_or_default();
                match workload::from_value(&value, &origin) {
                    Ok(found) => pods.extend(found),
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
        failures.finish()?;
        Ok(Read { state, pods })
    }

    /// Namespaces are cluster-scoped, so they have their own call.
    async fn list_namespaces(&self) -> Result<Vec<Namespace>, kube::Error> {
        list_pages(
            &Api::<Namespace>::all(self.client.clone()),
            ListParams::default(),
        )
        .await
    }

    /// Every object of a list, page by page (a large cluster's pods do not come in one answer).
    async fn list<K>(
        &self,
        namespace: Option<&str>,
        params: ListParams,
    ) -> Result<Vec<K>, kube::Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        list_pages(&api, params).await
    }
}

async fn list_pages<K>(api: &Api<K>, params: ListParams) -> Result<Vec<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.limit(500);
    let mut out = Vec::new();
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

/// The refusals and errors met so far: reading goes on after a 403 so that every missing
/// permission is reported at once; any other error stops at the end too.
#[derive(Default)]
struct Failures {
    denied: Vec<Denied>,
    other: Option<InspectError>,
}

enum Failure {
    Denied(Denied),
    Other(InspectError),
}

impl Failure {
    fn into_error(self) -> InspectError {
        match self {
            Failure::Denied(d) => InspectError::Denied(vec![d]),
            Failure::Other(e) => e,
        }
    }
}

fn classify(e: kube::Error, what: String, needs: String) -> Failure {
    match &e {
        kube::Error::Api(status) if status.code == 403 => Failure::Denied(Denied {
            what,
            needs,
            message: status.message.clone(),
        }),
        kube::Error::Api(status) if status.code == 401 => Failure::Other(InspectError::Api {
            what,
            reason: "401 Unauthorized: the API server does not accept these credentials (expired token? run kubectl get ns to log in again)".to_string(),
        }),
        _ => Failure::Other(InspectError::Api {
            what,
            reason: crate::cluster::api::describe(&e),
        }),
    }
}

impl Failures {
    fn take<T>(&mut self, result: Result<T, kube::Error>, what: &str, needs: &str) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                match classify(e, what.to_string(), needs.to_string()) {
                    Failure::Denied(d) => self.denied.push(d),
                    Failure::Other(e) => {
                        self.other.get_or_insert(e);
                    }
                }
                None
            }
        }
    }

    fn finish(self) -> Result<(), InspectError> {
        if let Some(e) = self.other {
            return Err(e);
        }
        if self.denied.is_empty() {
            Ok(())
        } else {
            Err(InspectError::Denied(self.denied))
        }
    }
}
