//! The flags of the commands that explain (`check`, `validate`, `audit`), and what they call.

use std::path::PathBuf;

use clap::Args;

use crate::config::Config;
use crate::inspect;
use crate::offline::{self, AuditArgs, CheckArgs, CliError, DEFAULT_OWN_NAMESPACE, Format, Output};
use crate::view::ClusterState;
use crate::workload::Workload;

/// Where the config and the cluster come from: files, or a live cluster.
#[derive(Debug, Args)]
pub(super) struct Source {
    /// The config: raw config YAML or a ConfigMap manifest holding config.yaml. With a live
    /// cluster, it replaces the installed ConfigMap (to try a config before applying it).
    #[arg(long, required_unless_present_any = ["live", "kubeconfig", "context"])]
    config: Option<PathBuf>,
    /// Manifests (files or directories) standing for the cluster's Namespaces, Secrets,
    /// ServiceAccounts (and, for audit, Pods).
    #[arg(long, conflicts_with_all = ["live", "kubeconfig", "context"])]
    cluster: Vec<PathBuf>,
    /// The injector's own namespace, which is never injected into.
    #[arg(long, env = "POD_NAMESPACE", default_value = DEFAULT_OWN_NAMESPACE)]
    own_namespace: String,
    #[command(flatten)]
    live: Live,
}

/// Reading a live cluster, read-only, with the user's own credentials.
#[derive(Debug, Args)]
pub(super) struct Live {
    /// Read the live cluster instead of files, as kubectl would reach it (KUBECONFIG,
    /// ~/.kube/config, or the in-cluster service account). Read-only.
    #[arg(long)]
    live: bool,
    /// Read the live cluster this kubeconfig reaches (implies --live).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (implies --live).
    #[arg(long)]
    context: Option<String>,
    /// Live: the config ConfigMap as NAMESPACE/NAME [default:
    /// OWN_NAMESPACE/pull-secret-injector].
    #[arg(long)]
    config_map: Option<String>,
}

impl Live {
    fn wanted(&self) -> bool {
        self.live || self.kubeconfig.is_some() || self.context.is_some()
    }

    fn session(&self) -> Result<inspect::Session, CliError> {
        Ok(inspect::Session::connect(&inspect::Target {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        })?)
    }
}

/// The config as read, by name, and the live session it was read through, if any.
struct Opened {
    origin: String,
    text: String,
    session: Option<inspect::Session>,
}

/// The config, the cluster and (for audit) its pods, wherever they come from.
struct Loaded {
    config: Config,
    state: ClusterState,
    pods: Vec<Workload>,
}

impl Source {
    /// Reads the config: the file when one is given, else (live) the installed ConfigMap.
    fn open(&self) -> Result<Opened, CliError> {
        let session = if self.live.wanted() {
            Some(self.live.session()?)
        } else {
            None
        };
        let (origin, text) = match (&self.config, &session) {
            (Some(path), _) => (path.display().to_string(), crate::inputs::read(path)?),
            (None, Some(session)) => {
                let reference = self.live.config_map.clone().unwrap_or_else(|| {
                    format!(
                        "{}/{}",
                        self.own_namespace,
                        inspect::DEFAULT_CONFIG_MAP_NAME
                    )
                });
                session.config_text(&reference)?
            }
            (None, None) => {
                return Err(CliError::Usage(
                    "--config is required without a live cluster".to_string(),
                ));
            }
        };
        Ok(Opened {
            origin,
            text,
            session,
        })
    }

    /// The cluster for a valid config, and its pods with `with_pods`: a live read, the
    /// manifests, or nothing when neither was given.
    fn cluster(
        &self,
        opened: &Opened,
        config: &Config,
        with_pods: bool,
    ) -> Result<Option<(ClusterState, Vec<Workload>)>, CliError> {
        if let Some(session) = &opened.session {
            let read = session.read(config, with_pods)?;
            return Ok(Some((read.state, read.pods)));
        }
        if self.cluster.is_empty() {
            return Ok(None);
        }
        let pods = if with_pods {
            offline::audit::pods_in(&self.cluster)?
        } else {
            Vec::new()
        };
        Ok(Some((offline::load_cluster(&self.cluster)?, pods)))
    }

    /// The config, which must be valid, and the cluster (empty when none was given).
    fn load(&self, with_pods: bool) -> Result<Loaded, CliError> {
        let opened = self.open()?;
        let config = Config::from_yaml(&opened.text)
            .map_err(|source| {
                CliError::Input(crate::inputs::InputError::Config {
                    path: opened.origin.clone(),
                    source,
                })
            })?
            .place_minted(&self.own_namespace);
        let (state, pods) = self
            .cluster(&opened, &config, with_pods)?
            .unwrap_or_default();
        Ok(Loaded {
            config,
            state,
            pods,
        })
    }
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
    #[command(flatten)]
    source: Source,
    /// Also log in to every credential's registries, live; exit 1 when one is rejected
    /// (needs the sources: --cluster or a live cluster; sends the credentials to those
    /// registries).
    #[arg(long)]
    verify: bool,
    /// Exit 1 on warnings too (a source missing from the cluster, a key kubelet drops).
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
    let loaded = a.source.load(true)?;
    offline::audit::audit(
        loaded.config,
        loaded.state,
        &loaded.pods,
        &AuditArgs {
            own_namespace: a.source.own_namespace,
            format: a.output.format(),
            fail_on_findings: a.fail_on_findings,
            fix_commands: a.fix_commands,
            verify: a.verify,
            palette: offline::style::Palette::for_stdout(),
        },
    )
}

pub(super) fn check(c: Check) -> Result<Output, CliError> {
    let loaded = c.source.load(false)?;
    offline::check::check(
        loaded.config,
        loaded.state,
        &CheckArgs {
            namespace: c.namespace,
            namespace_labels: c.namespace_label,
            own_namespace: c.source.own_namespace,
            format: c.output.format(),
            images: c.images,
            files: c.files,
            verify: c.verify,
            palette: offline::style::Palette::for_stdout(),
        },
    )
}

pub(super) fn validate(v: Validate) -> Result<Output, CliError> {
    let opened = v.source.open()?;
    offline::validate(
        &opened.origin,
        &opened.text,
        |config| {
            Ok(v.source
                .cluster(&opened, config, false)?
                .map(|(state, _)| state))
        },
        &offline::ValidateArgs {
            verify: v.verify,
            strict: v.strict,
            format: v.output.format(),
        },
    )
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
