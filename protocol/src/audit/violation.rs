//! What the replay found wrong, each with the evidence a third party needs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::agency::AgencyId;
use crate::content_id::ContentId;
use crate::rfc6962::Hash;
use crate::roster::AgencyState;
use crate::status::{Stage, StatusCode};

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Serializes bytes (entries, headers, hashes) as base64 in the JSON form.
fn ser_b64<T: AsRef<[u8]>, S: serde::Serializer>(bytes: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&b64(bytes.as_ref()))
}

fn missing(expected: u64, seq: u64) -> String {
    if seq == expected + 1 {
        format!("its envelope {expected} is")
    } else {
        format!("its envelopes {expected} to {} are", seq.saturating_sub(1))
    }
}

/// One verification failure.
///
/// Entry violations carry the entry's index in the log and the entry bytes (for envelopes, the
/// signed header `[body, signature]`), so anyone holding the roster and the log's checkpoint can
/// check the claim: the header verifies (or not) under the sender's key, and an inclusion proof
/// at `index` ties it to a signed tree head. Checkpoint violations carry the full signed note
/// text (checkpoint and every signature line).
///
/// Serializes (untagged) as an object of the variant's fields, bytes in base64; pair it with
/// [`Violation::kind`] and [`Violation::position`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(untagged)]
pub enum Violation {
    /// The caller fed entries out of order: the copy of the log skips or repeats entries.
    #[error(
        "entry {got} was given where entry {expected} comes next: the copy of the log skips or repeats entries (it was replayed at position {expected})"
    )]
    IndexMismatch { expected: u64, got: u64 },

    /// Bytes that are not a ledger entry (bad CBOR, bad fields, oversize).
    #[error(
        "entry {index} is not a valid ledger entry ({error}); no honest node submits such bytes and no honest log accepts them"
    )]
    Malformed {
        index: u64,
        error: String,
        #[serde(serialize_with = "ser_b64")]
        entry: Vec<u8>,
    },

    /// The sender is not in the roster in force.
    #[error(
        "entry {index}: sender {sender} is not listed in roster epoch {epoch}, the epoch in force at that point of the log"
    )]
    UnknownSender {
        index: u64,
        sender: AgencyId,
        epoch: u64,
        #[serde(serialize_with = "ser_b64")]
        header: Vec<u8>,
    },

    /// The sender is listed but suspended, revoked or succeeded in the roster in force.
    #[error(
        "entry {index}: sender {sender} is {state:?} in roster epoch {epoch}, the epoch in force when the log recorded this envelope (created at {created_ms} ms, epoch issued at {issued_ms} ms)"
    )]
    SenderNotActive {
        index: u64,
        sender: AgencyId,
        state: AgencyState,
        epoch: u64,
        issued_ms: u64,
        created_ms: u64,
        #[serde(serialize_with = "ser_b64")]
        header: Vec<u8>,
    },

    /// The agency signature does not verify under the sender's key in the roster in force.
    #[error(
        "entry {index}: the signature on {sender}'s envelope (sequence {seq}) does not verify with {sender}'s key in roster epoch {epoch}: the entry was forged or altered"
    )]
    BadSignature {
        index: u64,
        sender: AgencyId,
        seq: u64,
        epoch: u64,
        #[serde(serialize_with = "ser_b64")]
        header: Vec<u8>,
    },

    /// A sender's sequence skipped numbers: envelopes are missing from the log.
    #[error(
        "entry {index}: {sender} jumped to sequence {seq} where {expected_seq} comes next: {} missing from the log (dropped or censored){}",
        missing(*.expected_seq, *.seq),
        .previous_index.map(|i| format!("; its previous envelope is entry {i}")).unwrap_or_default()
    )]
    ChainGap {
        index: u64,
        sender: AgencyId,
        expected_seq: u64,
        seq: u64,
        previous_index: Option<u64>,
        #[serde(serialize_with = "ser_b64")]
        header: Vec<u8>,
    },

    /// The next sequence number, but `prev` names another envelope than the one logged.
    #[error(
        "entry {index}: {sender}'s envelope {seq} names {} as its predecessor, but the log's envelope {} from {sender} (entry {previous_index}) is {expected_prev}: the sender's chain forks",
        .prev.map(|p| p.to_string()).unwrap_or_else(|| "nothing".into()),
        .seq.saturating_sub(1)
    )]
    ChainBroken {
        index: u64,
        sender: AgencyId,
        seq: u64,
        prev: Option<ContentId>,
        expected_prev: ContentId,
        previous_index: u64,
        #[serde(serialize_with = "ser_b64")]
        header: Vec<u8>,
    },

    /// Two different signed envelopes from one sender with one sequence number.
    #[error(
        "entries {first_index} and {second_index}: {sender} signed two different envelopes with sequence number {seq} (equivocation); the two signed headers, both valid under {sender}'s key, are the proof"
    )]
    Equivocation {
        sender: AgencyId,
        seq: u64,
        first_index: u64,
        #[serde(serialize_with = "ser_b64")]
        first_header: Vec<u8>,
        second_index: u64,
        #[serde(serialize_with = "ser_b64")]
        second_header: Vec<u8>,
    },

    /// The same envelope logged twice (logs deduplicate by content id).
    #[error(
        "entry {index} repeats entry {first_index} (content id {id}): the log did not deduplicate"
    )]
    DuplicateEntry {
        index: u64,
        first_index: u64,
        id: ContentId,
    },

    /// A sequence number at or below the last one, older than the window of remembered
    /// envelopes: a replay or an equivocation whose first half is no longer in memory.
    #[error(
        "entry {index}: {sender}'s sequence went back to {seq} after {last_seq} (entry {last_index}): an old envelope replayed or a second envelope for a used sequence number"
    )]
    SequenceRegression {
        index: u64,
        sender: AgencyId,
        seq: u64,
        last_seq: u64,
        last_index: u64,
        #[serde(serialize_with = "ser_b64")]
        header: Vec<u8>,
    },

    /// A status posted by someone who is not the right party of the document.
    #[error("entry {index}: status {code} from {from} about document {document}: {why}")]
    StatusFromNonParty {
        index: u64,
        document: ContentId,
        from: AgencyId,
        code: StatusCode,
        why: String,
        #[serde(serialize_with = "ser_b64")]
        header: Vec<u8>,
    },

    /// A status that cannot follow the recipient's current stage.
    #[error(
        "entry {index}: status {code} for {recipient}'s copy of document {document} cannot follow {stage}: {why}"
    )]
    InvalidTransition {
        index: u64,
        document: ContentId,
        recipient: AgencyId,
        stage: Stage,
        code: StatusCode,
        why: String,
        #[serde(serialize_with = "ser_b64")]
        header: Vec<u8>,
    },

    /// A status about a document every recipient had already finished with (02, 06 or
    /// recalled): nothing may follow.
    #[error(
        "entry {index}: status {code} about document {document}, which every recipient had already finished with (rejected, completed or recalled)"
    )]
    StatusOnClosedDocument {
        index: u64,
        document: ContentId,
        code: StatusCode,
        #[serde(serialize_with = "ser_b64")]
        header: Vec<u8>,
    },

    /// A status about a document the log never recorded (only reported while the replay still
    /// remembers every document it has seen).
    #[error(
        "entry {index}: status about document {document}, which the log never recorded before it (the document entry is missing)"
    )]
    StatusForUnknownDocument {
        index: u64,
        document: ContentId,
        #[serde(serialize_with = "ser_b64")]
        header: Vec<u8>,
    },

    /// A roster reference whose epoch is not above the one in force.
    #[error(
        "entry {index}: roster epoch {epoch} recorded while epoch {current} is in force; epochs must increase"
    )]
    RosterNotIncreasing {
        index: u64,
        epoch: u64,
        current: u64,
    },

    /// The roster bytes for a recorded epoch could not be obtained or do not match the digest.
    #[error(
        "entry {index}: roster epoch {epoch} (digest {}) cannot be checked: {reason}; entries after it are checked against the previous epoch",
        b64(.digest)
    )]
    RosterUnavailable {
        index: u64,
        epoch: u64,
        #[serde(serialize_with = "ser_b64")]
        digest: [u8; 32],
        reason: String,
    },

    /// A recorded roster epoch without the threshold of the previous epoch's root signatures.
    #[error(
        "entry {index}: roster epoch {epoch} is not properly signed ({problem}); it was not applied"
    )]
    RosterBelowThreshold {
        index: u64,
        epoch: u64,
        problem: String,
        #[serde(serialize_with = "ser_b64")]
        entry: Vec<u8>,
    },

    /// Roster bytes that match the digest but are not a valid roster of that epoch.
    #[error("entry {index}: roster epoch {epoch} is invalid ({problem}); it was not applied")]
    RosterInvalid {
        index: u64,
        epoch: u64,
        problem: String,
    },

    /// Bytes that are not a signed checkpoint.
    #[error("a checkpoint does not parse ({error})")]
    CheckpointMalformed { error: String, note: String },

    /// A checkpoint of another log.
    #[error("a checkpoint names origin {origin:?}, not this log's {expected:?}")]
    CheckpointWrongOrigin {
        origin: String,
        expected: String,
        note: String,
    },

    /// The log's own signature is missing or invalid: the checkpoint proves nothing.
    #[error("checkpoint at size {size}: the log's signature is missing or invalid ({error})")]
    CheckpointBadSignature {
        size: u64,
        error: String,
        note: String,
    },

    /// A cosignature line from a known witness that does not verify (forged).
    #[error("checkpoint at size {size}: a witness cosignature does not verify ({error})")]
    CosignatureInvalid {
        size: u64,
        error: String,
        note: String,
    },

    /// Fewer distinct known witnesses cosigned than the quorum.
    #[error(
        "checkpoint at size {size}: cosigned by {got} distinct known witnesses, the quorum is {needed}"
    )]
    QuorumNotMet {
        size: u64,
        got: usize,
        needed: usize,
        note: String,
    },

    /// The log signed a root that is not the root of the entries it serves.
    #[error(
        "checkpoint at size {size} signs root {} but the entries replayed give {}: the entries were altered, dropped, reordered or inserted, or the log signed a tree it does not serve",
        b64(.checkpoint_root),
        b64(.replayed_root)
    )]
    RootMismatch {
        size: u64,
        #[serde(serialize_with = "ser_b64")]
        checkpoint_root: Hash,
        #[serde(serialize_with = "ser_b64")]
        replayed_root: Hash,
        note: String,
    },

    /// Two signed checkpoints of the same size with different roots.
    #[error(
        "split view: the log signed two different roots for size {size}; both signed checkpoints are the proof"
    )]
    SplitView {
        size: u64,
        first: String,
        second: String,
    },

    /// A checkpoint beyond the last entry replayed: the copy of the log is truncated.
    #[error(
        "checkpoint at size {size} but the log served only {entries} entries: the log or the copy is truncated"
    )]
    Truncated {
        size: u64,
        entries: u64,
        note: String,
    },

    /// A consistency proof from an older checkpoint to the replayed tree does not hold.
    #[error(
        "checkpoint at size {size} is not consistent with the replayed tree of size {tree_size} ({error})"
    )]
    InconsistentCheckpoint {
        size: u64,
        tree_size: u64,
        error: String,
        note: String,
    },
}

