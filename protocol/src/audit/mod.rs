//! The auditor's streaming replay verifier (DESIGN §6): the pure engine behind
//! `lienthong audit replay` and `lienthong audit report`. No I/O: the caller feeds ledger
//! entries in log order ([`Replayer::push_entry`]) and signed checkpoints
//! ([`Replayer::push_checkpoint`]), supplies roster bytes on demand ([`RosterSource`]), and
//! gets back [`Violation`]s as they are found and a [`Report`] at the end.
//!
//! # What is checked
//! - **Tree hashes.** Every entry is hashed into a streaming RFC 6962 [`TreeBuilder`]
//!   (O(log n) memory). A checkpoint is compared with the replayed root when the replay
//!   reaches its size: checkpoints pushed before the entries they cover (the normal order for
//!   a mirror: read the checkpoints, then stream the tiles) are held until then; one pushed
//!   at exactly the replayed size is compared at once; one pushed late, at a size already
//!   passed, is compared with the root recorded at that size if that size was a checkpoint
//!   size seen earlier, or verified with a consistency proof given to
//!   [`Replayer::push_checkpoint_with_proof`], and otherwise counted as unverified. Since
//!   every checkpoint is compared with the one replayed tree, successive checkpoints are
//!   consistent exactly when each matches; two signed checkpoints of one size with different
//!   roots are reported as a split view with both notes. Checkpoints still beyond the last
//!   entry at [`Replayer::finish`] mean a truncated log.
//! - **Checkpoint signatures**: the log key's signature (C2SP signed-note) and a quorum of
//!   distinct known witnesses' cosignatures (C2SP tlog-cosignature).
//! - **Agency signatures** against the roster in force at that point of the log, in batches
//!   (the rule of `keys::verify_batch`, with keys decoded once per epoch: a failing batch is
//!   re-checked one by one with `verify_strict` to name the bad entry), optionally on several
//!   threads. Senders unknown, suspended, revoked or succeeded in the
//!   roster in force are violations.
//! - **Per-sender chains**: sequence numbers without gaps, `prev` naming the previous logged
//!   envelope, and no two envelopes with one sequence number (equivocation, reported with
//!   both signed headers).
//! - **Statuses**: posted by the right party of the document (a recipient for 01–06/15/16, the
//!   sender for 13) and valid after the recipient's stage ([`StatusChain::apply_mirrored`]:
//!   the log interleaves both parties' statuses, so a recipient's processing status logged
//!   after a 13 it had not yet seen is accepted).
//! - **Roster epochs**: increasing, the bytes matching the recorded digest, and signed by the
//!   threshold of the root keys of the epoch in force; the new epoch applies from that entry
//!   on (revocations take effect there).
//!
//! # Ordering and batching
//! With [`Checks::Structure`] or [`Checks::Full`] entries are buffered and processed in
//! batches (`Limits::batch` entries; `4 × threads` batches at a time, shared out to whichever
//! thread is free, with several threads); a roster entry, a checkpoint and
//! [`Replayer::finish`] flush the buffer. So a violation can be returned by a later `push_entry` call than the one
//! that fed its entry; each carries its index and [`Report::violations`] is sorted. State
//! moves on even past an entry with a bad signature (its sequence number counts), so a forged
//! entry can cause follow-on chain violations next to its [`Violation::BadSignature`].
//!
//! # Memory
//! Flat in the size of the log:
//! - per sender listed in a roster: its last `Limits::chain_window` envelopes (sequence
//!   number, id, index, signed header) to detect gaps, forks and equivocation, which is
//!   bounded by the roster (at most 100,000 agencies). Unlisted senders get no chain state;
//! - per **open** document: its sender, creation time, due date, and per recipient the
//!   status stage. A document is **closed** (forgotten) when every recipient has finished
//!   with it (02, 06 or recalled), when it is older than `Limits::document_horizon_ms`
//!   behind the newest document seen, or when more than `Limits::max_open_documents` are
//!   open (oldest first). Closed documents' ids are remembered (up to
//!   `Limits::max_closed_remembered`, oldest forgotten first) so that a later status on a
//!   finished document is still a violation; a status on an expired document is counted as
//!   unchecked, and once any closed id has been forgotten a status on an unknown document
//!   is counted as unchecked instead of reported;
//! - per agency: fixed counters and three latency histograms (bounded buckets);
//! - per checkpoint size: the recorded root (up to `Limits::max_recorded_roots`) and the
//!   most recent notes (for split-view evidence).

mod cross;
mod stats;
mod violation;

pub use cross::{
    CrossCheckError, MAX_LOGS, Missing, SortedCrossCheck, cross_check, cross_check_sorted,
};
pub use stats::{AgencyStats, Latency, StalledCopy, Stats, due_deadline_ms};
pub use violation::Violation;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::agency::AgencyId;
use crate::content_id::ContentId;
use crate::envelope::{Kind, SignedEnvelope};
use crate::keys::{Signature, SignatureDomain, VerifyingKey};
use crate::ledger::{LedgerEntry, RosterRef};
use crate::rfc6962::{Hash, TreeBuilder, leaf_hash, verify_consistency};
use crate::roster::{AgencyState, Roster, RosterBook, RosterError, SignedRoster};
use crate::signed_note::{Ed25519Verifier, NoteVerifier};
use crate::status::{Party, Stage, StatusChain, StatusCode, StatusError};
use crate::tlog_checkpoint::SignedCheckpoint;
use crate::tlog_cosignature::{CosignatureError, CosignerKey, verify_quorum};

use stats::{Agg, code_slot};

/// Entry bytes buffered before a batch is processed regardless of its length.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// The log being replayed: its origin line, its checkpoint key, and its witnesses.
#[derive(Debug, Clone)]
pub struct LogParams {
    /// The checkpoints' origin line (`<federation>/<central node>`, see
    /// [`log_origin`](crate::ledger::log_origin)).
    pub origin: String,
    /// The log's C2SP note key (Ed25519, named; usually named after the origin).
    pub log_key: Ed25519Verifier,
    /// The witnesses (other central nodes) whose cosignatures count.
    pub witnesses: Vec<CosignerKey>,
    /// Distinct witness cosignatures a checkpoint needs.
    pub quorum: usize,
}

/// How much to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Tree hashes and checkpoints only: entries are not decoded (no chains, statuses,
    /// rosters or statistics).
    HashesOnly,
    /// Everything except agency signatures.
    Structure,
    /// Everything.
    Full,
}

