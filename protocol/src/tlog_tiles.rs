//! C2SP tlog-tiles (c2sp.org/tlog-tiles), pure helpers: tile and entry-bundle paths, which
//! tiles a tree has, reading Merkle hashes out of tiles (a tile-backed
//! [`HashSource`]), and the entry-bundle encoding. Fetching and serving are elsewhere.
//!
//! A tile at tile level `L`, index `N` holds up to 256 consecutive hashes of Merkle level `8 L`:
//! `MTH(D[(N*256 + i) * 256^L : (N*256 + i + 1) * 256^L])`. Partial tiles (width 1..=255) sit on
//! the right edge of a tree.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::rfc6962::{HASH_SIZE, Hash, HashSource, ProofError, TreeBuilder};

/// Merkle levels per tile level.
pub const TILE_HEIGHT: u32 = 8;

/// Hashes in a full tile; entries in a full bundle.
pub const TILE_WIDTH: u16 = 256;

/// Highest tile level a path may name.
pub const MAX_TILE_LEVEL: u8 = 63;

/// Largest entry an entry bundle can hold (u16 length prefix).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// Errors from tile paths, tile data and entry bundles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// A tile path is malformed or not canonical.
    #[error("tile path {path:?}: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Tile level above [`MAX_TILE_LEVEL`].
    #[error("tile level {level} is above the limit of {max}")]
    LevelTooLarge {
        /// Level asked.
        level: u8,
        /// The limit.
        max: u8,
    },
    /// Width outside `1..=256`.
    #[error("tile width {width} must be between 1 and 256")]
    BadWidth {
        /// Width asked.
        width: u16,
    },
    /// Tile data is not `width * 32` bytes.
    #[error("tile data is {got} bytes, expected {expected} for its width")]
    WrongDataLength {
        /// Bytes given.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The node is not inside the tree, or not in the tile given.
    #[error("node at level {level}, index {index} is not in tile {tile}")]
    NodeNotInTile {
        /// Node level.
        level: u8,
        /// Node index.
        index: u64,
        /// The tile path.
        tile: String,
    },
    /// The node is not inside a tree of the given size.
    #[error("node at level {level}, index {index} is not inside a tree of size {size}")]
    NodeOutOfRange {
        /// Node level.
        level: u8,
        /// Node index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// An entry is longer than [`MAX_ENTRY_LEN`].
    #[error("entry {index} is {len} bytes, more than the limit of {max}")]
    EntryTooLong {
        /// Position in the bundle.
        index: usize,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More entries than [`TILE_WIDTH`].
    #[error("entry bundle has more than {max} entries")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// An entry bundle ends inside a length prefix or an entry.
    #[error("entry bundle is truncated at byte {offset}")]
    TruncatedBundle {
        /// Where the missing bytes start.
        offset: usize,
    },
    /// A proof computation failed (for example a tile is missing).
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileKind {
    /// Merkle hashes at tile level `level` (Merkle level `8 * level`).
    Hashes {
        /// Tile level, `0..=63`.
        level: u8,
    },
    /// An entry bundle (the entries behind level-0 tile of the same index).
    Entries,
}

/// A tile or entry bundle: kind, index and width (256 for full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Hashes or entries.
    pub kind: TileKind,
    /// Index within its level.
    pub index: u64,
    /// Number of hashes or entries, `1..=256`.
    pub width: u16,
}

fn check_width(width: u16) -> Result<(), TileError> {
    if (1..=TILE_WIDTH).contains(&width) {
        Ok(())
    } else {
        Err(TileError::BadWidth { width })
    }
}

impl TileId {
    /// A hash tile.
    ///
    /// # Errors
    /// [`TileError::LevelTooLarge`] or [`TileError::BadWidth`].
    pub fn hashes(level: u8, index: u64, width: u16) -> Result<Self, TileError> {
        if level > MAX_TILE_LEVEL {
            return Err(TileError::LevelTooLarge {
                level,
                max: MAX_TILE_LEVEL,
            });
        }
        check_width(width)?;
        Ok(Self {
            kind: TileKind::Hashes { level },
            index,
            width,
        })
    }

    /// An entry bundle.
    ///
    /// # Errors
    /// [`TileError::BadWidth`].
    pub fn entries(index: u64, width: u16) -> Result<Self, TileError> {
        check_width(width)?;
        Ok(Self {
            kind: TileKind::Entries,
            index,
            width,
        })
    }

    /// Whether the tile has fewer than 256 hashes or entries.
    #[must_use]
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// The full tile at the same position.
    #[must_use]
    pub fn full(&self) -> Self {
        Self {
            width: TILE_WIDTH,
            ..*self
        }
    }

    /// The path under the log prefix: `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`.
    #[must_use]
    pub fn path(&self) -> String {
        let mut p = match self.kind {
            TileKind::Hashes { level } => format!("tile/{level}/"),
            TileKind::Entries => "tile/entries/".to_owned(),
        };
        p.push_str(&encode_index(self.index));
        if self.is_partial() {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Parses a tile path (without the log prefix), accepting only the canonical form.
    /// Never panics.
    ///
    /// # Errors
    /// [`TileError::BadPath`].
    pub fn parse_path(path: &str) -> Result<Self, TileError> {
        let bad = |reason| TileError::BadPath {
            path: path.chars().take(200).collect(),
            reason,
        };
        if path.len() > 100 {
            return Err(bad("longer than any tile path"));
        }
        let rest = path
            .strip_prefix("tile/")
            .ok_or(bad("must start with tile/"))?;
        let (first, rest) = rest.split_once('/').ok_or(bad("missing tile index"))?;
        let kind = if first == "entries" {
            TileKind::Entries
        } else {
            let level = parse_decimal(first).ok_or(bad("level must be decimal 0..=63"))?;
            let level = u8::try_from(level)
                .ok()
                .filter(|l| *l <= MAX_TILE_LEVEL)
                .ok_or(bad("level must be decimal 0..=63"))?;
            TileKind::Hashes { level }
        };
        let mut segments = rest.split('/');
        let mut index: u64 = 0;
        let mut width = TILE_WIDTH;
        loop {
            let seg = segments.next().ok_or(bad("missing final index element"))?;
            if let Some(d) = seg.strip_prefix('x') {
                index = push_digits(index, d).ok_or(bad("index elements must be x + 3 digits"))?;
                continue;
            }
            let (digits, partial) = match seg.strip_suffix(".p") {
                Some(d) => (d, true),
                None => (seg, false),
            };
            index =
                push_digits(index, digits).ok_or(bad("final index element must be 3 digits"))?;
            if partial {
                let w = segments.next().ok_or(bad("missing width after .p"))?;
                width = parse_decimal(w)
                    .and_then(|w| u16::try_from(w).ok())
                    .filter(|w| (1..TILE_WIDTH).contains(w))
                    .ok_or(bad("partial width must be decimal 1..=255"))?;
            }
            break;
        }
        if segments.next().is_some() {
            return Err(bad("trailing path elements"));
        }
        let id = Self { kind, index, width };
        if id.path() != path {
            return Err(bad("not in canonical form"));
        }
        Ok(id)
    }

    /// The tile at tile level `level` holding hash index `index` in a tree of `size` leaves,
    /// with the width it has at that size. `None` if the tile is empty at that size.
    #[must_use]
    pub fn at_size(level: u8, tile_index: u64, size: u64) -> Option<Self> {
        let total = hashes_at_tile_level(size, level)?;
        let start = u128::from(tile_index) * u128::from(TILE_WIDTH);
        let avail = u128::from(total).checked_sub(start)?;
        let width = u16::try_from(avail.min(u128::from(TILE_WIDTH))).ok()?;
        Self::hashes(level, tile_index, width).ok()
    }
}

impl std::fmt::Display for TileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path())
    }
}

/// Number of Merkle hashes at Merkle level `8 * tile_level` in a tree of `size` leaves.
fn hashes_at_tile_level(size: u64, tile_level: u8) -> Option<u64> {
    let shift = u32::from(tile_level) * TILE_HEIGHT;
    if shift >= 64 {
        Some(0)
    } else {
        Some(size >> shift)
    }
}

/// Canonical decimal (no leading zeroes, no sign), at most 20 digits.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// `acc * 1000 + d` where `d` is exactly three ASCII digits.
fn push_digits(acc: u64, d: &str) -> Option<u64> {
    if d.len() != 3 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    acc.checked_mul(1000)?.checked_add(d.parse::<u64>().ok()?)
}

/// Encodes a tile index as 3-digit path elements, all but the last prefixed with `x`:
/// `1234067` becomes `x001/x234/067`.
#[must_use]
pub fn encode_index(index: u64) -> String {
    let mut groups = Vec::with_capacity(7);
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(groups.len() * 5);
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            out.push_str(&format!("x{g:03}/"));
        } else {
            out.push_str(&format!("{g:03}"));
        }
    }
    out
}

