//! One focused test per transition of the relay core (`protocol/src/relay/core.rs`),
//! through its public interface: events in, actions out, over an in-memory store that
//! applies `Persist` batches only when the test reports them committed.
//!
//! The federation is fixed: the Government Office `000.00.00.G22` on `peer-a`, the
//! province `000.00.00.H41` on `peer-b`, two of its districts (`000.00.01.H41`,
//! `000.00.02.H41`) on `peer-c`, and two central nodes. Each test asserts the exact actions
//! (kinds, peers, order) and, where it matters, that nothing is acknowledged, delivered or
//! completed before the batch it depends on is committed. The seeded simulation
//! (`relay_sim.rs`) checks the promise end to end; these tests pin each step.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, InlinePayload, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::relay::records::{
    self, DeliveryRecord, Equivocation, Role, StatusRecord, agency_seq_key, id_agency_key,
};
use lienthong_protocol::relay::store::{Batch, Column, StoreOp, StoreView};
use lienthong_protocol::relay::wire::{Receipt, Wire};
use lienthong_protocol::relay::{
    Action, Content, Event, MetaRecord, Outcome, Relay, RelayConfig, RelayError, StatusPost,
    Submission, Tenant, Verdict,
};
use lienthong_protocol::roster::{AgencyEntry, AgencyState, CentralNode, Federation, Roster};
use lienthong_protocol::status::{Stage, StatusCode};

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const DAY: u64 = 24 * 60 * MINUTE;
const T0: u64 = 1_790_000_000_000;

const PA: &str = "peer-a";
const PB: &str = "peer-b";
const PC: &str = "peer-c";
const C0: &str = "central-0";
const C1: &str = "central-1";

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
}
/// The Government Office, on `peer-a`: the usual sender.
fn g() -> AgencyId {
    agency("000.00.00.G22")
}
/// A province, on `peer-b`.
fn h() -> AgencyId {
    agency("000.00.00.H41")
}
/// A district of `h`, on `peer-c` (its parent's node is `peer-b`).
fn d() -> AgencyId {
    agency("000.00.01.H41")
}
/// Another district of `h`, also on `peer-c`.
fn e() -> AgencyId {
    agency("000.00.02.H41")
}
/// Not in the roster.
fn x() -> AgencyId {
    agency("000.00.00.H99")
}

fn seed_of(a: &AgencyId) -> [u8; 32] {
    let mut seed = [7u8; 32];
    for (s, b) in seed.iter_mut().zip(a.as_str().bytes()) {
        *s = b;
    }
    seed
}

fn key_of(a: &AgencyId) -> SigningKey {
    SigningKey::from_seed(&seed_of(a))
}

// ----- the in-memory store and a node --------------------------------------------------

#[derive(Default, Debug)]
struct MemStore {
    rows: BTreeMap<(Column, Vec<u8>), Vec<u8>>,
}

impl StoreView for MemStore {
    fn get(&self, column: Column, key: &[u8]) -> Option<Vec<u8>> {
        self.rows.get(&(column, key.to_vec())).cloned()
    }
}

impl MemStore {
    fn apply(&mut self, batch: Batch) {
        for op in batch.ops {
            match op {
                StoreOp::Put { column, key, value } => {
                    self.rows.insert((column, key), value);
                }
                StoreOp::Delete { column, key } => {
                    self.rows.remove(&(column, key));
                }
            }
        }
    }

    fn rows(&self, column: Column) -> Vec<(Column, Vec<u8>, Vec<u8>)> {
        self.rows
            .iter()
            .filter(|((c, _), _)| *c == column)
            .map(|((c, k), v)| (*c, k.clone(), v.clone()))
            .collect()
    }

    fn count(&self, column: Column) -> usize {
        self.rows.keys().filter(|(c, _)| *c == column).count()
    }

    fn status(&self, document: &ContentId, recipient: &AgencyId) -> StatusRecord {
        let bytes = self
            .get(Column::Statuses, &id_agency_key(document, recipient))
            .expect("a status record");
        records::decode(Column::Statuses, &bytes).unwrap()
    }
}

/// One relay over its store. Batches are applied to the store only by [`Node::commit`];
/// [`Node::restart`] loses the ones not committed, like a crash.
#[derive(Debug)]
struct Node {
    config: RelayConfig,
    tenants: Vec<AgencyId>,
    roster: Arc<Roster>,
    relay: Relay,
    store: MemStore,
    unsynced: VecDeque<Batch>,
}

impl Node {
    fn new(roster: &Arc<Roster>, config: RelayConfig, tenants: &[AgencyId]) -> Self {
        let relay = Relay::new(config.clone(), Arc::clone(roster), tenant_keys(tenants));
        Self {
            config,
            tenants: tenants.to_vec(),
            roster: Arc::clone(roster),
            relay,
            store: MemStore::default(),
            unsynced: VecDeque::new(),
        }
    }

    /// Feeds one event and returns every action, in order.
    fn handle(&mut self, event: Event, now: u64) -> Vec<Action> {
        self.relay.handle(event, now, &self.store);
        let mut out = Vec::new();
        while let Some(action) = self.relay.poll_action() {
            if let Action::Persist(batch) = &action {
                self.unsynced.push_back(batch.clone());
            }
            out.push(action);
        }
        out
    }

    /// Makes every issued batch durable and reports it.
    fn commit(&mut self, now: u64) -> Vec<Action> {
        let last = self.unsynced.back().expect("a batch to commit").id;
        while let Some(batch) = self.unsynced.pop_front() {
            self.store.apply(batch);
        }
        self.handle(Event::Committed { batch: last }, now)
    }

    fn recv(&mut self, peer: &str, wire: Wire, now: u64) -> Vec<Action> {
        self.handle(
            Event::Message {
                peer: peer.to_owned(),
                wire,
            },
            now,
        )
    }

    fn push(&mut self, peer: &str, envelope: &[u8], now: u64) -> Vec<Action> {
        self.recv(
            peer,
            Wire::Push {
                envelope: envelope.to_vec(),
            },
            now,
        )
    }

    fn tick(&mut self, now: u64) -> Vec<Action> {
        self.handle(Event::Tick, now)
    }

    fn submit(&mut self, request: u64, from: &AgencyId, to: &[AgencyId], now: u64) -> Vec<Action> {
        let content = Content::Inline(InlinePayload {
            manifest: request.to_be_bytes().to_vec(),
            chunk: vec![0xC0; 16],
        });
        self.submit_content(request, from, to, content, now)
    }

    fn submit_content(
        &mut self,
        request: u64,
        from: &AgencyId,
        to: &[AgencyId],
        content: Content,
        now: u64,
    ) -> Vec<Action> {
        let submission = Submission {
            request,
            from: from.clone(),
            kind: Kind::Document,
            to: to.to_vec(),
            routing: Routing {
                doc_type: Some("CV".into()),
                ..Routing::default()
            },
            content,
            records: Vec::new(),
        };
        self.handle(Event::Submit(submission), now)
    }

    fn post(
        &mut self,
        request: u64,
        tenant: &AgencyId,
        document: ContentId,
        code: StatusCode,
        now: u64,
    ) -> Vec<Action> {
        let post = StatusPost {
            request,
            tenant: tenant.clone(),
            document,
            code,
            to: Vec::new(),
            content: Content::None,
        };
        self.handle(Event::PostStatus(post), now)
    }

    /// A crash (uncommitted batches lost) and a restart from the committed rows.
    fn restart(self, now: u64) -> Self {
        let rows = Relay::RECOVERY_COLUMNS
            .into_iter()
            .flat_map(|c| self.store.rows(c));
        let relay = Relay::recover(
            self.config.clone(),
            Arc::clone(&self.roster),
            tenant_keys(&self.tenants),
            now,
            rows,
            &self.store,
        )
        .unwrap();
        Self {
            relay,
            unsynced: VecDeque::new(),
            ..self
        }
    }

    fn envelope(&self, id: &ContentId) -> Option<SignedEnvelope> {
        let bytes = self.store.get(Column::Envelopes, id.as_bytes())?;
        Some(SignedEnvelope::decode(&bytes).unwrap())
    }
}

fn tenant_keys(tenants: &[AgencyId]) -> Vec<Tenant> {
    tenants
        .iter()
        .map(|t| Tenant {
            id: t.clone(),
            key: key_of(t),
        })
        .collect()
}

// ----- the federation -------------------------------------------------------------------

fn entry(id: AgencyId, node: &str, n: u8) -> AgencyEntry {
    AgencyEntry {
        name: format!("Agency {id}"),
        level: id.level().unwrap(),
        parent: id.parent(),
        signing_key: key_of(&id).verifying_key(),
        encryption_key: EncryptionSecret::from_bytes(&[n; 32]).public_key(),
        node: node.to_owned(),
        addrs: vec![],
        state: AgencyState::Active,
        id,
    }
}

fn roster() -> Arc<Roster> {
    let mut agencies = vec![
        entry(g(), PA, 1),
        entry(h(), PB, 2),
        entry(d(), PC, 3),
        entry(e(), PC, 4),
    ];
    agencies.sort_by(|a, b| a.id.cmp(&b.id));
    let central = [C0, C1]
        .iter()
        .enumerate()
        .map(|(i, peer)| CentralNode {
            name: (*peer).to_owned(),
            peer_id: (*peer).to_owned(),
            addrs: vec![],
            log_key: SigningKey::from_seed(&[100 + i as u8; 32]).verifying_key(),
            http_url: format!("http://{peer}"),
        })
        .collect();
    let roster = Roster {
        epoch: 1,
        issued_ms: T0 - DAY,
        federation: Federation {
            name: "transitions".into(),
            threshold: 1,
            root_keys: vec![SigningKey::from_seed(&[99; 32]).verifying_key()],
            witness_quorum: 1,
        },
        agencies,
        central,
    };
    roster.validate().unwrap();
    Arc::new(roster)
}

/// The next epoch with `id` in `state`.
fn with_state(roster: &Roster, id: &AgencyId, state: AgencyState) -> Arc<Roster> {
    let mut next = roster.clone();
    next.epoch += 1;
    next.agencies
        .iter_mut()
        .find(|a| &a.id == id)
        .unwrap()
        .state = state;
    Arc::new(next)
}

fn node_a(roster: &Arc<Roster>) -> Node {
    Node::new(roster, RelayConfig::new(PA), &[g()])
}
fn node_b(roster: &Arc<Roster>) -> Node {
    Node::new(roster, RelayConfig::new(PB), &[h()])
}
fn node_c(roster: &Arc<Roster>) -> Node {
    Node::new(roster, RelayConfig::new(PC), &[d(), e()])
}
fn central(roster: &Arc<Roster>, peer: &str) -> Node {
    Node::new(roster, RelayConfig::new(peer), &[])
}

// ----- envelopes signed outside any relay -----------------------------------------------

fn body(from: &AgencyId, to: &[AgencyId], seq: u64, created_ms: u64) -> EnvelopeBody {
    let prev = (seq > 1).then_some(ContentId([seq as u8; 32]));
    EnvelopeBody {
        v: ENVELOPE_VERSION,
        kind: Kind::Document,
        from: from.clone(),
        to: to.to_vec(),
        seq,
        prev,
        created_ms,
        routing: Routing::default(),
        payload: Payload::None,
    }
}

/// A document signed by `from`'s key; `tag` makes otherwise equal documents differ.
fn document(
    from: &AgencyId,
    to: &[AgencyId],
    seq: u64,
    created_ms: u64,
    tag: u8,
) -> SignedEnvelope {
    let inline = InlinePayload {
        manifest: vec![tag; 8],
        chunk: vec![tag; 16],
    };
    SignedEnvelope::sign_inline(body(from, to, seq, created_ms), &inline, &key_of(from)).unwrap()
}

/// Documents `seq` 1..=n from `from`, each chained to the one before.
fn chain(from: &AgencyId, to: &[AgencyId], n: u64, created_ms: u64) -> Vec<SignedEnvelope> {
    let mut out: Vec<SignedEnvelope> = Vec::new();
    for seq in 1..=n {
        let body = EnvelopeBody {
            prev: out.last().map(SignedEnvelope::id),
            ..body(from, to, seq, created_ms)
        };
        let inline = InlinePayload {
            manifest: vec![seq as u8; 8],
            chunk: vec![seq as u8; 16],
        };
        out.push(SignedEnvelope::sign_inline(body, &inline, &key_of(from)).unwrap());
    }
    out
}

