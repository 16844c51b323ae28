//! `check`: what the webhook would inject for these images, or for the pods these manifests
//! make, in a namespace, and why each credential was or was not used.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use super::style::Palette;
use super::verify::{self, Verified};
use super::{CliError, Format, Output, render};
use crate::config::{Config, check_dns_label};
use crate::inputs::{InputError, collect_files, parse_labels};
use crate::policy::{
    Catalog, Consideration, Decision, ImageReport, Outcome, Subject, SubjectKind, WhyNot,
};
use crate::registry::image::ImageRef;
use crate::view::{ClusterState, ClusterView, NamespaceInfo};
use crate::workload::{self, Workload};

/// The namespace a manifest without one is created in, as kubectl does without a context
/// namespace.
const DEFAULT_NAMESPACE: &str = "default";

/// Inputs of `check`, besides the config and the cluster.
#[derive(Debug, Clone, Default)]
pub struct CheckArgs {
    /// The namespace (`-n`): where the images' pod is created, or where manifests without one
    /// are.
    pub namespace: Option<String>,
    /// Extra or overriding namespace labels.
    pub namespace_labels: Vec<String>,
    /// The injector's own namespace.
    pub own_namespace: String,
    /// How to print.
    pub format: Format,
    /// Image references, for one pod.
    pub images: Vec<String>,
    /// Manifests (`-f`): files, directories, or `-` for standard input.
    pub files: Vec<PathBuf>,
    /// Probe the credentials reported, live.
    pub verify: bool,
    /// Colour for the text answer.
    pub palette: Palette,
}

/// One object checked: what it gets, and why.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<String>,
    namespace: String,
    image_pull_secrets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    existing: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
    images: Vec<ImageJson>,
    credentials: Vec<CredentialJson>,
    copies: Vec<String>,
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<VerificationJson>,
    #[serde(skip)]
    notes: Vec<String>,
    /// The warnings as text prints them: the message, then what an admin should know.
    #[serde(skip)]
    warning_lines: Vec<(String, Option<String>)>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageJson {
    image: String,
    registry: Option<String>,
    matches: Vec<MatchJson>,
    /// For an image nothing matched: why each credential was not used for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_injected: Vec<CredentialJson>,
}

#[derive(Serialize)]
struct MatchJson {
    credential: String,
    secret: String,
    pattern: String,
}

