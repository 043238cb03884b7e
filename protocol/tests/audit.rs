//! The audit replay verifier on generated ledgers: a clean ledger verifies with zero
//! violations (in every mode, with one or two threads, whatever the order of checkpoints),
//! every tampering of the tamper corpus is detected with its specific violation, and the
//! statistics match what the generator knows it produced.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::audit::{
    Checks, Limits, LogParams, Replayer, Report, Violation, cross_check, cross_check_sorted,
    due_deadline_ms,
};
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::ledger::{LedgerEntry, log_origin};
use lienthong_protocol::rfc6962::{MemoryTree, TreeBuilder};
use lienthong_protocol::roster::{
    AgencyEntry, AgencyState, CentralNode, Federation, Roster, SignedRoster,
};
use lienthong_protocol::signed_note::{Ed25519Signer, Note, Signature as NoteSignature};
use lienthong_protocol::status::{Stage, StatusCode};
use lienthong_protocol::tlog_checkpoint::{Checkpoint, SignedCheckpoint};
use lienthong_protocol::tlog_cosignature::{Cosigner, TimestampedCosigner};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use StatusCode::*;

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
/// When the report is asked for: ten days later.
const NOW: u64 = T0 + 10 * 86_400_000;
const PAST_DUE: &str = "2026-01-02";
const FUTURE_DUE: &str = "2026-12-31";
const STEPS: usize = 360;
const REVOKE_AT: usize = 180;
const CHECKPOINT_EVERY: u64 = 25;

const AGENCIES: [&str; 6] = [
    "000.00.00.G01",
    "000.00.00.G05",
    "000.00.00.G22",
    "000.00.00.H41",
    "000.00.00.H44",
    "000.00.24.H44",
];
/// Revoked at epoch 2.
const REVOKED: usize = 0;
/// Receives documents and never acknowledges them.
const SILENT: usize = 1;

fn pick(rng: &mut ChaCha20Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

fn aid(i: usize) -> AgencyId {
    AgencyId::parse(AGENCIES[i]).unwrap()
}

/// Keys and rosters of the test federation.
struct Fed {
    roots: Vec<SigningKey>,
    agencies: Vec<SigningKey>,
    genesis_roster: Roster,
    log: Ed25519Signer,
    witnesses: Vec<Cosigner>,
}

fn origin() -> String {
    log_origin("lienthong-test", "central-a")
}

fn dalek(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn fed() -> Fed {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let roots: Vec<_> = (0..3).map(|_| SigningKey::generate(&mut rng)).collect();
    let agencies: Vec<_> = AGENCIES
        .iter()
        .map(|_| SigningKey::generate(&mut rng))
        .collect();
    let entries = AGENCIES
        .iter()
        .zip(&agencies)
        .map(|(id, key)| {
            let id = AgencyId::parse(id).unwrap();
            AgencyEntry {
                level: id.level().unwrap(),
                parent: id.parent(),
                name: format!("Agency {id}"),
                id,
                signing_key: key.verifying_key(),
                encryption_key: EncryptionSecret::generate(&mut rng).public_key(),
                node: "12D3KooWnode".into(),
                addrs: vec![],
                state: AgencyState::Active,
            }
        })
        .collect();
    let log = Ed25519Signer::new(&origin(), dalek(1)).unwrap();
    let witnesses = vec![
        Cosigner::new("central-b", dalek(2)).unwrap(),
        Cosigner::new("central-c", dalek(3)).unwrap(),
    ];
    let central = ["central-a", "central-b", "central-c"]
        .iter()
        .enumerate()
        .map(|(i, name)| CentralNode {
            name: (*name).into(),
            peer_id: format!("12D3KooWcentral{i}"),
            addrs: vec![],
            log_key: lienthong_protocol::keys::VerifyingKey(
                dalek(i as u8 + 1).verifying_key().to_bytes(),
            ),
            http_url: format!("http://central-{i}.example"),
        })
        .collect();
    let genesis_roster = Roster {
        epoch: 1,
        issued_ms: T0 - 86_400_000,
        federation: Federation {
            name: "lienthong-test".into(),
            threshold: 2,
            root_keys: roots.iter().map(SigningKey::verifying_key).collect(),
            witness_quorum: 2,
        },
        agencies: entries,
        central,
    };
    Fed {
        roots,
        agencies,
        genesis_roster,
        log,
        witnesses,
    }
}

fn sign_roster(fed: &Fed, roster: &Roster, roots: &[usize]) -> SignedRoster {
    let mut s = SignedRoster::propose(roster).unwrap();
    for &r in roots {
        s.sign(&fed.roots[r]);
    }
    s
}

fn params(fed: &Fed) -> LogParams {
    LogParams {
        origin: origin(),
        log_key: fed.log.verifier(),
        witnesses: fed.witnesses.iter().map(Cosigner::public).collect(),
        quorum: 2,
    }
}

/// A checkpoint of `entries[..size]`, signed by the log and cosigned by both witnesses.
fn sign_checkpoint(fed: &Fed, entries: &[Vec<u8>], size: u64) -> Vec<u8> {
    let mut tree = TreeBuilder::new();
    for e in &entries[..size as usize] {
        tree.push_entry(e);
    }
    let cp = Checkpoint::new(&origin(), size, tree.root()).unwrap();
    let mut signed = cp.sign(&fed.log).unwrap();
    for w in &fed.witnesses {
        signed
            .note_mut()
            .sign(&TimestampedCosigner {
                cosigner: w,
                timestamp: T0 / 1000 + size,
            })
            .unwrap();
    }
    signed.to_bytes()
}

/// What the generator knows about one agency.
#[derive(Debug, Default, Clone)]
struct Expect {
    sent: u64,
    copies_sent: u64,
    received: u64,
    statuses: BTreeMap<StatusCode, u64>,
    arrived: Vec<u64>,
    accepted: Vec<u64>,
    completed: Vec<u64>,
    unacknowledged: u64,
    past_due: u64,
}

/// Extra (bad) things the generator can slip into the ledger, all validly signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inject {
    None,
    /// An agency posts 01 for a document not addressed to it.
    NonRecipientStatus,
    /// The revoked agency sends a document after the revoking epoch.
    RevokedSender,
    /// A recipient posts 06 right after 01.
    CompletedBeforeAccepted,
    /// Epoch 3 recorded with one root signature (threshold 2).
    WeakRoster,
    /// A sender signs a second envelope with the sequence number of its last one.
    Equivocation,
}

#[derive(Debug, Clone)]
struct DocRec {
    id: ContentId,
    sender: usize,
    created: u64,
    past_due: bool,
}

struct Copy {
    doc: usize,
    recipient: usize,
    path: VecDeque<StatusCode>,
    last: Option<StatusCode>,
}

struct Ledger {
    fed: Fed,
    entries: Vec<Vec<u8>>,
    /// The sending agency of each envelope entry.
    senders: Vec<Option<usize>>,
    checkpoint_sizes: Vec<u64>,
    checkpoints: Vec<Vec<u8>>,
    rosters: BTreeMap<u64, SignedRoster>,
    genesis: SignedRoster,
    expect: BTreeMap<AgencyId, Expect>,
    stalled: BTreeSet<(ContentId, AgencyId)>,
    injected_at: Option<usize>,
}

struct Gen {
    fed: Fed,
    chains: Vec<(u64, Option<ContentId>)>,
    entries: Vec<Vec<u8>>,
    senders: Vec<Option<usize>>,
    checkpoint_sizes: Vec<u64>,
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
    ) -> ContentId {
        let (seq, prev) = self.chains[from];
        let mut to: Vec<AgencyId> = to.iter().map(|&i| aid(i)).collect();
        to.sort();
        let body = EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind,
            from: aid(from),
            to,
            seq: seq + 1,
            prev,
            created_ms,
            routing,
            payload,
        };
        let env = SignedEnvelope::sign(body, &self.fed.agencies[from]).unwrap();
        self.chains[from] = (seq + 1, Some(env.id()));
        self.push(env.header_bytes(), Some(from));
        env.id()
    }

    fn push(&mut self, entry: Vec<u8>, sender: Option<usize>) {
        self.entries.push(entry);
        self.senders.push(sender);
        let n = self.entries.len() as u64;
        if n.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoint_sizes.push(n);
        }
    }

    fn document(
        &mut self,
        from: usize,
        to: &[usize],
        created: u64,
        due: Option<&str>,
    ) -> ContentId {
        let routing = Routing {
            doc_type: Some("CV".into()),
            due: due.map(Into::into),
            ..Routing::default()
        };
        let payload = Payload::External {
            manifest: [created as u8; 32],
            size: 1000 + created % 1000,
        };
        self.envelope(from, Kind::Document, to, created, routing, payload)
    }

    fn status(&mut self, from: usize, to: usize, doc: ContentId, code: StatusCode, created: u64) {
        let routing = Routing {
            refers_to: Some(doc),
            status: Some(code),
            ..Routing::default()
        };
        self.envelope(from, Kind::Status, &[to], created, routing, Payload::None);
    }

    fn roster(&mut self, signed: &SignedRoster, epoch: u64) {
        self.push(LedgerEntry::roster(signed, epoch).to_bytes(), None);
    }
}

