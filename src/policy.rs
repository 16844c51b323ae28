//! The decision: for an object being created in a namespace, which pull secrets to add, which
//! copies must exist, and what to warn about. Pure: it reads a [`Catalog`] and a
//! [`ClusterView`] and performs no I/O.
//!
//! The expensive, namespace-independent work (parsing and filtering source secrets, compiling
//! their keys into a keyring) is done once per config or source change in [`Catalog::build`];
//! a decision is then a handful of hash lookups per image.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::{Config, Credential, PROTECTED_NAMESPACES, Source};
use crate::marks::{OPT_OUT_KEY, copy_annotations, copy_labels};
use crate::registry::dockerconfig::{
    DOCKER_CONFIG_JSON_KEY, DOCKER_CONFIG_JSON_TYPE, DockerConfig,
};
use crate::registry::image::ImageRef;
use crate::registry::keyring::{Keyring, RegistryKey};
use crate::view::{ClusterView, NamespaceInfo};

/// A source secret, filtered and ready to be copied or matched.
#[derive(Clone)]
pub struct PreparedSource {
    /// The credential it belongs to.
    pub credential: String,
    /// Namespace of the source secret.
    pub source_namespace: String,
    /// Name of the source secret.
    pub source_name: String,
    /// Name of the copy in target namespaces.
    pub copy_name: String,
    /// The selected entries only.
    pub content: DockerConfig,
    /// `content` serialised as `.dockerconfigjson`.
    pub data: Vec<u8>,
    /// Hash of `data`, written to the copy's content-hash annotation.
    pub hash: String,
    /// The source secret's resourceVersion when it was read (empty when unknown): a writer
    /// checks it against the API's before overwriting copies, so that a replica whose watch
    /// lags never writes older content over newer.
    pub source_version: String,
}

impl fmt::Debug for PreparedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedSource")
            .field("credential", &self.credential)
            .field(
                "source",
                &format_args!("{}/{}", self.source_namespace, self.source_name),
            )
            .field("copy_name", &self.copy_name)
            .field("keys", &self.content.keys().collect::<Vec<_>>())
            .field("hash", &self.hash)
            .finish()
    }
}

impl PreparedSource {
    /// `namespace/name` of the source secret.
    pub fn source_ref(&self) -> String {
        format!("{}/{}", self.source_namespace, self.source_name)
    }

    /// The copy as it must exist in `namespace`.
    pub fn copy_secret(&self, namespace: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.copy_name.clone()),
                namespace: Some(namespace.to_string()),
                labels: Some(copy_labels()),
                annotations: Some(copy_annotations(
                    &self.credential,
                    &self.source_ref(),
                    &self.hash,
                )),
                ..Default::default()
            },
            type_: Some(DOCKER_CONFIG_JSON_TYPE.to_string()),
            data: Some(BTreeMap::from([(
                DOCKER_CONFIG_JSON_KEY.to_string(),
                ByteString(self.data.clone()),
            )])),
            ..Default::default()
        }
    }
}

/// Why a warning was raised; stable names for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WarningReason {
    /// An image reference could not be parsed.
    InvalidImage,
    /// A credential's source secret does not exist.
    SourceMissing,
    /// A source secret is not a valid pull secret.
    SourceInvalid,
    /// A source secret holds no entry the credential's `registries` select.
    SourceEmpty,
    /// The copy's name is taken by a secret the injector does not manage.
    NameTaken,
    /// Two credentials want the same copy name with different content.
    CopyConflict,
    /// A local secret selected by `localSecretSelector` is not a valid pull secret.
    LocalSecretInvalid,
    /// The namespace is being deleted.
    NamespaceTerminating,
    /// The copy could not be made in time at admission; the reconciler retries it.
    CopyDeferred,
    /// The namespace is not (yet) known to the injector's view of the cluster.
    NamespaceUnknown,
}

impl WarningReason {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningReason::InvalidImage => "invalid_image",
            WarningReason::SourceMissing => "source_missing",
            WarningReason::SourceInvalid => "source_invalid",
            WarningReason::SourceEmpty => "source_empty",
            WarningReason::NameTaken => "name_taken",
            WarningReason::CopyConflict => "copy_conflict",
            WarningReason::LocalSecretInvalid => "local_secret_invalid",
            WarningReason::NamespaceTerminating => "namespace_terminating",
            WarningReason::CopyDeferred => "copy_deferred",
            WarningReason::NamespaceUnknown => "namespace_unknown",
        }
    }
}

/// Something a user should know: goes to the admission response, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Machine-readable cause.
    pub reason: WarningReason,
    /// Human-readable text naming the object and the cause; never secret data. This is what
    /// the user creating the object reads, so it names nothing of other namespaces.
    pub message: String,
    /// More for admins (`check`, logs), when the message holds back what a tenant must not
    /// read: which source secret, and what is wrong with it. Never secret data either.
    pub detail: Option<String>,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A problem with a credential that does not depend on the target namespace.
#[derive(Debug, Clone)]
struct CredentialProblem {
    reason: WarningReason,
    /// The whole story, for admins (logs, Events): names the source secret and the cause.
    message: String,
    /// The registry keys the unusable source holds, when they could be read, so that only
    /// pods pulling from those registries hear of it.
    keys: Option<Vec<RegistryKey>>,
}

/// A namespace-independent problem of one credential, for logs, metrics and Events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The credential.
    pub credential: String,
    /// What kind of problem.
    pub reason: WarningReason,
    /// The whole story, naming the source secret and the cause (never its data).
    pub message: String,
}

impl WarningReason {
    /// What a tenant is told about an unusable credential: the kind of problem, and nothing
    /// of where the admin keeps the credential.
    fn tenant_text(self) -> &'static str {
        match self {
            WarningReason::SourceMissing => "its source secret does not exist",
            WarningReason::SourceInvalid => "its source secret is not a valid pull secret",
            WarningReason::SourceEmpty => {
                "its source secret holds no entry for the registries it serves"
            }
            _ => "it cannot be used",
        }
    }
}

/// The config, compiled against the current source secrets.
#[derive(Debug)]
pub struct Catalog {
    config: Config,
    own_namespace: Option<String>,
    /// Per credential, in config order: its prepared sources (copied credentials only).
    sources: Vec<Vec<Arc<PreparedSource>>>,
    /// Per credential: problems found while preparing its sources.
    problems: Vec<Vec<CredentialProblem>>,
    /// Every selected key of every prepared source, pointing at (credential, source).
    keyring: Keyring<(usize, usize)>,
    /// Unusable auths keys, reported once per catalog rather than per request.
    notes: Vec<String>,
    /// Credentials with a `localSecretSelector`, whose secrets are read per namespace.
    local_credentials: Vec<usize>,
    /// Credentials whose sources have problems, worth a warning when in scope.
    troubled_credentials: Vec<usize>,
    /// Where each credential's sources start in a flat numbering of all sources.
    source_offsets: Vec<usize>,
    /// Number of prepared sources in all.
    source_count: usize,
}

/// What the object being admitted is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// A Pod: image-based injection.
    Pod,
    /// A ServiceAccount: name-based injection.
    ServiceAccount,
}

/// The parts of a Pod or ServiceAccount the decision reads.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Pod or ServiceAccount.
    pub kind: SubjectKind,
    /// `metadata.name`; pods from controllers have none at admission.
    pub name: Option<&'a str>,
    /// Every image of init, regular and ephemeral containers (Pods only).
    pub images: Vec<&'a str>,
    /// Names already in `imagePullSecrets`, in order.
    pub existing: Vec<&'a str>,
    /// The object's labels (for the opt-out label).
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// The object's annotations (for the opt-out annotation and the injected record).
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

