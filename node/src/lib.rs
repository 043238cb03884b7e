//! `lienthong-node`: the agency node. The binary `lienthong` (daemon and CLI) is built on
//! this library.
//!
//! - [`admin`]: the operator's commands on the node's own files: public keys against a
//!   roster, backup (live through [`control`], or offline) and restore.
//! - [`api`]: the DMS-facing HTTP API (axum): send, inbox, documents, statuses, trace,
//!   agencies, health, metrics, OpenAPI; bearer tokens per tenant; RFC 9457 problems.
//! - [`audit`]: the auditor: mirror a central node's log, replay and verify it offline,
//!   report per agency; [`audit_cli`] is its `lienthong audit` command line.
//! - [`cli`]: the CLI's client subcommands (send, inbox, show, status, trace, recall,
//!   agencies) over the HTTP API.
//! - [`config`]: the node configuration file, overrides and validation.
//! - [`control`]: the running node's local control socket (backups while it runs).
//! - [`driver`]: runs the sans-I/O relay core on its own thread against the store and the
//!   network.
//! - [`federation`]: generates a local federation (keys, signed genesis roster, node
//!   setups) for devnets and tests.
//! - [`hub_compat`]: the optional listener speaking the national hub SDK's wire protocol
//!   (`XroadVnpt-*` headers, HMAC-signed), so an existing DMS only changes its endpoint.
//! - [`ledger`]: the ledger client: durable per-log submission queues, inclusion and
//!   consistency proofs, checkpoint gossip and split-view alarms.
//! - [`net`]: the thin libp2p layer (transports, allow-list, gossipsub, request-response
//!   for relay messages and payload fetch, circuit relay client); no delivery decisions.
//! - [`node`]: the node assembled (store, driver, network, roster) and the pumps between
//!   them; central nodes run it with no tenants.
//! - [`send`]: the send path (validate, seal, store the payload, submit).
//! - [`store`]: the durable store (RocksDB): one column family per relay
//!   [`Column`](lienthong_protocol::relay::store::Column) plus the payload chunks, written by
//!   one writer thread with group commit (many batches, one fsync).

pub mod admin;
pub mod api;
pub mod audit;
pub mod audit_cli;
pub mod cli;
pub mod config;
pub mod control;
pub mod driver;
pub mod federation;
pub mod http_body;
pub mod hub_compat;
pub mod ledger;
pub mod local_ports;
pub mod net;
pub mod node;
pub mod send;
pub mod store;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): the binaries' logging
/// (`lienthong`, `lienthong-bootstrap`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}
