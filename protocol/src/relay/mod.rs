//! The relay core (DESIGN §5): delivery, custody, retries, deduplication and status
//! handling as a deterministic state machine, fed with events and the current time and
//! returning actions. No I/O, clock or randomness inside: the node drives it over libp2p
//! and RocksDB, the simulator over an in-memory network and store.

mod core;
pub mod records;
pub mod store;
pub mod wire;

pub use self::core::{
    Action, Content, Event, MetaRecord, Outcome, Relay, RelayConfig, RelayError, StatusPost,
    Submission, Tenant, Verdict, unit_topic,
};
