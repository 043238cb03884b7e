//! The store as the network layer's [`PayloadStore`]: sealed manifests in `Payloads`,
//! ciphertext chunks in `Chunks`, written through the group-commit writer so that every
//! `put_*` is durable on return.

use std::io;

use lienthong_protocol::relay::store::Column;
use lienthong_protocol::seal::{ChunkId, PayloadId};

use super::{Store, StoreError, WriteOp};
use crate::net::PayloadStore;

fn io_error(e: StoreError) -> io::Error {
    io::Error::other(e)
}

impl Store {
    /// Writes `ops` durably from a blocking context (the network layer calls the payload
    /// store from tokio's blocking pool, where waiting on the writer is allowed).
    fn write_blocking(&self, ops: Vec<WriteOp>) -> io::Result<()> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| io::Error::other("payload writes need a tokio runtime"))?;
        handle.block_on(self.write(ops)).map_err(io_error)
    }
}

impl PayloadStore for Store {
    fn get_manifest(&self, id: &PayloadId) -> io::Result<Option<Vec<u8>>> {
        self.get(Column::Payloads, &id.0).map_err(io_error)
    }

    fn put_manifest(&self, id: &PayloadId, bytes: &[u8]) -> io::Result<()> {
        self.write_blocking(vec![WriteOp::Put {
            family: Column::Payloads,
            key: id.0.to_vec(),
            value: bytes.to_vec(),
        }])
    }

    fn has_chunk(&self, id: &ChunkId) -> io::Result<bool> {
        self.get(Column::Chunks, &id.0)
            .map(|v| v.is_some())
            .map_err(io_error)
    }

    fn get_chunk(&self, id: &ChunkId) -> io::Result<Option<Vec<u8>>> {
        self.get(Column::Chunks, &id.0).map_err(io_error)
    }

    fn put_chunk(&self, id: &ChunkId, bytes: &[u8]) -> io::Result<()> {
        self.write_blocking(vec![WriteOp::Put {
            family: Column::Chunks,
            key: id.0.to_vec(),
            value: bytes.to_vec(),
        }])
    }
}
