//! How credentials are verified against their registries: `verify:` at the top of the config
//! (the default for every credential) and on a credential (its own, over the default).

use std::time::Duration;

use serde::Deserialize;

/// What a registry's refusal of a credential changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Not probed.
    Off,
    /// Probed; a rejected credential is still injected, and everyone is told.
    Warn,
    /// Probed; a credential rejected on two consecutive probes is not injected for that
    /// registry until a probe succeeds again.
    Skip,
}

impl VerifyMode {
    /// The name written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Off => "off",
            VerifyMode::Warn => "warn",
            VerifyMode::Skip => "skip",
        }
    }
}

/// A credential's verification settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    /// What a refusal changes.
    pub mode: VerifyMode,
    /// Time between probes (jittered; longer while a registry is unreachable).
    pub interval: Duration,
    /// Probe over plain HTTP (the credential is sent unencrypted: for lab registries only).
    pub insecure: bool,
    /// Extra CA certificates (PEM) the registry's certificate may chain to, on top of the
    /// system's (the OpenShift internal registry's is the service CA).
    pub ca_bundle: Option<String>,
    /// How long before a token's expiry (`exp` of a JWT password) a warning is raised.
    pub expiry_warning: Duration,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            mode: VerifyMode::Warn,
            interval: Duration::from_secs(600),
            insecure: false,
            ca_bundle: None,
            expiry_warning: Duration::from_secs(72 * 3600),
        }
    }
}

/// `verify:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawVerify {
    mode: Option<String>,
    interval: Option<String>,
    insecure: Option<bool>,
    ca_bundle: Option<String>,
    expiry_warning: Option<String>,
}

/// The shortest interval between probes: a registry is not a health endpoint.
const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// The longest: a day.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

impl RawVerify {
    /// `self` over `base`, with every problem reported through `problem(field, message)`.
    pub(super) fn resolve(
        &self,
        base: &Verify,
        field: &str,
        problem: &mut dyn FnMut(String, String),
    ) -> Verify {
        let mut out = base.clone();
        if let Some(mode) = &self.mode {
            match mode.as_str() {
                "off" => out.mode = VerifyMode::Off,
                "warn" => out.mode = VerifyMode::Warn,
                "skip" => out.mode = VerifyMode::Skip,
                other => problem(
                    format!("{field}.mode"),
                    format!("{other:?} is not one of off, warn, skip"),
                ),
            }
        }
        if let Some(text) = &self.interval {
            match humantime::parse_duration(text) {
                Ok(d) if (MIN_INTERVAL..=MAX_INTERVAL).contains(&d) => out.interval = d,
                Ok(_) => problem(
                    format!("{field}.interval"),
                    format!("{text:?} is outside 30s to 24h"),
                ),
                Err(e) => problem(
                    format!("{field}.interval"),
                    format!("{text:?} is not a duration (like 10m): {e}"),
                ),
            }
        }
        if let Some(text) = &self.expiry_warning {
            match humantime::parse_duration(text) {
                Ok(d) => out.expiry_warning = d,
                Err(e) => problem(
                    format!("{field}.expiryWarning"),
                    format!("{text:?} is not a duration (like 72h): {e}"),
                ),
            }
        }
        if let Some(insecure) = self.insecure {
            out.insecure = insecure;
        }
        if let Some(pem) = &self.ca_bundle {
            match count_certificates(pem) {
                Ok(0) => problem(
                    format!("{field}.caBundle"),
                    "holds no PEM certificate".to_string(),
                ),
                Ok(_) => out.ca_bundle = Some(pem.clone()),
                Err(why) => problem(format!("{field}.caBundle"), why),
            }
        }
        out
    }
}

/// How many PEM certificates a bundle holds, or why it is not PEM.
fn count_certificates(pem: &str) -> Result<usize, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .try_fold(0, |n, c| c.map(|_| n + 1))
        .map_err(|e| format!("is not a PEM certificate bundle: {e}"))
}
