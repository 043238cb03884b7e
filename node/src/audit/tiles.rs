//! Streaming checks that a mirror's hash tiles agree with its entry bundles: each bundle's
//! leaf hashes against its level-0 tile, and each full tile's subtree root against the
//! hash one level up. One tile per level is held at a time.

use std::path::PathBuf;

use lienthong_protocol::rfc6962::{Hash, TreeBuilder, leaf_hash};
use lienthong_protocol::tlog_tiles::{MAX_TILE_LEVEL, TILE_WIDTH, TileId, tile_hashes};
use serde::Serialize;

use super::Mirror;

/// A file of the mirror that is missing or disagrees with the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TileProblem {
    /// The file (for a partial tile served as its full tile, the full tile's file).
    pub file: PathBuf,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for TileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.problem)
    }
}

/// A loaded tile: its id, the file read, and its hashes (`None` if unreadable).
type Loaded = (TileId, PathBuf, Option<Vec<Hash>>);

/// Checks hash tiles against bundles as the bundles stream by.
#[derive(Debug)]
pub struct TileCheck<'a> {
    mirror: &'a Mirror,
    size: u64,
    /// Per tile level: the tile currently loaded (id, file, hashes), or `None`.
    loaded: Vec<Option<Loaded>>,
    /// Problems found (at most `max_problems` kept).
    pub problems: Vec<TileProblem>,
    /// Problems found beyond those kept.
    pub problems_not_kept: u64,
    max_problems: usize,
}

impl<'a> TileCheck<'a> {
    /// Checks the tiles of a tree of `size` entries.
    pub fn new(mirror: &'a Mirror, size: u64) -> Self {
        Self {
            mirror,
            size,
            loaded: Vec::new(),
            problems: Vec::new(),
            problems_not_kept: 0,
            max_problems: 10_000,
        }
    }

    fn problem(&mut self, file: PathBuf, problem: String) {
        if self.problems.len() < self.max_problems {
            self.problems.push(TileProblem { file, problem });
        } else {
            self.problems_not_kept += 1;
        }
    }

    /// The hashes of tile `id`, loading it (and forgetting the previous one of its level).
    fn hashes(&mut self, level: u8, id: TileId) -> Option<&[Hash]> {
        let slot = usize::from(level);
        if self.loaded.len() <= slot {
            self.loaded.resize(slot + 1, None);
        }
        let current = self.loaded.get(slot).and_then(|s| s.as_ref()).map(|s| s.0);
        if current != Some(id) {
            let entry = match self.mirror.read_tile(&id) {
                Ok(Some((file, data))) => match tile_hashes(&id, &data) {
                    Ok(h) => (id, file, Some(h.collect())),
                    Err(e) => {
                        self.problem(file.clone(), format!("not a hash tile: {e}"));
                        (id, file, None)
                    }
                },
                Ok(None) => {
                    let file = self.mirror.tile_path(&id);
                    self.problem(file.clone(), "missing".into());
                    (id, file, None)
                }
                Err(e) => {
                    let file = self.mirror.tile_path(&id);
                    self.problem(file.clone(), e.to_string());
                    (id, file, None)
                }
            };
            if let Some(s) = self.loaded.get_mut(slot) {
                *s = Some(entry);
            }
        }
        self.loaded
            .get(slot)
            .and_then(|s| s.as_ref())
            .and_then(|s| s.2.as_deref())
    }

    fn file(&self, level: u8) -> PathBuf {
        self.loaded
            .get(usize::from(level))
            .and_then(|s| s.as_ref())
            .map(|s| s.1.clone())
            .unwrap_or_default()
    }

    /// The leaf hashes of bundle `index` (entries `256 * index ..`).
    pub fn bundle(&mut self, index: u64, leaves: &[Hash]) {
        let Some(id) = TileId::at_size(0, index, self.size) else {
            return;
        };
        let Some(hashes) = self.hashes(0, id) else {
            return;
        };
        let bad = hashes
            .iter()
            .zip(leaves)
            .position(|(a, b)| a != b)
            .map(|k| index * u64::from(TILE_WIDTH) + k as u64);
        let n = hashes.len();
        if let Some(entry) = bad {
            let f = self.file(0);
            self.problem(
                f,
                format!("the hash of entry {entry} differs from the entry bundle's entry"),
            );
            return;
        }
        if n != leaves.len() {
            return; // the bundle's length problem is reported by the reader
        }
        if n == usize::from(TILE_WIDTH) {
            let root = subtree_root(leaves);
            self.full_child(0, index, root);
        }
    }

    /// A full tile at `level`, index `index`, whose subtree root is `root`: compare with the
    /// tile above, and go up when that one is complete.
    fn full_child(&mut self, level: u8, index: u64, root: Hash) {
        let up = level + 1;
        if up > MAX_TILE_LEVEL {
            return;
        }
        let width = u64::from(TILE_WIDTH);
        let Some(id) = TileId::at_size(up, index / width, self.size) else {
            return;
        };
        let at = (index % width) as usize;
        let Some(hashes) = self.hashes(up, id) else {
            return;
        };
        let stored = hashes.get(at).copied();
        let complete = hashes.len() == usize::from(TILE_WIDTH) && at + 1 == hashes.len();
        let parent_root = complete.then(|| subtree_root(hashes));
        if stored != Some(root) {
            let f = self.file(up);
            self.problem(
                f,
                format!(
                    "hash {at} differs from the root of the tile below ({}/{index})",
                    if level == 0 {
                        "entries".to_string()
                    } else {
                        level.to_string()
                    }
                ),
            );
            return;
        }
        if let Some(r) = parent_root {
            self.full_child(up, index / width, r);
        }
    }
}

/// Root of a perfect subtree given its leaves (or child hashes), a power of two in number.
fn subtree_root(hashes: &[Hash]) -> Hash {
    let mut b = TreeBuilder::new();
    for h in hashes {
        b.push_leaf_hash(*h);
    }
    b.root()
}

/// Leaf hashes of a bundle's entries.
pub fn leaves<'e>(entries: impl IntoIterator<Item = &'e [u8]>) -> Vec<Hash> {
    entries.into_iter().map(leaf_hash).collect()
}