/// Hash tiles (or, with `entries`, entry bundles) that differ between a tree of `old_size`
/// and one of `new_size`: the tiles a log writes when it grows. With `old_size = 0`, every
/// tile of the tree.
#[must_use]
pub fn new_tiles(old_size: u64, new_size: u64, entries: bool) -> Vec<TileId> {
    let mut out = Vec::new();
    if new_size <= old_size {
        return out;
    }
    let width = u64::from(TILE_WIDTH);
    for level in 0..=MAX_TILE_LEVEL {
        let (Some(old_n), Some(new_n)) = (
            hashes_at_tile_level(old_size, level),
            hashes_at_tile_level(new_size, level),
        ) else {
            break;
        };
        if new_n == 0 {
            break;
        }
        if old_n != new_n {
            let kind = if entries {
                TileKind::Entries
            } else {
                TileKind::Hashes { level }
            };
            for index in old_n / width..new_n / width {
                out.push(TileId {
                    kind,
                    index,
                    width: TILE_WIDTH,
                });
            }
            let last = new_n / width;
            let w = new_n % width;
            if w > 0 {
                out.push(TileId {
                    kind,
                    index: last,
                    width: u16::try_from(w).unwrap_or(TILE_WIDTH),
                });
            }
        }
        if entries {
            break;
        }
    }
    out
}

