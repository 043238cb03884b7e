//! The right edge of the tile tree kept by the writer: for every tile level, the hashes of its
//! rightmost, not yet full tile. Each appended leaf hash goes into level 0; when a tile fills,
//! its root (the Merkle node 8 levels up) goes into the next tile level and the full tile is
//! handed out to be written once.

use lienthong_protocol::rfc6962::{HASH_SIZE, Hash, TreeBuilder};
use lienthong_protocol::tlog_tiles::TILE_WIDTH;

use crate::store::{Family, Store, StoreError, tile_key};

const WIDTH: usize = TILE_WIDTH as usize;

/// A tile to write: level, index, data.
pub(crate) type TileWrite = (u8, u64, Vec<u8>);

#[derive(Debug, Default)]
pub(crate) struct TileEdge {
    /// `partial[l]`: hashes of the rightmost incomplete tile at tile level `l`.
    partial: Vec<Vec<Hash>>,
    /// `counts[l]`: hashes pushed at tile level `l` so far (`size >> 8 l`).
    counts: Vec<u64>,
    /// Levels whose partial tile changed since [`TileEdge::take_writes`].
    dirty: Vec<bool>,
    /// Full tiles completed since [`TileEdge::take_writes`].
    full: Vec<TileWrite>,
}

fn encode(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

impl TileEdge {
    /// Restores the edge of a tree of `size` leaves from the stored partial tiles.
    pub(crate) fn restore(store: &Store, size: u64) -> Result<Self, StoreError> {
        let mut edge = Self::default();
        let mut level: u8 = 0;
        loop {
            let shift = u32::from(level) * 8;
            let count = if shift >= 64 { 0 } else { size >> shift };
            if count == 0 {
                break;
            }
            let width = usize::try_from(count % TILE_WIDTH as u64).unwrap_or(0);
            let mut hashes = Vec::with_capacity(WIDTH);
            if width > 0 {
                let index = count / u64::from(TILE_WIDTH);
                let data = store
                    .get(Family::Tiles, &tile_key(level, index))?
                    .unwrap_or_default();
                if data.len() != width * HASH_SIZE {
                    return Err(store.corrupt(format!(
                        "tile {level}/{index} holds {} bytes, the tree of {size} leaves needs {}",
                        data.len(),
                        width * HASH_SIZE
                    )));
                }
                hashes.extend(
                    data.chunks_exact(HASH_SIZE)
                        .filter_map(|c| Hash::try_from(c).ok()),
                );
            }
            edge.partial.push(hashes);
            edge.counts.push(count);
            edge.dirty.push(false);
            level = level.saturating_add(1);
        }
        Ok(edge)
    }

    /// Adds a leaf hash.
    pub(crate) fn push_leaf(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0usize;
        loop {
            if self.partial.len() <= level {
                self.partial.push(Vec::with_capacity(WIDTH));
                self.counts.push(0);
                self.dirty.push(false);
            }
            let (Some(row), Some(count), Some(dirty)) = (
                self.partial.get_mut(level),
                self.counts.get_mut(level),
                self.dirty.get_mut(level),
            ) else {
                return;
            };
            row.push(hash);
            *count += 1;
            *dirty = true;
            if row.len() < WIDTH {
                return;
            }
            // The tile is full: write it once, and carry its root one tile level up.
            let mut b = TreeBuilder::new();
            for h in row.iter() {
                b.push_leaf_hash(*h);
            }
            let index = (*count - 1) / u64::from(TILE_WIDTH);
            self.full
                .push((u8::try_from(level).unwrap_or(u8::MAX), index, encode(row)));
            row.clear();
            hash = b.root();
            level += 1;
        }
    }

    /// The tiles to write for what was pushed since the last call: every tile that filled,
    /// and the current partial tile of every level that changed.
    pub(crate) fn take_writes(&mut self) -> Vec<TileWrite> {
        let mut out = std::mem::take(&mut self.full);
        for (level, ((row, count), dirty)) in self
            .partial
            .iter()
            .zip(&self.counts)
            .zip(self.dirty.iter_mut())
            .enumerate()
        {
            if *dirty && !row.is_empty() {
                out.push((
                    u8::try_from(level).unwrap_or(u8::MAX),
                    count / u64::from(TILE_WIDTH),
                    encode(row),
                ));
            }
            *dirty = false;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use lienthong_protocol::rfc6962::{MemoryTree, leaf_hash};
    use lienthong_protocol::tlog_tiles::{TileId, new_tiles, tile_data};
    use std::collections::HashMap;

    #[test]
    fn edge_writes_the_tiles_of_the_spec() {
        let size = 70_000u64;
        let tree = MemoryTree::from_entries((0..size).map(|i| i.to_le_bytes()));
        let mut edge = TileEdge::default();
        let mut stored: HashMap<(u8, u64), Vec<u8>> = HashMap::new();
        for i in 0..size {
            edge.push_leaf(leaf_hash(&i.to_le_bytes()));
            if i % 777 == 0 || i + 1 == size {
                for (l, n, d) in edge.take_writes() {
                    stored.insert((l, n), d);
                }
            }
        }
        for t in new_tiles(0, size, false) {
            let lienthong_protocol::tlog_tiles::TileKind::Hashes { level } = t.kind else {
                unreachable!()
            };
            let want = tile_data(&tree, &t).unwrap();
            assert_eq!(stored[&(level, t.index)], want, "{t}");
        }
        assert_eq!(stored.len(), new_tiles(0, size, false).len());
        let _ = TileId::hashes(0, 0, 1);
    }
}
