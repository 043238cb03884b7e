//! RFC 6962 / RFC 9162 Merkle tree hashing over SHA-256: leaf and node hashes, a streaming
//! tree builder, and inclusion and consistency proofs (generation and verification).
//!
//! Notation follows RFC 9162 §2.1: a tree of `size` leaves `D[0:size]`, `MTH` its root.
//! Perfect subtrees are addressed as `(level, index)`: the node at `level` covering leaves
//! `[index << level, (index + 1) << level)`. Level 0 nodes are leaf hashes. Proof generation
//! reads only perfect-subtree hashes through [`HashSource`], so the same code serves an
//! in-memory tree ([`MemoryTree`]), a database, or tiles fetched from a mirror
//! (see `tlog_tiles`).

use sha2::{Digest, Sha256};

/// A SHA-256 Merkle tree hash.
pub type Hash = [u8; 32];

/// Length in bytes of a [`Hash`].
pub const HASH_SIZE: usize = 32;

/// `MTH({})`: the root of the empty tree, SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Largest number of hashes a proof can hold for a tree of at most `2^64 - 1` leaves,
/// plus one for the seed hash of a consistency proof.
pub const MAX_PROOF_HASHES: usize = 65;

/// Errors from proof generation, verification and decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizeOrder {
        /// Size of the older tree.
        old_size: u64,
        /// Size of the newer tree.
        new_size: u64,
    },
    /// The proof does not have the number of hashes the sizes and index require.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongProofLength {
        /// Number of hashes the proof must have.
        expected: usize,
        /// Number of hashes given.
        got: usize,
    },
    /// The proof recomputes to a different root than the one given.
    #[error("proof does not lead to the expected root hash")]
    RootMismatch,
    /// The hash source does not hold a node the proof needs.
    #[error("hash source has no node at level {level}, index {index}")]
    MissingNode {
        /// Node level.
        level: u8,
        /// Node index at that level.
        index: u64,
    },
    /// A range is not a subtree of a tree rooted at leaf 0 (misaligned start).
    #[error(
        "range [{start}, {end}) is not a Merkle subtree: start must be a multiple of the largest power of two not above its length"
    )]
    UnalignedRange {
        /// First leaf of the range.
        start: u64,
        /// End of the range (exclusive).
        end: u64,
    },
    /// An encoded proof is not a whole number of 32-byte hashes.
    #[error("encoded proof length {len} is not a multiple of 32 bytes")]
    BadEncodingLength {
        /// Length of the encoded proof in bytes.
        len: usize,
    },
    /// An encoded proof has more hashes than any valid proof.
    #[error("encoded proof has {got} hashes, more than the limit of {max}")]
    TooManyHashes {
        /// Number of hashes in the encoding.
        got: usize,
        /// Limit, [`MAX_PROOF_HASHES`].
        max: usize,
    },
}

/// `MTH({d}) = SHA-256(0x00 || d)`: the hash of a leaf with contents `data`.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Largest power of two strictly smaller than `n` (`n >= 2`), the split point `k` of RFC 9162.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Number of significant bits of `x` (0 for 0).
fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// Source of perfect-subtree hashes for proof generation.
///
/// `node(level, index)` returns the hash of the perfect subtree covering leaves
/// `[index << level, (index + 1) << level)`, or `None` when the source does not have it.
/// Proof generation for a tree of size `n` only asks for subtrees that lie entirely within
/// `[0, n)`.
pub trait HashSource {
    /// Hash of the perfect subtree at `(level, index)`, if known.
    fn node(&self, level: u8, index: u64) -> Option<Hash>;
}

impl<F> HashSource for F
where
    F: Fn(u8, u64) -> Option<Hash>,
{
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        self(level, index)
    }
}

fn fetch<S: HashSource + ?Sized>(source: &S, level: u32, index: u64) -> Result<Hash, ProofError> {
    // `level` is at most 63 by construction (it is a bit position of a u64).
    let level = u8::try_from(level).unwrap_or(u8::MAX);
    source
        .node(level, index)
        .ok_or(ProofError::MissingNode { level, index })
}