/// One credential applying to one image, for explanations (`check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchReport {
    /// The credential's name.
    pub credential: String,
    /// The secret name referenced in `imagePullSecrets`.
    pub secret: String,
    /// The auths key that matched, as written in the secret, with any userinfo masked.
    pub pattern: String,
}

/// What the decision found for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReport {
    /// The image as written in the pod.
    pub image: String,
    /// Its normalised registry (`docker.io`, `us.icr.io`), when it parses.
    pub registry: Option<String>,
    /// The credentials kubelet would use for it, most specific key first.
    pub matches: Vec<MatchReport>,
}

/// A copy that must exist in a namespace before the pod can pull.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    /// The target namespace.
    pub namespace: String,
    /// What to copy.
    pub source: Arc<PreparedSource>,
    /// True when a managed copy exists but holds older content.
    pub update: bool,
}

impl CopyRequest {
    /// The secret name in the target namespace.
    pub fn name(&self) -> &str {
        &self.source.copy_name
    }
}

/// The outcome for one object.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Secret names to append to `imagePullSecrets`, in config order.
    pub add: Vec<String>,
    /// The credentials behind `add`, in the same order and deduplicated (for metrics).
    pub credentials: Vec<String>,
    /// Copies to create or refresh (none on dry runs).
    pub copies: Vec<CopyRequest>,
    /// Problems worth telling the user.
    pub warnings: Vec<Warning>,
    /// Per image, what matched (Pods only).
    pub images: Vec<ImageReport>,
    /// Why the object was not considered at all, when it was not.
    pub skipped: Option<String>,
}

impl Decision {
    /// Nothing to do: the namespace is not known to a view that holds every namespace.
    pub fn unknown_namespace(namespace: &str) -> Decision {
        Decision {
            skipped: Some(format!(
                "namespace {namespace} is not known to the injector"
            )),
            warnings: vec![Warning {
                reason: WarningReason::NamespaceUnknown,
                message: format!(
                    "pull-secret-injector: namespace {namespace} is not known to the injector yet; no pull secret injected"
                ),
                detail: None,
            }],
            ..Decision::default()
        }
    }
}

/// How a candidate secret stands in the target namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Availability {
    /// Usable as is: our up-to-date copy, or the source itself.
    Present,
    /// Usable once copied.
    Copy { update: bool },
    /// Not usable: a warning saying why was recorded when this was first computed.
    Blocked,
}

impl Catalog {
    /// Compiles a config against the secrets the view holds. `own_namespace` is the injector's
    /// namespace, never injected into.
    pub fn build(config: Config, view: &dyn ClusterView, own_namespace: Option<&str>) -> Catalog {
        Self::build_after(config, view, own_namespace, None)
    }

    /// [`Catalog::build`], remembering from the catalog it replaces which registries a source
    /// that has since vanished served, so that pods pulling from them are told why nothing is
    /// injected (and others are not).
    pub fn build_after(
        config: Config,
        view: &dyn ClusterView,
        own_namespace: Option<&str>,
        previous: Option<&Catalog>,
    ) -> Catalog {
        let mut sources = Vec::with_capacity(config.credentials.len());
        let mut problems = Vec::with_capacity(config.credentials.len());
        let mut keyring = Keyring::new();
        let mut notes = Vec::new();
        for (ci, credential) in config.credentials.iter().enumerate() {
            let mut prepared = Vec::new();
            let mut issues = Vec::new();
            let secrets: Vec<&Secret> = match &credential.source {
                Source::Secret { namespace, name } => match view.secret(namespace, name) {
                    Some(s) => vec![s],
                    None => {
                        issues.push(CredentialProblem {
                            reason: WarningReason::SourceMissing,
                            message: format!(
                                "credential {}: source secret {namespace}/{name} not found",
                                credential.name
                            ),
                            keys: previous.and_then(|p| {
                                p.known_keys(&credential.name, &format!("{namespace}/{name}"))
                            }),
                        });
                        Vec::new()
                    }
                },
                Source::SecretSelector {
                    namespace,
                    selector,
                } => {
                    let selected: Vec<&Secret> = view
                        .secrets_in(namespace)
                        .into_iter()
                        .filter(|s| selector.matches(&labels_of(s)))
                        .collect();
                    if selected.is_empty() {
                        issues.push(CredentialProblem {
                            reason: WarningReason::SourceMissing,
                            message: format!(
                                "credential {}: no secret in namespace {namespace} matches {}",
                                credential.name,
                                selector.to_query()
                            ),
                            keys: None,
                        });
                    }
                    selected
                }
                Source::LocalSecretSelector { .. } => Vec::new(),
            };
            for secret in secrets {
                match prepare(credential, secret, &mut notes) {
                    Ok(source) => {
                        let si = prepared.len();
                        for key in source.content.keys() {
                            if let Ok(k) = RegistryKey::parse(key) {
                                keyring.add(k, (ci, si));
                            }
                        }
                        prepared.push(Arc::new(source));
                    }
                    Err(problem) => issues.push(problem),
                }
            }
            sources.push(prepared);
            problems.push(issues);
        }
        let local_credentials = config
            .credentials
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.source, Source::LocalSecretSelector { .. }))
            .map(|(i, _)| i)
            .collect();
        let troubled_credentials = problems
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(i, _)| i)
            .collect();
        let mut source_offsets = Vec::with_capacity(sources.len());
        let mut source_count = 0;
        for s in &sources {
            source_offsets.push(source_count);
            source_count += s.len();
        }
        Catalog {
            source_offsets,
            source_count,
            local_credentials,
            troubled_credentials,
            config,
            own_namespace: own_namespace.map(str::to_string),
            sources,
            problems,
            keyring,
            notes,
        }
    }

    /// The config this catalog was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every prepared source, with the credential it belongs to.
    pub fn prepared_sources(&self) -> impl Iterator<Item = (&Credential, &Arc<PreparedSource>)> {
        self.config
            .credentials
            .iter()
            .zip(&self.sources)
            .flat_map(|(c, s)| s.iter().map(move |p| (c, p)))
    }

    /// Problems with sources and keys, independent of any namespace (for logs and `validate`).
    pub fn problems(&self) -> Vec<String> {
        self.problems
            .iter()
            .flatten()
            .map(|p| p.message.clone())
            .chain(self.notes.iter().cloned())
            .collect()
    }

    /// The registry keys this catalog knew a credential's source by: those of its prepared
    /// source, or those an earlier catalog knew when it was already missing.
    fn known_keys(&self, credential: &str, source_ref: &str) -> Option<Vec<RegistryKey>> {
        let ci = self
            .config
            .credentials
            .iter()
            .position(|c| c.name == credential)?;
        if let Some(source) = self.sources[ci]
            .iter()
            .find(|s| s.source_ref() == source_ref)
        {
            return Some(
                source
                    .content
                    .keys()
                    .filter_map(|k| RegistryKey::parse(k).ok())
                    .collect(),
            );
        }
        self.problems[ci]
            .iter()
            .find(|p| p.reason == WarningReason::SourceMissing)
            .and_then(|p| p.keys.clone())
    }

    /// The credentials' source problems, with their reasons (for metrics and Events).
    pub fn credential_problems(&self) -> Vec<Problem> {
        self.config
            .credentials
            .iter()
            .zip(&self.problems)
            .flat_map(|(c, problems)| {
                problems.iter().map(|p| Problem {
                    credential: c.name.clone(),
                    reason: p.reason,
                    message: p.message.clone(),
                })
            })
            .collect()
    }

    /// Why the injector leaves this namespace alone, if it does.
    pub fn namespace_exclusion(&self, ns: &NamespaceInfo) -> Option<String> {
        if PROTECTED_NAMESPACES.contains(&ns.name.as_str()) {
            return Some(format!("namespace {} is a system namespace", ns.name));
        }
        if self.own_namespace.as_deref() == Some(ns.name.as_str()) {
            return Some(format!("namespace {} is the injector's own", ns.name));
        }
        if opted_out(Some(&ns.labels), Some(&ns.annotations)) {
            return Some(format!(
                "namespace {} is labelled or annotated {OPT_OUT_KEY}=false",
                ns.name
            ));
        }
        None
    }

    /// Decides what to inject into an object being created in `ns`. With `dry_run`, the same
    /// names are returned but no copy is requested. `Decision::images` stays empty: this is the
    /// admission path, see [`Catalog::explain`] for the per-image report.
    pub fn decide(
        &self,
        subject: &Subject<'_>,
        ns: &NamespaceInfo,
        view: &dyn ClusterView,
        dry_run: bool,
    ) -> Decision {
        self.run(subject, ns, view, dry_run, false)
    }

    /// `decide`, plus a report of what matched each image and why (for `check`).
    pub fn explain(
        &self,
        subject: &Subject<'_>,
        ns: &NamespaceInfo,
        view: &dyn ClusterView,
        dry_run: bool,
    ) -> Decision {
        self.run(subject, ns, view, dry_run, true)
    }

    fn run(
        &self,
        subject: &Subject<'_>,
        ns: &NamespaceInfo,
        view: &dyn ClusterView,
        dry_run: bool,
        explain: bool,
    ) -> Decision {
        let mut decision = Decision::default();
        if let Some(why) = self.namespace_exclusion(ns) {
            decision.skipped = Some(why);
            return decision;
        }
        if opted_out(subject.labels, subject.annotations) {
            decision.skipped = Some(format!(
                "the object is labelled or annotated {OPT_OUT_KEY}=false"
            ));
            return decision;
        }
        match subject.kind {
            SubjectKind::Pod if !self.config.pods => {
                decision.skipped = Some("pod injection is turned off (pods: false)".to_string());
                return decision;
            }
            SubjectKind::ServiceAccount
                if !subject
                    .name
                    .is_some_and(|n| self.config.wants_service_account(n)) =>
            {
                decision.skipped = Some(format!(
                    "ServiceAccount {} is not named by serviceAccounts",
                    subject.name.unwrap_or("(unnamed)")
                ));
                return decision;
            }
            _ => {}
        }
        if ns.terminating {
            decision.skipped = Some(format!("namespace {} is terminating", ns.name));
            decision.warnings.push(Warning {
                reason: WarningReason::NamespaceTerminating,
                message: format!(
                    "pull-secret-injector: namespace {} is terminating; no pull secret injected",
                    ns.name
                ),
                detail: None,
            });
            return decision;
        }

        let mut run = Run::new(self, ns, view, dry_run);
        run.explain = explain;
        match subject.kind {
            SubjectKind::Pod => run.pod(&subject.images, &mut decision),
            SubjectKind::ServiceAccount => run.service_account(),
        }
        run.finish(subject, &mut decision);
        decision
    }
}