/// A status signed by `from`'s key.
fn status(
    from: &AgencyId,
    to: &AgencyId,
    seq: u64,
    code: StatusCode,
    about: ContentId,
    created_ms: u64,
) -> SignedEnvelope {
    let body = EnvelopeBody {
        kind: Kind::Status,
        routing: Routing {
            status: Some(code),
            refers_to: Some(about),
            ..Routing::default()
        },
        ..body(from, std::slice::from_ref(to), seq, created_ms)
    };
    SignedEnvelope::sign(body, &key_of(from)).unwrap()
}

// ----- reading actions ------------------------------------------------------------------

/// A one-line summary of each action, for exact ordered comparisons.
fn describe(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Persist(_) => "persist".to_owned(),
            Action::Send { peer, wire } => {
                let kind = match wire {
                    Wire::Push { .. } => "push",
                    Wire::PushAck { .. } => "pushack",
                    Wire::Custody { .. } => "custody",
                    Wire::CustodyAck { .. } => "custodyack",
                };
                format!("send {peer} {kind}")
            }
            Action::Publish { topic, .. } => format!("publish {topic}"),
            Action::Completed { result, .. } => match result {
                Ok(_) => "completed ok".to_owned(),
                Err(_) => "completed err".to_owned(),
            },
            Action::Delivered { tenant, .. } => format!("delivered {tenant}"),
            Action::FetchPayload { peer, .. } => format!("fetch {peer}"),
            Action::GossipVerdict { verdict, .. } => format!("verdict {verdict:?}"),
            Action::Penalize { peer, .. } => format!("penalize {peer}"),
            Action::DeliveryEnded {
                recipient,
                role,
                outcome,
                ..
            } => {
                let outcome = match outcome {
                    Outcome::Confirmed => "confirmed",
                    Outcome::Refused(_) => "refused",
                    Outcome::Expired => "expired",
                    Outcome::RecipientGone(_) => "gone",
                };
                format!("ended {recipient} {role:?} {outcome}")
            }
            Action::Equivocation(_) => "equivocation".to_owned(),
        })
        .collect()
}

#[track_caller]
fn assert_actions(actions: &[Action], expected: &[&str]) {
    assert_eq!(describe(actions), expected, "actions: {actions:#?}");
}

fn the_batch(actions: &[Action]) -> &Batch {
    let batches: Vec<&Batch> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Persist(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(batches.len(), 1, "one batch in {actions:#?}");
    batches[0]
}

fn puts(batch: &Batch, column: Column) -> Vec<(Vec<u8>, Vec<u8>)> {
    batch
        .ops
        .iter()
        .filter_map(|op| match op {
            StoreOp::Put {
                column: c,
                key,
                value,
            } if *c == column => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

fn deletes(batch: &Batch, column: Column) -> Vec<Vec<u8>> {
    batch
        .ops
        .iter()
        .filter_map(|op| match op {
            StoreOp::Delete { column: c, key } if *c == column => Some(key.clone()),
            _ => None,
        })
        .collect()
}

fn completed(actions: &[Action]) -> (u64, Result<ContentId, RelayError>) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Completed { request, result } => Some((*request, result.clone())),
            _ => None,
        })
        .expect("a Completed action")
}

fn completed_id(actions: &[Action]) -> ContentId {
    completed(actions).1.unwrap()
}

fn completed_err(actions: &[Action]) -> RelayError {
    completed(actions).1.unwrap_err()
}

/// The envelope pushed to `peer`.
fn pushed(actions: &[Action], to: &str) -> Vec<u8> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Send {
                peer,
                wire: Wire::Push { envelope },
            } if peer == to => Some(envelope.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no push to {to} in {actions:#?}"))
}

/// The envelope of the push of `id` among `actions`.
fn pushed_envelope(actions: &[Action], id: ContentId) -> Vec<u8> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Send {
                wire: Wire::Push { envelope },
                ..
            } if SignedEnvelope::decode(envelope).unwrap().id() == id => Some(envelope.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no push of {id} in {actions:#?}"))
}

/// Node `a`'s relay with one push in flight per node, silent or not.
fn one_slot(custody_after_ms: u64) -> RelayConfig {
    let mut config = RelayConfig::new(PA);
    config.push_window = 1;
    config.probe_window = 1;
    config.custody_after_ms = custody_after_ms;
    config
}

/// Every push-acknowledgement message, in order.
fn acks(actions: &[Action]) -> Vec<Wire> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                wire: wire @ Wire::PushAck { .. },
                ..
            } => Some(wire.clone()),
            _ => None,
        })
        .collect()
}

/// The receipts of the only push-acknowledgement, checking its id.
fn receipts(actions: &[Action], id: ContentId) -> Vec<Receipt> {
    let acks = acks(actions);
    assert_eq!(acks.len(), 1, "one ack in {actions:#?}");
    match &acks[0] {
        Wire::PushAck {
            id: acked,
            receipts,
        } => {
            assert_eq!(*acked, id, "the ack names the pushed envelope");
            receipts.clone()
        }
        _ => unreachable!(),
    }
}

fn retry(recipient: AgencyId, reason: &str) -> Receipt {
    Receipt::Retry {
        recipient,
        reason: reason.to_owned(),
    }
}

fn refused(recipient: AgencyId, reason: &str) -> Receipt {
    Receipt::Refused {
        recipient,
        reason: reason.to_owned(),
    }
}

fn delivered(actions: &[Action]) -> Vec<(AgencyId, ContentId, u64)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Delivered {
                tenant,
                id,
                position,
            } => Some((tenant.clone(), *id, *position)),
            _ => None,
        })
        .collect()
}

fn penalty(actions: &[Action]) -> String {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Penalize { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("a penalty")
}

/// The custody requests, as (custodian, recipients, envelope).
fn custody_requests(actions: &[Action]) -> Vec<(String, Vec<AgencyId>, Vec<u8>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                peer,
                wire:
                    Wire::Custody {
                        envelope,
                        recipients,
                    },
            } => Some((peer.clone(), recipients.clone(), envelope.clone())),
            _ => None,
        })
        .collect()
}

fn ended(actions: &[Action]) -> Vec<(ContentId, AgencyId, Role, Outcome)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::DeliveryEnded {
                id,
                recipient,
                role,
                outcome,
            } => Some((*id, recipient.clone(), *role, outcome.clone())),
            _ => None,
        })
        .collect()
}

// ----- scenarios used by several tests --------------------------------------------------

/// `g` (on `a`) sends a document to `to`; it is committed at `T0 + 1`, when the pushes
/// leave. Returns the document id and the pushes.
fn sent(a: &mut Node, request: u64, to: &[AgencyId]) -> (ContentId, Vec<Action>) {
    assert_actions(&a.submit(request, &g(), to, T0), &["persist"]);
    let acts = a.commit(T0 + 1);
    (completed_id(&acts), acts)
}

/// A document from `g` to `h`, delivered, and its 01 back at `a`: the delivery has ended.
/// Returns the document id and the time.
fn delivered_pair(a: &mut Node, b: &mut Node) -> (ContentId, u64) {
    let (id, acts) = sent(a, 1, &[h()]);
    let t = T0 + 10;
    assert_actions(&b.push(PA, &pushed(&acts, PB), t), &["persist"]);
    let ack = acks(&b.commit(t))[0].clone();
    assert_actions(&a.recv(PB, ack, t), &["persist"]);
    // The 01 the answer carried is answered in turn, once durable, as if it had been
    // pushed: the recipient's node ends its delivery instead of pushing it again.
    let acts = a.commit(t);
    assert_actions(
        &acts,
        &[
            "delivered 000.00.00.G22",
            "ended 000.00.00.H41 Origin confirmed",
            "send peer-b pushack",
        ],
    );
    assert_actions(&b.recv(PA, acks(&acts)[0].clone(), t), &["persist"]);
    assert_actions(&b.commit(t), &["ended 000.00.00.G22 Origin confirmed"]);
    assert_eq!(
        a.relay.pending_deliveries() + b.relay.pending_deliveries(),
        0
    );
    assert_eq!(b.relay.next_deadline(), None, "no 01 pushed again");
    let at = t + b.config.status_push_delay_ms;
    (id, at + 1)
}

/// `tenant` on `from` posts `code` about `document`; the status travels to `to` (which
/// stores it) and its receipt ends the status's delivery at `from`. Returns the time after.
#[allow(clippy::too_many_arguments)]
fn status_round_trip(
    from: &mut Node,
    from_peer: &str,
    to: &mut Node,
    to_peer: &str,
    tenant: &AgencyId,
    document: ContentId,
    code: StatusCode,
    now: u64,
) -> u64 {
    assert_actions(&from.post(9, tenant, document, code, now), &["persist"]);
    let acts = from.commit(now);
    let sid = completed_id(&acts);
    assert_eq!(describe(&acts)[0], "completed ok");
    // A status is pushed after `status_push_delay_ms` (the receipt usually carries it).
    let at = now + from.config.status_push_delay_ms;
    let acts = from.tick(at);
    let push = format!("send {to_peer} push");
    assert!(describe(&acts).iter().all(|a| a == &push), "{acts:#?}");
    let envelope = pushed_envelope(&acts, sid);
    assert_actions(&to.push(from_peer, &envelope, at), &["persist"]);
    let acts = to.commit(at);
    assert_eq!(
        describe(&acts).last().unwrap(),
        &format!("send {from_peer} pushack")
    );
    let ack = acks(&acts)[0].clone();
    assert_actions(&from.recv(to_peer, ack, at), &["persist"]);
    let acts = from.commit(at);
    assert_eq!(ended(&acts).len(), 1);
    assert_eq!(ended(&acts)[0].0, sid);
    assert_eq!(ended(&acts)[0].3, Outcome::Confirmed);
    at + 1
}

fn codes(record: &StatusRecord) -> Vec<StatusCode> {
    record.history.iter().map(|e| e.code).collect()
}

// ===== sending ==========================================================================

/// A delivery whose batch is not yet durable waits for the commit, not for a timer: no
/// deadline polls for it, and the commit, at the same instant, sends its first push.
#[test]
fn an_undurable_delivery_waits_for_its_commit_and_leaves_with_it() {
    let r = roster();
    let mut a = node_a(&r);
    assert_actions(&a.submit(7, &g(), &[h()], T0), &["persist"]);
    assert_eq!(a.relay.pending_deliveries(), 1);
    assert_eq!(
        a.relay.next_deadline(),
        None,
        "no timer runs for a delivery that cannot leave yet"
    );
    let acts = a.commit(T0);
    assert_actions(&acts, &["completed ok", "send peer-b push"]);
    let id = completed_id(&acts);
    assert_eq!(pushed(&acts, PB), a.envelope(&id).unwrap().bytes());
}

/// The ids of the envelopes pushed to `to`, in order.
fn pushes_to(actions: &[Action], to: &str) -> Vec<ContentId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                peer,
                wire: Wire::Push { envelope },
            } if peer == to => Some(SignedEnvelope::decode(envelope).unwrap().id()),
            _ => None,
        })
        .collect()
}

fn answer(id: ContentId, receipt: Receipt) -> Wire {
    Wire::PushAck {
        id,
        receipts: vec![receipt],
    }
}

/// A backlog toward one node leaves a window at a time, and each answer lets the next
/// delivery go at once (not at its next retry).
#[test]
fn a_backlog_to_one_node_is_pushed_a_window_at_a_time() {
    let r = roster();
    let mut config = RelayConfig::new(PA);
    config.push_window = 2;
    let mut a = Node::new(&r, config, &[g()]);
    for request in 0..5 {
        a.submit(request, &g(), &[h()], T0);
    }
    let acts = a.commit(T0);
    let first = pushes_to(&acts, PB);
    assert_eq!(first.len(), 2, "two of five pushed: {acts:#?}");
    assert_eq!(a.relay.pending_deliveries(), 5);

    // The recipient confirms one: the third leaves in the same step.
    let confirmed = answer(first[0], Receipt::Duplicate { recipient: h() });
    let third = pushes_to(&a.recv(PB, confirmed, T0 + 10), PB);
    assert_eq!(third.len(), 1);
    assert!(!first.contains(&third[0]));
    // "Try again later" is an answer too: the slot is free, the delivery stays pending.
    let busy = answer(first[1], retry(h(), "busy"));
    let fourth = pushes_to(&a.recv(PB, busy, T0 + 20), PB);
    assert_eq!(fourth.len(), 1);
    assert!(!first.contains(&fourth[0]) && fourth != third);
    assert_eq!(a.relay.pending_deliveries(), 4);
    // No answer: nothing more leaves before a retry is due.
    assert!(pushes_to(&a.tick(T0 + 500), PB).is_empty());
}