fn generate(seed: u64, inject: Inject) -> Ledger {
    let fed = fed();
    let genesis = sign_roster(&fed, &fed.genesis_roster, &[0, 2]);
    let mut rosters = BTreeMap::from([(1, genesis.clone())]);
    let mut g = Gen {
        fed,
        chains: vec![(0, None); AGENCIES.len()],
        entries: vec![],
        senders: vec![],
        checkpoint_sizes: vec![],
    };
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut expect: BTreeMap<AgencyId, Expect> = BTreeMap::new();
    let mut docs: Vec<DocRec> = vec![];
    let mut copies: Vec<Copy> = vec![];
    let mut revoked = false;
    let mut injected_at = None;
    // The genesis epoch recorded first, as a central node does.
    g.roster(&genesis, 1);
    let paths: [&[StatusCode]; 7] = [
        &[],
        &[Arrived],
        &[Arrived, Accepted],
        &[Arrived, Accepted, Completed],
        &[Arrived, Accepted, Completed],
        &[Arrived, Rejected],
        &[Arrived, Accepted, Assigned, Processing, Completed],
    ];
    for step in 0..STEPS {
        let t = T0 + step as u64 * 60_000;
        if step == REVOKE_AT {
            let mut next = g.fed.genesis_roster.clone();
            next.epoch = 2;
            next.issued_ms = t;
            next.agencies[REVOKED].state = AgencyState::Revoked;
            let signed = sign_roster(&g.fed, &next, &[1, 2]);
            g.roster(&signed, 2);
            rosters.insert(2, signed);
            revoked = true;
            // The revoked agency posts nothing more.
            for c in copies.iter_mut().filter(|c| c.recipient == REVOKED) {
                c.path.clear();
            }
        }
        let active = |i: usize| !(revoked && i == REVOKED);
        let pending: Vec<usize> = (0..copies.len())
            .filter(|&i| !copies[i].path.is_empty())
            .collect();
        if pending.is_empty() || pick(&mut rng, 10) < 3 {
            let senders: Vec<usize> = (0..AGENCIES.len()).filter(|&i| active(i)).collect();
            let from = senders[pick(&mut rng, senders.len())];
            let mut others: Vec<usize> = (0..AGENCIES.len())
                .filter(|&i| i != from && active(i))
                .collect();
            let n = 1 + pick(&mut rng, 3);
            let mut to = vec![];
            for _ in 0..n {
                to.push(others.remove(pick(&mut rng, others.len())));
            }
            let due = [None, Some(PAST_DUE), Some(FUTURE_DUE)][pick(&mut rng, 3)];
            let id = g.document(from, &to, t, due);
            let e = expect.entry(aid(from)).or_default();
            e.sent += 1;
            e.copies_sent += to.len() as u64;
            docs.push(DocRec {
                id,
                sender: from,
                created: t,
                past_due: due == Some(PAST_DUE),
            });
            for r in to {
                expect.entry(aid(r)).or_default().received += 1;
                let path = if r == SILENT {
                    &[][..]
                } else {
                    paths[pick(&mut rng, paths.len())]
                };
                copies.push(Copy {
                    doc: docs.len() - 1,
                    recipient: r,
                    path: path.iter().copied().collect(),
                    last: None,
                });
            }
        } else {
            let c = &mut copies[pending[pick(&mut rng, pending.len())]];
            let code = c.path.pop_front().unwrap();
            c.last = Some(code);
            let doc = docs[c.doc].clone();
            let r = c.recipient;
            let created = t + pick(&mut rng, 30_000) as u64;
            g.status(r, doc.sender, doc.id, code, created);
            let e = expect.entry(aid(r)).or_default();
            *e.statuses.entry(code).or_default() += 1;
            let latency = created - doc.created;
            match code {
                Arrived => e.arrived.push(latency),
                Accepted => e.accepted.push(latency),
                Completed => e.completed.push(latency),
                _ => {}
            }
        }
        // Injections, once, in the second half (after the revocation).
        if injected_at.is_none() && step > REVOKE_AT + 20 && inject != Inject::None {
            let at = g.entries.len();
            let done = match inject {
                Inject::None => false,
                Inject::NonRecipientStatus => {
                    let d = docs.last().unwrap().clone();
                    let party: BTreeSet<usize> = copies
                        .iter()
                        .filter(|c| docs[c.doc].id == d.id)
                        .map(|c| c.recipient)
                        .chain([d.sender])
                        .collect();
                    let outsider = (0..AGENCIES.len()).find(|&i| active(i) && !party.contains(&i));
                    if let Some(o) = outsider {
                        g.status(o, d.sender, d.id, Arrived, t + 1);
                    }
                    outsider.is_some()
                }
                Inject::RevokedSender => {
                    // Its chain continues properly: only the roster says no.
                    g.document(REVOKED, &[2], t + 1, None);
                    true
                }
                Inject::CompletedBeforeAccepted => {
                    let c = copies
                        .iter()
                        .find(|c| c.last == Some(Arrived) && c.path.front() == Some(&Accepted));
                    if let Some(c) = c {
                        let d = &docs[c.doc];
                        let (r, s, id) = (c.recipient, d.sender, d.id);
                        g.status(r, s, id, Completed, t + 1);
                    }
                    c.is_some()
                }
                Inject::WeakRoster => {
                    let mut next = g.fed.genesis_roster.clone();
                    next.epoch = 3;
                    next.agencies[REVOKED].state = AgencyState::Revoked;
                    let full = sign_roster(&g.fed, &next, &[0, 1]);
                    let weak = sign_roster(&g.fed, &next, &[1]);
                    g.roster(&weak, 3);
                    rosters.insert(3, full);
                    true
                }
                Inject::Equivocation => {
                    let from = 2;
                    let (seq, _) = g.chains[from];
                    let saved = g.chains[from];
                    // Rewind to before its last envelope and sign another one in its place.
                    let prev_of_last = {
                        let last_index = (0..g.entries.len())
                            .rev()
                            .find(|&i| g.senders[i] == Some(from))
                            .unwrap();
                        let env = SignedEnvelope::decode_header(&g.entries[last_index]).unwrap();
                        env.body().prev
                    };
                    g.chains[from] = (seq - 1, prev_of_last);
                    g.document(from, &[3], t + 7, None);
                    g.chains[from] = saved;
                    true
                }
            };
            if done {
                injected_at = Some(at);
            }
        }
    }
    // Expected end state of every copy.
    let mut stalled = BTreeSet::new();
    for c in &copies {
        let e = expect.entry(aid(c.recipient)).or_default();
        if c.last.is_none() {
            e.unacknowledged += 1;
        }
        let finished = matches!(c.last, Some(Completed | Rejected));
        if docs[c.doc].past_due && !finished {
            e.past_due += 1;
            stalled.insert((docs[c.doc].id, aid(c.recipient)));
        }
    }
    let Gen {
        fed,
        entries,
        senders,
        mut checkpoint_sizes,
        ..
    } = g;
    checkpoint_sizes.push(entries.len() as u64);
    checkpoint_sizes.dedup();
    let checkpoints = checkpoint_sizes
        .iter()
        .map(|&s| sign_checkpoint(&fed, &entries, s))
        .collect();
    Ledger {
        fed,
        entries,
        senders,
        checkpoint_sizes,
        checkpoints,
        rosters,
        genesis,
        expect,
        stalled,
        injected_at,
    }
}

