//! The offline commands (`check`, `review`, `validate`): read files, run the pure core, render.
//! With `--verify`, `check` and `validate` also probe registries ([`verify`]), live.
//! [`check`] explains the decision; `audit` lists what already runs without what it needs.
//!
//! Each command returns its standard output and exit code so that tests can call it directly;
//! `main.rs` only parses flags and prints.

pub mod audit;
pub mod check;
pub mod style;
pub mod validate;
pub mod verify;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::admission;
pub use crate::inputs::{InputError, collect_files, load_cluster, load_config, parse_labels};
use crate::policy::Catalog;
pub use audit::AuditArgs;
pub use check::CheckArgs;
pub use validate::{ValidateArgs, validate};

/// How a command prints its answer (`-o`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// `value` as JSON or YAML (text is JSON too: callers render text themselves), ending in a
/// newline.
pub fn render(format: Format, value: &impl Serialize) -> String {
    let mut text = match format {
        Format::Yaml => serde_yaml::to_string(value).unwrap_or_default(),
        _ => serde_json::to_string_pretty(value).unwrap_or_default(),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The namespace the injector runs in when `POD_NAMESPACE` is not set.
pub const DEFAULT_OWN_NAMESPACE: &str = crate::config::DEFAULT_NAMESPACE;

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
    /// The live cluster cannot be read.
    #[error(transparent)]
    Live(#[from] crate::inspect::InspectError),
    /// The command line asks for something that cannot be done, and says what instead.
    #[error("{0}")]
    Usage(String),
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

/// `review`: answers an AdmissionReview read from a file or `-` (stdin) as `serve` would.
pub fn review(
    config: &Path,
    cluster: &[PathBuf],
    own_namespace: &str,
    input: &str,
) -> Result<Output, CliError> {
    let config = load_config(config)?.place_minted(own_namespace);
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
    let origin = if input == "-" {
        "standard input".to_string()
    } else {
        input.to_string()
    };
    // A JSON parser's "EOF while parsing" would hide the likelier cause: nothing was piped in.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(CliError::Usage(format!("{origin}: empty input")));
    }
    let catalog = Catalog::build(config, &state, Some(own_namespace));
    let reviewed = admission::review(&catalog, &state, &body)
        .map_err(|source| CliError::Review { origin, source })?;
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