/// A node that leaves pushes unanswered until their retries gets probes only, not every
/// pending delivery; when it answers, or reconnects, the backlog flows again.
#[test]
fn a_node_that_leaves_pushes_unanswered_gets_probes_until_it_answers_or_reconnects() {
    let r = roster();
    let mut config = RelayConfig::new(PA);
    config.push_window = 4;
    config.probe_window = 1;
    let mut a = Node::new(&r, config, &[g()]);
    for request in 0..4 {
        a.submit(request, &g(), &[h()], T0);
    }
    assert_eq!(pushes_to(&a.commit(T0), PB).len(), 4);
    // Every retry is due (1 s + jitter); none was answered: one probe.
    let probe = pushes_to(&a.tick(T0 + 2 * SECOND), PB);
    assert_eq!(probe.len(), 1, "a single probe");
    assert_eq!(a.relay.pending_deliveries(), 4);
    // The probe is answered: the three others leave at once.
    let answered = answer(probe[0], retry(h(), "busy"));
    let rest = pushes_to(&a.recv(PB, answered, T0 + 2 * SECOND + 5), PB);
    assert_eq!(rest.len(), 3, "the window is back");
    assert!(!rest.contains(&probe[0]));

    // The four retries come due unanswered (pushes every retry would send all four): the
    // node is silent again and gets one probe. Then it reconnects: the whole backlog is
    // pushed at once.
    let later = T0 + 30 * SECOND;
    let silent = pushes_to(&a.tick(later), PB);
    assert_eq!(silent.len(), 1, "one probe, not four");
    assert_eq!(pushes_to(&a.tick(later + 1), PB).len(), 0);
    let back = a.handle(Event::PeerConnected { peer: PB.into() }, later + 2);
    assert_eq!(pushes_to(&back, PB).len(), 4);
}

/// A delivery waiting in line toward a silent node has no retries of its own: it leaves
/// when a slot frees or the node reconnects, and its timer wakes it only for custody. Every
/// wake-up before then is the probe's retry, and pushes.
#[test]
fn a_delivery_waiting_in_line_wakes_only_for_custody() {
    let r = roster();
    let config = one_slot(60 * SECOND);
    let custody_after = config.custody_after_ms;
    let mut a = Node::new(&r, config, &[g()]);
    a.submit(1, &g(), &[h()], T0);
    a.submit(2, &g(), &[h()], T0);
    let probe = pushes_to(&a.commit(T0), PB);
    assert_eq!(probe.len(), 1, "a window of one");
    let mut wakes = 0;
    loop {
        let at = a.relay.next_deadline().unwrap();
        if at >= T0 + custody_after {
            break;
        }
        wakes += 1;
        assert_eq!(pushes_to(&a.tick(at), PB), probe, "wake-up {wakes} at {at}");
    }
    assert!(wakes >= 4, "the probe was retried {wakes} times");
    // Custody time, to the millisecond: the one in line is handed to custodians (h has no
    // parent: both central nodes), and still not pushed.
    let at = a.relay.next_deadline().unwrap();
    assert_eq!(at, T0 + custody_after);
    let acts = a.tick(at);
    let custody = custody_requests(&acts);
    assert_eq!(custody.len(), 2, "two custodians");
    assert!(
        custody
            .iter()
            .all(|(_, _, envelope)| { SignedEnvelope::decode(envelope).unwrap().id() != probe[0] })
    );
    assert!(pushes_to(&acts, PB).is_empty());
    // The node reconnects: the line moves at once (a window of one).
    let back = pushes_to(
        &a.handle(Event::PeerConnected { peer: PB.into() }, at + 1),
        PB,
    );
    assert_eq!(back.len(), 1);
}

/// A delivery that waited long in line toward a silent node is, once pushed, retried at
/// the pace of its pushes (from `retry_base_ms`), not at the delay its wait reached; and
/// that first push is not a reason to ask custodians again.
#[test]
fn a_push_after_a_long_wait_is_retried_soon_and_asks_no_custodian() {
    let r = roster();
    let config = one_slot(2 * SECOND);
    let base = config.retry_base_ms;
    let mut a = Node::new(&r, config, &[g()]);
    a.submit(1, &g(), &[h()], T0);
    let first = pushes_to(&a.commit(T0), PB);
    a.submit(2, &g(), &[h()], T0 + 1);
    let second = completed_id(&a.commit(T0 + 1));
    // The node stays silent for a minute: the second waits (asking custodians, which never
    // accept), its wake-ups growing apart.
    let mut at = T0 + 1;
    while at < T0 + 60 * SECOND {
        at = a.relay.next_deadline().unwrap();
        let pushed = pushes_to(&a.tick(at), PB);
        assert!(!pushed.contains(&second), "the second waits in line");
    }
    // The node answers for the first: the second leaves at once…
    let back = at + 1;
    let done = answer(first[0], Receipt::Duplicate { recipient: h() });
    let acts = a.recv(PB, done, back);
    assert_eq!(pushes_to(&acts, PB), vec![second]);
    assert!(custody_requests(&acts).is_empty(), "{acts:?}");
    // …and if that push is lost, its retry follows after retry_base_ms (plus jitter).
    let acts = a.commit(back);
    assert_actions(&acts, &["ended 000.00.00.H41 Origin confirmed"]);
    let retry = a.relay.next_deadline().unwrap() - back;
    assert!(retry >= base && retry < base + base / 4, "{retry} ms");
}

/// A delivery confirmed by a status pushed on its own (not by the push's answer) gives its
/// slot back at once: the next one in line leaves without waiting for a timer.
#[test]
fn a_delivery_confirmed_by_a_pushed_status_lets_the_next_in_line_leave() {
    let r = roster();
    let mut config = RelayConfig::new(PA);
    config.push_window = 1;
    let mut a = Node::new(&r, config, &[g()]);
    a.submit(1, &g(), &[h()], T0);
    a.submit(2, &g(), &[h()], T0);
    let first = pushes_to(&a.commit(T0), PB);
    assert_eq!(first.len(), 1, "a window of one");
    let arrived = status(&h(), &g(), 1, StatusCode::Arrived, first[0], T0 + 5);
    let acts = a.push(PB, arrived.bytes(), T0 + 10);
    assert_actions(&acts, &["persist", "send peer-b push"]);
    let next = pushes_to(&acts, PB);
    assert_ne!(next[0], first[0]);
    assert_eq!(a.relay.pending_deliveries(), 1);
}

/// A delivery made due to take a free slot may end (here: expire) before it takes it; the
/// next one in line takes the slot instead of waiting for its own timer.
#[test]
fn a_delivery_ending_on_its_way_out_of_the_line_lets_the_next_one_go() {
    let r = roster();
    let mut config = one_slot(365 * DAY);
    config.max_age_ms = 5 * SECOND;
    let mut a = Node::new(&r, config, &[g()]);
    a.submit(1, &g(), &[h()], T0);
    let first = pushes_to(&a.commit(T0), PB);
    assert_eq!(first.len(), 1);
    a.submit(2, &g(), &[h()], T0 + 10);
    assert!(pushes_to(&a.commit(T0 + 10), PB).is_empty(), "in line");
    a.submit(3, &g(), &[h()], T0 + 3 * SECOND);
    let acts = a.commit(T0 + 3 * SECOND);
    let third = completed_id(&acts);
    assert!(pushes_to(&acts, PB).is_empty(), "in line");
    // The first is probed until it expires; it frees its slot for the second, which has
    // expired too; the third goes.
    let mut pushed = Vec::new();
    while a.relay.pending_deliveries() == 3 {
        let at = a.relay.next_deadline().unwrap();
        assert!(at < T0 + 60 * SECOND, "nothing moves");
        pushed = pushes_to(&a.tick(at), PB);
    }
    assert_eq!(a.relay.pending_deliveries(), 1);
    assert_eq!(pushed, vec![third]);
}

/// A roster change (here: the recipient of the push in flight is suspended) starts the
/// windows afresh, so a slot held for a recipient the roster moved or suspended does not
/// keep the node's other recipients waiting: what waited in line leaves at once.
#[test]
fn a_suspended_recipients_push_gives_its_slot_back() {
    let r = roster();
    let mut config = RelayConfig::new(PA);
    config.push_window = 1;
    let mut a = Node::new(&r, config, &[g()]);
    a.submit(1, &g(), &[d()], T0);
    a.submit(2, &g(), &[e()], T0);
    let first = pushes_to(&a.commit(T0), PC);
    assert_eq!(first.len(), 1, "a window of one");
    // The recipient of the push in flight is suspended: the other district's document
    // leaves at once, not at its next retry.
    let pushed = a.envelope(&first[0]).unwrap().body().to.clone();
    let suspended = with_state(&r, &pushed[0], AgencyState::Suspended);
    let next = pushes_to(&a.handle(Event::RosterUpdated(suspended), T0 + 10), PC);
    assert_eq!(next.len(), 1);
    assert_ne!(next[0], first[0]);
    // The suspended one's retry sends nothing.
    assert!(!pushes_to(&a.tick(T0 + 2 * SECOND), PC).contains(&first[0]));
}

/// Custody and gossip are for a recipient's node that does not answer: a delivery waiting
/// its turn toward a node that answers is not handed to custodians nor published, however
/// long it waits.
#[test]
fn a_delivery_waiting_for_a_slot_at_an_answering_node_is_not_handed_to_custodians_nor_gossiped() {
    let r = roster();
    let mut config = RelayConfig::new(PA);
    config.push_window = 1;
    config.probe_window = 1;
    let mut a = Node::new(&r, config, &[g()]);
    a.submit(1, &g(), &[h()], T0);
    a.submit(2, &g(), &[h()], T0);
    let first = pushes_to(&a.commit(T0), PB);
    assert_eq!(first.len(), 1);
    let holder = first[0];
    // The node answers every push of the first without a receipt (it is there, the slot
    // stays held until the retry); the second waits, millisecond after millisecond, well
    // past custody_after_ms.
    let empty = || Wire::PushAck {
        id: holder,
        receipts: Vec::new(),
    };
    let mut acts = a.recv(PB, empty(), T0 + 1);
    for t in (T0 + 2)..(T0 + 8 * SECOND) {
        let tick = a.tick(t);
        if pushes_to(&tick, PB).contains(&holder) {
            acts.extend(a.recv(PB, empty(), t));
        }
        acts.extend(tick);
    }
    let custody_for = |id: ContentId| {
        acts.iter()
            .filter(|x| match x {
                Action::Send {
                    wire: Wire::Custody { envelope, .. },
                    ..
                } => SignedEnvelope::decode(envelope).unwrap().id() == id,
                _ => false,
            })
            .count()
    };
    assert_eq!(a.relay.pending_deliveries(), 2);
    let pushed = pushes_to(&acts, PB);
    assert!(
        !pushed.is_empty() && pushed.iter().all(|id| *id == holder),
        "only the first leaves"
    );
    assert!(
        custody_for(holder) > 0,
        "the unconfirmed push gets custodians"
    );
    let other = a
        .store
        .rows(Column::Envelopes)
        .into_iter()
        .map(|(_, key, _)| ContentId(key.as_slice().try_into().unwrap()))
        .find(|id| *id != holder)
        .unwrap();
    assert_eq!(custody_for(other), 0, "the one waiting its turn gets none");
    // Nor is it published on gossip: its node answers. The push left unanswered until its
    // retry is, once.
    let published = |id: ContentId| {
        acts.iter()
            .filter(|x| match x {
                Action::Publish { envelope, .. } => {
                    SignedEnvelope::decode(envelope).unwrap().id() == id
                }
                _ => false,
            })
            .count()
    };
    assert_eq!(
        published(holder),
        1,
        "the unanswered push goes on gossip once"
    );
    assert_eq!(published(other), 0, "the one waiting its turn does not");
}

