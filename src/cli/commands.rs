//! The flags of the commands that explain (`check`, `validate`, `audit`), and what they call.

use std::path::PathBuf;

use clap::Args;

use crate::offline::{self, AuditArgs, CheckArgs, CliError, DEFAULT_OWN_NAMESPACE, Format, Output};

/// Where the config and the cluster come from.
#[derive(Debug, Args)]
pub(super) struct Source {
    /// The config: raw config YAML or a ConfigMap manifest holding config.yaml.
    #[arg(long)]
    config: PathBuf,
    /// Manifests (files or directories) standing for the cluster's Namespaces, Secrets and
    /// ServiceAccounts.
    #[arg(long)]
    cluster: Vec<PathBuf>,
    /// The injector's own namespace, which is never injected into.
    #[arg(long, env = "POD_NAMESPACE", default_value = DEFAULT_OWN_NAMESPACE)]
    own_namespace: String,
}

/// How to print: `-o`, or `--json` for `-o json`.
#[derive(Debug, Args)]
pub(super) struct Printing {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: Format,
    /// The same as -o json.
    #[arg(long, conflicts_with = "output")]
    json: bool,
}

impl Printing {
    fn format(&self) -> Format {
        if self.json { Format::Json } else { self.output }
    }
}

/// `check`'s flags.
#[derive(Debug, Args)]
pub(super) struct Check {
    #[command(flatten)]
    source: Source,
    /// The namespace: where the images' pod is created, and of manifests that name none
    /// (default for those: default).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// A label of that namespace, key=value (repeatable; overrides the manifests').
    #[arg(long = "namespace-label")]
    namespace_label: Vec<String>,
    /// Manifests of Pods or workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet,
    /// ReplicationController, Job, CronJob, List), YAML or JSON: files, directories, or - for
    /// standard input (repeatable).
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    output: Printing,
    /// Also log in to the registries of the credentials reported, live, and show what each
    /// answered (sends the credentials to those registries; see docs/verification.md).
    #[arg(long)]
    verify: bool,
    /// Image references, as written in a pod spec (with -n).
    images: Vec<String>,
}

/// `validate`'s flags.
#[derive(Debug, Args)]
pub(super) struct Validate {
    /// The config: raw config YAML or a ConfigMap manifest holding config.yaml.
    #[arg(long)]
    config: PathBuf,
    /// Optional manifests, to also report missing or unusable source secrets.
    #[arg(long)]
    cluster: Vec<PathBuf>,
    /// Also log in to every credential's registries, live; exit 1 when one is rejected
    /// (needs --cluster; sends the credentials to those registries).
    #[arg(long)]
    verify: bool,
    /// Exit 1 on warnings too (a source missing from --cluster, a key kubelet drops).
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    output: Printing,
}

/// `audit`'s flags.
#[derive(Debug, Args)]
pub(super) struct Audit {
    #[command(flatten)]
    source: Source,
    #[command(flatten)]
    output: Printing,
    /// Exit 1 when anything is found (for CI and cron jobs).
    #[arg(long)]
    fail_on_findings: bool,
    /// Print, for each group of pods, the command that would give new pods what they lack
    /// (never run).
    #[arg(long)]
    fix_commands: bool,
    /// Also log in to every credential's registries, live, and report those rejected (sends
    /// the credentials to those registries).
    #[arg(long)]
    verify: bool,
}

pub(super) fn audit(a: Audit) -> Result<Output, CliError> {
    let config = offline::load_config(&a.source.config)?;
    let state = offline::load_cluster(&a.source.cluster)?;
    let pods = offline::audit::pods_in(&a.source.cluster)?;
    offline::audit::audit(
        config,
        state,
        &pods,
        &AuditArgs {
            own_namespace: a.source.own_namespace,
            format: a.output.format(),
            fail_on_findings: a.fail_on_findings,
            fix_commands: a.fix_commands,
            verify: a.verify,
        },
    )
}

pub(super) fn check(c: Check) -> Result<Output, CliError> {
    let config = offline::load_config(&c.source.config)?;
    let state = offline::load_cluster(&c.source.cluster)?;
    offline::check::check(
        config,
        state,
        &CheckArgs {
            namespace: c.namespace,
            namespace_labels: c.namespace_label,
            own_namespace: c.source.own_namespace,
            format: c.output.format(),
            images: c.images,
            files: c.files,
            verify: c.verify,
        },
    )
}

pub(super) fn validate(v: Validate) -> Result<Output, CliError> {
    offline::validate(&offline::ValidateArgs {
        config: v.config,
        cluster: v.cluster,
        verify: v.verify,
        strict: v.strict,
        format: v.output.format(),
    })
}

/// `version`.
pub(super) fn version(format: Format) -> Output {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Version {
        version: &'static str,
        git_commit: &'static str,
        build_date: &'static str,
    }
    let v = Version {
        version: env!("CARGO_PKG_VERSION"),
        git_commit: env!("PSI_GIT_COMMIT"),
        build_date: env!("PSI_BUILD_DATE"),
    };
    let stdout = match format {
        Format::Text => format!(
            "pull-secret-injector {} (commit {}, built {})\n",
            v.version, v.git_commit, v.build_date
        ),
        format => offline::render(format, &v),
    };
    Output {
        stdout,
        stderr: String::new(),
        code: 0,
    }
}

/// `completions`.
pub(super) fn completions(shell: clap_complete::Shell) -> Output {
    let mut command = <super::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "pull-secret-injector", &mut script);
    Output {
        stdout: String::from_utf8_lossy(&script).into_owned(),
        stderr: String::new(),
        code: 0,
    }
}
