//! Seeded, deterministic simulation of many relay nodes over an in-memory network and
//! store, with message loss, duplication, reordering, partitions, crashes that lose
//! unsynced writes, restarts, and offline periods of simulated days. After each run it
//! checks lienthong's promise (DESIGN §5): every acknowledged document reaches every active
//! recipient exactly once and a signed 01 comes back; nothing is delivered that its signer
//! did not send; only recipients can open a document; custody is released only after the
//! recipient has it; nothing is left pending once everything is delivered.
//!
//! `LIENTHONG_SIM_SEED=N` replays one seed; `LIENTHONG_SIM_SEEDS=N` runs N seeds (the suite
//! runs a default count; `scripts/soak` runs many more).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::{InlinePayload, Kind, Payload, Routing, SignedEnvelope};
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::relay::records::{self, StatusRecord, id_agency_key};
use lienthong_protocol::relay::store::{Batch, Column, StoreOp, StoreView};
use lienthong_protocol::relay::wire::Wire;
use lienthong_protocol::relay::{
    Action, Content, Event, Outcome, Relay, RelayConfig, StatusPost, Submission, Tenant, unit_topic,
};
use lienthong_protocol::roster::{AgencyEntry, AgencyState, CentralNode, Federation, Roster};
use lienthong_protocol::seal::{self, Manifest, RecipientEpochs, SenderEpochs};
use lienthong_protocol::status::{Stage, StatusCode};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const START: u64 = 1_790_000_000_000;

/// One simulated run's shape, drawn from the seed.
#[derive(Debug, Clone)]
struct Scenario {
    nodes: usize,
    centrals: usize,
    documents: usize,
    load_ms: u64,
    loss: f64,
    duplicate: f64,
    crashes: usize,
    partitions: usize,
    long_offline: bool,
}

impl Scenario {
    fn draw(rng: &mut ChaCha20Rng) -> Self {
        let pick = |rng: &mut ChaCha20Rng, n: u64| rng.next_u64() % n;
        Self {
            nodes: 3 + pick(rng, 4) as usize,
            centrals: 2 + pick(rng, 2) as usize,
            documents: 4 + pick(rng, 9) as usize,
            load_ms: 30 * SECOND + pick(rng, 5 * MINUTE),
            loss: [0.0, 0.05, 0.2][pick(rng, 3) as usize],
            duplicate: [0.0, 0.05][pick(rng, 2) as usize],
            crashes: pick(rng, 5) as usize,
            partitions: pick(rng, 3) as usize,
            long_offline: pick(rng, 4) == 0,
        }
    }
}

#[derive(Default)]
struct SimStore {
    committed: BTreeMap<(Column, Vec<u8>), Vec<u8>>,
    pending: VecDeque<Batch>,
}

impl StoreView for SimStore {
    fn get(&self, column: Column, key: &[u8]) -> Option<Vec<u8>> {
        self.committed.get(&(column, key.to_vec())).cloned()
    }
}

impl SimStore {
    fn apply(&mut self, batch: Batch) {
        for op in batch.ops {
            match op {
                StoreOp::Put { column, key, value } => {
                    self.committed.insert((column, key), value);
                }
                StoreOp::Delete { column, key } => {
                    self.committed.remove(&(column, key));
                }
            }
        }
    }

    fn rows(&self, column: Column) -> Vec<(Column, Vec<u8>, Vec<u8>)> {
        self.committed
            .iter()
            .filter(|((c, _), _)| *c == column)
            .map(|((c, k), v)| (*c, k.clone(), v.clone()))
            .collect()
    }
}

struct SimNode {
    peer: String,
    tenants: Vec<AgencyId>,
    relay: Option<Relay>,
    store: SimStore,
    /// Incarnation: events scheduled for an earlier one are dropped after a crash.
    epoch: u64,
    next_tick: Option<u64>,
}

#[derive(Debug, Clone)]
enum SimEvent {
    Message {
        to: usize,
        from: String,
        wire: Wire,
    },
    Gossip {
        to: usize,
        from: String,
        envelope: Vec<u8>,
    },
    Commit {
        node: usize,
        epoch: u64,
    },
    PayloadStored {
        node: usize,
        epoch: u64,
        manifest: [u8; 32],
    },
    Tick {
        node: usize,
        epoch: u64,
    },
    Crash {
        node: usize,
        down_ms: u64,
    },
    Restart {
        node: usize,
    },
    Send {
        sender: AgencyId,
        to: Vec<AgencyId>,
        external: bool,
    },
    Status {
        tenant: AgencyId,
        document: ContentId,
        code: StatusCode,
    },
    Recall {
        tenant: AgencyId,
        document: ContentId,
        recipient: AgencyId,
    },
    Partition {
        cut: BTreeSet<usize>,
        heal_at: u64,
    },
    Heal,
}

