//! The offline commands (`check`, `review`, `validate`): read files, run the pure core, render.
//! With `--verify`, `check` and `validate` also probe registries ([`verify`]), live.
//!
//! Each command returns its standard output and exit code so that tests can call it directly;
//! `main.rs` only parses flags and prints.

pub mod verify;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::admission;
use crate::config::Config;
pub use crate::inputs::{InputError, collect_files, load_cluster, load_config, parse_labels};
use crate::policy::{Catalog, Decision, ImageReport, Subject, SubjectKind};
use crate::registry::image::ImageRef;
use crate::view::{ClusterView, NamespaceInfo};

/// The namespace the injector runs in when `POD_NAMESPACE` is not set.
pub const DEFAULT_OWN_NAMESPACE: &str = "pull-secret-injector";

/// A failure that stops a command; the message names the file or object and the cause.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file, the config or a manifest cannot be used.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The AdmissionReview input is invalid.
    #[error("{origin}: {source}")]
    Review {
        /// Where the review came from.
        origin: String,
        /// Why it cannot be answered.
        source: admission::ReviewError,
    },
    /// `--verify` cannot run.
    #[error("{0}")]
    Verify(String),
}

/// What a command prints on standard output and the exit code it ends with.
#[derive(Debug)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error (warnings that are not the command's answer).
    pub stderr: String,
    /// Process exit code.
    pub code: i32,
}

/// Inputs of `check`.
#[derive(Debug, Clone)]
pub struct CheckArgs {
    /// The config file.
    pub config: PathBuf,
    /// Cluster manifests.
    pub cluster: Vec<PathBuf>,
    /// Target namespace.
    pub namespace: String,
    /// Extra or overriding namespace labels.
    pub namespace_labels: Vec<String>,
    /// The injector's own namespace.
    pub own_namespace: String,
    /// Print JSON instead of text.
    pub json: bool,
    /// The images to check.
    pub images: Vec<String>,
    /// Probe the credentials reported, live.
    pub verify: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckReport<'a> {
    namespace: &'a str,
    image_pull_secrets: &'a [String],
    images: Vec<ImageJson<'a>>,
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<VerificationJson<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerificationJson<'a> {
    probes: &'a [verify::Verified],
    not_probed: &'a [String],
}

#[derive(Serialize)]
struct ImageJson<'a> {
    image: &'a str,
    registry: Option<&'a str>,
    matches: Vec<MatchJson<'a>>,
}

#[derive(Serialize)]
struct MatchJson<'a> {
    credential: &'a str,
    secret: &'a str,
    pattern: &'a str,
}

/// `check`: which secrets would be injected for these images in that namespace, and why.
pub fn check(args: &CheckArgs) -> Result<Output, CliError> {
    let config = load_config(&args.config)?;
    let mut state = load_cluster(&args.cluster)?;
    let mut ns = state
        .namespace(&args.namespace)
        .cloned()
        .unwrap_or_else(|| NamespaceInfo::named(&args.namespace));
    ns.labels.extend(parse_labels(&args.namespace_labels)?);
    let catalog = Catalog::build(config, &state, Some(&args.own_namespace));
    let subject = Subject {
        kind: SubjectKind::Pod,
        name: None,
        images: args.images.iter().map(String::as_str).collect(),
        existing: Vec::new(),
        labels: None,
        annotations: None,
    };
    // Not a dry run: the copies a real request would make are part of the answer.
    let mut decision = catalog.explain(&subject, &ns, &state, false);
    let mut verification = None;
    if args.verify {
        let reported: BTreeSet<String> = decision
            .images
            .iter()
            .flat_map(|i| i.matches.iter().map(|m| m.credential.clone()))
            .collect();
        let glob_seen: BTreeSet<(String, String)> =
            decision.glob_registries.iter().cloned().collect();
        let (probes, health) =
            verify::probe(&catalog, Some(&reported), &glob_seen).map_err(CliError::Verify)?;
        let not_probed = verify::not_probed(&catalog, Some(&reported), &probes);
        // Decide again with what the registries said, as the webhook would.
        state.set_health(health);
        decision = catalog.explain(&subject, &ns, &state, false);
        verification = Some((probes, not_probed));
    }
    if decision.images.is_empty() {
        // Skipped before matching (excluded namespace): still describe each image.
        decision.images = args
            .images
            .iter()
            .map(|raw| ImageReport {
                image: raw.clone(),
                registry: ImageRef::parse(raw).ok().map(|i| i.domain().to_string()),
                matches: Vec::new(),
            })
            .collect();
    }
    let stdout = if args.json {
        check_json(&ns.name, &decision, verification.as_ref())
    } else {
        let mut text = check_text(&ns, &decision);
        if let Some((probes, not_probed)) = &verification {
            text.push_str(&verify::text(probes, not_probed));
        }
        text
    };
    Ok(Output {
        stdout,
        stderr: String::new(),
        code: 0,
    })
}

