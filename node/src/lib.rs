//! `lienthong-node`: the agency node. The binary `lienthong` (daemon and CLI) is built on
//! this library.
//!
//! - [`audit`]: the auditor: mirror a central node's log, replay and verify it offline,
//!   report per agency; [`audit_cli`] is its `lienthong audit` command line.
//! - [`driver`]: runs the sans-I/O relay core on its own thread against the store and the
//!   network.
//! - [`net`]: the thin libp2p layer (transports, allow-list, gossipsub, request-response
//!   for relay messages and payload fetch, circuit relay client); no delivery decisions.
//! - [`send`]: the send path (validate, seal, store the payload, submit).
//! - [`store`]: the durable store (RocksDB): one column family per relay
//!   [`Column`](lienthong_protocol::relay::store::Column) plus the payload chunks, written by
//!   one writer thread with group commit (many batches, one fsync).

pub mod audit;
pub mod audit_cli;
pub mod driver;
pub mod net;
pub mod send;
pub mod store;