/// Bounds on work and memory (see the module docs for what each forgets).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Entries per signature batch. With several threads, `4 × threads` batches are buffered
    /// and shared out (at most 16 MiB of entries).
    pub batch: usize,
    /// Threads decoding and verifying batches (the calling thread is one of them).
    pub threads: usize,
    /// Envelopes remembered per sender for fork and equivocation evidence.
    pub chain_window: usize,
    /// Open documents tracked at once.
    pub max_open_documents: usize,
    /// Documents older than this behind the newest document seen are closed.
    pub document_horizon_ms: u64,
    /// Ids of closed documents remembered.
    pub max_closed_remembered: usize,
    /// Roots remembered at checkpoint sizes already passed.
    pub max_recorded_roots: usize,
    /// Checkpoints held until the replay reaches their size.
    pub max_pending_checkpoints: usize,
    /// Checkpoint notes kept for split-view evidence.
    pub max_kept_notes: usize,
    /// Violations kept in the report (all are still returned as found).
    pub max_violations: usize,
    /// Stalled copies listed in the statistics.
    pub max_stalled_listed: usize,
    /// Distinct agencies with statistics.
    pub max_tracked_agencies: usize,
    /// Statuses held until the entry they depend on (their document, or the 13 a 15/16
    /// answers) is logged: different nodes submit to a log independently, so a recipient's
    /// status may be logged before the sender's document.
    pub max_parked_statuses: usize,
    /// A held status whose document or request never appears is a violation once it is
    /// older than this at the end of the replay; younger ones are reported as waiting.
    pub parked_grace_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            batch: 256,
            threads: 1,
            chain_window: 4,
            max_open_documents: 250_000,
            document_horizon_ms: 180 * 86_400_000,
            max_closed_remembered: 250_000,
            max_recorded_roots: 100_000,
            max_pending_checkpoints: 100_000,
            max_kept_notes: 1024,
            max_violations: 100_000,
            max_stalled_listed: 100_000,
            max_tracked_agencies: 200_000,
            max_parked_statuses: 100_000,
            parked_grace_ms: 3_600_000,
        }
    }
}

/// Where the roster bytes of a recorded epoch come from (in practice a central node's
/// `/roster/<epoch>`, or a mirror's copy). The replayer checks them against the recorded
/// digest and root signatures, so the source need not be trusted.
pub trait RosterSource {
    /// The signed roster of `epoch` whose roster bytes hash to `digest`, if available.
    fn roster(&mut self, epoch: u64, digest: &[u8; 32]) -> Option<SignedRoster>;
}

impl<F: FnMut(u64, &[u8; 32]) -> Option<SignedRoster>> RosterSource for F {
    fn roster(&mut self, epoch: u64, digest: &[u8; 32]) -> Option<SignedRoster> {
        self(epoch, digest)
    }
}

impl RosterSource for BTreeMap<u64, SignedRoster> {
    fn roster(&mut self, epoch: u64, _digest: &[u8; 32]) -> Option<SignedRoster> {
        self.get(&epoch).cloned()
    }
}

/// Counts of checkpoints by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointCounts {
    /// Pushed.
    pub seen: u64,
    /// Signed by the log and compared with the replayed tree (matching or not).
    pub compared: u64,
    /// Signed by the log, at a size already passed with no recorded root and no proof.
    pub unverified: u64,
    /// Dropped because `Limits::max_pending_checkpoints` were waiting.
    pub dropped: u64,
    /// The largest size at which a checkpoint matched the replay: entries beyond it are not
    /// covered by any signed tree head (the CLI should say so).
    pub covered: u64,
}

/// What the replay forgot to stay within its limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Forgotten {
    /// Documents closed because every recipient finished.
    pub documents_finished: u64,
    /// Documents closed by the horizon.
    pub documents_expired: u64,
    /// Documents closed by the open-document cap.
    pub documents_evicted: u64,
    /// Closed document ids forgotten (after which unknown documents are not reported).
    pub closed_ids_forgotten: u64,
    /// Statuses about documents no longer tracked, not checked.
    pub statuses_unchecked: u64,
    /// Violations beyond `Limits::max_violations`, returned but not kept.
    pub violations_not_kept: u64,
    /// Statuses still waiting at the end for their document or request, younger than
    /// `Limits::parked_grace_ms` (probably still on their way to the log).
    pub statuses_waiting: u64,
}

/// The outcome of a replay.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was checked.
    pub checks: Checks,
    /// Entries replayed (the tree size).
    pub entries: u64,
    /// Root of the replayed tree.
    pub root: Hash,
    /// Envelope headers, of which documents and statuses.
    pub envelopes: u64,
    pub documents: u64,
    pub statuses: u64,
    /// Roster references recorded, and the epoch in force at the end.
    pub roster_entries: u64,
    pub roster_epoch: u64,
    /// Agency signatures that verified.
    pub signatures_verified: u64,
    pub checkpoints: CheckpointCounts,
    pub forgotten: Forgotten,
    /// Violations, by position.
    pub violations: Vec<Violation>,
    /// The statistics for `lienthong audit report`.
    pub stats: Stats,
}

impl Report {
    /// Whether everything verified.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.forgotten.violations_not_kept == 0
    }
}

/// One roster member as the signature check needs it.
#[derive(Debug, Clone)]
struct Member {
    key: VerifyingKey,
    /// The key decoded and checked (not small-order) once, for batches.
    decoded: Option<ed25519_dalek::VerifyingKey>,
    active: bool,
}

#[derive(Debug)]
struct Raw {
    index: u64,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    NotApplicable,
    Unknown,
    Listed { active: bool },
}

#[derive(Debug)]
struct Checked {
    index: u64,
    leaf: Hash,
    bytes: Vec<u8>,
    entry: Result<LedgerEntry, String>,
    sender: Sender,
    signature_ok: Option<bool>,
}

/// One remembered envelope of a sender.
#[derive(Debug)]
struct Recent {
    seq: u64,
    id: ContentId,
    index: u64,
    header: Vec<u8>,
}

#[derive(Debug)]
struct Copy {
    recipient: u32,
    chain: StatusChain,
}

#[derive(Debug)]
struct OpenDoc {
    index: u64,
    sender: u32,
    created_ms: u64,
    due: Option<String>,
    deadline_ms: Option<u64>,
    copies: Vec<Copy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Finished,
    Expired,
}

#[derive(Debug, Clone)]
struct KnownCheckpoint {
    root: Hash,
    note: String,
}

fn finished(stage: Stage) -> bool {
    matches!(
        stage,
        Stage::At(StatusCode::Completed | StatusCode::Rejected) | Stage::Recalled
    )
}

/// What a held status waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Awaiting {
    /// Its document.
    Document(ContentId),
    /// The sender's 13 to this recipient (interned) that a 15/16 answers.
    Request(ContentId, u32),
}

/// A status held until the entry it depends on is logged, with the violation it is if that
/// never happens.
#[derive(Debug)]
struct Parked {
    index: u64,
    env: SignedEnvelope,
    from: Option<u32>,
    violation: Violation,
}