/// Which tile, at a tree of `size` leaves, holds the Merkle node `(level, index)`, and the
/// range of tile hashes `[offset, offset + count)` whose perfect subtree is that node.
///
/// # Errors
/// [`TileError::NodeOutOfRange`] if the node is not a complete subtree of the tree.
pub fn tile_for_node(level: u8, index: u64, size: u64) -> Result<(TileId, u16, u16), TileError> {
    let out_of_range = TileError::NodeOutOfRange { level, index, size };
    if u32::from(level) >= 64 || (u128::from(index) + 1) << level > u128::from(size) {
        return Err(out_of_range);
    }
    let tile_level = level / 8;
    let sub = u32::from(level % 8);
    let first = u128::from(index) << sub;
    let tile_index =
        u64::try_from(first / u128::from(TILE_WIDTH)).map_err(|_| out_of_range.clone())?;
    let offset = u16::try_from(first % u128::from(TILE_WIDTH)).map_err(|_| out_of_range.clone())?;
    let count = 1u16 << sub;
    let tile = TileId::at_size(tile_level, tile_index, size).ok_or(out_of_range)?;
    Ok((tile, offset, count))
}

/// Splits tile data into hashes, checking it is exactly `tile.width * 32` bytes.
///
/// # Errors
/// [`TileError::WrongDataLength`].
pub fn tile_hashes<'a>(
    tile: &TileId,
    data: &'a [u8],
) -> Result<impl Iterator<Item = Hash> + 'a, TileError> {
    let expected = usize::from(tile.width) * HASH_SIZE;
    if data.len() != expected {
        return Err(TileError::WrongDataLength {
            got: data.len(),
            expected,
        });
    }
    Ok(data.chunks_exact(HASH_SIZE).map(|c| {
        let mut h = [0u8; HASH_SIZE];
        h.copy_from_slice(c);
        h
    }))
}

/// Reads the Merkle node `(level, index)` out of the data of `tile`. The tile may be the
/// partial tile named by [`tile_for_node`] or any wider version of it, including the full one.
///
/// # Errors
/// [`TileError::WrongDataLength`] or [`TileError::NodeNotInTile`].
pub fn hash_from_tile(
    tile: &TileId,
    data: &[u8],
    level: u8,
    index: u64,
) -> Result<Hash, TileError> {
    let not_in = || TileError::NodeNotInTile {
        level,
        index,
        tile: tile.path(),
    };
    let TileKind::Hashes { level: tile_level } = tile.kind else {
        return Err(not_in());
    };
    if tile_level != level / 8 {
        return Err(not_in());
    }
    let sub = u32::from(level % 8);
    let first = u128::from(index) << sub;
    if first / u128::from(TILE_WIDTH) != u128::from(tile.index) {
        return Err(not_in());
    }
    let offset = usize::try_from(first % u128::from(TILE_WIDTH)).map_err(|_| not_in())?;
    let count = 1usize << sub;
    if offset + count > usize::from(tile.width) {
        return Err(not_in());
    }
    let mut b = TreeBuilder::new();
    for h in tile_hashes(tile, data)?.skip(offset).take(count) {
        b.push_leaf_hash(h);
    }
    Ok(b.root())
}

