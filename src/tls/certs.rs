//! A private CA and a serving certificate for the webhook (`certs` command, tests, and the
//! self-managed mode): what `caBundle` and the Service's DNS names need, nothing more.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// File names written by [`write`], as a Kubernetes TLS Secret names its keys.
pub const CA_FILE: &str = "ca.crt";
/// The serving certificate file.
pub const CERT_FILE: &str = "tls.crt";
/// The serving key file.
pub const KEY_FILE: &str = "tls.key";

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// No name was given.
    #[error("at least one --dns name is needed (the webhook Service's DNS name or an IP)")]
    NoNames,
    /// A name is neither a DNS name nor an IP address.
    #[error("{name:?} is not a DNS name or an IP address: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Validity out of range.
    #[error("--days must be between 1 and 3650, not {0}")]
    Days(u32),
    /// rcgen refused the parameters.
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file exists and `--force` was not given.
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A CA certificate and a serving certificate and key it signed, PEM-encoded.
///
/// The CA's private key is not kept: nothing else can be signed with it later, so a leaked
/// `ca.crt` cannot be used to mint certificates. Renewal makes a new pair and a new `caBundle`.
pub struct Generated {
    /// The CA certificate, for the webhook's `caBundle`.
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key (PKCS#8).
    pub key_pem: String,
    /// When both certificates expire.
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

fn check_name(name: &str) -> Result<(), CertsError> {
    let bad = |reason: &str| CertsError::BadName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if name.is_empty() || name.len() > 253 {
        return Err(bad("a DNS name has 1 to 253 characters"));
    }
    let labels = name.strip_prefix("*.").unwrap_or(name);
    for label in labels.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each dot-separated label has 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(bad(
                "labels hold letters, digits and inner hyphens (a leading '*.' is allowed)",
            ));
        }
    }
    Ok(())
}

/// Makes a CA and a serving certificate valid for `days` days for every name in `names` (an IP
/// address becomes an IP SAN, anything else a DNS SAN; kube-apiserver checks SANs, not the CN).
pub fn generate(names: &[String], days: u32) -> Result<Generated, CertsError> {
    if !(1..=3650).contains(&days) {
        return Err(CertsError::Days(days));
    }
    generate_for(names, Duration::days(i64::from(days)))
}

/// [`generate`] with any validity (self-signed mode renews its own certificates).
pub fn generate_for(names: &[String], validity: Duration) -> Result<Generated, CertsError> {
    if names.is_empty() {
        return Err(CertsError::NoNames);
    }
    for name in names {
        check_name(name)?;
    }
    make(
        names,
        &names[0],
        ExtendedKeyUsagePurpose::ServerAuth,
        validity,
    )
}

/// Makes a CA and a client certificate with common name `name`, valid for `days` days: the
/// pair kube-apiserver presents to the webhook (its AdmissionConfiguration kubeConfigFile),
/// and the CA that `serve --client-ca` trusts.
pub fn generate_client(name: &str, days: u32) -> Result<Generated, CertsError> {
    if !(1..=3650).contains(&days) {
        return Err(CertsError::Days(days));
    }
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(CertsError::BadName {
            name: name.to_string(),
            reason: "a client name has 1 to 64 printable characters".to_string(),
        });
    }
    make(
        &[],
        name,
        ExtendedKeyUsagePurpose::ClientAuth,
        Duration::days(i64::from(days)),
    )
}

fn make(
    names: &[String],
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    validity: Duration,
) -> Result<Generated, CertsError> {
    // An hour of slack so that a node whose clock runs a little behind accepts it at once.
    let not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    let not_after = OffsetDateTime::now_utc() + validity;

    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "pull-secret-injector CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, common_name);
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![usage];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    Ok(Generated {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
        not_after,
    })
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, creating it. Existing files
/// are replaced only with `force`. Returns the paths written.
pub fn write(dir: &Path, generated: &Generated, force: bool) -> Result<Vec<PathBuf>, CertsError> {
    let files = [
        (CA_FILE, &generated.ca_pem, false),
        (CERT_FILE, &generated.cert_pem, false),
        (KEY_FILE, &generated.key_pem, true),
    ];
    if !force {
        for (name, _, _) in &files {
            let path = dir.join(name);
            if path.exists() {
                return Err(CertsError::Exists(path));
            }
        }
    }
    fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::with_capacity(files.len());
    for (name, content, private) in files {
        let path = dir.join(name);
        write_file(&path, content.as_bytes(), private).map_err(|source| CertsError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Writes through a temporary file and a rename, so a server reloading the directory never
/// reads half a file.
fn write_file(path: &Path, content: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp)?;
    file.write_all(content)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn names_are_checked_before_anything_is_generated() {
        assert!(matches!(generate(&[], 30), Err(CertsError::NoNames)));
        for bad in ["", "a..b", "-x.svc", "x_y.svc", "bad name"] {
            let err = generate(&[bad.to_string()], 30).unwrap_err();
            assert!(matches!(err, CertsError::BadName { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(matches!(
            generate(&["x.svc".into()], 0),
            Err(CertsError::Days(0))
        ));
    }

    #[test]
    fn generates_a_ca_and_a_leaf_for_dns_and_ip_names() {
        let g = generate(
            &[
                "pull-secret-injector.psi.svc".into(),
                "127.0.0.1".into(),
                "::1".into(),
            ],
            30,
        )
        .unwrap();
        let ca = CertificateDer::from_pem_slice(g.ca_pem.as_bytes()).unwrap();
        let leaf = CertificateDer::from_pem_slice(g.cert_pem.as_bytes()).unwrap();
        assert_ne!(ca.as_ref(), leaf.as_ref());
        assert!(g.key_pem.contains("PRIVATE KEY"));
        assert!(!format!("{g:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn write_refuses_to_replace_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let g = generate(&["a.svc".into()], 1).unwrap();
        let written = write(dir.path(), &g, false).unwrap();
        assert_eq!(written.len(), 3);
        let err = write(dir.path(), &g, false).unwrap_err();
        assert!(matches!(err, CertsError::Exists(_)), "{err}");
        write(dir.path(), &g, true).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
