//! [`Relay`]: the sans-I/O state machine that holds lienthong's delivery promise for the
//! agencies (tenants) hosted on one node.
//!
//! The driver calls [`Relay::handle`] with an [`Event`], the current time and a read view
//! of the committed store, then drains [`Relay::poll_action`]. Effects that promise
//! something to someone else (the DMS's acknowledgement, a receipt, a 01 status, an inbox
//! notification, a custody acknowledgement) are held back until the batch they depend on
//! is reported durable with [`Event::Committed`]. Reads go through an overlay of batches
//! issued but not yet committed, so the core always sees its own writes.
//!
//! Delivery, in short (DESIGN §5): a submitted envelope is stored with one `Deliveries`
//! record per recipient, pushed to each recipient's node and retried with backoff until
//! the recipient's node answers with its signed 01 (documents) or a stored receipt
//! (statuses). An envelope whose recipient's node leaves pushes unanswered is also
//! published on the recipient's gossip topic, once, the way round an unreachable node.
//! Recipients that have not confirmed after `custody_after_ms` get custodians (central
//! nodes and the recipient's parent node), which hold the envelope and retry on their own
//! until the recipient confirms, so the sender may go offline. A receiving node
//! verifies everything, deduplicates by content id, stores, surfaces to the inbox once and
//! answers with a signed 01.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::agency::AgencyId;
use crate::content_id::ContentId;
use crate::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, InlinePayload, Kind, Payload, Routing, SignedEnvelope,
};
use crate::keys::{SigningKey, VerifyingKey};
use crate::roster::Roster;
use crate::status::{Party, Stage, StatusChain, StatusCode, StatusError};

use super::records::{
    self, ChainHead, DeliveryRecord, Equivocation, MAX_STATUS_HISTORY, Role, SeenRecord,
    StatusEntry, StatusRecord, agency_seq_key, id_agency_key,
};
use super::store::{Batch, Column, StoreOp, StoreView};
use super::wire::{Receipt, Wire};

/// Tunables; every bound the core enforces is here.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// This node's peer id (as listed in the roster).
    pub node: String,
    /// Ask custodians when a recipient has not confirmed after this long.
    pub custody_after_ms: u64,
    /// Custodians to hand an unconfirmed envelope to.
    pub custodians: usize,
    /// First retry delay.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Envelopes older than this are refused and pending deliveries expire.
    pub max_age_ms: u64,
    /// Tolerated clock skew for envelopes from the future.
    pub max_skew_ms: u64,
    /// Delay before a node pushes its 01 itself (the receipt usually carries it first).
    pub status_push_delay_ms: u64,
    /// Most pending deliveries (own outbox and custody) held at once.
    pub max_deliveries: usize,
    /// Most custody deliveries held for one sender.
    pub max_custody_per_sender: usize,
    /// Most envelopes waiting for their payload.
    pub max_waiting_payloads: usize,
    /// Most due deliveries handled per call of the delivery loop (the rest wait for the
    /// next event or tick). Each call runs on the relay thread between two events, so this
    /// bounds how long a wave of retries can hold up a DMS's send.
    pub max_sends_per_tick: usize,
    /// Most deliveries pushed to one node and not yet answered. The rest wait for an answer
    /// to free a slot (or for their next retry), so a backlog drains at the pace the node
    /// answers instead of flooding it and the network queues.
    pub push_window: usize,
    /// The window toward a node that left a push unanswered until its retry (it is
    /// probably unreachable): a few probes instead of every pending delivery, until the node
    /// answers or reconnects.
    pub probe_window: usize,
    /// Inbound push budget per peer: burst size and refill per second.
    pub peer_burst: u32,
    pub peer_rate_per_s: u32,
}

impl RelayConfig {
    /// Production defaults for node `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            custody_after_ms: 5_000,
            custodians: 2,
            retry_base_ms: 1_000,
            retry_max_ms: 10 * 60_000,
            max_age_ms: 90 * 24 * 3_600_000,
            max_skew_ms: 10 * 60_000,
            status_push_delay_ms: 2_000,
            max_deliveries: 200_000,
            max_custody_per_sender: 50_000,
            max_waiting_payloads: 10_000,
            // ≈ 0.5 ms of the relay thread; above the push window, so a window still fills
            // in one call.
            max_sends_per_tick: 128,
            // Below a node's inbound requests per peer (the network's 256), so a full window
            // is never refused by the receiving transport; wide enough that both ends work
            // at once during a catch-up instead of taking turns.
            push_window: 96,
            probe_window: 2,
            peer_burst: 4_096,
            peer_rate_per_s: 16_384,
        }
    }
}

/// A hosted agency and its signing key.
#[derive(Debug)]
pub struct Tenant {
    pub id: AgencyId,
    pub key: SigningKey,
}

/// What an envelope carries, already sealed by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Nothing (statuses without a reason).
    None,
    /// A one-chunk sealed payload travelling with the envelope.
    Inline(InlinePayload),
    /// A sealed payload stored in `Payloads`/`Chunks` and fetched by hash.
    External { manifest: [u8; 32], size: u64 },
    /// A signed roster epoch.
    Roster(Vec<u8>),
}

/// A DMS's request to send.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Chosen by the driver; echoed in [`Action::Completed`].
    pub request: u64,
    pub from: AgencyId,
    /// Any kind but `Status` (see [`Event::PostStatus`]).
    pub kind: Kind,
    pub to: Vec<AgencyId>,
    pub routing: Routing,
    /// Already sealed by the driver (external payloads already stored in `Payloads`).
    pub content: Content,
    /// Rows to put in [`Column::Meta`] in the envelope's own batch, durable exactly when
    /// the envelope is (the node's idempotency record of a DMS send, its index of what a
    /// tenant sent). Keys must lie in a namespace the caller owns.
    pub records: Vec<MetaRecord>,
}

/// A [`Column::Meta`] row written with a submitted envelope, naming it by content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaRecord {
    /// `key → content id ‖ suffix` (e.g. idempotency key → the envelope it sent).
    IdUnder { key: Vec<u8>, suffix: Vec<u8> },
    /// `prefix ‖ content id → value` (e.g. facts about the envelope kept beside it).
    ValueFor { prefix: Vec<u8>, value: Vec<u8> },
}

impl MetaRecord {
    /// The row for the envelope `id`.
    fn row(self, id: &ContentId) -> (Vec<u8>, Vec<u8>) {
        match self {
            Self::IdUnder { key, suffix } => (key, [id.as_bytes().as_slice(), &suffix].concat()),
            Self::ValueFor { prefix, value } => {
                ([prefix.as_slice(), id.as_bytes()].concat(), value)
            }
        }
    }
}

/// A tenant's status about a document.
#[derive(Debug, Clone)]
pub struct StatusPost {
    pub request: u64,
    pub tenant: AgencyId,
    pub document: ContentId,
    pub code: StatusCode,
    /// For 13: the recipients asked (empty: all). Ignored otherwise (the sender is told).
    pub to: Vec<AgencyId>,
    /// Sealed detail (reason, assignee), or `Content::None`.
    pub content: Content,
}

/// What happens to the relay.
#[derive(Debug, Clone)]
pub enum Event {
    /// A DMS asks to send.
    Submit(Submission),
    /// A tenant posts a status (02–06, 15, 16 as recipient; 13 as sender).
    PostStatus(StatusPost),
    /// A relay message from an authenticated, allow-listed peer.
    Message { peer: String, wire: Wire },
    /// An envelope from gossip; answered with [`Action::GossipVerdict`].
    Gossip {
        peer: String,
        message: u64,
        envelope: Vec<u8>,
    },
    /// A peer connected: retry what is pending for it now.
    PeerConnected { peer: String },
    /// Batches up to and including this id are durable.
    Committed { batch: u64 },
    /// An external payload (manifest and every chunk) is now durable here.
    PayloadStored { manifest: [u8; 32] },
    /// A newer roster is in force.
    RosterUpdated(Arc<Roster>),
    /// Time passed (call at [`Relay::next_deadline`]).
    Tick,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The recipient confirmed (signed 01 or stored receipt).
    Confirmed,
    /// The recipient's node refused it for good.
    Refused(String),
    /// It was not confirmed within the maximum age.
    Expired,
    /// The recipient is no longer active in the roster.
    RecipientGone(String),
}

/// Why a submission or status was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("agency {0} is not hosted on this node")]
    NotHosted(AgencyId),
    #[error("{0}")]
    Roster(String),
    #[error("invalid envelope: {0}")]
    Invalid(String),
    #[error("too many pending deliveries ({0}); try again later")]
    Busy(usize),
    #[error("unknown document {0}")]
    UnknownDocument(ContentId),
    #[error(transparent)]
    Transition(#[from] StatusError),
    #[error("store: {0}")]
    Store(String),
}