impl Violation {
    /// Where in the log: the entry index, or the tree size of a checkpoint violation (`None`
    /// for checkpoints that did not parse).
    pub fn position(&self) -> Option<u64> {
        use Violation::*;
        match self {
            IndexMismatch { expected: p, .. }
            | Malformed { index: p, .. }
            | UnknownSender { index: p, .. }
            | SenderNotActive { index: p, .. }
            | BadSignature { index: p, .. }
            | ChainGap { index: p, .. }
            | ChainBroken { index: p, .. }
            | Equivocation {
                second_index: p, ..
            }
            | DuplicateEntry { index: p, .. }
            | SequenceRegression { index: p, .. }
            | StatusFromNonParty { index: p, .. }
            | InvalidTransition { index: p, .. }
            | StatusOnClosedDocument { index: p, .. }
            | StatusForUnknownDocument { index: p, .. }
            | RosterNotIncreasing { index: p, .. }
            | RosterUnavailable { index: p, .. }
            | RosterBelowThreshold { index: p, .. }
            | RosterInvalid { index: p, .. }
            | CheckpointBadSignature { size: p, .. }
            | CosignatureInvalid { size: p, .. }
            | QuorumNotMet { size: p, .. }
            | RootMismatch { size: p, .. }
            | SplitView { size: p, .. }
            | Truncated { size: p, .. }
            | InconsistentCheckpoint { size: p, .. } => Some(*p),
            CheckpointMalformed { .. } | CheckpointWrongOrigin { .. } => None,
        }
    }

