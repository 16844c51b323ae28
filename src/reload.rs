//! Change detection for files that are replaced under a running server (cert-manager and
//! kubelet swap a `..data` symlink; editors rename over the file): compare content digests
//! rather than modification times, which a symlink swap or a coarse clock can hide.

use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Remembers the last failure reported, so that one that persists (a file that stays broken, a
/// watch that keeps failing the same way) is logged and counted once rather than at every poll.
#[derive(Debug, Default)]
pub struct ReportOnce(Mutex<Option<String>>);

impl ReportOnce {
    /// True when `message` differs from the last one reported (which it then becomes).
    pub fn first_time(&self, message: &str) -> bool {
        let mut last = crate::lock::lock(&self.0);
        if last.as_deref() == Some(message) {
            return false;
        }
        *last = Some(message.to_string());
        true
    }

    /// The failure is over: the next one is reported, even if it is the same again. Returns
    /// whether there was one.
    pub fn clear(&self) -> bool {
        crate::lock::lock(&self.0).take().is_some()
    }
}

/// A digest of some files' bytes, to tell whether anything changed since the last load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Digests each part with its length, so that moving bytes between parts changes it.
    pub fn of<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Fingerprint(hasher.finalize().into())
    }
}

/// Calls `check` every `interval` until the returned future is dropped. `check` does its own
/// logging and metrics; a failed check never stops the polling.
pub async fn every(interval: Duration, mut check: impl FnMut()) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; the caller has just loaded.
    ticker.tick().await;
    loop {
        ticker.tick().await;
        check();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_reported_once_until_it_clears() {
        let once = ReportOnce::default();
        assert!(once.first_time("a"));
        assert!(!once.first_time("a"));
        assert!(once.first_time("b"));
        assert!(once.clear());
        assert!(!once.clear());
        assert!(once.first_time("b"));
    }

    #[test]
    fn fingerprint_changes_with_content_and_boundaries() {
        let a = Fingerprint::of([b"ab".as_slice(), b"c".as_slice()]);
        assert_eq!(a, Fingerprint::of([b"ab".as_slice(), b"c".as_slice()]));
        assert_ne!(a, Fingerprint::of([b"a".as_slice(), b"bc".as_slice()]));
        assert_ne!(a, Fingerprint::of([b"ab".as_slice(), b"d".as_slice()]));
    }
}