impl Ledger {
    fn replayer(&self, checks: Checks, limits: Limits) -> Replayer {
        Replayer::with_options(
            self.genesis.clone(),
            params(&self.fed),
            self.rosters.clone(),
            checks,
            limits,
        )
        .unwrap()
    }

    /// Mirror order: every checkpoint first, then the entries.
    fn replay_parts(&self, entries: &[Vec<u8>], checkpoints: &[Vec<u8>], limits: Limits) -> Report {
        let mut r = self.replayer(Checks::Full, limits);
        for cp in checkpoints {
            r.push_checkpoint(cp);
        }
        for (i, e) in entries.iter().enumerate() {
            r.push_entry(i as u64, e);
        }
        r.finish(NOW)
    }

    fn replay(&self) -> Report {
        self.replay_parts(&self.entries, &self.checkpoints, small_batches())
    }

    /// The log itself re-signs checkpoints over altered entries (a dishonest log).
    fn resigned(&self, entries: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut sizes: Vec<u64> = self
            .checkpoint_sizes
            .iter()
            .map(|&s| s.min(entries.len() as u64))
            .collect();
        sizes.push(entries.len() as u64);
        sizes.dedup();
        sizes
            .iter()
            .map(|&s| sign_checkpoint(&self.fed, entries, s))
            .collect()
    }
}