/// Reads, filters and hashes one source secret for a credential.
fn prepare(
    credential: &Credential,
    secret: &Secret,
    notes: &mut Vec<String>,
) -> Result<PreparedSource, CredentialProblem> {
    let namespace = secret.metadata.namespace.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    let full = DockerConfig::from_secret(secret).map_err(|e| CredentialProblem {
        reason: WarningReason::SourceInvalid,
        message: format!("credential {}: {e}", credential.name),
        keys: crate::registry::dockerconfig::registry_keys_of(secret).map(|keys| {
            keys.iter()
                .filter_map(|k| RegistryKey::parse(k).ok())
                .collect()
        }),
    })?;
    for key in full.keys() {
        if let Err(e) = RegistryKey::parse(key) {
            notes.push(format!(
                "credential {}: secret {namespace}/{name}: key skipped, as kubelet never uses it: {e}",
                credential.name
            ));
        }
    }
    let content = full.filter(|key| RegistryKey::parse(key).is_ok_and(|k| credential.selects(&k)));
    if content.is_empty() {
        return Err(CredentialProblem {
            reason: WarningReason::SourceEmpty,
            message: format!(
                "credential {}: secret {namespace}/{name} has no registry entry selected by its registries",
                credential.name
            ),
            keys: Some(Vec::new()),
        });
    }
    let data = content.to_dockerconfigjson();
    let hash = content.content_hash();
    Ok(PreparedSource {
        source_version: secret.metadata.resource_version.clone().unwrap_or_default(),
        credential: credential.name.clone(),
        copy_name: credential.copy_name_for(&name).to_string(),
        source_namespace: namespace,
        source_name: name,
        content,
        data,
        hash,
    })
}

fn labels_of(secret: &Secret) -> BTreeMap<String, String> {
    secret.metadata.labels.clone().unwrap_or_default()
}

fn opted_out(
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
) -> bool {
    let off = |m: Option<&BTreeMap<String, String>>| {
        m.and_then(|m| m.get(OPT_OUT_KEY))
            .is_some_and(|v| v == "false")
    };
    off(labels) || off(annotations)
}

/// A secret already in the target namespace, selected by a `localSecretSelector`.
struct LocalSecret {
    credential: usize,
    name: String,
}

/// The state of one decision while it runs.
struct Run<'c> {
    catalog: &'c Catalog,
    ns: &'c NamespaceInfo,
    view: &'c dyn ClusterView,
    dry_run: bool,
    /// Per credential: whether its namespace scope admits `ns`, computed on first use (a pod
    /// usually concerns a handful of the configured credentials).
    admitted: Vec<Option<bool>>,
    /// Per source (flat index, see `Catalog::source_offsets`): availability, computed on
    /// first use.
    availability: Vec<Option<Availability>>,
    /// (credential, source) pairs to inject.
    wanted: Vec<(usize, usize)>,
    /// Local secrets and their selected keys.
    local: Keyring<usize>,
    local_secrets: Vec<LocalSecret>,
    /// Indices into `local_secrets` to inject.
    wanted_local: Vec<usize>,
    warnings: Vec<Warning>,
    /// Credentials whose namespace-independent problems were already reported.
    reported: Vec<bool>,
    /// Whether to build per-image reports.
    explain: bool,
}

impl<'c> Run<'c> {
    fn new(
        catalog: &'c Catalog,
        ns: &'c NamespaceInfo,
        view: &'c dyn ClusterView,
        dry_run: bool,
    ) -> Self {
        let credentials = &catalog.config.credentials;
        let admitted = vec![None; credentials.len()];
        let mut run = Run {
            catalog,
            ns,
            view,
            dry_run,
            admitted,
            availability: vec![None; catalog.source_count],
            wanted: Vec::new(),
            local: Keyring::new(),
            local_secrets: Vec::new(),
            wanted_local: Vec::new(),
            warnings: Vec::new(),
            reported: vec![false; credentials.len()],
            explain: false,
        };
        run.load_local_secrets();
        run
    }