#[derive(Serialize)]
struct CredentialJson {
    #[serde(flatten)]
    consideration: Consideration,
    message: String,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
struct VerificationJson {
    probes: Vec<Verified>,
    not_probed: Vec<String>,
}

/// One pod to decide for.
struct Case {
    object: Option<String>,
    namespace: String,
    images: Vec<String>,
    existing: Vec<String>,
    labels: std::collections::BTreeMap<String, String>,
    annotations: std::collections::BTreeMap<String, String>,
    notes: Vec<String>,
}

/// `check` on a config and a cluster (read from files, or from a live cluster).
pub fn check(
    config: Config,
    mut state: ClusterState,
    args: &CheckArgs,
) -> Result<Output, CliError> {
    if let Some(ns) = &args.namespace {
        // kube-apiserver's own wording (apimachinery's DNS-1123 label message), so the
        // answer reads as the one `kubectl create namespace` would give.
        check_dns_label(ns).map_err(|_| {
            CliError::Usage(format!(
                "-n {ns:?}: a namespace name must consist of lower case alphanumeric characters or '-', start and end with an alphanumeric character, and be at most 63 characters (e.g. 'my-name')"
            ))
        })?;
    }
    let labels = parse_labels(&args.namespace_labels)?;
    let cases = cases(args, &mut state)?;
    let catalog = Catalog::build(config, &state, Some(&args.own_namespace));
    let mut verification = None;
    if args.verify {
        let mut reported = BTreeSet::new();
        let mut glob_seen = BTreeSet::new();
        for case in &cases {
            let (ns, _) = namespace(&state, &case.namespace, &labels);
            let decision = catalog.explain(&subject(case), &ns, &state, false);
            reported.extend(
                decision
                    .images
                    .iter()
                    .flat_map(|i| i.matches.iter().map(|m| m.credential.clone())),
            );
            glob_seen.extend(decision.glob_registries.iter().cloned());
        }
        let (probes, health) =
            verify::probe(&catalog, Some(&reported), &glob_seen).map_err(CliError::Verify)?;
        let not_probed = verify::not_probed(&catalog, Some(&reported), &probes);
        state.set_health(health);
        verification = Some(VerificationJson { probes, not_probed });
    }
    let reports: Vec<Report> = cases
        .iter()
        .map(|case| {
            let (ns, known) = namespace(&state, &case.namespace, &labels);
            report(&catalog, &state, case, &ns, known, verification.clone())
        })
        .collect();
    let stdout = match args.format {
        Format::Text => reports
            .iter()
            .map(|r| text(r, args.files.is_empty(), args.palette))
            .collect::<Vec<_>>()
            .join("\n"),
        format if args.files.is_empty() => render(format, &reports[0]),
        format => render(format, &reports),
    };
    Ok(Output {
        stdout,
        stderr: labels_unknown_hints(&reports),
        code: 0,
    })
}

/// One warning per namespace whose labels a credential's `namespaces.selector` needs but no
/// manifest or flag gave: the report says "not injected" for it, which reads as a verdict
/// about the cluster when it is only a gap in what `check` was shown.
fn labels_unknown_hints(reports: &[Report]) -> String {
    let mut by_namespace: std::collections::BTreeMap<&str, BTreeSet<&str>> = Default::default();
    for r in reports {
        for c in &r.credentials {
            if let Outcome::NotInjected {
                why: WhyNot::NamespaceLabelsUnknown { .. },
            } = &c.consideration.outcome
            {
                by_namespace
                    .entry(&r.namespace)
                    .or_default()
                    .insert(&c.consideration.credential);
            }
        }
    }
    by_namespace
        .into_iter()
        .map(|(ns, credentials)| {
            let names = credentials.into_iter().collect::<Vec<_>>().join(", ");
            format!(
                "warning: namespace {ns} is not among the --cluster manifests, so its labels are not known and the namespaces.selector of {names} cannot be evaluated: give them with --namespace-label KEY=VALUE, or add the Namespace manifest to --cluster\n"
            )
        })
        .collect()
}

/// The namespace as the decision sees it, and whether its labels are known.
fn namespace(
    state: &ClusterState,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> (NamespaceInfo, bool) {
    let known = state.namespace(name).cloned();
    let labels_known = known.is_some() || !labels.is_empty();
    let mut ns = known.unwrap_or_else(|| NamespaceInfo::named(name));
    ns.labels.extend(labels.clone());
    (ns, labels_known)
}

/// The pods to decide for: one for the images, or one per workload of the manifests.
fn cases(args: &CheckArgs, state: &mut ClusterState) -> Result<Vec<Case>, CliError> {
    let mut cases = Vec::new();
    if !args.images.is_empty() {
        let Some(namespace) = args.namespace.clone() else {
            return Err(CliError::Usage(
                "images need a namespace: -n NAMESPACE (or give manifests with -f)".to_string(),
            ));
        };
        cases.push(Case {
            object: None,
            namespace,
            images: args.images.clone(),
            existing: Vec::new(),
            labels: Default::default(),
            annotations: Default::default(),
            notes: Vec::new(),
        });
    }
    let mut workloads: Vec<Workload> = Vec::new();
    for path in &args.files {
        let (origin, texts) = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|source| {
                InputError::Read {
                    path: "standard input".to_string(),
                    source,
                }
            })?;
            (
                "standard input".to_string(),
                vec![("standard input".to_string(), text)],
            )
        } else {
            let mut files = Vec::new();
            collect_files(path, &mut files)?;
            let mut texts = Vec::new();
            for file in files {
                texts.push((file.display().to_string(), crate::inputs::read(&file)?));
            }
            (path.display().to_string(), texts)
        };
        let before = workloads.len();
        for (file, text) in texts {
            let (found, _) =
                workload::from_text(&text, &file).map_err(|e| CliError::Usage(e.to_string()))?;
            workloads.extend(found);
            // Namespaces, Secrets and ServiceAccounts in the same manifests count as cluster.
            state
                .load_manifests(&file, &text)
                .map_err(InputError::Manifest)?;
        }
        if workloads.len() == before {
            return Err(CliError::Usage(format!(
                "{origin}: no Pod, or workload with a pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob)"
            )));
        }
    }
    if cases.is_empty() && workloads.is_empty() {
        return Err(CliError::Usage(
            "nothing to check: give image references, or manifests with -f".to_string(),
        ));
    }
    for w in workloads {
        let namespace = w
            .namespace
            .clone()
            .or_else(|| args.namespace.clone())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let mut notes = Vec::new();
        // kube-apiserver's ServiceAccount admission runs before mutating webhooks: a pod that
        // names no imagePullSecrets is given its ServiceAccount's (plugin/pkg/admission/
        // serviceaccount/admission.go, `if len(pod.Spec.ImagePullSecrets) == 0`).
        let existing = if w.pull_secrets.is_empty() {
            match state
                .service_accounts_in(&namespace)
                .find(|sa| sa.metadata.name.as_deref() == Some(w.service_account.as_str()))
            {
                Some(sa) => sa
                    .image_pull_secrets
                    .iter()
                    .flatten()
                    .map(|r| r.name.clone())
                    .filter(|n| !n.is_empty())
                    .collect(),
                None => {
                    notes.push(format!(
                        "ServiceAccount {namespace}/{} is not among the manifests: the imagePullSecrets kube-apiserver copies from it are not known",
                        w.service_account
                    ));
                    Vec::new()
                }
            }
        } else {
            w.pull_secrets.clone()
        };
        cases.push(Case {
            object: Some(format!("{} {namespace}/{} ({})", w.kind, w.name, w.origin)),
            namespace,
            images: w.images,
            existing,
            labels: w.labels,
            annotations: w.annotations,
            notes,
        });
    }
    Ok(cases)
}

