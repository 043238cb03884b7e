//! Deterministic synthetic ledgers for tests and benchmarks: agencies with keys derived
//! from their position, documents and statuses on a fixed pattern (so the expected report
//! is known), a revocation epoch at the end, and optional injected misbehaviour. Also
//! writes a ledger straight into a mirror directory (bundles, tiles, rosters, a signed and
//! cosigned checkpoint) for benchmarks that need no server.
//!
//! Not for production use: every key here is derived from public constants.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::keys::{EncryptionSecret, SigningKey, VerifyingKey};
use lienthong_protocol::ledger::LedgerEntry;
use lienthong_protocol::rfc6962::MemoryTree;
use lienthong_protocol::roster::{
    AgencyEntry, AgencyState, CentralNode, Federation, Roster, SignedRoster,
};
use lienthong_protocol::signed_note::Ed25519Signer;
use lienthong_protocol::status::StatusCode;
use lienthong_protocol::tlog_checkpoint::Checkpoint;
use lienthong_protocol::tlog_cosignature::{Cosigner, TimestampedCosigner};
use lienthong_protocol::tlog_tiles::{encode_entry_bundle, new_tiles, tile_data};

use super::AuditError;
use super::mirror::{Mirror, bundles, write_atomic};

/// 2026-01-01T00:00:00Z: the first document's creation time.
pub const T0: u64 = 1_767_225_600_000;
/// A due date before every document of a small ledger is past.
pub const PAST_DUE: &str = "2026-01-02";
/// A due date that is never reached.
pub const FUTURE_DUE: &str = "2099-12-31";
/// Minutes between documents.
pub const STEP_MS: u64 = 60_000;
/// The most agencies a ledger may have (their codes stay distinct).
pub const MAX_AGENCIES: usize = 290;

/// Misbehaviour slipped into the ledger (validly signed by the culprit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// The last document's sender signs a second envelope with its last sequence number.
    Equivocation,
    /// An agency that is neither sender nor recipient posts 01 for the last document.
    NonRecipientStatus,
    /// Agency 0, revoked in epoch 2, sends a document after it.
    RevokedSender,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Agencies (at least 4, at most [`MAX_AGENCIES`]); the last one never acknowledges.
    pub agencies: usize,
    /// Documents.
    pub documents: usize,
    /// The federation name.
    pub federation: String,
    /// Central nodes `(name, log key)` listed in the roster.
    pub central: Vec<(String, VerifyingKey)>,
    /// Witness quorum written in the roster.
    pub witness_quorum: u8,
    /// Misbehaviour to inject at the end.
    pub inject: Vec<Inject>,
}

/// What the report must say about one agency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedAgency {
    pub sent: u64,
    pub copies_sent: u64,
    pub received: u64,
    pub statuses: BTreeMap<StatusCode, u64>,
    /// Latencies (ms) of its 01, 03 and 06 as a recipient.
    pub arrived: Vec<u64>,
    pub accepted: Vec<u64>,
    pub completed: Vec<u64>,
    /// Copies addressed to it without any status.
    pub unacknowledged: u64,
    /// Copies addressed to it past due and not finished (02 or 06).
    pub past_due: u64,
}

/// A generated ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    /// The entries in log order.
    pub entries: Vec<Vec<u8>>,
    /// Signed rosters by epoch (epoch 1 is the genesis, recorded first).
    pub rosters: BTreeMap<u64, SignedRoster>,
    /// Entry index of each roster epoch's entry.
    pub roster_entries: BTreeMap<u64, usize>,
    /// Expected per-agency figures (injected entries not included).
    pub expected: BTreeMap<AgencyId, ExpectedAgency>,
    /// Expected stalled copies `(document, recipient)` at any `now` after the past due date.
    pub stalled: BTreeSet<(ContentId, AgencyId)>,
    /// Where each injection went (entry index).
    pub injected: Vec<(Inject, usize)>,
}

/// Agency `i`'s id: levels 1 and 2 mixed.
pub fn agency_id(i: usize) -> AgencyId {
    let code = match i % 3 {
        0 => format!("000.00.00.G{:02}", i / 3 % 100),
        1 => format!("000.00.00.H{:02}", i / 3 % 100),
        _ => format!("000.00.{:02}.H44", i / 3 % 99 + 1),
    };
    #[allow(clippy::expect_used)]
    AgencyId::parse(&code).expect("the codes above are valid edXML codes")
}