fn small_batches() -> Limits {
    Limits {
        batch: 16,
        threads: 2,
        ..Limits::default()
    }
}

fn kinds(report: &Report) -> BTreeSet<&'static str> {
    report.violations.iter().map(Violation::kind).collect()
}

#[track_caller]
fn assert_detects(report: &Report, kind: &str) {
    assert!(
        report.violations.iter().any(|v| v.kind() == kind),
        "expected a {kind} violation, got {:#?}",
        report
            .violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    assert!(!report.is_clean());
}

#[track_caller]
fn assert_only(report: &Report, allowed: &[&str]) {
    for v in &report.violations {
        assert!(allowed.contains(&v.kind()), "unexpected violation: {v}");
    }
}

/// A ledger of `seed` with `inject` in it, replayed: the report shows `kind` and nothing
/// else.
#[track_caller]
fn injected(seed: u64, inject: Inject, kind: &str) -> (Ledger, Report) {
    let ledger = generate(seed, inject);
    assert!(ledger.injected_at.is_some());
    let report = ledger.replay();
    assert_detects(&report, kind);
    assert_only(&report, &[kind]);
    (ledger, report)
}

#[test]
fn a_clean_ledger_verifies_in_every_mode() {
    let ledger = generate(1, Inject::None);
    assert!(ledger.entries.len() > 300, "{}", ledger.entries.len());
    let limits = [
        Limits::default(),
        small_batches(),
        Limits {
            batch: 1,
            threads: 3,
            ..Limits::default()
        },
    ];
    let mut roots = BTreeSet::new();
    for limits in limits {
        let report = ledger.replay_parts(&ledger.entries, &ledger.checkpoints, limits);
        assert!(
            report.is_clean(),
            "{:#?}",
            report
                .violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        assert_eq!(report.entries, ledger.entries.len() as u64);
        assert_eq!(report.signatures_verified, report.envelopes);
        assert_eq!(
            report.envelopes + report.roster_entries,
            ledger.entries.len() as u64
        );
        assert_eq!(report.roster_epoch, 2);
        assert_eq!(report.checkpoints.compared, ledger.checkpoints.len() as u64);
        roots.insert(report.root);
    }
    assert_eq!(roots.len(), 1);

    // Checkpoints interleaved at their sizes, hashes only, and the structure mode.
    for checks in [Checks::HashesOnly, Checks::Structure, Checks::Full] {
        let mut r = ledger.replayer(checks, Limits::default());
        let mut next_cp = 0;
        let mut found = vec![];
        for (i, e) in ledger.entries.iter().enumerate() {
            found.extend(r.push_entry(i as u64, e));
            while next_cp < ledger.checkpoints.len()
                && ledger.checkpoint_sizes[next_cp] == i as u64 + 1
            {
                found.extend(r.push_checkpoint(&ledger.checkpoints[next_cp]));
                next_cp += 1;
            }
        }
        let report = r.finish(NOW);
        assert!(
            found.is_empty() && report.is_clean(),
            "{checks:?}: {found:?}"
        );
        assert_eq!(report.checkpoints.compared, ledger.checkpoints.len() as u64);
        assert!(roots.contains(&report.root));
    }

    // Only the latest checkpoint, given after the entries (a replay from tiles).
    let mut r = ledger.replayer(Checks::HashesOnly, Limits::default());
    for (i, e) in ledger.entries.iter().enumerate() {
        r.push_entry(i as u64, e);
    }
    assert!(
        r.push_checkpoint(ledger.checkpoints.last().unwrap())
            .is_empty()
    );
    // An old checkpoint after the fact: unverified without a proof, verified with one.
    let old = &ledger.checkpoints[2];
    assert!(r.push_checkpoint(old).is_empty());
    let tree = MemoryTree::from_entries(ledger.entries.iter());
    let proof = tree
        .consistency_proof(ledger.checkpoint_sizes[2], tree.size())
        .unwrap();
    assert!(r.push_checkpoint_with_proof(old, &proof).is_empty());
    let report = r.finish(NOW);
    assert!(report.is_clean());
    assert_eq!(report.checkpoints.unverified, 1);
    assert_eq!(report.checkpoints.compared, 2);
}

#[test]
fn tiny_memory_limits_forget_but_never_accuse() {
    let ledger = generate(2, Inject::None);
    let limits = Limits {
        max_open_documents: 4,
        max_closed_remembered: 8,
        chain_window: 1,
        max_recorded_roots: 2,
        max_kept_notes: 1,
        ..small_batches()
    };
    let report = ledger.replay_parts(&ledger.entries, &ledger.checkpoints, limits);
    assert!(report.is_clean(), "{:?}", kinds(&report));
    assert!(report.forgotten.documents_evicted > 0);
    assert!(report.forgotten.closed_ids_forgotten > 0);
    assert!(report.forgotten.statuses_unchecked > 0);
    assert!(report.stats.open_documents <= 4);
    let horizon = Limits {
        document_horizon_ms: 30 * 60_000,
        ..small_batches()
    };
    let report = ledger.replay_parts(&ledger.entries, &ledger.checkpoints, horizon);
    assert!(report.is_clean(), "{:?}", kinds(&report));
    assert!(report.forgotten.documents_expired > 0);
    let expired: u64 = report
        .stats
        .agencies
        .iter()
        .map(|a| a.expired_unfinished)
        .sum();
    assert!(expired > 0);
}

// ---- The tamper corpus ------------------------------------------------------------------

/// The index of an envelope entry from a sender that sends again later, in the middle.
fn middle_envelope(ledger: &Ledger) -> usize {
    let mid = ledger.entries.len() / 2;
    (mid..ledger.entries.len())
        .find(|&i| {
            let Some(s) = ledger.senders[i] else {
                return false;
            };
            ledger.senders[i + 1..].contains(&Some(s))
        })
        .unwrap()
}

#[test]
fn edited_entry() {
    let ledger = generate(3, Inject::None);
    let k = middle_envelope(&ledger);
    // A flipped signature byte: the entry still decodes.
    let mut entries = ledger.entries.clone();
    *entries[k].last_mut().unwrap() ^= 0x01;
    // In a mirror (the log's checkpoints cover the original).
    let report = ledger.replay_parts(&entries, &ledger.checkpoints, small_batches());
    assert_detects(&report, "root-mismatch");
    assert_detects(&report, "bad-signature");
    // By the log itself (its checkpoints cover the edit): the signature gives it away.
    let report = ledger.replay_parts(&entries, &ledger.resigned(&entries), small_batches());
    assert_detects(&report, "bad-signature");
    // The altered header has another id, so the sender's next envelope names a different
    // predecessor.
    assert_only(&report, &["bad-signature", "chain-broken"]);
    let Violation::BadSignature { index, .. } = report.violations[0] else {
        panic!()
    };
    assert_eq!(index, k as u64);
    // A flipped byte in the body (the sequence number's neighbourhood): signature or shape.
    let mut entries = ledger.entries.clone();
    entries[k][20] ^= 0x01;
    let report = ledger.replay_parts(&entries, &ledger.checkpoints, small_batches());
    assert_detects(&report, "root-mismatch");
    assert!(kinds(&report).contains("bad-signature") || kinds(&report).contains("malformed-entry"));
}

#[test]
fn dropped_entry() {
    let ledger = generate(4, Inject::None);
    let k = middle_envelope(&ledger);
    let mut entries = ledger.entries.clone();
    entries.remove(k);
    let report = ledger.replay_parts(&entries, &ledger.checkpoints, small_batches());
    assert_detects(&report, "root-mismatch");
    // The log drops it and signs the result: the sender's chain shows the hole.
    let report = ledger.replay_parts(&entries, &ledger.resigned(&entries), small_batches());
    assert_detects(&report, "chain-gap");
    let gap = report
        .violations
        .iter()
        .find_map(|v| match v {
            Violation::ChainGap {
                expected_seq, seq, ..
            } => Some((*expected_seq, *seq)),
            _ => None,
        })
        .unwrap();
    assert_eq!(gap.1, gap.0 + 1, "exactly one envelope missing");
}

#[test]
fn reordered_entries() {
    let ledger = generate(5, Inject::None);
    let k = middle_envelope(&ledger);
    let mut entries = ledger.entries.clone();
    entries.swap(k, k + 1);
    assert_ne!(entries, ledger.entries);
    let report = ledger.replay_parts(&entries, &ledger.checkpoints, small_batches());
    assert_detects(&report, "root-mismatch");
    // Two envelopes of one sender swapped by the log: a gap, then a step back.
    let s = ledger.senders[k];
    let j = (k + 1..ledger.entries.len())
        .find(|&j| ledger.senders[j] == s)
        .unwrap();
    let mut entries = ledger.entries.clone();
    entries.swap(k, j);
    let report = ledger.replay_parts(&entries, &ledger.resigned(&entries), small_batches());
    assert_detects(&report, "chain-gap");
    assert_detects(&report, "sequence-regression");
}

#[test]
fn truncated_log() {
    let ledger = generate(6, Inject::None);
    let entries = &ledger.entries[..ledger.entries.len() - 10];
    let report = ledger.replay_parts(entries, &ledger.checkpoints, small_batches());
    assert_detects(&report, "truncated");
    assert_only(&report, &["truncated"]);
    assert!(report.checkpoints.covered < entries.len() as u64);
    let Violation::Truncated {
        size, entries: n, ..
    } = &report.violations[0]
    else {
        panic!()
    };
    assert_eq!(*size, ledger.entries.len() as u64);
    assert_eq!(*n, entries.len() as u64);
}

/// Rebuilds a signed note keeping only the signature lines `keep` accepts.
fn rebuild(note: &[u8], mut edit: impl FnMut(NoteSignature) -> Option<NoteSignature>) -> Vec<u8> {
    let signed = SignedCheckpoint::parse(note).unwrap();
    let mut out = Note::new(signed.note().text()).unwrap();
    for s in signed.note().signatures() {
        if let Some(s) = edit(s.clone()) {
            out.add_signature(s).unwrap();
        }
    }
    out.to_bytes()
}

#[test]
fn forged_or_missing_cosignature() {
    let ledger = generate(7, Inject::None);
    let k = ledger.checkpoints.len() / 2;
    // Missing: central-c's line removed.
    let mut cps = ledger.checkpoints.clone();
    cps[k] = rebuild(&cps[k], |s| (s.name != "central-c").then_some(s));
    let report = ledger.replay_parts(&ledger.entries, &cps, small_batches());
    assert_detects(&report, "quorum-not-met");
    assert_only(&report, &["quorum-not-met"]);
    // Forged: central-c's line replaced by a signature of another key.
    let mut cps = ledger.checkpoints.clone();
    let forger = Cosigner::new("central-c", dalek(99)).unwrap();
    let text = SignedCheckpoint::parse(&cps[k])
        .unwrap()
        .note()
        .text()
        .to_owned();
    let forged = forger.cosign_text(&text, T0 / 1000).unwrap();
    cps[k] = rebuild(&cps[k], |s| {
        Some(if s.name == "central-c" {
            NoteSignature {
                key_id: s.key_id,
                ..forged.clone()
            }
        } else {
            s
        })
    });
    let report = ledger.replay_parts(&ledger.entries, &cps, small_batches());
    assert_detects(&report, "cosignature-invalid");
    assert_only(&report, &["cosignature-invalid"]);
    // And a checkpoint not signed by the log at all.
    let mut cps = ledger.checkpoints.clone();
    cps[k] = rebuild(&cps[k], |s| (s.name != origin()).then_some(s));
    let report = ledger.replay_parts(&ledger.entries, &cps, small_batches());
    assert_detects(&report, "checkpoint-bad-signature");
}

#[test]
fn split_view() {
    let ledger = generate(8, Inject::None);
    let k = middle_envelope(&ledger);
    let size = *ledger
        .checkpoint_sizes
        .iter()
        .find(|&&s| s > k as u64)
        .unwrap();
    // The log shows another tree of the same size to someone else, fully cosigned.
    let mut other = ledger.entries.clone();
    other.remove(k);
    other.insert(size as usize - 1, ledger.entries[k].clone());
    let fork = sign_checkpoint(&ledger.fed, &other, size);
    // Before the replay reaches that size, and after it.
    for fork_first in [true, false] {
        let mut r = ledger.replayer(Checks::Full, small_batches());
        if fork_first {
            r.push_checkpoint(&fork);
        }
        for cp in &ledger.checkpoints {
            r.push_checkpoint(cp);
        }
        for (i, e) in ledger.entries.iter().enumerate() {
            r.push_entry(i as u64, e);
        }
        if !fork_first {
            r.push_checkpoint(&fork);
        }
        let report = r.finish(NOW);
        assert_detects(&report, "split-view");
        assert_detects(&report, "root-mismatch");
        assert_only(&report, &["split-view", "root-mismatch"]);
        let Some(Violation::SplitView { first, second, .. }) =
            report.violations.iter().find(|v| v.kind() == "split-view")
        else {
            panic!()
        };
        // Both notes verify under the log key and name the same size.
        for note in [first, second] {
            let cp = SignedCheckpoint::parse(note.as_bytes()).unwrap();
            cp.verify(&[&ledger.fed.log.verifier()]).unwrap();
            assert_eq!(cp.checkpoint().size(), size);
        }
        assert_ne!(first, second);
    }
}

#[test]
fn equivocating_sender() {
    let (ledger, report) = injected(9, Inject::Equivocation, "equivocation");
    let Violation::Equivocation {
        sender,
        seq,
        first_header,
        second_header,
        first_index,
        second_index,
    } = &report.violations[0]
    else {
        panic!()
    };
    assert_eq!(*second_index, ledger.injected_at.unwrap() as u64);
    assert!(first_index < second_index);
    // The evidence stands alone: two different headers, one sender and sequence number, both
    // signed by the sender's key in the roster.
    let key = ledger
        .fed
        .genesis_roster
        .agency(sender)
        .unwrap()
        .signing_key;
    let a = SignedEnvelope::decode_header(first_header).unwrap();
    let b = SignedEnvelope::decode_header(second_header).unwrap();
    for env in [&a, &b] {
        env.verify(&key).unwrap();
        assert_eq!(env.body().seq, *seq);
        assert_eq!(&env.body().from, sender);
    }
    assert_ne!(a.id(), b.id());
    assert!(report.violations[0].to_string().contains("equivocation"));
}

#[test]
fn status_from_a_non_recipient() {
    let (ledger, report) = injected(10, Inject::NonRecipientStatus, "status-from-non-party");
    assert_eq!(
        report.violations[0].position(),
        Some(ledger.injected_at.unwrap() as u64)
    );
}

#[test]
fn entry_signed_by_a_revoked_key() {
    let (ledger, report) = injected(11, Inject::RevokedSender, "sender-not-active");
    let Violation::SenderNotActive {
        index,
        sender,
        state,
        epoch,
        ..
    } = &report.violations[0]
    else {
        panic!()
    };
    assert_eq!(*index, ledger.injected_at.unwrap() as u64);
    assert_eq!(sender, &aid(REVOKED));
    assert_eq!(state, &AgencyState::Revoked);
    assert_eq!(*epoch, 2);
    // The same agency's envelopes before the revoking epoch were fine: the clean ledger has
    // some and verifies.
    let clean = generate(11, Inject::None);
    let before = clean.senders[..]
        .iter()
        .filter(|s| **s == Some(REVOKED))
        .count();
    assert!(before > 0);
}

#[test]
fn invalid_transition() {
    let (_, report) = injected(12, Inject::CompletedBeforeAccepted, "invalid-transition");
    let Violation::InvalidTransition { stage, code, .. } = &report.violations[0] else {
        panic!()
    };
    assert_eq!(*stage, Stage::At(Arrived));
    assert_eq!(*code, Completed);
}

#[test]
fn roster_epoch_below_threshold() {
    let (_, report) = injected(13, Inject::WeakRoster, "roster-below-threshold");
    assert_eq!(report.roster_epoch, 2, "the weak epoch is not applied");
}

#[test]
fn roster_problems() {
    let ledger = generate(14, Inject::None);
    // The roster source has nothing for epoch 2, or other bytes.
    let mut r = Replayer::with_options(
        ledger.genesis.clone(),
        params(&ledger.fed),
        BTreeMap::from([(2, ledger.genesis.clone())]),
        Checks::Full,
        Limits::default(),
    )
    .unwrap();
    for (i, e) in ledger.entries.iter().enumerate() {
        r.push_entry(i as u64, e);
    }
    let report = r.finish(NOW);
    assert_detects(&report, "roster-unavailable");
    // An epoch recorded twice.
    let mut entries = ledger.entries.clone();
    let roster_at = (1..entries.len())
        .find(|&i| ledger.senders[i].is_none())
        .unwrap();
    // Epoch 1 recorded again after epoch 2.
    let again = entries[0].clone();
    entries.insert(roster_at + 3, again);
    let report = ledger.replay_parts(&entries, &ledger.resigned(&entries), small_batches());
    assert_detects(&report, "roster-not-increasing");
}

#[test]
fn the_tamper_corpus_is_fully_detected() {
    // One line per tampering, for the record; each case above asserts its own variant.
    let ledger = generate(15, Inject::None);
    let k = middle_envelope(&ledger);
    let mut cases: Vec<(&str, Report, &str)> = vec![];
    let mut edited = ledger.entries.clone();
    *edited[k].last_mut().unwrap() ^= 4;
    cases.push((
        "edited entry",
        ledger.replay_parts(&edited, &ledger.checkpoints, small_batches()),
        "root-mismatch",
    ));
    let mut dropped = ledger.entries.clone();
    dropped.remove(k);
    cases.push((
        "dropped entry (log re-signs)",
        ledger.replay_parts(&dropped, &ledger.resigned(&dropped), small_batches()),
        "chain-gap",
    ));
    let mut swapped = ledger.entries.clone();
    swapped.swap(k, k + 1);
    cases.push((
        "reordered entries",
        ledger.replay_parts(&swapped, &ledger.checkpoints, small_batches()),
        "root-mismatch",
    ));
    cases.push((
        "truncated log",
        ledger.replay_parts(&ledger.entries[..k], &ledger.checkpoints, small_batches()),
        "truncated",
    ));
    for (inject, kind) in [
        (Inject::Equivocation, "equivocation"),
        (Inject::NonRecipientStatus, "status-from-non-party"),
        (Inject::RevokedSender, "sender-not-active"),
        (Inject::CompletedBeforeAccepted, "invalid-transition"),
        (Inject::WeakRoster, "roster-below-threshold"),
    ] {
        let l = generate(15, inject);
        cases.push(("injected", l.replay(), kind));
    }
    for (name, report, kind) in &cases {
        assert_detects(report, kind);
        eprintln!("{name:32} -> {kind}: {}", report.violations[0]);
    }
}

#[test]
fn a_recall_request_crossing_the_recipients_processing_is_not_a_violation() {
    let fed = fed();
    let genesis = sign_roster(&fed, &fed.genesis_roster, &[0, 1]);
    let mut g = Gen {
        fed,
        chains: vec![(0, None); AGENCIES.len()],
        entries: vec![],
        senders: vec![],
        checkpoint_sizes: vec![],
    };
    let doc = g.document(2, &[3], T0, Some(FUTURE_DUE));
    g.status(3, 2, doc, Arrived, T0 + 1000);
    // The sender asks to recall; the recipient, not having seen it, accepts; then refuses the
    // request and completes.
    g.status(2, 3, doc, RecallRequested, T0 + 2000);
    g.status(3, 2, doc, Accepted, T0 + 2500);
    g.status(3, 2, doc, RecallRefused, T0 + 3000);
    g.status(3, 2, doc, Completed, T0 + 4000);
    // And a real violation for contrast: 06 again.
    let clean_len = g.entries.len();
    g.status(3, 2, doc, Completed, T0 + 5000);
    let replay = |entries: &[Vec<u8>]| {
        let mut r = Replayer::new(genesis.clone(), params(&g.fed), BTreeMap::new()).unwrap();
        for (i, e) in entries.iter().enumerate() {
            r.push_entry(i as u64, e);
        }
        r.finish(NOW)
    };
    let report = replay(&g.entries[..clean_len]);
    assert!(report.is_clean(), "{:?}", kinds(&report));
    assert_eq!(report.stats.open_documents, 0);
    let report = replay(&g.entries);
    assert_detects(&report, "status-on-closed-document");
}

// ---- Statistics ---------------------------------------------------------------------------

#[test]
fn stats_match_the_generated_ledger() {
    let ledger = generate(21, Inject::None);
    let report = ledger.replay();
    assert!(report.is_clean());
    let stats = &report.stats;
    assert_eq!(stats.now_ms, NOW);
    let seen: BTreeSet<&AgencyId> = stats.agencies.iter().map(|a| &a.id).collect();
    assert_eq!(seen, ledger.expect.keys().collect());
    for a in &stats.agencies {
        let e = &ledger.expect[&a.id];
        assert_eq!(a.documents_sent, e.sent, "{}", a.id);
        assert_eq!(a.copies_sent, e.copies_sent, "{}", a.id);
        assert_eq!(a.documents_received, e.received, "{}", a.id);
        assert_eq!(a.statuses_sent, e.statuses, "{}", a.id);
        assert_eq!(a.unacknowledged, e.unacknowledged, "{}", a.id);
        assert_eq!(a.past_due, e.past_due, "{}", a.id);
        assert_eq!(a.expired_unfinished, 0);
        assert_eq!(a.level, Some(a.id.level().unwrap()));
        assert!(a.name.as_deref().unwrap().starts_with("Agency"));
        for (got, want) in [
            (&a.time_to_arrived, &e.arrived),
            (&a.time_to_accepted, &e.accepted),
            (&a.time_to_completed, &e.completed),
        ] {
            let mut want = want.clone();
            want.sort();
            assert_eq!(got.count, want.len() as u64, "{}", a.id);
            assert_eq!(got.sum_ms, want.iter().sum::<u64>());
            assert_eq!(got.max_ms, want.last().copied().unwrap_or(0));
            for q in [0.5, 0.9] {
                let Some(p) = got.quantile(q) else {
                    assert!(want.is_empty());
                    continue;
                };
                let rank = ((q * want.len() as f64).ceil() as usize).max(1);
                let exact = want[rank - 1] as f64;
                assert!(
                    (p as f64 - exact).abs() <= exact / 32.0 + 1.0,
                    "{} q{q}: {p} vs {exact}",
                    a.id
                );
            }
        }
    }
    // Stalled copies: exactly the past-due unfinished ones, with their ages.
    let stalled: BTreeSet<(ContentId, AgencyId)> = stats
        .stalled
        .iter()
        .map(|s| (s.document, s.recipient.clone()))
        .collect();
    assert!(!stalled.is_empty());
    assert_eq!(stalled, ledger.stalled);
    assert_eq!(stats.stalled_total, ledger.stalled.len() as u64);
    let deadline = due_deadline_ms(PAST_DUE).unwrap();
    for s in &stats.stalled {
        assert_eq!(s.due, PAST_DUE);
        assert_eq!(s.age_ms, NOW - s.created_ms);
        assert_eq!(s.overdue_ms, NOW - deadline);
        assert!(!matches!(
            s.stage,
            Stage::At(Completed | Rejected) | Stage::Recalled
        ));
        let env = SignedEnvelope::decode_header(&ledger.entries[s.index as usize]).unwrap();
        assert_eq!(env.id(), s.document);
        assert_eq!(env.body().from, s.sender);
    }
    assert!(stats.stalled.windows(2).all(|w| w[0].index <= w[1].index));
    // The silent agency never acknowledged; everyone else did.
    let never: Vec<AgencyId> = ledger
        .expect
        .iter()
        .filter(|(_, e)| e.received > 0 && !e.statuses.contains_key(&Arrived))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(stats.never_acknowledged, never);
    assert!(stats.never_acknowledged.contains(&aid(SILENT)));
}

// ---- Cross-log ------------------------------------------------------------------------------

#[test]
fn cross_check_finds_an_omitted_entry() {
    let ledger = generate(31, Inject::None);
    let keys = |entries: &[Vec<u8>]| -> Vec<(u64, ContentId)> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u64, LedgerEntry::decode(e).unwrap().key()))
            .collect()
    };
    let a = keys(&ledger.entries);
    let k = middle_envelope(&ledger);
    let mut censored = ledger.entries.clone();
    let victim = censored.remove(k);
    let b = keys(&censored);
    // Same entries in another order (a third log that received them differently).
    let mut c = a.clone();
    c.swap(3, 4);
    let missing = cross_check(vec![a.clone(), b.clone(), c]).unwrap();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].key, ContentId::of(&victim));
    assert_eq!(missing[0].absent_from, vec![1]);
    assert_eq!(missing[0].present_in, vec![0, 2]);
    assert_eq!(missing[0].found_at, (0, k as u64));
    let sort = |mut v: Vec<(u64, ContentId)>| {
        v.sort_by_key(|(_, k)| *k);
        v
    };
    let sorted: Vec<_> = cross_check_sorted(vec![sort(a), sort(b)])
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sorted.len(), 1);
    assert_eq!(sorted[0].key, ContentId::of(&victim));
}

