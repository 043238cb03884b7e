//! The agency node: networking, storage and the relay driver.

pub mod net;
