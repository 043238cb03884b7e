//! Lienthong's pure protocol core: every type, encoding and check shared by agency nodes,
//! central nodes and auditors. Nothing here does I/O or reads a clock: time, randomness
//! and storage come in as arguments.

pub mod agency;
pub mod audit;
pub mod calendar;
pub mod cbor;
pub mod content_id;
pub mod document;
pub mod edxml;
pub mod envelope;
pub mod keys;
pub mod ledger;
pub mod relay;
pub mod rfc6962;
pub mod roster;
pub mod seal;
pub mod signed_note;
pub mod status;
pub mod tlog_checkpoint;
pub mod tlog_cosignature;
pub mod tlog_tiles;
