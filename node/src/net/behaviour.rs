//! The combined libp2p behaviour: one behaviour per concern, and how each is configured.

use std::time::Duration;

use libp2p::gossipsub::{
    self, MessageAuthenticity, MessageId, PeerScoreParams, PeerScoreThresholds, TopicScoreParams,
    ValidationMode,
};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{allow_block_list, connection_limits, dcutr, identify, ping, relay, request_response};
use lienthong_protocol::envelope::MAX_ENVELOPE_LEN;
use sha2::{Digest, Sha256};

use super::NetConfig;
use super::codec::{FETCH_PROTOCOL, FetchCodec, RELAY_PROTOCOL, RelayCodec};

/// Identify protocol version announced to peers.
pub const IDENTIFY_PROTOCOL: &str = "/lienthong/id/1";

/// Gossipsub frames carry one envelope plus protobuf framing; leave generous room.
pub const MAX_GOSSIP_LEN: usize = MAX_ENVELOPE_LEN + 16 * 1024;

/// Every concern of the agency node's swarm.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Refuses connections to and from peers outside the roster (first, so denial is
    /// cheap and happens before any other behaviour sees the connection).
    pub allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub relay_rr: request_response::Behaviour<RelayCodec>,
    pub fetch: request_response::Behaviour<FetchCodec>,
    pub relay_client: relay::client::Behaviour,
    pub dcutr: dcutr::Behaviour,
    /// Circuit relay v2 server: only on central nodes (and in tests).
    pub relay_server: Toggle<relay::Behaviour>,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour").finish_non_exhaustive()
    }
}

/// Message id = SHA-256(topic ‖ 0x00 ‖ data): an envelope addressed to several top-level
/// units is published once per unit topic, and each publication needs its own id (the
/// relay deduplicates by content id itself).
pub fn message_id(message: &gossipsub::Message) -> MessageId {
    let digest = Sha256::new()
        .chain_update(message.topic.as_str().as_bytes())
        .chain_update([0])
        .chain_update(&message.data)
        .finalize();
    MessageId::new(&digest)
}

/// Scoring for one topic: the weight that matters is P4 (invalid messages). Traffic is
/// sparse (government documents), so the mesh-delivery penalties (P3, P3b) are off: a
/// quiet peer is not a bad peer.
pub fn topic_score_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 50.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.5,
        mesh_message_deliveries_cap: 100.0,
        mesh_message_deliveries_threshold: 1.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(60),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.5,
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.9,
    }
}

/// Peer-level score parameters (topics are added as they are subscribed).
pub fn peer_score_params() -> PeerScoreParams {
    PeerScoreParams {
        // Application score = minus the local penalty points (see the task's penalty box).
        app_specific_weight: 1.0,
        // Many agencies sit behind one provincial NAT: do not punish shared addresses.
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    }
}

/// Thresholds: gossip stops at -100, publishing to the peer at -200, everything from it is
/// ignored at -400 (about four invalid messages).
pub fn peer_score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -100.0,
        publish_threshold: -200.0,
        graylist_threshold: -400.0,
        accept_px_threshold: 100.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// Builds the behaviour for `key` (the transport identity).
pub fn build(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    config: &NetConfig,
) -> Result<Behaviour, String> {
    let peer_id = key.public().to_peer_id();

    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(message_id)
        .max_transmit_size(MAX_GOSSIP_LEN)
        .heartbeat_interval(config.gossip_heartbeat)
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)
        .map_err(|e| format!("gossipsub: {e}"))?;
    gossipsub.with_peer_score(peer_score_params(), peer_score_thresholds())?;

    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        .with_max_established(Some(config.max_connections))
        .with_max_pending_incoming(Some(config.max_pending))
        .with_max_pending_outgoing(Some(config.max_pending));

    let relay_rr = request_response::Behaviour::with_codec(
        RelayCodec,
        [(RELAY_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_streams_per_connection),
    );
    let fetch = request_response::Behaviour::with_codec(
        FetchCodec,
        [(FETCH_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.fetch_timeout)
            .with_max_concurrent_streams(config.max_streams_per_connection),
    );

    let relay_server = config.relay_server.then(|| {
        let l = &config.relay_limits;
        // libp2p's defaults keep their per-peer and per-IP rate limiters; the counts and
        // sizes are ours.
        let relay_config = relay::Config {
            max_reservations: l.max_reservations,
            max_reservations_per_peer: l.max_reservations_per_peer,
            reservation_duration: l.reservation_duration,
            max_circuits: l.max_circuits,
            max_circuits_per_peer: l.max_circuits_per_peer,
            max_circuit_duration: l.max_circuit_duration,
            max_circuit_bytes: l.max_circuit_bytes,
            ..relay::Config::default()
        };
        relay::Behaviour::new(peer_id, relay_config)
    });

    Ok(Behaviour {
        allow: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                .with_agent_version(format!("lienthong/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(ping::Config::new()),
        gossipsub,
        relay_rr,
        fetch,
        relay_client,
        dcutr: dcutr::Behaviour::new(peer_id),
        relay_server: relay_server.into(),
    })
}