fn seed(tag: u8, i: usize) -> [u8; 32] {
    let mut s = [tag; 32];
    s[..8].copy_from_slice(&(i as u64).to_be_bytes());
    s
}

/// Agency `i`'s signing key.
pub fn agency_key(i: usize) -> SigningKey {
    SigningKey::from_seed(&seed(0xa6, i))
}

/// Root key `i` of the federation (3 keys, threshold 2).
pub fn root_key(i: usize) -> SigningKey {
    SigningKey::from_seed(&seed(0x7e, i))
}

/// A log signer with a key derived from `n` (for benchmarks and tests).
pub fn log_signer(origin: &str, n: u8) -> Result<Ed25519Signer, AuditError> {
    Ed25519Signer::new(
        origin,
        ed25519_dalek::SigningKey::from_bytes(&seed(0x10, n.into())),
    )
    .map_err(|e| AuditError::invalid("log key", e))
}

/// A witness cosigner with a key derived from `n`.
pub fn witness(name: &str, n: u8) -> Result<Cosigner, AuditError> {
    Cosigner::new(
        name,
        ed25519_dalek::SigningKey::from_bytes(&seed(0x20, n.into())),
    )
    .map_err(|e| AuditError::invalid("witness key", e))
}

fn roster(spec: &Spec, epoch: u64, issued_ms: u64, revoked: bool) -> Roster {
    let mut agencies: Vec<AgencyEntry> = (0..spec.agencies)
        .map(|i| {
            let id = agency_id(i);
            AgencyEntry {
                level: id.level().unwrap_or(1),
                parent: id.parent(),
                name: format!("Agency {i}"),
                id,
                signing_key: agency_key(i).verifying_key(),
                encryption_key: EncryptionSecret::from_bytes(&seed(0xec, i)).public_key(),
                node: format!("12D3KooWnode{i}"),
                addrs: vec![],
                state: if revoked && i == 0 {
                    AgencyState::Revoked
                } else {
                    AgencyState::Active
                },
            }
        })
        .collect();
    agencies.sort_by(|a, b| a.id.cmp(&b.id));
    Roster {
        epoch,
        issued_ms,
        federation: Federation {
            name: spec.federation.clone(),
            threshold: 2,
            root_keys: (0..3).map(|i| root_key(i).verifying_key()).collect(),
            witness_quorum: spec.witness_quorum,
        },
        agencies,
        central: spec
            .central
            .iter()
            .enumerate()
            .map(|(i, (name, key))| CentralNode {
                name: name.clone(),
                peer_id: format!("12D3KooWcentral{i}"),
                addrs: vec![],
                log_key: *key,
                http_url: format!("http://{name}.invalid"),
            })
            .collect(),
    }
}

fn sign_roster(r: &Roster, roots: &[usize]) -> Result<SignedRoster, AuditError> {
    let mut s = SignedRoster::propose(r).map_err(|e| AuditError::invalid("roster", e))?;
    for &i in roots {
        s.sign(&root_key(i));
    }
    Ok(s)
}

struct Gen {
    entries: Vec<Vec<u8>>,
    chains: Vec<(u64, Option<ContentId>)>,
}

impl Gen {
    fn envelope(
        &mut self,
        from: usize,
        kind: Kind,
        to: &[usize],
        created_ms: u64,
        routing: Routing,
        payload: Payload,
    ) -> Result<ContentId, AuditError> {
        let (seq, prev) = self.chains.get(from).copied().unwrap_or((0, None));
        let mut to: Vec<AgencyId> = to.iter().map(|&i| agency_id(i)).collect();
        to.sort();
        let body = EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind,
            from: agency_id(from),
            to,
            seq: seq + 1,
            prev,
            created_ms,
            routing,
            payload,
        };
        let env = SignedEnvelope::sign(body, &agency_key(from))
            .map_err(|e| AuditError::invalid("synthetic envelope", e))?;
        if let Some(c) = self.chains.get_mut(from) {
            *c = (seq + 1, Some(env.id()));
        }
        self.entries.push(
            LedgerEntry::envelope(&env)
                .map_err(|e| AuditError::invalid("synthetic entry", e))?
                .to_bytes(),
        );
        Ok(env.id())
    }

    fn document(
        &mut self,
        from: usize,
        to: &[usize],
        created: u64,
        due: Option<&str>,
    ) -> Result<ContentId, AuditError> {
        let routing = Routing {
            doc_type: Some("CV".into()),
            due: due.map(Into::into),
            ..Routing::default()
        };
        let payload = Payload::External {
            manifest: ContentId::of(&created.to_be_bytes()).0,
            size: 1000 + created % 1000,
        };
        self.envelope(from, Kind::Document, to, created, routing, payload)
    }

    fn status(
        &mut self,
        from: usize,
        to: usize,
        doc: ContentId,
        code: StatusCode,
        created: u64,
    ) -> Result<ContentId, AuditError> {
        let routing = Routing {
            refers_to: Some(doc),
            status: Some(code),
            ..Routing::default()
        };
        self.envelope(from, Kind::Status, &[to], created, routing, Payload::None)
    }
}