#[test]
fn submit_completes_and_pushes_only_after_its_batch_commits() {
    let r = roster();
    let mut a = node_a(&r);
    let acts = a.submit(7, &g(), &[e(), h(), d(), h()], T0);
    assert_actions(&acts, &["persist"]);
    let batch = the_batch(&acts);
    let envelopes = puts(batch, Column::Envelopes);
    assert_eq!(envelopes.len(), 1);
    let env = SignedEnvelope::decode(&envelopes[0].1).unwrap();
    assert_eq!(env.body().to, vec![h(), d(), e()], "sorted, deduplicated");
    assert_eq!(env.body().seq, 1);
    assert_eq!(puts(batch, Column::Deliveries).len(), 3);
    assert_eq!(puts(batch, Column::Statuses).len(), 3);
    assert_eq!(
        puts(batch, Column::SenderSeq),
        vec![(agency_seq_key(&g(), 1), env.id().as_bytes().to_vec())]
    );
    assert_eq!(puts(batch, Column::Chains).len(), 1);
    assert_eq!(a.relay.pending_deliveries(), 3);

    // The time to push comes, but nothing leaves before the batch is durable.
    assert_actions(&a.tick(T0 + 10), &[]);
    let acts = a.commit(T0 + 20);
    assert_actions(
        &acts,
        &["completed ok", "send peer-b push", "send peer-c push"],
    );
    assert_eq!(completed(&acts), (7, Ok(env.id())));
    assert_eq!(pushed(&acts, PB), env.bytes());
    assert_eq!(
        pushed(&acts, PC),
        env.bytes(),
        "one push for both tenants of peer-c"
    );

    // The next document continues the chain.
    assert_actions(&a.submit(8, &g(), &[h()], T0 + 30), &["persist"]);
    let next = completed_id(&a.commit(T0 + 31));
    let next = a.envelope(&next).unwrap();
    assert_eq!(next.body().seq, 2);
    assert_eq!(next.body().prev, Some(env.id()));
}

#[test]
fn a_submissions_record_is_written_in_the_envelopes_batch_and_lost_with_it() {
    let r = roster();
    let mut a = node_a(&r);
    let submission = |request: u64, key: &[u8]| Submission {
        request,
        from: g(),
        kind: Kind::Document,
        to: vec![h()],
        routing: Routing::default(),
        content: Content::Inline(InlinePayload {
            manifest: request.to_be_bytes().to_vec(),
            chunk: vec![0xC0; 16],
        }),
        records: vec![
            MetaRecord::IdUnder {
                key: key.to_vec(),
                suffix: b"fingerprint".to_vec(),
            },
            MetaRecord::ValueFor {
                prefix: b"sent/".to_vec(),
                value: key.to_vec(),
            },
        ],
    };
    let acts = a.handle(Event::Submit(submission(1, b"api/k-1")), T0);
    assert_actions(&acts, &["persist"]);
    let batch = the_batch(&acts);
    let envelopes = puts(batch, Column::Envelopes);
    assert_eq!(envelopes.len(), 1);
    let env = SignedEnvelope::decode(&envelopes[0].1).unwrap();
    let mut value = env.id().as_bytes().to_vec();
    value.extend_from_slice(b"fingerprint");
    assert_eq!(
        puts(batch, Column::Meta),
        vec![
            (b"api/k-1".to_vec(), value.clone()),
            (
                [b"sent/".as_slice(), env.id().as_bytes()].concat(),
                b"api/k-1".to_vec()
            ),
        ],
        "the records ride in the envelope's own batch"
    );
    // A crash before the batch is durable loses the envelope and the record together.
    let mut a = a.restart(T0 + 1);
    assert_eq!(a.store.count(Column::Envelopes), 0);
    assert_eq!(a.store.count(Column::Meta), 0);
    // Committed, both are there when the submission completes.
    assert_actions(
        &a.handle(Event::Submit(submission(2, b"api/k-2")), T0 + 2),
        &["persist"],
    );
    let id = completed_id(&a.commit(T0 + 3));
    let mut value = id.as_bytes().to_vec();
    value.extend_from_slice(b"fingerprint");
    assert!(a.envelope(&id).is_some());
    assert_eq!(a.store.get(Column::Meta, b"api/k-2"), Some(value));
    assert_eq!(
        a.store
            .get(Column::Meta, &[b"sent/".as_slice(), id.as_bytes()].concat()),
        Some(b"api/k-2".to_vec())
    );
    assert_eq!(a.store.count(Column::Meta), 2);
    // A refused submission writes nothing.
    let mut refused = submission(3, b"api/k-3");
    refused.to = vec![x()];
    completed_err(&a.handle(Event::Submit(refused), T0 + 4));
    assert!(a.unsynced.is_empty());
}

#[test]
fn submissions_that_cannot_be_sent_are_refused_at_once() {
    let r = roster();
    let mut a = node_a(&r);
    let err = completed_err(&a.submit(1, &h(), &[d()], T0));
    assert_eq!(err, RelayError::NotHosted(h()));
    let err = completed_err(&a.submit(2, &g(), &[x()], T0));
    assert_eq!(err.to_string(), "agency 000.00.00.H99 is not in the roster");
    let err = completed_err(&a.submit(2, &g(), &[], T0));
    assert_eq!(
        err.to_string(),
        "invalid envelope: envelope field `to` is invalid: no recipients"
    );
    let status = Submission {
        request: 2,
        from: g(),
        kind: Kind::Status,
        to: vec![h()],
        routing: Routing::default(),
        content: Content::None,
        records: Vec::new(),
    };
    let err = completed_err(&a.handle(Event::Submit(status), T0));
    assert_eq!(
        err,
        RelayError::Invalid("statuses are posted with PostStatus".into())
    );
    a.handle(
        Event::RosterUpdated(with_state(&r, &h(), AgencyState::Revoked)),
        T0,
    );
    let acts = a.submit(3, &g(), &[d(), h()], T0);
    assert_actions(&acts, &["completed err"]);
    assert_eq!(
        completed_err(&acts).to_string(),
        "agency 000.00.00.H41 is revoked"
    );
    a.handle(
        Event::RosterUpdated(with_state(&r, &g(), AgencyState::Suspended)),
        T0,
    );
    let err = completed_err(&a.submit(4, &g(), &[d()], T0));
    assert_eq!(err.to_string(), "agency 000.00.00.G22 is suspended");
    assert!(a.unsynced.is_empty(), "nothing persisted");
    assert_eq!(a.relay.pending_deliveries(), 0);
    // A refusal uses no sequence number.
    let mut a = node_a(&r);
    assert!(completed(&a.submit(5, &g(), &[], T0)).1.is_err());
    assert_actions(&a.submit(6, &g(), &[h()], T0), &["persist"]);
    let id = completed_id(&a.commit(T0));
    assert_eq!(a.envelope(&id).unwrap().body().seq, 1);
}

#[test]
fn max_deliveries_refuses_new_submissions_with_a_clear_error() {
    let r = roster();
    let mut config = RelayConfig::new(PA);
    config.max_deliveries = 2;
    let mut a = Node::new(&r, config, &[g()]);
    let (id, _) = sent(&mut a, 1, &[h(), d()]);
    assert_eq!(a.relay.pending_deliveries(), 2);
    let acts = a.submit(2, &g(), &[e()], T0 + 2);
    assert_actions(&acts, &["completed err"]);
    let err = completed_err(&acts);
    assert_eq!(err, RelayError::Busy(2));
    assert_eq!(
        err.to_string(),
        "too many pending deliveries (2); try again later"
    );
    // Once a delivery ends, there is room again.
    let refusal = Wire::PushAck {
        id,
        receipts: vec![refused(h(), "no such inbox")],
    };
    assert_actions(&a.recv(PB, refusal, T0 + 3), &["persist"]);
    assert_actions(&a.commit(T0 + 3), &["ended 000.00.00.H41 Origin refused"]);
    assert_eq!(
        a.store.status(&id, &h()).ended.as_deref(),
        Some("no such inbox")
    );
    assert_actions(&a.submit(3, &g(), &[e()], T0 + 4), &["persist"]);
}

// ===== receiving ========================================================================

#[test]
fn a_received_push_is_stored_then_delivered_and_acked_with_a_signed_01() {
    let r = roster();
    let mut b = node_b(&r);
    let doc = document(&g(), &[h()], 1, T0, 1);
    let acts = b.push(PA, doc.bytes(), T0 + 5);
    assert_actions(&acts, &["persist"]);
    let batch = the_batch(&acts);
    let id = doc.id();
    assert!(
        puts(batch, Column::Envelopes).contains(&(id.as_bytes().to_vec(), doc.bytes().to_vec()))
    );
    assert_eq!(puts(batch, Column::Seen)[0].0, id.as_bytes().to_vec());
    assert_eq!(
        puts(batch, Column::Inbox),
        vec![(agency_seq_key(&h(), 0), id.as_bytes().to_vec())]
    );
    assert!(
        puts(batch, Column::SenderSeq).contains(&(agency_seq_key(&g(), 1), id.as_bytes().to_vec()))
    );
    // The 01 is itself a delivery to the sender, created in the same batch.
    let deliveries = puts(batch, Column::Deliveries);
    assert_eq!(deliveries.len(), 1);
    let (sid, recipient) = records::split_id_agency_key(&deliveries[0].0).unwrap();
    assert_eq!(recipient, g());

    // Nothing promised before the batch is durable, even when asked again.
    assert_actions(&b.tick(T0 + 6), &[]);
    let acts = b.commit(T0 + 7);
    assert_actions(&acts, &["delivered 000.00.00.H41", "send peer-a pushack"]);
    assert_eq!(delivered(&acts), vec![(h(), id, 0)]);
    let receipts = receipts(&acts, id);
    let [
        Receipt::Arrived {
            recipient,
            status: Some(bytes),
        },
    ] = receipts.as_slice()
    else {
        panic!("one arrival with its 01: {receipts:?}");
    };
    assert_eq!(recipient, &h());
    let arrived = SignedEnvelope::decode(bytes).unwrap();
    assert_eq!(arrived.id(), sid);
    arrived.verify(&key_of(&h()).verifying_key()).unwrap();
    assert_eq!(arrived.body().kind, Kind::Status);
    assert_eq!(arrived.body().from, h());
    assert_eq!(arrived.body().to, vec![g()]);
    assert_eq!(arrived.body().routing.status, Some(StatusCode::Arrived));
    assert_eq!(arrived.body().routing.refers_to, Some(id));
    let record = b.store.status(&id, &h());
    assert_eq!(record.chain.stage, Stage::At(StatusCode::Arrived));
    assert_eq!(record.sender, g());
}

#[test]
fn a_duplicate_push_gets_a_duplicate_receipt_once_durable_and_no_second_delivery() {
    let r = roster();
    let mut b = node_b(&r);
    let doc = document(&g(), &[h()], 1, T0, 1);
    assert_actions(&b.push(PA, doc.bytes(), T0), &["persist"]);
    // Pushed again (by a custodian) before the first copy is durable: held back.
    assert_actions(&b.push(C0, doc.bytes(), T0), &[]);
    let acts = b.commit(T0 + 1);
    assert_actions(
        &acts,
        &[
            "delivered 000.00.00.H41",
            "send peer-a pushack",
            "send central-0 pushack",
        ],
    );
    let all = acks(&acts);
    let Wire::PushAck { receipts: dup, .. } = &all[1] else {
        unreachable!()
    };
    assert_eq!(dup, &vec![Receipt::Duplicate { recipient: h() }]);
    // And once durable, at once; never a second inbox entry.
    let acts = b.push(PA, doc.bytes(), T0 + 2);
    assert_actions(&acts, &["send peer-a pushack"]);
    assert_eq!(
        receipts(&acts, doc.id()),
        vec![Receipt::Duplicate { recipient: h() }]
    );
    assert_eq!(b.store.count(Column::Inbox), 1);
}

#[test]
fn a_push_with_nothing_for_local_tenants_is_acked_empty_and_not_stored() {
    let r = roster();
    let mut b = node_b(&r);
    let doc = document(&g(), &[d()], 1, T0, 1);
    let acts = b.push(PA, doc.bytes(), T0);
    assert_actions(&acts, &["send peer-a pushack"]);
    assert_eq!(receipts(&acts, doc.id()), vec![]);
    assert!(b.store.rows.is_empty());
}

#[test]
fn a_tampered_envelope_is_refused_and_penalised_and_nothing_is_stored() {
    let r = roster();
    let mut b = node_b(&r);
    let doc = document(&g(), &[h()], 1, T0, 1);
    let mut tampered = doc.bytes().to_vec();
    let last_signature_byte = doc.header_bytes().len() - 1;
    tampered[last_signature_byte] ^= 0x01;
    let tampered_id = SignedEnvelope::decode(&tampered).unwrap().id();
    assert_ne!(tampered_id, doc.id());
    let acts = b.push(PA, &tampered, T0);
    assert_actions(&acts, &["penalize peer-a", "send peer-a pushack"]);
    assert!(penalty(&acts).contains("signature"), "{}", penalty(&acts));
    let got = receipts(&acts, tampered_id);
    assert_eq!(got.len(), 1);
    let Receipt::Refused { recipient, reason } = &got[0] else {
        panic!("refused: {got:?}");
    };
    assert_eq!(recipient, &h());
    assert!(reason.contains("signature does not verify"), "{reason}");
    assert!(b.unsynced.is_empty());

    // Bytes that are no envelope at all: penalised, nobody to answer for.
    let acts = b.push(PA, b"\x82garbage", T0);
    assert_actions(&acts, &["penalize peer-a", "send peer-a pushack"]);
    assert_eq!(receipts(&acts, ContentId::of(b"\x82garbage")), vec![]);

    // The genuine envelope is still welcome.
    assert_actions(&b.push(PA, doc.bytes(), T0), &["persist"]);
}

