//! `serve --config FILE --cluster PATH...`: the state the webhook serves, read from the same
//! files as `check` and `review`, and read again when they change.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::admission::slot::{Snapshot, View};
use crate::config::Config;
use crate::inputs::{InputError, collect_files};
use crate::policy::Catalog;
use crate::reload::Fingerprint;
use crate::view::ClusterState;

/// The config file and cluster manifests a file-mode server serves from.
#[derive(Debug)]
pub struct FileSource {
    config: PathBuf,
    cluster: Vec<PathBuf>,
    own_namespace: String,
    // The content last loaded or refused, so that an unchanged broken file is reported once.
    seen: Mutex<Option<Fingerprint>>,
}

fn read_text(path: &std::path::Path) -> Result<(String, Vec<u8>), InputError> {
    let bytes = std::fs::read(path).map_err(|source| InputError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let text = String::from_utf8(bytes.clone()).map_err(|_| InputError::Read {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })?;
    Ok((text, bytes))
}

impl FileSource {
    /// A source for these files; nothing is read until [`FileSource::poll`].
    pub fn new(config: PathBuf, cluster: Vec<PathBuf>, own_namespace: String) -> Self {
        FileSource {
            config,
            cluster,
            own_namespace,
            seen: Mutex::new(None),
        }
    }

    /// Reads every file; returns a new snapshot when their content changed since the last call,
    /// `None` when it did not, and an error (once per distinct content) when it cannot be used.
    pub fn poll(&self) -> Result<Option<Snapshot>, InputError> {
        let (config_text, config_bytes) = read_text(&self.config)?;
        let mut files = Vec::new();
        for path in &self.cluster {
            collect_files(path, &mut files)?;
        }
        let mut manifests = Vec::with_capacity(files.len());
        for file in files {
            let (text, bytes) = read_text(&file)?;
            manifests.push((file, text, bytes));
        }
        let names: Vec<String> = manifests
            .iter()
            .map(|(p, _, _)| p.display().to_string())
            .collect();
        let fingerprint = Fingerprint::of(
            std::iter::once(config_bytes.as_slice())
                .chain(names.iter().map(|n| n.as_bytes()))
                .chain(manifests.iter().map(|(_, _, b)| b.as_slice())),
        );
        {
            let mut seen = crate::lock::lock(&self.seen);
            if *seen == Some(fingerprint) {
                return Ok(None);
            }
            *seen = Some(fingerprint);
        }
        let config = Config::from_yaml(&config_text)
            .map_err(|source| InputError::Config {
                path: self.config.display().to_string(),
                source,
            })?
            .place_minted(&self.own_namespace);
        let mut state = ClusterState::new();
        for (name, (_, text, _)) in names.iter().zip(&manifests) {
            state.load_manifests(name, text)?;
        }
        let catalog = Catalog::build(config, &state, Some(&self.own_namespace));
        Ok(Some(Snapshot {
            catalog,
            view: View::Files(state),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "credentials:\n  - name: icr\n    secret: default/all-icr-io\n    namespaces: {include: [\"*\"]}\n";

    #[test]
    fn poll_loads_once_reports_changes_and_keeps_nothing_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        let cluster = dir.path().join("cluster");
        std::fs::create_dir(&cluster).unwrap();
        std::fs::write(&config, CONFIG).unwrap();
        std::fs::write(
            cluster.join("ns.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n",
        )
        .unwrap();
        let source = FileSource::new(config.clone(), vec![cluster.clone()], "psi".into());
        let first = source.poll().unwrap().expect("first poll loads");
        assert_eq!(first.catalog.config().credentials.len(), 1);
        assert!(source.poll().unwrap().is_none(), "unchanged files");

        std::fs::write(&config, "credentials: [").unwrap();
        let err = source.poll().unwrap_err();
        assert!(err.to_string().contains("config.yaml"), "{err}");
        assert!(
            source.poll().unwrap().is_none(),
            "a broken file is reported once"
        );

        std::fs::write(&config, CONFIG.replace("icr", "icr2")).unwrap();
        assert!(source.poll().unwrap().is_some());
        // A new manifest file is a change even if the config is not.
        std::fs::write(
            cluster.join("ns2.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n",
        )
        .unwrap();
        let snap = source.poll().unwrap().unwrap();
        let View::Files(state) = &snap.view else {
            panic!("file mode serves a file view")
        };
        assert_eq!(state.namespaces().count(), 2);
    }
}
