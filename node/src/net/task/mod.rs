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
use lienthong_protocol::envelope::content_id_of;
use lienthong_protocol::relay::Verdict;
use lienthong_protocol::relay::wire::Wire;
use lienthong_protocol::seal::{self, ChunkId, Manifest, PayloadId};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

mod direct;
mod fetch;

use self::direct::Pending;
use self::fetch::{Done, ManifestCache};
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
        registry: &mut libp2p::metrics::Registry,
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
            .with_bandwidth_metrics(registry)
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
                // A port of its own, not the listening one (libp2p's default, for hole
                // punching): two nodes dialing each other at once from their listening
                // ports make one TCP connection by simultaneous open, on which both start
                // Noise as initiator and both handshakes fail ("input error").
                let opts = DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .allocate_new_port()
                    .build();
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
            Command::TopicPeers { topic, reply } => {
                let topic = IdentTopic::new(topic).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&topic))
                    .map(|(peer, _)| *peer)
                    .collect();
                let _ = reply.send(peers);
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
                    inc(&self.metrics.connected_peers);
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
            } => {
                // Never below zero, whatever order the swarm reports in.
                let _ = self.metrics.connected_peers.fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |n| n.checked_sub(1),
                );
                self.emit(NetEvent::PeerDisconnected { peer: peer_id });
            }
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
