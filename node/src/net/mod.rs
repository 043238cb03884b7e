//! The agency node's networking layer: rust-libp2p wiring, and nothing else.
//!
//! It turns the network into relay events and relay actions into network operations; it
//! makes no delivery decision (those are the relay core's, `lienthong_protocol::relay`).
//! The [`NetTask`] owns the libp2p `Swarm` and talks to the node's driver over two
//! **bounded** channels: [`Command`]s in, [`NetEvent`]s out. [`command_for`] and
//! [`NetEvent::into_relay_event`] are the whole mapping between the two worlds.
//!
//! # Behaviours (one per concern)
//!
//! * TCP (Noise, Yamux) and QUIC transports, plus the circuit relay v2 **client** transport
//!   so a node behind NAT is reachable through a relay; DCUtR upgrades such connections to
//!   direct ones where the NATs allow. A relay **server** runs when
//!   [`NetConfig::relay_server`] is set (central nodes, tests).
//! * `allow_block_list`: only peers in the roster (plus configured central/bootstrap peers)
//!   may connect, in either direction; [`Command::SetAllowed`] replaces the set when the
//!   roster changes (removed peers are disconnected at once). Peers banned by the penalty
//!   box (below) are taken out of the set for a while.
//! * `connection_limits` (total, per peer, pending), identify, ping.
//! * gossipsub: topics `lienthong/unit/<X>` (see `relay::unit_topic`), `lienthong/roster`
//!   and `lienthong/checkpoints`; anonymous messages (envelopes carry their own
//!   signatures); message id = SHA-256(topic ‖ 0x00 ‖ data), so an envelope addressed to
//!   several units is published once per unit topic (the relay deduplicates by content id;
//!   DESIGN §5's "message id = content id" would let gossipsub drop every publication after
//!   the first as `Duplicate`); nothing is forwarded before the relay's verdict
//!   ([`Command::Verdict`]); peer scoring makes a rejected message cost its forwarder (P4).
//! * request-response `/lienthong/relay/1`: relay messages ([`Wire`]) for direct push and
//!   custody hand-off.
//! * request-response `/lienthong/fetch/1`: payload manifests and chunks by hash.
//!
//! # Relay messages over request-response
//!
//! The relay core models acknowledgements as separate messages (`Wire::PushAck`,
//! `Wire::CustodyAck`); request-response wants one answer per request. The mapping:
//!
//! * An inbound `Push`/`Custody` request becomes [`NetEvent::Message`]; its response
//!   channel is kept in a bounded map keyed by (peer, content id of the envelope). When
//!   the relay then emits `Send { peer, PushAck/CustodyAck { id } }`, that ack becomes
//!   the response to the oldest pending request with that key.
//! * If no request is pending for an ack (it timed out, the connection dropped, or the
//!   relay acknowledges later, e.g. after fetching a payload), the ack is sent as a **new
//!   request**, which the other side delivers to its relay as a message and answers with
//!   an empty response.
//! * A relay message received as the **response** to one of our requests is delivered as
//!   [`NetEvent::Response`]; the relay gets it as `Event::Message` like any other.
//! * [`Command::Respond`] answers a specific request by its [`Responder`] token (for
//!   uses other than acknowledgements).
//!
//! # Payload fetch (resumable)
//!
//! [`Command::Fetch`] starts (or joins) a fetch of a sealed payload from a peer: the
//! manifest first (its id is checked against the one asked for), then the missing chunks
//! a few at a time, each checked with `seal::verify_chunk` before it is stored through
//! [`PayloadStore`]; the manifest is stored last and [`NetEvent::PayloadStored`] reported.
//! A fetch cut midway keeps what it stored; it resumes when a candidate peer reconnects or
//! the relay asks again, requesting only the chunks the store lacks.
//!
//! # Bounds and misbehaviour
//!
//! Frames are length-checked before allocation; per-peer quotas bound inbound requests in
//! flight (count and bytes) and outbound relay requests; excess is refused with an error
//! response, never buffered. Events wait in a small outbox when the driver is slow; while
//! it is full the swarm is not polled (backpressure reaches the peers through the
//! transports' flow control) but commands are still taken, so the two bounded channels
//! cannot deadlock. Invalid input (malformed relay messages, bad chunks or
//! manifests, invalid gossip) is dropped, counted in [`NetMetrics`] and penalised: gossip
//! through gossipsub's validation result, everything else through a local penalty box
//! that lowers the peer's gossipsub application score and bans it for a while past a
//! threshold. Nothing from the network can make this layer panic.

mod behaviour;
pub mod codec;
mod metrics;
mod payload;
mod task;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use lienthong_protocol::relay::wire::Wire;
use lienthong_protocol::relay::{Action, Event, Verdict};
use tokio::sync::{mpsc, oneshot};

