//! Reading what the offline commands and file-mode `serve` are given: a config file (raw YAML
//! or a ConfigMap manifest), cluster manifests (files or directories), label flags. Every error
//! names the file or flag and the cause.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};
use crate::view::{ClusterState, ManifestError};

/// Why an input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config is invalid.
    #[error("{path}: {source}")]
    Config {
        /// The config file.
        path: String,
        /// Every problem.
        source: ConfigError,
    },
    /// A cluster manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A `--namespace-label` value is not `key=value`.
    #[error("--namespace-label {0:?}: expected key=value")]
    Label(String),
}

/// Reads a config file: raw config YAML or a ConfigMap manifest.
pub fn load_config(path: &Path) -> Result<Config, InputError> {
    let text = read(path)?;
    Config::from_yaml(&text).map_err(|source| InputError::Config {
        path: path.display().to_string(),
        source,
    })
}

/// Loads every manifest under the given files and directories (`.yaml`, `.yml`, `.json`,
/// directories recursively, in name order).
pub fn load_cluster(paths: &[PathBuf]) -> Result<ClusterState, InputError> {
    let mut state = ClusterState::new();
    for path in paths {
        let mut files = Vec::new();
        collect_files(path, &mut files)?;
        for file in files {
            let text = read(&file)?;
            state.load_manifests(&file.display().to_string(), &text)?;
        }
    }
    Ok(state)
}

/// Lists the manifest files under a file or directory, recursively and in name order.
pub fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let meta = fs::metadata(path).map_err(|source| InputError::Read {
        path: path.display().to_string(),
        source,
    })?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = fs::read_dir(path)
        .map_err(|source| InputError::Read {
            path: path.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, out)?;
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(entry);
        }
    }
    Ok(())
}

/// Reads a text file, naming it in the error.
pub fn read(path: &Path) -> Result<String, InputError> {
    fs::read_to_string(path).map_err(|source| InputError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Parses `key=value` flags into labels.
pub fn parse_labels(pairs: &[String]) -> Result<BTreeMap<String, String>, InputError> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(InputError::Label(p.clone())),
        })
        .collect()
}