    fn admitted(&mut self, ci: usize) -> bool {
        if let Some(known) = self.admitted[ci] {
            return known;
        }
        let answer = self.catalog.config.credentials[ci]
            .namespaces
            .admits(&self.ns.name, &self.ns.labels);
        self.admitted[ci] = Some(answer);
        answer
    }

    fn load_local_secrets(&mut self) {
        let catalog = self.catalog;
        let local: Vec<usize> = catalog
            .local_credentials
            .iter()
            .copied()
            .filter(|&ci| self.admitted(ci))
            .collect();
        if local.is_empty() {
            return;
        }
        let credentials = &catalog.config.credentials;
        let secrets = self.view.secrets_in(&self.ns.name);
        for ci in local {
            let credential = &credentials[ci];
            let Source::LocalSecretSelector { selector } = &credential.source else {
                continue;
            };
            for secret in &secrets {
                if !selector.matches(&labels_of(secret)) {
                    continue;
                }
                let name = secret.metadata.name.clone().unwrap_or_default();
                let config = match DockerConfig::from_secret(secret) {
                    Ok(c) => c,
                    Err(e) => {
                        self.warnings.push(Warning {
                            reason: WarningReason::LocalSecretInvalid,
                            message: format!(
                                "pull-secret-injector: credential {}: not injected: {e}",
                                credential.name
                            ),
                            detail: None,
                        });
                        continue;
                    }
                };
                let li = self.local_secrets.len();
                let mut any = false;
                for key in config.keys() {
                    if let Ok(k) = RegistryKey::parse(key)
                        && credential.selects(&k)
                    {
                        self.local.add(k, li);
                        any = true;
                    }
                }
                if any {
                    self.local_secrets.push(LocalSecret {
                        credential: ci,
                        name,
                    });
                }
            }
        }
    }

    /// Reports a credential's source problems once, for credentials that are in scope, in
    /// words a tenant can act on: the credential and the kind of problem, never the admin's
    /// source namespace, secret or registry entries (those go to the logs and Events).
    /// With `images`, only problems whose source might serve one of them are reported.
    fn report_problems(&mut self, ci: usize, images: Option<&[&str]>) {
        if self.reported[ci] {
            return;
        }
        let credential = &self.catalog.config.credentials[ci];
        let mut reasons: Vec<(WarningReason, Vec<&str>)> = Vec::new();
        for p in &self.catalog.problems[ci] {
            // `check` (explain) also shows a source whose keys cannot be read: an admin asks.
            let unknown =
                p.keys.is_none() && self.catalog.config.credentials[ci].registries.is_none();
            let concerned = match images {
                None => true,
                Some(images) => self.concerns(ci, p, images) || (self.explain && unknown),
            };
            if !concerned {
                continue;
            }
            match reasons.iter_mut().find(|(r, _)| *r == p.reason) {
                Some((_, details)) => details.push(&p.message),
                None => reasons.push((p.reason, vec![&p.message])),
            }
        }
        if reasons.is_empty() {
            return;
        }
        self.reported[ci] = true;
        for (reason, details) in reasons {
            self.warnings.push(Warning {
                reason,
                message: format!(
                    "pull-secret-injector: credential {} not injected: {}; ask your cluster admin",
                    credential.name,
                    reason.tenant_text()
                ),
                detail: Some(details.join("; ")),
            });
        }
    }

    /// Whether an unusable source might have served one of the images: by the credential's
    /// `registries` when it has them, else by the keys the source holds, when they could be
    /// read. A source whose keys are unknown concerns no pod in particular.
    fn concerns(&self, ci: usize, problem: &CredentialProblem, images: &[&str]) -> bool {
        let credential = &self.catalog.config.credentials[ci];
        images.iter().any(|raw| {
            let Ok(image) = ImageRef::parse(raw) else {
                return false;
            };
            let name = image.name();
            let target = crate::registry::keyring::Location::of_image(&image, name);
            match (&credential.registries, &problem.keys) {
                (Some(patterns), _) => crate::registry::keyring::Location::parse(name)
                    .is_ok_and(|loc| patterns.iter().any(|p| p.matches(&loc))),
                (None, Some(keys)) => keys.iter().any(|k| {
                    k.matches(&target)
                        || k.is_default_registry()
                            && crate::registry::keyring::is_default_registry_match(name)
                }),
                (None, None) => false,
            }
        })
    }

    fn availability(&mut self, ci: usize, si: usize) -> Availability {
        let flat = self.catalog.source_offsets[ci] + si;
        if let Some(a) = self.availability[flat] {
            return a;
        }
        let source = &self.catalog.sources[ci][si];
        let a = match self.compute_availability(source) {
            Ok(a) => a,
            Err(warning) => {
                self.warnings.push(warning);
                Availability::Blocked
            }
        };
        self.availability[flat] = Some(a);
        a
    }

    fn compute_availability(&self, source: &PreparedSource) -> Result<Availability, Warning> {
        let ns = &self.ns.name;
        if *ns == source.source_namespace && source.copy_name == source.source_name {
            // The source itself lives here: reference it, never copy it onto itself.
            return Ok(Availability::Present);
        }
        let Some(existing) = self.view.occupant(ns, &source.copy_name) else {
            return Ok(Availability::Copy { update: false });
        };
        if !existing.managed {
            return Err(Warning {
                reason: WarningReason::NameTaken,
                message: format!(
                    "pull-secret-injector: credential {}: secret {ns}/{} exists and is not managed by pull-secret-injector; left alone, not injected",
                    source.credential, source.copy_name
                ),
                detail: None,
            });
        }
        if existing.hash == Some(source.hash.as_str()) {
            return Ok(Availability::Present);
        }
        let ours = existing.credential == Some(source.credential.as_str())
            && existing.source == Some(source.source_ref().as_str());
        if ours {
            Ok(Availability::Copy { update: true })
        } else {
            Err(Warning {
                reason: WarningReason::CopyConflict,
                message: format!(
                    "pull-secret-injector: credential {}: secret {ns}/{} is a copy made for credential {} with other content; not injected",
                    source.credential,
                    source.copy_name,
                    existing.credential.unwrap_or("(unknown)")
                ),
                detail: None,
            })
        }
    }

    fn pod(&mut self, images: &[&str], decision: &mut Decision) {
        let mut seen: Vec<&str> = Vec::with_capacity(images.len());
        for &raw in images {
            if seen.contains(&raw) {
                continue;
            }
            seen.push(raw);
            let image = match ImageRef::parse(raw) {
                Ok(i) => i,
                Err(e) => {
                    self.warnings.push(Warning {
                        reason: WarningReason::InvalidImage,
                        message: format!(
                            "pull-secret-injector: {e}; no pull secret injected for it"
                        ),
                        detail: None,
                    });
                    if self.explain {
                        decision.images.push(ImageReport {
                            image: raw.to_string(),
                            registry: None,
                            matches: Vec::new(),
                        });
                    }
                    continue;
                }
            };
            let report = self.match_image(raw, &image);
            if self.explain {
                decision.images.push(report);
            }
        }
        // Credentials in scope whose source is broken may have been meant for these images:
        // say so, unless their registries or keys rule the images out.
        for &ci in &self.catalog.troubled_credentials {
            if self.admitted(ci) {
                self.report_problems(ci, Some(images));
            }
        }
    }