pub use self::behaviour::{MAX_GOSSIP_LEN, message_id};
pub use self::metrics::{NetMetrics, NetStats};
pub use self::payload::{MemoryPayloadStore, PayloadStore};
pub use self::task::NetTask;

/// The federation's roster topic.
pub const ROSTER_TOPIC: &str = "lienthong/roster";
/// The federation's checkpoint topic.
pub const CHECKPOINTS_TOPIC: &str = "lienthong/checkpoints";

/// Tunables of the network layer; every bound it enforces is here.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on (e.g. `/ip4/0.0.0.0/tcp/4001`, `/ip4/0.0.0.0/udp/4001/quic-v1`,
    /// or a relay circuit `/…/p2p/<relay>/p2p-circuit`).
    pub listen: Vec<Multiaddr>,
    /// Peers allowed to connect at start (the roster's `allowed_peers`).
    pub allowed: Vec<PeerId>,
    /// Peers always allowed whatever the roster says (configured central/bootstrap nodes).
    pub always_allowed: Vec<PeerId>,
    /// Gossip topics to join at start besides the federation topics.
    pub topics: Vec<String>,
    /// Also run a circuit relay v2 server (central nodes, tests).
    pub relay_server: bool,
    /// The relay server's limits (per peer and in total).
    pub relay_limits: RelayLimits,
    /// Close connections with nothing to do after this long.
    pub idle_connection_timeout: Duration,
    /// Timeout of a relay request (inbound and outbound).
    pub request_timeout: Duration,
    /// Timeout of one fetch request (a manifest or one chunk).
    pub fetch_timeout: Duration,
    /// Gossipsub heartbeat.
    pub gossip_heartbeat: Duration,
    /// Most established connections in total.
    pub max_connections: u32,
    /// Most established connections per peer.
    pub max_connections_per_peer: u32,
    /// Most connections being set up, in each direction.
    pub max_pending: u32,
    /// Most request-response streams per connection and protocol.
    pub max_streams_per_connection: usize,
    /// Most inbound streams being negotiated per connection.
    pub max_negotiating_streams: usize,
    /// Most inbound requests in flight per peer (both protocols).
    pub max_inbound_per_peer: usize,
    /// Most bytes held for one peer's inbound requests (requests, responses being served).
    pub max_inbound_bytes_per_peer: usize,
    /// Most outbound relay requests in flight per peer.
    pub max_outbound_per_peer: usize,
    /// Most gossip messages awaiting the relay's verdict.
    pub max_pending_gossip: usize,
    /// A gossip message with no verdict after this long is ignored.
    pub gossip_verdict_timeout: Duration,
    /// Chunk requests in flight per fetch.
    pub fetch_window: usize,
    /// Most fetches remembered (in progress or stalled).
    pub max_fetches: usize,
    /// Capacity of the command and event channels.
    pub channel_capacity: usize,
    /// Penalty points at which a peer is banned.
    pub ban_threshold: f64,
    /// How long a ban lasts.
    pub ban_duration: Duration,
}

/// Limits of the circuit relay v2 server ([`NetConfig::relay_server`]): reservations are
/// what a node behind NAT holds to be reachable through the relay; circuits are relayed
/// connections, bounded in time and bytes (DCUtR upgrades them to direct ones where it can).
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// Reservations held in total.
    pub max_reservations: usize,
    /// Reservations one peer may hold.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before it must be renewed.
    pub reservation_duration: Duration,
    /// Circuits open in total.
    pub max_circuits: usize,
    /// Circuits open per peer (either end).
    pub max_circuits_per_peer: usize,
    /// Longest life of one circuit.
    pub max_circuit_duration: Duration,
    /// Most bytes relayed over one circuit (each direction).
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_reservations: 1_024,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(60 * 60),
            max_circuits: 256,
            max_circuits_per_peer: 8,
            max_circuit_duration: Duration::from_secs(5 * 60),
            max_circuit_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            allowed: Vec::new(),
            always_allowed: Vec::new(),
            topics: Vec::new(),
            relay_server: false,
            relay_limits: RelayLimits::default(),
            idle_connection_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(30),
            gossip_heartbeat: Duration::from_millis(700),
            max_connections: 1_024,
            max_connections_per_peer: 2,
            max_pending: 128,
            max_streams_per_connection: 256,
            max_negotiating_streams: 256,
            max_inbound_per_peer: 256,
            max_inbound_bytes_per_peer: 8 * 1024 * 1024,
            max_outbound_per_peer: 256,
            max_pending_gossip: 4_096,
            gossip_verdict_timeout: Duration::from_secs(30),
            fetch_window: 4,
            max_fetches: 256,
            channel_capacity: 1_024,
            ban_threshold: 20.0,
            ban_duration: Duration::from_secs(600),
        }
    }
}