/// The envelope of entry `bytes`, if it is one.
fn envelope_of(bytes: &[u8]) -> Option<SignedEnvelope> {
    match LedgerEntry::decode(bytes).ok()? {
        LedgerEntry::Envelope(env) => Some(*env),
        _ => None,
    }
}

/// A status entry (index `j`) about a document logged at `i < j`, with no other entry of the
/// status's sender in between: it can be moved before its document without touching its
/// sender's chain order, as when the recipient's node reaches the log first.
fn status_movable_before_its_document(ledger: &Ledger) -> (usize, usize) {
    let envs: Vec<_> = ledger.entries.iter().map(|e| envelope_of(e)).collect();
    for (j, env) in envs.iter().enumerate() {
        let Some(env) = env else { continue };
        let body = env.body();
        let Some(document) = body.routing.refers_to else {
            continue;
        };
        if body.kind != Kind::Status || body.routing.status != Some(Arrived) {
            continue;
        }
        let Some(i) = envs[..j]
            .iter()
            .position(|e| e.as_ref().is_some_and(|d| d.id() == document))
        else {
            continue;
        };
        let sender_between = envs[i..j]
            .iter()
            .any(|e| e.as_ref().is_some_and(|e| e.body().from == body.from));
        if !sender_between {
            return (i, j);
        }
    }
    panic!("the generated ledger has no status to move");
}

