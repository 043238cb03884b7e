//! The agency node's networking layer (rust-libp2p).

pub mod codec;