/// Verdict on a gossiped envelope (for gossipsub's validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Invalid: drop it and penalise the peer.
    Reject,
    /// Valid but not worth forwarding (duplicate, expired).
    Ignore,
}

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Write this batch atomically with sync, then report [`Event::Committed`].
    Persist(Batch),
    /// Send a relay message.
    Send { peer: String, wire: Wire },
    /// Publish an envelope on a gossip topic.
    Publish { topic: String, envelope: Vec<u8> },
    /// Answer a submission or status post (only after it is durable).
    Completed {
        request: u64,
        result: Result<ContentId, RelayError>,
    },
    /// A tenant's inbox gained an entry (durable).
    Delivered {
        tenant: AgencyId,
        id: ContentId,
        position: u64,
    },
    /// Fetch an external payload (manifest and chunks) from a peer, then report
    /// [`Event::PayloadStored`].
    FetchPayload { peer: String, manifest: [u8; 32] },
    /// Report a gossip validation result.
    GossipVerdict { message: u64, verdict: Verdict },
    /// Lower a peer's score: it sent something invalid.
    Penalize { peer: String, reason: String },
    /// A delivery this node was responsible for ended.
    DeliveryEnded {
        id: ContentId,
        recipient: AgencyId,
        role: Role,
        outcome: Outcome,
    },
    /// A sender signed two envelopes for one place in its chain (evidence persisted).
    Equivocation(Equivocation),
}

/// In-memory state of one pending delivery (the durable part is a [`DeliveryRecord`]).
#[derive(Debug, Clone)]
struct Pending {
    role: Role,
    created_ms: u64,
    sender: AgencyId,
    kind: Kind,
    /// Batch that created it: nothing is sent before it is durable.
    batch: u64,
    /// Pushes so far (the backoff of the next retry after a push).
    attempts: u32,
    /// Times it came due and waited in line without being pushed (the backoff of its next
    /// wake-up while it waits): kept apart from `attempts`, so a push that follows a long
    /// wait is retried soon if it is lost, not after the delay the wait reached.
    waits: u32,
    next_ms: u64,
    /// When this node first tried (custody counts from here).
    first_ms: u64,
    /// Custodians that accepted (origin only).
    custodians: BTreeSet<String>,
    /// Published on its recipient's unit topic (once; see `run_due`).
    gossiped: bool,
}

/// An envelope waiting for its external payload.
#[derive(Debug, Clone)]
struct Waiting {
    peer: String,
    envelope: Vec<u8>,
    /// Custody requested for these recipients (empty: a push for local tenants).
    custody_for: Vec<AgencyId>,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// Pushes toward one node (see [`RelayConfig::push_window`]).
#[derive(Debug, Default)]
struct PeerFlight {
    /// Deliveries pushed to the node and not answered yet (at most the window); which ones
    /// is in [`Relay::slots`].
    unanswered: usize,
    /// A push went unanswered until its retry: the window is `probe_window` until the node
    /// answers or reconnects.
    silent: bool,
    /// Deliveries that found the window full, oldest first; made due as answers free slots.
    /// At most one entry per pending delivery (`queued`).
    waiting: VecDeque<(ContentId, AgencyId)>,
    queued: HashSet<(ContentId, AgencyId)>,
}

impl PeerFlight {
    fn window(&self, config: &RelayConfig) -> usize {
        if self.silent {
            config.probe_window.min(config.push_window).max(1)
        } else {
            config.push_window.max(1)
        }
    }

    fn is_idle(&self) -> bool {
        !self.silent && self.unanswered == 0 && self.waiting.is_empty()
    }
}

/// Writes issued but not yet durable: (column, key) → (batch, value or deletion).
type Overlay = HashMap<(Column, Vec<u8>), (u64, Option<Vec<u8>>)>;

/// The relay state machine. See the module documentation.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    roster: Arc<Roster>,
    tenants: BTreeMap<AgencyId, SigningKey>,
    heads: BTreeMap<AgencyId, ChainHead>,
    pending: HashMap<(ContentId, AgencyId), Pending>,
    due: BTreeSet<(u64, ContentId, AgencyId)>,
    custody_per_sender: HashMap<AgencyId, usize>,
    waiting: HashMap<[u8; 32], Vec<Waiting>>,
    waiting_count: usize,
    overlay: Overlay,
    next_batch: u64,
    committed: u64,
    /// Deliveries whose batch is not yet durable, by batch: they are not in `due` (nothing
    /// leaves before it is durable) and enter it when their batch commits.
    committing: BTreeMap<u64, Vec<(ContentId, AgencyId)>>,
    deferred: BTreeMap<u64, Vec<Action>>,
    actions: VecDeque<Action>,
    buckets: HashMap<String, Bucket>,
    /// Push windows by node (only nodes with pushes unanswered or waiting).
    flights: HashMap<String, PeerFlight>,
    /// The node each delivery pushed and not yet answered holds a slot at (so the slot is
    /// freed where it was taken, whatever the roster says by then).
    slots: HashMap<(ContentId, AgencyId), String>,
    now: u64,
}

/// A batch being built together with the effects released when it is durable.
struct Work {
    batch: Batch,
    after: Vec<Action>,
    /// Deliveries to start tracking once the batch has its id.
    tracks: Vec<(SignedEnvelope, AgencyId, DeliveryRecord)>,
}

impl Work {
    fn new() -> Self {
        Self {
            batch: Batch::default(),
            after: Vec::new(),
            tracks: Vec::new(),
        }
    }
}

impl Relay {
    /// A relay with no state (first start). Use [`Relay::recover`] after a restart.
    pub fn new(config: RelayConfig, roster: Arc<Roster>, tenants: Vec<Tenant>) -> Self {
        let heads = tenants
            .iter()
            .map(|t| (t.id.clone(), ChainHead::default()))
            .collect();
        Self {
            config,
            roster,
            tenants: tenants.into_iter().map(|t| (t.id, t.key)).collect(),
            heads,
            pending: HashMap::new(),
            due: BTreeSet::new(),
            custody_per_sender: HashMap::new(),
            waiting: HashMap::new(),
            waiting_count: 0,
            overlay: HashMap::new(),
            next_batch: 1,
            committed: 0,
            committing: BTreeMap::new(),
            deferred: BTreeMap::new(),
            actions: VecDeque::new(),
            buckets: HashMap::new(),
            flights: HashMap::new(),
            slots: HashMap::new(),
            now: 0,
        }
    }

    /// The columns whose rows [`Relay::recover`] needs; it reads the others on demand.
    pub const RECOVERY_COLUMNS: [Column; 2] = [Column::Chains, Column::Deliveries];

    /// Rebuilds the relay after a restart from the durable `Chains` and `Deliveries` rows
    /// (other columns are read on demand through the store view). Every unfinished
    /// delivery is due at once.
    pub fn recover(
        config: RelayConfig,
        roster: Arc<Roster>,
        tenants: Vec<Tenant>,
        now: u64,
        rows: impl IntoIterator<Item = (Column, Vec<u8>, Vec<u8>)>,
        store: &impl StoreView,
    ) -> Result<Self, RelayError> {
        let mut relay = Self::new(config, roster, tenants);
        relay.now = now;
        for (column, key, value) in rows {
            match column {
                Column::Chains => {
                    let head: ChainHead = records::decode(column, &value)
                        .map_err(|e| RelayError::Store(e.to_string()))?;
                    let tenant = std::str::from_utf8(&key)
                        .ok()
                        .and_then(|k| AgencyId::parse_any(k).ok());
                    if let Some(tenant) = tenant.filter(|t| relay.tenants.contains_key(t)) {
                        relay.heads.insert(tenant, head);
                    }
                }
                Column::Deliveries => {
                    let record: DeliveryRecord = records::decode(column, &value)
                        .map_err(|e| RelayError::Store(e.to_string()))?;
                    let Some((id, recipient)) = records::split_id_agency_key(&key) else {
                        return Err(RelayError::Store("malformed Deliveries key".into()));
                    };
                    let Some(env) = relay.read(store, Column::Envelopes, id.as_bytes()) else {
                        return Err(RelayError::Store(format!(
                            "delivery of {id} without its envelope"
                        )));
                    };
                    let env = SignedEnvelope::decode(&env)
                        .map_err(|e| RelayError::Store(e.to_string()))?;
                    relay.track(id, recipient, &env, record, 0, now);
                }
                _ => {}
            }
        }
        Ok(relay)
    }

    /// The roster in force.
    pub fn roster(&self) -> &Arc<Roster> {
        &self.roster
    }

    /// Pending deliveries (outbox and custody).
    pub fn pending_deliveries(&self) -> usize {
        self.pending.len()
    }

