//! `lienthong-node`: the agency node. The binary `lienthong` (daemon and CLI) is built on
//! this library.
//!
//! - [`store`]: the durable store (RocksDB): one column family per relay
//!   [`Column`](lienthong_protocol::relay::store::Column) plus the payload chunks, written by
//!   one writer thread with group commit (many batches, one fsync).

pub mod store;
