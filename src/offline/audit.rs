//! `audit`: what already runs without what the injector would give it today, read from
//! manifests (a dump of the cluster) or, read-only, from a live cluster.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::style::Palette;
use super::verify;
use super::{CliError, Format, Output, render};
use crate::config::Config;
use crate::inputs::collect_files;
use crate::policy::{Audit, Catalog};
use crate::view::ClusterState;
use crate::workload::{self, Workload};

/// Inputs of `audit`, besides the config and the cluster.
#[derive(Debug, Clone, Default)]
pub struct AuditArgs {
    /// The injector's own namespace.
    pub own_namespace: String,
    /// How to print.
    pub format: Format,
    /// Exit 1 when anything is found.
    pub fail_on_findings: bool,
    /// Print the commands that would give pods what they lack.
    pub fix_commands: bool,
    /// Probe every credential, live, and report those rejected.
    pub verify: bool,
    /// Colour for the text answer.
    pub palette: Palette,
}

/// The pods among manifests (files and directories, as `--cluster` takes them).
pub fn pods_in(paths: &[PathBuf]) -> Result<Vec<Workload>, CliError> {
    let mut pods = Vec::new();
    for path in paths {
        let mut files = Vec::new();
        collect_files(path, &mut files)?;
        for file in files {
            let text = crate::inputs::read(&file)?;
            let (found, _) = workload::from_text(&text, &file.display().to_string())
                .map_err(|e| CliError::Usage(e.to_string()))?;
            pods.extend(found.into_iter().filter(|w| w.kind == "Pod"));
        }
    }
    Ok(pods)
}

/// `audit` on a config, a cluster and its pods.
pub fn audit(
    config: Config,
    mut state: ClusterState,
    pods: &[Workload],
    args: &AuditArgs,
) -> Result<Output, CliError> {
    let catalog = Catalog::build(config, &state, Some(&args.own_namespace));
    if args.verify {
        let (_, health) =
            verify::probe(&catalog, None, &BTreeSet::new()).map_err(CliError::Verify)?;
        state.set_health(health);
    }
    let found = catalog.audit(&state, pods);
    let stdout = match args.format {
        Format::Text => text(&found, pods.len(), args.fix_commands, args.palette),
        format => render(format, &found),
    };
    Ok(Output {
        stdout,
        stderr: String::new(),
        code: i32::from(args.fail_on_findings && !found.is_empty()),
    })
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn text(a: &Audit, pods_read: usize, fix: bool, p: Palette) -> String {
    let mut out = String::new();
    if !a.pods.is_empty() {
        let pods: usize = a.pods.iter().map(|g| g.pods.len()).sum();
        out.push_str(&format!(
            "pods without the pull secrets the injector would give them today ({}, {}):\n",
            plural(pods, "pod", "pods"),
            plural(a.pods.len(), "owner", "owners")
        ));
        for g in &a.pods {
            out.push_str(&format!(
                "  {} {}: {} {} {} (credential{} {})\n",
                g.namespace,
                g.owner,
                plural(g.pods.len(), "pod", "pods"),
                if g.pods.len() == 1 { "lacks" } else { "lack" },
                p.bad(&g.lacks.join(", ")),
                if g.credentials.len() == 1 { "" } else { "s" },
                g.credentials.join(", ")
            ));
            if fix {
                out.push_str(&format!("    fix: {}\n", p.command(&g.fix)));
            }
        }
    }
    if !a.service_accounts.is_empty() {
        out.push_str("ServiceAccounts without the pull secrets the injector would give them (the running injector's backfill adds them within seconds; if it does not, see its logs):\n");
        for s in &a.service_accounts {
            out.push_str(&format!(
                "  {}/{} lacks {}\n",
                s.namespace,
                s.name,
                p.bad(&s.lacks.join(", "))
            ));
        }
    }
    if !a.copies.is_empty() {
        out.push_str("copies that are not current:\n");
        for c in &a.copies {
            out.push_str(&format!(
                "  {}/{} (credential {}): {}: {}\n",
                c.namespace, c.name, c.credential, c.state, c.why
            ));
        }
    }
    if !a.credentials.is_empty() {
        out.push_str("credentials that cannot be used:\n");
        for c in &a.credentials {
            out.push_str(&format!(
                "  {}: {}: {}\n",
                c.credential, c.reason, c.message
            ));
        }
    }
    if a.is_empty() {
        out.push_str(&format!(
            "nothing found: {} read, each with what the injector would give it\n",
            plural(pods_read, "pod", "pods")
        ));
    }
    out
}