/// The statuses recipient `r` posts for document `d` (the last agency posts none).
pub fn path(spec: &Spec, d: usize, r: usize) -> &'static [StatusCode] {
    use StatusCode::*;
    if r + 1 == spec.agencies {
        return &[];
    }
    match (d + r) % 5 {
        0 => &[],
        1 => &[Arrived],
        2 => &[Arrived, Accepted],
        3 => &[Arrived, Accepted, Completed],
        _ => &[Arrived, Rejected],
    }
}

/// Generates the ledger of `spec`.
///
/// # Errors
/// An invalid spec (fewer than 4 or more than [`MAX_AGENCIES`] agencies).
pub fn generate(spec: &Spec) -> Result<Ledger, AuditError> {
    let n = spec.agencies;
    if !(4..=MAX_AGENCIES).contains(&n) {
        return Err(AuditError::invalid(
            "synthetic ledger",
            format!("{n} agencies: between 4 and {MAX_AGENCIES}"),
        ));
    }
    let mut g = Gen {
        entries: Vec::new(),
        chains: vec![(0, None); n],
    };
    let mut rosters = BTreeMap::new();
    let mut roster_entries = BTreeMap::new();
    let genesis = sign_roster(&roster(spec, 1, T0 - 86_400_000, false), &[0, 2])?;
    roster_entries.insert(1, g.entries.len());
    g.entries.push(LedgerEntry::roster(&genesis, 1).to_bytes());
    rosters.insert(1, genesis);
    let mut expected: BTreeMap<AgencyId, ExpectedAgency> = BTreeMap::new();
    let mut stalled = BTreeSet::new();
    // The last document some recipient has not finished with, and its sender's last one.
    let mut last = None;
    let mut last_open = None;
    for d in 0..spec.documents {
        let t = T0 + d as u64 * STEP_MS;
        let s = d % n;
        let mut to = vec![(s + 1) % n];
        if d % 2 == 0 {
            to.push((s + 2) % n);
        }
        let due = match d % 3 {
            0 => None,
            1 => Some(PAST_DUE),
            _ => Some(FUTURE_DUE),
        };
        let id = g.document(s, &to, t, due)?;
        let open = to.iter().any(|&r| {
            !matches!(
                path(spec, d, r).last(),
                Some(StatusCode::Completed | StatusCode::Rejected)
            )
        });
        if open {
            last_open = Some((id, s, to.clone(), t));
        }
        let e = expected.entry(agency_id(s)).or_default();
        e.sent += 1;
        e.copies_sent += to.len() as u64;
        for &r in &to {
            let p = path(spec, d, r);
            let e = expected.entry(agency_id(r)).or_default();
            e.received += 1;
            if p.is_empty() {
                e.unacknowledged += 1;
            }
            let finished = matches!(p.last(), Some(StatusCode::Completed | StatusCode::Rejected));
            if due == Some(PAST_DUE) && !finished {
                e.past_due += 1;
                stalled.insert((id, agency_id(r)));
            }
            let step = 1000 * (1 + ((d + r) % 7) as u64);
            for (k, &code) in p.iter().enumerate() {
                let latency = step * (k as u64 + 1);
                g.status(r, s, id, code, t + latency)?;
                *e.statuses.entry(code).or_default() += 1;
                match code {
                    StatusCode::Arrived => e.arrived.push(latency),
                    StatusCode::Accepted => e.accepted.push(latency),
                    StatusCode::Completed => e.completed.push(latency),
                    _ => {}
                }
            }
        }
        last = Some((s, t));
    }
    let end = T0 + spec.documents as u64 * STEP_MS;
    let mut injected = Vec::new();
    if spec.inject.contains(&Inject::NonRecipientStatus)
        && let Some((id, s, to, t)) = last_open
        && let Some(o) = (1..n).find(|i| *i != s && !to.contains(i))
    {
        injected.push((Inject::NonRecipientStatus, g.entries.len()));
        g.status(o, s, id, StatusCode::Arrived, t + 500)?;
    }
    if spec.inject.contains(&Inject::Equivocation)
        && let Some((s, t)) = last
    {
        // Rewind the sender's chain by one and sign another envelope in its place.
        let saved = g.chains.get(s).copied().unwrap_or((0, None));
        let prev_of_last = g
            .entries
            .iter()
            .rev()
            .filter_map(|e| SignedEnvelope::decode_header(e).ok())
            .find(|env| env.body().from == agency_id(s))
            .and_then(|env| env.body().prev);
        if let Some(c) = g.chains.get_mut(s) {
            *c = (saved.0.saturating_sub(1), prev_of_last);
        }
        injected.push((Inject::Equivocation, g.entries.len()));
        g.document(s, &[(s + 3) % n], t + 700, None)?;
        if let Some(c) = g.chains.get_mut(s) {
            *c = saved;
        }
    }
    // Epoch 2 revokes agency 0.
    let revoking = sign_roster(&roster(spec, 2, end, true), &[1, 2])?;
    roster_entries.insert(2, g.entries.len());
    g.entries.push(LedgerEntry::roster(&revoking, 2).to_bytes());
    rosters.insert(2, revoking);
    if spec.inject.contains(&Inject::RevokedSender) {
        injected.push((Inject::RevokedSender, g.entries.len()));
        g.document(0, &[1], end + 1000, None)?;
    }
    Ok(Ledger {
        entries: g.entries,
        rosters,
        roster_entries,
        expected,
        stalled,
        injected,
    })
}