fn check_json(
    namespace: &str,
    decision: &Decision,
    verification: Option<&(Vec<verify::Verified>, Vec<String>)>,
) -> String {
    let report = CheckReport {
        namespace,
        image_pull_secrets: &decision.add,
        images: decision
            .images
            .iter()
            .map(|i| ImageJson {
                image: &i.image,
                registry: i.registry.as_deref(),
                matches: i
                    .matches
                    .iter()
                    .map(|m| MatchJson {
                        credential: &m.credential,
                        secret: &m.secret,
                        pattern: &m.pattern,
                    })
                    .collect(),
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
        verification: verification
            .map(|(probes, not_probed)| VerificationJson { probes, not_probed }),
    };
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
    text.push('\n');
    text
}

fn check_text(ns: &NamespaceInfo, decision: &Decision) -> String {
    let mut out = String::new();
    if let Some(why) = &decision.skipped {
        out.push_str(&format!(
            "nothing injected in namespace {}: {why}\n",
            ns.name
        ));
    } else if decision.add.is_empty() {
        out.push_str(&format!("nothing injected in namespace {}\n", ns.name));
    } else {
        out.push_str(&format!(
            "namespace {}: imagePullSecrets += {}\n",
            ns.name,
            decision.add.join(", ")
        ));
    }
    for image in &decision.images {
        match &image.registry {
            Some(r) => out.push_str(&format!("  {} (registry {r})\n", image.image)),
            None => out.push_str(&format!(
                "  {} (not a valid image reference)\n",
                image.image
            )),
        }
        if image.matches.is_empty() && image.registry.is_some() && decision.skipped.is_none() {
            out.push_str("    nothing injected for it: no usable credential in scope matches\n");
        }
        for m in &image.matches {
            out.push_str(&format!(
                "    {} from credential {} (key {:?})\n",
                m.secret, m.credential, m.pattern
            ));
        }
    }
    for copy in &decision.copies {
        out.push_str(&format!(
            "  copy {} {}/{} from {}\n",
            if copy.update { "refreshes" } else { "creates" },
            copy.namespace,
            copy.name(),
            copy.source.source_ref()
        ));
    }
    for w in &decision.warnings {
        out.push_str(&format!("  warning: {}\n", w.message));
        if let Some(detail) = &w.detail {
            out.push_str(&format!("    why: {detail}\n"));
        }
    }
    out
}

/// `review`: answers an AdmissionReview read from a file or `-` (stdin) as `serve` would.
pub fn review(
    config: &Path,
    cluster: &[PathBuf],
    own_namespace: &str,
    input: &str,
) -> Result<Output, CliError> {
    let config = load_config(config)?;
    let state = load_cluster(cluster)?;
    let body = if input == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|source| InputError::Read {
                path: "standard input".to_string(),
                source,
            })?;
        buf
    } else {
        std::fs::read(input).map_err(|source| InputError::Read {
            path: input.to_string(),
            source,
        })?
    };
    let catalog = Catalog::build(config, &state, Some(own_namespace));
    let reviewed =
        admission::review(&catalog, &state, &body).map_err(|source| CliError::Review {
            origin: if input == "-" {
                "standard input".to_string()
            } else {
                input.to_string()
            },
            source,
        })?;
    let value: serde_json::Value = serde_json::from_slice(&reviewed.body).unwrap_or_default();
    let mut stdout = serde_json::to_string_pretty(&value).unwrap_or_default();
    stdout.push('\n');
    let mut stderr = String::new();
    if let Some(decision) = &reviewed.outcome.decision {
        for copy in &decision.copies {
            stderr.push_str(&format!(
                "would {} secret {}/{} from {}\n",
                if copy.update { "refresh" } else { "create" },
                copy.namespace,
                copy.name(),
                copy.source.source_ref()
            ));
        }
    }
    Ok(Output {
        stdout,
        stderr,
        code: 0,
    })
}

/// `validate`: exit 0 when the config is valid, 1 with every problem listed otherwise. With
/// cluster manifests, also reports sources that are missing or unusable; with `verify`, probes
/// every credential at its registries and exits 1 when one is rejected.
pub fn validate(config_path: &Path, cluster: &[PathBuf], verify: bool) -> Result<Output, CliError> {
    if verify && cluster.is_empty() {
        return Err(CliError::Verify(
            "validate --verify needs --cluster manifests that hold the source secrets: the credentials to probe are in them".to_string(),
        ));
    }
    let text = crate::inputs::read(config_path)?;
    let config = match Config::from_yaml(&text) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Output {
                stdout: format!("{}: {e}\n", config_path.display()),
                stderr: String::new(),
                code: 1,
            });
        }
    };
    let mut stdout = format!(
        "{}: valid ({} credential{})\n",
        config_path.display(),
        config.credentials.len(),
        if config.credentials.len() == 1 {
            ""
        } else {
            "s"
        }
    );
    let mut code = 0;
    if !cluster.is_empty() {
        let state = load_cluster(cluster)?;
        let catalog = Catalog::build(config, &state, None);
        for problem in catalog.problems() {
            stdout.push_str(&format!("  warning: {problem}\n"));
        }
        if verify {
            let (probes, _) =
                verify::probe(&catalog, None, &BTreeSet::new()).map_err(CliError::Verify)?;
            let not_probed = verify::not_probed(&catalog, None, &probes);
            stdout.push_str(&verify::text(&probes, &not_probed));
            if verify::any_rejected(&probes) {
                code = 1;
            }
        }
    }
    Ok(Output {
        stdout,
        stderr: String::new(),
        code,
    })
}
