//! [`NetTask`]: the loop that owns the swarm. Read top to bottom: construction, the
//! `run` loop, then one handler per source (commands, swarm events, finished blocking
//! store calls, the one-second tick).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::identity::Keypair;
use libp2p::request_response::{
    self, InboundRequestId, OutboundFailure, OutboundRequestId, ResponseChannel,
};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{DialError, ListenError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, identify, noise, relay, tcp, yamux};
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::relay::Verdict;
use lienthong_protocol::relay::wire::Wire;
use lienthong_protocol::seal::{self, ChunkId, Manifest, PayloadId};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::behaviour::{self, Behaviour, BehaviourEvent};
use super::codec::{FetchRequest, FetchResponse, MAX_FETCH_LEN, RelayResponse};
use super::metrics::NetMetrics;
use super::payload::{FetchJob, PayloadStore, Phase};
use super::{
    CHECKPOINTS_TOPIC, Command, NetConfig, NetError, NetEvent, ROSTER_TOPIC, Responder,
    effective_allowed,
};

/// Most addresses remembered per peer, and peers in the address book.
const MAX_ADDRS_PER_PEER: usize = 8;
const MAX_ADDRESS_BOOK: usize = 20_000;
/// Most decoded manifests cached for serving chunks.
const MANIFEST_CACHE: usize = 16;
/// Penalty points lost per second (multiplicative decay), and gossipsub score per point.
const PENALTY_DECAY_PER_S: f64 = 0.99;
const SCORE_PER_PENALTY: f64 = 50.0;
/// Fetches untouched this long while stalled are forgotten.
const STALLED_FETCH_TTL: Duration = Duration::from_secs(600);

fn inc(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn add(counter: &std::sync::atomic::AtomicU64, n: usize) {
    counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

/// Which request-response protocol an inbound request id belongs to (ids are per
/// behaviour, so they can collide across the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Proto {
    Relay,
    Fetch,
}

/// An inbound relay request waiting for the relay's answer.
#[derive(Debug)]
struct Pending {
    peer: PeerId,
    request: InboundRequestId,
    channel: ResponseChannel<RelayResponse>,
    key: (PeerId, ContentId),
}

/// Per-peer inbound accounting.
#[derive(Debug, Default, Clone, Copy)]
struct Load {
    count: usize,
    bytes: usize,
}

/// A gossip message awaiting the relay's verdict.
#[derive(Debug)]
struct GossipPending {
    id: MessageId,
    source: PeerId,
    at: Instant,
}

/// A blocking store call that finished.
enum Done {
    /// A new fetch looked for the payload locally.
    Probed {
        manifest: [u8; 32],
        result: std::io::Result<bool>,
    },
    /// The manifest (from a peer, verified) and which of its chunks are missing here.
    Checked {
        manifest: Arc<Manifest>,
        result: std::io::Result<BTreeSet<u32>>,
    },
    /// A verified chunk was written.
    ChunkStored {
        manifest: [u8; 32],
        index: u32,
        result: std::io::Result<()>,
    },
    /// The manifest was written last: the payload is complete.
    ManifestStored {
        manifest: [u8; 32],
        result: std::io::Result<()>,
    },
    /// A fetch request was read from the store and can be answered.
    Served {
        peer: PeerId,
        channel: ResponseChannel<FetchResponse>,
        response: FetchResponse,
    },
}

/// Decoded manifests recently served (shared with blocking tasks).
#[derive(Debug, Default)]
struct ManifestCache(Mutex<VecDeque<Arc<Manifest>>>);

impl ManifestCache {
    fn get(
        &self,
        store: &dyn PayloadStore,
        id: &PayloadId,
    ) -> std::io::Result<Option<Arc<Manifest>>> {
        {
            let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = cache.iter().find(|m| m.id() == *id) {
                return Ok(Some(m.clone()));
            }
        }
        let Some(bytes) = store.get_manifest(id)? else {
            return Ok(None);
        };
        let manifest = Manifest::decode(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("stored manifest: {e}"),
            )
        })?;
        let manifest = Arc::new(manifest);
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MANIFEST_CACHE {
            cache.pop_front();
        }
        cache.push_back(manifest.clone());
        Ok(Some(manifest))
    }
}

/// The task that owns the swarm. Spawn [`NetTask::run`].
pub struct NetTask {
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    store: Arc<dyn PayloadStore>,
    metrics: Arc<NetMetrics>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    /// Events produced but not yet taken by the driver (soft bound: the swarm is not
    /// polled while it is full).
    outbox: VecDeque<NetEvent>,
    blocking: FuturesUnordered<BoxFuture<'static, Done>>,
    manifests: Arc<ManifestCache>,

    roster_allowed: HashSet<PeerId>,
    allowed: HashSet<PeerId>,
    banned: HashMap<PeerId, Instant>,
    penalties: HashMap<PeerId, f64>,
    addrs: HashMap<PeerId, Vec<Multiaddr>>,

