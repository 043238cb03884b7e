//! The relay core (DESIGN §5): delivery, custody, retries, deduplication and status
//! handling as a deterministic state machine, fed with events and the current time and
//! returning actions. No I/O, clock or randomness inside: the node drives it over libp2p
//! and RocksDB, the simulator over an in-memory network and store.

pub mod store;