#[test]
fn unknown_and_revoked_senders_are_refused() {
    let r = roster();
    let mut b = node_b(&r);
    // Unknown: no honest node relays it.
    let forged = document(&x(), &[h()], 1, T0, 1);
    let acts = b.push(PA, forged.bytes(), T0);
    assert_actions(&acts, &["penalize peer-a", "send peer-a pushack"]);
    assert_eq!(
        receipts(&acts, forged.id()),
        vec![refused(h(), "unknown sender 000.00.00.H99")]
    );
    // Revoked after it signed: refused for good, but the relaying peer did nothing wrong.
    let doc = document(&g(), &[h()], 1, T0, 1);
    assert_actions(
        &b.handle(
            Event::RosterUpdated(with_state(&r, &g(), AgencyState::Revoked)),
            T0,
        ),
        &[],
    );
    let acts = b.push(PA, doc.bytes(), T0 + 1);
    assert_actions(&acts, &["send peer-a pushack"]);
    assert_eq!(
        receipts(&acts, doc.id()),
        vec![refused(h(), "agency 000.00.00.G22 is revoked")]
    );
    assert!(b.unsynced.is_empty() && b.store.rows.is_empty());
}

#[test]
fn expired_envelopes_are_refused_and_future_ones_retried() {
    let r = roster();
    let config = RelayConfig::new(PB);
    let (max_age, max_skew) = (config.max_age_ms, config.max_skew_ms);
    let now = T0 + max_age;

    let mut b = Node::new(&r, config.clone(), &[h()]);
    let old = document(&g(), &[h()], 1, T0 - 1, 1);
    let acts = b.push(PA, old.bytes(), now);
    assert_actions(&acts, &["send peer-a pushack"]);
    assert_eq!(receipts(&acts, old.id()), vec![refused(h(), "expired")]);
    let oldest = document(&g(), &[h()], 2, T0, 2);
    assert_actions(&b.push(PA, oldest.bytes(), now), &["persist"]);

    // From the future: the sender's clock may be ahead, so "later", not "never".
    let mut b = Node::new(&r, config, &[h()]);
    let ahead = document(&g(), &[h()], 3, now + max_skew + 1, 3);
    let acts = b.push(PA, ahead.bytes(), now);
    assert_actions(&acts, &["send peer-a pushack"]);
    assert_eq!(
        receipts(&acts, ahead.id()),
        vec![retry(h(), "created in the future (clock skew)")]
    );
    let within = document(&g(), &[h()], 4, now + max_skew, 4);
    assert_actions(&b.push(PA, within.bytes(), now), &["persist"]);
    // The retried one is accepted once the clocks agree.
    assert_actions(&b.push(PA, ahead.bytes(), now + 1), &["persist"]);
}

#[test]
fn equivocation_is_kept_as_evidence_and_both_envelopes_stored() {
    let r = roster();
    let mut b = node_b(&r);
    let first = document(&g(), &[h()], 1, T0, 1);
    let second = document(&g(), &[h()], 1, T0, 2);
    assert_ne!(first.id(), second.id());
    assert_actions(&b.push(PA, first.bytes(), T0), &["persist"]);
    assert!(
        b.commit(T0)
            .iter()
            .all(|a| !matches!(a, Action::Equivocation(_)))
    );
    let acts = b.push(PA, second.bytes(), T0 + 1);
    assert_actions(&acts, &["persist"]);
    let expected = Equivocation {
        sender: g(),
        seq: 1,
        first: first.id(),
        second: second.id(),
    };
    assert_eq!(
        puts(the_batch(&acts), Column::Evidence),
        vec![(agency_seq_key(&g(), 1), records::encode(&expected))]
    );
    let acts = b.commit(T0 + 1);
    assert_actions(
        &acts,
        &[
            "delivered 000.00.00.H41",
            "equivocation",
            "send peer-a pushack",
        ],
    );
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Equivocation(ev) if *ev == expected))
    );
    assert!(b.envelope(&first.id()).is_some() && b.envelope(&second.id()).is_some());
    // The first stays the one indexed at that place in the chain.
    assert_eq!(
        b.store.get(Column::SenderSeq, &agency_seq_key(&g(), 1)),
        Some(first.id().as_bytes().to_vec())
    );

    // A later envelope whose `prev` is not the envelope we hold at seq - 1 is a fork too.
    let forked = document(&g(), &[h()], 2, T0, 3);
    assert_ne!(forked.body().prev, Some(first.id()));
    let acts = b.push(PA, forked.bytes(), T0 + 2);
    assert_eq!(
        puts(the_batch(&acts), Column::Evidence),
        vec![(
            agency_seq_key(&g(), 1),
            records::encode(&Equivocation {
                sender: g(),
                seq: 1,
                first: first.id(),
                second: forked.id(),
            })
        )]
    );
}

#[test]
fn a_peer_over_its_burst_gets_retry_receipts() {
    let r = roster();
    let mut config = RelayConfig::new(PB);
    config.peer_burst = 3;
    config.peer_rate_per_s = 1;
    let mut b = Node::new(&r, config, &[h()]);
    let docs = chain(&g(), &[h()], 6, T0);
    for doc in &docs[..3] {
        assert_actions(&b.push(PA, doc.bytes(), T0), &["persist"]);
    }
    let acts = b.push(PA, docs[3].bytes(), T0);
    assert_actions(&acts, &["send peer-a pushack"]);
    assert_eq!(
        receipts(&acts, docs[3].id()),
        vec![retry(h(), "peer over its inbound quota")]
    );
    // Another peer has its own bucket.
    assert_actions(&b.push(PC, docs[3].bytes(), T0), &["persist"]);
    // One token back per second.
    assert_actions(&b.push(PA, docs[4].bytes(), T0 + SECOND), &["persist"]);
    assert_eq!(
        describe(&b.push(PA, docs[5].bytes(), T0 + SECOND)),
        ["send peer-a pushack"]
    );
    assert_eq!(b.store.count(Column::Seen), 0, "nothing committed yet");
}

#[test]
fn an_external_payload_is_fetched_before_the_envelope_is_delivered() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let manifest = [0x4D; 32];
    // The node's send path stores the payload before submitting.
    a.store.rows.insert(
        (Column::Payloads, manifest.to_vec()),
        b"sealed manifest".to_vec(),
    );
    let content = Content::External {
        manifest,
        size: 100_000,
    };
    assert_actions(
        &a.submit_content(1, &g(), &[h()], content, T0),
        &["persist"],
    );
    let acts = a.commit(T0 + 1);
    let id = completed_id(&acts);
    let push = pushed(&acts, PB);

    let acts = b.push(PA, &push, T0 + 2);
    assert_actions(&acts, &["fetch peer-a", "send peer-a pushack"]);
    assert!(matches!(&acts[0], Action::FetchPayload { manifest: m, .. } if *m == manifest));
    assert_eq!(
        receipts(&acts, id),
        vec![retry(h(), "fetching the payload")]
    );
    assert!(b.unsynced.is_empty() && b.store.rows.is_empty());
    // The origin retries meanwhile; still waiting, nothing delivered.
    let acts = b.push(PA, &push, T0 + 3);
    assert_actions(&acts, &["fetch peer-a", "send peer-a pushack"]);

    // The payload is durable here: the envelope goes through, once.
    b.store.rows.insert(
        (Column::Payloads, manifest.to_vec()),
        b"sealed manifest".to_vec(),
    );
    let acts = b.handle(Event::PayloadStored { manifest }, T0 + 4);
    assert_actions(&acts, &["persist"]);
    let acts = b.commit(T0 + 5);
    assert_actions(&acts, &["delivered 000.00.00.H41"]);
    assert_eq!(delivered(&acts), vec![(h(), id, 0)]);
    assert_eq!(b.store.count(Column::Inbox), 1);

    // The origin's next push is answered Duplicate, which ends its delivery.
    let at = a.relay.next_deadline().unwrap();
    let acts = b.push(PA, &pushed(&a.tick(at), PB), at);
    assert_eq!(
        receipts(&acts, id),
        vec![Receipt::Duplicate { recipient: h() }]
    );
    assert_actions(&a.recv(PB, acks(&acts)[0].clone(), at), &["persist"]);
    assert_actions(&a.commit(at), &["ended 000.00.00.H41 Origin confirmed"]);
}

// ===== acknowledgements, retries, custody ===============================================

#[test]
fn a_push_ack_with_a_signed_01_ends_the_delivery_after_its_status_is_stored() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, acts) = sent(&mut a, 1, &[h()]);
    assert_actions(&b.push(PA, &pushed(&acts, PB), T0 + 2), &["persist"]);
    let ack = acks(&b.commit(T0 + 3))[0].clone();

    let acts = a.recv(PB, ack, T0 + 4);
    assert_actions(&acts, &["persist"]);
    let batch = the_batch(&acts);
    assert_eq!(
        deletes(batch, Column::Deliveries),
        vec![id_agency_key(&id, &h())]
    );
    let acts = a.commit(T0 + 5);
    assert_actions(
        &acts,
        &[
            "delivered 000.00.00.G22",
            "ended 000.00.00.H41 Origin confirmed",
            "send peer-b pushack",
        ],
    );
    assert_eq!(ended(&acts)[0].0, id);
    // The 01 it carried is acknowledged to its author, as a push would be.
    let arrived = a.store.status(&id, &h()).history[0].id;
    assert_eq!(
        receipts(&acts, arrived),
        vec![Receipt::Arrived {
            recipient: g(),
            status: None
        }]
    );
    let record = a.store.status(&id, &h());
    assert_eq!(record.chain.stage, Stage::At(StatusCode::Arrived));
    assert_eq!(codes(&record), [StatusCode::Arrived]);
    assert_eq!(record.ended, None);
    assert_eq!(a.relay.pending_deliveries(), 0);
    assert_eq!(a.relay.next_deadline(), None);
    assert_actions(&a.tick(T0 + DAY), &[]);
}

#[test]
fn receipts_from_a_node_that_does_not_host_the_recipient_or_with_a_forged_01_are_penalised() {
    let r = roster();
    let mut a = node_a(&r);
    let (id, _) = sent(&mut a, 1, &[h()]);
    // peer-c does not host h.
    let ack = Wire::PushAck {
        id,
        receipts: vec![Receipt::Duplicate { recipient: h() }],
    };
    let acts = a.recv(PC, ack, T0 + 2);
    assert_actions(&acts, &["penalize peer-c"]);
    assert_eq!(
        penalty(&acts),
        "receipt for 000.00.00.H41, which it does not host"
    );
    // An "arrival" signed by someone else.
    let forged = status(&d(), &g(), 1, StatusCode::Arrived, id, T0);
    let ack = Wire::PushAck {
        id,
        receipts: vec![Receipt::Arrived {
            recipient: h(),
            status: Some(forged.bytes().to_vec()),
        }],
    };
    let acts = a.recv(PB, ack, T0 + 3);
    assert_actions(&acts, &["penalize peer-b"]);
    assert!(penalty(&acts).contains("carries no valid status from 000.00.00.H41"));
    // A 01 about another document.
    let other = status(&h(), &g(), 1, StatusCode::Arrived, ContentId([9; 32]), T0);
    let ack = Wire::PushAck {
        id,
        receipts: vec![Receipt::Arrived {
            recipient: h(),
            status: Some(other.bytes().to_vec()),
        }],
    };
    assert_actions(&a.recv(PB, ack, T0 + 4), &["penalize peer-b"]);
    assert_eq!(a.relay.pending_deliveries(), 1, "still pending");
    assert!(a.unsynced.is_empty());
}