/// `MTH(D[start:end])` for a range that is a subtree of some tree rooted at 0, i.e. `start` is a
/// multiple of the largest power of two not above `end - start`. Every range that appears in
/// RFC 9162 proofs has this shape. Reads one node per set bit of `end - start`.
///
/// # Errors
/// [`ProofError::MissingNode`] if the source lacks a needed node;
/// [`ProofError::UnalignedRange`] if the range is not a subtree. An empty range returns
/// [`EMPTY_ROOT`].
pub fn subtree_root<S: HashSource + ?Sized>(
    source: &S,
    start: u64,
    end: u64,
) -> Result<Hash, ProofError> {
    let len = end.saturating_sub(start);
    if len == 0 {
        return Ok(EMPTY_ROOT);
    }
    let top = 1u64 << (63 - len.leading_zeros());
    if !start.is_multiple_of(top) {
        return Err(ProofError::UnalignedRange { start, end });
    }
    // Perfect subtrees from left (largest) to right (smallest); fold right to left.
    let mut parts: [Hash; 64] = [[0; 32]; 64];
    let mut count = 0usize;
    let mut pos = start;
    for level in (0..64u32).rev() {
        if len >> level & 1 == 1 {
            let h = fetch(source, level, pos >> level)?;
            if let Some(slot) = parts.get_mut(count) {
                *slot = h;
            }
            count += 1;
            pos += 1u64 << level;
        }
    }
    let mut iter = parts.iter().take(count).rev();
    let mut acc = iter.next().copied().unwrap_or(EMPTY_ROOT);
    for left in iter {
        acc = node_hash(left, &acc);
    }
    Ok(acc)
}

/// `MTH(D[0:size])`, the root of the tree of `size` leaves held by `source`.
///
/// # Errors
/// [`ProofError::MissingNode`] if the source lacks a needed node.
pub fn root<S: HashSource + ?Sized>(source: &S, size: u64) -> Result<Hash, ProofError> {
    subtree_root(source, 0, size)
}

/// Number of hashes in the inclusion proof for leaf `index` in a tree of `size` leaves
/// (`index < size`): the inner nodes, then the border nodes on the right edge.
#[must_use]
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = bit_len(index ^ size.saturating_sub(1));
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Number of hashes in the consistency proof from `old_size` to `new_size`
/// (`old_size <= new_size`). Zero when `old_size` is 0 or equal to `new_size`.
#[must_use]
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    if old_size == 0 || old_size >= new_size {
        return 0;
    }
    let level = old_size.trailing_zeros();
    let index = (old_size - 1) >> level;
    let last = (new_size - 1) >> level;
    let seed = usize::from(index != 0);
    let inner = bit_len(index ^ last);
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    seed + (inner + border) as usize
}

