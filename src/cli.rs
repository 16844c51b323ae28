//! The command line: every subcommand and flag (clap), and the dispatch to the library. The
//! binary's `main` only parses and calls [`run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod commands;

use crate::offline::{self, DEFAULT_OWN_NAMESPACE};
use crate::serve::http::Limits;
use crate::serve::{self, ClusterOptions, ServeArgs, TlsSource};
use crate::telemetry::{self, LogFormat};
use crate::tls::certs;

/// Injects registry pull secrets into Pods and ServiceAccounts exactly as kubelet would use them.
#[derive(Debug, Parser)]
#[command(name = "pull-secret-injector", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the admission webhook over HTTPS (from files with --config; the Kubernetes API
    /// otherwise).
    Serve(Box<Serve>),
    /// Writes a CA and a serving certificate for the webhook: ca.crt (for caBundle), tls.crt,
    /// tls.key.
    Certs {
        /// A DNS name or IP address the webhook is reached by (repeatable), e.g.
        /// pull-secret-injector.pull-secret-injector.svc.
        #[arg(long = "dns", required_unless_present = "client")]
        names: Vec<String>,
        /// Instead of a serving certificate, a client certificate with this common name (for
        /// kube-apiserver to present when serve runs with --client-ca ca.crt).
        #[arg(long, conflicts_with = "names")]
        client: Option<String>,
        /// The directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Which secrets the webhook would inject for these images, or for the pods these
    /// manifests make, and why each credential is or is not used (offline, or read-only live).
    Check(Box<commands::Check>),
    /// Answers an AdmissionReview request as the webhook does, from files (offline).
    Review {
        /// The config: raw config YAML or a ConfigMap manifest holding config.yaml.
        #[arg(long)]
        config: PathBuf,
        /// Manifests (files or directories) standing for the cluster's Namespaces and Secrets.
        #[arg(long)]
        cluster: Vec<PathBuf>,
        /// The injector's own namespace, which is never injected into.
        #[arg(long, env = "POD_NAMESPACE", default_value = DEFAULT_OWN_NAMESPACE)]
        own_namespace: String,
        /// The AdmissionReview JSON file, or - for standard input.
        #[arg(default_value = "-")]
        input: String,
    },
    /// Checks a config; exits 1 listing every problem when it is invalid.
    Validate(commands::Validate),
    /// Lists Pods and ServiceAccounts that lack a pull secret the injector would give them
    /// today, copies that are stale or orphaned, and credentials that cannot be used.
    Audit(Box<commands::Audit>),
    /// Prints the version, the git commit it was built from and the build date.
    Version {
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: offline::Format,
    },
    /// Prints a completion script for a shell: `source <(pull-secret-injector completions bash)`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
struct Serve {
    /// File mode: the config (raw config YAML or a ConfigMap manifest), reloaded when it changes.
    #[arg(long)]
    config: Option<PathBuf>,
    /// File mode: manifests (files or directories) standing for Namespaces and Secrets,
    /// reloaded when they change.
    #[arg(long)]
    cluster: Vec<PathBuf>,
    /// The injector's own namespace, which is never injected into.
    #[arg(long, env = "POD_NAMESPACE", default_value = DEFAULT_OWN_NAMESPACE)]
    own_namespace: String,
    /// Address for HTTPS admission reviews.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Address for plain-HTTP Prometheus metrics (/metrics).
    #[arg(long, default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,
    /// The serving certificate (PEM, leaf first), reloaded when it changes.
    #[arg(long, env = "TLS_CERT_FILE", required_unless_present = "self_signed")]
    tls_cert: Option<PathBuf>,
    /// The serving certificate's private key (PEM).
    #[arg(long, env = "TLS_KEY_FILE", required_unless_present = "self_signed")]
    tls_key: Option<PathBuf>,
    /// Cluster mode: make and renew a CA and serving certificate, keep them in a Secret shared
    /// by the replicas, and set the webhook's caBundle (instead of --tls-cert/--tls-key).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    self_signed: bool,
    /// Self-signed mode: the Service kube-apiserver calls; the certificate is for
    /// SERVICE.NAMESPACE.svc.
    #[arg(long, default_value = "pull-secret-injector")]
    service_name: String,
    /// Self-signed mode: the Secret (in the own namespace) holding the certificate.
    #[arg(long, default_value = "pull-secret-injector-tls")]
    tls_secret: String,
    /// Self-signed mode: the MutatingWebhookConfiguration whose caBundle is kept.
    #[arg(long, default_value = "pull-secret-injector")]
    webhook_configuration: String,
    /// Self-signed mode: validity of each certificate; a new one is made when less than a
    /// third is left.
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    self_signed_validity: Duration,
    /// A PEM CA bundle: reviews are answered only when the client presents a certificate it
    /// signed (kube-apiserver does, given an AdmissionConfiguration kubeConfigFile); /healthz
    /// and /readyz stay open for kubelet's probes. Read at start.
    #[arg(long, env = "CLIENT_CA_FILE")]
    client_ca: Option<PathBuf>,
    /// How often the certificate and config files are checked for changes.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
    /// Admission requests handled at once; more wait.
    #[arg(long, default_value_t = 64)]
    max_concurrent_requests: usize,
    /// Time allowed for a TLS handshake, request headers and a request body, each.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// After SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text", env = "LOG_FORMAT")]
    log_format: LogFormat,
    /// Cluster mode: a kubeconfig file (default: the in-cluster config, then KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Cluster mode: the config ConfigMap as NAMESPACE/NAME (key config.yaml) [default:
    /// OWN_NAMESPACE/pull-secret-injector].
    #[arg(long)]
    config_map: Option<String>,
    /// Cluster mode: how long an admission waits for a missing copy to be created before
    /// answering (the copy is then retried in the background).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    copy_timeout: Duration,
    /// Cluster mode: how often every watch lists again from scratch, bounding how stale a
    /// silently stalled watch can leave the caches.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    resync_interval: Duration,
    /// Cluster mode: how often every ServiceAccount in scope is checked for missing pull
    /// secrets.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    backfill_interval: Duration,
    /// Cluster mode: how soon failed copies, updates and patches are tried again.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    retry_interval: Duration,
    /// Cluster mode: sustained API requests per second for the reconciler's reads and writes
    /// (watches, and the copies admissions wait for, are not counted).
    #[arg(long, default_value_t = 50)]
    api_qps: u32,
    /// Cluster mode: API requests allowed in a burst above --api-qps.
    #[arg(long, default_value_t = 100)]
    api_burst: u32,
    /// Cluster mode: sustained API requests per second for the copies admissions wait for,
    /// a budget apart from --api-qps so that background work cannot starve them.
    #[arg(long, default_value_t = 20)]
    admission_api_qps: u32,
    /// Cluster mode: API requests allowed in a burst above --admission-api-qps.
    #[arg(long, default_value_t = 40)]
    admission_api_burst: u32,
}

fn serve(s: Serve) -> Result<offline::Output, String> {
    let _logs = telemetry::init(s.log_format);
    let args = ServeArgs {
        config: s.config,
        cluster: s.cluster,
        own_namespace: s.own_namespace,
        listen: s.listen,
        metrics_listen: s.metrics_listen,
        tls: match (s.self_signed, s.tls_cert, s.tls_key) {
            (false, Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (false, _, _) => {
                return Err("--tls-cert and --tls-key are required (or --self-signed)".to_string());
            }
            (true, _, _) => TlsSource::SelfSigned {
                service: s.service_name,
                secret: s.tls_secret,
                webhook_configuration: s.webhook_configuration,
                validity: s.self_signed_validity,
            },
        },
        client_ca: s.client_ca,
        reload_interval: s.reload_interval,
        limits: Limits {
            max_concurrent: s.max_concurrent_requests,
            handshake_timeout: s.request_timeout,
            header_timeout: s.request_timeout,
            body_timeout: s.request_timeout,
            shutdown_grace: s.shutdown_grace,
            ..Limits::default()
        },
        cluster_mode: ClusterOptions {
            kubeconfig: s.kubeconfig,
            config_map: s.config_map,
            copy_timeout: s.copy_timeout,
            resync_interval: s.resync_interval,
            backfill_interval: s.backfill_interval,
            retry_interval: s.retry_interval,
            api_qps: s.api_qps,
            api_burst: s.api_burst,
            admission_api_qps: s.admission_api_qps,
            admission_api_burst: s.admission_api_burst,
        },
    };
    // `run` prints the error, once, on standard error; logging it too would say it twice.
    serve::serve(&args).map_err(|e| e.to_string())?;
    Ok(offline::Output {
        stdout: String::new(),
        stderr: String::new(),
        code: 0,
    })
}

fn write_certs(
    names: &[String],
    client: Option<&str>,
    out: &std::path::Path,
    days: u32,
    force: bool,
) -> Result<offline::Output, String> {
    let generated = match client {
        Some(name) => certs::generate_client(name, days),
        None => certs::generate(names, days),
    }
    .map_err(|e| e.to_string())?;
    let written = certs::write(out, &generated, force).map_err(|e| e.to_string())?;
    let mut stdout = String::new();
    for path in written {
        stdout.push_str(&format!("wrote {}\n", path.display()));
    }
    Ok(offline::Output {
        stdout,
        stderr: String::new(),
        code: 0,
    })
}

/// Runs a parsed command line: prints what the command answers and returns its exit code
/// (2 for an error that stops it, with the reason on standard error).
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(s) => serve(*s),
        Command::Certs {
            names,
            client,
            out,
            days,
            force,
        } => write_certs(&names, client.as_deref(), &out, days, force),
        Command::Check(c) => commands::check(*c).map_err(|e| e.to_string()),
        Command::Review {
            config,
            cluster,
            own_namespace,
            input,
        } => offline::review(&config, &cluster, &own_namespace, &input).map_err(|e| e.to_string()),
        Command::Validate(v) => commands::validate(v).map_err(|e| e.to_string()),
        Command::Audit(a) => commands::audit(*a).map_err(|e| e.to_string()),
        Command::Version { output } => Ok(commands::version(output)),
        Command::Completions { shell } => Ok(commands::completions(shell)),
    };
    match result {
        Ok(out) => {
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            ExitCode::from(u8::try_from(out.code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
