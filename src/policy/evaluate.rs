//! The decision for one object: which of the catalog's sources and the namespace's local
//! secrets kubelet would use for its images (or, for a ServiceAccount, every credential in
//! scope), whether each is usable in the namespace, and the names and copies that follow.

use std::sync::Arc;

use super::catalog::{Catalog, CredentialProblem, labels_of, opted_out};
use super::types::{
    CopyRequest, Decision, ImageReport, MatchReport, PreparedSource, Subject, SubjectKind, Warning,
    WarningReason,
};
use crate::config::{Credential, Source, VerifyMode};
use crate::marks::OPT_OUT_KEY;
use crate::registry::dockerconfig::DockerConfig;
use crate::registry::image::ImageRef;
use crate::registry::keyring::Location;
use crate::registry::keyring::{Keyring, RegistryKey};
use crate::view::health::utc;
use crate::view::{ClusterView, NamespaceInfo, ProbeState};

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
    /// Registries reached through glob keys, as (credential, registry).
    glob_registries: Vec<(String, String)>,
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
            glob_registries: Vec::new(),
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
                    "pull-secret-injector: credential {}: {}, not injected",
                    source.credential,
                    super::explain::name_taken(&format!("{ns}/{}", source.copy_name))
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
                    "pull-secret-injector: credential {}: {}; not injected",
                    source.credential,
                    super::explain::copy_conflict(
                        &format!("{ns}/{}", source.copy_name),
                        existing.credential.unwrap_or("(unknown)")
                    )
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
            .lookup_at(name, &target, |key, &(ci, si)| {
                self.admitted(ci)
                    && self.availability(ci, si) != Availability::Blocked
                    && !self.withheld_at(ci, key, &target)
            })
            .into_iter()
            .map(|(k, v)| (k, *v))
            .collect();
        let local: Vec<(&RegistryKey, usize)> = self
            .local
            .lookup_at(name, &target, |_, _| true)
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
        let mut used: Vec<(usize, &RegistryKey)> = Vec::new();
        for (key, (ci, si)) in global {
            if !keep_global(key) {
                continue;
            }
            used.push((ci, key));
            if key.is_glob() {
                let entry = (
                    catalog.config.credentials[ci].name.clone(),
                    registry_at(key, &target),
                );
                if !self.glob_registries.contains(&entry) {
                    self.glob_registries.push(entry);
                }
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
        for (ci, key) in used {
            note_rejected(
                &catalog.config.credentials[ci],
                self.view,
                &mut self.warnings,
                key,
                &target,
            );
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

    /// Whether `skip` mode withholds credential `ci` at the registry `key` names for this
    /// image (rejected on two probes in a row); says so once per registry.
    fn withheld_at(&mut self, ci: usize, key: &RegistryKey, target: &Location<'_>) -> bool {
        let credential = &self.catalog.config.credentials[ci];
        if credential.verify.mode != VerifyMode::Skip
            || !self.view.rejected_somewhere(&credential.name)
        {
            return false;
        }
        let registry = registry_at(key, target);
        let Some(health) = self.view.registry_health(&credential.name, &registry) else {
            return false;
        };
        if !health.withheld() {
            return false;
        }
        let message = format!(
            "pull-secret-injector: credential {} not injected for {registry}: the registry has rejected it since {}; ask your cluster admin",
            credential.name,
            utc(health.since)
        );
        self.warn_once(WarningReason::CredentialWithheld, message);
        true
    }

    /// Whether `skip` mode withholds credential `ci` from a ServiceAccount: every registry it
    /// was probed at rejects it.
    fn withheld_everywhere(&mut self, ci: usize) -> bool {
        let credential = &self.catalog.config.credentials[ci];
        if credential.verify.mode != VerifyMode::Skip
            || !self.view.rejected_somewhere(&credential.name)
        {
            return false;
        }
        let known = self.view.credential_health(&credential.name);
        if known.is_empty() || !known.iter().all(|(_, h)| h.withheld()) {
            return false;
        }
        let registries: Vec<&str> = known.iter().map(|(r, _)| *r).collect();
        let message = format!(
            "pull-secret-injector: credential {} not injected: {} rejected it on the last probes; ask your cluster admin",
            credential.name,
            registries.join(", ")
        );
        self.warn_once(WarningReason::CredentialWithheld, message);
        true
    }

    fn warn_once(&mut self, reason: WarningReason, message: String) {
        push_once(&mut self.warnings, reason, message);
    }

    fn service_account(&mut self) {
        for ci in 0..self.catalog.config.credentials.len() {
            if !self.admitted(ci) {
                continue;
            }
            self.report_problems(ci, None);
            if self.withheld_everywhere(ci) {
                continue;
            }
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
        decision.glob_registries = std::mem::take(&mut self.glob_registries);
    }
}

/// The registry a credential is verified at for this image: the key's own, or, for a glob key,
/// the image's host.
fn registry_at(key: &RegistryKey, target: &Location<'_>) -> String {
    key.registry().unwrap_or_else(|| {
        if target.port().is_empty() {
            target.host().to_string()
        } else {
            format!("{}:{}", target.host(), target.port())
        }
    })
}

/// In `warn` mode, says once per registry that the credential is rejected there.
fn note_rejected(
    credential: &Credential,
    view: &dyn ClusterView,
    warnings: &mut Vec<Warning>,
    key: &RegistryKey,
    target: &Location<'_>,
) {
    if credential.verify.mode != VerifyMode::Warn || !view.rejected_somewhere(&credential.name) {
        return;
    }
    let registry = registry_at(key, target);
    let Some(health) = view.registry_health(&credential.name, &registry) else {
        return;
    };
    if health.state != ProbeState::Rejected {
        return;
    }
    let message = format!(
        "pull-secret-injector: credential {} is rejected by {registry} since {}; pulls with it fail, even of public images; ask your cluster admin",
        credential.name,
        utc(health.since)
    );
    push_once(warnings, WarningReason::CredentialRejected, message);
}

fn push_once(warnings: &mut Vec<Warning>, reason: WarningReason, message: String) {
    if !warnings.iter().any(|w| w.message == message) {
        warnings.push(Warning {
            reason,
            message,
            detail: None,
        });
    }
}