    fn match_image(&mut self, raw: &str, image: &ImageRef) -> ImageReport {
        let name = image.name();
        let target = crate::registry::keyring::Location::of_image(image, name);
        // kubelet's keyring holds every secret the pod will reference; a blocked copy will not
        // be referenced, so it must not hide the Docker Hub fallback either.
        let catalog = self.catalog;
        let global: Vec<(&RegistryKey, (usize, usize))> = catalog
            .keyring
            .lookup_at(name, &target, |&(ci, si)| {
                self.admitted(ci) && self.availability(ci, si) != Availability::Blocked
            })
            .into_iter()
            .map(|(k, v)| (k, *v))
            .collect();
        let local: Vec<(&RegistryKey, usize)> = self
            .local
            .lookup_at(name, &target, |_| true)
            .into_iter()
            .map(|(k, v)| (k, *v))
            .collect();
        // The fallback is decided over the union: a direct local match suppresses a global
        // Docker Hub fallback and the other way round, as in one kubelet keyring.
        let is_fallback = |k: &RegistryKey| k.is_default_registry() && !k.matches(&target);
        let global_direct = global.iter().any(|(k, _)| !is_fallback(k));
        let local_direct = local.iter().any(|(k, _)| !is_fallback(k));
        let keep_global = |k: &RegistryKey| !local_direct || !is_fallback(k);
        let keep_local = |k: &RegistryKey| !global_direct || !is_fallback(k);

        let mut matches: Vec<(&RegistryKey, MatchReport)> = Vec::new();
        for (key, (ci, si)) in global {
            if !keep_global(key) {
                continue;
            }
            if !self.wanted.contains(&(ci, si)) {
                self.wanted.push((ci, si));
            }
            if !self.explain {
                continue;
            }
            let source = &catalog.sources[ci][si];
            matches.push((
                key,
                MatchReport {
                    credential: source.credential.clone(),
                    secret: source.copy_name.clone(),
                    pattern: key.to_string(),
                },
            ));
        }
        for (key, li) in local {
            if !keep_local(key) {
                continue;
            }
            if !self.wanted_local.contains(&li) {
                self.wanted_local.push(li);
            }
            if !self.explain {
                continue;
            }
            let secret = &self.local_secrets[li];
            matches.push((
                key,
                MatchReport {
                    credential: catalog.config.credentials[secret.credential].name.clone(),
                    secret: secret.name.clone(),
                    pattern: key.to_string(),
                },
            ));
        }
        if !self.explain {
            return ImageReport {
                image: String::new(),
                registry: None,
                matches: Vec::new(),
            };
        }
        matches.sort_by(|a, b| b.0.normalized().as_bytes().cmp(a.0.normalized().as_bytes()));
        ImageReport {
            image: raw.to_string(),
            registry: Some(image.domain().to_string()),
            matches: matches.into_iter().map(|(_, m)| m).collect(),
        }
    }

    fn service_account(&mut self) {
        for ci in 0..self.catalog.config.credentials.len() {
            if !self.admitted(ci) {
                continue;
            }
            self.report_problems(ci, None);
            for si in 0..self.catalog.sources[ci].len() {
                if self.availability(ci, si) != Availability::Blocked {
                    self.wanted.push((ci, si));
                }
            }
        }
        self.wanted_local = (0..self.local_secrets.len()).collect();
    }

    /// Orders the wanted secrets by config order, drops names already present, and builds the
    /// copy requests.
    fn finish(mut self, subject: &Subject<'_>, decision: &mut Decision) {
        // Each injected name with the first credential that wanted it.
        let mut names: Vec<(String, usize)> = Vec::new();
        // Few entries per decision: a vector beats a map and borrows instead of cloning.
        let mut copy_owner: Vec<&Arc<PreparedSource>> = Vec::new();
        let mut wanted = std::mem::take(&mut self.wanted);
        wanted.sort_unstable();
        let mut wanted = wanted.into_iter().peekable();
        let local_secrets = std::mem::take(&mut self.local_secrets);
        let mut locals: Vec<&LocalSecret> = self
            .wanted_local
            .iter()
            .filter_map(|&li| local_secrets.get(li))
            .collect();
        locals.sort_by(|a, b| (a.credential, &a.name).cmp(&(b.credential, &b.name)));
        let mut locals = locals.into_iter().peekable();
        // Config order: credentials in order, each with its copied then its local secrets.
        while wanted.peek().is_some() || locals.peek().is_some() {
            let ci = match (wanted.peek(), locals.peek()) {
                (Some(&(a, _)), Some(l)) => a.min(l.credential),
                (Some(&(a, _)), None) => a,
                (None, Some(l)) => l.credential,
                (None, None) => break,
            };
            while let Some((_, si)) = wanted.next_if(|(c, _)| *c == ci) {
                let source = &self.catalog.sources[ci][si];
                if let Some(owner) = copy_owner.iter().find(|o| o.copy_name == source.copy_name) {
                    if owner.hash != source.hash {
                        self.warnings.push(Warning {
                            reason: WarningReason::CopyConflict,
                            message: format!(
                                "pull-secret-injector: credentials {} and {} both want a secret named {} with different content; only {} injected",
                                owner.credential, source.credential, source.copy_name, owner.credential
                            ),
                            detail: None,
                        });
                    }
                    continue;
                }
                copy_owner.push(source);
                if let Availability::Copy { update } = self.availability(ci, si)
                    && !self.dry_run
                {
                    decision.copies.push(CopyRequest {
                        namespace: self.ns.name.clone(),
                        source: source.clone(),
                        update,
                    });
                }
                if !names.iter().any(|(n, _)| *n == source.copy_name) {
                    names.push((source.copy_name.clone(), ci));
                }
            }
            while let Some(local) = locals.next_if(|l| l.credential == ci) {
                if !names.iter().any(|(n, _)| *n == local.name) {
                    names.push((local.name.clone(), ci));
                }
            }
        }
        let credentials = &self.catalog.config.credentials;
        for (name, ci) in names {
            if subject.existing.contains(&name.as_str()) {
                continue;
            }
            let credential = &credentials[ci].name;
            if !decision.credentials.contains(credential) {
                decision.credentials.push(credential.clone());
            }
            decision.add.push(name);
        }
        decision.warnings.append(&mut self.warnings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marks::*;
    use crate::view::ClusterState;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    /// A fake pull secret holding one entry per key.
    fn pull_secret(ns: &str, name: &str, keys: &[&str], labels: &[(&str, &str)]) -> Secret {
        let auths: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let auth = STANDARD.encode(format!("user{i}:fake-password-{i}"));
                (k.to_string(), serde_json::json!({ "auth": auth }))
            })
            .collect();
        let data = serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap();
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            type_: Some(DOCKER_CONFIG_JSON_TYPE.into()),
            data: Some(BTreeMap::from([(
                DOCKER_CONFIG_JSON_KEY.to_string(),
                ByteString(data),
            )])),
            ..Default::default()
        }
    }

    const CONFIG: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    registries: ["icr.io", "*.icr.io"]
    namespaces: {include: ["*"], exclude: ["openshift-*"]}
  - name: hub
    secret: registry-creds/dockerhub
    namespaces: {include: ["team-*", "default"]}
  - name: quay
    secret: registry-creds/quay
    namespaces: {include: ["team-*"], selector: {matchLabels: {quay: "yes"}}}