/// The streaming replay verifier. See the module docs.
pub struct Replayer {
    log: LogParams,
    checks: Checks,
    limits: Limits,
    rosters: Box<dyn RosterSource>,
    book: RosterBook,
    book_digest: [u8; 32],
    members: HashMap<AgencyId, Member>,
    tree: TreeBuilder,
    next_index: u64,
    batch: Vec<Raw>,
    batch_bytes: usize,
    // Checkpoints.
    pending: BTreeMap<u64, Vec<KnownCheckpoint>>,
    pending_count: usize,
    next_checkpoint: u64,
    roots: BTreeMap<u64, Hash>,
    notes: BTreeMap<u64, KnownCheckpoint>,
    // Agencies, chains and documents.
    agency_ids: Vec<AgencyId>,
    agency_index: HashMap<AgencyId, u32>,
    aggs: Vec<Agg>,
    agencies_overflowed: bool,
    chains: HashMap<u32, VecDeque<Recent>>,
    open: HashMap<ContentId, OpenDoc>,
    open_order: VecDeque<(u64, ContentId)>,
    closed: HashMap<ContentId, Closed>,
    closed_order: VecDeque<ContentId>,
    lost_track: bool,
    /// Statuses waiting for the entry they depend on, in log order.
    parked: HashMap<Awaiting, Vec<Parked>>,
    /// How many statuses `parked` holds (its cap is checked on every status).
    parked_count: usize,
    log_time_ms: u64,
    // Counters.
    envelopes: u64,
    documents: u64,
    statuses: u64,
    roster_entries: u64,
    signatures_verified: u64,
    checkpoints: CheckpointCounts,
    forgotten: Forgotten,
    violations: Vec<Violation>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("origin", &self.log.origin)
            .field("checks", &self.checks)
            .field("entries", &self.next_index)
            .field("roster_epoch", &self.book.current().epoch)
            .field("violations", &self.violations.len())
            .finish_non_exhaustive()
    }
}

fn members_of(roster: &Roster) -> HashMap<AgencyId, Member> {
    roster
        .agencies
        .iter()
        .map(|a| {
            (
                a.id.clone(),
                Member {
                    key: a.signing_key,
                    decoded: a.signing_key.to_dalek().ok(),
                    active: a.state == AgencyState::Active,
                },
            )
        })
        .collect()
}

/// Decodes a batch of entries, looks up their senders and verifies their signatures.
fn check_chunk(raw: Vec<Raw>, members: &HashMap<AgencyId, Member>, verify: bool) -> Vec<Checked> {
    let mut out: Vec<Checked> = raw
        .into_iter()
        .map(|Raw { index, bytes }| {
            let leaf = leaf_hash(&bytes);
            let entry = LedgerEntry::decode(&bytes).map_err(|e| e.to_string());
            let sender = match &entry {
                Ok(LedgerEntry::Envelope(env)) => match members.get(&env.body().from) {
                    None => Sender::Unknown,
                    Some(m) => Sender::Listed { active: m.active },
                },
                _ => Sender::NotApplicable,
            };
            Checked {
                index,
                leaf,
                bytes,
                entry,
                sender,
                signature_ok: None,
            }
        })
        .collect();
    if !verify {
        return out;
    }
    let jobs: Vec<(usize, &Member)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match &c.entry {
            Ok(LedgerEntry::Envelope(env)) => members.get(&env.body().from).map(|m| (i, m)),
            _ => None,
        })
        .collect();
    let envs: Vec<&SignedEnvelope> = jobs
        .iter()
        .filter_map(|(i, _)| match out.get(*i).map(|c| &c.entry) {
            Some(Ok(LedgerEntry::Envelope(env))) => Some(&**env),
            _ => None,
        })
        .collect();
    let members: Vec<&Member> = jobs.iter().map(|(_, m)| *m).collect();
    let ok = verify_envelopes(&envs, &members);
    let at: Vec<usize> = jobs.into_iter().map(|(i, _)| i).collect();
    for (i, good) in at.into_iter().zip(ok) {
        if let Some(c) = out.get_mut(i) {
            c.signature_ok = Some(good);
        }
    }
    out
}

/// Verifies envelope signatures as [`keys::verify_batch`](crate::keys::verify_batch) does
/// (one batch equation, accepted only when every signature's `S` is canonical; otherwise
/// each is checked alone with `verify_strict`, which names the bad ones), but with the
/// senders' keys decoded once per roster epoch instead of once per signature (about a
/// quarter of the batch cost).
fn verify_envelopes(envs: &[&SignedEnvelope], members: &[&Member]) -> Vec<bool> {
    if envs.len() != members.len() {
        return vec![false; envs.len()];
    }
    let keys: Option<Vec<ed25519_dalek::VerifyingKey>> =
        members.iter().map(|m| m.decoded).collect();
    if let Some(keys) = keys {
        let messages: Vec<Vec<u8>> = envs
            .iter()
            .map(|e| SignatureDomain::Envelope.message(e.signed_body()))
            .collect();
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let sigs: Vec<ed25519_dalek::Signature> = envs
            .iter()
            .map(|e| ed25519_dalek::Signature::from_bytes(&e.signature().0))
            .collect();
        if envs.iter().all(|e| scalar_is_canonical(e.signature()))
            && ed25519_dalek::verify_batch(&refs, &sigs, &keys).is_ok()
        {
            return vec![true; envs.len()];
        }
    }
    envs.iter()
        .zip(members)
        .map(|(e, m)| e.verify(&m.key).is_ok())
        .collect()
}

/// Ed25519 `S` (the signature's second half) below the group order `l`.
fn scalar_is_canonical(sig: &Signature) -> bool {
    // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let s = sig.0.get(32..).unwrap_or_default();
    for (b, l) in s.iter().rev().zip(L.iter().rev()) {
        if b != l {
            return b < l;
        }
    }
    false
}

impl Replayer {
    /// A replayer starting from the genesis roster (which must carry its own threshold of
    /// root signatures), for the log `log`, with all checks and default limits.
    pub fn new(
        genesis: SignedRoster,
        log: LogParams,
        rosters: impl RosterSource + 'static,
    ) -> Result<Self, RosterError> {
        Self::with_options(genesis, log, rosters, Checks::Full, Limits::default())
    }