#[test]
fn without_an_ack_pushes_are_retried_with_growing_capped_backoff() {
    let r = roster();
    let mut config = RelayConfig::new(PA);
    config.retry_base_ms = SECOND;
    config.retry_max_ms = 16 * SECOND;
    config.custody_after_ms = 365 * DAY;
    let mut a = Node::new(&r, config, &[g()]);
    let (id, acts) = sent(&mut a, 1, &[h()]);
    assert_actions(&acts, &["completed ok", "send peer-b push"]);
    let mut at = T0 + 1;
    for attempt in 1..=8u32 {
        let next = a.relay.next_deadline().unwrap();
        let nominal = (SECOND << (attempt - 1)).min(16 * SECOND);
        let delay = next - at;
        // Exponential from retry_base_ms, capped at retry_max_ms, plus < 25 % jitter.
        assert!(
            delay >= nominal && delay < nominal + nominal / 4,
            "attempt {attempt}: delay {delay} ms, nominal {nominal} ms"
        );
        // Nothing early.
        assert_actions(&a.tick(next - 1), &[]);
        // Gossip is the way round an unanswered push: once, at the first retry.
        let retry: &[&str] = if attempt == 1 {
            &["send peer-b push", "publish lienthong/unit/H41"]
        } else {
            &["send peer-b push"]
        };
        assert_actions(&a.tick(next), retry);
        at = next;
    }
    // A Retry receipt keeps the delivery and its schedule.
    let deadline = a.relay.next_deadline();
    let ack = Wire::PushAck {
        id,
        receipts: vec![retry(h(), "busy")],
    };
    assert_actions(&a.recv(PB, ack, at + 1), &[]);
    assert_eq!(a.relay.pending_deliveries(), 1);
    assert_eq!(a.relay.next_deadline(), deadline);
    // A peer that connects gets what is pending for it at once; other peers change nothing.
    assert_actions(
        &a.handle(Event::PeerConnected { peer: PC.into() }, at + 2),
        &[],
    );
    let acts = a.handle(Event::PeerConnected { peer: PB.into() }, at + 3);
    assert_actions(&acts, &["send peer-b push"]);
}

#[test]
fn a_reconnecting_peer_restarts_the_backoff() {
    let r = roster();
    let mut config = RelayConfig::new(PA);
    config.custody_after_ms = 365 * DAY;
    let mut a = Node::new(&r, config, &[g()]);
    let (base, max) = (a.config.retry_base_ms, a.config.retry_max_ms);
    sent(&mut a, 1, &[h()]);
    // A day offline: the delay has reached its cap.
    let mut at = a.relay.next_deadline().unwrap();
    assert_actions(
        &a.tick(at),
        &["send peer-b push", "publish lienthong/unit/H41"],
    );
    while at < T0 + DAY {
        at = a.relay.next_deadline().unwrap();
        assert_actions(&a.tick(at), &["send peer-b push"]);
    }
    assert!(a.relay.next_deadline().unwrap() - at >= max);
    // It connects: pushed at once, and if that push is lost the next follows after
    // retry_base_ms, not after another retry_max_ms.
    let back = at + 1;
    assert_actions(
        &a.handle(Event::PeerConnected { peer: PB.into() }, back),
        &["send peer-b push"],
    );
    let delay = a.relay.next_deadline().unwrap() - back;
    assert!(delay >= base && delay < base + base / 4, "{delay} ms");
}

#[test]
fn an_unconfirmed_delivery_is_handed_to_custodians_after_custody_after_ms() {
    let r = roster();
    let mut a = node_a(&r);
    let custody_after = a.config.custody_after_ms;
    let retry_max = a.config.retry_max_ms;
    let (id, acts) = sent(&mut a, 1, &[d()]);
    let envelope = pushed(&acts, PC);
    // The recipient's parent's node first (peer-b hosts h), then a central node chosen by
    // the content id; never the recipient's own node.
    let central = [C0, C1][usize::from(id.0[0]) % 2];
    let mut custody_at = None;
    let mut first_retry = true;
    while custody_at.is_none() {
        let at = a.relay.next_deadline().unwrap();
        let acts = a.tick(at);
        let requests = custody_requests(&acts);
        if at < T0 + custody_after {
            if std::mem::take(&mut first_retry) {
                assert_actions(&acts, &["send peer-c push", "publish lienthong/unit/H41"]);
            } else {
                assert_actions(&acts, &["send peer-c push"]);
            }
            continue;
        }
        assert_actions(
            &acts,
            &[
                "send peer-c push",
                &format!("send {central} custody"),
                "send peer-b custody",
            ],
        );
        for (_, recipients, bytes) in &requests {
            assert_eq!(recipients, &vec![d()]);
            assert_eq!(bytes, &envelope);
        }
        custody_at = Some(at);
    }
    // One custodian accepts: the next attempt asks for one more, not the same one.
    let accepted = Wire::CustodyAck {
        id,
        accepted: vec![d()],
        refused: None,
    };
    assert_actions(&a.recv(PB, accepted.clone(), custody_at.unwrap()), &[]);
    let at = a.relay.next_deadline().unwrap();
    assert_actions(
        &a.tick(at),
        &["send peer-c push", &format!("send {central} custody")],
    );
    // Both hold it: the origin slows down to retry_max / 4 and asks nobody else.
    assert_actions(&a.recv(central, accepted, at), &[]);
    let next = a.relay.next_deadline().unwrap();
    let acts = a.tick(next);
    assert_actions(&acts, &["send peer-c push"]);
    let after = a.relay.next_deadline().unwrap();
    assert!(after - next >= retry_max / 4, "{} ms", after - next);
    assert_eq!(
        a.relay.pending_deliveries(),
        1,
        "the origin keeps trying too"
    );
}

#[test]
fn a_custodian_acks_only_once_durable_and_delivers_when_the_recipient_connects() {
    let r = roster();
    let mut c0 = central(&r, C0);
    let mut c = node_c(&r);
    let doc = document(&g(), &[d()], 1, T0, 1);
    let id = doc.id();
    let t = T0 + 6 * SECOND;
    // e is not a recipient of this document: not accepted.
    let custody = Wire::Custody {
        envelope: doc.bytes().to_vec(),
        recipients: vec![e(), d()],
    };
    let acts = c0.recv(PA, custody, t);
    assert_actions(&acts, &["persist"]);
    let batch = the_batch(&acts);
    let deliveries = puts(batch, Column::Deliveries);
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].0, id_agency_key(&id, &d()));
    let record: DeliveryRecord = records::decode(Column::Deliveries, &deliveries[0].1).unwrap();
    assert_eq!(record.role, Role::Custodian);
    assert_eq!(record.created_ms, T0);
    assert_actions(&c0.tick(t + 5), &[]);
    let acts = c0.commit(t + 10);
    assert_actions(&acts, &["send peer-a custodyack", "send peer-c push"]);
    let Action::Send {
        wire:
            Wire::CustodyAck {
                id: acked,
                accepted,
                refused,
            },
        ..
    } = &acts[0]
    else {
        unreachable!()
    };
    assert_eq!((acked, accepted, refused), (&id, &vec![d()], &None));
    // A second request for the same custody is acknowledged again, without a new batch.
    let again = Wire::Custody {
        envelope: doc.bytes().to_vec(),
        recipients: vec![d()],
    };
    assert_actions(&c0.recv(PA, again, t + 11), &["send peer-a custodyack"]);

    // The recipient is offline: the custodian backs off on its own...
    let mut at = t + 10;
    for _ in 0..3 {
        at = c0.relay.next_deadline().unwrap();
        assert_actions(&c0.tick(at), &["send peer-c push"]);
    }
    // ...and pushes as soon as it connects, with the sender long gone.
    let next = c0.relay.next_deadline().unwrap();
    let acts = c0.handle(Event::PeerConnected { peer: PC.into() }, at + 100);
    assert!(at + 100 < next);
    assert_actions(&acts, &["send peer-c push"]);
    assert_actions(&c.push(C0, &pushed(&acts, PC), at + 101), &["persist"]);
    let acts = c.commit(at + 102);
    assert_actions(
        &acts,
        &["delivered 000.00.01.H41", "send central-0 pushack"],
    );
    let acts = c0.recv(PC, acks(&acts)[0].clone(), at + 103);
    assert_actions(&acts, &["persist"]);
    assert_eq!(
        deletes(the_batch(&acts), Column::Deliveries),
        vec![id_agency_key(&id, &d())]
    );
    assert_actions(
        &c0.commit(at + 104),
        &["ended 000.00.01.H41 Custodian confirmed"],
    );
    assert_eq!(c0.relay.pending_deliveries(), 0);

    // The recipient's 01 cannot reach the offline sender either (the receipt carrying it
    // was lost with the sender): pushed after `status_push_delay_ms`, on gossip at its
    // first retry, then to custody (g has no parent, so both central nodes).
    let mut attempt = 0;
    let custody = loop {
        let at = c.relay.next_deadline().unwrap();
        let acts = c.tick(at);
        let requests = custody_requests(&acts);
        if !requests.is_empty() {
            break requests;
        }
        attempt += 1;
        if attempt == 2 {
            assert_actions(&acts, &["send peer-a push", "publish lienthong/unit/G22"]);
        } else {
            assert_actions(&acts, &["send peer-a push"]);
        }
    };
    let custodians: Vec<&str> = custody.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(custodians, [C0, C1]);
    assert!(custody.iter().all(|(_, to, _)| to == &vec![g()]));
}

#[test]
fn a_custodian_ends_custody_when_the_recipient_refuses_a_revoked_sender() {
    let r = roster();
    let mut c0 = central(&r, C0);
    let mut c = node_c(&r);
    let doc = document(&g(), &[d()], 1, T0, 1);
    let custody = Wire::Custody {
        envelope: doc.bytes().to_vec(),
        recipients: vec![d()],
    };
    assert_actions(&c0.recv(PA, custody, T0), &["persist"]);
    let acts = c0.commit(T0 + 1);
    let push = pushed(&acts, PC);
    // The sender is revoked while its document waits with the custodian.
    let revoked = with_state(&r, &g(), AgencyState::Revoked);
    c.handle(Event::RosterUpdated(Arc::clone(&revoked)), T0 + 2);
    let acts = c.push(C0, &push, T0 + 3);
    assert_actions(&acts, &["send central-0 pushack"]);
    let ack = acks(&acts)[0].clone();
    assert_actions(&c0.recv(PC, ack, T0 + 4), &["persist"]);
    let acts = c0.commit(T0 + 5);
    assert_actions(&acts, &["ended 000.00.01.H41 Custodian refused"]);
    assert_eq!(
        ended(&acts)[0].3,
        Outcome::Refused("agency 000.00.00.G22 is revoked".into())
    );
    assert_eq!(c0.relay.next_deadline(), None);
}

#[test]
fn custody_over_the_per_sender_quota_is_refused() {
    let r = roster();
    let mut config = RelayConfig::new(C0);
    config.max_custody_per_sender = 1;
    let mut c0 = Node::new(&r, config, &[]);
    let first = document(&g(), &[d()], 1, T0, 1);
    let second = document(&g(), &[e()], 2, T0, 2);
    let custody = |doc: &SignedEnvelope, to: AgencyId| Wire::Custody {
        envelope: doc.bytes().to_vec(),
        recipients: vec![to],
    };
    assert_actions(&c0.recv(PA, custody(&first, d()), T0), &["persist"]);
    let acts = c0.recv(PA, custody(&second, e()), T0);
    assert_actions(&acts, &["send peer-a custodyack"]);
    let Action::Send {
        wire: Wire::CustodyAck {
            accepted, refused, ..
        },
        ..
    } = &acts[0]
    else {
        unreachable!()
    };
    assert!(accepted.is_empty());
    assert_eq!(refused.as_deref(), Some("custodian over its quota"));
}

#[test]
fn a_revoked_recipient_or_an_expired_delivery_ends_with_the_reason_recorded() {
    let r = roster();
    let mut config = RelayConfig::new(PA);
    config.max_age_ms = 10 * DAY;
    let mut a = Node::new(&r, config, &[g()]);
    let (id, _) = sent(&mut a, 1, &[d(), h()]);
    a.handle(
        Event::RosterUpdated(with_state(&r, &h(), AgencyState::Revoked)),
        T0 + 2,
    );
    let at = a.relay.next_deadline().unwrap();
    let acts = a.tick(at);
    // (The roster change started the windows afresh: nothing is known unanswered yet, so
    // nothing goes on gossip.)
    assert_actions(&acts, &["persist", "send peer-c push"]);
    assert_eq!(
        deletes(the_batch(&acts), Column::Deliveries),
        vec![id_agency_key(&id, &h())]
    );
    let acts = a.commit(at);
    assert_actions(&acts, &["ended 000.00.00.H41 Origin gone"]);
    assert_eq!(
        a.store.status(&id, &h()).ended.as_deref(),
        Some("agency 000.00.00.H41 is revoked")
    );
    // d never answers: after max_age the delivery expires.
    let late = T0 + 10 * DAY + 1;
    let acts = a.tick(late);
    assert_actions(&acts, &["persist"]);
    assert_actions(&a.commit(late), &["ended 000.00.01.H41 Origin expired"]);
    assert_eq!(
        a.store.status(&id, &d()).ended.as_deref(),
        Some("expired before the recipient confirmed")
    );
    assert_eq!(a.relay.pending_deliveries(), 0);
    assert_eq!(a.store.count(Column::Deliveries), 0);
}