/// Builds the data of `tile` (a hash tile) from a hash source holding the tree.
///
/// # Errors
/// [`TileError::Proof`] if the source lacks a node; [`TileError::NodeNotInTile`] for an entry
/// bundle id.
pub fn tile_data<S: HashSource + ?Sized>(source: &S, tile: &TileId) -> Result<Vec<u8>, TileError> {
    let TileKind::Hashes { level } = tile.kind else {
        return Err(TileError::NodeNotInTile {
            level: 0,
            index: tile.index,
            tile: tile.path(),
        });
    };
    let merkle_level = level.saturating_mul(8);
    let mut out = Vec::with_capacity(usize::from(tile.width) * HASH_SIZE);
    for i in 0..u64::from(tile.width) {
        let index = tile
            .index
            .checked_mul(u64::from(TILE_WIDTH))
            .and_then(|x| x.checked_add(i))
            .ok_or(ProofError::MissingNode {
                level: merkle_level,
                index: u64::MAX,
            })?;
        let h = source
            .node(merkle_level, index)
            .ok_or(ProofError::MissingNode {
                level: merkle_level,
                index,
            })?;
        out.extend_from_slice(&h);
    }
    Ok(out)
}

/// Somewhere tiles can be looked up, for example tiles already fetched from a mirror.
pub trait TileStore {
    /// Data of the tile, if held.
    fn tile(&self, id: &TileId) -> Option<&[u8]>;
}

impl TileStore for HashMap<TileId, Vec<u8>> {
    fn tile(&self, id: &TileId) -> Option<&[u8]> {
        self.get(id).map(Vec::as_slice)
    }
}

impl TileStore for BTreeMap<TileId, Vec<u8>> {
    fn tile(&self, id: &TileId) -> Option<&[u8]> {
        self.get(id).map(Vec::as_slice)
    }
}

/// A [`HashSource`] reading nodes of a tree of `size` leaves out of stored tiles. A partial
/// tile that is not held is looked up as the full tile instead.
#[derive(Debug)]
pub struct TileHashSource<'a, T: ?Sized> {
    store: &'a T,
    size: u64,
}

impl<'a, T: TileStore + ?Sized> TileHashSource<'a, T> {
    /// Nodes of the tree of `size` leaves, from `store`.
    pub fn new(store: &'a T, size: u64) -> Self {
        Self { store, size }
    }
}

impl<T: TileStore + ?Sized> HashSource for TileHashSource<'_, T> {
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        let (tile, _, _) = tile_for_node(level, index, self.size).ok()?;
        if let Some(h) = self
            .store
            .tile(&tile)
            .and_then(|data| hash_from_tile(&tile, data, level, index).ok())
        {
            return Some(h);
        }
        let full = tile.full();
        let data = self.store.tile(&full)?;
        hash_from_tile(&full, data, level, index).ok()
    }
}

/// Records which nodes a computation asks for, answering with zero hashes.
#[derive(Debug, Default)]
struct Recorder {
    nodes: RefCell<Vec<(u8, u64)>>,
}

impl HashSource for Recorder {
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        self.nodes.borrow_mut().push((level, index));
        Some([0; HASH_SIZE])
    }
}

fn tiles_for_nodes(nodes: &[(u8, u64)], size: u64) -> Result<Vec<TileId>, TileError> {
    let mut tiles = Vec::new();
    for &(level, index) in nodes {
        let (t, _, _) = tile_for_node(level, index, size)?;
        if !tiles.contains(&t) {
            tiles.push(t);
        }
    }
    Ok(tiles)
}

/// Tiles (at `size`) needed to compute the root of the tree of `size` leaves.
///
/// # Errors
/// [`TileError::NodeOutOfRange`] never in practice; kept for uniformity.
pub fn tiles_for_root(size: u64) -> Result<Vec<TileId>, TileError> {
    let r = Recorder::default();
    crate::rfc6962::root(&r, size)?;
    tiles_for_nodes(&r.nodes.borrow(), size)
}

/// Tiles (at `size`) needed to build the inclusion proof of leaf `index`.
///
/// # Errors
/// [`TileError::Proof`] if `index >= size`.
pub fn tiles_for_inclusion_proof(index: u64, size: u64) -> Result<Vec<TileId>, TileError> {
    let r = Recorder::default();
    crate::rfc6962::inclusion_proof(&r, index, size)?;
    tiles_for_nodes(&r.nodes.borrow(), size)
}