    /// As [`Replayer::new`], choosing the checks and the limits.
    pub fn with_options(
        genesis: SignedRoster,
        log: LogParams,
        rosters: impl RosterSource + 'static,
        checks: Checks,
        limits: Limits,
    ) -> Result<Self, RosterError> {
        let book = RosterBook::genesis(genesis)?;
        let book_digest = Sha256::digest(&book.signed().roster).into();
        let members = members_of(book.current());
        Ok(Self {
            log,
            checks,
            limits,
            rosters: Box::new(rosters),
            book,
            book_digest,
            members,
            tree: TreeBuilder::new(),
            next_index: 0,
            batch: Vec::new(),
            batch_bytes: 0,
            pending: BTreeMap::new(),
            pending_count: 0,
            next_checkpoint: u64::MAX,
            roots: BTreeMap::new(),
            notes: BTreeMap::new(),
            agency_ids: Vec::new(),
            agency_index: HashMap::new(),
            aggs: Vec::new(),
            agencies_overflowed: false,
            chains: HashMap::new(),
            open: HashMap::new(),
            open_order: VecDeque::new(),
            closed: HashMap::new(),
            closed_order: VecDeque::new(),
            lost_track: false,
            parked: HashMap::new(),
            parked_count: 0,
            log_time_ms: 0,
            envelopes: 0,
            documents: 0,
            statuses: 0,
            roster_entries: 0,
            signatures_verified: 0,
            checkpoints: CheckpointCounts::default(),
            forgotten: Forgotten::default(),
            violations: Vec::new(),
        })
    }

    /// Entries fed so far (replayed or waiting in the batch).
    pub fn entries(&self) -> u64 {
        self.next_index
    }

    /// Feeds the entry at `index` (which must be the next one). Returns the violations found
    /// during this call (possibly about earlier entries of the batch).
    pub fn push_entry(&mut self, index: u64, bytes: &[u8]) -> Vec<Violation> {
        let mut out = Vec::new();
        if index != self.next_index {
            out.push(Violation::IndexMismatch {
                expected: self.next_index,
                got: index,
            });
        }
        let index = self.next_index;
        self.next_index += 1;
        if self.checks == Checks::HashesOnly {
            self.tree.push_entry(bytes);
            if self.tree.size() == self.next_checkpoint {
                self.reach_checkpoints(&mut out);
            }
        } else {
            self.batch.push(Raw {
                index,
                bytes: bytes.to_vec(),
            });
            // A roster entry changes the keys for what follows: process up to it now.
            let is_roster = bytes.first().is_some_and(|b| *b != 0x82);
            self.batch_bytes += bytes.len();
            let threads = self.limits.threads.max(1);
            let room = self.limits.batch.max(1) * if threads > 1 { 4 * threads } else { 1 };
            if is_roster || self.batch.len() >= room || self.batch_bytes >= MAX_BATCH_BYTES {
                self.flush(&mut out);
            }
        }
        self.keep(&out);
        out
    }

    /// Feeds a signed checkpoint (C2SP signed note). See the module docs for when its root is
    /// compared.
    pub fn push_checkpoint(&mut self, note: &[u8]) -> Vec<Violation> {
        self.checkpoint(note, None)
    }

    /// Feeds a signed checkpoint for a size the replay has already passed, with an RFC 9162
    /// consistency proof from it to the current replayed tree (all entries fed so far),
    /// e.g. from [`consistency_proof`](crate::rfc6962::consistency_proof) over the mirror's
    /// tiles.
    pub fn push_checkpoint_with_proof(&mut self, note: &[u8], proof: &[Hash]) -> Vec<Violation> {
        self.checkpoint(note, Some(proof))
    }

    /// Ends the replay at `now_ms` (for due dates): flushes the batch, reports checkpoints
    /// beyond the last entry, and computes the statistics.
    pub fn finish(mut self, now_ms: u64) -> Report {
        let mut out = Vec::new();
        self.flush(&mut out);
        let pending = std::mem::take(&mut self.pending);
        for (size, list) in pending {
            for cp in list {
                out.push(Violation::Truncated {
                    size,
                    entries: self.tree.size(),
                    note: cp.note,
                });
            }
        }
        let grace = self.limits.parked_grace_ms;
        let parked = std::mem::take(&mut self.parked);
        let mut parked: Vec<Parked> = parked.into_values().flatten().collect();
        parked.sort_by_key(|p| p.index);
        for p in parked {
            // Measured both ways: a sender's clock far ahead must not keep it waiting.
            if now_ms.abs_diff(p.env.body().created_ms) > grace {
                out.push(p.violation);
            } else {
                self.forgotten.statuses_waiting += 1;
            }
        }
        self.keep(&out);
        let stats = self.stats(now_ms);
        let mut violations = std::mem::take(&mut self.violations);
        violations.sort_by_key(|v| v.position().map_or(0, |p| p.saturating_add(1)));
        Report {
            checks: self.checks,
            entries: self.tree.size(),
            root: self.tree.root(),
            envelopes: self.envelopes,
            documents: self.documents,
            statuses: self.statuses,
            roster_entries: self.roster_entries,
            roster_epoch: self.book.current().epoch,
            signatures_verified: self.signatures_verified,
            checkpoints: self.checkpoints,
            forgotten: self.forgotten,
            violations,
            stats,
        }
    }

    fn keep(&mut self, found: &[Violation]) {
        for v in found {
            if self.violations.len() < self.limits.max_violations {
                self.violations.push(v.clone());
            } else {
                self.forgotten.violations_not_kept += 1;
            }
        }
    }

    // ---- Batches ----------------------------------------------------------------------

    fn flush(&mut self, out: &mut Vec<Violation>) {
        if self.batch.is_empty() {
            return;
        }
        let raw = std::mem::take(&mut self.batch);
        let verify = self.checks == Checks::Full;
        self.batch_bytes = 0;
        let threads = self.limits.threads.max(1);
        let per = self.limits.batch.max(1);
        let checked = if threads == 1 || raw.len() <= per {
            check_chunk(raw, &self.members, verify)
        } else {
            // Chunks of one signature batch, taken by whichever thread is free, so that a
            // thread the OS deschedules does not hold the others up.
            let mut chunks: Vec<(usize, Vec<Raw>)> = Vec::new();
            let mut rest = raw.into_iter();
            loop {
                let chunk: Vec<Raw> = rest.by_ref().take(per).collect();
                if chunk.is_empty() {
                    break;
                }
                chunks.push((chunks.len(), chunk));
            }
            let n = chunks.len();
            let queue = Mutex::new(chunks.into_iter());
            let done: Mutex<Vec<(usize, Vec<Checked>)>> = Mutex::new(Vec::with_capacity(n));
            let members = &self.members;
            let work = || {
                loop {
                    let next = match queue.lock() {
                        Ok(mut q) => q.next(),
                        Err(_) => None, // another worker panicked; the scope re-raises it
                    };
                    let Some((i, chunk)) = next else { break };
                    let part = check_chunk(chunk, members, verify);
                    if let Ok(mut d) = done.lock() {
                        d.push((i, part));
                    }
                }
            };
            std::thread::scope(|s| {
                for _ in 1..threads.min(n) {
                    s.spawn(work);
                }
                work();
            });
            let mut parts = done.into_inner().unwrap_or_default();
            parts.sort_by_key(|(i, _)| *i);
            parts.into_iter().flat_map(|(_, part)| part).collect()
        };
        for c in checked {
            self.absorb(c, out);
        }
    }