/// Names one inbound relay request awaiting its answer ([`Command::Respond`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Responder(pub(crate) u64);

/// What the driver asks the network layer to do.
#[derive(Debug)]
pub enum Command {
    /// Send a relay message: an acknowledgement answers the pending request it belongs
    /// to; anything else (or an ack with none pending) goes out as a new request.
    Send { peer: PeerId, wire: Wire },
    /// Answer one inbound relay request.
    Respond { responder: Responder, wire: Wire },
    /// Publish an envelope on a gossip topic.
    Publish { topic: String, bytes: Vec<u8> },
    /// The relay's verdict on a gossip message ([`NetEvent::Gossip`]'s `message`).
    Verdict { message: u64, verdict: Verdict },
    /// Fetch a sealed payload (manifest id) from a peer that has it.
    Fetch { peer: PeerId, manifest: [u8; 32] },
    /// Connect to a peer (its addresses are remembered for later requests).
    Dial { peer: PeerId, addrs: Vec<Multiaddr> },
    /// Close every connection to a peer.
    Disconnect { peer: PeerId },
    /// Listen on one more address (a relay circuit address makes a reservation).
    ListenOn(Multiaddr),
    /// Replace the allow-list (the roster's `allowed_peers`; `always_allowed` stays).
    SetAllowed(Vec<PeerId>),
    /// Join a gossip topic.
    Subscribe(String),
    /// Leave a gossip topic.
    Unsubscribe(String),
    /// The peer sent something invalid.
    Penalize { peer: PeerId, reason: String },
    /// The peer's gossipsub score (tests, diagnostics).
    PeerScore {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
    /// The connected peers known to be subscribed to a gossip topic (tests, diagnostics).
    TopicPeers {
        topic: String,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// Stop the task.
    Shutdown,
}

/// What the network layer reports.
#[derive(Debug)]
pub enum NetEvent {
    /// Listening on an address (including a relay circuit address once reserved).
    Listening { addr: Multiaddr },
    /// First connection to a peer established.
    PeerConnected { peer: PeerId },
    /// Last connection to a peer closed.
    PeerDisconnected { peer: PeerId },
    /// An inbound connection was refused (not allow-listed, banned, over a limit).
    Refused {
        peer: Option<PeerId>,
        reason: String,
    },
    /// An outbound connection attempt failed.
    DialFailed {
        peer: Option<PeerId>,
        reason: String,
    },
    /// A relay request from a peer. Push and custody requests carry a responder.
    Message {
        peer: PeerId,
        wire: Wire,
        responder: Option<Responder>,
    },
    /// A relay message answering one of our requests.
    Response { peer: PeerId, wire: Wire },
    /// A relay request of ours failed (the relay retries on its own schedule).
    SendFailed { peer: PeerId, reason: String },
    /// A gossip message awaiting the relay's verdict.
    Gossip {
        peer: PeerId,
        message: u64,
        topic: String,
        envelope: Vec<u8>,
    },
    /// A peer joined a gossip topic.
    Subscribed { peer: PeerId, topic: String },
    /// A fetched payload is complete and durable.
    PayloadStored { manifest: [u8; 32] },
    /// A fetch gave up (no peer has it, or the store failed); the relay asks again later.
    FetchFailed { manifest: [u8; 32], reason: String },
    /// A relay accepted our reservation: we are reachable through it.
    Reserved { relay: PeerId },
}

impl NetEvent {
    /// The relay core's view of this event, if it has one.
    pub fn into_relay_event(self) -> Option<Event> {
        match self {
            Self::Message { peer, wire, .. } | Self::Response { peer, wire } => {
                Some(Event::Message {
                    peer: peer.to_string(),
                    wire,
                })
            }
            Self::Gossip {
                peer,
                message,
                envelope,
                ..
            } => Some(Event::Gossip {
                peer: peer.to_string(),
                message,
                envelope,
            }),
            Self::PeerConnected { peer } => Some(Event::PeerConnected {
                peer: peer.to_string(),
            }),
            Self::PayloadStored { manifest } => Some(Event::PayloadStored { manifest }),
            _ => None,
        }
    }
}

/// The network operation for a relay action: `Ok(Some(command))` for network actions,
/// `Ok(None)` for a network action naming an unusable peer id (dropped), `Err(action)`
/// for actions the driver carries out itself (persist, complete, deliver, …).
pub fn command_for(action: Action) -> Result<Option<Command>, Action> {
    let peer = |p: &str| p.parse::<PeerId>().ok();
    Ok(match action {
        Action::Send { peer: p, wire } => peer(&p).map(|peer| Command::Send { peer, wire }),
        Action::Publish { topic, envelope } => Some(Command::Publish {
            topic,
            bytes: envelope,
        }),
        Action::FetchPayload { peer: p, manifest } => {
            peer(&p).map(|peer| Command::Fetch { peer, manifest })
        }
        Action::GossipVerdict { message, verdict } => Some(Command::Verdict { message, verdict }),
        Action::Penalize { peer: p, reason } => {
            peer(&p).map(|peer| Command::Penalize { peer, reason })
        }
        other => return Err(other),
    })
}

/// Why the network could not start or a command could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("transport setup: {0}")]
    Transport(String),
    #[error("behaviour setup: {0}")]
    Behaviour(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("the network task has stopped")]
    Closed,
}

/// A cheap, cloneable handle to the running network task.
#[derive(Debug, Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    metrics: Arc<NetMetrics>,
    /// libp2p's own metrics (transport bandwidth by direction and protocol stack).
    registry: Arc<std::sync::Mutex<libp2p::metrics::Registry>>,
    local_peer_id: PeerId,
}