/// Tiles (at `new_size`) needed to build the consistency proof from `old_size` to `new_size`.
///
/// # Errors
/// [`TileError::Proof`] if `old_size > new_size`.
pub fn tiles_for_consistency_proof(old_size: u64, new_size: u64) -> Result<Vec<TileId>, TileError> {
    let r = Recorder::default();
    crate::rfc6962::consistency_proof(&r, old_size, new_size)?;
    tiles_for_nodes(&r.nodes.borrow(), new_size)
}

/// Appends one entry (u16 big-endian length, then bytes) to a bundle being built.
///
/// # Errors
/// [`TileError::EntryTooLong`].
pub fn append_bundle_entry(bundle: &mut Vec<u8>, entry: &[u8]) -> Result<(), TileError> {
    let len = u16::try_from(entry.len()).map_err(|_| TileError::EntryTooLong {
        index: 0,
        len: entry.len(),
        max: MAX_ENTRY_LEN,
    })?;
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// Encodes an entry bundle of at most 256 entries.
///
/// # Errors
/// [`TileError::TooManyEntries`] or [`TileError::EntryTooLong`].
pub fn encode_entry_bundle<T: AsRef<[u8]>>(entries: &[T]) -> Result<Vec<u8>, TileError> {
    if entries.len() > usize::from(TILE_WIDTH) {
        return Err(TileError::TooManyEntries {
            max: usize::from(TILE_WIDTH),
        });
    }
    let total: usize = entries.iter().map(|e| e.as_ref().len() + 2).sum();
    let mut out = Vec::with_capacity(total);
    for (index, e) in entries.iter().enumerate() {
        append_bundle_entry(&mut out, e.as_ref()).map_err(|_| TileError::EntryTooLong {
            index,
            len: e.as_ref().len(),
            max: MAX_ENTRY_LEN,
        })?;
    }
    Ok(out)
}

/// Splits an entry bundle into its entries (borrowed). At most 256 entries, no trailing bytes.
/// Never panics.
///
/// # Errors
/// [`TileError::TruncatedBundle`] or [`TileError::TooManyEntries`].
pub fn parse_entry_bundle(data: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if out.len() >= usize::from(TILE_WIDTH) {
            return Err(TileError::TooManyEntries {
                max: usize::from(TILE_WIDTH),
            });
        }
        let offset = data.len() - rest.len();
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(TileError::TruncatedBundle { offset });
        };
        let len = usize::from(u16::from_be_bytes(*len));
        let Some((entry, tail)) = tail.split_at_checked(len) else {
            return Err(TileError::TruncatedBundle { offset: offset + 2 });
        };
        out.push(entry);
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;
    use crate::rfc6962::{MemoryTree, inclusion_proof, root};

    #[test]
    fn index_encoding_spec_example() {
        assert_eq!(encode_index(1_234_067), "x001/x234/067");
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(999), "999");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(encode_index(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
        let t = TileId::hashes(0, 1_234_067, 256).unwrap();
        assert_eq!(t.path(), "tile/0/x001/x234/067");
        assert_eq!(TileId::hashes(1, 5, 17).unwrap().path(), "tile/1/005.p/17");
        assert_eq!(
            TileId::entries(1000, 3).unwrap().path(),
            "tile/entries/x001/000.p/3"
        );
    }

    #[test]
    fn path_parsing_is_canonical() {
        for p in [
            "tile/0/000",
            "tile/0/x001/x234/067",
            "tile/63/255.p/255",
            "tile/entries/x001/000.p/3",
            "tile/entries/x018/x446/x744/x073/x709/x551/615",
        ] {
            assert_eq!(TileId::parse_path(p).unwrap().path(), p);
        }
        for p in [
            "",
            "tile/",
            "tile/0",
            "tile/0/",
            "tile/00/000",
            "tile/64/000",
            "tile/0/0",
            "tile/0/0000",
            "tile/0/x000/001",
            "tile/0/001/x001",
            "tile/0/x001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/017",
            "tile/0/001.p/",
            "tile/0/001/extra",
            "tile/entries/x018/x446/x744/x073/x709/x551/616",
            "tile/-1/000",
            "tiles/0/000",
            "tile/0/+01",
        ] {
            assert!(TileId::parse_path(p).is_err(), "{p}");
        }
    }

    #[test]
    fn spec_tile_counts_for_70000() {
        let tiles = new_tiles(0, 70_000, false);
        let count = |l: u8, w: u16| {
            tiles
                .iter()
                .filter(|t| t.kind == TileKind::Hashes { level: l } && t.width == w)
                .count()
        };
        assert_eq!(count(0, 256), 273);
        assert_eq!(count(0, 112), 1);
        assert_eq!(count(1, 256), 1);
        assert_eq!(count(1, 17), 1);
        assert_eq!(count(2, 1), 1);
        assert_eq!(tiles.len(), 277);
        let t256 = new_tiles(0, 256, false);
        assert_eq!(
            t256,
            vec![
                TileId::hashes(0, 0, 256).unwrap(),
                TileId::hashes(1, 0, 1).unwrap()
            ]
        );
        assert_eq!(
            new_tiles(256, 300, false),
            vec![TileId::hashes(0, 1, 44).unwrap()]
        );
        assert_eq!(
            new_tiles(0, 300, true),
            vec![
                TileId::entries(0, 256).unwrap(),
                TileId::entries(1, 44).unwrap()
            ]
        );
        assert!(new_tiles(5, 5, false).is_empty());
    }

    #[test]
    fn proofs_from_tiles_match_memory_tree() {
        let size = 70_000u64;
        let tree = MemoryTree::from_entries((0..size).map(|i| i.to_le_bytes()));
        let mut store: HashMap<TileId, Vec<u8>> = HashMap::new();
        for t in new_tiles(0, size, false) {
            store.insert(t, tile_data(&tree, &t).unwrap());
        }
        let src = TileHashSource::new(&store, size);
        assert_eq!(root(&src, size).unwrap(), tree.root());
        for index in [0, 1, 255, 256, 65_535, 65_536, 69_999] {
            assert_eq!(
                inclusion_proof(&src, index, size).unwrap(),
                tree.inclusion_proof(index, size).unwrap()
            );
            let need = tiles_for_inclusion_proof(index, size).unwrap();
            assert!(need.iter().all(|t| store.contains_key(t)));
        }
        for old in [1, 255, 256, 257, 65_536, 69_000] {
            assert_eq!(
                crate::rfc6962::consistency_proof(&src, old, size).unwrap(),
                tree.consistency_proof(old, size).unwrap()
            );
        }
        // An older tree size, answered by full tiles standing in for old partial ones.
        let src_old = TileHashSource::new(&store, 1000);
        assert_eq!(root(&src_old, 1000).unwrap(), tree.root_at(1000).unwrap());
        assert_eq!(
            tiles_for_root(256).unwrap(),
            vec![TileId::hashes(1, 0, 1).unwrap()]
        );
    }

    #[test]
    fn hash_from_tile_checks() {
        let t = TileId::hashes(0, 0, 2).unwrap();
        assert_eq!(
            hash_from_tile(&t, &[0; 63], 0, 0),
            Err(TileError::WrongDataLength {
                got: 63,
                expected: 64
            })
        );
        assert!(hash_from_tile(&t, &[0; 64], 0, 2).is_err());
        assert!(hash_from_tile(&t, &[0; 64], 8, 0).is_err());
        assert!(tile_for_node(0, 5, 5).is_err());
        assert!(tile_for_node(63, 1, u64::MAX).is_err());
        let (tile, off, count) = tile_for_node(3, 33, 70_000).unwrap();
        assert_eq!(
            (tile, off, count),
            (TileId::hashes(0, 1, 256).unwrap(), 8, 8)
        );
    }

    #[test]
    fn entry_bundles() {
        let entries: Vec<Vec<u8>> = vec![vec![], b"a".to_vec(), vec![7; 300]];
        let b = encode_entry_bundle(&entries).unwrap();
        assert_eq!(&b[..5], &[0, 0, 0, 1, b'a']);
        let back = parse_entry_bundle(&b).unwrap();
        assert_eq!(back, entries.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(
            parse_entry_bundle(&b[..b.len() - 1]),
            Err(TileError::TruncatedBundle { offset: 7 })
        );
        assert_eq!(
            parse_entry_bundle(&[0]),
            Err(TileError::TruncatedBundle { offset: 0 })
        );
        assert!(encode_entry_bundle(&[vec![0u8; 65_536]]).is_err());
        assert!(encode_entry_bundle(&vec![vec![0u8]; 257]).is_err());
        assert_eq!(
            parse_entry_bundle(&[0u8; 2 * 257]),
            Err(TileError::TooManyEntries { max: 256 })
        );
    }
}
