//! When to mint and who mints: the refresh schedule of a minted token and the leader election
//! over the minting Lease, as pure functions of what was stored and the time, so that they are
//! tested without a clock or an API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::marks::{
    EXPIRED_ANNOTATION, EXPIRES_ANNOTATION, MINTED_FOR_LABEL, PROVIDER_ANNOTATION,
    REFRESH_ANNOTATION, SPEC_ANNOTATION,
};

/// What a managed token Secret says about its token.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// When the token stops working.
    pub expires_at: SystemTime,
    /// When it is due for refresh.
    pub refresh_at: SystemTime,
    /// The hash of the source it was minted from.
    pub spec: String,
    /// Whether it is marked expired.
    pub marked_expired: bool,
}

impl Stored {
    /// Reads the annotations of a managed Secret; `None` when any is missing or unreadable
    /// (then the token is minted anew).
    pub fn from_annotations(get: impl Fn(&str) -> Option<String>) -> Option<Stored> {
        Some(Stored {
            expires_at: parse_time(&get(EXPIRES_ANNOTATION)?)?,
            refresh_at: parse_time(&get(REFRESH_ANNOTATION)?)?,
            spec: get(SPEC_ANNOTATION)?,
            marked_expired: get(EXPIRED_ANNOTATION).is_some(),
        })
    }
}

/// RFC 3339 at whole seconds.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Reads [`format_time`]'s output (any RFC 3339 time).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

/// Unix seconds, for metrics.
pub fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Whether a token must be minted now: none stored, minted from another source, or due.
pub fn due(stored: Option<&Stored>, spec: &str, now: SystemTime) -> bool {
    match stored {
        None => true,
        Some(s) => s.spec != spec || now >= s.refresh_at,
    }
}

/// When a token minted at `issued`, valid until `expires_at`, is refreshed: at half its
/// lifetime, moved by `jitter` (in [-1, 1]) times a tenth of it, so that replicas and
/// credentials minted together spread out; not later than a minute before expiry, and not
/// sooner than a minute after the mint, so that a provider answering a token that is already
/// expired (or lives seconds) is not asked again at every pass.
pub fn refresh_at(issued: SystemTime, expires_at: SystemTime, jitter: f64) -> SystemTime {
    let lifetime = expires_at.duration_since(issued).unwrap_or_default();
    let half = lifetime / 2;
    let spread = lifetime.as_secs_f64() / 10.0 * jitter.clamp(-1.0, 1.0);
    let at = if spread >= 0.0 {
        issued + half + Duration::from_secs_f64(spread)
    } else {
        issued + half - Duration::from_secs_f64(-spread).min(half)
    };
    let latest = expires_at
        .checked_sub(Duration::from_secs(60))
        .unwrap_or(issued)
        .max(issued);
    at.min(latest).max(issued + MIN_REFRESH)
}

/// The shortest time between two mints of one credential.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);

/// How long to wait after the `failures`-th failure in a row: 5 s doubling to 5 minutes.
pub fn retry_after(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    (Duration::from_secs(5) * 2u32.pow(exp)).min(Duration::from_secs(300))
}

/// A Lease as the elector reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRecord {
    /// Who holds it (empty: nobody).
    pub holder: String,
    /// How long a holder's claim lasts without renewal.
    pub duration: Duration,
    /// The renew time the holder wrote (only compared for change, never with our clock).
    pub renew_time: String,
    /// How often it changed hands.
    pub transitions: i32,
}

/// What the elector remembers between attempts: the record last read and when (on this
/// replica's clock) it last changed. As client-go's leader election does, expiry is judged by
/// how long the record has stayed the same on our own clock, not by the holder's timestamps,
/// so clock skew between replicas does not matter.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    record: Option<LeaseRecord>,
    changed_at: Option<SystemTime>,
}

/// What to do with the Lease now.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseStep {
    /// Nobody has it: create it with us as holder.
    Create,
    /// Write it with us as holder (renew ours, or take over an expired claim).
    Claim {
        /// Whether this changes hands (counts a transition).
        takeover: bool,
    },
    /// Someone else holds it and their claim is live.
    Follow,
}

impl Observed {
    /// Decides from the Lease just read (`None`: it does not exist).
    pub fn step(&mut self, read: Option<LeaseRecord>, me: &str, now: SystemTime) -> LeaseStep {
        let Some(record) = read else {
            self.record = None;
            self.changed_at = None;
            return LeaseStep::Create;
        };
        if self.record.as_ref() != Some(&record) {
            self.record = Some(record.clone());
            self.changed_at = Some(now);
        }
        if record.holder == me {
            return LeaseStep::Claim { takeover: false };
        }
        let changed_at = self.changed_at.unwrap_or(now);
        if record.holder.is_empty() || now >= changed_at + record.duration {
            LeaseStep::Claim { takeover: true }
        } else {
            LeaseStep::Follow
        }
    }

