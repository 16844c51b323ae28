//! `validate`: is the config valid, and (with manifests) are its sources usable, and (with
//! `--verify`) do their registries accept them.

use std::collections::BTreeSet;

use serde::Serialize;

use super::verify::{self, Verified};
use super::{CliError, Format, Output, render};
use crate::config::Config;
use crate::policy::Catalog;
use crate::view::ClusterState;

/// How `validate` runs, besides its input.
#[derive(Debug, Clone, Default)]
pub struct ValidateArgs {
    /// Probe every credential at its registries.
    pub verify: bool,
    /// Warnings fail too.
    pub strict: bool,
    /// How to print.
    pub format: Format,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    config: String,
    valid: bool,
    credentials: usize,
    problems: Vec<String>,
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<Verification>,
    /// The problem is with the file, not a config in it: text says it alone.
    #[serde(skip)]
    whole_file: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Verification {
    probes: Vec<Verified>,
    not_probed: Vec<String>,
}

/// `validate`: exit 0 when the config is valid, 1 with every problem listed otherwise.
/// `origin` names the config in messages. When the config is valid, `cluster` gives the
/// cluster (manifests or a live read), if any: then sources that are missing or unusable are
/// reported too (exit 1 with `strict`), and with `verify` every credential is probed at its
/// registries (exit 1 when one is rejected).
pub fn validate(
    origin: &str,
    text: &str,
    cluster: impl FnOnce(&Config) -> Result<Option<ClusterState>, CliError>,
    args: &ValidateArgs,
) -> Result<Output, CliError> {
    let mut report = Report {
        config: origin.to_string(),
        valid: false,
        credentials: 0,
        problems: Vec::new(),
        warnings: Vec::new(),
        verification: None,
        whole_file: false,
    };
    match Config::from_yaml(text) {
        Err(e) => {
            report.whole_file = e.whole_file().is_some();
            report.problems = match e.whole_file() {
                Some(message) => vec![message.to_string()],
                None => e.problems.iter().map(ToString::to_string).collect(),
            };
        }
        Ok(config) => {
            report.valid = true;
            report.credentials = config.credentials.len();
            match cluster(&config)? {
                Some(state) => {
                    let catalog = Catalog::build(config, &state, None);
                    report.warnings = catalog.problems();
                    if args.verify {
                        let (probes, _) = verify::probe(&catalog, None, &BTreeSet::new())
                            .map_err(CliError::Verify)?;
                        let not_probed = verify::not_probed(&catalog, None, &probes);
                        report.verification = Some(Verification { probes, not_probed });
                    }
                }
                None if args.verify => {
                    return Err(CliError::Verify(
                        "validate --verify needs the source secrets, which hold the credentials to probe: give --cluster manifests, or read the live cluster (--live, --kubeconfig, --context)".to_string(),
                    ));
                }
                None => {}
            }
        }
    }
    let rejected = report
        .verification
        .as_ref()
        .is_some_and(|v| verify::any_rejected(&v.probes));
    let code = i32::from(!report.valid || rejected || (args.strict && !report.warnings.is_empty()));
    let stdout = match args.format {
        Format::Text => text_of(&report, args.strict),
        format => render(format, &report),
    };
    Ok(Output {
        stdout,
        stderr: String::new(),
        code,
    })
}

fn text_of(r: &Report, strict: bool) -> String {
    if !r.valid && r.whole_file {
        return format!("{}: {}\n", r.config, r.problems.join("; "));
    }
    if !r.valid {
        // The shape of `ConfigError`'s own message, which serve and the Event also print.
        let mut out = format!(
            "{}: invalid configuration ({} problem{}):",
            r.config,
            r.problems.len(),
            if r.problems.len() == 1 { "" } else { "s" }
        );
        for p in &r.problems {
            out.push_str(&format!("\n  - {p}"));
        }
        out.push('\n');
        return out;
    }
    let mut out = format!(
        "{}: valid ({} credential{})\n",
        r.config,
        r.credentials,
        if r.credentials == 1 { "" } else { "s" }
    );
    let label = if strict { "error" } else { "warning" };
    for w in &r.warnings {
        out.push_str(&format!("  {label}: {w}\n"));
    }
    if let Some(v) = &r.verification {
        out.push_str(&verify::text(&v.probes, &v.not_probed));
    }
    out
}
