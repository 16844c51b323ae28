//! Command line of pull-secret-injector: parses flags and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pull_secret_injector::cli::{self, CheckArgs, DEFAULT_OWN_NAMESPACE};

/// Injects registry pull secrets into Pods and ServiceAccounts exactly as kubelet would use them.
#[derive(Parser)]
#[command(name = "pull-secret-injector", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Which secrets would be injected for these images in a namespace, and why (offline).
    Check {
        /// The config: raw config YAML or a ConfigMap manifest holding config.yaml.
        #[arg(long)]
        config: PathBuf,
        /// Manifests (files or directories) standing for the cluster's Namespaces and Secrets.
        #[arg(long)]
        cluster: Vec<PathBuf>,
        /// The namespace the pod would be created in.
        #[arg(long)]
        namespace: String,
        /// A label of that namespace, key=value (repeatable; overrides the manifests').
        #[arg(long = "namespace-label")]
        namespace_label: Vec<String>,
        /// The injector's own namespace, which is never injected into.
        #[arg(long, env = "POD_NAMESPACE", default_value = DEFAULT_OWN_NAMESPACE)]
        own_namespace: String,
        /// Print JSON: {namespace, imagePullSecrets, images, warnings}.
        #[arg(long)]
        json: bool,
        /// Image references, as written in a pod spec.
        #[arg(required = true)]
        images: Vec<String>,
    },
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
    Validate {
        /// The config: raw config YAML or a ConfigMap manifest holding config.yaml.
        #[arg(long)]
        config: PathBuf,
        /// Optional manifests, to also report missing or unusable source secrets.
        #[arg(long)]
        cluster: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Check {
            config,
            cluster,
            namespace,
            namespace_label,
            own_namespace,
            json,
            images,
        } => cli::check(&CheckArgs {
            config,
            cluster,
            namespace,
            namespace_labels: namespace_label,
            own_namespace,
            json,
            images,
        }),
        Command::Review {
            config,
            cluster,
            own_namespace,
            input,
        } => cli::review(&config, &cluster, &own_namespace, &input),
        Command::Validate { config, cluster } => cli::validate(&config, &cluster),
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