#[test]
fn deliveries_to_a_suspended_recipient_wait_until_it_is_reinstated() {
    let r = roster();
    let mut a = node_a(&r);
    let retry_max = a.config.retry_max_ms;
    let (id, _) = sent(&mut a, 1, &[h()]);
    let suspended = with_state(&r, &h(), AgencyState::Suspended);
    assert_actions(
        &a.handle(Event::RosterUpdated(Arc::clone(&suspended)), T0 + 2),
        &[],
    );
    // Neither pushed nor ended: it waits.
    let at = a.relay.next_deadline().unwrap();
    assert_actions(&a.tick(at), &[]);
    assert_eq!(a.relay.pending_deliveries(), 1);
    assert_eq!(a.relay.next_deadline(), Some(at + retry_max));
    assert_eq!(a.store.status(&id, &h()).ended, None);
    // Reinstated: delivery goes on.
    let reinstated = with_state(&suspended, &h(), AgencyState::Active);
    a.handle(Event::RosterUpdated(reinstated), at + 1);
    let acts = a.tick(at + retry_max);
    // (Long past custody_after_ms: custodians are asked too; h has no parent.)
    assert_actions(
        &acts,
        &[
            "send peer-b push",
            "send central-0 custody",
            "send central-1 custody",
        ],
    );
    assert_eq!(SignedEnvelope::decode(&pushed(&acts, PB)).unwrap().id(), id);
}

// ===== statuses =========================================================================

/// Statuses travel on separate pushes: a later one from the same author can overtake an
/// earlier one. The earlier one is kept in the history at its place, not refused (its
/// author's node checked both in order); a status out of order that no later one
/// overtook is still refused.
#[test]
fn a_status_overtaken_on_the_way_is_kept_in_the_history_at_its_place() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, t) = delivered_pair(&mut a, &mut b);
    use StatusCode::*;
    let mut posted = Vec::new();
    for (request, code) in [
        (1, Accepted),
        (2, Assigned),
        (3, Processing),
        (4, Completed),
    ] {
        assert_actions(&b.post(request, &h(), id, code, t), &["persist"]);
        posted.push(completed_id(&b.commit(t)));
    }
    let acts = b.tick(t + b.config.status_push_delay_ms);
    let envelope_of = |sid: ContentId| pushed_envelope(&acts, sid);
    // 05 is overtaken by 06 (04 → 06 is a valid step on its own).
    let at = t + b.config.status_push_delay_ms;
    for sid in [posted[0], posted[1], posted[3], posted[2]] {
        assert_actions(&a.push(PB, &envelope_of(sid), at), &["persist"]);
        let acts = a.commit(at);
        assert_eq!(
            receipts(&acts, sid),
            vec![Receipt::Arrived {
                recipient: g(),
                status: None
            }]
        );
    }
    let record = a.store.status(&id, &h());
    assert_eq!(
        codes(&record),
        [Arrived, Accepted, Assigned, Processing, Completed]
    );
    assert_eq!(record.chain.stage, Stage::At(Completed));
    // A 03 signed after the 06 is out of order and overtook nothing: refused.
    let late = status(&h(), &g(), 9, Accepted, id, at);
    let mut acts = a.push(PB, late.bytes(), at + 1);
    acts.extend(a.commit(at + 1));
    let refused = receipts(&acts, late.id());
    assert!(
        matches!(&refused[..], [Receipt::Refused { reason, .. }] if reason.contains("03")),
        "{refused:?}"
    );
    assert_eq!(codes(&a.store.status(&id, &h())).len(), 5);
}

/// Two statuses that are each valid in either order (a 16 answering a recall and a 06,
/// which a pending recall does not hold back) are kept in their author's order, and the
/// chain is where that order leads: the recall answered, the document completed.
#[test]
fn statuses_valid_in_either_order_are_kept_in_their_authors_order() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, t) = delivered_pair(&mut a, &mut b);
    use StatusCode::*;
    let t = status_round_trip(&mut b, PB, &mut a, PA, &h(), id, Accepted, t);
    let t = status_round_trip(&mut a, PA, &mut b, PB, &g(), id, RecallRequested, t);
    let mut posted = Vec::new();
    for (request, code) in [(1, RecallRefused), (2, Completed)] {
        assert_actions(&b.post(request, &h(), id, code, t), &["persist"]);
        posted.push(completed_id(&b.commit(t)));
    }
    let at = t + b.config.status_push_delay_ms;
    let acts = b.tick(at);
    for sid in [posted[1], posted[0]] {
        let envelope = pushed_envelope(&acts, sid);
        assert_actions(&a.push(PB, &envelope, at), &["persist"]);
        a.commit(at);
    }
    let record = a.store.status(&id, &h());
    assert_eq!(
        codes(&record),
        [Arrived, Accepted, RecallRequested, RecallRefused, Completed]
    );
    assert_eq!(
        (record.chain.stage, record.chain.request_pending),
        (Stage::At(Completed), false)
    );
}

/// A lower sequence number does not slip in a status that was never valid at its place:
/// the history, with it inserted, must replay to where the chain stands.
#[test]
fn an_overtaken_status_must_fit_its_place_in_the_chain() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, t) = delivered_pair(&mut a, &mut b);
    use StatusCode::*;
    let deliver = |a: &mut Node, env: &SignedEnvelope, at: u64| {
        let mut acts = a.push(PB, env.bytes(), at);
        acts.extend(a.commit(at));
        receipts(&acts, env.id())
    };
    let arrived = vec![Receipt::Arrived {
        recipient: g(),
        status: None,
    }];
    // h's statuses at sequence numbers with room between them (its other envelopes).
    for (seq, code) in [(10, Accepted), (11, Assigned), (20, Completed)] {
        let env = status(&h(), &g(), seq, code, id, t);
        assert_eq!(deliver(&mut a, &env, t + 1), arrived, "{code}");
    }
    // A 02 "signed earlier" cannot follow 04: refused, and the history is unchanged.
    let rejected = status(&h(), &g(), 15, Rejected, id, t);
    let refused = deliver(&mut a, &rejected, t + 2);
    assert!(
        matches!(&refused[..], [Receipt::Refused { .. }]),
        "{refused:?}"
    );
    assert_eq!(
        codes(&a.store.status(&id, &h())),
        [Arrived, Accepted, Assigned, Completed]
    );
    // The 05 that was overtaken fits between 04 and 06.
    let processing = status(&h(), &g(), 12, Processing, id, t);
    assert_eq!(deliver(&mut a, &processing, t + 3), arrived);
    let record = a.store.status(&id, &h());
    assert_eq!(
        codes(&record),
        [Arrived, Accepted, Assigned, Processing, Completed]
    );
    assert_eq!(record.chain.stage, Stage::At(Completed));
}

#[test]
fn recipient_statuses_03_to_06_reach_the_sender_and_update_both_copies() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, mut t) = delivered_pair(&mut a, &mut b);
    for code in [
        StatusCode::Accepted,
        StatusCode::Assigned,
        StatusCode::Processing,
        StatusCode::Completed,
    ] {
        t = status_round_trip(&mut b, PB, &mut a, PA, &h(), id, code, t);
        assert_eq!(a.store.status(&id, &h()).chain.stage, Stage::At(code));
        assert_eq!(b.store.status(&id, &h()).chain.stage, Stage::At(code));
    }
    use StatusCode::*;
    assert_eq!(
        codes(&a.store.status(&id, &h())),
        [Arrived, Accepted, Assigned, Processing, Completed]
    );
    assert_eq!(
        codes(&b.store.status(&id, &h())),
        codes(&a.store.status(&id, &h()))
    );
    // Finished: the sender may no longer recall it.
    let err = completed_err(&a.post(5, &g(), id, RecallRequested, t));
    assert_eq!(
        err.to_string(),
        "status 13 cannot follow 06 (completed): the recipient has already finished with the document"
    );
}

#[test]
fn a_rejection_02_is_a_valid_answer_to_an_arrival() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, t) = delivered_pair(&mut a, &mut b);
    let t = status_round_trip(&mut b, PB, &mut a, PA, &h(), id, StatusCode::Rejected, t);
    assert_eq!(
        a.store.status(&id, &h()).chain.stage,
        Stage::At(StatusCode::Rejected)
    );
    let err = completed_err(&b.post(6, &h(), id, StatusCode::Accepted, t));
    assert_eq!(
        err.to_string(),
        "status 03 cannot follow 02 (rejected): the document was already accepted or rejected"
    );
}

#[test]
fn invalid_status_posts_are_refused_with_the_reason_and_nothing_is_sent() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, t) = delivered_pair(&mut a, &mut b);
    let refusal = |node: &mut Node, tenant: &AgencyId, document, code| {
        let acts = node.post(3, tenant, document, code, t);
        assert_actions(&acts, &["completed err"]);
        assert_eq!(completed(&acts).0, 3);
        completed_err(&acts).to_string()
    };
    use StatusCode::*;
    assert_eq!(
        refusal(&mut b, &h(), id, Completed),
        "status 06 cannot follow 01 (arrived): only an accepted document can be completed"
    );
    assert_eq!(
        refusal(&mut b, &h(), id, Arrived),
        "status 01 cannot follow 01 (arrived): arrival was already confirmed"
    );
    assert_eq!(
        refusal(&mut b, &h(), id, RecallAgreed),
        "status 15 cannot follow 01 (arrived): the sender has not asked (13)"
    );
    // Only the document's sender may ask for it back; only a recipient may post 01-06.
    assert_eq!(
        refusal(&mut b, &h(), id, RecallRequested),
        format!("unknown document {id}")
    );
    assert_eq!(
        refusal(&mut a, &g(), id, Accepted),
        format!("unknown document {id}")
    );
    assert_eq!(
        refusal(&mut b, &h(), ContentId([7; 32]), Accepted),
        format!("unknown document {}", ContentId([7; 32]))
    );
    assert_eq!(
        refusal(&mut b, &d(), id, Accepted),
        "agency 000.00.01.H41 is not hosted on this node"
    );
    assert!(a.unsynced.is_empty() && b.unsynced.is_empty());
    assert_eq!(b.relay.pending_deliveries(), 0);
}

#[test]
fn a_recall_13_while_delivery_is_pending_waits_for_the_document_then_15_ends_it() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, acts) = sent(&mut a, 1, &[h()]);
    let doc = pushed(&acts, PB);
    // The sender asks for it back before it has arrived.
    assert_actions(
        &a.post(2, &g(), id, StatusCode::RecallRequested, T0 + 2),
        &["persist"],
    );
    let acts = a.commit(T0 + 2);
    assert_actions(&acts, &["completed ok"]);
    let recall = a.envelope(&completed_id(&acts)).unwrap();
    let chain = a.store.status(&id, &h()).chain;
    assert_eq!((chain.stage, chain.request_pending), (Stage::Sent, true));

    // The 13 overtakes the document: "retry", nothing stored.
    let acts = b.push(PA, recall.bytes(), T0 + 3);
    assert_actions(&acts, &["send peer-a pushack"]);
    assert_eq!(
        receipts(&acts, recall.id()),
        vec![retry(
            h(),
            &format!("document {id} has not arrived here yet")
        )]
    );
    assert!(b.unsynced.is_empty());
    // The document arrives (arrival is recorded even with a request pending), then the 13.
    assert_actions(&b.push(PA, &doc, T0 + 4), &["persist"]);
    let ack = acks(&b.commit(T0 + 4))[0].clone();
    assert_actions(&a.recv(PB, ack, T0 + 4), &["persist"]);
    a.commit(T0 + 4);
    let chain = a.store.status(&id, &h()).chain;
    assert_eq!(
        (chain.stage, chain.request_pending),
        (Stage::At(StatusCode::Arrived), true)
    );
    assert_actions(&b.push(PA, recall.bytes(), T0 + 5), &["persist"]);
    let acts = b.commit(T0 + 5);
    assert_actions(&acts, &["delivered 000.00.00.H41", "send peer-a pushack"]);
    assert_eq!(
        receipts(&acts, recall.id()),
        vec![Receipt::Arrived {
            recipient: h(),
            status: None
        }]
    );
    assert_actions(&a.recv(PB, acks(&acts)[0].clone(), T0 + 5), &["persist"]);
    assert_actions(&a.commit(T0 + 5), &["ended 000.00.00.H41 Origin confirmed"]);
    assert_eq!(a.relay.pending_deliveries(), 0);
    let chain = b.store.status(&id, &h()).chain;
    assert_eq!(
        (chain.stage, chain.request_pending),
        (Stage::At(StatusCode::Arrived), true)
    );
    // The recipient must answer before processing.
    assert_eq!(
        completed_err(&b.post(3, &h(), id, StatusCode::Accepted, T0 + 6)).to_string(),
        "status 03 cannot follow 01 (arrived): answer the sender's request (15 or 16) first"
    );
    let t = status_round_trip(
        &mut b,
        PB,
        &mut a,
        PA,
        &h(),
        id,
        StatusCode::RecallAgreed,
        T0 + 7,
    );
    assert_eq!(a.store.status(&id, &h()).chain.stage, Stage::Recalled);
    assert_eq!(b.store.status(&id, &h()).chain.stage, Stage::Recalled);
    assert_eq!(
        completed_err(&b.post(4, &h(), id, StatusCode::Accepted, t)).to_string(),
        "status 03 cannot follow recalled: the document was recalled"
    );
}