fn subject(case: &Case) -> Subject<'_> {
    Subject {
        kind: SubjectKind::Pod,
        name: None,
        images: case.images.iter().map(String::as_str).collect(),
        existing: case.existing.iter().map(String::as_str).collect(),
        labels: Some(&case.labels),
        annotations: Some(&case.annotations),
    }
}

fn report(
    catalog: &Catalog,
    state: &ClusterState,
    case: &Case,
    ns: &NamespaceInfo,
    labels_known: bool,
    verification: Option<VerificationJson>,
) -> Report {
    let subject = subject(case);
    // Not a dry run: the copies a real request would make are part of the answer.
    let mut decision = catalog.explain(&subject, ns, state, false);
    if decision.images.is_empty() {
        // Skipped before matching (excluded namespace): still describe each image.
        decision.images = case
            .images
            .iter()
            .map(|raw| ImageReport {
                image: raw.clone(),
                registry: ImageRef::parse(raw).ok().map(|i| i.domain().to_string()),
                matches: Vec::new(),
            })
            .collect();
    }
    let considered = catalog.considerations(&subject, ns, state, labels_known, &decision);
    let mut images = images(&decision);
    if decision.skipped.is_none() {
        for image in images
            .iter_mut()
            .filter(|i| i.matches.is_empty() && i.registry.is_some())
        {
            // The same pod with only this image: each credential's reason for it alone.
            let alone = Subject {
                images: vec![image.image.as_str()],
                ..subject.clone()
            };
            let decided = catalog.explain(&alone, ns, state, true);
            image.not_injected = catalog
                .considerations(&alone, ns, state, labels_known, &decided)
                .into_iter()
                .filter(|c| matches!(c.outcome, Outcome::NotInjected { .. }))
                .map(|c| CredentialJson {
                    message: message(&c, &ns.name),
                    consideration: c,
                })
                .collect();
        }
    }
    Report {
        object: case.object.clone(),
        namespace: ns.name.clone(),
        image_pull_secrets: decision.add.clone(),
        existing: case.existing.clone(),
        skipped: decision.skipped.clone(),
        images,
        credentials: considered
            .into_iter()
            .map(|c| CredentialJson {
                message: message(&c, &ns.name),
                consideration: c,
            })
            .collect(),
        copies: decision
            .copies
            .iter()
            .map(|c| {
                format!(
                    "{} {}/{} from {}",
                    if c.update { "refreshes" } else { "creates" },
                    c.namespace,
                    c.name(),
                    c.source.source_ref()
                )
            })
            .collect(),
        warnings: decision
            .warnings
            .iter()
            .map(|w| match &w.detail {
                Some(detail) => format!("{} (why: {detail})", w.message),
                None => w.message.clone(),
            })
            .collect(),
        verification,
        notes: case.notes.clone(),
        warning_lines: decision
            .warnings
            .iter()
            .map(|w| (w.message.clone(), w.detail.clone()))
            .collect(),
    }
}