#[test]
fn an_answer_logged_before_the_recall_request_it_answers_is_held_until_it_comes() {
    let fed = fed();
    let genesis = sign_roster(&fed, &fed.genesis_roster, &[0, 1]);
    let mut g = Gen {
        fed,
        chains: vec![(0, None); AGENCIES.len()],
        entries: vec![],
        senders: vec![],
        checkpoint_sizes: vec![],
    };
    let doc = g.document(2, &[3], T0, Some(FUTURE_DUE));
    g.status(3, 2, doc, Arrived, T0 + 1000);
    g.status(2, 3, doc, RecallRequested, T0 + 2000);
    g.status(3, 2, doc, RecallAgreed, T0 + 3000);
    let replay = |entries: &[Vec<u8>]| {
        let mut r = Replayer::new(genesis.clone(), params(&g.fed), BTreeMap::new()).unwrap();
        for (i, e) in entries.iter().enumerate() {
            r.push_entry(i as u64, e);
        }
        r.finish(NOW)
    };
    assert!(replay(&g.entries).is_clean());
    // The recipient's node logs its 15 before the sender's node logs the 13.
    let mut crossed = g.entries.clone();
    crossed.swap(2, 3);
    let report = replay(&crossed);
    assert!(report.is_clean(), "{:?}", kinds(&report));
    assert_eq!(report.stats.open_documents, 0, "the recall closed the copy");
    // A 15 with no 13 ever logged is an invalid transition.
    let mut unasked = g.entries.clone();
    unasked.remove(2);
    assert_detects(&replay(&unasked), "invalid-transition");
}