#[test]
fn a_recall_refused_16_lets_processing_go_on() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, t) = delivered_pair(&mut a, &mut b);
    let t = status_round_trip(
        &mut a,
        PA,
        &mut b,
        PB,
        &g(),
        id,
        StatusCode::RecallRequested,
        t,
    );
    assert_eq!(
        completed_err(&a.post(2, &g(), id, StatusCode::RecallRequested, t)).to_string(),
        "status 13 cannot follow 01 (arrived): a request is already waiting for an answer"
    );
    let t = status_round_trip(
        &mut b,
        PB,
        &mut a,
        PA,
        &h(),
        id,
        StatusCode::RecallRefused,
        t,
    );
    let chain = a.store.status(&id, &h()).chain;
    assert_eq!(
        (chain.stage, chain.request_pending),
        (Stage::At(StatusCode::Arrived), false)
    );
    status_round_trip(&mut b, PB, &mut a, PA, &h(), id, StatusCode::Accepted, t);
    use StatusCode::*;
    assert_eq!(
        codes(&a.store.status(&id, &h())),
        [Arrived, RecallRequested, RecallRefused, Accepted]
    );
}

#[test]
fn received_statuses_out_of_order_are_retried_and_invalid_ones_refused() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, t) = delivered_pair(&mut a, &mut b);
    // (Sequence numbers far apart: the chain check has no neighbour to compare with.)
    // A 06 that overtook its 03: may become valid, so "retry" and nothing stored.
    let completed = status(&h(), &g(), 100, StatusCode::Completed, id, t);
    let acts = a.push(PB, completed.bytes(), t);
    assert_actions(&acts, &["send peer-b pushack"]);
    assert_eq!(
        receipts(&acts, completed.id()),
        vec![retry(
            g(),
            "status 06 cannot follow 01 (arrived): only an accepted document can be completed"
        )]
    );
    assert!(a.unsynced.is_empty());
    let accepted = status(&h(), &g(), 102, StatusCode::Accepted, id, t);
    assert_actions(&a.push(PB, accepted.bytes(), t), &["persist"]);
    a.commit(t);
    // A 02 after 03 can never become valid: refused with the reason.
    let rejected = status(&h(), &g(), 104, StatusCode::Rejected, id, t);
    assert_actions(&a.push(PB, rejected.bytes(), t), &["persist"]);
    let acts = a.commit(t);
    assert_actions(&acts, &["send peer-b pushack"]);
    assert_eq!(
        receipts(&acts, rejected.id()),
        vec![refused(
            g(),
            "status 02 cannot follow 03 (accepted): only a document that has arrived but is not yet accepted can be rejected"
        )]
    );
    assert_eq!(
        a.store.status(&id, &h()).chain.stage,
        Stage::At(StatusCode::Accepted)
    );
    // The 06 now applies.
    assert_actions(&a.push(PB, completed.bytes(), t + 1), &["persist"]);
    a.commit(t + 1);
    assert_eq!(
        a.store.status(&id, &h()).chain.stage,
        Stage::At(StatusCode::Completed)
    );
}

#[test]
fn a_status_from_an_agency_that_is_not_party_to_the_document_is_refused() {
    let r = roster();
    let mut a = node_a(&r);
    let mut b = node_b(&r);
    let (id, t) = delivered_pair(&mut a, &mut b);
    // d was never sent the document, yet says it accepted it.
    let intruder = status(&d(), &g(), 1, StatusCode::Accepted, id, t);
    assert_actions(&a.push(PC, intruder.bytes(), t), &["persist"]);
    let acts = a.commit(t);
    assert_actions(&acts, &["send peer-c pushack"]);
    assert_eq!(
        receipts(&acts, intruder.id()),
        vec![refused(
            g(),
            &format!("status 03 about {id} from an agency not party to it")
        )]
    );
    assert_eq!(codes(&a.store.status(&id, &h())), [StatusCode::Arrived]);
    assert_eq!(delivered(&acts), vec![], "nothing in g's inbox");
    // d is not the sender either: its 13 is refused at the recipient's node.
    let recall = status(&d(), &h(), 2, StatusCode::RecallRequested, id, t);
    assert_actions(&b.push(PC, recall.bytes(), t), &["persist"]);
    let acts = b.commit(t);
    assert_actions(&acts, &["send peer-c pushack"]);
    assert_eq!(
        receipts(&acts, recall.id()),
        vec![refused(
            h(),
            &format!("status 13 about {id} from an agency not party to it")
        )]
    );
    assert!(!b.store.status(&id, &h()).chain.request_pending);
}

// ===== gossip ===========================================================================

#[test]
fn gossip_verdicts_accept_reject_and_ignore() {
    let r = roster();
    let mut b = node_b(&r);
    let gossip = |b: &mut Node, message: u64, envelope: &[u8], now: u64| {
        b.handle(
            Event::Gossip {
                peer: PC.into(),
                message,
                envelope: envelope.to_vec(),
            },
            now,
        )
    };
    let verdict = |acts: &[Action]| match acts.last() {
        Some(Action::GossipVerdict { message, verdict }) => (*message, *verdict),
        _ => panic!("a verdict last: {acts:#?}"),
    };
    // New and for a tenant here: stored and delivered like a push, but no ack is owed.
    let doc = document(&g(), &[h()], 1, T0, 1);
    let acts = gossip(&mut b, 1, doc.bytes(), T0);
    assert_actions(&acts, &["persist", "verdict Accept"]);
    assert_eq!(verdict(&acts), (1, Verdict::Accept));
    assert_actions(&b.commit(T0), &["delivered 000.00.00.H41"]);
    // Seen already: not worth forwarding.
    assert_actions(&gossip(&mut b, 2, doc.bytes(), T0), &["verdict Ignore"]);
    // Valid but for others: forwarded, not stored.
    let other = document(&g(), &[d()], 2, T0, 2);
    assert_actions(&gossip(&mut b, 3, other.bytes(), T0), &["verdict Accept"]);
    // Invalid: rejected and the forwarding peer penalised.
    let mut tampered = other.bytes().to_vec();
    tampered[other.header_bytes().len() - 1] ^= 1;
    assert_actions(
        &gossip(&mut b, 4, &tampered, T0),
        &["penalize peer-c", "verdict Reject"],
    );
    assert_actions(
        &gossip(&mut b, 5, b"not an envelope", T0),
        &["penalize peer-c", "verdict Reject"],
    );
    let forged = document(&x(), &[h()], 1, T0, 3);
    assert_actions(
        &gossip(&mut b, 6, forged.bytes(), T0),
        &["penalize peer-c", "verdict Reject"],
    );
    // Valid once, but expired or from a revoked sender: dropped without blame.
    let old = document(&g(), &[h()], 3, T0 - b.config.max_age_ms - 1, 4);
    assert_actions(&gossip(&mut b, 7, old.bytes(), T0), &["verdict Ignore"]);
    b.handle(
        Event::RosterUpdated(with_state(&r, &g(), AgencyState::Revoked)),
        T0,
    );
    let late = document(&g(), &[h()], 4, T0, 5);
    assert_actions(&gossip(&mut b, 8, late.bytes(), T0), &["verdict Ignore"]);
    assert_eq!(b.store.count(Column::Inbox), 1);
}

// ===== recovery and idling ==============================================================

#[test]
fn recovery_resumes_committed_deliveries_and_loses_unacknowledged_ones() {
    let r = roster();
    let mut a = node_a(&r);
    let (first, _) = sent(&mut a, 1, &[h()]);
    // A second submission whose batch never became durable: never acknowledged.
    assert_actions(&a.submit(2, &g(), &[d()], T0 + 2), &["persist"]);
    assert_eq!(a.relay.pending_deliveries(), 2);
    let now = T0 + MINUTE;
    let mut a = a.restart(now);
    assert_eq!(a.relay.pending_deliveries(), 1);
    assert_eq!(a.relay.next_deadline(), Some(now), "due at once");
    let acts = a.tick(now);
    assert_actions(&acts, &["send peer-b push"]);
    assert_eq!(
        SignedEnvelope::decode(&pushed(&acts, PB)).unwrap().id(),
        first
    );
    // The chain resumes after the last durable envelope (the lost one never left).
    assert_actions(&a.submit(3, &g(), &[d()], now), &["persist"]);
    let next = completed_id(&a.commit(now));
    let next = a.envelope(&next).unwrap();
    assert_eq!((next.body().seq, next.body().prev), (2, Some(first)));
}

#[test]
fn a_receiver_that_crashes_before_commit_delivers_exactly_once_after_restart() {
    let r = roster();
    let mut b = node_b(&r);
    let docs = chain(&g(), &[h()], 2, T0);
    let (first, second) = (&docs[0], &docs[1]);
    assert_actions(&b.push(PA, first.bytes(), T0), &["persist"]);
    b.commit(T0);
    // The second is stored but not durable when the node dies: no ack, no inbox entry.
    assert_actions(&b.push(PA, second.bytes(), T0 + 1), &["persist"]);
    let now = T0 + MINUTE;
    let mut b = b.restart(now);
    // The committed 01 (to g) is pending again, pushed after the status delay.
    assert_eq!(b.relay.pending_deliveries(), 1);
    assert_eq!(
        b.relay.next_deadline(),
        Some(now + b.config.status_push_delay_ms)
    );
    // The first is a duplicate; the second is delivered now, at the next inbox position.
    let acts = b.push(PA, first.bytes(), now);
    assert_eq!(
        receipts(&acts, first.id()),
        vec![Receipt::Duplicate { recipient: h() }]
    );
    assert_actions(&b.push(PA, second.bytes(), now), &["persist"]);
    let acts = b.commit(now);
    assert_eq!(delivered(&acts), vec![(h(), second.id(), 1)]);
    assert_eq!(b.store.count(Column::Inbox), 2);
}

#[test]
fn a_custodian_resumes_custody_after_a_restart() {
    let r = roster();
    let mut c0 = central(&r, C0);
    let doc = document(&g(), &[d()], 1, T0, 1);
    let custody = Wire::Custody {
        envelope: doc.bytes().to_vec(),
        recipients: vec![d()],
    };
    c0.recv(PA, custody, T0);
    c0.commit(T0);
    let now = T0 + DAY;
    let mut c0 = c0.restart(now);
    assert_eq!(c0.relay.pending_deliveries(), 1);
    let acts = c0.tick(now);
    assert_actions(&acts, &["send peer-c push"]);
    assert_eq!(pushed(&acts, PC), doc.bytes());
}

#[test]
fn tick_with_nothing_to_do_emits_nothing() {
    let r = roster();
    let mut a = node_a(&r);
    assert_eq!(a.relay.next_deadline(), None);
    assert_actions(&a.tick(T0), &[]);
    assert_actions(&a.tick(T0 + DAY), &[]);
    let mut c0 = central(&r, C0);
    assert_actions(
        &c0.handle(Event::PeerConnected { peer: PA.into() }, T0),
        &[],
    );
    assert_eq!(c0.relay.pending_deliveries(), 0);
}
