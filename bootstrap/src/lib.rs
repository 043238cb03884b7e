//! `lienthong-bootstrap`: the central node. This crate holds its audit ledger (DESIGN §6):
//! one append-only, witnessed log per central node.
//!
//! - [`store`]: the RocksDB database (one column family per kind of record).
//! - [`log`]: the durable log: group-committed appends, RFC 6962 tree, tiles, proofs.
//! - [`checkpoint`]: signed checkpoints of the log and the cosignatures collected on them.
//! - [`witness`]: polling, checking and cosigning the other central nodes' logs; alarms.
//! - [`http`]: the C2SP tlog-tiles HTTP interface, submissions, proofs, witnessing.
//! - [`ceremony`]: roster ceremonies (genesis, proposals, k-of-n signing, publishing).
//! - [`config`]: TOML configuration and key files.
//! - [`node`]: all of the above started and stopped together.

pub mod ceremony;
pub mod checkpoint;
pub mod config;
pub mod http;
pub mod log;
pub mod node;
pub mod store;
pub mod witness;
