//! What probing taught about each credential at each registry, as the decision reads it. The
//! probes themselves run at the edge (`verify`); this is only their last answer, with the time
//! it came in given by the edge's clock.

use std::collections::BTreeMap;

/// The last answer of a registry about a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeState {
    /// The registry accepted the credential.
    Ok,
    /// The registry refused it explicitly (401 or 403 for these credentials).
    Rejected,
    /// The registry could not be asked (DNS, TCP, TLS, timeout, 5xx).
    Unreachable,
    /// Not probed yet, or the registry does not ask for credentials at all.
    Unknown,
}

impl ProbeState {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeState::Ok => "ok",
            ProbeState::Rejected => "rejected",
            ProbeState::Unreachable => "unreachable",
            ProbeState::Unknown => "unknown",
        }
    }

    /// Every state, for metrics that show one as 1 and the others as 0.
    pub const ALL: [ProbeState; 4] = [
        ProbeState::Ok,
        ProbeState::Rejected,
        ProbeState::Unreachable,
        ProbeState::Unknown,
    ];
}

/// What is known of one credential at one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHealth {
    /// The last answer.
    pub state: ProbeState,
    /// Since when (Unix seconds) the answer has been this one.
    pub since: i64,
    /// How many probes in a row were rejected (0 unless `state` is `Rejected`).
    pub rejections: u32,
    /// When the credential's token expires (Unix seconds), for JWT-shaped passwords.
    pub expires: Option<i64>,
}

impl RegistryHealth {
    /// Whether `skip` mode withholds the credential: refused on two probes in a row.
    pub fn withheld(&self) -> bool {
        self.state == ProbeState::Rejected && self.rejections >= 2
    }
}

/// The health of every (credential, registry) probed, by credential name then registry
/// (`host[:port]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    by_credential: BTreeMap<String, BTreeMap<String, RegistryHealth>>,
    /// The credentials some registry rejects: the decision asks this first, so that an
    /// admission where nothing is rejected looks nothing else up.
    rejected: std::collections::BTreeSet<String>,
}

impl Health {
    /// Nothing known.
    pub fn new() -> Self {
        Self::default()
    }

    /// What is known of `credential` at `registry`.
    pub fn get(&self, credential: &str, registry: &str) -> Option<&RegistryHealth> {
        self.by_credential.get(credential)?.get(registry)
    }

    /// Records an answer.
    pub fn set(&mut self, credential: &str, registry: &str, health: RegistryHealth) {
        let registries = self
            .by_credential
            .entry(credential.to_string())
            .or_default();
        registries.insert(registry.to_string(), health);
        let rejected = registries.values().any(|h| h.state == ProbeState::Rejected);
        if rejected {
            self.rejected.insert(credential.to_string());
        } else {
            self.rejected.remove(credential);
        }
    }

    /// Whether some registry's last answer about `credential` was a rejection.
    pub fn rejected_somewhere(&self, credential: &str) -> bool {
        self.rejected.contains(credential)
    }

    /// Forgets every credential `keep` refuses (one removed from the config, say).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        for (credential, registries) in &mut self.by_credential {
            registries.retain(|registry, _| keep(credential, registry));
        }
        self.by_credential.retain(|_, r| !r.is_empty());
        let by_credential = &self.by_credential;
        self.rejected.retain(|c| {
            by_credential
                .get(c)
                .is_some_and(|r| r.values().any(|h| h.state == ProbeState::Rejected))
        });
    }

    /// Every (credential, registry, health).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &RegistryHealth)> {
        self.by_credential.iter().flat_map(|(c, r)| {
            r.iter()
                .map(move |(registry, h)| (c.as_str(), registry.as_str(), h))
        })
    }

    /// The registries known for one credential.
    pub fn of(&self, credential: &str) -> impl Iterator<Item = (&str, &RegistryHealth)> {
        self.by_credential
            .get(credential)
            .into_iter()
            .flat_map(|r| r.iter().map(|(k, v)| (k.as_str(), v)))
    }
}

/// `2026-12-01T10:00:00Z` for Unix seconds, in UTC: how warnings say since when.
pub fn utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days: proleptic Gregorian, no table, no clock.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_somewhere_follows_every_set_and_retain() {
        let at = |state| RegistryHealth {
            state,
            since: 0,
            rejections: u32::from(state == ProbeState::Rejected),
            expires: None,
        };
        let mut h = Health::new();
        h.set("icr", "us.icr.io", at(ProbeState::Ok));
        assert!(!h.rejected_somewhere("icr"));
        h.set("icr", "de.icr.io", at(ProbeState::Rejected));
        assert!(h.rejected_somewhere("icr"));
        h.set("icr", "us.icr.io", at(ProbeState::Unreachable));
        assert!(
            h.rejected_somewhere("icr"),
            "another registry still rejects it"
        );
        h.set("icr", "de.icr.io", at(ProbeState::Ok));
        assert!(!h.rejected_somewhere("icr"));
        h.set("hub", "index.docker.io", at(ProbeState::Rejected));
        h.retain(|c, _| c != "hub");
        assert!(
            !h.rejected_somewhere("hub"),
            "a forgotten credential is not rejected"
        );
    }

    #[test]
    fn utc_formats_unix_seconds() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1796083200), "2026-12-01T00:00:00Z");
        assert_eq!(utc(1796086861), "2026-12-01T01:01:01Z");
    }

    #[test]
    fn two_rejections_in_a_row_withhold() {
        let mut h = RegistryHealth {
            state: ProbeState::Rejected,
            since: 0,
            rejections: 1,
            expires: None,
        };
        assert!(!h.withheld());
        h.rejections = 2;
        assert!(h.withheld());
        h.state = ProbeState::Unreachable;
        assert!(!h.withheld());
    }
}