    /// A stable short name (for JSON, CSV and exit summaries).
    pub fn kind(&self) -> &'static str {
        use Violation::*;
        match self {
            IndexMismatch { .. } => "index-mismatch",
            Malformed { .. } => "malformed-entry",
            UnknownSender { .. } => "unknown-sender",
            SenderNotActive { .. } => "sender-not-active",
            BadSignature { .. } => "bad-signature",
            ChainGap { .. } => "chain-gap",
            ChainBroken { .. } => "chain-broken",
            Equivocation { .. } => "equivocation",
            DuplicateEntry { .. } => "duplicate-entry",
            SequenceRegression { .. } => "sequence-regression",
            StatusFromNonParty { .. } => "status-from-non-party",
            InvalidTransition { .. } => "invalid-transition",
            StatusOnClosedDocument { .. } => "status-on-closed-document",
            StatusForUnknownDocument { .. } => "status-for-unknown-document",
            RosterNotIncreasing { .. } => "roster-not-increasing",
            RosterUnavailable { .. } => "roster-unavailable",
            RosterBelowThreshold { .. } => "roster-below-threshold",
            RosterInvalid { .. } => "roster-invalid",
            CheckpointMalformed { .. } => "checkpoint-malformed",
            CheckpointWrongOrigin { .. } => "checkpoint-wrong-origin",
            CheckpointBadSignature { .. } => "checkpoint-bad-signature",
            CosignatureInvalid { .. } => "cosignature-invalid",
            QuorumNotMet { .. } => "quorum-not-met",
            RootMismatch { .. } => "root-mismatch",
            SplitView { .. } => "split-view",
            Truncated { .. } => "truncated",
            InconsistentCheckpoint { .. } => "inconsistent-checkpoint",
        }
    }
}