fn images(decision: &Decision) -> Vec<ImageJson> {
    decision
        .images
        .iter()
        .map(|i| ImageJson {
            image: i.image.clone(),
            registry: i.registry.clone(),
            matches: i
                .matches
                .iter()
                .map(|m| MatchJson {
                    credential: m.credential.clone(),
                    secret: m.secret.clone(),
                    pattern: m.pattern.clone(),
                })
                .collect(),
            not_injected: Vec::new(),
        })
        .collect()
}

/// One line on what became of a credential.
fn message(c: &Consideration, namespace: &str) -> String {
    match &c.outcome {
        Outcome::Injected { secrets, notes } => {
            let mut text = format!("injected ({})", secrets.join(", "));
            for n in notes {
                text.push_str(&format!("; but {n}"));
            }
            text
        }
        Outcome::AlreadyReferenced { secrets } => {
            format!("already referenced ({})", secrets.join(", "))
        }
        Outcome::NotInjected { why } => format!("not injected: {}", why.message(namespace)),
    }
}

fn text(r: &Report, single: bool, p: Palette) -> String {
    let mut out = String::new();
    let indent = if single { "" } else { "  " };
    if let Some(object) = &r.object {
        out.push_str(&format!("{}\n", p.heading(object)));
    }
    if let Some(why) = &r.skipped {
        out.push_str(&format!(
            "{indent}nothing injected in namespace {}: {why}\n",
            r.namespace
        ));
    } else if r.image_pull_secrets.is_empty() {
        out.push_str(&format!(
            "{indent}nothing injected in namespace {}\n",
            r.namespace
        ));
    } else {
        out.push_str(&format!(
            "{indent}namespace {}: imagePullSecrets += {}\n",
            r.namespace,
            p.good(&r.image_pull_secrets.join(", "))
        ));
    }
    if !r.existing.is_empty() {
        out.push_str(&format!(
            "{indent}  already references {}\n",
            r.existing.join(", ")
        ));
    }
    for image in &r.images {
        match &image.registry {
            Some(reg) => out.push_str(&format!("{indent}  {} (registry {reg})\n", image.image)),
            None => out.push_str(&format!(
                "{indent}  {} (not a valid image reference)\n",
                image.image
            )),
        }
        if image.matches.is_empty() && image.registry.is_some() && r.skipped.is_none() {
            if image.not_injected.is_empty() {
                out.push_str(&format!(
                    "{indent}    {}: no credential is configured\n",
                    p.bad("nothing injected for it")
                ));
            } else {
                out.push_str(&format!(
                    "{indent}    {}:\n",
                    p.bad("nothing injected for it")
                ));
            }
            for c in &image.not_injected {
                let why = c
                    .message
                    .strip_prefix("not injected: ")
                    .unwrap_or(&c.message);
                out.push_str(&format!(
                    "{indent}      {}: {why}\n",
                    c.consideration.credential
                ));
            }
        }
        for m in &image.matches {
            out.push_str(&format!(
                "{indent}    {} from credential {} (key {:?})\n",
                m.secret, m.credential, m.pattern
            ));
        }
    }
    for copy in &r.copies {
        out.push_str(&format!("{indent}  copy {copy}\n"));
    }
    if !r.credentials.is_empty() {
        out.push_str(&format!("{indent}  credentials:\n"));
        for c in &r.credentials {
            let message = match c.consideration.outcome {
                Outcome::NotInjected { .. } => p.bad(&c.message),
                _ => p.good(&c.message),
            };
            out.push_str(&format!(
                "{indent}    {}: {message}\n",
                c.consideration.credential
            ));
        }
    }
    for (message, detail) in &r.warning_lines {
        out.push_str(&format!("{indent}  {} {message}\n", p.warn("warning:")));
        if let Some(detail) = detail {
            out.push_str(&format!("{indent}    why: {detail}\n"));
        }
    }
    for n in &r.notes {
        out.push_str(&format!("{indent}  note: {n}\n"));
    }
    if let Some(v) = &r.verification {
        for line in verify::text(&v.probes, &v.not_probed).lines() {
            out.push_str(&format!("{indent}{line}\n"));
        }
    }
    out
}
