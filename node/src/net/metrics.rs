//! Counters of what the network layer saw and did (exported as Prometheus metrics later).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, shared between the task and its handles.
        #[derive(Debug, Default)]
        pub struct NetMetrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of the counters at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct NetStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl NetMetrics {
            /// Reads every counter.
            pub fn snapshot(&self) -> NetStats {
                NetStats {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// Peers with at least one connection now (a gauge: up on the first connection, down
    /// when the last one closes).
    connected_peers,
    /// Connections refused because the peer is not allow-listed (or banned) or a
    /// connection limit was hit.
    connections_denied,
    /// Relay requests received (push, custody, unsolicited acknowledgements).
    relay_requests_in,
    /// Relay requests sent.
    relay_requests_out,
    /// Acknowledgements sent as the response to the request they answer.
    acks_as_response,
    /// Acknowledgements sent as new requests (no pending request to answer).
    acks_as_request,
    /// Relay responses received carrying a relay message.
    relay_responses_in,
    /// Outbound relay requests that failed (dial, timeout, connection closed, refused).
    relay_send_failures,
    /// Inbound requests refused because the peer was over its quota.
    quota_refusals,
    /// Malformed relay messages or responses (dropped and penalised).
    invalid_wire,
    /// Invalid fetch responses: bad manifest, wrong id, chunk failing verification.
    invalid_fetch,
    /// Penalties applied (relay's verdicts and this layer's own).
    penalties,
    /// Peers banned for a while after too many penalties.
    bans,
    /// Gossip messages passed to the relay for validation.
    gossip_in,
    /// Gossip messages accepted (forwarded).
    gossip_accepted,
    /// Gossip messages rejected (peer penalised by gossipsub's P4).
    gossip_rejected,
    /// Gossip messages ignored (including those that waited too long for a verdict).
    gossip_ignored,
    /// Gossip messages dropped because too many awaited a verdict.
    gossip_overflow,
    /// Envelopes published.
    gossip_published,
    /// Publications that failed (no subscribed peer, duplicate, too large).
    gossip_publish_failures,
    /// Manifest requests sent.
    fetch_manifest_requests,
    /// Chunk requests sent.
    fetch_chunk_requests,
    /// Chunk requests that failed (connection closed, timeout, refused, not found).
    fetch_chunk_failures,
    /// Chunks verified and stored.
    fetch_chunks_stored,
    /// Payloads completed by a fetch.
    fetch_completed,
    /// Fetch requests served (manifests and chunks).
    fetch_served,
    /// Bytes of manifests and chunks served.
    fetch_bytes_served,
    /// Store errors (payload store calls that failed).
    store_errors,
}