#[test]
fn a_status_logged_before_its_document_is_held_until_the_document_comes() {
    let ledger = generate(31, Inject::None);
    let (i, j) = status_movable_before_its_document(&ledger);
    let mut entries = ledger.entries.clone();
    let status = entries.remove(j);
    entries.insert(i, status);
    let report = ledger.replay_parts(&entries, &ledger.resigned(&entries), small_batches());
    assert!(
        report.is_clean(),
        "{:#?}",
        report
            .violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    assert_eq!(report.forgotten.statuses_waiting, 0);

    // Its document never logged: a violation once the status is older than the grace, a
    // status still waiting before.
    let mut entries = ledger.entries.clone();
    let status = entries.remove(j);
    entries[i] = status;
    let report = ledger.replay_parts(&entries, &ledger.resigned(&entries), small_batches());
    assert_detects(&report, "status-for-unknown-document");
    let mut r = ledger.replayer(Checks::Full, small_batches());
    for cp in ledger.resigned(&entries) {
        r.push_checkpoint(&cp);
    }
    for (k, e) in entries.iter().enumerate() {
        r.push_entry(k as u64, e);
    }
    let created = envelope_of(&entries[i]).unwrap().body().created_ms;
    let report = r.finish(created + 1_000);
    assert!(report.forgotten.statuses_waiting >= 1);
    assert!(
        !kinds(&report).contains("status-for-unknown-document"),
        "{:?}",
        kinds(&report)
    );
}