struct Sim {
    seed: u64,
    scenario: Scenario,
    rng: ChaCha20Rng,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: HashMap<usize, SimEvent>,
    next_event: usize,
    sequence: u64,
    nodes: Vec<SimNode>,
    roster: Arc<Roster>,
    signing: BTreeMap<AgencyId, [u8; 32]>,
    encryption: BTreeMap<AgencyId, EncryptionSecret>,
    host: BTreeMap<AgencyId, usize>,
    sender_epochs: SenderEpochs,
    partition: Option<(BTreeSet<usize>, u64)>,
    faults_until: u64,
    next_request: u64,
    acknowledged: BTreeMap<ContentId, (AgencyId, Vec<AgencyId>)>,
    requests: HashMap<u64, AgencyId>,
    penalties: Vec<String>,
    equivocations: usize,
    violations: Vec<String>,
}

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let scenario = Scenario::draw(&mut rng);
        let mut nodes = Vec::new();
        let mut signing = BTreeMap::new();
        let mut encryption = BTreeMap::new();
        let mut host = BTreeMap::new();
        let mut agencies = Vec::new();
        for n in 0..scenario.nodes {
            let peer = format!("peer-{n}");
            // Node n hosts province H(40+n); every other node, a shared platform, also
            // hosts one of its districts.
            let mut tenants = vec![agency(&format!("000.00.00.H{}", 40 + n))];
            if n % 2 == 1 {
                tenants.push(agency(&format!("000.00.01.H{}", 40 + n)));
            }
            for t in &tenants {
                let mut seed_bytes = [0u8; 32];
                rng.fill_bytes(&mut seed_bytes);
                let key = SigningKey::from_seed(&seed_bytes);
                let enc = EncryptionSecret::generate(&mut rng);
                agencies.push(AgencyEntry {
                    id: t.clone(),
                    name: format!("Agency {t}"),
                    level: t.level().unwrap(),
                    parent: t.parent(),
                    signing_key: key.verifying_key(),
                    encryption_key: enc.public_key(),
                    node: peer.clone(),
                    addrs: vec![],
                    state: AgencyState::Active,
                });
                signing.insert(t.clone(), seed_bytes);
                encryption.insert(t.clone(), enc);
                host.insert(t.clone(), n);
            }
            nodes.push(SimNode {
                peer,
                tenants,
                relay: None,
                store: SimStore::default(),
                epoch: 0,
                next_tick: None,
            });
        }
        let mut central = Vec::new();
        for c in 0..scenario.centrals {
            let peer = format!("central-{c}");
            central.push(CentralNode {
                name: peer.clone(),
                peer_id: peer.clone(),
                addrs: vec![],
                log_key: SigningKey::generate(&mut rng).verifying_key(),
                http_url: format!("http://{peer}"),
            });
            nodes.push(SimNode {
                peer,
                tenants: vec![],
                relay: None,
                store: SimStore::default(),
                epoch: 0,
                next_tick: None,
            });
        }
        agencies.sort_by(|a, b| a.id.cmp(&b.id));
        let roster = Roster {
            epoch: 1,
            issued_ms: START,
            federation: Federation {
                name: "sim".into(),
                threshold: 1,
                root_keys: vec![SigningKey::generate(&mut rng).verifying_key()],
                witness_quorum: 1,
            },
            agencies,
            central,
        };
        roster.validate().unwrap();
        let mut sim = Self {
            seed,
            scenario,
            rng,
            now: START,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            sequence: 0,
            nodes,
            roster: Arc::new(roster),
            signing,
            encryption,
            host,
            sender_epochs: SenderEpochs::default(),
            partition: None,
            faults_until: 0,
            next_request: 0,
            acknowledged: BTreeMap::new(),
            requests: HashMap::new(),
            penalties: Vec::new(),
            equivocations: 0,
            violations: Vec::new(),
        };
        for n in 0..sim.nodes.len() {
            sim.start(n);
        }
        sim
    }

    fn config(&self, n: usize) -> RelayConfig {
        let mut c = RelayConfig::new(self.nodes[n].peer.clone());
        c.max_age_ms = 30 * DAY;
        c
    }

    fn tenants(&self, n: usize) -> Vec<Tenant> {
        self.nodes[n]
            .tenants
            .iter()
            .map(|t| Tenant {
                id: t.clone(),
                key: SigningKey::from_seed(&self.signing[t]),
            })
            .collect()
    }

    fn start(&mut self, n: usize) {
        let store = &self.nodes[n].store;
        let rows = [Column::Chains, Column::Deliveries]
            .into_iter()
            .flat_map(|c| store.rows(c));
        let relay = Relay::recover(
            self.config(n),
            Arc::clone(&self.roster),
            self.tenants(n),
            self.now,
            rows,
            store,
        )
        .unwrap_or_else(|e| panic!("seed {}: node {n} cannot recover: {e}", self.seed));
        self.nodes[n].relay = Some(relay);
        self.nodes[n].next_tick = None;
        self.feed(n, Event::Tick);
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    fn schedule(&mut self, at: u64, event: SimEvent) {
        let id = self.next_event;
        self.next_event += 1;
        self.sequence += 1;
        self.events.insert(id, event);
        self.queue.push(Reverse((at, self.sequence, id)));
    }

    fn faulty(&self) -> bool {
        self.now < self.faults_until
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        match &self.partition {
            Some((cut, heal)) if self.now < *heal => cut.contains(&a) == cut.contains(&b),
            _ => true,
        }
    }

    fn node_of_peer(&self, peer: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.peer == peer)
    }

    /// Feeds an event to node `n` and carries out every action it returns.
    fn feed(&mut self, n: usize, event: Event) {
        let Some(mut relay) = self.nodes[n].relay.take() else {
            return;
        };
        relay.handle(event, self.now, &self.nodes[n].store);
        let mut actions = Vec::new();
        while let Some(a) = relay.poll_action() {
            actions.push(a);
        }
        let deadline = relay.next_deadline();
        self.nodes[n].relay = Some(relay);
        for action in actions {
            self.act(n, action);
        }
        if let Some(at) = deadline {
            let at = at.max(self.now);
            if self.nodes[n]
                .next_tick
                .is_none_or(|t| at < t || t < self.now)
            {
                self.nodes[n].next_tick = Some(at);
                let epoch = self.nodes[n].epoch;
                self.schedule(at, SimEvent::Tick { node: n, epoch });
            }
        }
    }

    fn act(&mut self, n: usize, action: Action) {
        match action {
            Action::Persist(batch) => {
                self.nodes[n].store.pending.push_back(batch);
                let at = self.now + 1 + self.rand(3);
                let epoch = self.nodes[n].epoch;
                self.schedule(at, SimEvent::Commit { node: n, epoch });
            }
            Action::Send { peer, wire } => {
                let Some(to) = self.node_of_peer(&peer) else {
                    return;
                };
                let from = self.nodes[n].peer.clone();
                if to == n {
                    self.schedule(self.now, SimEvent::Message { to, from, wire });
                    return;
                }
                if !self.linked(n, to) || (self.faulty() && self.chance(self.scenario.loss)) {
                    return;
                }
                let copies = if self.faulty() && self.chance(self.scenario.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let at = self.now + 1 + self.rand(30);
                    self.schedule(
                        at,
                        SimEvent::Message {
                            to,
                            from: from.clone(),
                            wire: wire.clone(),
                        },
                    );
                }
            }
            Action::Publish { topic, envelope } => {
                let from = self.nodes[n].peer.clone();
                for to in 0..self.nodes.len() {
                    let subscribed = self.nodes[to]
                        .tenants
                        .iter()
                        .any(|t| unit_topic(t) == topic);
                    if to == n
                        || !subscribed
                        || !self.linked(n, to)
                        || (self.faulty() && self.chance(self.scenario.loss))
                    {
                        continue;
                    }
                    let at = self.now + 1 + self.rand(30);
                    self.schedule(
                        at,
                        SimEvent::Gossip {
                            to,
                            from: from.clone(),
                            envelope: envelope.clone(),
                        },
                    );
                }
            }
            Action::Completed { request, result } => {
                let sender = self.requests.remove(&request);
                if let (Ok(id), Some(_)) = (&result, sender) {
                    let env = self
                        .envelope_at(n, id)
                        .expect("acknowledged envelope is stored");
                    if env.body().kind.is_document() {
                        self.acknowledged
                            .insert(*id, (env.body().from.clone(), env.body().to.clone()));
                    }
                }
            }
            Action::Delivered { tenant, id, .. } => self.on_delivered(n, tenant, id),
            Action::FetchPayload { peer, manifest } => {
                let Some(source) = self.node_of_peer(&peer) else {
                    return;
                };
                if !self.linked(n, source) || self.nodes[source].relay.is_none() {
                    return;
                }
                let Some(bytes) = self.nodes[source].store.get(Column::Payloads, &manifest) else {
                    return;
                };
                // The net layer writes the fetched payload durably, then reports it.
                self.nodes[n]
                    .store
                    .committed
                    .insert((Column::Payloads, manifest.to_vec()), bytes);
                let at = self.now + 5 + self.rand(50);
                let epoch = self.nodes[n].epoch;
                self.schedule(
                    at,
                    SimEvent::PayloadStored {
                        node: n,
                        epoch,
                        manifest,
                    },
                );
            }
            Action::GossipVerdict { .. } => {}
            Action::Penalize { peer, reason } => {
                self.penalties
                    .push(format!("{} penalised {peer}: {reason}", self.nodes[n].peer));
            }
            Action::DeliveryEnded {
                id,
                recipient,
                role,
                outcome,
            } => {
                if outcome == Outcome::Confirmed {
                    // Custody (and the sender's outbox) may end only once the recipient has it.
                    let env = self.envelope_at(n, &id);
                    let held = self.nodes[self.host[&recipient]]
                        .store
                        .get(Column::Seen, id.as_bytes())
                        .is_some();
                    if !held && env.is_some_and(|e| e.body().kind.is_document()) {
                        self.violations.push(format!(
                            "{:?} delivery of {id} to {recipient} released before the recipient stored it",
                            role
                        ));
                    }
                } else {
                    self.violations.push(format!(
                        "delivery of {id} to {recipient} ended: {outcome:?}"
                    ));
                }
            }
            Action::Equivocation(_) => self.equivocations += 1,
        }
    }

    fn envelope_at(&self, n: usize, id: &ContentId) -> Option<SignedEnvelope> {
        let bytes = self.nodes[n].store.get(Column::Envelopes, id.as_bytes())?;
        SignedEnvelope::decode(&bytes).ok()
    }

    /// The recipient's DMS reacts to what arrived: it accepts and completes documents, and
    /// answers recall requests; senders sometimes recall.
    fn on_delivered(&mut self, n: usize, tenant: AgencyId, id: ContentId) {
        let Some(env) = self.envelope_at(n, &id) else {
            return;
        };
        let body = env.body().clone();
        if self.now >= self.faults_until + 10 * MINUTE {
            return; // quiet period: no new work
        }
        if body.kind.is_document() {
            let at = self.now + self.rand(20 * SECOND);
            self.schedule(
                at,
                SimEvent::Status {
                    tenant: tenant.clone(),
                    document: id,
                    code: StatusCode::Accepted,
                },
            );
            if self.chance(0.5) {
                let at = at + SECOND + self.rand(20 * SECOND);
                self.schedule(
                    at,
                    SimEvent::Status {
                        tenant,
                        document: id,
                        code: StatusCode::Completed,
                    },
                );
            } else if self.chance(0.3) {
                let at = self.now + self.rand(5 * SECOND);
                self.schedule(
                    at,
                    SimEvent::Recall {
                        tenant: body.from.clone(),
                        document: id,
                        recipient: tenant,
                    },
                );
            }
        } else if body.routing.status == Some(StatusCode::RecallRequested) {
            let code = if self.chance(0.5) {
                StatusCode::RecallAgreed
            } else {
                StatusCode::RecallRefused
            };
            let document = body.routing.refers_to.unwrap();
            let at = self.now + self.rand(10 * SECOND);
            self.schedule(
                at,
                SimEvent::Status {
                    tenant,
                    document,
                    code,
                },
            );
        }
    }

    fn submit(&mut self, sender: AgencyId, to: Vec<AgencyId>, external: bool) {
        let n = self.host[&sender];
        if self.nodes[n].relay.is_none() {
            return; // the DMS finds its node down and tries nothing
        }
        let mut plaintext = vec![0u8; 200 + self.rand(800) as usize];
        self.rng.fill_bytes(&mut plaintext);
        let recipients: Vec<_> = to
            .iter()
            .map(|r| (r.clone(), self.encryption[r].public_key()))
            .collect();
        let sealed = seal::seal(
            &plaintext,
            &sender,
            &recipients,
            &mut self.sender_epochs,
            self.now,
            &mut self.rng,
        )
        .unwrap();
        let payload = if external {
            // The node's send path stores external payloads before submitting.
            let id = sealed.manifest.id();
            self.nodes[n].store.committed.insert(
                (Column::Payloads, id.0.to_vec()),
                sealed.manifest.as_bytes().to_vec(),
            );
            Content::External {
                manifest: id.0,
                size: 1_000,
            }
        } else {
            Content::Inline(InlinePayload {
                manifest: sealed.manifest.as_bytes().to_vec(),
                chunk: sealed.chunks[0].clone(),
            })
        };
        let request = self.next_request;
        self.next_request += 1;
        self.requests.insert(request, sender.clone());
        let routing = Routing {
            doc_type: Some("CV".into()),
            ..Routing::default()
        };
        let submission = Submission {
            request,
            from: sender,
            kind: Kind::Document,
            to,
            routing,
            content: payload,
            records: Vec::new(),
        };
        self.feed(n, Event::Submit(submission));
    }

    fn post(&mut self, tenant: AgencyId, document: ContentId, code: StatusCode, to: Vec<AgencyId>) {
        let n = self.host[&tenant];
        let request = self.next_request;
        self.next_request += 1;
        let post = StatusPost {
            request,
            tenant,
            document,
            code,
            to,
            content: Content::None,
        };
        self.feed(n, Event::PostStatus(post));
    }

    fn plan(&mut self) {
        let s = self.scenario.clone();
        let all: Vec<AgencyId> = self.host.keys().cloned().collect();
        for _ in 0..s.documents {
            let at = START + self.rand(s.load_ms);
            let sender = all[self.rand(all.len() as u64) as usize].clone();
            let mut to = BTreeSet::new();
            for _ in 0..1 + self.rand(3) {
                let r = all[self.rand(all.len() as u64) as usize].clone();
                if r != sender {
                    to.insert(r);
                }
            }
            if to.is_empty() {
                continue;
            }
            let external = self.chance(0.3);
            self.schedule(
                at,
                SimEvent::Send {
                    sender,
                    to: to.into_iter().collect(),
                    external,
                },
            );
        }
        let agency_nodes = s.nodes;
        for _ in 0..s.crashes {
            let at = START + self.rand(s.load_ms);
            let node = self.rand(self.nodes.len() as u64) as usize;
            let down_ms = 1 + self.rand(2 * MINUTE);
            self.schedule(at, SimEvent::Crash { node, down_ms });
        }
        let mut faults_until = START + s.load_ms;
        if s.long_offline {
            // A commune-like node goes away for days while documents are sent to it.
            let node = self.rand(agency_nodes as u64) as usize;
            let down_ms = DAY + self.rand(2 * DAY);
            let at = START + self.rand(s.load_ms / 2);
            self.schedule(at, SimEvent::Crash { node, down_ms });
            faults_until = faults_until.max(START + s.load_ms + down_ms);
        }
        for _ in 0..s.partitions {
            let at = START + self.rand(s.load_ms);
            let cut: BTreeSet<usize> = (0..self.nodes.len()).filter(|_| self.chance(0.3)).collect();
            let heal_at = at + 5 * SECOND + self.rand(2 * MINUTE);
            self.schedule(at, SimEvent::Partition { cut, heal_at });
        }
        self.faults_until = faults_until;
    }

    fn run(&mut self) {
        self.plan();
        let limit = self.faults_until + 3 * DAY;
        while let Some(Reverse((at, _, id))) = self.queue.pop() {
            if at > limit {
                break;
            }
            self.now = self.now.max(at);
            let event = self.events.remove(&id).unwrap();
            self.step(event);
            if self.now > self.faults_until + HOUR && self.quiescent() {
                break;
            }
        }
    }

    fn quiescent(&self) -> bool {
        self.nodes.iter().all(|n| {
            n.relay
                .as_ref()
                .is_some_and(|r| r.pending_deliveries() == 0)
                && n.store.pending.is_empty()
        })
    }

    fn step(&mut self, event: SimEvent) {
        match event {
            SimEvent::Message { to, from, wire } => {
                self.feed(to, Event::Message { peer: from, wire })
            }
            SimEvent::Gossip { to, from, envelope } => {
                self.feed(
                    to,
                    Event::Gossip {
                        peer: from,
                        message: 0,
                        envelope,
                    },
                );
            }
            SimEvent::Commit { node, epoch } => {
                if self.nodes[node].epoch != epoch {
                    return;
                }
                let Some(batch) = self.nodes[node].store.pending.pop_front() else {
                    return;
                };
                let id = batch.id;
                self.nodes[node].store.apply(batch);
                self.feed(node, Event::Committed { batch: id });
            }
            SimEvent::PayloadStored {
                node,
                epoch,
                manifest,
            } => {
                if self.nodes[node].epoch == epoch {
                    self.feed(node, Event::PayloadStored { manifest });
                }
            }
            SimEvent::Tick { node, epoch } => {
                if self.nodes[node].epoch == epoch {
                    if self.nodes[node].next_tick.is_some_and(|t| t <= self.now) {
                        self.nodes[node].next_tick = None;
                    }
                    self.feed(node, Event::Tick);
                }
            }
            SimEvent::Crash { node, down_ms } => {
                if self.nodes[node].relay.is_none() {
                    return;
                }
                // A crash loses every write not yet synced.
                let n = &mut self.nodes[node];
                n.relay = None;
                n.store.pending.clear();
                n.epoch += 1;
                n.next_tick = None;
                self.schedule(self.now + down_ms, SimEvent::Restart { node });
            }
            SimEvent::Restart { node } => {
                if self.nodes[node].relay.is_none() {
                    self.start(node);
                    // Peers notice the node is back.
                    let peer = self.nodes[node].peer.clone();
                    for other in 0..self.nodes.len() {
                        if other != node {
                            self.feed(other, Event::PeerConnected { peer: peer.clone() });
                        }
                    }
                }
            }
            SimEvent::Send {
                sender,
                to,
                external,
            } => self.submit(sender, to, external),
            SimEvent::Status {
                tenant,
                document,
                code,
            } => self.post(tenant, document, code, vec![]),
            SimEvent::Recall {
                tenant,
                document,
                recipient,
            } => {
                self.post(
                    tenant,
                    document,
                    StatusCode::RecallRequested,
                    vec![recipient],
                );
            }
            SimEvent::Partition { cut, heal_at } => {
                self.partition = Some((cut, heal_at));
                self.schedule(heal_at, SimEvent::Heal);
            }
            SimEvent::Heal => {
                // Healing is noticed as reconnections.
                let peers: Vec<String> = self.nodes.iter().map(|n| n.peer.clone()).collect();
                for node in 0..self.nodes.len() {
                    for peer in &peers {
                        if *peer != self.nodes[node].peer {
                            self.feed(node, Event::PeerConnected { peer: peer.clone() });
                        }
                    }
                }
            }
        }
    }

    /// Checks every promise; returns the violations.
    fn check(&mut self) -> Vec<String> {
        let mut v = std::mem::take(&mut self.violations);
        if !self.quiescent() {
            let pending: Vec<_> = self
                .nodes
                .iter()
                .map(|n| {
                    (
                        n.peer.clone(),
                        n.relay.as_ref().map(|r| r.pending_deliveries()),
                    )
                })
                .filter(|(_, p)| *p != Some(0))
                .collect();
            v.push(format!("not quiescent at the end: {pending:?}"));
        }
        for p in &self.penalties {
            v.push(format!("honest peer penalised: {p}"));
        }
        if self.equivocations > 0 {
            v.push(format!(
                "{} equivocations reported among honest senders",
                self.equivocations
            ));
        }
        // Inboxes: unique, addressed, signed, openable by the recipient only.
        let mut delivered: BTreeMap<(ContentId, AgencyId), usize> = BTreeMap::new();
        let mut recipient_epochs = RecipientEpochs::default();
        for n in 0..self.nodes.len() {
            for (_, key, value) in self.nodes[n].store.rows(Column::Inbox) {
                let (tenant, _) = records::split_agency_seq_key(&key).unwrap();
                let id = ContentId(value.as_slice().try_into().unwrap());
                let Some(env) = self.envelope_at(n, &id) else {
                    v.push(format!(
                        "inbox of {tenant} lists {id} but the envelope is missing"
                    ));
                    continue;
                };
                let body = env.body();
                if !body.to.contains(&tenant) {
                    v.push(format!(
                        "{tenant} received {id}, which is not addressed to it"
                    ));
                }
                let signer = self.roster.agency(&body.from).unwrap();
                if env.verify(&signer.signing_key).is_err() {
                    v.push(format!(
                        "{tenant} received {id}, not validly signed by {}",
                        body.from
                    ));
                }
                if !body.kind.is_document() {
                    continue;
                }
                *delivered.entry((id, tenant.clone())).or_default() += 1;
                let manifest = match &body.payload {
                    Payload::Inline { .. } => {
                        env.inline()
                            .expect("inline payload travels with it")
                            .manifest
                    }
                    Payload::External { manifest, .. } => self.nodes[n]
                        .store
                        .get(Column::Payloads, manifest)
                        .expect("payload stored before delivery"),
                    _ => continue,
                };
                let manifest = Manifest::decode(&manifest).unwrap();
                let key = seal::unwrap_content_key(
                    &manifest,
                    &body.from,
                    &tenant,
                    &self.encryption[&tenant],
                    &mut recipient_epochs,
                );
                if key.is_err() {
                    v.push(format!("{tenant} cannot open {id} addressed to it"));
                }
                let outsider = self
                    .host
                    .keys()
                    .find(|a| !body.to.contains(a) && **a != body.from)
                    .cloned();
                if let Some(outsider) = outsider {
                    let opened = seal::unwrap_content_key(
                        &manifest,
                        &body.from,
                        &outsider,
                        &self.encryption[&outsider],
                        &mut recipient_epochs,
                    );
                    if opened.is_ok() {
                        v.push(format!("non-recipient {outsider} opened {id}"));
                    }
                }
            }
        }
        for ((id, tenant), count) in &delivered {
            if *count != 1 {
                v.push(format!("{id} delivered {count} times to {tenant}"));
            }
        }
        // Every acknowledged document reached every recipient, and the 01 came back.
        for (id, (sender, to)) in &self.acknowledged {
            for r in to {
                if !delivered.contains_key(&(*id, r.clone())) {
                    v.push(format!("acknowledged {id} from {sender} never reached {r}"));
                    continue;
                }
                let origin = &self.nodes[self.host[sender]].store;
                let record: Option<StatusRecord> = origin
                    .get(Column::Statuses, &id_agency_key(id, r))
                    .map(|b| records::decode(Column::Statuses, &b).unwrap());
                let arrived = record.as_ref().is_some_and(|rec| {
                    rec.history.iter().any(|e| e.code == StatusCode::Arrived)
                        || rec.chain.stage == Stage::Recalled
                });
                if !arrived {
                    v.push(format!(
                        "sender {sender} never got the 01 for {id} from {r}: {record:?}"
                    ));
                }
                // Both sides agree on where the document stands.
                let recipient_side: Option<StatusRecord> = self.nodes[self.host[r]]
                    .store
                    .get(Column::Statuses, &id_agency_key(id, r))
                    .map(|b| records::decode(Column::Statuses, &b).unwrap());
                if let (Some(a), Some(b)) = (&record, &recipient_side)
                    && a.chain != b.chain
                {
                    v.push(format!(
                        "{id} to {r}: sender sees {:?}, recipient {:?}",
                        a.chain, b.chain
                    ));
                }
            }
        }
        // Storage is bounded once everything is delivered.
        for n in &self.nodes {
            let left = n.store.rows(Column::Deliveries).len();
            if left > 0 {
                v.push(format!("{} still holds {left} deliveries", n.peer));
            }
        }
        v
    }
}

fn run_seed(seed: u64) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    sim.run();
    let violations = sim.check();
    if violations.is_empty() {
        return Ok(());
    }
    Err(format!(
        "seed {seed} failed ({:?}):\n  {}\nreplay: LIENTHONG_SIM_SEED={seed} cargo test -p lienthong-protocol --test relay_sim",
        sim.scenario,
        violations.join("\n  ")
    ))
}

#[test]
fn simulated_federation_keeps_its_promises() {
    let seeds: Vec<u64> = match std::env::var("LIENTHONG_SIM_SEED") {
        Ok(one) => vec![one.parse().expect("LIENTHONG_SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("LIENTHONG_SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1_000u64);
            (0..count).collect()
        }
    };
    // Seeds are independent: run them on every core.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = &seeds;
                scope.spawn(move || {
                    seeds
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .filter_map(|&s| run_seed(s).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("simulation thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
}
