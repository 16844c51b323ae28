//! Answers to reviews that repeat. kube-apiserver sends the same body, byte for byte but for
//! the request's uid, for the pods a ReplicaSet, Job or DaemonSet creates in one burst: they
//! have no name yet (`generateName` is resolved after admission) and their managedFields time
//! has one-second resolution. Such a review is answered from the earlier answer with the uid
//! swapped, without reading or deciding it again, as long as nothing the decision read has
//! changed: the same [`Snapshot`] and the same [`ClusterView::changes`] count.
//!
//! Why that is exact: the two bodies differ only inside one JSON string made of ASCII letters,
//! digits and `-` (checked), so they are valid or invalid together and read to the same
//! request but for `request.uid` (checked to be that string: the first `"uid":"` of the body,
//! and serde refuses a second `uid` key in `request`). The decision is a pure function of the
//! catalog, the view and the request, and the uid reaches only the answer's `uid`, which is
//! swapped.
//!
//! [`ClusterView::changes`]: crate::view::ClusterView::changes

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};

use super::slot::Snapshot;
use super::{Outcome, Reviewed};

/// The key before the request's uid in kube-apiserver's (compact) bodies.
const UID_KEY: &[u8] = br#""uid":""#;
/// Longest uid reused; kube-apiserver's are 36-character UUIDs.
const MAX_UID: usize = 128;
/// Bodies above this are not remembered, so the memory held stays under
/// `ENTRIES * MAX_BODY` (16 MiB) and is typically `ENTRIES` times a pod's review (1-2 MiB).
const MAX_BODY: usize = 64 * 1024;
/// Distinct reviews remembered; a new one past this replaces an arbitrary one.
const ENTRIES: usize = 256;
/// Reviews seen once, by key; past this the set starts over. An answer is remembered at its
/// review's second sighting, so that reviews that never repeat cost a hash, not a copy.
const SIGHTINGS: usize = 4096;
/// How much of the body after the uid the key covers; an entry holds the whole body, and a
/// hit compares all of it.
const KEYED_BYTES: usize = 2048;

/// The answers to remember and reuse, shared by all connections.
pub struct Repeats {
    memory: Mutex<Memory>,
    hasher: foldhash::fast::FixedState,
}

#[derive(Default)]
struct Memory {
    entries: HashMap<u64, Arc<Entry>>,
    sighted: HashSet<u64>,
    /// The snapshot (address) and view count of the entries: another one drops them all.
    world: Option<(usize, u64)>,
}

impl std::fmt::Debug for Repeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repeats")
            .field("entries", &self.len())
            .finish()
    }
}

impl Default for Repeats {
    fn default() -> Self {
        Repeats {
            memory: Mutex::new(Memory::default()),
            hasher: foldhash::fast::FixedState::default(),
        }
    }
}

/// One remembered review and its answer, split around the uid.
struct Entry {
    /// Held, not just compared by address, so that the address cannot be reused meanwhile.
    snapshot: Arc<Snapshot>,
    changes: u64,
    before_uid: Box<[u8]>,
    after_uid: Box<[u8]>,
    answer_before_uid: Box<[u8]>,
    answer_after_uid: Box<[u8]>,
    outcome: Arc<Outcome>,
    warnings: usize,
}

/// An answer made from a remembered one.
#[derive(Debug)]
pub struct Reused {
    /// The AdmissionReview response body, with this review's uid.
    pub body: Vec<u8>,
    /// This review's uid.
    pub uid: String,
    /// What the remembered review led to (the same for this one).
    pub outcome: Arc<Outcome>,
    /// How many warnings the answer carries.
    pub warnings: usize,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// The answer, made from a remembered one.
    Reused(Reused),
    /// Nothing to reuse; when `Some`, this review was seen before, and its answer is worth
    /// remembering ([`Repeats::remember`]).
    Miss(Option<Ticket>),
}

/// Where a missed review's uid is and what its key is, for [`Repeats::remember`].
#[derive(Debug)]
pub struct Ticket {
    key: u64,
    start: usize,
    end: usize,
}

/// Where the body's first `"uid":"` value is, when it is a plain uid (letters, digits, `-`).
fn uid_span(body: &[u8]) -> Option<(usize, usize)> {
    let start = memchr::memmem::find(body, UID_KEY)? + UID_KEY.len();
    let len = body[start..]
        .iter()
        .take(MAX_UID + 1)
        .position(|&b| b == b'"')?;
    let uid = &body[start..start + len];
    uid.iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        .then_some((start, start + len))
}