    /// Forgets what was read, after a write of ours changed it.
    pub fn forget(&mut self) {
        *self = Observed::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn a_token_is_refreshed_at_half_life_spread_by_a_tenth_and_never_in_its_last_minute() {
        let twelve_hours = 12 * 3600;
        assert_eq!(refresh_at(at(0), at(twelve_hours), 0.0), at(6 * 3600));
        assert_eq!(
            refresh_at(at(0), at(twelve_hours), 1.0),
            at(6 * 3600 + 72 * 60)
        );
        assert_eq!(
            refresh_at(at(0), at(twelve_hours), -1.0),
            at(6 * 3600 - 72 * 60)
        );
        // Out-of-range jitter is clamped.
        assert_eq!(
            refresh_at(at(0), at(twelve_hours), 7.0),
            at(6 * 3600 + 72 * 60)
        );
        // A token that lives 150 s: half-life plus jitter would be past its last minute.
        assert_eq!(refresh_at(at(0), at(150), 1.0), at(90));
        // One that lives 90 s, or is already expired: not again for a minute.
        assert_eq!(refresh_at(at(0), at(90), 1.0), at(60));
        assert_eq!(refresh_at(at(100), at(50), 0.0), at(160));
    }

    #[test]
    fn minting_is_due_without_a_stored_token_for_another_source_or_past_refresh_time() {
        let stored = Stored {
            expires_at: at(3600),
            refresh_at: at(1800),
            spec: "s1".into(),
            marked_expired: false,
        };
        assert!(due(None, "s1", at(0)));
        assert!(!due(Some(&stored), "s1", at(1799)));
        assert!(due(Some(&stored), "s1", at(1800)));
        assert!(due(Some(&stored), "s2", at(0)));
    }

    #[test]
    fn stored_annotations_round_trip_and_anything_missing_reads_as_nothing_stored() {
        let annotations = [
            (EXPIRES_ANNOTATION, format_time(at(3600))),
            (REFRESH_ANNOTATION, format_time(at(1800))),
            (SPEC_ANNOTATION, "s1".to_string()),
        ];
        let get = |k: &str| {
            annotations
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            Stored::from_annotations(get),
            Some(Stored {
                expires_at: at(3600),
                refresh_at: at(1800),
                spec: "s1".into(),
                marked_expired: false,
            })
        );
        assert_eq!(
            Stored::from_annotations(|k| (k != SPEC_ANNOTATION).then(|| get(k)).flatten()),
            None
        );
        assert_eq!(
            Stored::from_annotations(|k| if k == EXPIRES_ANNOTATION {
                Some("tomorrow".into())
            } else {
                get(k)
            }),
            None
        );
    }

    #[test]
    fn retries_back_off_from_five_seconds_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    fn record(holder: &str, renew: &str) -> LeaseRecord {
        LeaseRecord {
            holder: holder.into(),
            duration: Duration::from_secs(15),
            renew_time: renew.into(),
            transitions: 0,
        }
    }

    #[test]
    fn a_live_claim_is_followed_and_one_unchanged_for_its_duration_is_taken_over() {
        let mut seen = Observed::default();
        assert_eq!(seen.step(None, "b", at(0)), LeaseStep::Create);
        assert_eq!(
            seen.step(Some(record("a", "t0")), "b", at(0)),
            LeaseStep::Follow
        );
        assert_eq!(
            seen.step(Some(record("a", "t0")), "b", at(14)),
            LeaseStep::Follow
        );
        // The holder renewed: the clock starts again from when we saw the change.
        assert_eq!(
            seen.step(Some(record("a", "t1")), "b", at(14)),
            LeaseStep::Follow
        );
        assert_eq!(
            seen.step(Some(record("a", "t1")), "b", at(28)),
            LeaseStep::Follow
        );
        assert_eq!(
            seen.step(Some(record("a", "t1")), "b", at(29)),
            LeaseStep::Claim { takeover: true }
        );
        // Ours: renew; released (no holder): take at once.
        assert_eq!(
            seen.step(Some(record("b", "t2")), "b", at(30)),
            LeaseStep::Claim { takeover: false }
        );
        assert_eq!(
            Observed::default().step(Some(record("", "t3")), "b", at(30)),
            LeaseStep::Claim { takeover: true }
        );
    }
}
