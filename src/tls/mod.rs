//! The serving certificate: loaded from PEM files, swapped in place when the files change, so
//! new handshakes get the new certificate while open connections carry on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::reload::Fingerprint;

pub mod certs;

/// Why a certificate and key pair cannot be served. Each names what was given (the flag and
/// its path, or the Secret) and the cause in words, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{name}: cannot read it: {source}")]
    Read {
        /// The flag and file (`--tls-cert /path`).
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate file holds no usable certificate.
    #[error("{name}: {reason}")]
    Certificate {
        /// The flag and file, or the Secret's key.
        name: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The key file holds no usable private key.
    #[error("{name}: {reason}")]
    Key {
        /// The flag and file, or the Secret's key.
        name: String,
        /// What is wrong, without key material.
        reason: String,
    },
    /// The key does not belong to the certificate, or rustls refuses the pair.
    #[error("{cert} and {key}: {reason}")]
    Pair {
        /// The certificate's flag and file.
        cert: String,
        /// The key's flag and file.
        key: String,
        /// Why, in words.
        reason: String,
    },
    /// The TLS configuration could not be built.
    #[error("cannot configure TLS: {0}")]
    Config(String),
}

/// The crypto provider every TLS object here uses (ring: no C toolchain beyond cc).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What [`ServingCert::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files hold what is already served.
    Unchanged,
    /// A new pair is served from now on.
    Replaced,
}

/// The certificate and key served, with the files they came from.
pub struct ServingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    // What errors call them: the flag and path, or the Secret's key.
    cert_name: String,
    key_name: String,
    current: ArcSwap<CertifiedKey>,
    // The last content seen, good or bad: a bad pair is reported once, not at every poll.
    seen: Mutex<Fingerprint>,
}

impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn read(name: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        name: name.to_string(),
        source,
    })
}

/// A PEM reader's complaint as the reason a file holds no certificate: "no items found" says
/// nothing to someone who handed over the wrong file.
fn no_certificate(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM certificate in it".to_string(),
        e => format!("no PEM certificate in it: {e}"),
    }
}

fn parse_pair(
    cert_name: &str,
    cert_pem: &[u8],
    key_name: &str,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            name: cert_name.to_string(),
            reason: no_certificate(&e),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            name: cert_name.to_string(),
            reason: "no PEM certificate in it".to_string(),
        });
    }
    // The PEM error names a section kind or position, never key bytes.
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key {
        name: key_name.to_string(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no PEM private key in it".to_string(),
            e => format!("no PEM private key in it: {e}"),
        },
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => TlsError::Pair {
            cert: cert_name.to_string(),
            key: key_name.to_string(),
            reason: "the key does not belong to the certificate".to_string(),
        },
        // ring's only refusal of a well-formed PEM key: its algorithm or encoding.
        rustls::Error::General(_) => TlsError::Key {
            name: key_name.to_string(),
            reason: "the private key in it is not an RSA, ECDSA or Ed25519 key that can be used"
                .to_string(),
        },
        rustls::Error::InvalidCertificate(why) => TlsError::Certificate {
            name: cert_name.to_string(),
            reason: format!("the certificate in it cannot be parsed ({why:?})"),
        },
        e => TlsError::Pair {
            cert: cert_name.to_string(),
            key: key_name.to_string(),
            reason: e.to_string(),
        },
    })
}