/// RFC 9162 §2.1.3.1 `PATH(index, D[0:size])`: the inclusion proof for leaf `index`, ordered
/// from the leaf upwards.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`] if `index >= size`; [`ProofError::MissingNode`] if the
/// source lacks a needed node.
pub fn inclusion_proof<S: HashSource + ?Sized>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::with_capacity(inclusion_proof_len(index, size));
    // Walk from the root down to the leaf; siblings come out root-first.
    let (mut m, mut start, mut n) = (index, 0u64, size);
    while n > 1 {
        let k = split_point(n);
        if m < k {
            proof.push(subtree_root(source, start + k, start + n)?);
            n = k;
        } else {
            proof.push(subtree_root(source, start, start + k)?);
            m -= k;
            start += k;
            n -= k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 §2.1.4.1 `PROOF(old_size, D[0:new_size])`: the consistency proof between two tree
/// sizes. Empty when `old_size` is 0 or equal to `new_size`.
///
/// # Errors
/// [`ProofError::SizeOrder`] if `old_size > new_size`; [`ProofError::MissingNode`] if the
/// source lacks a needed node.
pub fn consistency_proof<S: HashSource + ?Sized>(
    source: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizeOrder { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let mut proof = Vec::with_capacity(consistency_proof_len(old_size, new_size));
    // SUBPROOF(m, D[start:start+n], b), unrolled from the top.
    let (mut m, mut start, mut n, mut whole) = (old_size, 0u64, new_size, true);
    while m != n {
        let k = split_point(n);
        if m <= k {
            proof.push(subtree_root(source, start + k, start + n)?);
            n = k;
        } else {
            proof.push(subtree_root(source, start, start + k)?);
            m -= k;
            start += k;
            n -= k;
            whole = false;
        }
    }
    if !whole {
        proof.push(subtree_root(source, start, start + n)?);
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 §2.1.3.2: recomputes the root from an inclusion proof.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`] or [`ProofError::WrongProofLength`].
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            // Unreachable after the length check; kept as the RFC states it.
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    Ok(r)
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is at `index` in the tree of `size` leaves with root
/// `root`.
///
/// # Errors
/// Any [`ProofError`] describing why the proof does not hold.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let got = root_from_inclusion_proof(index, size, leaf, proof)?;
    if got == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// RFC 9162 §2.1.4.2: checks that the tree of `new_size` leaves with root `new_root` extends the
/// tree of `old_size` leaves with root `old_root`.
///
/// An empty old tree is consistent with everything, but its root must be [`EMPTY_ROOT`]; equal
/// sizes need equal roots. Both take an empty proof.
///
/// # Errors
/// Any [`ProofError`] describing why the proof does not hold.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizeOrder { old_size, new_size });
    }
    let expected = consistency_proof_len(old_size, new_size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    if old_size == 0 {
        return if *old_root == EMPTY_ROOT {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // If old_size is a power of two the old root is the implicit first element.
    let (seed, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => {
                return Err(ProofError::WrongProofLength { expected, got: 0 });
            }
        }
    };
    let shift = old_size.trailing_zeros();
    let mut fn_ = (old_size - 1) >> shift;
    let mut sn = (new_size - 1) >> shift;
    let mut fr = *seed;
    let mut sr = *seed;
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    if fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Concatenates proof hashes (the RFC 9162 wire form without the length prefix).
#[must_use]
pub fn encode_proof(proof: &[Hash]) -> Vec<u8> {
    proof.concat()
}

/// Splits a concatenation of 32-byte hashes into a proof. Never panics.
///
/// # Errors
/// [`ProofError::BadEncodingLength`] or [`ProofError::TooManyHashes`].
pub fn decode_proof(bytes: &[u8]) -> Result<Vec<Hash>, ProofError> {
    if !bytes.len().is_multiple_of(HASH_SIZE) {
        return Err(ProofError::BadEncodingLength { len: bytes.len() });
    }
    let count = bytes.len() / HASH_SIZE;
    if count > MAX_PROOF_HASHES {
        return Err(ProofError::TooManyHashes {
            got: count,
            max: MAX_PROOF_HASHES,
        });
    }
    Ok(bytes
        .chunks_exact(HASH_SIZE)
        .map(|c| {
            let mut h = [0u8; HASH_SIZE];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Streaming Merkle tree builder: the compact range `[0, size)`, one perfect-subtree hash per
/// set bit of `size`, in a fixed array. Appending never allocates and costs one leaf hash plus
/// on average one node hash; the root is available at any size in `O(log size)`.
#[derive(Clone)]
pub struct TreeBuilder {
    size: u64,
    /// `nodes[l]` is the perfect subtree at level `l` on the right frontier, valid iff bit `l`
    /// of `size` is set.
    nodes: [Hash; 64],
}

impl std::fmt::Debug for TreeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeBuilder")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Builders are equal when they describe the same tree (stale frontier slots are ignored).
impl PartialEq for TreeBuilder {
    fn eq(&self, other: &Self) -> bool {
        self.size == other.size
            && self
                .nodes
                .iter()
                .zip(other.nodes.iter())
                .enumerate()
                .all(|(l, (a, b))| self.size >> l & 1 == 0 || a == b)
    }
}

impl Eq for TreeBuilder {}

impl Default for TreeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TreeBuilder {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self {
            size: 0,
            nodes: [[0; 32]; 64],
        }
    }

    /// Restores a builder from its frontier, as returned by [`TreeBuilder::frontier`]: the
    /// perfect subtrees covering `[0, size)`, largest (leftmost) first. Returns `None` if the
    /// number of hashes does not match the number of set bits of `size`.
    #[must_use]
    pub fn from_frontier(size: u64, frontier: &[Hash]) -> Option<Self> {
        if frontier.len() != size.count_ones() as usize {
            return None;
        }
        let mut b = Self::new();
        b.size = size;
        let mut it = frontier.iter();
        for level in (0..64usize).rev() {
            if size >> level & 1 == 1 {
                let (slot, h) = (b.nodes.get_mut(level)?, it.next()?);
                *slot = *h;
            }
        }
        Some(b)
    }

    /// The frontier: perfect subtrees covering `[0, size)`, largest (leftmost) first. With
    /// [`TreeBuilder::from_frontier`] it lets a replay resume without rehashing.
    #[must_use]
    pub fn frontier(&self) -> Vec<Hash> {
        (0..64usize)
            .rev()
            .filter(|l| self.size >> l & 1 == 1)
            .filter_map(|l| self.nodes.get(l).copied())
            .collect()
    }

    /// Number of leaves appended so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf with contents `data`; returns its leaf hash.
    pub fn push_entry(&mut self, data: &[u8]) -> Hash {
        let h = leaf_hash(data);
        self.push_leaf_hash(h);
        h
    }

    /// Appends a leaf hash. A tree of `2^64 - 1` leaves is full: further leaves are ignored
    /// and `false` is returned.
    pub fn push_leaf_hash(&mut self, leaf: Hash) -> bool {
        if self.size == u64::MAX {
            return false;
        }
        let mut h = leaf;
        let mut level = 0usize;
        while self.size >> level & 1 == 1 {
            if let Some(left) = self.nodes.get(level) {
                h = node_hash(left, &h);
            }
            level += 1;
        }
        if let Some(slot) = self.nodes.get_mut(level) {
            *slot = h;
        }
        self.size += 1;
        true
    }

    /// `MTH(D[0:size])` for the leaves appended so far.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut acc: Option<Hash> = None;
        for (level, h) in self.nodes.iter().enumerate() {
            if self.size >> level & 1 == 1 {
                acc = Some(match acc {
                    None => *h,
                    Some(right) => node_hash(h, &right),
                });
            }
        }
        acc.unwrap_or(EMPTY_ROOT)
    }
}

/// A whole tree kept in memory, every perfect-subtree hash at every level. For tests, tools
/// and small logs; a log of `n` leaves takes about `64 n` bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// `levels[l][i]` is the node `(l, i)`; only complete perfect subtrees are stored.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree of the given leaf contents.
    pub fn from_entries<I, T>(entries: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let mut t = Self::new();
        for e in entries {
            t.push_entry(e.as_ref());
        }
        t
    }

    /// Number of leaves.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf with contents `data`; returns its leaf hash.
    pub fn push_entry(&mut self, data: &[u8]) -> Hash {
        let h = leaf_hash(data);
        self.push_leaf_hash(h);
        h
    }

    /// Appends a leaf hash, completing every perfect subtree it closes.
    pub fn push_leaf_hash(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                return;
            };
            row.push(h);
            let len = row.len();
            if len % 2 == 1 {
                return;
            }
            match (row.get(len - 2), row.get(len - 1)) {
                (Some(l), Some(r)) => h = node_hash(l, r),
                _ => return,
            }
            level += 1;
        }
    }

    /// Leaf hash at `index`, if present.
    #[must_use]
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.node(0, index)
    }

    /// Root of the tree at its current size.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.root_at(self.size()).unwrap_or(EMPTY_ROOT)
    }

    /// Root of the tree at an earlier `size`.
    ///
    /// # Errors
    /// [`ProofError::MissingNode`] if `size` exceeds the tree.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        root(self, size)
    }

    /// Inclusion proof for leaf `index` in the tree at `size`.
    ///
    /// # Errors
    /// As [`inclusion_proof`].
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        inclusion_proof(self, index, size)
    }

    /// Consistency proof from `old_size` to `new_size`.
    ///
    /// # Errors
    /// As [`consistency_proof`].
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, ProofError> {
        consistency_proof(self, old_size, new_size)
    }
}

impl HashSource for MemoryTree {
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        let row = self.levels.get(usize::from(level))?;
        row.get(usize::try_from(index).ok()?).copied()
    }
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

    fn h(s: &str) -> Hash {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    /// Reference MTH straight from the RFC's recursive definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(TreeBuilder::new().root(), EMPTY_ROOT);
        assert_eq!(MemoryTree::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn leaf_of_empty_data() {
        assert_eq!(
            leaf_hash(b""),
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
    }

    #[test]
    fn builders_agree_with_reference() {
        let mut b = TreeBuilder::new();
        let mut t = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0u32..300 {
            let l = leaf_hash(&i.to_be_bytes());
            leaves.push(l);
            b.push_leaf_hash(l);
            t.push_leaf_hash(l);
            let want = mth(&leaves);
            assert_eq!(b.root(), want, "builder size {}", i + 1);
            assert_eq!(t.root(), want, "memory size {}", i + 1);
            let r = TreeBuilder::from_frontier(b.size(), &b.frontier()).unwrap();
            assert_eq!(r, b);
        }
        for size in 0..=300u64 {
            assert_eq!(t.root_at(size).unwrap(), mth(&leaves[..size as usize]));
        }
        assert!(t.root_at(301).is_err());
        assert!(TreeBuilder::from_frontier(3, &[[0; 32]]).is_none());
    }

    #[test]
    fn proof_lengths_match_generation() {
        let t = MemoryTree::from_entries((0u32..70).map(|i| i.to_be_bytes()));
        for size in 1..=70u64 {
            for index in 0..size {
                let p = t.inclusion_proof(index, size).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(index, size));
            }
            for old in 0..=size {
                let p = t.consistency_proof(old, size).unwrap();
                assert_eq!(p.len(), consistency_proof_len(old, size), "{old}->{size}");
                let (ro, rn) = (t.root_at(old).unwrap(), t.root_at(size).unwrap());
                verify_consistency(old, size, &ro, &rn, &p).unwrap();
            }
        }
    }

    #[test]
    fn closure_hash_source() {
        let t = MemoryTree::from_entries(["a", "b", "c"]);
        let src = |l: u8, i: u64| t.node(l, i);
        assert_eq!(root(&src, 3).unwrap(), t.root());
        assert_eq!(
            inclusion_proof(&src, 2, 3).unwrap(),
            t.inclusion_proof(2, 3).unwrap()
        );
        assert_eq!(
            subtree_root(&src, 1, 3),
            Err(ProofError::UnalignedRange { start: 1, end: 3 })
        );
        assert_eq!(subtree_root(&src, 2, 3).unwrap(), t.leaf(2).unwrap());
        let none = |_: u8, _: u64| None;
        assert_eq!(
            root(&none, 1),
            Err(ProofError::MissingNode { level: 0, index: 0 })
        );
    }

    #[test]
    fn decode_proof_limits() {
        assert_eq!(decode_proof(&[]).unwrap(), Vec::<Hash>::new());
        assert_eq!(
            decode_proof(&[0; 33]),
            Err(ProofError::BadEncodingLength { len: 33 })
        );
        assert_eq!(
            decode_proof(&[0; 32 * 66]),
            Err(ProofError::TooManyHashes { got: 66, max: 65 })
        );
        let p = vec![[1u8; 32], [2u8; 32]];
        assert_eq!(decode_proof(&encode_proof(&p)).unwrap(), p);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            inclusion_proof(&MemoryTree::new(), 0, 0),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            consistency_proof(&MemoryTree::new(), 2, 1),
            Err(ProofError::SizeOrder {
                old_size: 2,
                new_size: 1
            })
        );
        assert!(
            ProofError::WrongProofLength {
                expected: 3,
                got: 2
            }
            .to_string()
            .contains("expected 3")
        );
    }

    #[test]
    fn proof_lengths_do_not_overflow_for_huge_trees() {
        // Found by fuzzing: sizes above 2^63 shifted by 64.
        assert_eq!(inclusion_proof_len(0, u64::MAX), 64);
        assert!(consistency_proof_len(1, u64::MAX) > 0);
        assert!(consistency_proof_len(3, u64::MAX) > 0);
    }
}