    /// When [`Event::Tick`] is next needed, if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        self.due.first().map(|(at, _, _)| *at)
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Feeds one event at time `now` (ms since the Unix epoch).
    pub fn handle(&mut self, event: Event, now: u64, store: &impl StoreView) {
        self.now = self.now.max(now);
        let committed_before = self.committed;
        match event {
            Event::Submit(s) => {
                let request = s.request;
                if let Err(e) = self.submit(s, store) {
                    self.actions.push_back(Action::Completed {
                        request,
                        result: Err(e),
                    });
                }
            }
            Event::PostStatus(p) => {
                let request = p.request;
                if let Err(e) = self.post_status(p, store) {
                    self.actions.push_back(Action::Completed {
                        request,
                        result: Err(e),
                    });
                }
            }
            Event::Message { peer, wire } => self.on_message(peer, wire, store),
            Event::Gossip {
                peer,
                message,
                envelope,
            } => {
                let verdict = self.receive(&peer, envelope, Mode::Gossip, store);
                self.actions
                    .push_back(Action::GossipVerdict { message, verdict });
            }
            Event::PeerConnected { peer } => self.on_connected(&peer),
            Event::Committed { batch } => self.on_committed(batch),
            Event::PayloadStored { manifest } => {
                let waiting = self.waiting.remove(&manifest).unwrap_or_default();
                self.waiting_count = self.waiting_count.saturating_sub(waiting.len());
                for w in waiting {
                    if w.custody_for.is_empty() {
                        self.receive(&w.peer, w.envelope, Mode::Fetched, store);
                    } else {
                        self.custody(&w.peer, w.envelope, w.custody_for, store);
                    }
                }
            }
            Event::RosterUpdated(roster) => {
                self.roster = roster;
                self.reset_windows();
            }
            Event::Tick => {}
        }
        self.run_due(store);
        // Rows of durable batches leave the overlay only now: the first pushes a commit just
        // made due read their envelopes from memory instead of reading back from the store
        // what was written a moment ago (the same bytes either way).
        if self.committed > committed_before {
            let committed = self.committed;
            self.overlay.retain(|_, (b, _)| *b > committed);
        }
    }

    // ----- reading and writing --------------------------------------------------------

    fn read(&self, store: &impl StoreView, column: Column, key: &[u8]) -> Option<Vec<u8>> {
        match self.overlay.get(&(column, key.to_vec())) {
            Some((_, value)) => value.clone(),
            None => store.get(column, key),
        }
    }

    fn read_record<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        store: &impl StoreView,
        column: Column,
        key: &[u8],
    ) -> Option<T> {
        self.read(store, column, key)
            .and_then(|bytes| records::decode(column, &bytes).ok())
    }

    /// Issues a batch: overlay it, ask the driver to persist it, hold its effects until it
    /// is durable. An empty batch releases its effects at once.
    fn issue(&mut self, work: Work) {
        let Work {
            mut batch,
            after,
            tracks,
        } = work;
        if batch.ops.is_empty() && tracks.is_empty() {
            self.actions.extend(after);
            return;
        }
        let id = self.next_batch;
        self.next_batch += 1;
        batch.id = id;
        for op in &batch.ops {
            match op {
                StoreOp::Put { column, key, value } => {
                    self.overlay
                        .insert((*column, key.clone()), (id, Some(value.clone())));
                }
                StoreOp::Delete { column, key } => {
                    self.overlay.insert((*column, key.clone()), (id, None));
                }
            }
        }
        self.actions.push_back(Action::Persist(batch));
        self.deferred.entry(id).or_default().extend(after);
        let now = self.now;
        for (env, recipient, record) in tracks {
            self.track(env.id(), recipient, &env, record, id, now);
        }
    }

    fn on_committed(&mut self, batch: u64) {
        self.committed = self.committed.max(batch);
        let committed = self.committed;
        // Deliveries parked until their batch was durable become due (at once, for a first
        // push: it leaves in this event's `run_due`).
        while let Some(entry) = self.committing.first_entry() {
            if *entry.key() > committed {
                break;
            }
            let batch = *entry.key();
            for key in entry.remove() {
                if let Some(p) = self.pending.get(&key).filter(|p| p.batch == batch) {
                    self.due.insert((p.next_ms, key.0, key.1));
                }
            }
        }
        while let Some(entry) = self.deferred.first_entry() {
            if *entry.key() > committed {
                break;
            }
            self.actions.extend(entry.remove());
        }
    }

    /// The batch that must be durable before `key` can be vouched for, if it is not yet.
    fn pending_batch(&self, column: Column, key: &[u8]) -> Option<u64> {
        self.overlay
            .get(&(column, key.to_vec()))
            .map(|(b, _)| *b)
            .filter(|b| *b > self.committed)
    }

    /// Releases `action` once batch `after` (if any) is durable.
    fn release_after(&mut self, after: Option<u64>, action: Action) {
        match after {
            Some(batch) if batch > self.committed => {
                self.deferred.entry(batch).or_default().push(action)
            }
            _ => self.actions.push_back(action),
        }
    }

    fn track(
        &mut self,
        id: ContentId,
        recipient: AgencyId,
        env: &SignedEnvelope,
        record: DeliveryRecord,
        batch: u64,
        first_ms: u64,
    ) {
        let body = env.body();
        let key = (id, recipient.clone());
        if self.pending.contains_key(&key) {
            return;
        }
        if record.role == Role::Custodian {
            *self
                .custody_per_sender
                .entry(body.from.clone())
                .or_default() += 1;
        }
        let remote = self
            .roster
            .agency(&recipient)
            .is_none_or(|a| a.node != self.config.node);
        let next_ms = if body.kind == Kind::Status && record.role == Role::Origin && remote {
            first_ms + self.config.status_push_delay_ms
        } else {
            first_ms
        };
        if batch > self.committed {
            // Nothing leaves before its batch is durable: parked until it commits.
            self.committing.entry(batch).or_default().push(key.clone());
        } else {
            self.due.insert((next_ms, id, recipient));
        }
        self.pending.insert(
            key,
            Pending {
                role: record.role,
                created_ms: record.created_ms,
                sender: body.from.clone(),
                kind: body.kind,
                batch,
                attempts: 0,
                waits: 0,
                next_ms,
                first_ms,
                custodians: BTreeSet::new(),
                gossiped: false,
            },
        );
    }

    /// Ends a pending delivery in `work`: deletes its record and reports the outcome; for a
    /// document this node sent that did not arrive, records why in its status record.
    fn untrack(
        &mut self,
        work: &mut Work,
        store: &impl StoreView,
        id: ContentId,
        recipient: &AgencyId,
        outcome: Outcome,
    ) {
        let key = (id, recipient.clone());
        let Some(p) = self.pending.remove(&key) else {
            return;
        };
        self.due.remove(&(p.next_ms, id, recipient.clone()));
        // A slot is always held at the recipient's node in the roster in force (a roster
        // change frees every slot), whose line is released below.
        self.free_slot(&key);
        if let Some(node) = self.roster.agency(recipient).map(|a| a.node.clone())
            && let Some(flight) = self.flights.get_mut(&node)
        {
            // Its place in `waiting`, if any, is skipped when reached. Its slot, or the free
            // one it was made due to take, goes to the next in line.
            flight.queued.remove(&key);
            self.release_waiting(&node);
        }
        if p.role == Role::Custodian
            && let Some(n) = self.custody_per_sender.get_mut(&p.sender)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.custody_per_sender.remove(&p.sender);
            }
        }
        work.batch
            .delete(Column::Deliveries, id_agency_key(&id, recipient));
        let reason = match &outcome {
            Outcome::Confirmed => None,
            Outcome::Refused(r) | Outcome::RecipientGone(r) => Some(r.clone()),
            Outcome::Expired => Some("expired before the recipient confirmed".to_owned()),
        };
        if p.role == Role::Origin && p.kind == Kind::Status && reason.is_some() {
            self.request_refused(work, store, id, recipient);
        }
        if let Some(reason) = reason.filter(|_| p.role == Role::Origin && p.kind.is_document()) {
            let status_key = id_agency_key(&id, recipient);
            if let Some(mut record) =
                self.read_record::<StatusRecord>(store, Column::Statuses, &status_key)
            {
                record.ended = Some(reason);
                work.batch
                    .put(Column::Statuses, status_key, records::encode(&record));
            }
        }
        work.after.push(Action::DeliveryEnded {
            id,
            recipient: recipient.clone(),
            role: p.role,
            outcome,
        });
    }
}

/// How an envelope reached [`Relay::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Push,
    Gossip,
    /// Re-processed after its payload arrived: no answer owed.
    Fetched,
}

/// An envelope decoded from bytes and verified with `key`: admitting it again skips both
/// while `key` is still its sender's.
struct Checked {
    envelope: SignedEnvelope,
    key: VerifyingKey,
}

/// Why an incoming envelope was not admitted.
struct Rejection {
    reason: String,
    /// The peer sent something no honest node sends.
    penalize: bool,
    /// Worth trying again later (busy, clock skew) rather than refused for good.
    retry: bool,
}

impl Rejection {
    fn invalid(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            penalize: true,
            retry: false,
        }
    }
    fn refused(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            penalize: false,
            retry: false,
        }
    }
    fn later(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            penalize: false,
            retry: true,
        }
    }
}

/// The gossip topic of an agency's top-level unit.
pub fn unit_topic(agency: &AgencyId) -> String {
    format!("lienthong/unit/{}", agency.top_level_unit())
}