    fn absorb(&mut self, c: Checked, out: &mut Vec<Violation>) {
        self.tree.push_leaf_hash(c.leaf);
        if self.tree.size() == self.next_checkpoint {
            self.reach_checkpoints(out);
        }
        let Checked {
            index,
            bytes,
            entry,
            sender,
            signature_ok,
            ..
        } = c;
        match entry {
            Err(error) => out.push(Violation::Malformed {
                index,
                error,
                entry: bytes,
            }),
            Ok(LedgerEntry::Roster(r)) => self.roster_entry(index, r, bytes, out),
            Ok(LedgerEntry::Envelope(env)) => {
                self.envelope(index, &env, bytes, sender, signature_ok, out)
            }
        }
    }

    // ---- Rosters ----------------------------------------------------------------------

    fn roster_entry(&mut self, index: u64, r: RosterRef, bytes: Vec<u8>, out: &mut Vec<Violation>) {
        self.roster_entries += 1;
        let current = self.book.current().epoch;
        if r.epoch == current && r.digest == self.book_digest {
            return; // the epoch in force, recorded (again)
        }
        if r.epoch <= current {
            out.push(Violation::RosterNotIncreasing {
                index,
                epoch: r.epoch,
                current,
            });
            return;
        }
        let unavailable = |reason: &str| Violation::RosterUnavailable {
            index,
            epoch: r.epoch,
            digest: r.digest,
            reason: reason.to_owned(),
        };
        let Some(offered) = self.rosters.roster(r.epoch, &r.digest) else {
            out.push(unavailable(
                "the roster source has no roster for this epoch",
            ));
            return;
        };
        let digest: [u8; 32] = Sha256::digest(&offered.roster).into();
        if digest != r.digest {
            out.push(unavailable(
                "the roster bytes offered for this epoch do not match the recorded digest",
            ));
            return;
        }
        // The ledger's signatures are the ones that count: they are what the log committed to.
        let candidate = SignedRoster {
            roster: offered.roster,
            sigs: r.sigs,
        };
        match candidate.roster() {
            Ok(roster) if roster.epoch != r.epoch => {
                out.push(Violation::RosterInvalid {
                    index,
                    epoch: r.epoch,
                    problem: format!("the roster bytes are epoch {}", roster.epoch),
                });
                return;
            }
            Ok(_) => {}
            Err(e) => {
                out.push(Violation::RosterInvalid {
                    index,
                    epoch: r.epoch,
                    problem: e.to_string(),
                });
                return;
            }
        }
        match self.book.apply(candidate) {
            Ok(roster) => {
                self.members = members_of(roster);
                self.book_digest = r.digest;
            }
            Err(e @ (RosterError::Threshold { .. } | RosterError::UnknownSigner(_))) => {
                out.push(Violation::RosterBelowThreshold {
                    index,
                    epoch: r.epoch,
                    problem: e.to_string(),
                    entry: bytes,
                })
            }
            Err(e) => out.push(Violation::RosterInvalid {
                index,
                epoch: r.epoch,
                problem: e.to_string(),
            }),
        }
    }

    // ---- Envelopes --------------------------------------------------------------------

    fn intern(&mut self, id: &AgencyId) -> Option<u32> {
        if let Some(&i) = self.agency_index.get(id) {
            return Some(i);
        }
        if self.agency_ids.len() >= self.limits.max_tracked_agencies {
            self.agencies_overflowed = true;
            return None;
        }
        let i = u32::try_from(self.agency_ids.len()).ok()?;
        self.agency_ids.push(id.clone());
        self.agency_index.insert(id.clone(), i);
        self.aggs.push(Agg::default());
        Some(i)
    }

    fn agg(&mut self, i: u32) -> Option<&mut Agg> {
        self.aggs.get_mut(i as usize)
    }

    fn envelope(
        &mut self,
        index: u64,
        env: &SignedEnvelope,
        header: Vec<u8>,
        sender: Sender,
        signature_ok: Option<bool>,
        out: &mut Vec<Violation>,
    ) {
        self.envelopes += 1;
        let body = env.body();
        let roster = self.book.current();
        match sender {
            Sender::Unknown => out.push(Violation::UnknownSender {
                index,
                sender: body.from.clone(),
                epoch: roster.epoch,
                header: header.clone(),
            }),
            Sender::Listed { active: false } => out.push(Violation::SenderNotActive {
                index,
                sender: body.from.clone(),
                state: roster
                    .agency(&body.from)
                    .map_or(AgencyState::Revoked, |a| a.state.clone()),
                epoch: roster.epoch,
                issued_ms: roster.issued_ms,
                created_ms: body.created_ms,
                header: header.clone(),
            }),
            _ => {}
        }
        match signature_ok {
            Some(true) => self.signatures_verified += 1,
            Some(false) => out.push(Violation::BadSignature {
                index,
                sender: body.from.clone(),
                seq: body.seq,
                epoch: roster.epoch,
                header: header.clone(),
            }),
            None => {}
        }
        let from = self.intern(&body.from);
        match body.kind {
            Kind::Status => self.status(index, env, from, &header, out, false),
            k if k.is_document() => {
                self.document(index, env, from);
                self.unpark(Awaiting::Document(env.id()), out);
            }
            _ => {}
        }
        if let (Sender::Listed { .. }, Some(from)) = (sender, from) {
            self.chain(index, env, from, header, out);
        }
    }

    fn chain(
        &mut self,
        index: u64,
        env: &SignedEnvelope,
        from: u32,
        header: Vec<u8>,
        out: &mut Vec<Violation>,
    ) {
        let body = env.body();
        let (seq, id) = (body.seq, env.id());
        let sender = || body.from.clone();
        let window = self.limits.chain_window.max(1);
        let recent = self.chains.entry(from).or_default();
        let accept = match recent.back() {
            None => {
                if seq != 1 {
                    out.push(Violation::ChainGap {
                        index,
                        sender: sender(),
                        expected_seq: 1,
                        seq,
                        previous_index: None,
                        header: header.clone(),
                    });
                }
                true
            }
            Some(last) if seq == last.seq + 1 => {
                if body.prev != Some(last.id) {
                    out.push(Violation::ChainBroken {
                        index,
                        sender: sender(),
                        seq,
                        prev: body.prev,
                        expected_prev: last.id,
                        previous_index: last.index,
                        header: header.clone(),
                    });
                }
                true
            }
            Some(last) if seq > last.seq + 1 => {
                out.push(Violation::ChainGap {
                    index,
                    sender: sender(),
                    expected_seq: last.seq + 1,
                    seq,
                    previous_index: Some(last.index),
                    header: header.clone(),
                });
                true
            }
            Some(last) => {
                match recent.iter().find(|r| r.seq == seq) {
                    Some(r) if r.id == id => out.push(Violation::DuplicateEntry {
                        index,
                        first_index: r.index,
                        id,
                    }),
                    Some(r) => out.push(Violation::Equivocation {
                        sender: sender(),
                        seq,
                        first_index: r.index,
                        first_header: r.header.clone(),
                        second_index: index,
                        second_header: header.clone(),
                    }),
                    None => out.push(Violation::SequenceRegression {
                        index,
                        sender: sender(),
                        seq,
                        last_seq: last.seq,
                        last_index: last.index,
                        header: header.clone(),
                    }),
                }
                false
            }
        };
        if accept {
            recent.push_back(Recent {
                seq,
                id,
                index,
                header,
            });
            while recent.len() > window {
                recent.pop_front();
            }
        }
    }