/// Bytes through the transports (after Noise and Yamux framing), both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireBytes {
    pub inbound: u64,
    pub outbound: u64,
}

impl NetHandle {
    /// This node's transport peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Sends a command, waiting for room in the channel (backpressure).
    pub async fn send(&self, command: Command) -> Result<(), NetError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| NetError::Closed)
    }

    /// The live counters.
    pub fn metrics(&self) -> &NetMetrics {
        &self.metrics
    }

    /// A copy of the counters now.
    pub fn stats(&self) -> NetStats {
        self.metrics.snapshot()
    }

    /// libp2p's metrics in the Prometheus text format (for `/metrics`).
    pub fn encode_libp2p_metrics(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }

    /// Bytes through the transports so far, summed over protocol stacks.
    pub fn wire_bytes(&self) -> WireBytes {
        let mut bytes = WireBytes::default();
        for line in self.encode_libp2p_metrics().lines() {
            if !line.starts_with("libp2p_bandwidth_bytes_total{") {
                continue;
            }
            let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
                continue;
            };
            // Counters of bytes: whole numbers well within f64's exact range.
            let value = value as u64;
            if line.contains("direction=\"Inbound\"") {
                bytes.inbound += value;
            } else if line.contains("direction=\"Outbound\"") {
                bytes.outbound += value;
            }
        }
        bytes
    }

    /// The gossipsub score the task holds for `peer`.
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::PeerScore { peer, reply }).await?;
        rx.await.map_err(|_| NetError::Closed)
    }

    /// The connected peers known to be subscribed to gossip topic `topic` (their
    /// subscriptions have reached this node, so a publication there goes to them).
    pub async fn topic_peers(&self, topic: &str) -> Result<Vec<PeerId>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::TopicPeers {
            topic: topic.to_owned(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| NetError::Closed)
    }
}

/// Builds the network: returns the handle, the event stream and the task to spawn.
#[derive(Debug)]
pub struct Network;

impl Network {
    /// Builds the swarm with `identity` (the node's transport key, kept apart from its
    /// signing and encryption keys) and starts listening. Call inside a tokio runtime,
    /// then spawn [`NetTask::run`].
    #[allow(
        clippy::new_ret_no_self,
        reason = "builds the handle, the event stream and the task together"
    )]
    pub fn new(
        config: NetConfig,
        identity: Keypair,
        store: Arc<dyn PayloadStore>,
    ) -> Result<(NetHandle, mpsc::Receiver<NetEvent>, NetTask), NetError> {
        let local_peer_id = identity.public().to_peer_id();
        let (cmd_tx, cmd_rx) = mpsc::channel(config.channel_capacity.max(1));
        let (ev_tx, ev_rx) = mpsc::channel(config.channel_capacity.max(1));
        let metrics = Arc::new(NetMetrics::default());
        let mut registry = libp2p::metrics::Registry::default();
        let task = NetTask::new(
            config,
            identity,
            store,
            cmd_rx,
            ev_tx,
            metrics.clone(),
            &mut registry,
        )?;
        Ok((
            NetHandle {
                commands: cmd_tx,
                metrics,
                registry: Arc::new(std::sync::Mutex::new(registry)),
                local_peer_id,
            },
            ev_rx,
            task,
        ))
    }
}

/// The effective allow-list: roster peers plus always-allowed peers, minus banned ones.
pub(crate) fn effective_allowed(
    roster: &HashSet<PeerId>,
    always: &[PeerId],
    banned: &HashSet<PeerId>,
) -> HashSet<PeerId> {
    roster
        .iter()
        .chain(always.iter())
        .filter(|p| !banned.contains(p))
        .copied()
        .collect()
}