"#;

    fn cluster() -> ClusterState {
        let mut state = ClusterState::new();
        state.insert_secret(pull_secret(
            "default",
            "all-icr-io",
            &["icr.io", "us.icr.io", "de.icr.io", "quay.io"],
            &[],
        ));
        state.insert_secret(pull_secret(
            "registry-creds",
            "dockerhub",
            &["https://index.docker.io/v1/"],
            &[],
        ));
        state.insert_secret(pull_secret("registry-creds", "quay", &["quay.io"], &[]));
        state
    }

    fn catalog(config: &str, state: &ClusterState) -> Catalog {
        Catalog::build(
            Config::from_yaml(config).unwrap(),
            state,
            Some("pull-secret-injector"),
        )
    }

    fn pod<'a>(images: &[&'a str], existing: &[&'a str]) -> Subject<'a> {
        Subject {
            kind: SubjectKind::Pod,
            name: None,
            images: images.to_vec(),
            existing: existing.to_vec(),
            labels: None,
            annotations: None,
        }
    }

    fn sa(name: &str) -> Subject<'_> {
        Subject {
            kind: SubjectKind::ServiceAccount,
            name: Some(name),
            images: Vec::new(),
            existing: Vec::new(),
            labels: None,
            annotations: None,
        }
    }

    fn ns(name: &str, labels: &[(&str, &str)]) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn reasons(d: &Decision) -> Vec<WarningReason> {
        d.warnings.iter().map(|w| w.reason).collect()
    }

    #[test]
    fn pod_gets_exactly_the_credentials_kubelet_would_use() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        let d = c.explain(
            &pod(
                &[
                    "us.icr.io/team/app:1",
                    "nginx",
                    "quay.io/org/x",
                    "gcr.io/p/x",
                ],
                &[],
            ),
            &ns("team-a", &[]),
            &state,
            false,
        );
        assert_eq!(d.add, ["all-icr-io", "dockerhub"]);
        assert_eq!(d.credentials, ["icr", "hub"]);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        // quay.io is in all-icr-io's secret but icr's registries do not select it.
        let quay = d
            .images
            .iter()
            .find(|i| i.image == "quay.io/org/x")
            .unwrap();
        assert!(quay.matches.is_empty());
        let hub = d.images.iter().find(|i| i.image == "nginx").unwrap();
        assert_eq!(hub.registry.as_deref(), Some("docker.io"));
        assert_eq!(
            hub.matches,
            [MatchReport {
                credential: "hub".into(),
                secret: "dockerhub".into(),
                pattern: "https://index.docker.io/v1/".into()
            }]
        );
        let names: Vec<&str> = d.copies.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["all-icr-io", "dockerhub"]);
        assert!(
            d.copies
                .iter()
                .all(|c| c.namespace == "team-a" && !c.update)
        );
    }

    #[test]
    fn copies_hold_only_the_selected_registries() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        let d = c.decide(
            &pod(&["us.icr.io/a/b"], &[]),
            &ns("team-a", &[]),
            &state,
            false,
        );
        let copy = d.copies[0].source.copy_secret("team-a");
        let data = &copy.data.as_ref().unwrap()[DOCKER_CONFIG_JSON_KEY].0;
        let parsed = DockerConfig::from_dockerconfigjson(data).unwrap();
        let keys: Vec<&str> = parsed.keys().collect();
        assert_eq!(keys, ["de.icr.io", "icr.io", "us.icr.io"]);
        let annotations = copy.metadata.annotations.unwrap();
        assert_eq!(annotations[CREDENTIAL_ANNOTATION], "icr");
        assert_eq!(annotations[SOURCE_ANNOTATION], "default/all-icr-io");
        assert_eq!(annotations[CONTENT_HASH_ANNOTATION], parsed.content_hash());
        assert_eq!(
            copy.metadata.labels.unwrap()[MANAGED_BY_LABEL],
            MANAGED_BY_VALUE
        );
        assert_eq!(copy.type_.as_deref(), Some(DOCKER_CONFIG_JSON_TYPE));
    }

    #[test]
    fn names_follow_config_order_and_existing_entries_are_kept() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        let team = ns("team-a", &[("quay", "yes")]);
        let d = c.decide(
            &pod(
                &["quay.io/org/x", "busybox", "icr.io/ns/y"],
                &["dockerhub", "mine"],
            ),
            &team,
            &state,
            false,
        );
        // dockerhub is already there: not added again, but its copy is still ensured.
        assert_eq!(d.add, ["all-icr-io", "quay"]);
        assert!(d.copies.iter().any(|c| c.name() == "dockerhub"));
    }

    #[test]
    fn all_container_lists_count() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        // The admission layer flattens init, regular and ephemeral containers into images;
        // duplicates are looked up once.
        let d = c.explain(
            &pod(&["icr.io/a/init", "nginx", "nginx", "icr.io/a/debug"], &[]),
            &ns("team-a", &[]),
            &state,
            false,
        );
        assert_eq!(d.add, ["all-icr-io", "dockerhub"]);
        assert_eq!(d.images.len(), 3);
    }

    #[test]
    fn the_source_namespace_references_the_source_itself() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        let d = c.decide(
            &pod(&["us.icr.io/a/b"], &[]),
            &ns("default", &[]),
            &state,
            false,
        );
        assert_eq!(d.add, ["all-icr-io"]);
        assert!(d.copies.is_empty());
    }

    #[test]
    fn namespaces_never_touched() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        let subject = pod(&["us.icr.io/a/b"], &[]);
        for name in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "pull-secret-injector",
        ] {
            let d = c.decide(&subject, &ns(name, &[]), &state, false);
            assert!(d.add.is_empty() && d.copies.is_empty(), "{name}");
            assert!(d.skipped.is_some(), "{name}");
        }
        let labelled = ns("team-a", &[(OPT_OUT_KEY, "false")]);
        assert!(c.decide(&subject, &labelled, &state, false).add.is_empty());
        let mut annotated = ns("team-a", &[]);
        annotated
            .annotations
            .insert(OPT_OUT_KEY.into(), "false".into());
        assert!(c.decide(&subject, &annotated, &state, false).add.is_empty());
        // Scope: icr excludes openshift-*.
        assert!(
            c.decide(&subject, &ns("openshift-x", &[]), &state, false)
                .add
                .is_empty()
        );
    }

    #[test]
    fn objects_can_opt_out() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        let labels = BTreeMap::from([(OPT_OUT_KEY.to_string(), "false".to_string())]);
        let mut subject = pod(&["us.icr.io/a/b"], &[]);
        subject.labels = Some(&labels);
        assert!(
            c.decide(&subject, &ns("team-a", &[]), &state, false)
                .add
                .is_empty()
        );
        let mut subject = pod(&["us.icr.io/a/b"], &[]);
        subject.annotations = Some(&labels);
        assert!(
            c.decide(&subject, &ns("team-a", &[]), &state, false)
                .add
                .is_empty()
        );
    }

    #[test]
    fn terminating_namespaces_are_skipped_with_a_warning() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        let mut gone = ns("team-a", &[]);
        gone.terminating = true;
        let d = c.decide(&pod(&["us.icr.io/a/b"], &[]), &gone, &state, false);
        assert!(d.add.is_empty() && d.copies.is_empty());
        assert_eq!(reasons(&d), [WarningReason::NamespaceTerminating]);
    }

    #[test]
    fn dry_run_returns_the_same_names_and_no_copies() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        let subject = pod(&["us.icr.io/a/b", "nginx"], &[]);
        let wet = c.decide(&subject, &ns("team-a", &[]), &state, false);
        let dry = c.decide(&subject, &ns("team-a", &[]), &state, true);
        assert_eq!(wet.add, dry.add);
        assert_eq!(wet.copies.len(), 2);
        assert!(dry.copies.is_empty());
    }

    #[test]
    fn foreign_secrets_are_never_overwritten() {
        let mut state = cluster();
        state.insert_secret(pull_secret("team-a", "all-icr-io", &["us.icr.io"], &[]));
        let c = catalog(CONFIG, &state);
        let d = c.decide(
            &pod(&["us.icr.io/a/b"], &[]),
            &ns("team-a", &[]),
            &state,
            false,
        );
        assert!(d.add.is_empty());
        assert!(d.copies.is_empty());
        assert_eq!(reasons(&d), [WarningReason::NameTaken]);
        assert!(
            d.warnings[0].message.contains("team-a/all-icr-io"),
            "{}",
            d.warnings[0]
        );
    }

    #[test]
    fn managed_copies_are_reused_or_refreshed() {
        let mut state = cluster();
        let c = catalog(CONFIG, &state);
        let subject = pod(&["us.icr.io/a/b"], &[]);
        let first = c.decide(&subject, &ns("team-a", &[]), &state, false);
        let mut copy = first.copies[0].source.copy_secret("team-a");
        state.insert_secret(copy.clone());
        let again = c.decide(&subject, &ns("team-a", &[]), &state, false);
        assert_eq!(again.add, ["all-icr-io"]);
        assert!(
            again.copies.is_empty(),
            "an up-to-date copy is not rewritten"
        );

        // What a copy holds counts, not what its annotation claims: a claim alone changes
        // nothing, replaced data makes it stale even with the claim intact.
        copy.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(CONTENT_HASH_ANNOTATION.into(), "sha256:old".into());
        state.insert_secret(copy.clone());
        let claimed = c.decide(&subject, &ns("team-a", &[]), &state, false);
        assert!(claimed.copies.is_empty());
        let mut tampered = first.copies[0].source.copy_secret("team-a");
        tampered.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_JSON_KEY.to_string(),
            ByteString(br#"{"auths":{"us.icr.io":{"auth":"dTpw"}}}"#.to_vec()),
        )]));
        state.insert_secret(tampered);
        let stale = c.decide(&subject, &ns("team-a", &[]), &state, false);
        assert_eq!(stale.add, ["all-icr-io"]);
        assert!(stale.copies[0].update);

        // Another credential's copy under the name: the same content is as good as ours,
        // other content is a conflict.
        copy.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(CREDENTIAL_ANNOTATION.into(), "someone-else".into());
        state.insert_secret(copy.clone());
        let same = c.decide(&subject, &ns("team-a", &[]), &state, false);
        assert_eq!(same.add, ["all-icr-io"]);
        assert!(same.copies.is_empty());
        copy.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_JSON_KEY.to_string(),
            ByteString(br#"{"auths":{"us.icr.io":{"auth":"dTpw"}}}"#.to_vec()),
        )]));
        state.insert_secret(copy);
        let conflict = c.decide(&subject, &ns("team-a", &[]), &state, false);
        assert!(conflict.add.is_empty());
        assert_eq!(reasons(&conflict), [WarningReason::CopyConflict]);
    }

    #[test]
    fn missing_and_malformed_sources_are_reported_never_injected() {
        let mut state = cluster();
        let mut broken = pull_secret("registry-creds", "dockerhub", &[], &[]);
        broken.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_JSON_KEY.to_string(),
            ByteString(br#"{"auths":{"https://index.docker.io/v1/":{"auth":5}}}"#.to_vec()),
        )]));
        state.insert_secret(broken);
        let config = format!(
            "{CONFIG}  - name: gone\n    secret: default/nope\n    registries: [\"gcr.io\"]\n    namespaces: {{include: [\"*\"]}}\n"
        );
        let c = catalog(&config, &state);
        assert_eq!(c.problems().len(), 2, "{:?}", c.problems());
        let d = c.decide(
            &pod(&["nginx", "gcr.io/p/a"], &[]),
            &ns("team-a", &[]),
            &state,
            false,
        );
        assert!(d.add.is_empty(), "{:?}", d.add);
        assert_eq!(
            reasons(&d),
            [WarningReason::SourceInvalid, WarningReason::SourceMissing]
        );
        // Tenants hear which credential and what kind of problem, nothing of where the admin
        // keeps it; the whole story is in the catalog's problems (logs, Events).
        assert_eq!(
            d.warnings[1].message,
            "pull-secret-injector: credential gone not injected: its source secret does not exist; ask your cluster admin"
        );
        for w in &d.warnings {
            assert!(
                !w.message.contains("registry-creds") && !w.message.contains("default/nope"),
                "{w}"
            );
            assert!(!w.message.contains("index.docker.io"), "{w}");
        }
        assert!(c.problems().iter().any(|p| p.contains("default/nope")));
        // Neither broken credential serves us.icr.io (gone's registries, dockerhub's keys):
        // a pod pulling only from there hears of neither.
        let d = c.decide(
            &pod(&["us.icr.io/a/b"], &[]),
            &ns("team-a", &[]),
            &state,
            false,
        );
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        // A ServiceAccount gets every credential in scope: it hears of both.
        let d = c.decide(&sa("default"), &ns("team-a", &[]), &state, false);
        assert_eq!(
            reasons(&d),
            [WarningReason::SourceInvalid, WarningReason::SourceMissing]
        );
    }

    #[test]
    fn a_source_whose_keys_cannot_be_read_concerns_no_pod() {
        let mut state = cluster();
        let mut broken = pull_secret("registry-creds", "dockerhub", &[], &[]);
        broken.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_JSON_KEY.to_string(),
            ByteString(b"not json".to_vec()),
        )]));
        state.insert_secret(broken);
        let c = catalog(CONFIG, &state);
        let d = c.decide(&pod(&["nginx"], &[]), &ns("team-a", &[]), &state, false);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        let d = c.decide(&sa("default"), &ns("team-a", &[]), &state, false);
        assert_eq!(reasons(&d), [WarningReason::SourceInvalid]);
    }

    #[test]
    fn invalid_images_are_reported_and_the_rest_injected() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        let d = c.decide(
            &pod(&["Nginx", "us.icr.io/a/b"], &[]),
            &ns("team-a", &[]),
            &state,
            false,
        );
        assert_eq!(d.add, ["all-icr-io"]);
        assert_eq!(reasons(&d), [WarningReason::InvalidImage]);
        assert!(d.warnings[0].message.contains("\"Nginx\""));
    }

    #[test]
    fn service_accounts_receive_every_credential_in_scope() {
        let state = cluster();
        let c = catalog(CONFIG, &state);
        let d = c.decide(
            &sa("default"),
            &ns("team-a", &[("quay", "yes")]),
            &state,
            false,
        );
        assert_eq!(d.add, ["all-icr-io", "dockerhub", "quay"]);
        assert_eq!(d.copies.len(), 3);
        let d = c.decide(&sa("default"), &ns("team-b", &[]), &state, false);
        assert_eq!(d.add, ["all-icr-io", "dockerhub"]);
        let d = c.decide(&sa("builder"), &ns("team-a", &[]), &state, false);
        assert!(d.add.is_empty() && d.skipped.is_some());
    }

    #[test]
    fn pods_false_turns_pod_injection_off() {
        let state = cluster();
        let c = catalog(&format!("{CONFIG}pods: false\n"), &state);
        let d = c.decide(
            &pod(&["us.icr.io/a/b"], &[]),
            &ns("team-a", &[]),
            &state,
            false,
        );
        assert!(d.add.is_empty() && d.skipped.is_some());
        let d = c.decide(&sa("default"), &ns("team-a", &[]), &state, false);
        assert_eq!(d.add, ["all-icr-io", "dockerhub"]);
    }

    #[test]
    fn docker_hub_fallback_follows_the_pods_whole_keyring() {
        let mut state = cluster();
        state.insert_secret(pull_secret(
            "registry-creds",
            "hub-org",
            &["docker.io/myorg"],
            &[],
        ));
        let config = format!(
            "{CONFIG}  - name: hub-org\n    secret: registry-creds/hub-org\n    namespaces: {{include: [\"team-*\"]}}\n"
        );
        let c = catalog(&config, &state);
        let team = ns("team-a", &[]);
        // A direct docker.io/myorg match means kubelet never falls back to index.docker.io.
        let d = c.decide(&pod(&["myorg/app"], &[]), &team, &state, false);
        assert_eq!(d.add, ["hub-org"]);
        // Other Hub images still use the fallback.
        let d = c.decide(&pod(&["otherorg/app"], &[]), &team, &state, false);
        assert_eq!(d.add, ["dockerhub"]);
        // registry-1.docker.io is never a Hub match.
        let d = c.decide(
            &pod(&["registry-1.docker.io/myorg/app"], &[]),
            &team,
            &state,
            false,
        );
        assert!(d.add.is_empty());

        // When the direct match is blocked (foreign secret), it will not be referenced, so
        // kubelet would fall back: the fallback credential is injected.
        state.insert_secret(pull_secret("team-a", "hub-org", &["docker.io"], &[]));
        let c = catalog(&config, &state);
        let d = c.decide(&pod(&["myorg/app"], &[]), &team, &state, false);
        assert_eq!(d.add, ["dockerhub"]);
        assert_eq!(reasons(&d), [WarningReason::NameTaken]);
    }

    #[test]
    fn keys_kubelet_ignores_are_reported_and_leave_the_fallback_to_apply() {
        let mut state = ClusterState::new();
        // kubelet 1.36 (Go 1.26) drops both mirror keys: a `[` inside a host is refused.
        state.insert_secret(pull_secret(
            "registry-creds",
            "mirror",
            &["docker.i[n-z]", "user:fake-password-9@quay.i[o]"],
            &[],
        ));
        state.insert_secret(pull_secret(
            "registry-creds",
            "dockerhub",
            &["https://index.docker.io/v1/"],
            &[],
        ));
        let config = r#"
credentials:
  - name: mirror
    secret: registry-creds/mirror
    namespaces: {include: ["team-*"]}
  - name: hub
    secret: registry-creds/dockerhub
    namespaces: {include: ["team-*"]}
"#;
        let c = catalog(config, &state);
        // No key matches docker.io/library/nginx, so kubelet falls back to the Hub key.
        let d = c.decide(&pod(&["nginx"], &[]), &ns("team-a", &[]), &state, false);
        assert_eq!(d.add, ["dockerhub"]);
        let problems = c.problems().join("\n");
        assert!(
            problems.contains(
                "credential mirror: secret registry-creds/mirror: key skipped, as kubelet never uses it: registry key \"docker.i[n-z]\" is not a valid URL: invalid IP-literal"
            ),
            "{problems}"
        );
        // The key is named, its userinfo is not.
        assert!(
            problems.contains("registry key \"***@quay.i[o]\""),
            "{problems}"
        );
        assert!(!problems.contains("fake-password"), "{problems}");
    }

    #[test]
    fn local_secrets_are_referenced_not_copied() {
        let mut state = cluster();
        let local = [("pull-secret-injector/local", "true")];
        state.insert_secret(pull_secret(
            "runai-p1",
            "p1-hub",
            &["https://index.docker.io/v1/"],
            &local,
        ));
        state.insert_secret(pull_secret("runai-p1", "p1-nvcr", &["nvcr.io"], &local));
        let mut bad = pull_secret("runai-p1", "p1-bad", &["quay.io"], &local);
        bad.data = Some(BTreeMap::from([(
            DOCKER_CONFIG_JSON_KEY.to_string(),
            ByteString(b"not json".to_vec()),
        )]));
        state.insert_secret(bad);
        state.insert_secret(pull_secret("runai-p1", "unlabelled", &["quay.io"], &[]));
        let config = r#"
credentials:
  - name: project-local
    localSecretSelector: {matchLabels: {pull-secret-injector/local: "true"}}
    namespaces: {include: ["runai-*"]}
"#;
        let c = catalog(config, &state);
        let p1 = ns("runai-p1", &[]);
        let d = c.decide(
            &pod(
                &["python:3.11", "nvcr.io/nvidia/pytorch:24.01", "quay.io/x/y"],
                &[],
            ),
            &p1,
            &state,
            false,
        );
        assert_eq!(d.add, ["p1-hub", "p1-nvcr"]);
        assert!(d.copies.is_empty());
        assert_eq!(reasons(&d), [WarningReason::LocalSecretInvalid]);
        assert!(!d.warnings[0].message.contains("not json"));
        let d = c.decide(&sa("default"), &p1, &state, false);
        assert_eq!(d.add, ["p1-hub", "p1-nvcr"]);
        let d = c.decide(&sa("default"), &ns("team-a", &[]), &state, false);
        assert!(d.add.is_empty());
    }

    #[test]
    fn secret_selector_copies_every_selected_secret_in_name_order() {
        let mut state = cluster();
        let wide = [("runai/cluster-wide", "true")];
        state.insert_secret(pull_secret(
            "runai",
            "z-hub",
            &["https://index.docker.io/v1/"],
            &wide,
        ));
        state.insert_secret(pull_secret("runai", "a-nvcr", &["nvcr.io"], &wide));
        state.insert_secret(pull_secret("runai", "other", &["nvcr.io"], &[]));
        let config = r#"
credentials:
  - name: runai-cluster-wide
    secretSelector: {namespace: runai, matchLabels: {runai/cluster-wide: "true"}}
    namespaces: {include: ["runai-*"]}
"#;
        let c = catalog(config, &state);
        let d = c.decide(&sa("default"), &ns("runai-p1", &[]), &state, false);
        assert_eq!(d.add, ["a-nvcr", "z-hub"]);
        let d = c.decide(
            &pod(&["nvcr.io/nvidia/x"], &[]),
            &ns("runai-p1", &[]),
            &state,
            false,
        );
        assert_eq!(d.add, ["a-nvcr"]);
    }

    #[test]
    fn warnings_never_carry_secret_material() {
        let mut state = cluster();
        state.insert_secret(pull_secret("team-a", "all-icr-io", &["us.icr.io"], &[]));
        let c = catalog(CONFIG, &state);
        let d = c.decide(
            &pod(&["us.icr.io/a/b", "nginx"], &[]),
            &ns("team-a", &[]),
            &state,
            false,
        );
        let text = format!("{:?} {:?}", d.warnings, d.copies);
        assert!(!text.contains("fake-password"), "{text}");
        assert!(
            !text.contains(&STANDARD.encode("user0:fake-password-0")),
            "{text}"
        );
    }
}