    fn document(&mut self, index: u64, env: &SignedEnvelope, from: Option<u32>) {
        self.documents += 1;
        let body = env.body();
        let id = env.id();
        if let Some(a) = from.and_then(|f| self.agg(f)) {
            a.documents_sent += 1;
            a.copies_sent += body.to.len() as u64;
        }
        let mut copies = Vec::with_capacity(body.to.len());
        for r in &body.to {
            if let Some(ri) = self.intern(r) {
                if let Some(a) = self.agg(ri) {
                    a.documents_received += 1;
                }
                copies.push(Copy {
                    recipient: ri,
                    chain: StatusChain::default(),
                });
            }
        }
        let Some(sender) = from else { return };
        if self.open.contains_key(&id) || self.closed.contains_key(&id) {
            return; // a duplicate entry, reported by the chain check
        }
        self.log_time_ms = self.log_time_ms.max(body.created_ms);
        let due = body.routing.due.clone();
        self.open.insert(
            id,
            OpenDoc {
                index,
                sender,
                created_ms: body.created_ms,
                deadline_ms: due.as_deref().and_then(due_deadline_ms),
                due,
                copies,
            },
        );
        self.open_order.push_back((body.created_ms, id));
        self.expire();
    }

    /// Closes documents beyond the horizon or the cap, oldest first.
    fn expire(&mut self) {
        let horizon = self
            .log_time_ms
            .saturating_sub(self.limits.document_horizon_ms);
        while let Some(&(created, id)) = self.open_order.front() {
            if !self.open.contains_key(&id) {
                self.open_order.pop_front(); // finished earlier
                continue;
            }
            let over_cap = self.open.len() > self.limits.max_open_documents;
            if created >= horizon && !over_cap {
                break;
            }
            self.open_order.pop_front();
            if let Some(doc) = self.open.remove(&id) {
                for c in doc.copies.iter().filter(|c| !finished(c.chain.stage)) {
                    if let Some(a) = self.aggs.get_mut(c.recipient as usize) {
                        a.expired_unfinished += 1;
                    }
                }
            }
            if over_cap && created >= horizon {
                self.forgotten.documents_evicted += 1;
            } else {
                self.forgotten.documents_expired += 1;
            }
            self.close(id, Closed::Expired);
        }
        // Drop ids of documents finished long ago from the order queue.
        if self.open_order.len() > 2 * self.open.len() + 1024 {
            let open = &self.open;
            self.open_order.retain(|(_, id)| open.contains_key(id));
        }
    }

    fn close(&mut self, id: ContentId, why: Closed) {
        self.closed.insert(id, why);
        self.closed_order.push_back(id);
        while self.closed_order.len() > self.limits.max_closed_remembered {
            if let Some(old) = self.closed_order.pop_front() {
                self.closed.remove(&old);
                self.forgotten.closed_ids_forgotten += 1;
                self.lost_track = true;
            }
        }
    }

    /// Holds a status until the entry it depends on is logged (see [`Limits`]); reports
    /// its violation at once when too many are held.
    fn park(&mut self, awaiting: Awaiting, parked: Parked, out: &mut Vec<Violation>) {
        if self.parked_count >= self.limits.max_parked_statuses {
            out.push(parked.violation);
            return;
        }
        self.parked_count += 1;
        self.parked.entry(awaiting).or_default().push(parked);
    }

    /// Replays, in log order, the statuses held for what has just been logged (they may
    /// be held again).
    fn unpark(&mut self, logged: Awaiting, out: &mut Vec<Violation>) {
        let Some(held) = self.parked.remove(&logged) else {
            return;
        };
        self.parked_count = self.parked_count.saturating_sub(held.len());
        for p in held {
            self.status(p.index, &p.env, p.from, &p.env.header_bytes(), out, true);
        }
    }