impl Repeats {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&self, body: &[u8], start: usize, end: usize) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_usize(body.len());
        h.write_usize(start);
        h.write(&body[..start]);
        h.write(&body[end..body.len().min(end + KEYED_BYTES)]);
        h.finish()
    }

    /// The answer to `body` if an identical review (but for its uid) was answered from
    /// `snapshot` at view count `changes`.
    pub fn answer(&self, body: &[u8], snapshot: &Arc<Snapshot>, changes: u64) -> Lookup {
        let Some((start, end)) = uid_span(body).filter(|_| body.len() <= MAX_BODY) else {
            return Lookup::Miss(None);
        };
        let key = self.key(body, start, end);
        let entry = {
            let mut memory = crate::lock::lock(&self.memory);
            match memory.entries.get(&key) {
                Some(entry) => entry.clone(),
                None => {
                    if memory.sighted.contains(&key) {
                        return Lookup::Miss(Some(Ticket { key, start, end }));
                    }
                    if memory.sighted.len() >= SIGHTINGS {
                        memory.sighted.clear();
                    }
                    memory.sighted.insert(key);
                    return Lookup::Miss(None);
                }
            }
        };
        let (before, after) = (&body[..start], &body[end..]);
        if !Arc::ptr_eq(&entry.snapshot, snapshot)
            || entry.changes != changes
            || *entry.before_uid != *before
            || *entry.after_uid != *after
        {
            return Lookup::Miss(Some(Ticket { key, start, end }));
        }
        let uid = &body[start..end];
        let mut answer = Vec::with_capacity(
            entry.answer_before_uid.len() + uid.len() + entry.answer_after_uid.len(),
        );
        answer.extend_from_slice(&entry.answer_before_uid);
        answer.extend_from_slice(uid);
        answer.extend_from_slice(&entry.answer_after_uid);
        Lookup::Reused(Reused {
            body: answer,
            // Checked to be ASCII by `uid_span`.
            uid: String::from_utf8_lossy(uid).into_owned(),
            outcome: entry.outcome.clone(),
            warnings: entry.warnings,
        })
    }

    /// Remembers the answer to `body` (the one `ticket` was issued for), whose request uid
    /// `uid` borrows from it, decided from `snapshot` at view count `changes`. Only call it
    /// for answers that depend on nothing else (no copies made, no namespace waited for).
    /// Returns whether it was remembered: not when the uid read is not the one `uid_span`
    /// found (escaped, or not the first `"uid"` key), or the answer does not hold it.
    pub fn remember(
        &self,
        ticket: Ticket,
        body: &[u8],
        uid: &str,
        snapshot: &Arc<Snapshot>,
        changes: u64,
        reviewed: &Reviewed,
    ) -> bool {
        let Ticket { key, start, end } = ticket;
        // The uid read must be this very string of the body, not an equal one elsewhere.
        let offset = (uid.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        if offset != start || end - start != uid.len() || end > body.len() {
            return false;
        }
        let answer = &reviewed.body;
        let Some(at) = memchr::memmem::find(answer, UID_KEY).map(|i| i + UID_KEY.len()) else {
            return false;
        };
        if !answer[at..].starts_with(uid.as_bytes()) || answer.get(at + uid.len()) != Some(&b'"') {
            return false;
        }
        let entry = Arc::new(Entry {
            snapshot: snapshot.clone(),
            changes,
            before_uid: body[..start].into(),
            after_uid: body[end..].into(),
            answer_before_uid: answer[..at].into(),
            answer_after_uid: answer[at + uid.len()..].into(),
            outcome: Arc::new(reviewed.outcome.clone()),
            warnings: reviewed.response.warnings.len(),
        });
        let world = (Arc::as_ptr(snapshot) as usize, changes);
        let mut memory = crate::lock::lock(&self.memory);
        // Answers from another snapshot or view count are never reused again: dropping them
        // keeps old snapshots from being held.
        if memory.world != Some(world) {
            memory.entries.clear();
            memory.world = Some(world);
        }
        if memory.entries.len() >= ENTRIES
            && !memory.entries.contains_key(&key)
            && let Some(old) = memory.entries.keys().next().copied()
        {
            memory.entries.remove(&old);
        }
        memory.entries.insert(key, entry);
        true
    }

    /// How many answers are remembered.
    pub fn len(&self) -> usize {
        crate::lock::lock(&self.memory).entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::slot::View;
    use crate::config::Config;
    use crate::policy::Catalog;
    use crate::view::ClusterState;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    const CONFIG: &str = r#"
credentials:
  - name: icr
    secret: default/all-icr-io
    namespaces: {include: ["*"]}
"#;

    fn snapshot() -> Arc<Snapshot> {
        let mut state = ClusterState::new();
        let auth = STANDARD.encode(r#"{"auths":{"us.icr.io":{"auth":"dTpmYWtl"}}}"#);
        let secret = format!(
            r#"{{"apiVersion":"v1","kind":"Secret","type":"kubernetes.io/dockerconfigjson",
            "metadata":{{"name":"all-icr-io","namespace":"default"}},
            "data":{{".dockerconfigjson":"{auth}"}}}}"#
        );
        state.load_manifests("test", &secret).unwrap();
        let catalog = Catalog::build(Config::from_yaml(CONFIG).unwrap(), &state, Some("psi"));
        Arc::new(Snapshot {
            catalog,
            view: View::Files(state),
        })
    }

    /// A pod review as kube-apiserver writes it: compact, `request.uid` first.
    fn body(uid: &str, image: &str) -> Vec<u8> {
        format!(
            r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"{uid}","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"namespace":"team-a","operation":"CREATE","object":{{"metadata":{{"generateName":"web-7d4b9-","namespace":"team-a","ownerReferences":[{{"kind":"ReplicaSet","name":"web-7d4b9","uid":"9d1c0f38-0000-4000-8000-000000000001"}}]}},"spec":{{"containers":[{{"name":"web","image":"{image}"}}]}}}}}}}}"#
        )
        .into_bytes()
    }

    const UID_A: &str = "0f5b6a1e-1111-2222-3333-444455556666";
    const UID_B: &str = "7c0e2d4f-aaaa-bbbb-cccc-ddddeeeeffff";

    /// Looks `body` up as the server does, then reads, decides and renders it from
    /// `snapshot`, and remembers the answer when the lookup says so.
    fn answer_once(repeats: &Repeats, snapshot: &Arc<Snapshot>, body: &[u8]) -> Reviewed {
        let ticket = match repeats.answer(body, snapshot, 0) {
            Lookup::Miss(ticket) => ticket,
            Lookup::Reused(_) => panic!("not expected to be remembered yet"),
        };
        let request = super::super::read(body).unwrap();
        let reviewed = snapshot
            .view
            .read(|v| super::super::decide(&snapshot.catalog, v, &request))
            .render()
            .unwrap();
        if let Some(ticket) = ticket {
            repeats.remember(ticket, body, request.uid(), snapshot, 0, &reviewed);
        }
        reviewed
    }

    /// Answers `body` twice: an answer is remembered at the second sighting.
    fn answer_fresh(repeats: &Repeats, snapshot: &Arc<Snapshot>, body: &[u8]) -> Reviewed {
        answer_once(repeats, snapshot, body);
        answer_once(repeats, snapshot, body)
    }

    fn reused(lookup: Lookup) -> Option<Reused> {
        match lookup {
            Lookup::Reused(r) => Some(r),
            Lookup::Miss(_) => None,
        }
    }

    #[test]
    fn a_review_seen_once_is_not_remembered() {
        let (repeats, snapshot) = (Repeats::new(), snapshot());
        answer_once(&repeats, &snapshot, &body(UID_A, "us.icr.io/team/web:1"));
        assert!(repeats.is_empty());
        answer_once(&repeats, &snapshot, &body(UID_B, "us.icr.io/team/web:1"));
        assert_eq!(repeats.len(), 1);
    }

    #[test]
    fn a_repeat_gets_the_answer_a_fresh_review_would_get() {
        let (repeats, snapshot) = (Repeats::new(), snapshot());
        let first = answer_fresh(&repeats, &snapshot, &body(UID_A, "us.icr.io/team/web:1"));
        assert!(first.response.patch.is_some(), "the fixture must inject");
        assert_eq!(repeats.len(), 1);

        let second = body(UID_B, "us.icr.io/team/web:1");
        let reused = reused(repeats.answer(&second, &snapshot, 0)).expect("reused");
        let fresh = snapshot
            .view
            .read(|v| super::super::review(&snapshot.catalog, v, &second))
            .unwrap();
        assert_eq!(reused.body, fresh.body);
        assert_eq!(reused.uid, UID_B);
        assert_eq!(reused.warnings, fresh.response.warnings.len());
        assert_eq!(reused.outcome.verdict, fresh.outcome.verdict);
        assert_eq!(
            reused.outcome.decision.as_ref().map(|d| &d.add),
            fresh.outcome.decision.as_ref().map(|d| &d.add)
        );
    }

    #[test]
    fn any_other_difference_or_a_changed_world_is_not_reused() {
        let (repeats, snapshot) = (Repeats::new(), snapshot());
        answer_fresh(&repeats, &snapshot, &body(UID_A, "us.icr.io/team/web:1"));
        // Another image: a different review.
        assert!(
            reused(repeats.answer(&body(UID_B, "us.icr.io/team/web:2"), &snapshot, 0)).is_none()
        );
        // The view moved on, or another snapshot is served.
        let second = body(UID_B, "us.icr.io/team/web:1");
        assert!(reused(repeats.answer(&second, &snapshot, 1)).is_none());
        assert!(reused(repeats.answer(&second, &self::snapshot(), 0)).is_none());
        // A uid that is not a plain one is never swapped in.
        let odd = body("7c0e2d4f_aaaa", "us.icr.io/team/web:1");
        assert!(reused(repeats.answer(&odd, &snapshot, 0)).is_none());
        let escaped = body(r"7c0e2d4f\u0041", "us.icr.io/team/web:1");
        assert!(reused(repeats.answer(&escaped, &snapshot, 0)).is_none());
        // And the original still is.
        assert!(reused(repeats.answer(&second, &snapshot, 0)).is_some());
    }

    #[test]
    fn only_bodies_whose_first_uid_key_is_the_request_uid_are_remembered() {
        let (repeats, snapshot) = (Repeats::new(), snapshot());
        // An escaped request uid: what was read is not the bytes of the body.
        answer_fresh(
            &repeats,
            &snapshot,
            &body(r"0f5b6a1e\u002d1111", "us.icr.io/team/web:1"),
        );
        assert!(repeats.is_empty());
        // The object, with its owner's uid, before the request's uid: the first `"uid"` key
        // is not the request's.
        let v: serde_json::Value =
            serde_json::from_slice(&body(UID_A, "us.icr.io/team/web:1")).unwrap();
        let r = &v["request"];
        let moved = format!(
            r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"kind":{},"resource":{},"namespace":"team-a","operation":"CREATE","object":{},"uid":"{UID_A}"}}}}"#,
            r["kind"], r["resource"], r["object"]
        );
        assert!(super::super::read(moved.as_bytes()).is_ok());
        answer_fresh(&repeats, &snapshot, moved.as_bytes());
        assert!(repeats.is_empty());
        // Too large to hold.
        let padded = String::from_utf8(body(UID_A, "us.icr.io/team/web:1"))
            .unwrap()
            .replace(
                r#""namespace":"team-a","operation""#,
                &format!(
                    r#""namespace":"team-a","padding":"{}","operation""#,
                    "x".repeat(MAX_BODY)
                ),
            );
        answer_fresh(&repeats, &snapshot, padded.as_bytes());
        assert!(repeats.is_empty());
    }

    #[test]
    fn memory_is_bounded_and_stale_answers_are_dropped() {
        let (repeats, snapshot) = (Repeats::new(), snapshot());
        for i in 0..ENTRIES + 20 {
            answer_fresh(
                &repeats,
                &snapshot,
                &body(UID_A, &format!("us.icr.io/team/web:{i}")),
            );
        }
        assert_eq!(repeats.len(), ENTRIES);
        // An answer from another snapshot drops every answer from the old one.
        let newer = self::snapshot();
        answer_fresh(&repeats, &newer, &body(UID_A, "us.icr.io/team/web:new"));
        assert_eq!(repeats.len(), 1);
    }

    #[test]
    fn every_write_to_the_live_index_moves_its_count() {
        use crate::view::ClusterView;
        use crate::view::live::ClusterIndex;
        let index = ClusterIndex::new();
        let before = index.read().changes();
        drop(index.write());
        let after = index.read().changes();
        assert_ne!(before, after);
        // Reading does not.
        assert_eq!(index.read().changes(), after);
    }
}