/// Writes `ledger` into `dir` as a mirror: bundles, hash tiles, rosters, and one checkpoint
/// of the whole tree signed by `log` and cosigned by `witnesses`.
///
/// # Errors
/// File errors.
pub fn write_mirror(
    ledger: &Ledger,
    dir: &Path,
    log: &Ed25519Signer,
    origin: &str,
    witnesses: &[Cosigner],
) -> Result<(), AuditError> {
    let mirror = Mirror::new(dir);
    let size = ledger.entries.len() as u64;
    let tree = MemoryTree::from_entries(ledger.entries.iter());
    for (k, id) in bundles(size).enumerate() {
        let from = k * 256;
        let to = (from + usize::from(id.width)).min(ledger.entries.len());
        let chunk = ledger.entries.get(from..to).unwrap_or_default();
        let data = encode_entry_bundle(chunk).map_err(|e| AuditError::invalid("bundle", e))?;
        write_plain(&mirror.tile_path(&id), &data)?;
    }
    for id in new_tiles(0, size, false) {
        let data = tile_data(&tree, &id).map_err(|e| AuditError::invalid("tile", e))?;
        write_plain(&mirror.tile_path(&id), &data)?;
    }
    for (epoch, r) in &ledger.rosters {
        let bytes = r.to_bytes().map_err(|e| AuditError::invalid("roster", e))?;
        write_plain(&mirror.roster_path(*epoch), &bytes)?;
    }
    let cp = Checkpoint::new(origin, size, tree.root())
        .map_err(|e| AuditError::invalid("checkpoint", e))?;
    let mut signed = cp
        .sign(log)
        .map_err(|e| AuditError::invalid("checkpoint", e))?;
    for w in witnesses {
        signed
            .note_mut()
            .sign(&TimestampedCosigner {
                cosigner: w,
                timestamp: T0 / 1000,
            })
            .map_err(|e| AuditError::invalid("cosignature", e))?;
    }
    let bytes = signed.to_bytes();
    mirror.record_checkpoint(&bytes)?;
    write_atomic(&mirror.checkpoint_path(), &bytes)
}

/// A plain write (no fsync: generated data, many files).
fn write_plain(path: &Path, data: &[u8]) -> Result<(), AuditError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| AuditError::io(parent, e))?;
    }
    std::fs::write(path, data).map_err(|e| AuditError::io(path, e))
}