    /// Applies a status; `replayed` when it was held and is tried again (already counted).
    fn status(
        &mut self,
        index: u64,
        env: &SignedEnvelope,
        from: Option<u32>,
        header: &[u8],
        out: &mut Vec<Violation>,
        replayed: bool,
    ) {
        let body = env.body();
        let (Some(code), Some(document)) = (body.routing.status, body.routing.refers_to) else {
            return; // validate() guarantees both
        };
        if !replayed {
            self.statuses += 1;
            if let Some(n) = from
                .and_then(|f| self.agg(f))
                .and_then(|a| a.statuses_sent.get_mut(code_slot(code)))
            {
                *n += 1;
            }
        }
        let Some(doc) = self.open.get_mut(&document) else {
            match self.closed.get(&document) {
                Some(Closed::Finished) => out.push(Violation::StatusOnClosedDocument {
                    index,
                    document,
                    code,
                    header: header.to_vec(),
                }),
                Some(Closed::Expired) => self.forgotten.statuses_unchecked += 1,
                None if self.lost_track => self.forgotten.statuses_unchecked += 1,
                // The document's own node may not have logged it yet.
                None => self.park(
                    Awaiting::Document(document),
                    Parked {
                        index,
                        env: env.clone(),
                        from,
                        violation: Violation::StatusForUnknownDocument {
                            index,
                            document,
                            header: header.to_vec(),
                        },
                    },
                    out,
                ),
            }
            return;
        };
        let non_party = |why: String| Violation::StatusFromNonParty {
            index,
            document,
            from: body.from.clone(),
            code,
            why,
            header: header.to_vec(),
        };
        let is_sender = from.is_some() && from == Some(doc.sender);
        let copy_of_from = doc
            .copies
            .iter()
            .position(|c| Some(c.recipient) == from && !is_sender);
        let (party, targets): (Party, Vec<usize>) = if is_sender {
            let targets: Vec<usize> = doc
                .copies
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    self.agency_ids
                        .get(c.recipient as usize)
                        .is_some_and(|r| body.to.contains(r))
                })
                .map(|(i, _)| i)
                .collect();
            if targets.is_empty() {
                out.push(non_party(
                    "the document's sender addressed it to none of the document's recipients"
                        .into(),
                ));
                return;
            }
            (Party::Sender, targets)
        } else if let Some(i) = copy_of_from {
            (Party::Recipient, vec![i])
        } else {
            out.push(non_party(
                "the poster is neither the document's sender nor one of its recipients".into(),
            ));
            return;
        };
        let mut latencies: Vec<(u32, StatusCode, u64)> = Vec::new();
        // Copies that this 13 reached, whose held answers may now apply.
        let mut requested: Vec<u32> = Vec::new();
        let mut hold: Option<(u32, Violation)> = None;
        for t in targets {
            let Some(copy) = doc.copies.get_mut(t) else {
                continue;
            };
            // The log interleaves both parties' statuses in arrival order, so the recipient's
            // processing may be logged after a 13 it had not yet seen: the mirrored rule.
            match copy.chain.apply_mirrored(party, code) {
                Ok(next) => {
                    copy.chain = next;
                    if code == StatusCode::RecallRequested {
                        requested.push(copy.recipient);
                    }
                    if party == Party::Recipient {
                        latencies.push((
                            copy.recipient,
                            code,
                            body.created_ms.saturating_sub(doc.created_ms),
                        ));
                    }
                }
                Err(StatusError::WrongParty { expected, .. }) => {
                    out.push(non_party(format!(
                        "the document's {} posted it, but only the {expected} may",
                        if party == Party::Sender {
                            "sender"
                        } else {
                            "recipient"
                        }
                    )));
                    break;
                }
                Err(e) => {
                    let violation = Violation::InvalidTransition {
                        index,
                        document,
                        recipient: self
                            .agency_ids
                            .get(copy.recipient as usize)
                            .cloned()
                            .unwrap_or_else(|| body.from.clone()),
                        stage: copy.chain.stage,
                        code,
                        why: match e {
                            StatusError::Transition { why, .. } => why.to_owned(),
                            other => other.to_string(),
                        },
                        header: header.to_vec(),
                    };
                    // An answer (15/16) may be logged before the sender's 13 it answers:
                    // the two come from different nodes.
                    let answers_request =
                        matches!(code, StatusCode::RecallAgreed | StatusCode::RecallRefused);
                    if party == Party::Recipient && answers_request && !copy.chain.request_pending {
                        hold = Some((copy.recipient, violation));
                        break;
                    }
                    out.push(violation);
                }
            }
        }
        if let Some((recipient, violation)) = hold {
            self.park(
                Awaiting::Request(document, recipient),
                Parked {
                    index,
                    env: env.clone(),
                    from,
                    violation,
                },
                out,
            );
            return;
        }
        let all_finished = doc.copies.iter().all(|c| finished(c.chain.stage));
        for (recipient, code, ms) in latencies {
            if let Some(a) = self.aggs.get_mut(recipient as usize) {
                match code {
                    StatusCode::Arrived => a.time_to_arrived.record(ms),
                    StatusCode::Accepted => a.time_to_accepted.record(ms),
                    StatusCode::Completed => a.time_to_completed.record(ms),
                    _ => {}
                }
            }
        }
        if all_finished {
            self.open.remove(&document);
            self.forgotten.documents_finished += 1;
            self.close(document, Closed::Finished);
        }
        for recipient in requested {
            self.unpark(Awaiting::Request(document, recipient), out);
        }
    }

    // ---- Checkpoints ------------------------------------------------------------------

    fn checkpoint(&mut self, note: &[u8], proof: Option<&[Hash]>) -> Vec<Violation> {
        let mut out = Vec::new();
        self.flush(&mut out);
        self.checkpoint_inner(note, proof, &mut out);
        self.keep(&out);
        out
    }

    fn checkpoint_inner(&mut self, bytes: &[u8], proof: Option<&[Hash]>, out: &mut Vec<Violation>) {
        self.checkpoints.seen += 1;
        let text = String::from_utf8_lossy(bytes).into_owned();
        let signed = match SignedCheckpoint::parse(bytes) {
            Ok(s) => s,
            Err(e) => {
                out.push(Violation::CheckpointMalformed {
                    error: e.to_string(),
                    note: text,
                });
                return;
            }
        };
        let cp = signed.checkpoint();
        let size = cp.size();
        if cp.origin() != self.log.origin {
            out.push(Violation::CheckpointWrongOrigin {
                origin: cp.origin().to_owned(),
                expected: self.log.origin.clone(),
                note: text,
            });
            return;
        }
        let log_key: &dyn NoteVerifier = &self.log.log_key;
        if let Err(e) = signed.verify(&[log_key]) {
            out.push(Violation::CheckpointBadSignature {
                size,
                error: e.to_string(),
                note: text,
            });
            return;
        }
        match verify_quorum(signed.note(), &self.log.witnesses, self.log.quorum) {
            Ok(_) => {}
            Err(CosignatureError::QuorumNotMet { got, needed }) => {
                out.push(Violation::QuorumNotMet {
                    size,
                    got,
                    needed,
                    note: text.clone(),
                })
            }
            Err(e) => out.push(Violation::CosignatureInvalid {
                size,
                error: e.to_string(),
                note: text.clone(),
            }),
        }
        let known = KnownCheckpoint {
            root: *cp.root(),
            note: text,
        };
        let tree_size = self.tree.size();
        if size > tree_size {
            let list = self.pending.entry(size).or_default();
            if list.iter().any(|k| k.root == known.root) {
                return;
            }
            if let Some(first) = list.first() {
                out.push(Violation::SplitView {
                    size,
                    first: first.note.clone(),
                    second: known.note.clone(),
                });
            }
            if self.pending_count >= self.limits.max_pending_checkpoints {
                self.checkpoints.dropped += 1;
                if list.is_empty() {
                    self.pending.remove(&size);
                }
                return;
            }
            list.push(known);
            self.pending_count += 1;
            self.next_checkpoint = self.next_checkpoint.min(size);
            return;
        }
        let replayed = if size == tree_size {
            Some(self.tree.root())
        } else {
            self.roots.get(&size).copied()
        };
        match (replayed, proof) {
            (Some(root), _) => self.compare(size, root, known, out),
            (None, Some(proof)) => {
                self.checkpoints.compared += 1;
                if let Err(e) =
                    verify_consistency(size, tree_size, &known.root, &self.tree.root(), proof)
                {
                    out.push(Violation::InconsistentCheckpoint {
                        size,
                        tree_size,
                        error: e.to_string(),
                        note: known.note,
                    });
                } else {
                    self.record(size, known.root, known);
                }
            }
            (None, None) => self.checkpoints.unverified += 1,
        }
    }

    /// Compares the checkpoints waiting at the size just reached.
    fn reach_checkpoints(&mut self, out: &mut Vec<Violation>) {
        let size = self.tree.size();
        let root = self.tree.root();
        if let Some(list) = self.pending.remove(&size) {
            self.pending_count = self.pending_count.saturating_sub(list.len());
            for known in list {
                self.compare(size, root, known, out);
            }
        }
        self.next_checkpoint = self.pending.keys().next().copied().unwrap_or(u64::MAX);
    }

    fn compare(&mut self, size: u64, root: Hash, known: KnownCheckpoint, out: &mut Vec<Violation>) {
        self.checkpoints.compared += 1;
        if let Some(kept) = self.notes.get(&size)
            && kept.root != known.root
        {
            out.push(Violation::SplitView {
                size,
                first: kept.note.clone(),
                second: known.note.clone(),
            });
        }
        if known.root != root {
            out.push(Violation::RootMismatch {
                size,
                checkpoint_root: known.root,
                replayed_root: root,
                note: known.note,
            });
        } else {
            self.record(size, root, known);
        }
    }

    fn record(&mut self, size: u64, root: Hash, known: KnownCheckpoint) {
        self.checkpoints.covered = self.checkpoints.covered.max(size);
        self.roots.insert(size, root);
        while self.roots.len() > self.limits.max_recorded_roots {
            self.roots.pop_first();
        }
        self.notes.entry(size).or_insert(known);
        while self.notes.len() > self.limits.max_kept_notes {
            self.notes.pop_first();
        }
    }

    // ---- Statistics -------------------------------------------------------------------

    fn stats(&self, now_ms: u64) -> Stats {
        let n = self.agency_ids.len();
        let mut unacknowledged = vec![0u64; n];
        let mut past_due = vec![0u64; n];
        let mut stalled = Vec::new();
        let mut stalled_total = 0u64;
        let name = |i: u32| self.agency_ids.get(i as usize).cloned();
        let mut docs: Vec<(&ContentId, &OpenDoc)> = self.open.iter().collect();
        docs.sort_by_key(|(_, d)| d.index);
        for (id, doc) in docs {
            for c in &doc.copies {
                let r = c.recipient as usize;
                if c.chain.stage == Stage::Sent
                    && let Some(u) = unacknowledged.get_mut(r)
                {
                    *u += 1;
                }
                let Some(deadline) = doc.deadline_ms else {
                    continue;
                };
                if finished(c.chain.stage) || now_ms <= deadline {
                    continue;
                }
                if let Some(p) = past_due.get_mut(r) {
                    *p += 1;
                }
                stalled_total += 1;
                if stalled.len() < self.limits.max_stalled_listed
                    && let (Some(sender), Some(recipient)) = (name(doc.sender), name(c.recipient))
                {
                    stalled.push(StalledCopy {
                        document: *id,
                        index: doc.index,
                        sender,
                        recipient,
                        created_ms: doc.created_ms,
                        due: doc.due.clone().unwrap_or_default(),
                        stage: c.chain.stage,
                        age_ms: now_ms.saturating_sub(doc.created_ms),
                        overdue_ms: now_ms.saturating_sub(deadline),
                    });
                }
            }
        }
        let roster = self.book.current();
        let mut agencies: Vec<AgencyStats> = self
            .agency_ids
            .iter()
            .zip(&self.aggs)
            .enumerate()
            .map(|(i, (id, a))| {
                let listed = roster.agency(id);
                AgencyStats {
                    id: id.clone(),
                    name: listed.map(|l| l.name.clone()),
                    level: id.level().or(listed.map(|l| l.level)),
                    documents_sent: a.documents_sent,
                    copies_sent: a.copies_sent,
                    documents_received: a.documents_received,
                    statuses_sent: StatusCode::ALL
                        .iter()
                        .zip(a.statuses_sent)
                        .filter(|(_, n)| *n > 0)
                        .map(|(c, n)| (*c, n))
                        .collect(),
                    time_to_arrived: a.time_to_arrived.clone(),
                    time_to_accepted: a.time_to_accepted.clone(),
                    time_to_completed: a.time_to_completed.clone(),
                    unacknowledged: unacknowledged.get(i).copied().unwrap_or_default(),
                    past_due: past_due.get(i).copied().unwrap_or_default(),
                    expired_unfinished: a.expired_unfinished,
                }
            })
            .collect();
        agencies.sort_by(|a, b| a.id.cmp(&b.id));
        let never_acknowledged = agencies
            .iter()
            .filter(|a| a.never_acknowledged())
            .map(|a| a.id.clone())
            .collect();
        Stats {
            now_ms,
            agencies,
            stalled,
            stalled_total,
            never_acknowledged,
            open_documents: self.open.len() as u64,
            agencies_overflowed: self.agencies_overflowed,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::envelope::{ENVELOPE_VERSION, EnvelopeBody, Payload, Routing};
    use crate::keys::SigningKey;

    fn envelopes(n: u8) -> (Vec<SignedEnvelope>, Vec<Member>) {
        let mut envs = vec![];
        let mut members = vec![];
        for i in 0..n {
            let key = SigningKey::from_seed(&[i + 1; 32]);
            let body = EnvelopeBody {
                v: ENVELOPE_VERSION,
                kind: Kind::Document,
                from: AgencyId::parse("000.00.00.G22").unwrap(),
                to: vec![AgencyId::parse("000.00.00.H41").unwrap()],
                seq: 1,
                prev: None,
                created_ms: u64::from(i),
                routing: Routing::default(),
                payload: Payload::External {
                    manifest: [i; 32],
                    size: 1,
                },
            };
            envs.push(SignedEnvelope::sign(body, &key).unwrap());
            let public = key.verifying_key();
            members.push(Member {
                key: public,
                decoded: public.to_dalek().ok(),
                active: true,
            });
        }
        (envs, members)
    }

    fn check(envs: &[SignedEnvelope], members: &[Member]) -> Vec<bool> {
        let e: Vec<&SignedEnvelope> = envs.iter().collect();
        let m: Vec<&Member> = members.iter().collect();
        verify_envelopes(&e, &m)
    }

    fn with_signature(env: &SignedEnvelope, sig: [u8; 64]) -> SignedEnvelope {
        let mut header = env.header_bytes();
        let n = header.len();
        header[n - 64..].copy_from_slice(&sig);
        SignedEnvelope::decode_header(&header).unwrap()
    }

    #[test]
    fn batches_name_the_bad_signature() {
        let (mut envs, members) = envelopes(5);
        assert_eq!(check(&envs, &members), vec![true; 5]);
        let mut sig = envs[3].signature().0;
        sig[5] ^= 1;
        envs[3] = with_signature(&envs[3], sig);
        assert_eq!(check(&envs, &members), vec![true, true, true, false, true]);
    }

    #[test]
    fn malleated_signatures_are_refused() {
        let (mut envs, members) = envelopes(3);
        // S + l: the same batch equation, a non-canonical (malleated) signature.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut sig = envs[1].signature().0;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(sig[32 + i]) + u16::from(l[i]) + carry;
            sig[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert!(!scalar_is_canonical(&Signature(sig)));
        assert!(scalar_is_canonical(envs[0].signature()));
        envs[1] = with_signature(&envs[1], sig);
        assert_eq!(check(&envs, &members), vec![true, false, true]);
    }
}