impl ServingCert {
    /// Loads the pair given as `serve --tls-cert` and `--tls-key`; fails, naming the flag,
    /// when either file is unreadable or they do not match.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert_name = format!("--tls-cert {}", cert_path.display());
        let key_name = format!("--tls-key {}", key_path.display());
        let cert_pem = read(&cert_name, cert_path)?;
        let key_pem = read(&key_name, key_path)?;
        let pair = parse_pair(&cert_name, &cert_pem, &key_name, &key_pem)?;
        Ok(ServingCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            cert_name,
            key_name,
            current: ArcSwap::from_pointee(pair),
            seen: Mutex::new(Fingerprint::of([cert_pem.as_slice(), key_pem.as_slice()])),
        })
    }

    /// Re-reads the files. A new valid pair replaces the served one; an invalid one is an error
    /// and the old pair keeps serving. Content already seen (served or refused) is `Unchanged`,
    /// so a broken pair left on disk is reported once.
    pub fn reload(&self) -> Result<Reload, TlsError> {
        // Read both before comparing: a rotation replaces them together.
        let cert_pem = read(&self.cert_name, &self.cert_path)?;
        let key_pem = read(&self.key_name, &self.key_path)?;
        let fingerprint = Fingerprint::of([cert_pem.as_slice(), key_pem.as_slice()]);
        {
            let mut seen = crate::lock::lock(&self.seen);
            if *seen == fingerprint {
                return Ok(Reload::Unchanged);
            }
            *seen = fingerprint;
        }
        let pair = parse_pair(&self.cert_name, &cert_pem, &self.key_name, &key_pem)?;
        self.current.store(Arc::new(pair));
        Ok(Reload::Replaced)
    }

    /// A pair held in memory (self-signed mode); `origin` names where it came from in errors.
    /// [`ServingCert::reload`] has no files to read for it: use [`ServingCert::replace_pem`].
    pub fn from_pem(origin: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let cert_name = format!("{origin} tls.crt");
        let key_name = format!("{origin} tls.key");
        let pair = parse_pair(&cert_name, cert_pem, &key_name, key_pem)?;
        Ok(ServingCert {
            cert_path: PathBuf::from(&cert_name),
            key_path: PathBuf::from(&key_name),
            cert_name,
            key_name,
            current: ArcSwap::from_pointee(pair),
            seen: Mutex::new(Fingerprint::of([cert_pem, key_pem])),
        })
    }

    /// Serves a new in-memory pair, unless it is the one served already.
    pub fn replace_pem(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Reload, TlsError> {
        let fingerprint = Fingerprint::of([cert_pem, key_pem]);
        let mut seen = crate::lock::lock(&self.seen);
        if *seen == fingerprint {
            return Ok(Reload::Unchanged);
        }
        let pair = parse_pair(&self.cert_name, cert_pem, &self.key_name, key_pem)?;
        *seen = fingerprint;
        self.current.store(Arc::new(pair));
        Ok(Reload::Replaced)
    }

    /// The DER of the certificate served now (the leaf first).
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.load().cert.clone()
    }

    /// A rustls server configuration that always serves the current pair: TLS 1.2 and 1.3,
    /// ALPN `h2` then `http/1.1`. With `client_ca`, a client certificate is verified against it
    /// when one is presented; whether one is required is the HTTP layer's call (kubelet's
    /// probes present none, kube-apiserver presents one when its AdmissionConfiguration says
    /// so).
    pub fn server_config(
        self: &Arc<Self>,
        client_ca: Option<&ClientCa>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    ca.roots.clone(),
                    provider(),
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(format!("--client-ca {}: {e}", ca.path.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The CA bundle client certificates must chain to (`serve --client-ca`).
#[derive(Debug, Clone)]
pub struct ClientCa {
    path: PathBuf,
    roots: Arc<rustls::RootCertStore>,
}

impl ClientCa {
    /// Loads every certificate of a PEM bundle as a trust root; fails naming the file when it
    /// is unreadable or holds none.
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let name = format!("--client-ca {}", path.display());
        let pem = read(&name, path)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certificate {
                name: name.clone(),
                reason: no_certificate(&e),
            })?;
        let found = certs.len();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::Certificate {
                name,
                reason: if found == 0 {
                    "no PEM certificate in it".to_string()
                } else {
                    "none of its certificates can be parsed as a CA".to_string()
                },
            });
        }
        Ok(ClientCa {
            path: path.to_path_buf(),
            roots: Arc::new(roots),
        })
    }
}

#[derive(Debug)]
struct Resolver(Arc<ServingCert>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::certs;
    use super::*;

    fn write_pair(dir: &Path, names: &[&str]) -> certs::Generated {
        let g =
            certs::generate(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>(), 1).unwrap();
        certs::write(dir, &g, true).unwrap();
        g
    }

    fn paths(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join(certs::CERT_FILE), dir.join(certs::KEY_FILE))
    }

    #[test]
    fn reload_swaps_a_good_pair_and_keeps_the_old_one_on_a_bad_pair() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_pair(dir.path(), &["a.svc"]);
        let (cert, key) = paths(dir.path());
        let serving = ServingCert::load(&cert, &key).unwrap();
        let first_der = CertificateDer::from_pem_slice(first.cert_pem.as_bytes()).unwrap();
        assert_eq!(serving.current_chain()[0], first_der);
        assert_eq!(serving.reload().unwrap(), Reload::Unchanged);

        let second = write_pair(dir.path(), &["b.svc"]);
        assert_eq!(serving.reload().unwrap(), Reload::Replaced);
        let second_der = CertificateDer::from_pem_slice(second.cert_pem.as_bytes()).unwrap();
        assert_eq!(serving.current_chain()[0], second_der);

        // A key from another pair: refused once, then not reported again, old pair served.
        let third = certs::generate(&["c.svc".to_string()], 1).unwrap();
        std::fs::write(&key, third.key_pem.as_bytes()).unwrap();
        let err = serving.reload().unwrap_err();
        assert!(matches!(err, TlsError::Pair { .. }), "{err}");
        assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
        assert_eq!(serving.reload().unwrap(), Reload::Unchanged);
        assert_eq!(serving.current_chain()[0], second_der);

        // Garbage in the key file.
        std::fs::write(&key, b"not a key").unwrap();
        assert!(matches!(serving.reload(), Err(TlsError::Key { .. })));
        assert_eq!(serving.current_chain()[0], second_der);
    }

    #[test]
    fn load_names_the_file_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(dir.path());
        let err = ServingCert::load(&cert, &key).unwrap_err();
        assert!(err.to_string().contains("tls.crt"), "{err}");
        write_pair(dir.path(), &["a.svc"]);
        std::fs::write(&cert, b"").unwrap();
        let err = ServingCert::load(&cert, &key).unwrap_err();
        assert!(matches!(err, TlsError::Certificate { .. }), "{err}");
        assert!(err.to_string().contains("tls.crt"), "{err}");
    }

    #[test]
    fn a_client_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        assert!(matches!(ClientCa::load(&path), Err(TlsError::Read { .. })));
        std::fs::write(&path, b"").unwrap();
        let err = ClientCa::load(&path).unwrap_err();
        assert!(err.to_string().contains("ca.crt"), "{err}");
        let g = certs::generate_client("kube-apiserver", 1).unwrap();
        std::fs::write(&path, g.ca_pem.as_bytes()).unwrap();
        assert!(ClientCa::load(&path).is_ok());
    }
}