impl Relay {
    fn check_active(&self, id: &AgencyId) -> Result<(), RelayError> {
        self.roster
            .active_agency(id)
            .map(|_| ())
            .map_err(|e| RelayError::Roster(e.to_string()))
    }

    fn room_for(&self, n: usize) -> Result<(), RelayError> {
        if self.pending.len() + n > self.config.max_deliveries {
            return Err(RelayError::Busy(self.pending.len()));
        }
        Ok(())
    }

    /// Signs `tenant`'s next envelope into `work` (envelope, chain head, sequence index).
    fn sign_next(
        &mut self,
        work: &mut Work,
        tenant: &AgencyId,
        kind: Kind,
        to: Vec<AgencyId>,
        routing: Routing,
        content: Content,
    ) -> Result<SignedEnvelope, RelayError> {
        let key = self
            .tenants
            .get(tenant)
            .ok_or_else(|| RelayError::NotHosted(tenant.clone()))?;
        let head = self.heads.get(tenant).cloned().unwrap_or_default();
        let body = EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind,
            from: tenant.clone(),
            to,
            seq: head.seq + 1,
            prev: head.last,
            created_ms: self.now,
            routing,
            payload: Payload::None,
        };
        let signed = match content {
            Content::None => SignedEnvelope::sign(body, key),
            Content::Inline(inline) => SignedEnvelope::sign_inline(body, &inline, key),
            Content::External { manifest, size } => SignedEnvelope::sign(
                EnvelopeBody {
                    payload: Payload::External { manifest, size },
                    ..body
                },
                key,
            ),
            Content::Roster(bytes) => SignedEnvelope::sign(
                EnvelopeBody {
                    payload: Payload::Roster(bytes),
                    ..body
                },
                key,
            ),
        };
        let env = signed.map_err(|e| RelayError::Invalid(e.to_string()))?;
        let head = ChainHead {
            seq: head.seq + 1,
            last: Some(env.id()),
            inbox_next: head.inbox_next,
        };
        work.batch.put(
            Column::Envelopes,
            env.id().as_bytes().to_vec(),
            env.bytes().to_vec(),
        );
        work.batch.put(
            Column::Chains,
            tenant.as_str().as_bytes().to_vec(),
            records::encode(&head),
        );
        work.batch.put(
            Column::SenderSeq,
            agency_seq_key(tenant, head.seq),
            env.id().as_bytes().to_vec(),
        );
        self.heads.insert(tenant.clone(), head);
        Ok(env)
    }

    /// Appends `id` to `tenant`'s inbox in `work`.
    fn append_inbox(&mut self, work: &mut Work, tenant: &AgencyId, id: ContentId) {
        let head = self.heads.entry(tenant.clone()).or_default();
        let position = head.inbox_next;
        head.inbox_next += 1;
        let encoded = records::encode(&*head);
        work.batch.put(
            Column::Inbox,
            agency_seq_key(tenant, position),
            id.as_bytes().to_vec(),
        );
        work.batch
            .put(Column::Chains, tenant.as_str().as_bytes().to_vec(), encoded);
        work.after.push(Action::Delivered {
            tenant: tenant.clone(),
            id,
            position,
        });
    }

    fn add_outbound(
        &mut self,
        work: &mut Work,
        env: &SignedEnvelope,
        recipients: &[AgencyId],
        role: Role,
    ) {
        for r in recipients {
            let record = DeliveryRecord {
                role,
                created_ms: env.body().created_ms,
            };
            work.batch.put(
                Column::Deliveries,
                id_agency_key(&env.id(), r),
                records::encode(&record),
            );
            work.tracks.push((env.clone(), r.clone(), record));
        }
    }

    fn submit(&mut self, s: Submission, _store: &impl StoreView) -> Result<(), RelayError> {
        if s.kind == Kind::Status {
            return Err(RelayError::Invalid(
                "statuses are posted with PostStatus".into(),
            ));
        }
        if !self.tenants.contains_key(&s.from) {
            return Err(RelayError::NotHosted(s.from));
        }
        self.check_active(&s.from)?;
        let mut to = s.to;
        to.sort();
        to.dedup();
        for r in &to {
            self.check_active(r)?;
        }
        self.room_for(to.len())?;
        let mut work = Work::new();
        let env = self.sign_next(&mut work, &s.from, s.kind, to.clone(), s.routing, s.content)?;
        for record in s.records {
            let (key, value) = record.row(&env.id());
            work.batch.put(Column::Meta, key, value);
        }
        if s.kind.is_document() {
            let record = records::encode(&StatusRecord::new(s.from.clone(), env.body().created_ms));
            for r in &to {
                work.batch.put(
                    Column::Statuses,
                    id_agency_key(&env.id(), r),
                    record.clone(),
                );
            }
        }
        self.add_outbound(&mut work, &env, &to, Role::Origin);
        work.after.push(Action::Completed {
            request: s.request,
            result: Ok(env.id()),
        });
        self.issue(work);
        Ok(())
    }

    fn post_status(&mut self, p: StatusPost, store: &impl StoreView) -> Result<(), RelayError> {
        if !self.tenants.contains_key(&p.tenant) {
            return Err(RelayError::NotHosted(p.tenant));
        }
        self.check_active(&p.tenant)?;
        let mut updates = Vec::new();
        let to = if p.code == StatusCode::RecallRequested {
            let doc = self
                .read(store, Column::Envelopes, p.document.as_bytes())
                .and_then(|bytes| SignedEnvelope::decode(&bytes).ok())
                .filter(|env| env.body().from == p.tenant && env.body().kind.is_document())
                .ok_or(RelayError::UnknownDocument(p.document))?;
            let mut asked = if p.to.is_empty() {
                doc.body().to.clone()
            } else {
                p.to.clone()
            };
            asked.sort();
            asked.dedup();
            for r in &asked {
                let key = id_agency_key(&p.document, r);
                let record: StatusRecord = self
                    .read_record(store, Column::Statuses, &key)
                    .ok_or(RelayError::UnknownDocument(p.document))?;
                let chain = record.chain.apply(Party::Sender, p.code)?;
                updates.push((key, record, chain));
            }
            asked
        } else {
            let key = id_agency_key(&p.document, &p.tenant);
            let record: StatusRecord = self
                .read_record(store, Column::Statuses, &key)
                .ok_or(RelayError::UnknownDocument(p.document))?;
            let chain = record.chain.apply(Party::Recipient, p.code)?;
            let sender = record.sender.clone();
            updates.push((key, record, chain));
            vec![sender]
        };
        self.room_for(to.len())?;
        let mut work = Work::new();
        let routing = Routing {
            status: Some(p.code),
            refers_to: Some(p.document),
            ..Routing::default()
        };
        let env = self.sign_next(
            &mut work,
            &p.tenant,
            Kind::Status,
            to.clone(),
            routing,
            p.content,
        )?;
        for (key, mut record, chain) in updates {
            record.push(
                chain,
                StatusEntry {
                    code: p.code,
                    id: env.id(),
                    at_ms: env.body().created_ms,
                },
            );
            work.batch
                .put(Column::Statuses, key, records::encode(&record));
        }
        self.add_outbound(&mut work, &env, &to, Role::Origin);
        work.after.push(Action::Completed {
            request: p.request,
            result: Ok(env.id()),
        });
        self.issue(work);
        Ok(())
    }

    fn take_token(&mut self, peer: &str) -> bool {
        if peer == self.config.node {
            return true;
        }
        let (burst, rate, now) = (
            f64::from(self.config.peer_burst),
            f64::from(self.config.peer_rate_per_s),
            self.now,
        );
        if self.buckets.len() > 4 * self.roster.agencies.len() + 64
            && !self.buckets.contains_key(peer)
        {
            // Peers are allow-listed, so this only trims buckets of departed peers.
            self.buckets
                .retain(|_, b| now.saturating_sub(b.at_ms) < 60_000);
        }
        let bucket = self.buckets.entry(peer.to_owned()).or_insert(Bucket {
            tokens: burst,
            at_ms: now,
        });
        let elapsed = now.saturating_sub(bucket.at_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at_ms = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Decodes and checks an incoming envelope: quota, shape, sender standing, signature,
    /// age.
    fn admit(
        &mut self,
        peer: &str,
        bytes: &[u8],
        checked: Option<Checked>,
    ) -> Result<SignedEnvelope, Rejection> {
        // A checked envelope is a 01 answering one of our own pushes (bounded by our push
        // window), not something the peer sent unasked: it does not spend the quota.
        if checked.is_none() && !self.take_token(peer) {
            return Err(Rejection::later("peer over its inbound quota"));
        }
        let (env, checked_with) = match checked {
            Some(Checked { envelope, key }) => (envelope, Some(key)),
            None => (
                SignedEnvelope::decode(bytes).map_err(|e| Rejection::invalid(e.to_string()))?,
                None,
            ),
        };
        let body = env.body();
        let sender = match self.roster.active_agency(&body.from) {
            Ok(entry) => entry,
            Err(crate::roster::RosterError::UnknownAgency(id)) => {
                return Err(Rejection::invalid(format!("unknown sender {id}")));
            }
            Err(e) => return Err(Rejection::refused(e.to_string())),
        };
        if checked_with != Some(sender.signing_key) {
            env.verify(&sender.signing_key)
                .map_err(|e| Rejection::invalid(e.to_string()))?;
        }
        if body.created_ms.saturating_add(self.config.max_age_ms) < self.now {
            return Err(Rejection::refused("expired"));
        }
        if body.created_ms > self.now.saturating_add(self.config.max_skew_ms) {
            return Err(Rejection::later("created in the future (clock skew)"));
        }
        Ok(env)
    }

    fn ack(&mut self, peer: &str, id: ContentId, receipts: Vec<Receipt>) {
        self.actions.push_back(Action::Send {
            peer: peer.to_owned(),
            wire: Wire::PushAck { id, receipts },
        });
    }

    fn local_recipients(&self, env: &SignedEnvelope) -> Vec<AgencyId> {
        env.body()
            .to
            .iter()
            .filter(|t| self.tenants.contains_key(*t))
            .cloned()
            .collect()
    }

    fn receive(
        &mut self,
        peer: &str,
        bytes: Vec<u8>,
        mode: Mode,
        store: &impl StoreView,
    ) -> Verdict {
        self.receive_checked(peer, bytes, None, mode, store)
    }

    /// [`receive`](Self::receive) of an envelope that may already have been decoded and
    /// verified (`checked`, made from these bytes), which is not done twice.
    fn receive_checked(
        &mut self,
        peer: &str,
        bytes: Vec<u8>,
        checked: Option<Checked>,
        mode: Mode,
        store: &impl StoreView,
    ) -> Verdict {
        let env = match self.admit(peer, &bytes, checked) {
            Ok(env) => env,
            Err(rejection) => {
                let id = SignedEnvelope::decode(&bytes)
                    .map_or_else(|_| ContentId::of(&bytes), |e| e.id());
                if rejection.penalize {
                    self.actions.push_back(Action::Penalize {
                        peer: peer.to_owned(),
                        reason: rejection.reason.clone(),
                    });
                }
                if mode == Mode::Push {
                    // Answer for the recipients we host, if the envelope says who they are.
                    let local = SignedEnvelope::decode(&bytes)
                        .map(|e| self.local_recipients(&e))
                        .unwrap_or_default();
                    let receipts = local
                        .into_iter()
                        .map(|recipient| {
                            let reason = rejection.reason.clone();
                            if rejection.retry {
                                Receipt::Retry { recipient, reason }
                            } else {
                                Receipt::Refused { recipient, reason }
                            }
                        })
                        .collect();
                    self.ack(peer, id, receipts);
                }
                return if rejection.penalize {
                    Verdict::Reject
                } else {
                    Verdict::Ignore
                };
            }
        };
        let id = env.id();
        let local = self.local_recipients(&env);
        if local.is_empty() {
            if mode == Mode::Push {
                self.ack(peer, id, Vec::new());
            }
            return Verdict::Accept;
        }
        if self.read(store, Column::Seen, id.as_bytes()).is_some() {
            if mode == Mode::Push {
                // Vouch for it only once it is durable here.
                let receipts = local
                    .into_iter()
                    .map(|recipient| Receipt::Duplicate { recipient })
                    .collect();
                let after = self.pending_batch(Column::Seen, id.as_bytes());
                let wire = Wire::PushAck { id, receipts };
                self.release_after(
                    after,
                    Action::Send {
                        peer: peer.to_owned(),
                        wire,
                    },
                );
            }
            return Verdict::Ignore;
        }
        if let Payload::External { manifest, .. } = &env.body().payload
            && self.read(store, Column::Payloads, manifest).is_none()
        {
            self.wait_for_payload(peer, *manifest, bytes, Vec::new());
            if mode == Mode::Push {
                self.ack(peer, id, retry_receipts(local, "fetching the payload"));
            }
            return Verdict::Accept;
        }
        let mut work = Work::new();
        let receipts = if env.body().kind == Kind::Status {
            self.receive_status(&mut work, store, &env, &local)
        } else {
            self.receive_document(&mut work, store, &env, &local)
        };
        let receipts = match receipts {
            Ok(receipts) => receipts,
            Err(reason) => {
                // Nothing stored: every local recipient is asked to retry.
                if mode == Mode::Push {
                    self.ack(peer, id, retry_receipts(local, &reason));
                }
                return Verdict::Accept;
            }
        };
        self.check_chain(&mut work, store, &env);
        work.batch
            .put(Column::Envelopes, id.as_bytes().to_vec(), bytes);
        work.batch.put(
            Column::Seen,
            id.as_bytes().to_vec(),
            records::encode(&SeenRecord {
                received_ms: self.now,
            }),
        );
        if mode == Mode::Push {
            work.after.push(Action::Send {
                peer: peer.to_owned(),
                wire: Wire::PushAck { id, receipts },
            });
        }
        self.issue(work);
        Verdict::Accept
    }

    fn receive_document(
        &mut self,
        work: &mut Work,
        store: &impl StoreView,
        env: &SignedEnvelope,
        local: &[AgencyId],
    ) -> Result<Vec<Receipt>, String> {
        let body = env.body();
        let mut receipts = Vec::with_capacity(local.len());
        for tenant in local {
            self.append_inbox(work, tenant, env.id());
            let routing = Routing {
                status: Some(StatusCode::Arrived),
                refers_to: Some(env.id()),
                ..Routing::default()
            };
            let arrived = match self.sign_next(
                work,
                tenant,
                Kind::Status,
                vec![body.from.clone()],
                routing,
                Content::None,
            ) {
                Ok(arrived) => arrived,
                Err(e) => {
                    receipts.push(Receipt::Refused {
                        recipient: tenant.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            // When the sender is hosted here too, both sides share one record.
            let key = id_agency_key(&env.id(), tenant);
            let mut record = self
                .read_record::<StatusRecord>(store, Column::Statuses, &key)
                .unwrap_or_else(|| StatusRecord::new(body.from.clone(), body.created_ms));
            let chain = record
                .chain
                .apply(Party::Recipient, StatusCode::Arrived)
                .unwrap_or(record.chain);
            record.push(
                chain,
                StatusEntry {
                    code: StatusCode::Arrived,
                    id: arrived.id(),
                    at_ms: self.now,
                },
            );
            work.batch
                .put(Column::Statuses, key, records::encode(&record));
            self.add_outbound(
                work,
                &arrived,
                std::slice::from_ref(&body.from),
                Role::Origin,
            );
            receipts.push(Receipt::Arrived {
                recipient: tenant.clone(),
                status: Some(arrived.bytes().to_vec()),
            });
        }
        Ok(receipts)
    }

    /// Applies a status to the local records it is about. `None` when the document is not
    /// known yet (the status may have overtaken it): nothing is stored and the sender retries.
    fn receive_status(
        &mut self,
        work: &mut Work,
        store: &impl StoreView,
        env: &SignedEnvelope,
        local: &[AgencyId],
    ) -> Result<Vec<Receipt>, String> {
        let body = env.body();
        let (Some(code), Some(document)) = (body.routing.status, body.routing.refers_to) else {
            return Err("a status without code or document".into());
        };
        let mut receipts = Vec::with_capacity(local.len());
        let mut updates = Vec::new();
        let entry = || StatusEntry {
            code,
            id: env.id(),
            at_ms: body.created_ms,
        };
        for tenant in local {
            // 13 travels sender → recipient; every other code recipient → sender.
            let (key, party, expected_sender) = if code == StatusCode::RecallRequested {
                (id_agency_key(&document, tenant), Party::Sender, &body.from)
            } else {
                (
                    id_agency_key(&document, &body.from),
                    Party::Recipient,
                    tenant,
                )
            };
            let not_party =
                || format!("status {code} about {document} from an agency not party to it");
            let Some(record) = self.read_record::<StatusRecord>(store, Column::Statuses, &key)
            else {
                // A recipient's status goes to the document's sender, whose node wrote a
                // record per recipient in the batch that stored the document: if the
                // document is here and the record is not, the author is not one of its
                // recipients (or the addressee not its sender) and never will be; "retry"
                // would have its node push it until it expires. (A 13 may overtake its
                // document, so that one waits.)
                if code != StatusCode::RecallRequested
                    && self
                        .read(store, Column::Envelopes, document.as_bytes())
                        .is_some()
                {
                    receipts.push(Receipt::Refused {
                        recipient: tenant.clone(),
                        reason: not_party(),
                    });
                    continue;
                }
                return Err(format!("document {document} has not arrived here yet"));
            };
            if &record.sender != expected_sender {
                receipts.push(Receipt::Refused {
                    recipient: tenant.clone(),
                    reason: not_party(),
                });
                continue;
            }
            if self.tenants.contains_key(&body.from) {
                // The author is hosted here: it updated the shared record when it posted.
                updates.push((tenant.clone(), None));
                continue;
            }
            if record.chain.stage == Stage::Recalled && party == Party::Recipient {
                // The recipient posted it before it agreed to the recall (its node checked
                // the order); it overtook nothing that matters: keep it in the history.
                let chain = record.chain;
                updates.push((tenant.clone(), Some((key, record, chain))));
                continue;
            }
            // Statuses travel apart (their own pushes, retries, custodians), so a later one
            // from the same author can arrive first; its author's node checked both in its
            // own order. Kept in the history at its place in that order, the chain replayed.
            if let Some((at, chain)) = self.overtaken_at(store, &record, env) {
                let mut record = record;
                record.insert(at, chain, entry());
                work.batch
                    .put(Column::Statuses, key, records::encode(&record));
                updates.push((tenant.clone(), None));
                continue;
            }
            match record.chain.apply_mirrored(party, code) {
                Ok(chain) => updates.push((tenant.clone(), Some((key, record, chain)))),
                // An earlier status from the same author may still be on its way.
                Err(e) if may_become_valid(&record.chain, code) => return Err(e.to_string()),
                Err(e) => receipts.push(Receipt::Refused {
                    recipient: tenant.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        for (tenant, update) in updates {
            if let Some((key, mut record, chain)) = update {
                record.push(chain, entry());
                work.batch
                    .put(Column::Statuses, key, records::encode(&record));
            }
            self.append_inbox(work, &tenant, env.id());
            if party_is_recipient(code) {
                // Any status from the recipient proves arrival: the delivery is done.
                self.untrack(work, store, document, &body.from, Outcome::Confirmed);
            }
            receipts.push(Receipt::Arrived {
                recipient: tenant,
                status: None,
            });
        }
        Ok(receipts)
    }

    /// Where status `env` belongs in `record`'s history when a later status from the same
    /// author is already there (it overtook `env` on the way): before the first of them,
    /// with the chain the history replays to in that order. `None` when nothing from its
    /// author is later, or unless the whole history, with `env` at that place, replays from
    /// the start (so a status that was never valid there cannot be slipped in under a lower
    /// sequence number), `env` holds its place in its author's chain alone (no
    /// equivocation), and the history is whole (not cut to [`MAX_STATUS_HISTORY`]). The
    /// history's envelopes are read only when it holds an entry from `env`'s author.
    fn overtaken_at(
        &self,
        store: &impl StoreView,
        record: &StatusRecord,
        env: &SignedEnvelope,
    ) -> Option<(usize, StatusChain)> {
        let body = env.body();
        let code = body.routing.status?;
        if record.history.len() >= MAX_STATUS_HISTORY
            || !record
                .history
                .iter()
                .any(|entry| entry.code.party() == code.party())
        {
            return None;
        }
        let place = agency_seq_key(&body.from, body.seq);
        if self
            .read(store, Column::SenderSeq, &place)
            .is_some_and(|id| id.as_slice() != env.id().as_bytes())
        {
            return None;
        }
        let at = record.history.iter().position(|applied| {
            self.read(store, Column::Envelopes, applied.id.as_bytes())
                .and_then(|bytes| SignedEnvelope::decode(&bytes).ok())
                .is_some_and(|later| later.body().from == body.from && later.body().seq > body.seq)
        })?;
        let codes = record.history.iter().map(|entry| entry.code);
        let replayed = codes
            .clone()
            .take(at)
            .chain(std::iter::once(code))
            .chain(codes.skip(at))
            .try_fold(StatusChain::default(), |chain, code| {
                chain.apply_mirrored(code.party(), code)
            })
            .ok()?;
        Some((at, replayed))
    }

    /// Records the sender's sequence number; two envelopes for one place in a sender's
    /// chain are kept as equivocation evidence (both stay stored).
    fn check_chain(&mut self, work: &mut Work, store: &impl StoreView, env: &SignedEnvelope) {
        let body = env.body();
        let key = agency_seq_key(&body.from, body.seq);
        match self.read(store, Column::SenderSeq, &key) {
            Some(existing) if existing.as_slice() != env.id().as_bytes() => {
                if let Ok(first) = <[u8; 32]>::try_from(existing.as_slice()) {
                    self.evidence(work, &body.from, body.seq, ContentId(first), env.id());
                }
            }
            Some(_) => {}
            None => work
                .batch
                .put(Column::SenderSeq, key, env.id().as_bytes().to_vec()),
        }
        if let (Some(prev), Some(before)) = (body.prev, body.seq.checked_sub(1)) {
            let existing = self.read(
                store,
                Column::SenderSeq,
                &agency_seq_key(&body.from, before),
            );
            if let Some(first) = existing.and_then(|e| <[u8; 32]>::try_from(e.as_slice()).ok())
                && first != prev.0
            {
                self.evidence(work, &body.from, before, ContentId(first), env.id());
            }
        }
    }

    fn evidence(
        &mut self,
        work: &mut Work,
        sender: &AgencyId,
        seq: u64,
        first: ContentId,
        second: ContentId,
    ) {
        let evidence = Equivocation {
            sender: sender.clone(),
            seq,
            first,
            second,
        };
        work.batch.put(
            Column::Evidence,
            agency_seq_key(sender, seq),
            records::encode(&evidence),
        );
        work.after.push(Action::Equivocation(evidence));
    }

    fn wait_for_payload(
        &mut self,
        peer: &str,
        manifest: [u8; 32],
        envelope: Vec<u8>,
        custody_for: Vec<AgencyId>,
    ) {
        let entry = self.waiting.entry(manifest).or_default();
        if !entry
            .iter()
            .any(|w| w.envelope == envelope && w.custody_for == custody_for)
        {
            if self.waiting_count >= self.config.max_waiting_payloads {
                // Full: drop this one; its pusher retries later.
                return;
            }
            entry.push(Waiting {
                peer: peer.to_owned(),
                envelope,
                custody_for,
            });
            self.waiting_count += 1;
        }
        // Ask the peer that has it now, even if an earlier fetch is under way elsewhere:
        // that peer may have gone.
        self.actions.push_back(Action::FetchPayload {
            peer: peer.to_owned(),
            manifest,
        });
    }

    fn custody(
        &mut self,
        peer: &str,
        bytes: Vec<u8>,
        recipients: Vec<AgencyId>,
        store: &impl StoreView,
    ) {
        let id = SignedEnvelope::decode(&bytes).map_or_else(|_| ContentId::of(&bytes), |e| e.id());
        let refuse = |relay: &mut Self, reason: String| {
            relay.actions.push_back(Action::Send {
                peer: peer.to_owned(),
                wire: Wire::CustodyAck {
                    id,
                    accepted: Vec::new(),
                    refused: Some(reason),
                },
            });
        };
        let env = match self.admit(peer, &bytes, None) {
            Ok(env) => env,
            Err(rejection) => {
                if rejection.penalize {
                    self.actions.push_back(Action::Penalize {
                        peer: peer.to_owned(),
                        reason: rejection.reason.clone(),
                    });
                }
                return refuse(self, rejection.reason);
            }
        };
        let mut recipients: Vec<AgencyId> = recipients
            .into_iter()
            .filter(|r| env.body().to.contains(r) && !self.tenants.contains_key(r))
            .collect();
        recipients.sort();
        recipients.dedup();
        let new: Vec<AgencyId> = recipients
            .iter()
            .filter(|r| !self.pending.contains_key(&(id, (*r).clone())))
            .cloned()
            .collect();
        let held = self
            .custody_per_sender
            .get(&env.body().from)
            .copied()
            .unwrap_or(0);
        if held + new.len() > self.config.max_custody_per_sender
            || self.room_for(new.len()).is_err()
        {
            return refuse(self, "custodian over its quota".into());
        }
        if let Payload::External { manifest, .. } = &env.body().payload
            && self.read(store, Column::Payloads, manifest).is_none()
        {
            return self.wait_for_payload(peer, *manifest, bytes, recipients);
        }
        let mut work = Work::new();
        if !new.is_empty() {
            work.batch
                .put(Column::Envelopes, id.as_bytes().to_vec(), bytes);
            self.add_outbound(&mut work, &env, &new, Role::Custodian);
        }
        self.issue(work);
        // Acknowledge custody only once every record it vouches for is durable.
        let after = recipients
            .iter()
            .filter_map(|r| self.pending_batch(Column::Deliveries, &id_agency_key(&id, r)))
            .max();
        let wire = Wire::CustodyAck {
            id,
            accepted: recipients,
            refused: None,
        };
        self.release_after(
            after,
            Action::Send {
                peer: peer.to_owned(),
                wire,
            },
        );
    }

    fn on_message(&mut self, peer: String, wire: Wire, store: &impl StoreView) {
        match wire {
            Wire::Push { envelope } => {
                self.receive(&peer, envelope, Mode::Push, store);
            }
            Wire::Custody {
                envelope,
                recipients,
            } => self.custody(&peer, envelope, recipients, store),
            Wire::PushAck { id, receipts } => self.on_receipts(&peer, id, receipts, store),
            Wire::CustodyAck { id, accepted, .. } => {
                for r in accepted {
                    if let Some(p) = self.pending.get_mut(&(id, r))
                        && p.role == Role::Origin
                    {
                        p.custodians.insert(peer.clone());
                    }
                }
            }
        }
    }

    fn on_receipts(
        &mut self,
        peer: &str,
        id: ContentId,
        receipts: Vec<Receipt>,
        store: &impl StoreView,
    ) {
        let mut work = Work::new();
        let mut statuses = Vec::new();
        // Any answer shows the node is there, even one without receipts (it hosts none of
        // the recipients by its roster); such a push's slot is freed at its retry.
        if let Some(flight) = self.flights.get_mut(peer) {
            flight.silent = false;
        }
        for receipt in receipts {
            let recipient = receipt.recipient().clone();
            let hosted_by_peer = self
                .roster
                .agency(&recipient)
                .is_some_and(|a| a.node == peer);
            if !hosted_by_peer {
                self.actions.push_back(Action::Penalize {
                    peer: peer.to_owned(),
                    reason: format!("receipt for {recipient}, which it does not host"),
                });
                continue;
            }
            self.answered(peer, &(id, recipient.clone()));
            let Some(role) = self.pending.get(&(id, recipient.clone())).map(|p| p.role) else {
                continue;
            };
            match receipt {
                Receipt::Arrived {
                    status: Some(bytes),
                    ..
                } => {
                    let Some(checked) = self.arrival_of(&bytes, id, &recipient) else {
                        self.actions.push_back(Action::Penalize {
                            peer: peer.to_owned(),
                            reason: format!(
                                "receipt for {id} carries no valid status from {recipient}"
                            ),
                        });
                        continue;
                    };
                    if role == Role::Origin {
                        // Store the 01 like any status addressed to us; that ends the delivery.
                        statuses.push((bytes, checked));
                    } else {
                        self.untrack(&mut work, store, id, &recipient, Outcome::Confirmed);
                    }
                }
                Receipt::Arrived { status: None, .. } | Receipt::Duplicate { .. } => {
                    self.untrack(&mut work, store, id, &recipient, Outcome::Confirmed);
                }
                Receipt::Retry { .. } => {}
                Receipt::Refused { reason, .. } => {
                    self.untrack(&mut work, store, id, &recipient, Outcome::Refused(reason));
                }
            }
        }
        self.issue(work);
        self.release_waiting(peer);
        // Each is answered as if it had been pushed: its author's node then ends that
        // status's delivery instead of pushing it again after `status_push_delay_ms` (it
        // cannot know the receipt carrying it arrived).
        for (bytes, checked) in statuses {
            self.receive_checked(peer, bytes, Some(checked), Mode::Push, store);
        }
    }

    /// `bytes` decoded and verified, if they are a status envelope validly signed by
    /// `recipient` about `document`.
    fn arrival_of(
        &self,
        bytes: &[u8],
        document: ContentId,
        recipient: &AgencyId,
    ) -> Option<Checked> {
        let env = SignedEnvelope::decode(bytes).ok()?;
        let body = env.body();
        let key = self.roster.agency(recipient)?.signing_key;
        let arrival = body.kind == Kind::Status
            && &body.from == recipient
            && body.routing.refers_to == Some(document)
            && env.verify(&key).is_ok();
        arrival.then_some(Checked { envelope: env, key })
    }

    fn on_connected(&mut self, peer: &str) {
        let now = self.now;
        // A new connection: pushes unanswered on the old one may be lost, and every pending
        // delivery to the node is due now, so nothing needs to wait in line from before.
        self.flights.remove(peer);
        self.slots.retain(|_, node| node != peer);
        let roster = Arc::clone(&self.roster);
        let hosted_there = |r: &AgencyId| roster.agency(r).is_some_and(|a| a.node == peer);
        let keys: Vec<(ContentId, AgencyId)> = self
            .pending
            .keys()
            .filter(|(_, r)| hosted_there(r))
            .cloned()
            .collect();
        for (id, r) in keys {
            if let Some(p) = self.pending.get_mut(&(id, r.clone())) {
                // The backoff starts over: if this push is lost too, the next one follows
                // after `retry_base_ms`, not after the long delay reached while it was away.
                p.attempts = 0;
                p.waits = 0;
                if p.next_ms > now {
                    self.due.remove(&(p.next_ms, id, r.clone()));
                    p.next_ms = now;
                    self.due.insert((now, id, r));
                }
            }
        }
    }

    fn backoff(&self, attempts: u32, id: &ContentId) -> u64 {
        let exp = attempts.saturating_sub(1).min(20);
        let delay = self
            .config
            .retry_base_ms
            .saturating_mul(1 << exp)
            .min(self.config.retry_max_ms);
        // Deterministic jitter of up to 25 %, so retries of many envelopes spread out.
        let jitter_byte = id.0.get(attempts as usize % 32).copied().unwrap_or(0);
        delay + delay * u64::from(jitter_byte) / 1024
    }

    /// Custodians for an envelope to `recipient`: the recipient's parent's node (its
    /// platform) first, then central nodes, never this node or the recipient's.
    fn choose_custodians(
        &self,
        id: &ContentId,
        recipient: &AgencyId,
        have: &BTreeSet<String>,
    ) -> Vec<String> {
        let want = self.config.custodians.saturating_sub(have.len());
        let recipient_node = self.roster.agency(recipient).map(|a| a.node.clone());
        let parent_node = self
            .roster
            .agency(recipient)
            .and_then(|a| a.parent.as_ref())
            .and_then(|p| self.roster.active_agency(p).ok())
            .map(|p| p.node.clone());
        let mut central: Vec<String> = self
            .roster
            .central
            .iter()
            .map(|c| c.peer_id.clone())
            .collect();
        if !central.is_empty() {
            let rotate = usize::from(id.0[0]) % central.len();
            central.rotate_left(rotate);
        }
        let mut chosen = Vec::new();
        for candidate in parent_node.into_iter().chain(central) {
            if chosen.len() >= want {
                break;
            }
            if candidate != self.config.node
                && Some(&candidate) != recipient_node.as_ref()
                && !have.contains(&candidate)
                && !chosen.contains(&candidate)
            {
                chosen.push(candidate);
            }
        }
        chosen
    }

    /// A 13 that the recipient's node refused (e.g. it had already finished) leaves no
    /// request pending in this node's view of the chain.
    fn request_refused(
        &mut self,
        work: &mut Work,
        store: &impl StoreView,
        status: ContentId,
        recipient: &AgencyId,
    ) {
        let Some(env) = self.read(store, Column::Envelopes, status.as_bytes()) else {
            return;
        };
        let Ok(env) = SignedEnvelope::decode(&env) else {
            return;
        };
        let routing = &env.body().routing;
        let (Some(StatusCode::RecallRequested), Some(document)) =
            (routing.status, routing.refers_to)
        else {
            return;
        };
        let key = id_agency_key(&document, recipient);
        if let Some(mut record) = self.read_record::<StatusRecord>(store, Column::Statuses, &key) {
            record.chain.request_pending = false;
            work.batch
                .put(Column::Statuses, key, records::encode(&record));
        }
    }

    /// Sends what is due: pushes, custody requests, expiries.
    fn run_due(&mut self, store: &impl StoreView) {
        let now = self.now;
        let mut work = Work::new();
        let mut pushes: BTreeSet<(ContentId, &str)> = BTreeSet::new();
        let mut custody: BTreeMap<(ContentId, String), Vec<AgencyId>> = BTreeMap::new();
        let mut gossip: BTreeSet<(ContentId, String)> = BTreeSet::new();
        // Due entries handled this call, pushed or not: the rest wait for the next tick.
        let mut handled = 0;
        // The roster in force, held apart so that node names are borrowed from it, not
        // copied for every due delivery.
        let roster = Arc::clone(&self.roster);
        loop {
            match self.due.first() {
                Some((at, _, _)) if *at <= now && handled < self.config.max_sends_per_tick => {}
                _ => break,
            }
            let Some((at, id, r)) = self.due.pop_first() else {
                break;
            };
            let key = (id, r);
            let Some(p) = self.pending.get(&key) else {
                continue;
            };
            if p.batch > self.committed {
                // Made due early (a peer reconnected) while its batch is not durable: it
                // is parked in `committing` and re-enters `due` at the commit.
                continue;
            }
            let (role, attempts, waits, first_ms, gossiped) =
                (p.role, p.attempts, p.waits, p.first_ms, p.gossiped);
            let custodied = p.custodians.len() >= self.config.custodians;
            if now > p.created_ms.saturating_add(self.config.max_age_ms) {
                let (id, r) = key;
                self.due.insert((at, id, r.clone()));
                self.untrack(&mut work, store, id, &r, Outcome::Expired);
                continue;
            }
            let node = match roster.active_agency(&key.1) {
                Ok(entry) => entry.node.as_str(),
                Err(crate::roster::RosterError::Suspended(_)) => {
                    // A suspended agency's pending inbound documents wait (roster
                    // `AgencyState::Suspended`): until it is reinstated, revoked or the
                    // delivery expires.
                    self.free_slot(&key);
                    self.due.insert((at, key.0, key.1.clone()));
                    self.reschedule(&key, now + self.config.retry_max_ms);
                    continue;
                }
                Err(e) => {
                    let (id, r) = key;
                    self.due.insert((at, id, r.clone()));
                    self.untrack(
                        &mut work,
                        store,
                        id,
                        &r,
                        Outcome::RecipientGone(e.to_string()),
                    );
                    continue;
                }
            };
            handled += 1;
            let pushed = pushes.contains(&(id, node)) || self.take_push_slot(node, &key);
            // This push, or this wake-up in line, counted apart (see `Pending::waits`).
            let count = if pushed { attempts + 1 } else { waits + 1 };
            let mut delay = self.backoff(count, &id);
            if role == Role::Origin && custodied {
                delay = delay.max(self.config.retry_max_ms / 4);
            }
            // A delivery waiting in line has no retries of its own: it is made due when a
            // slot frees or its node reconnects, and its timer only wakes it for custody (and
            // its age), not every second while a node is silent with a long line.
            if !pushed && role == Role::Origin && !custodied {
                let custody_at = first_ms.saturating_add(self.config.custody_after_ms);
                delay = delay.max(custody_at.saturating_sub(now));
            }
            // The node left a push unanswered until its retry (this one's or another's).
            let silent = self.flights.get(node).is_some_and(|f| f.silent);
            // Custody is for a recipient's node that does not answer, not for one that
            // answers and is only working through a line of deliveries, nor for a delivery
            // pushed now for the first time (out of such a line).
            let unanswered = silent || (pushed && attempts > 0);
            // Push first: gossip is the way round a node that leaves pushes unanswered. An
            // envelope is published on its recipient's unit topic once, the first time its
            // delivery comes due while the node is silent (ARCHITECTURE.md, "Push first,
            // gossip when a push goes unanswered").
            let publish = role == Role::Origin && silent && !gossiped;
            if publish {
                gossip.insert((id, unit_topic(&key.1)));
            }
            if role == Role::Origin
                && !custodied
                && unanswered
                && now >= first_ms + self.config.custody_after_ms
                && let Some(p) = self.pending.get(&key)
            {
                for c in self.choose_custodians(&id, &key.1, &p.custodians) {
                    custody.entry((id, c)).or_default().push(key.1.clone());
                }
            }
            // Back in `due` at its next time (its entry was taken out above).
            let at = now + delay;
            if let Some(p) = self.pending.get_mut(&key) {
                if pushed {
                    p.attempts = count;
                } else {
                    p.waits = count;
                }
                p.gossiped |= publish;
                p.next_ms = at;
                self.due.insert((at, key.0, key.1));
            }
            if pushed {
                pushes.insert((id, node));
            }
        }
        self.issue(work);
        for (id, peer) in pushes {
            if let Some(envelope) = self.read(store, Column::Envelopes, id.as_bytes()) {
                self.actions.push_back(Action::Send {
                    peer: peer.to_owned(),
                    wire: Wire::Push { envelope },
                });
            }
        }
        for (id, topic) in gossip {
            if let Some(envelope) = self.read(store, Column::Envelopes, id.as_bytes()) {
                self.actions.push_back(Action::Publish { topic, envelope });
            }
        }
        for ((id, peer), recipients) in custody {
            if let Some(envelope) = self.read(store, Column::Envelopes, id.as_bytes()) {
                self.actions.push_back(Action::Send {
                    peer,
                    wire: Wire::Custody {
                        envelope,
                        recipients,
                    },
                });
            }
        }
    }

    /// Whether delivery `key` may be pushed to `node` now: a slot in the node's window is
    /// taken, or the delivery waits in line for one. A delivery still unanswered from its
    /// last push has timed out: the node turns silent and gets probes only.
    fn take_push_slot(&mut self, node: &str, key: &(ContentId, AgencyId)) -> bool {
        if node == self.config.node {
            return true;
        }
        let timed_out = self.slots.get(key).is_some_and(|held| held == node);
        // Held here, the push timed out; held at another node (the roster moved the
        // recipient), that one's is freed.
        self.free_slot(key);
        if !self.flights.contains_key(node) {
            self.flights.insert(node.to_owned(), PeerFlight::default());
        }
        let Some(flight) = self.flights.get_mut(node) else {
            return false;
        };
        if timed_out {
            flight.silent = true;
        }
        if flight.unanswered < flight.window(&self.config) {
            flight.unanswered += 1;
            self.slots.insert(key.clone(), node.to_owned());
            return true;
        }
        if !flight.queued.contains(key) {
            flight.queued.insert(key.clone());
            if flight.waiting.len() >= self.config.max_deliveries {
                // Places of deliveries that ended meanwhile: dropped here, so the line stays
                // within the pending deliveries.
                let pending = &self.pending;
                flight.queued.retain(|k| pending.contains_key(k));
                let queued = &flight.queued;
                flight.waiting.retain(|k| queued.contains(k));
            }
            flight.waiting.push_back(key.clone());
        }
        false
    }

    /// Frees the slot delivery `key` holds, at the node where it took it.
    fn free_slot(&mut self, key: &(ContentId, AgencyId)) {
        if let Some(node) = self.slots.remove(key)
            && let Some(flight) = self.flights.get_mut(&node)
        {
            flight.unanswered = flight.unanswered.saturating_sub(1);
        }
    }

    /// `node` answered for delivery `key`: the slot it holds there (if any) is free.
    fn answered(&mut self, node: &str, key: &(ContentId, AgencyId)) {
        if self.slots.get(key).is_some_and(|held| held == node) {
            self.free_slot(key);
        }
    }

    /// Makes as many waiting deliveries due now as `node`'s window has free slots.
    fn release_waiting(&mut self, node: &str) {
        let now = self.now;
        let Some(flight) = self.flights.get_mut(node) else {
            return;
        };
        let mut free = flight
            .window(&self.config)
            .saturating_sub(flight.unanswered);
        let mut due = Vec::new();
        while free > 0 {
            let Some(key) = flight.waiting.pop_front() else {
                break;
            };
            flight.queued.remove(&key);
            if self.pending.contains_key(&key) && !self.slots.contains_key(&key) {
                due.push(key);
                free -= 1;
            }
        }
        if flight.is_idle() {
            self.flights.remove(node);
        }
        for key in due {
            self.reschedule(&key, now);
        }
    }

    /// Forgets every window (a roster change may have moved recipients between nodes):
    /// deliveries waiting in line are due now (they have no retries of their own before
    /// custody), and start new windows.
    fn reset_windows(&mut self) {
        let now = self.now;
        let slots = &self.slots;
        let waiting: Vec<(ContentId, AgencyId)> = self
            .flights
            .drain()
            .flat_map(|(_, mut flight)| {
                // Still in line: not ended meanwhile (`queued`), not pushed and unanswered.
                flight
                    .waiting
                    .retain(|key| flight.queued.contains(key) && !slots.contains_key(key));
                flight.waiting
            })
            .collect();
        self.slots.clear();
        for key in waiting {
            self.reschedule(&key, now);
        }
    }

    fn reschedule(&mut self, key: &(ContentId, AgencyId), at: u64) {
        if let Some(p) = self.pending.get_mut(key) {
            self.due.remove(&(p.next_ms, key.0, key.1.clone()));
            p.next_ms = at;
            self.due.insert((at, key.0, key.1.clone()));
        }
    }
}

/// "Try again later" for each of `local`.
fn retry_receipts(local: Vec<AgencyId>, reason: &str) -> Vec<Receipt> {
    local
        .into_iter()
        .map(|recipient| Receipt::Retry {
            recipient,
            reason: reason.to_owned(),
        })
        .collect()
}

fn party_is_recipient(code: StatusCode) -> bool {
    code.party() == Party::Recipient
}

/// Whether a refused status could become valid once earlier statuses arrive: statuses from
/// one author can overtake each other on the network, so a 06 may arrive before its 03.
fn may_become_valid(chain: &StatusChain, code: StatusCode) -> bool {
    let rank = |stage: Stage| match stage {
        Stage::Sent => 0,
        Stage::At(StatusCode::Arrived) => 1,
        Stage::At(StatusCode::Rejected | StatusCode::Accepted) => 2,
        Stage::At(StatusCode::Assigned) => 3,
        Stage::At(StatusCode::Processing) => 4,
        Stage::At(StatusCode::Completed) => 5,
        Stage::At(_) | Stage::Recalled => u8::MAX,
    };
    if chain.stage == Stage::Recalled || code.party() != Party::Recipient {
        return false;
    }
    let answers_request = matches!(code, StatusCode::RecallAgreed | StatusCode::RecallRefused);
    !answers_request && rank(Stage::At(code)) > rank(chain.stage).saturating_add(1)
}