    next_token: u64,
    pending: HashMap<u64, Pending>,
    by_content: HashMap<(PeerId, ContentId), VecDeque<u64>>,
    by_request: HashMap<InboundRequestId, u64>,
    charges: HashMap<(Proto, InboundRequestId), (PeerId, usize)>,
    load: HashMap<PeerId, Load>,
    outbound: HashMap<OutboundRequestId, PeerId>,
    outbound_load: HashMap<PeerId, usize>,

    gossip: HashMap<u64, GossipPending>,
    gossip_order: VecDeque<u64>,

    fetches: HashMap<[u8; 32], FetchJob>,
    fetch_requests: HashMap<OutboundRequestId, ([u8; 32], FetchRequest, PeerId)>,
}

impl std::fmt::Debug for NetTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetTask")
            .field("peer", self.swarm.local_peer_id())
            .field("pending", &self.pending.len())
            .field("fetches", &self.fetches.len())
            .finish_non_exhaustive()
    }
}

impl NetTask {
    pub(super) fn new(
        config: NetConfig,
        identity: Keypair,
        store: Arc<dyn PayloadStore>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
        metrics: Arc<NetMetrics>,
    ) -> Result<Self, NetError> {
        let transport = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
        let mut swarm = SwarmBuilder::with_existing_identity(identity)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| transport(&e))?
            .with_quic()
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| transport(&e))?
            .with_behaviour(|key, relay_client| {
                behaviour::build(key, relay_client, &config)
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
            })
            .map_err(|e| NetError::Behaviour(e.to_string()))?
            .with_swarm_config(|c| {
                c.with_idle_connection_timeout(config.idle_connection_timeout)
                    .with_max_negotiating_inbound_streams(config.max_negotiating_streams)
            })
            .build();

        let roster_allowed: HashSet<PeerId> = config.allowed.iter().copied().collect();
        let allowed = effective_allowed(&roster_allowed, &config.always_allowed, &HashSet::new());
        for peer in &allowed {
            swarm.behaviour_mut().allow.allow_peer(*peer);
        }
        let topics = [ROSTER_TOPIC.to_owned(), CHECKPOINTS_TOPIC.to_owned()]
            .into_iter()
            .chain(config.topics.iter().cloned())
            .collect::<Vec<_>>();
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        let mut task = Self {
            swarm,
            config,
            store,
            metrics,
            commands,
            events,
            outbox: VecDeque::new(),
            blocking: FuturesUnordered::new(),
            manifests: Arc::new(ManifestCache::default()),
            roster_allowed,
            allowed,
            banned: HashMap::new(),
            penalties: HashMap::new(),
            addrs: HashMap::new(),
            next_token: 0,
            pending: HashMap::new(),
            by_content: HashMap::new(),
            by_request: HashMap::new(),
            charges: HashMap::new(),
            load: HashMap::new(),
            outbound: HashMap::new(),
            outbound_load: HashMap::new(),
            gossip: HashMap::new(),
            gossip_order: VecDeque::new(),
            fetches: HashMap::new(),
            fetch_requests: HashMap::new(),
        };
        for topic in topics {
            task.subscribe(&topic);
        }
        Ok(task)
    }

    /// Runs until [`Command::Shutdown`], or until every handle and the event receiver are
    /// dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // A second sender, so that waiting for room does not borrow `self`.
        let events = self.events.clone();
        loop {
            // Hand over what is ready without waiting.
            while let Some(event) = self.outbox.pop_front() {
                match self.events.try_send(event) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(event)) => {
                        self.outbox.push_front(event);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            let room = self.outbox.len() < self.config.channel_capacity.max(1);
            tokio::select! {
                permit = events.reserve(), if !self.outbox.is_empty() => {
                    let Ok(permit) = permit else { return };
                    if let Some(event) = self.outbox.pop_front() {
                        permit.send(event);
                    }
                }
                command = self.commands.recv() => match command {
                    None | Some(Command::Shutdown) => return,
                    Some(command) => self.on_command(command),
                },
                event = self.swarm.select_next_some(), if room => self.on_swarm_event(event),
                Some(done) = self.blocking.next(), if !self.blocking.is_empty() => {
                    self.on_done(done)
                }
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn emit(&mut self, event: NetEvent) {
        self.outbox.push_back(event);
    }

    // ----- commands -----------------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send { peer, wire } => self.send_wire(peer, wire),
            Command::Respond { responder, wire } => self.respond(responder.0, wire),
            Command::Publish { topic, bytes } => {
                let topic = IdentTopic::new(topic);
                match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
                    Ok(_) => inc(&self.metrics.gossip_published),
                    Err(e) => {
                        inc(&self.metrics.gossip_publish_failures);
                        debug!(error = %e, "gossip publish failed");
                    }
                }
            }
            Command::Verdict { message, verdict } => self.verdict(message, verdict),
            Command::Fetch { peer, manifest } => self.fetch(peer, manifest),
            Command::Dial { peer, addrs } => {
                for addr in &addrs {
                    self.remember_addr(peer, addr.clone());
                }
                let opts = DialOpts::peer_id(peer).addresses(addrs).build();
                if let Err(e) = self.swarm.dial(opts) {
                    if matches!(e, DialError::Denied { .. }) {
                        inc(&self.metrics.connections_denied);
                    }
                    self.emit(NetEvent::DialFailed {
                        peer: Some(peer),
                        reason: e.to_string(),
                    });
                }
            }
            Command::Disconnect { peer } => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::ListenOn(addr) => {
                if let Err(e) = self.swarm.listen_on(addr.clone()) {
                    warn!(%addr, error = %e, "cannot listen");
                }
            }
            Command::SetAllowed(peers) => {
                self.roster_allowed = peers.into_iter().collect();
                self.refresh_allowed();
            }
            Command::Subscribe(topic) => self.subscribe(&topic),
            Command::Unsubscribe(topic) => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .unsubscribe(&IdentTopic::new(topic));
            }
            Command::Penalize { peer, reason } => self.penalize(peer, &reason),
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::Shutdown => {}
        }
    }

    fn subscribe(&mut self, topic: &str) {
        let topic = IdentTopic::new(topic);
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        if let Err(e) = gossipsub.subscribe(&topic) {
            warn!(%topic, error = %e, "cannot subscribe");
            return;
        }
        if let Err(e) = gossipsub.set_topic_params(topic.clone(), behaviour::topic_score_params()) {
            warn!(%topic, error = %e, "cannot set topic score parameters");
        }
    }

    fn remember_addr(&mut self, peer: PeerId, addr: Multiaddr) {
        if !self.addrs.contains_key(&peer) && self.addrs.len() >= MAX_ADDRESS_BOOK {
            return;
        }
        let list = self.addrs.entry(peer).or_default();
        if list.contains(&addr) {
            return;
        }
        if list.len() >= MAX_ADDRS_PER_PEER {
            list.remove(0);
        }
        list.push(addr);
    }

    fn refresh_allowed(&mut self) {
        let banned: HashSet<PeerId> = self.banned.keys().copied().collect();
        let next = effective_allowed(&self.roster_allowed, &self.config.always_allowed, &banned);
        let allow = &mut self.swarm.behaviour_mut().allow;
        for gone in self.allowed.difference(&next) {
            // Closes every connection to it.
            allow.disallow_peer(*gone);
        }
        for new in next.difference(&self.allowed) {
            allow.allow_peer(*new);
        }
        self.allowed = next;
    }

    fn penalize(&mut self, peer: PeerId, reason: &str) {
        inc(&self.metrics.penalties);
        debug!(%peer, reason, "penalised");
        let points = self.penalties.entry(peer).or_insert(0.0);
        *points += 1.0;
        let points = *points;
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, -points * SCORE_PER_PENALTY);
        if points >= self.config.ban_threshold && !self.banned.contains_key(&peer) {
            inc(&self.metrics.bans);
            warn!(%peer, points, "banning peer");
            self.banned
                .insert(peer, Instant::now() + self.config.ban_duration);
            self.refresh_allowed();
        }
    }

    // ----- relay messages -----------------------------------------------------------

    fn send_wire(&mut self, peer: PeerId, wire: Wire) {
        let ack_id = match &wire {
            Wire::PushAck { id, .. } | Wire::CustodyAck { id, .. } => Some(*id),
            _ => None,
        };
        if let Some(id) = ack_id {
            let token = self
                .by_content
                .get_mut(&(peer, id))
                .and_then(|queue| queue.pop_front());
            if let Some(token) = token {
                self.respond(token, wire);
                return;
            }
        }
        self.request(peer, wire);
    }

    /// Sends a relay message as a new request.
    fn request(&mut self, peer: PeerId, wire: Wire) {
        let bytes = match wire.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(%peer, error = %e, "cannot encode a relay message");
                return;
            }
        };
        let load = self.outbound_load.entry(peer).or_default();
        if *load >= self.config.max_outbound_per_peer {
            inc(&self.metrics.relay_send_failures);
            self.emit(NetEvent::SendFailed {
                peer,
                reason: "too many requests in flight to this peer".into(),
            });
            return;
        }
        *load += 1;
        if matches!(wire, Wire::PushAck { .. } | Wire::CustodyAck { .. }) {
            inc(&self.metrics.acks_as_request);
        }
        inc(&self.metrics.relay_requests_out);
        let addrs = self.addrs.get(&peer).cloned().unwrap_or_default();
        let id = self
            .swarm
            .behaviour_mut()
            .relay_rr
            .send_request_with_addresses(&peer, bytes, addrs);
        self.outbound.insert(id, peer);
    }

    /// Answers the pending request `token` (falls back to a new request for an ack whose
    /// stream has gone).
    fn respond(&mut self, token: u64, wire: Wire) {
        let Some(pending) = self.pending.remove(&token) else {
            return;
        };
        self.by_request.remove(&pending.request);
        if let Some(queue) = self.by_content.get_mut(&pending.key) {
            queue.retain(|t| *t != token);
            if queue.is_empty() {
                self.by_content.remove(&pending.key);
            }
        }
        let bytes = match wire.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                warn!(peer = %pending.peer, error = %e, "cannot encode a relay message");
                return;
            }
        };
        let sent = self
            .swarm
            .behaviour_mut()
            .relay_rr
            .send_response(pending.channel, RelayResponse::Wire(bytes));
        if sent.is_ok() {
            inc(&self.metrics.acks_as_response);
        } else if matches!(wire, Wire::PushAck { .. } | Wire::CustodyAck { .. }) {
            self.request(pending.peer, wire);
        }
    }

    /// Admits an inbound request of `bytes` from `peer` under its quota.
    fn charge(
        &mut self,
        proto: Proto,
        request: InboundRequestId,
        peer: PeerId,
        bytes: usize,
    ) -> bool {
        let load = self.load.entry(peer).or_default();
        if load.count >= self.config.max_inbound_per_peer
            || load.bytes + bytes > self.config.max_inbound_bytes_per_peer
        {
            inc(&self.metrics.quota_refusals);
            return false;
        }
        load.count += 1;
        load.bytes += bytes;
        self.charges.insert((proto, request), (peer, bytes));
        true
    }

    fn release(&mut self, proto: Proto, request: InboundRequestId) {
        if let Some((peer, bytes)) = self.charges.remove(&(proto, request))
            && let Some(load) = self.load.get_mut(&peer)
        {
            load.count = load.count.saturating_sub(1);
            load.bytes = load.bytes.saturating_sub(bytes);
            if load.count == 0 {
                self.load.remove(&peer);
            }
        }
        if proto == Proto::Relay
            && let Some(token) = self.by_request.remove(&request)
            && let Some(pending) = self.pending.remove(&token)
            && let Some(queue) = self.by_content.get_mut(&pending.key)
        {
            queue.retain(|t| *t != token);
            if queue.is_empty() {
                self.by_content.remove(&pending.key);
            }
        }
    }

    fn on_relay_request(
        &mut self,
        peer: PeerId,
        request: InboundRequestId,
        bytes: Vec<u8>,
        channel: ResponseChannel<RelayResponse>,
    ) {
        inc(&self.metrics.relay_requests_in);
        if !self.charge(Proto::Relay, request, peer, bytes.len()) {
            let _ = self.swarm.behaviour_mut().relay_rr.send_response(
                channel,
                RelayResponse::Refused("over quota; retry later".into()),
            );
            return;
        }
        let wire = match Wire::decode(&bytes) {
            Ok(wire) => wire,
            Err(e) => {
                inc(&self.metrics.invalid_wire);
                self.penalize(peer, &format!("malformed relay message: {e}"));
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .relay_rr
                    .send_response(channel, RelayResponse::Refused("malformed".into()));
                return;
            }
        };
        drop(bytes);
        match &wire {
            Wire::Push { envelope } | Wire::Custody { envelope, .. } => {
                let key = (peer, ContentId::of(envelope));
                let token = self.next_token;
                self.next_token += 1;
                self.pending.insert(
                    token,
                    Pending {
                        peer,
                        request,
                        channel,
                        key,
                    },
                );
                self.by_request.insert(request, token);
                self.by_content.entry(key).or_default().push_back(token);
                self.emit(NetEvent::Message {
                    peer,
                    wire,
                    responder: Some(Responder(token)),
                });
            }
            Wire::PushAck { .. } | Wire::CustodyAck { .. } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .relay_rr
                    .send_response(channel, RelayResponse::Empty);
                self.emit(NetEvent::Message {
                    peer,
                    wire,
                    responder: None,
                });
            }
        }
    }

    fn on_relay_event(&mut self, event: request_response::Event<Vec<u8>, RelayResponse>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request_id,
                        request,
                        channel,
                    },
                ..
            } => self.on_relay_request(peer, request_id, request, channel),
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.outbound_done(request_id);
                match response {
                    RelayResponse::Wire(bytes) => match Wire::decode(&bytes) {
                        Ok(wire) => {
                            inc(&self.metrics.relay_responses_in);
                            self.emit(NetEvent::Response { peer, wire });
                        }
                        Err(e) => {
                            inc(&self.metrics.invalid_wire);
                            self.penalize(peer, &format!("malformed relay response: {e}"));
                        }
                    },
                    RelayResponse::Empty => {}
                    RelayResponse::Refused(reason) => {
                        inc(&self.metrics.relay_send_failures);
                        self.emit(NetEvent::SendFailed { peer, reason });
                    }
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.outbound_done(request_id);
                inc(&self.metrics.relay_send_failures);
                self.emit(NetEvent::SendFailed {
                    peer,
                    reason: error.to_string(),
                });
            }
            Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, "inbound relay request failed");
                self.release(Proto::Relay, request_id);
            }
            Event::ResponseSent { request_id, .. } => self.release(Proto::Relay, request_id),
        }
    }

    fn outbound_done(&mut self, request: OutboundRequestId) {
        if let Some(peer) = self.outbound.remove(&request)
            && let Some(load) = self.outbound_load.get_mut(&peer)
        {
            *load = load.saturating_sub(1);
            if *load == 0 {
                self.outbound_load.remove(&peer);
            }
        }
    }

    // ----- gossip -------------------------------------------------------------------

    fn on_gossip(&mut self, event: gossipsub::Event) {
        let (propagation_source, message_id, message) = match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => (propagation_source, message_id, message),
            gossipsub::Event::Subscribed { peer_id, topic } => {
                self.emit(NetEvent::Subscribed {
                    peer: peer_id,
                    topic: topic.into_string(),
                });
                return;
            }
            _ => return,
        };
        if self.gossip.len() >= self.config.max_pending_gossip {
            inc(&self.metrics.gossip_overflow);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    MessageAcceptance::Ignore,
                );
            return;
        }
        inc(&self.metrics.gossip_in);
        let token = self.next_token;
        self.next_token += 1;
        self.gossip.insert(
            token,
            GossipPending {
                id: message_id,
                source: propagation_source,
                at: Instant::now(),
            },
        );
        self.gossip_order.push_back(token);
        self.emit(NetEvent::Gossip {
            peer: propagation_source,
            message: token,
            topic: message.topic.into_string(),
            envelope: message.data,
        });
    }

    fn verdict(&mut self, token: u64, verdict: Verdict) {
        let Some(pending) = self.gossip.remove(&token) else {
            return;
        };
        let acceptance = match verdict {
            Verdict::Accept => {
                inc(&self.metrics.gossip_accepted);
                MessageAcceptance::Accept
            }
            Verdict::Reject => {
                inc(&self.metrics.gossip_rejected);
                MessageAcceptance::Reject
            }
            Verdict::Ignore => {
                inc(&self.metrics.gossip_ignored);
                MessageAcceptance::Ignore
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&pending.id, &pending.source, acceptance);
    }

    // ----- payload fetch (client side) ----------------------------------------------

    fn fetch(&mut self, peer: PeerId, manifest: [u8; 32]) {
        if let Some(job) = self.fetches.get_mut(&manifest) {
            job.add_peer(peer);
            if !job.busy() {
                self.pump(manifest, Some(peer));
            }
            return;
        }
        if self.fetches.len() >= self.config.max_fetches {
            // Forget the stalest idle fetch; if every one is busy, refuse this one (the
            // relay asks again later).
            let victim = self
                .fetches
                .iter()
                .filter(|(_, j)| !j.busy())
                .min_by_key(|(_, j)| j.touched)
                .map(|(m, _)| *m);
            match victim {
                Some(m) => {
                    self.fetches.remove(&m);
                }
                None => {
                    self.emit(NetEvent::FetchFailed {
                        manifest,
                        reason: "too many fetches under way".into(),
                    });
                    return;
                }
            }
        }
        self.fetches.insert(manifest, FetchJob::new(peer));
        let store = self.store.clone();
        self.spawn_blocking(
            move || {
                let result = store
                    .get_manifest(&PayloadId(manifest))
                    .map(|m| m.is_some());
                Done::Probed { manifest, result }
            },
            Done::Probed {
                manifest,
                result: Err(join_error()),
            },
        );
    }

    /// Runs `f` on the blocking pool; `failed` is reported if the task panics.
    fn spawn_blocking(&mut self, f: impl FnOnce() -> Done + Send + 'static, failed: Done) {
        let handle = tokio::task::spawn_blocking(f);
        self.blocking
            .push(async move { handle.await.unwrap_or(failed) }.boxed());
    }

    /// Sends whatever requests a fetch needs now. `dial` names a peer that may be dialled
    /// if no candidate is connected (the peer the relay just named).
    fn pump(&mut self, manifest: [u8; 32], dial: Option<PeerId>) {
        let window = self.config.fetch_window.max(1);
        let Some(job) = self.fetches.get_mut(&manifest) else {
            return;
        };
        let connected = job
            .peers
            .iter()
            .rev()
            .find(|p| self.swarm.is_connected(p))
            .copied();
        let Some(peer) = connected.or(dial) else {
            return;
        };
        let mut requests = Vec::new();
        match &mut job.phase {
            Phase::Probing | Phase::Finishing => return,
            Phase::Manifest { asked } => {
                if asked.is_some() {
                    return;
                }
                *asked = Some(peer);
                requests.push(FetchRequest::Manifest(manifest));
            }
            Phase::Chunks {
                missing,
                in_flight,
                storing,
                manifest: m,
            } => {
                while in_flight.len() < window {
                    let Some(index) = missing.pop_first() else {
                        break;
                    };
                    in_flight.insert(index, peer);
                    requests.push(FetchRequest::Chunk { manifest, index });
                }
                if missing.is_empty() && in_flight.is_empty() && storing.is_empty() {
                    let m = m.clone();
                    job.phase = Phase::Finishing;
                    self.finish(m);
                    return;
                }
            }
        }
        job.touched = Instant::now();
        let addrs = self.addrs.get(&peer).cloned().unwrap_or_default();
        for request in requests {
            match request {
                FetchRequest::Manifest(_) => inc(&self.metrics.fetch_manifest_requests),
                FetchRequest::Chunk { .. } => inc(&self.metrics.fetch_chunk_requests),
            }
            let id = self
                .swarm
                .behaviour_mut()
                .fetch
                .send_request_with_addresses(&peer, request, addrs.clone());
            self.fetch_requests.insert(id, (manifest, request, peer));
        }
    }

    fn finish(&mut self, manifest: Arc<Manifest>) {
        let store = self.store.clone();
        let id = manifest.id();
        self.spawn_blocking(
            move || Done::ManifestStored {
                manifest: id.0,
                result: store.put_manifest(&id, manifest.as_bytes()),
            },
            Done::ManifestStored {
                manifest: id.0,
                result: Err(join_error()),
            },
        );
    }

    fn fail_fetch(&mut self, manifest: [u8; 32], reason: String) {
        if self.fetches.remove(&manifest).is_some() {
            self.emit(NetEvent::FetchFailed { manifest, reason });
        }
    }

    fn on_fetch_event(&mut self, event: request_response::Event<FetchRequest, FetchResponse>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request_id,
                        request,
                        channel,
                    },
                ..
            } => self.serve(peer, request_id, request, channel),
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((manifest, request, asked)) = self.fetch_requests.remove(&request_id) {
                    debug_assert_eq!(asked, peer);
                    self.on_fetch_response(peer, manifest, request, response);
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((manifest, request, _)) = self.fetch_requests.remove(&request_id) {
                    debug!(%peer, %error, "fetch request failed");
                    // Another connected candidate may take over; otherwise the fetch waits
                    // for a candidate to reconnect or for the relay to ask again.
                    let unsupported = matches!(error, OutboundFailure::UnsupportedProtocols);
                    self.request_failed(peer, manifest, request, unsupported);
                    self.pump(manifest, None);
                }
            }
            Event::InboundFailure { request_id, .. } | Event::ResponseSent { request_id, .. } => {
                self.release(Proto::Fetch, request_id);
            }
        }
    }

    /// Puts a failed request back (the chunk is missing again). `drop_peer`: the peer
    /// does not have the payload or misbehaved.
    fn request_failed(
        &mut self,
        peer: PeerId,
        manifest: [u8; 32],
        request: FetchRequest,
        drop_peer: bool,
    ) {
        let Some(job) = self.fetches.get_mut(&manifest) else {
            return;
        };
        if drop_peer {
            job.drop_peer(&peer);
        }
        match (&mut job.phase, request) {
            (Phase::Manifest { asked }, FetchRequest::Manifest(_)) => *asked = None,
            (
                Phase::Chunks {
                    missing, in_flight, ..
                },
                FetchRequest::Chunk { index, .. },
            ) => {
                inc(&self.metrics.fetch_chunk_failures);
                if in_flight.remove(&index).is_some() {
                    missing.insert(index);
                }
            }
            _ => {}
        }
        if job.peers.is_empty() && !job.busy() {
            self.fail_fetch(manifest, "no peer has the payload".into());
        }
    }

    fn on_fetch_response(
        &mut self,
        peer: PeerId,
        manifest: [u8; 32],
        request: FetchRequest,
        response: FetchResponse,
    ) {
        match (request, response) {
            (FetchRequest::Manifest(_), FetchResponse::Manifest(bytes)) => {
                let checked = Manifest::decode(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        if m.id().0 == manifest {
                            Ok(m)
                        } else {
                            Err(format!("manifest {} instead of the one asked for", m.id()))
                        }
                    });
                match checked {
                    Ok(m) => {
                        let m = Arc::new(m);
                        let store = self.store.clone();
                        let failed = Done::Checked {
                            manifest: m.clone(),
                            result: Err(join_error()),
                        };
                        self.spawn_blocking(
                            move || {
                                let result = missing_chunks(store.as_ref(), &m);
                                Done::Checked {
                                    manifest: m,
                                    result,
                                }
                            },
                            failed,
                        );
                    }
                    Err(reason) => {
                        inc(&self.metrics.invalid_fetch);
                        self.penalize(peer, &format!("bad manifest: {reason}"));
                        self.request_failed(peer, manifest, request, true);
                        self.pump(manifest, None);
                    }
                }
            }
            (FetchRequest::Chunk { index, .. }, FetchResponse::Chunk(bytes)) => {
                let Some(job) = self.fetches.get_mut(&manifest) else {
                    return;
                };
                let Phase::Chunks {
                    manifest: m,
                    in_flight,
                    storing,
                    ..
                } = &mut job.phase
                else {
                    return;
                };
                if in_flight.get(&index) != Some(&peer) {
                    return;
                }
                match seal::verify_chunk(m, index as usize, &bytes) {
                    Ok(()) => {
                        in_flight.remove(&index);
                        storing.insert(index);
                        job.touched = Instant::now();
                        let store = self.store.clone();
                        self.spawn_blocking(
                            move || Done::ChunkStored {
                                manifest,
                                index,
                                result: store.put_chunk(&ChunkId::of(&bytes), &bytes),
                            },
                            Done::ChunkStored {
                                manifest,
                                index,
                                result: Err(join_error()),
                            },
                        );
                        // Keep the window full while this chunk is written.
                        self.pump(manifest, None);
                    }
                    Err(e) => {
                        inc(&self.metrics.invalid_fetch);
                        self.penalize(peer, &format!("bad chunk {index}: {e}"));
                        self.request_failed(peer, manifest, request, true);
                        self.pump(manifest, None);
                    }
                }
            }
            (_, FetchResponse::NotFound) => {
                self.request_failed(peer, manifest, request, true);
                self.pump(manifest, None);
            }
            (_, FetchResponse::Refused(reason)) => {
                debug!(%peer, reason, "fetch refused");
                // Busy: keep the peer, but wait for the next trigger rather than retrying
                // at once.
                self.request_failed(peer, manifest, request, false);
            }
            (_, _) => {
                inc(&self.metrics.invalid_fetch);
                self.penalize(peer, "fetch response of the wrong kind");
                self.request_failed(peer, manifest, request, true);
                self.pump(manifest, None);
            }
        }
    }

    // ----- payload fetch (server side) ----------------------------------------------

    fn serve(
        &mut self,
        peer: PeerId,
        request_id: InboundRequestId,
        request: FetchRequest,
        channel: ResponseChannel<FetchResponse>,
    ) {
        if !self.charge(Proto::Fetch, request_id, peer, MAX_FETCH_LEN) {
            let _ = self.swarm.behaviour_mut().fetch.send_response(
                channel,
                FetchResponse::Refused("over quota; retry later".into()),
            );
            return;
        }
        let store = self.store.clone();
        let cache = self.manifests.clone();
        let handle = tokio::task::spawn_blocking(move || read_for(store.as_ref(), &cache, request));
        self.blocking.push(
            async move {
                let response = handle
                    .await
                    .unwrap_or_else(|_| FetchResponse::Refused("internal error".into()));
                Done::Served {
                    peer,
                    channel,
                    response,
                }
            }
            .boxed(),
        );
    }

    // ----- finished store calls -----------------------------------------------------

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Served {
                peer,
                channel,
                response,
            } => {
                match &response {
                    FetchResponse::Manifest(b) | FetchResponse::Chunk(b) => {
                        inc(&self.metrics.fetch_served);
                        add(&self.metrics.fetch_bytes_served, b.len());
                    }
                    FetchResponse::Refused(_) => inc(&self.metrics.store_errors),
                    FetchResponse::NotFound => {}
                }
                if self
                    .swarm
                    .behaviour_mut()
                    .fetch
                    .send_response(channel, response)
                    .is_err()
                {
                    debug!(%peer, "fetch requester went away");
                }
            }
            Done::Probed { manifest, result } => match result {
                Ok(true) => {
                    self.fetches.remove(&manifest);
                    self.emit(NetEvent::PayloadStored { manifest });
                }
                Ok(false) => {
                    if let Some(job) = self.fetches.get_mut(&manifest) {
                        job.phase = Phase::Manifest { asked: None };
                        let dial = job.peers.last().copied();
                        self.pump(manifest, dial);
                    }
                }
                Err(e) => {
                    inc(&self.metrics.store_errors);
                    self.fail_fetch(manifest, format!("store: {e}"));
                }
            },
            Done::Checked { manifest, result } => {
                let id = manifest.id().0;
                match result {
                    Ok(missing) => {
                        if let Some(job) = self.fetches.get_mut(&id) {
                            job.phase = Phase::Chunks {
                                manifest,
                                missing,
                                in_flight: HashMap::new(),
                                storing: HashSet::new(),
                            };
                            self.pump(id, None);
                        }
                    }
                    Err(e) => {
                        inc(&self.metrics.store_errors);
                        self.fail_fetch(id, format!("store: {e}"));
                    }
                }
            }
            Done::ChunkStored {
                manifest,
                index,
                result,
            } => {
                if let Err(e) = result {
                    inc(&self.metrics.store_errors);
                    self.fail_fetch(manifest, format!("store: {e}"));
                    return;
                }
                inc(&self.metrics.fetch_chunks_stored);
                if let Some(job) = self.fetches.get_mut(&manifest)
                    && let Phase::Chunks { storing, .. } = &mut job.phase
                {
                    storing.remove(&index);
                    job.touched = Instant::now();
                }
                self.pump(manifest, None);
            }
            Done::ManifestStored { manifest, result } => {
                self.fetches.remove(&manifest);
                match result {
                    Ok(()) => {
                        inc(&self.metrics.fetch_completed);
                        self.emit(NetEvent::PayloadStored { manifest });
                    }
                    Err(e) => {
                        inc(&self.metrics.store_errors);
                        self.emit(NetEvent::FetchFailed {
                            manifest,
                            reason: format!("store: {e}"),
                        });
                    }
                }
            }
        }
    }

    // ----- swarm events -------------------------------------------------------------

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                if self.config.relay_server {
                    // A relay server advertises where it is reachable in reservations.
                    self.swarm.add_external_address(address.clone());
                }
                self.emit(NetEvent::Listening { addr: address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if endpoint.is_dialer() {
                    self.remember_addr(peer_id, endpoint.get_remote_address().clone());
                }
                if num_established.get() == 1 {
                    self.emit(NetEvent::PeerConnected { peer: peer_id });
                    // Resume stalled fetches this peer can serve.
                    let stalled: Vec<[u8; 32]> = self
                        .fetches
                        .iter()
                        .filter(|(_, j)| !j.busy() && j.peers.contains(&peer_id))
                        .map(|(m, _)| *m)
                        .collect();
                    for manifest in stalled {
                        self.pump(manifest, None);
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => self.emit(NetEvent::PeerDisconnected { peer: peer_id }),
            SwarmEvent::IncomingConnectionError { error, peer_id, .. } => {
                if matches!(error, ListenError::Denied { .. }) {
                    inc(&self.metrics.connections_denied);
                    self.emit(NetEvent::Refused {
                        peer: peer_id,
                        reason: error.to_string(),
                    });
                }
            }
            SwarmEvent::OutgoingConnectionError { error, peer_id, .. } => {
                if matches!(error, DialError::Denied { .. }) {
                    inc(&self.metrics.connections_denied);
                }
                self.emit(NetEvent::DialFailed {
                    peer: peer_id,
                    reason: error.to_string(),
                });
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(event) => self.on_gossip(event),
            BehaviourEvent::RelayRr(event) => self.on_relay_event(event),
            BehaviourEvent::Fetch(event) => self.on_fetch_event(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs.into_iter().take(MAX_ADDRS_PER_PEER) {
                    self.remember_addr(peer_id, addr);
                }
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                ..
            }) => {
                info!(relay = %relay_peer_id, "relay reservation accepted");
                self.emit(NetEvent::Reserved {
                    relay: relay_peer_id,
                });
            }
            BehaviourEvent::Dcutr(event) => debug!(?event, "dcutr"),
            _ => {}
        }
    }

    // ----- housekeeping -------------------------------------------------------------

    fn on_tick(&mut self) {
        let now = Instant::now();

        // Penalties decay; bans expire.
        let mut rescored = Vec::new();
        self.penalties.retain(|peer, points| {
            *points *= PENALTY_DECAY_PER_S;
            rescored.push((*peer, *points));
            *points >= 0.05
        });
        for (peer, points) in rescored {
            let score = if points >= 0.05 {
                -points * SCORE_PER_PENALTY
            } else {
                0.0
            };
            self.swarm
                .behaviour_mut()
                .gossipsub
                .set_application_score(&peer, score);
        }
        let before = self.banned.len();
        self.banned.retain(|_, until| *until > now);
        if self.banned.len() != before {
            self.refresh_allowed();
        }

        // Gossip messages with no verdict in time are ignored.
        while let Some(token) = self.gossip_order.front().copied() {
            match self.gossip.get(&token) {
                None => {
                    self.gossip_order.pop_front();
                }
                Some(p) if now.duration_since(p.at) >= self.config.gossip_verdict_timeout => {
                    self.gossip_order.pop_front();
                    self.verdict(token, Verdict::Ignore);
                }
                Some(_) => break,
            }
        }

        // Stalled fetches are forgotten after a while (the relay asks again if it still
        // needs them; stored chunks stay).
        self.fetches
            .retain(|_, j| j.busy() || now.duration_since(j.touched) < STALLED_FETCH_TTL);
    }
}

fn join_error() -> std::io::Error {
    std::io::Error::other("blocking store task failed")
}

/// Which chunks of `manifest` the store lacks.
fn missing_chunks(store: &dyn PayloadStore, manifest: &Manifest) -> std::io::Result<BTreeSet<u32>> {
    let mut missing = BTreeSet::new();
    for (index, id) in manifest.chunks().iter().enumerate() {
        if !store.has_chunk(id)? {
            missing.insert(u32::try_from(index).unwrap_or(u32::MAX));
        }
    }
    Ok(missing)
}

/// Answers a fetch request from the store (blocking).
fn read_for(
    store: &dyn PayloadStore,
    cache: &ManifestCache,
    request: FetchRequest,
) -> FetchResponse {
    let result = match request {
        FetchRequest::Manifest(id) => store
            .get_manifest(&PayloadId(id))
            .map(|m| m.map(FetchResponse::Manifest)),
        FetchRequest::Chunk { manifest, index } => {
            cache.get(store, &PayloadId(manifest)).and_then(|m| {
                let Some(chunk_id) = m.and_then(|m| m.chunks().get(index as usize).copied()) else {
                    return Ok(None);
                };
                store
                    .get_chunk(&chunk_id)
                    .map(|c| c.map(FetchResponse::Chunk))
            })
        }
    };
    match result {
        Ok(Some(response)) => response,
        Ok(None) => FetchResponse::NotFound,
        Err(e) => {
            warn!(error = %e, "payload store read failed");
            FetchResponse::Refused("store error".into())
        }
    }
}
