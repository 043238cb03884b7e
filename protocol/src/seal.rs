//! Sealed payloads (DESIGN §4): a document's bytes encrypted so that only its listed
//! recipients can read them, while relays and custodians can still check every chunk they
//! store.
//!
//! # Format
//!
//! * A fresh random 32-byte **content key** `K` per payload.
//! * The plaintext (at most [`MAX_PAYLOAD_LEN`]) is cut into chunks of [`CHUNK_SIZE`] bytes
//!   (the last one shorter; an empty plaintext still gives one empty chunk), each sealed with
//!   ChaCha20-Poly1305 under `K`:
//!   nonce = `index (u64 BE) || last-chunk flag (1 byte) || 0x000000`,
//!   AAD = `"lienthong/v1/chunk" || total_len (u64 BE)`. Nonces never repeat under one key,
//!   and the last-chunk flag plus the length in the AAD make truncation or extension fail.
//! * Chunk id = SHA-256 of the ciphertext chunk, so identical chunks are stored once and a
//!   store checks what it holds without any key ([`verify_chunk`]).
//! * The [`Manifest`] (deterministic CBOR) lists version, chunk size, plaintext length, the
//!   chunk ids and one [`KeyWrap`] per recipient, sorted by recipient. Its
//!   [`root`](Manifest::root) = SHA-256(`"lienthong/v1/chunks" || total_len (u64 BE) ||
//!   chunk_size (u32 BE) || chunk ids`) names the encrypted content; its
//!   [`id`](Manifest::id) (a [`PayloadId`]) = SHA-256 of its canonical bytes is what an
//!   envelope references.
//!
//! # Key wrapping and epochs
//!
//! A fresh HPKE setup costs about four Ed25519 signatures, so it is amortised (DESIGN §4).
//! For each (sender, recipient) pair the sender keeps an **epoch**: one HPKE setup (RFC 9180,
//! mode base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, export-only AEAD) towards the
//! recipient's X25519 key with
//! `info = "lienthong/v1/epoch" || sender id || 0x00 || recipient id`, whose exporter secret
//! `exporter("lienthong/v1/epoch-key", 32)` is the **epoch secret**. The encapsulated key
//! `enc` (32 bytes) names the epoch and travels in each wrap. Per payload:
//!
//! * wrap key = HKDF-SHA256(salt = `"lienthong/v1/wrap"`, ikm = epoch secret,
//!   info = `root || recipient id`);
//! * wrapped = ChaCha20-Poly1305(wrap key, nonce 0, AAD = `root || sender id || 0x00 ||
//!   recipient id`, `K`): 48 bytes.
//!
//! The wrap key is unique per (epoch, payload, recipient), so the fixed nonce is safe; a
//! wrap moved to another payload, recipient or claimed sender does not open. The recipient
//! decapsulates once per epoch and caches the secret ([`RecipientEpochs`]).
//!
//! Agency ids contain no 0x00 byte ([`AgencyId`] admits only `[A-Za-z0-9.-]`), so the
//! `sender || 0x00 || recipient` encodings are unambiguous.
//!
//! # Choices beyond the brief
//!
//! * The export-only AEAD (RFC 9180 §5.3, id 0xFFFF) is used for epochs: nothing is ever
//!   encrypted with the HPKE context itself.
//! * Both caches are keyed by the **pair** of agencies (the sender cache by (sender,
//!   recipient), the recipient cache by (sender, recipient, enc)), so one cache can serve a
//!   shared platform node's many tenants without one tenant ever using an epoch that was
//!   derived for another. Both evict the least recently used entry.
//! * The recipient caches an epoch only after a wrap under it has opened, so garbage `enc`
//!   values cannot flush useful entries.
//! * An epoch is also rotated when the clock moved back by more than the maximum age (the
//!   age is measured as an absolute difference), so a clock reset cannot pin an old epoch.
//! * A [`ContentKey`] remembers the root of the manifest it was unwrapped from and refuses
//!   to open chunks against any other manifest.
//! * [`PayloadSealer`] seals chunk by chunk, so a 50 MiB document need never be held in
//!   memory twice; [`seal`] is the one-shot convenience over it.
//!
//! Everything here is pure: time comes in as `now_ms`, randomness as an RNG argument.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use hpke::{Deserializable as _, Serializable as _};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::agency::AgencyId;
use crate::cbor::{self, CborError};
use crate::keys::{EncryptionKey, EncryptionSecret};

type HpkeKem = hpke::kem::X25519HkdfSha256;
type HpkeKdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ExportOnlyAead;

/// The manifest version this build writes and reads.
pub const MANIFEST_VERSION: u8 = 1;
/// Plaintext bytes per chunk (the last chunk may be shorter).
pub const CHUNK_SIZE: u32 = 256 * 1024;
/// Largest plaintext that can be sealed: 64 MiB.
pub const MAX_PAYLOAD_LEN: u64 = 64 * 1024 * 1024;
/// Most chunks a payload can have (`MAX_PAYLOAD_LEN / CHUNK_SIZE`).
pub const MAX_CHUNKS: usize = (MAX_PAYLOAD_LEN / CHUNK_SIZE as u64) as usize;
/// Most recipients (key wraps) of one payload.
pub const MAX_RECIPIENTS: usize = 1024;
/// Largest manifest encoding accepted. A manifest with [`MAX_CHUNKS`] chunks and
/// [`MAX_RECIPIENTS`] wraps to the longest agency ids is about 135 KiB.
pub const MAX_MANIFEST_LEN: usize = 192 * 1024;
/// Bytes a chunk's ciphertext adds to its plaintext (the Poly1305 tag).
pub const TAG_LEN: usize = 16;
/// Length of a wrapped content key (32-byte key and 16-byte tag).
pub const WRAPPED_KEY_LEN: usize = 48;

const CHUNK_LEN: usize = CHUNK_SIZE as usize;
const CHUNK_AAD: &[u8] = b"lienthong/v1/chunk";
const ROOT_PREFIX: &[u8] = b"lienthong/v1/chunks";
const EPOCH_INFO: &[u8] = b"lienthong/v1/epoch";
const EPOCH_EXPORT: &[u8] = b"lienthong/v1/epoch-key";
const WRAP_SALT: &[u8] = b"lienthong/v1/wrap";

/// Why a payload could not be sealed, a manifest was refused, or a payload did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("payload total_len is {len} bytes; the limit is {max}")]
    PayloadTooLarge { len: u64, max: u64 },
    #[error("{count} recipients; a payload needs 1 to {max}")]
    RecipientCount { count: usize, max: usize },
    #[error("recipient {recipient} is listed twice")]
    DuplicateRecipient { recipient: AgencyId },
    #[error("encryption key of recipient {recipient} is unusable (X25519 point of small order)")]
    BadRecipientKey { recipient: AgencyId },
    #[error("manifest: {0}")]
    Cbor(#[from] CborError),
    #[error("manifest version is {got}; this build reads only version {supported}")]
    UnsupportedVersion { got: u8, supported: u8 },
    #[error("manifest chunk_size is {got}; the only accepted chunk_size is {expected}")]
    ChunkSize { got: u32, expected: u32 },
    #[error(
        "manifest lists {got} chunks, but total_len {total_len} in chunks of {chunk_size} bytes needs {expected}"
    )]
    ChunkCount {
        got: usize,
        expected: u64,
        total_len: u64,
        chunk_size: u32,
    },
    #[error("manifest has {count} wraps; the limit is {max}")]
    TooManyWraps { count: usize, max: usize },
    #[error("manifest has no wraps, so nobody could open it; at least 1 is needed")]
    NoWraps,
    #[error(
        "manifest wraps are not sorted by recipient: wrap {index} sorts before the one ahead of it"
    )]
    WrapsUnsorted { index: usize },
    #[error("manifest wraps name recipient {recipient} twice")]
    DuplicateWrap { recipient: AgencyId },
    #[error("{me} is not a recipient of payload {payload}")]
    NotARecipient { me: AgencyId, payload: PayloadId },
    #[error("HPKE decapsulation of the epoch from {sender} failed (invalid encapsulated key)")]
    EpochDecapsulation { sender: AgencyId },
    #[error(
        "the key wrap for {recipient} does not open: wrong secret key or sender, or the wrap was moved from another payload or recipient"
    )]
    WrapInvalid { recipient: AgencyId },
    #[error("content key was unwrapped from manifest root {key_root}, not this manifest's root")]
    KeyMismatch { key_root: String },
    #[error("chunk index {index} is out of range; the payload has {count} chunks")]
    ChunkIndex { index: usize, count: usize },
    #[error("chunk {index} is {got} bytes of ciphertext; the manifest implies {expected}")]
    ChunkLength {
        index: usize,
        got: usize,
        expected: usize,
    },
    #[error("chunk {index} hashes to {got}, but the manifest lists {expected}")]
    ChunkIdMismatch {
        index: usize,
        expected: ChunkId,
        got: ChunkId,
    },
    #[error("chunk {index} does not decrypt (authentication failed)")]
    ChunkDecrypt { index: usize },
    #[error("{got} chunks supplied; the manifest lists {expected}")]
    ChunksSupplied { got: usize, expected: usize },
    #[error("plaintext chunk {index} is {got} bytes; for this total_len it must be {expected}")]
    PlaintextChunkLength {
        index: usize,
        got: usize,
        expected: usize,
    },
    #[error("only {sealed} of {expected} chunks were sealed before finishing the payload")]
    Incomplete { sealed: usize, expected: usize },
    #[error("internal cryptographic failure in {what}")]
    Internal { what: &'static str },
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                cbor::bytes32::serialize(&self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                cbor::bytes32::deserialize(d).map(Self)
            }
        }
    };
}

hash_newtype!(
    /// SHA-256 of one ciphertext chunk: how chunks are stored and fetched.
    ChunkId
);
hash_newtype!(
    /// SHA-256 of a manifest's canonical bytes: what an envelope references.
    PayloadId
);

impl ChunkId {
    /// The id of a ciphertext chunk.
    pub fn of(ciphertext: &[u8]) -> Self {
        Self(Sha256::digest(ciphertext).into())
    }
}

/// The content key, wrapped for one recipient under an epoch.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyWrap {
    /// The HPKE encapsulated key of the sender's epoch towards this recipient; names the
    /// epoch.
    #[serde(rename = "e", with = "cbor::bytes32")]
    pub epoch: [u8; 32],
    /// The content key sealed under the wrap key (32 bytes and a 16-byte tag).
    #[serde(rename = "k", with = "bytes48")]
    pub wrapped: [u8; WRAPPED_KEY_LEN],
    /// The recipient.
    pub to: AgencyId,
}

impl fmt::Debug for KeyWrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyWrap")
            .field("to", &self.to)
            .field("epoch", &hex(self.epoch.get(..8).unwrap_or_default()))
            .finish_non_exhaustive()
    }
}

/// A fixed 48-byte value encoded as a CBOR byte string.
mod bytes48 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 48], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 48], D::Error> {
        let bytes: serde_bytes::ByteBuf = serde::Deserialize::deserialize(d)?;
        <[u8; 48]>::try_from(bytes.as_slice())
            .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"48 bytes"))
    }
}

/// The manifest as encoded. Fields are declared in canonical key order (`c n s v w`), so
/// encoding takes the fast path of [`cbor::to_canonical`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestWire {
    /// Chunk ids, in order.
    #[serde(rename = "c")]
    chunks: Vec<ChunkId>,
    /// Plaintext length in bytes.
    #[serde(rename = "n")]
    total_len: u64,
    /// Plaintext bytes per chunk.
    #[serde(rename = "s")]
    chunk_size: u32,
    #[serde(rename = "v")]
    version: u8,
    /// Key wraps, sorted by recipient, one per recipient.
    #[serde(rename = "w")]
    wraps: Vec<KeyWrap>,
}

impl ManifestWire {
    fn validate(&self) -> Result<(), SealError> {
        if self.version != MANIFEST_VERSION {
            return Err(SealError::UnsupportedVersion {
                got: self.version,
                supported: MANIFEST_VERSION,
            });
        }
        if self.chunk_size != CHUNK_SIZE {
            return Err(SealError::ChunkSize {
                got: self.chunk_size,
                expected: CHUNK_SIZE,
            });
        }
        check_total_len(self.total_len)?;
        let expected = chunk_count(self.total_len);
        if self.chunks.len() as u64 != expected {
            return Err(SealError::ChunkCount {
                got: self.chunks.len(),
                expected,
                total_len: self.total_len,
                chunk_size: self.chunk_size,
            });
        }
        if self.wraps.len() > MAX_RECIPIENTS {
            return Err(SealError::TooManyWraps {
                count: self.wraps.len(),
                max: MAX_RECIPIENTS,
            });
        }
        if self.wraps.is_empty() {
            return Err(SealError::NoWraps);
        }
        for (i, pair) in self.wraps.windows(2).enumerate() {
            if let [a, b] = pair {
                if a.to == b.to {
                    return Err(SealError::DuplicateWrap {
                        recipient: b.to.clone(),
                    });
                }
                if a.to > b.to {
                    return Err(SealError::WrapsUnsorted { index: i + 1 });
                }
            }
        }
        Ok(())
    }
}

/// A sealed payload's manifest: chunk ids, lengths and per-recipient key wraps.
///
/// Only obtainable from [`seal`] / [`PayloadSealer::finish`] or [`Manifest::decode`], so its
/// invariants (version, chunk size, chunk count, sorted unique wraps) always hold; the
/// canonical bytes, root and id are computed once.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    wire: ManifestWire,
    bytes: Vec<u8>,
    root: [u8; 32],
    id: PayloadId,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("id", &self.id)
            .field("total_len", &self.wire.total_len)
            .field("chunks", &self.wire.chunks.len())
            .field("recipients", &self.recipients().collect::<Vec<_>>())
            .finish()
    }
}

impl Manifest {
    fn from_wire(wire: ManifestWire, bytes: Vec<u8>) -> Self {
        let root = compute_root(wire.total_len, wire.chunk_size, &wire.chunks);
        let id = PayloadId(Sha256::digest(&bytes).into());
        Self {
            wire,
            bytes,
            root,
            id,
        }
    }

    fn encode(wire: ManifestWire) -> Result<Self, SealError> {
        let bytes = cbor::to_canonical(&wire)?;
        Ok(Self::from_wire(wire, bytes))
    }

    /// Decodes a manifest, accepting only its canonical encoding (at most
    /// [`MAX_MANIFEST_LEN`] bytes) of a well-formed version-1 manifest.
    pub fn decode(bytes: &[u8]) -> Result<Self, SealError> {
        let wire: ManifestWire = cbor::from_canonical(bytes, MAX_MANIFEST_LEN)?;
        wire.validate()?;
        Ok(Self::from_wire(wire, bytes.to_vec()))
    }

    /// The canonical encoding (what [`Manifest::id`] hashes).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the canonical encoding.
    pub fn id(&self) -> PayloadId {
        self.id
    }

    /// SHA-256(`"lienthong/v1/chunks" || total_len || chunk_size || chunk ids`): names the
    /// encrypted content; every key wrap is bound to it.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// Manifest format version.
    pub fn version(&self) -> u8 {
        self.wire.version
    }

    /// Plaintext bytes per chunk ([`CHUNK_SIZE`]).
    pub fn chunk_size(&self) -> u32 {
        self.wire.chunk_size
    }

    /// Plaintext length.
    pub fn total_len(&self) -> u64 {
        self.wire.total_len
    }

    /// Ciphertext chunk ids, in order (at least one).
    pub fn chunks(&self) -> &[ChunkId] {
        &self.wire.chunks
    }

    /// Key wraps, sorted by recipient.
    pub fn wraps(&self) -> &[KeyWrap] {
        &self.wire.wraps
    }

    /// The recipients, sorted.
    pub fn recipients(&self) -> impl Iterator<Item = &AgencyId> {
        self.wire.wraps.iter().map(|w| &w.to)
    }

    /// The wrap for `recipient`, if it is one.
    pub fn wrap_for(&self, recipient: &AgencyId) -> Option<&KeyWrap> {
        self.wire
            .wraps
            .binary_search_by(|w| w.to.cmp(recipient))
            .ok()
            .and_then(|i| self.wire.wraps.get(i))
    }

    /// Plaintext length of chunk `index`, if it exists.
    pub fn chunk_plaintext_len(&self, index: usize) -> Option<usize> {
        if index >= self.wire.chunks.len() {
            return None;
        }
        chunk_plain_len(self.wire.total_len, index as u64).and_then(|n| usize::try_from(n).ok())
    }

    /// Ciphertext length of chunk `index` (plaintext length + [`TAG_LEN`]), if it exists.
    pub fn chunk_ciphertext_len(&self, index: usize) -> Option<usize> {
        self.chunk_plaintext_len(index)
            .and_then(|n| n.checked_add(TAG_LEN))
    }

    /// Total ciphertext bytes of all chunks.
    pub fn ciphertext_len(&self) -> u64 {
        self.wire
            .total_len
            .saturating_add(self.wire.chunks.len() as u64 * TAG_LEN as u64)
    }
}

/// Number of chunks for a plaintext of `total_len` bytes (at least one).
pub fn chunk_count(total_len: u64) -> u64 {
    total_len.div_ceil(u64::from(CHUNK_SIZE)).max(1)
}

fn chunk_plain_len(total_len: u64, index: u64) -> Option<u64> {
    if index >= chunk_count(total_len) {
        return None;
    }
    let start = index.checked_mul(u64::from(CHUNK_SIZE))?;
    Some(total_len.saturating_sub(start).min(u64::from(CHUNK_SIZE)))
}

fn check_total_len(len: u64) -> Result<(), SealError> {
    if len > MAX_PAYLOAD_LEN {
        Err(SealError::PayloadTooLarge {
            len,
            max: MAX_PAYLOAD_LEN,
        })
    } else {
        Ok(())
    }
}

fn compute_root(total_len: u64, chunk_size: u32, chunks: &[ChunkId]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ROOT_PREFIX);
    h.update(total_len.to_be_bytes());
    h.update(chunk_size.to_be_bytes());
    for c in chunks {
        h.update(c.0);
    }
    h.finalize().into()
}

fn chunk_nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    for (dst, src) in n.iter_mut().zip(index.to_be_bytes()) {
        *dst = src;
    }
    if let Some(flag) = n.get_mut(8) {
        *flag = u8::from(last);
    }
    Nonce::from(n)
}

fn chunk_aad(total_len: u64) -> [u8; 26] {
    let mut aad = [0u8; 26];
    for (dst, src) in aad
        .iter_mut()
        .zip(CHUNK_AAD.iter().copied().chain(total_len.to_be_bytes()))
    {
        *dst = src;
    }
    aad
}

/// A payload's content key, as unwrapped by a recipient. Bound to the manifest it came
/// from; zeroized on drop; never printed.
pub struct ContentKey {
    cipher: ChaCha20Poly1305,
    root: [u8; 32],
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ContentKey(for root {}, secret not shown)",
            hex(&self.root)
        )
    }
}

/// A sealed payload: its manifest and ciphertext chunks, in order.
#[derive(Clone)]
pub struct Sealed {
    pub manifest: Manifest,
    pub chunks: Vec<Vec<u8>>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("manifest", &self.manifest)
            .field(
                "chunk_bytes",
                &self.chunks.iter().map(Vec::len).sum::<usize>(),
            )
            .finish()
    }
}

/// Seals a payload chunk by chunk, so large documents can be streamed from and to storage.
///
/// ```text
/// let mut sealer = PayloadSealer::new(total_len, rng)?;
/// while let Some(n) = sealer.next_chunk_len() { store(sealer.seal_chunk(&read(n))?); }
/// let manifest = sealer.finish(sender, recipients, epochs, now_ms, rng)?;
/// ```
pub struct PayloadSealer {
    key: Zeroizing<[u8; 32]>,
    cipher: ChaCha20Poly1305,
    total_len: u64,
    chunks: Vec<ChunkId>,
}

impl fmt::Debug for PayloadSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayloadSealer")
            .field("total_len", &self.total_len)
            .field("sealed_chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

impl PayloadSealer {
    /// Starts sealing a plaintext of `total_len` bytes under a fresh content key drawn from
    /// `rng` (its first 32 bytes).
    pub fn new(total_len: u64, rng: &mut impl CryptoRngCore) -> Result<Self, SealError> {
        check_total_len(total_len)?;
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_ref()));
        let count = usize::try_from(chunk_count(total_len)).unwrap_or(MAX_CHUNKS);
        Ok(Self {
            key,
            cipher,
            total_len,
            chunks: Vec::with_capacity(count),
        })
    }

    /// Plaintext bytes the next [`seal_chunk`](Self::seal_chunk) expects; `None` once every
    /// chunk is sealed.
    pub fn next_chunk_len(&self) -> Option<usize> {
        chunk_plain_len(self.total_len, self.chunks.len() as u64)
            .and_then(|n| usize::try_from(n).ok())
    }

    /// Seals the next chunk (exactly [`next_chunk_len`](Self::next_chunk_len) bytes) and
    /// returns its ciphertext.
    pub fn seal_chunk(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let index = self.chunks.len();
        let count = chunk_count(self.total_len);
        let expected = self.next_chunk_len().ok_or(SealError::ChunkIndex {
            index,
            count: usize::try_from(count).unwrap_or(MAX_CHUNKS),
        })?;
        if plaintext.len() != expected {
            return Err(SealError::PlaintextChunkLength {
                index,
                got: plaintext.len(),
                expected,
            });
        }
        let index64 = index as u64;
        let last = index64 + 1 == count;
        let aad = chunk_aad(self.total_len);
        let ciphertext = self
            .cipher
            .encrypt(
                &chunk_nonce(index64, last),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Internal {
                what: "chunk encryption",
            })?;
        self.chunks.push(ChunkId::of(&ciphertext));
        Ok(ciphertext)
    }

    /// Wraps the content key for each recipient (reusing or rotating epochs in `epochs`) and
    /// returns the manifest. Every chunk must have been sealed; recipients must be 1 to
    /// [`MAX_RECIPIENTS`] distinct agencies.
    pub fn finish(
        self,
        sender: &AgencyId,
        recipients: &[(AgencyId, EncryptionKey)],
        epochs: &mut SenderEpochs,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Manifest, SealError> {
        let expected = usize::try_from(chunk_count(self.total_len)).unwrap_or(MAX_CHUNKS);
        if self.chunks.len() != expected {
            return Err(SealError::Incomplete {
                sealed: self.chunks.len(),
                expected,
            });
        }
        check_recipients(recipients)?;
        let root = compute_root(self.total_len, CHUNK_SIZE, &self.chunks);
        let mut wraps = Vec::with_capacity(recipients.len());
        for (to, key) in recipients {
            let (epoch, secret) = epochs.epoch_for(sender, to, key, now_ms, rng)?;
            let wrapped = wrap_content_key(&secret, &root, sender, to, &self.key)?;
            wraps.push(KeyWrap {
                epoch,
                wrapped,
                to: to.clone(),
            });
        }
        wraps.sort_by(|a, b| a.to.cmp(&b.to));
        Manifest::encode(ManifestWire {
            chunks: self.chunks,
            total_len: self.total_len,
            chunk_size: CHUNK_SIZE,
            version: MANIFEST_VERSION,
            wraps,
        })
    }
}

fn check_recipients(recipients: &[(AgencyId, EncryptionKey)]) -> Result<(), SealError> {
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(SealError::RecipientCount {
            count: recipients.len(),
            max: MAX_RECIPIENTS,
        });
    }
    let mut ids: Vec<&AgencyId> = recipients.iter().map(|(id, _)| id).collect();
    ids.sort_unstable();
    for pair in ids.windows(2) {
        if let [a, b] = pair
            && a == b
        {
            return Err(SealError::DuplicateRecipient {
                recipient: (*a).clone(),
            });
        }
    }
    Ok(())
}

/// Seals `plaintext` from `sender` for `recipients` (1 to [`MAX_RECIPIENTS`] distinct
/// agencies with their roster encryption keys), reusing or rotating per-recipient epochs in
/// `epochs`. Draws the content key (32 bytes) first from `rng`, then any HPKE ephemeral keys.
pub fn seal(
    plaintext: &[u8],
    sender: &AgencyId,
    recipients: &[(AgencyId, EncryptionKey)],
    epochs: &mut SenderEpochs,
    now_ms: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<Sealed, SealError> {
    let total_len = u64::try_from(plaintext.len()).unwrap_or(u64::MAX);
    check_total_len(total_len)?;
    check_recipients(recipients)?;
    let mut sealer = PayloadSealer::new(total_len, rng)?;
    let mut chunks = Vec::with_capacity(sealer.chunks.capacity());
    if plaintext.is_empty() {
        chunks.push(sealer.seal_chunk(&[])?);
    } else {
        for piece in plaintext.chunks(CHUNK_LEN) {
            chunks.push(sealer.seal_chunk(piece)?);
        }
    }
    let manifest = sealer.finish(sender, recipients, epochs, now_ms, rng)?;
    Ok(Sealed { manifest, chunks })
}

/// Checks a ciphertext chunk against the manifest (index, length and id) without any key:
/// what relays and custodians do before storing or serving it.
pub fn verify_chunk(manifest: &Manifest, index: usize, ciphertext: &[u8]) -> Result<(), SealError> {
    let count = manifest.wire.chunks.len();
    let index_err = SealError::ChunkIndex { index, count };
    let expected_id = manifest.wire.chunks.get(index).ok_or(index_err.clone())?;
    let expected_len = manifest.chunk_ciphertext_len(index).ok_or(index_err)?;
    if ciphertext.len() != expected_len {
        return Err(SealError::ChunkLength {
            index,
            got: ciphertext.len(),
            expected: expected_len,
        });
    }
    let got = ChunkId::of(ciphertext);
    if got != *expected_id {
        return Err(SealError::ChunkIdMismatch {
            index,
            expected: *expected_id,
            got,
        });
    }
    Ok(())
}

/// Verifies (as [`verify_chunk`]) and decrypts chunk `index`: the streaming way to open a
/// large payload one chunk at a time.
pub fn open_chunk(
    manifest: &Manifest,
    key: &ContentKey,
    index: usize,
    ciphertext: &[u8],
) -> Result<Vec<u8>, SealError> {
    if key.root != manifest.root {
        return Err(SealError::KeyMismatch {
            key_root: hex(&key.root),
        });
    }
    verify_chunk(manifest, index, ciphertext)?;
    let last = index + 1 == manifest.wire.chunks.len();
    let aad = chunk_aad(manifest.wire.total_len);
    key.cipher
        .decrypt(
            &chunk_nonce(index as u64, last),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::ChunkDecrypt { index })
}

/// Unwraps the content key for recipient `me`, decapsulating the sender's epoch only if
/// `epochs` does not hold it yet. `sender` must be the authenticated sender (the envelope's
/// signer): the epoch and the wrap are bound to it.
pub fn unwrap_content_key(
    manifest: &Manifest,
    sender: &AgencyId,
    me: &AgencyId,
    my_secret: &EncryptionSecret,
    epochs: &mut RecipientEpochs,
) -> Result<ContentKey, SealError> {
    let wrap = manifest
        .wrap_for(me)
        .ok_or_else(|| SealError::NotARecipient {
            me: me.clone(),
            payload: manifest.id,
        })?;
    let cache_key = (sender.clone(), me.clone(), wrap.epoch);
    if let Some(secret) = epochs.get(&cache_key) {
        return unwrap_with(&secret, manifest, sender, wrap);
    }
    let secret = decapsulate_epoch(sender, me, my_secret, &wrap.epoch)?;
    epochs.decapsulations += 1;
    let key = unwrap_with(&secret, manifest, sender, wrap)?;
    epochs.insert(cache_key, secret);
    Ok(key)
}

/// Unwraps the key and opens every chunk (each checked against the manifest first).
pub fn open<C: AsRef<[u8]>>(
    manifest: &Manifest,
    chunks: &[C],
    sender: &AgencyId,
    me: &AgencyId,
    my_secret: &EncryptionSecret,
    epochs: &mut RecipientEpochs,
) -> Result<Vec<u8>, SealError> {
    let key = unwrap_content_key(manifest, sender, me, my_secret, epochs)?;
    open_with_key(manifest, &key, chunks)
}

/// Opens every chunk with a key already unwrapped by [`unwrap_content_key`] (each chunk
/// checked against the manifest first): the decryption half of [`open`], for callers that
/// share `epochs` and hold it only while unwrapping.
pub fn open_with_key<C: AsRef<[u8]>>(
    manifest: &Manifest,
    key: &ContentKey,
    chunks: &[C],
) -> Result<Vec<u8>, SealError> {
    if chunks.len() != manifest.wire.chunks.len() {
        return Err(SealError::ChunksSupplied {
            got: chunks.len(),
            expected: manifest.wire.chunks.len(),
        });
    }
    let mut out = Vec::new();
    for (index, chunk) in chunks.iter().enumerate() {
        out.extend_from_slice(&open_chunk(manifest, key, index, chunk.as_ref())?);
    }
    Ok(out)
}

fn pair_info(prefix: &[u8], sender: &AgencyId, recipient: &AgencyId) -> Vec<u8> {
    let (s, r) = (sender.as_str().as_bytes(), recipient.as_str().as_bytes());
    let mut info = Vec::with_capacity(prefix.len() + s.len() + 1 + r.len());
    info.extend_from_slice(prefix);
    info.extend_from_slice(s);
    info.push(0);
    info.extend_from_slice(r);
    info
}

fn wrap_cipher(
    epoch_secret: &[u8; 32],
    root: &[u8; 32],
    recipient: &AgencyId,
) -> Result<ChaCha20Poly1305, SealError> {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(WRAP_SALT), epoch_secret)
        .expand_multi_info(&[root, recipient.as_str().as_bytes()], okm.as_mut())
        .map_err(|_| SealError::Internal {
            what: "wrap key derivation",
        })?;
    Ok(ChaCha20Poly1305::new(Key::from_slice(okm.as_ref())))
}

fn wrap_content_key(
    epoch_secret: &[u8; 32],
    root: &[u8; 32],
    sender: &AgencyId,
    recipient: &AgencyId,
    content_key: &[u8; 32],
) -> Result<[u8; WRAPPED_KEY_LEN], SealError> {
    let internal = || SealError::Internal { what: "key wrap" };
    let aad = pair_info(root, sender, recipient);
    let wrapped = wrap_cipher(epoch_secret, root, recipient)?
        .encrypt(
            &Nonce::default(),
            Payload {
                msg: content_key,
                aad: &aad,
            },
        )
        .map_err(|_| internal())?;
    <[u8; WRAPPED_KEY_LEN]>::try_from(wrapped.as_slice()).map_err(|_| internal())
}

fn unwrap_with(
    epoch_secret: &[u8; 32],
    manifest: &Manifest,
    sender: &AgencyId,
    wrap: &KeyWrap,
) -> Result<ContentKey, SealError> {
    let invalid = || SealError::WrapInvalid {
        recipient: wrap.to.clone(),
    };
    let aad = pair_info(&manifest.root, sender, &wrap.to);
    let key = Zeroizing::new(
        wrap_cipher(epoch_secret, &manifest.root, &wrap.to)?
            .decrypt(
                &Nonce::default(),
                Payload {
                    msg: &wrap.wrapped,
                    aad: &aad,
                },
            )
            .map_err(|_| invalid())?,
    );
    if key.len() != 32 {
        return Err(invalid());
    }
    Ok(ContentKey {
        cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        root: manifest.root,
    })
}

/// Adapts a rand_core 0.6 RNG (this crate's) to the rand_core 0.9 traits hpke 0.13 wants.
struct HpkeRng<'a, R: ?Sized>(&'a mut R);

impl<R: CryptoRngCore + ?Sized> hpke::rand_core::RngCore for HpkeRng<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst);
    }
}

impl<R: CryptoRngCore + ?Sized> hpke::rand_core::CryptoRng for HpkeRng<'_, R> {}

/// One HPKE setup towards `key`: returns (enc, epoch secret).
fn setup_epoch(
    sender: &AgencyId,
    recipient: &AgencyId,
    key: &EncryptionKey,
    rng: &mut impl CryptoRngCore,
) -> Result<([u8; 32], Zeroizing<[u8; 32]>), SealError> {
    let bad_key = || SealError::BadRecipientKey {
        recipient: recipient.clone(),
    };
    let pk = <HpkeKem as hpke::Kem>::PublicKey::from_bytes(&key.0).map_err(|_| bad_key())?;
    let info = pair_info(EPOCH_INFO, sender, recipient);
    let (enc, ctx) = hpke::setup_sender::<HpkeAead, HpkeKdf, HpkeKem, _>(
        &hpke::OpModeS::Base,
        &pk,
        &info,
        &mut HpkeRng(rng),
    )
    .map_err(|_| bad_key())?;
    let mut secret = Zeroizing::new([0u8; 32]);
    ctx.export(EPOCH_EXPORT, secret.as_mut())
        .map_err(|_| SealError::Internal {
            what: "HPKE export",
        })?;
    let enc = <[u8; 32]>::try_from(enc.to_bytes().as_slice()).map_err(|_| SealError::Internal {
        what: "HPKE encapsulated key length",
    })?;
    Ok((enc, secret))
}

fn decapsulate_epoch(
    sender: &AgencyId,
    me: &AgencyId,
    my_secret: &EncryptionSecret,
    enc: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, SealError> {
    let failed = || SealError::EpochDecapsulation {
        sender: sender.clone(),
    };
    let sk = <HpkeKem as hpke::Kem>::PrivateKey::from_bytes(my_secret.to_bytes().as_ref())
        .map_err(|_| SealError::Internal {
            what: "X25519 secret key",
        })?;
    let encapped = <HpkeKem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| failed())?;
    let info = pair_info(EPOCH_INFO, sender, me);
    let ctx = hpke::setup_receiver::<HpkeAead, HpkeKdf, HpkeKem>(
        &hpke::OpModeR::Base,
        &sk,
        &encapped,
        &info,
    )
    .map_err(|_| failed())?;
    let mut secret = Zeroizing::new([0u8; 32]);
    ctx.export(EPOCH_EXPORT, secret.as_mut())
        .map_err(|_| SealError::Internal {
            what: "HPKE export",
        })?;
    Ok(secret)
}

/// When a sender's epoch is rotated, and how many it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochPolicy {
    /// Most epochs kept (least recently used evicted first); at least 1 is kept.
    pub max_entries: usize,
    /// Rotate when the epoch's creation time and now differ by this much (either way).
    pub max_age_ms: u64,
    /// Rotate after this many payloads were wrapped under the epoch.
    pub max_uses: u64,
}

impl Default for EpochPolicy {
    fn default() -> Self {
        Self {
            max_entries: 16_384,
            max_age_ms: 24 * 60 * 60 * 1000,
            max_uses: 100_000,
        }
    }
}

/// A bounded least-recently-used map: `HashMap` for lookup, `BTreeMap` of use ticks for
/// eviction order. Values are dropped (and so zeroized, for `Zeroizing` values) on eviction.
struct Lru<K, V> {
    max_entries: usize,
    entries: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
    tick: u64,
}

impl<K: Clone + Eq + std::hash::Hash, V> Lru<K, V> {
    fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value, marked as just used.
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.tick += 1;
        let tick = self.tick;
        let (value, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, key.clone());
        Some(value)
    }

    fn insert(&mut self, key: K, value: V) {
        self.tick += 1;
        if let Some((_, used)) = self.entries.insert(key.clone(), (value, self.tick)) {
            self.order.remove(&used);
        }
        self.order.insert(self.tick, key);
        while self.entries.len() > self.max_entries {
            match self.order.pop_first() {
                Some((_, oldest)) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

struct SenderEpoch {
    recipient_key: EncryptionKey,
    enc: [u8; 32],
    secret: Zeroizing<[u8; 32]>,
    created_ms: u64,
    uses: u64,
}

/// A sender's epochs, one per (sender, recipient): bounded, rotated by age, use count or a
/// change of the recipient's key. Secrets are zeroized when dropped or evicted.
pub struct SenderEpochs {
    policy: EpochPolicy,
    cache: Lru<(AgencyId, AgencyId), SenderEpoch>,
    setups: u64,
}

impl fmt::Debug for SenderEpochs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderEpochs")
            .field("policy", &self.policy)
            .field("entries", &self.cache.len())
            .field("setups", &self.setups)
            .finish_non_exhaustive()
    }
}

impl Default for SenderEpochs {
    fn default() -> Self {
        Self::new(EpochPolicy::default())
    }
}

impl SenderEpochs {
    pub fn new(policy: EpochPolicy) -> Self {
        Self {
            policy,
            cache: Lru::new(policy.max_entries),
            setups: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> EpochPolicy {
        self.policy
    }

    /// Epochs held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.len() == 0
    }

    /// HPKE setups done so far (each one a new epoch).
    pub fn setups(&self) -> u64 {
        self.setups
    }

    /// Forgets every epoch (zeroizing the secrets).
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    /// Starts a fresh epoch towards `recipient` now, replacing any current one, and returns
    /// its encapsulated key. Useful to warm the cache ahead of traffic, or to rotate on
    /// demand.
    pub fn rotate(
        &mut self,
        sender: &AgencyId,
        recipient: &AgencyId,
        key: &EncryptionKey,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<[u8; 32], SealError> {
        let (enc, secret) = setup_epoch(sender, recipient, key, rng)?;
        self.setups += 1;
        self.cache.insert(
            (sender.clone(), recipient.clone()),
            SenderEpoch {
                recipient_key: *key,
                enc,
                secret,
                created_ms: now_ms,
                uses: 0,
            },
        );
        Ok(enc)
    }

    /// The epoch to wrap one more payload under: the current one if still fresh, else a new
    /// one. Counts one use.
    fn epoch_for(
        &mut self,
        sender: &AgencyId,
        recipient: &AgencyId,
        key: &EncryptionKey,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<([u8; 32], Zeroizing<[u8; 32]>), SealError> {
        let policy = self.policy;
        let pair = (sender.clone(), recipient.clone());
        if let Some(epoch) = self.cache.get_mut(&pair)
            && epoch.recipient_key == *key
            && now_ms.abs_diff(epoch.created_ms) < policy.max_age_ms
            && epoch.uses < policy.max_uses
        {
            epoch.uses += 1;
            return Ok((epoch.enc, epoch.secret.clone()));
        }
        let (enc, secret) = setup_epoch(sender, recipient, key, rng)?;
        self.setups += 1;
        self.cache.insert(
            pair,
            SenderEpoch {
                recipient_key: *key,
                enc,
                secret: secret.clone(),
                created_ms: now_ms,
                uses: 1,
            },
        );
        Ok((enc, secret))
    }
}

/// A recipient's decapsulated epochs, keyed by (sender, recipient, enc): bounded (least
/// recently used evicted first), secrets zeroized when dropped or evicted.
pub struct RecipientEpochs {
    cache: Lru<(AgencyId, AgencyId, [u8; 32]), Zeroizing<[u8; 32]>>,
    decapsulations: u64,
}

impl fmt::Debug for RecipientEpochs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientEpochs")
            .field("entries", &self.cache.len())
            .field("max_entries", &self.cache.max_entries)
            .field("decapsulations", &self.decapsulations)
            .finish_non_exhaustive()
    }
}

impl Default for RecipientEpochs {
    fn default() -> Self {
        Self::new(16_384)
    }
}

impl RecipientEpochs {
    /// A cache of at most `max_entries` epochs (at least 1).
    pub fn new(max_entries: usize) -> Self {
        Self {
            cache: Lru::new(max_entries),
            decapsulations: 0,
        }
    }

    /// Epochs held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.len() == 0
    }

    /// HPKE decapsulations done so far.
    pub fn decapsulations(&self) -> u64 {
        self.decapsulations
    }

    /// Forgets every epoch (zeroizing the secrets), e.g. after the agency's key rotated.
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    fn get(&mut self, key: &(AgencyId, AgencyId, [u8; 32])) -> Option<Zeroizing<[u8; 32]>> {
        self.cache.get_mut(key).map(|s| s.clone())
    }

    fn insert(&mut self, key: (AgencyId, AgencyId, [u8; 32]), secret: Zeroizing<[u8; 32]>) {
        self.cache.insert(key, secret);
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore as _, SeedableRng};

    const NOW: u64 = 1_700_000_000_000;
    const DAY: u64 = 24 * 60 * 60 * 1000;

    struct Party {
        id: AgencyId,
        secret: EncryptionSecret,
    }

    impl Party {
        fn new(n: u8) -> Self {
            Self {
                id: AgencyId::parse(&format!("000.00.00.H{n:02}")).unwrap(),
                secret: EncryptionSecret::from_bytes(&[n; 32]),
            }
        }
        fn entry(&self) -> (AgencyId, EncryptionKey) {
            (self.id.clone(), self.secret.public_key())
        }
    }

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::from_seed([9; 32])
    }

    fn sender() -> AgencyId {
        AgencyId::parse("000.00.00.G22").unwrap()
    }

    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn seal_for(data: &[u8], to: &[&Party]) -> Sealed {
        let recipients: Vec<_> = to.iter().map(|p| p.entry()).collect();
        seal(
            data,
            &sender(),
            &recipients,
            &mut SenderEpochs::default(),
            NOW,
            &mut rng(),
        )
        .unwrap()
    }

    fn open_as(sealed: &Sealed, p: &Party) -> Result<Vec<u8>, SealError> {
        open(
            &sealed.manifest,
            &sealed.chunks,
            &sender(),
            &p.id,
            &p.secret,
            &mut RecipientEpochs::default(),
        )
    }

    /// Re-encodes a modified manifest without validation (to test what opening does with it).
    fn rebuilt(m: &Manifest, edit: impl FnOnce(&mut ManifestWire)) -> Manifest {
        let mut wire = m.wire.clone();
        edit(&mut wire);
        Manifest::encode(wire).unwrap()
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        let alice = Party::new(41);
        for len in [
            0,
            1,
            1024,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            (1 << 20) + 3,
        ] {
            let data = plaintext(len);
            let sealed = seal_for(&data, &[&alice]);
            let m = &sealed.manifest;
            let expected_chunks = len.div_ceil(CHUNK_LEN).max(1);
            assert_eq!(m.chunks().len(), expected_chunks, "len {len}");
            assert_eq!(sealed.chunks.len(), expected_chunks);
            assert_eq!(m.total_len(), len as u64);
            assert_eq!(
                sealed.chunks.iter().map(Vec::len).sum::<usize>() as u64,
                m.ciphertext_len()
            );
            for (i, c) in sealed.chunks.iter().enumerate() {
                verify_chunk(m, i, c).unwrap();
                assert_eq!(ChunkId::of(c), m.chunks()[i]);
            }
            assert_eq!(open_as(&sealed, &alice).unwrap(), data, "len {len}");
            let again = Manifest::decode(m.as_bytes()).unwrap();
            assert_eq!(&again, m);
            assert_eq!(again.id(), m.id());
        }
    }

    #[test]
    fn every_recipient_opens_and_nobody_else() {
        let parties: Vec<Party> = (1..=5).map(Party::new).collect();
        let refs: Vec<&Party> = parties.iter().collect();
        let data = plaintext(5000);
        let sealed = seal_for(&data, &refs);
        let listed: Vec<_> = sealed.manifest.recipients().cloned().collect();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(listed, sorted);
        for p in &parties {
            assert_eq!(open_as(&sealed, p).unwrap(), data);
        }
        let mallory = Party::new(66);
        assert!(matches!(
            open_as(&sealed, &mallory),
            Err(SealError::NotARecipient { .. })
        ));
        // Claiming a recipient's id without its secret key.
        let impostor = Party {
            id: parties[0].id.clone(),
            secret: EncryptionSecret::from_bytes(&[66; 32]),
        };
        assert!(matches!(
            open_as(&sealed, &impostor),
            Err(SealError::WrapInvalid { .. })
        ));
        // The right recipient but the wrong claimed sender.
        let other_sender = AgencyId::parse("000.00.00.G01").unwrap();
        assert!(matches!(
            open(
                &sealed.manifest,
                &sealed.chunks,
                &other_sender,
                &parties[0].id,
                &parties[0].secret,
                &mut RecipientEpochs::default()
            ),
            Err(SealError::WrapInvalid { .. })
        ));
    }

    #[test]
    fn wraps_cannot_move_between_documents_or_recipients() {
        let (alice, bob) = (Party::new(1), Party::new(2));
        let mut epochs = SenderEpochs::default();
        let mut r = rng();
        let to = [alice.entry(), bob.entry()];
        let one = seal(b"first", &sender(), &to, &mut epochs, NOW, &mut r).unwrap();
        let two = seal(b"second", &sender(), &to, &mut epochs, NOW, &mut r).unwrap();
        // Same epochs for both documents, so only the payload binding stops the move.
        assert_eq!(one.manifest.wraps()[0].epoch, two.manifest.wraps()[0].epoch);

        let moved = rebuilt(&two.manifest, |w| {
            w.wraps[0] = one.manifest.wraps()[0].clone()
        });
        let sealed = Sealed {
            manifest: moved,
            chunks: two.chunks.clone(),
        };
        assert!(matches!(
            open_as(&sealed, &alice),
            Err(SealError::WrapInvalid { .. })
        ));
        // Alice's wrap relabelled for Bob (both slots hold Alice's wrap bytes).
        let relabelled = rebuilt(&one.manifest, |w| {
            w.wraps[1].epoch = w.wraps[0].epoch;
            w.wraps[1].wrapped = w.wraps[0].wrapped;
        });
        let sealed = Sealed {
            manifest: relabelled,
            chunks: one.chunks.clone(),
        };
        assert!(open_as(&sealed, &bob).is_err());
        assert_eq!(open_as(&sealed, &alice).unwrap(), b"first");
    }

    #[test]
    fn tampered_chunks_fail_with_the_right_error() {
        let alice = Party::new(1);
        let data = plaintext(2 * CHUNK_LEN + 100);
        let sealed = seal_for(&data, &[&alice]);
        let m = &sealed.manifest;
        for i in 0..3 {
            let len = sealed.chunks[i].len();
            for bit in [0, 8 * (len / 2) + 3, 8 * len - 1] {
                let mut chunks = sealed.chunks.clone();
                chunks[i][bit / 8] ^= 1 << (bit % 8);
                let err = open_as(
                    &Sealed {
                        manifest: m.clone(),
                        chunks,
                    },
                    &alice,
                )
                .unwrap_err();
                assert!(
                    matches!(err, SealError::ChunkIdMismatch { index, .. } if index == i),
                    "{err}"
                );
            }
        }
        let mut dropped = sealed.clone();
        dropped.chunks.remove(1);
        assert!(matches!(
            open_as(&dropped, &alice),
            Err(SealError::ChunksSupplied {
                got: 2,
                expected: 3
            })
        ));
        let mut swapped = sealed.clone();
        swapped.chunks.swap(0, 1);
        assert!(matches!(
            open_as(&swapped, &alice),
            Err(SealError::ChunkIdMismatch { index: 0, .. })
        ));
        let mut truncated = sealed.clone();
        truncated.chunks[2].truncate(50);
        assert!(matches!(
            open_as(&truncated, &alice),
            Err(SealError::ChunkLength {
                index: 2,
                got: 50,
                expected: 116
            })
        ));
        assert!(matches!(
            verify_chunk(m, 3, &[]),
            Err(SealError::ChunkIndex { index: 3, count: 3 })
        ));
    }

    #[test]
    fn tampered_manifests_do_not_open() {
        let alice = Party::new(1);
        let data = plaintext(2 * CHUNK_LEN + 100);
        let sealed = seal_for(&data, &[&alice]);
        let m = &sealed.manifest;
        // A different chunk list (e.g. dropping the last chunk and shortening total_len
        // consistently) changes the root, so the wrap no longer opens.
        let shorter = rebuilt(m, |w| {
            w.chunks.pop();
            w.total_len = 2 * CHUNK_SIZE as u64;
        });
        assert!(Manifest::decode(shorter.as_bytes()).is_ok());
        assert!(matches!(
            unwrap_content_key(
                &shorter,
                &sender(),
                &alice.id,
                &alice.secret,
                &mut RecipientEpochs::default()
            ),
            Err(SealError::WrapInvalid { .. })
        ));
        let other_len = rebuilt(m, |w| w.total_len -= 1);
        let other_id = rebuilt(m, |w| w.chunks[1].0[0] ^= 1);
        for bad in [other_len, other_id] {
            assert!(matches!(
                open_as(
                    &Sealed {
                        manifest: bad,
                        chunks: sealed.chunks.clone()
                    },
                    &alice
                ),
                Err(SealError::WrapInvalid { .. })
            ));
        }
        // A key unwrapped from one manifest is refused for another.
        let key = unwrap_content_key(
            m,
            &sender(),
            &alice.id,
            &alice.secret,
            &mut RecipientEpochs::default(),
        )
        .unwrap();
        let other = seal_for(b"x", &[&alice]);
        assert!(matches!(
            open_chunk(&other.manifest, &key, 0, &other.chunks[0]),
            Err(SealError::KeyMismatch { .. })
        ));
        assert!(matches!(
            open_with_key(&other.manifest, &key, &other.chunks),
            Err(SealError::KeyMismatch { .. })
        ));
        // A flipped bit in the encoding is refused by the decoder or changes the id.
        for i in 0..m.as_bytes().len() {
            let mut bytes = m.as_bytes().to_vec();
            bytes[i] ^= 0x01;
            if let Ok(d) = Manifest::decode(&bytes) {
                assert_ne!(d.id(), m.id());
            }
        }
    }

    #[test]
    fn the_last_chunk_flag_and_length_are_authenticated() {
        let mut sealer = PayloadSealer::new(2 * CHUNK_SIZE as u64, &mut rng()).unwrap();
        let first = sealer.seal_chunk(&plaintext(CHUNK_LEN)).unwrap();
        let aad = chunk_aad(2 * CHUNK_SIZE as u64);
        let try_open = |index, last, aad: &[u8]| {
            sealer
                .cipher
                .decrypt(&chunk_nonce(index, last), Payload { msg: &first, aad })
                .is_ok()
        };
        assert!(try_open(0, false, &aad));
        assert!(
            !try_open(0, true, &aad),
            "a non-last chunk must not pass as the last"
        );
        assert!(!try_open(1, false, &aad));
        assert!(!try_open(0, false, &chunk_aad(CHUNK_SIZE as u64)));
        assert_eq!(
            &chunk_nonce(0x0102, true)[..],
            &[0, 0, 0, 0, 0, 0, 1, 2, 1, 0, 0, 0]
        );
        assert_eq!(&aad[..18], b"lienthong/v1/chunk");
        assert_eq!(&aad[18..], &(2u64 * CHUNK_SIZE as u64).to_be_bytes());
    }

    #[test]
    fn streaming_seal_and_open_chunk_by_chunk() {
        let alice = Party::new(1);
        let total = 3 * CHUNK_LEN + 7;
        let mut r = rng();
        let mut sealer = PayloadSealer::new(total as u64, &mut r).unwrap();
        let mut stored = Vec::new();
        while let Some(n) = sealer.next_chunk_len() {
            let start = stored.len() * CHUNK_LEN;
            stored.push(
                sealer
                    .seal_chunk(&plaintext(total)[start..start + n])
                    .unwrap(),
            );
        }
        assert!(matches!(
            sealer.seal_chunk(&[]),
            Err(SealError::ChunkIndex { index: 4, count: 4 })
        ));
        let m = sealer
            .finish(
                &sender(),
                &[alice.entry()],
                &mut SenderEpochs::default(),
                NOW,
                &mut r,
            )
            .unwrap();
        let mut epochs = RecipientEpochs::default();
        let key = unwrap_content_key(&m, &sender(), &alice.id, &alice.secret, &mut epochs).unwrap();
        let mut out = Vec::new();
        for (i, c) in stored.iter().enumerate() {
            verify_chunk(&m, i, c).unwrap();
            out.extend(open_chunk(&m, &key, i, c).unwrap());
        }
        assert_eq!(out, plaintext(total));
        assert_eq!(open_with_key(&m, &key, &stored).unwrap(), plaintext(total));
        assert!(matches!(
            open_with_key(&m, &key, &stored[..3]),
            Err(SealError::ChunksSupplied {
                got: 3,
                expected: 4
            })
        ));

        let mut sealer = PayloadSealer::new(10, &mut r).unwrap();
        assert!(matches!(
            sealer.seal_chunk(&[0; 9]),
            Err(SealError::PlaintextChunkLength {
                index: 0,
                got: 9,
                expected: 10
            })
        ));
        let unfinished = PayloadSealer::new(10, &mut r).unwrap();
        assert!(matches!(
            unfinished.finish(
                &sender(),
                &[alice.entry()],
                &mut SenderEpochs::default(),
                NOW,
                &mut r
            ),
            Err(SealError::Incomplete {
                sealed: 0,
                expected: 1
            })
        ));
    }

    #[test]
    fn refuses_bad_recipient_lists_and_sizes() {
        let alice = Party::new(1);
        let mut epochs = SenderEpochs::default();
        let mut r = rng();
        let s = sender();
        let err = seal(b"x", &s, &[], &mut epochs, NOW, &mut r).unwrap_err();
        assert_eq!(
            err,
            SealError::RecipientCount {
                count: 0,
                max: 1024
            }
        );
        let many: Vec<_> = (0..1025)
            .map(|i| {
                (
                    AgencyId::parse_any(&format!("E{i}")).unwrap(),
                    alice.secret.public_key(),
                )
            })
            .collect();
        assert!(matches!(
            seal(b"x", &s, &many, &mut epochs, NOW, &mut r),
            Err(SealError::RecipientCount { count: 1025, .. })
        ));
        assert!(matches!(
            seal(
                b"x",
                &s,
                &[alice.entry(), alice.entry()],
                &mut epochs,
                NOW,
                &mut r
            ),
            Err(SealError::DuplicateRecipient { .. })
        ));
        assert!(matches!(
            PayloadSealer::new(MAX_PAYLOAD_LEN + 1, &mut r),
            Err(SealError::PayloadTooLarge { .. })
        ));
        let low_order = (alice.id.clone(), EncryptionKey([0; 32]));
        assert!(matches!(
            seal(b"x", &s, &[low_order], &mut epochs, NOW, &mut r),
            Err(SealError::BadRecipientKey { .. })
        ));
        assert_eq!(epochs.setups(), 0);
        // A wrap naming a small-order encapsulated key.
        let sealed = seal_for(b"x", &[&alice]);
        let bad = rebuilt(&sealed.manifest, |w| w.wraps[0].epoch = [0; 32]);
        assert!(matches!(
            unwrap_content_key(
                &bad,
                &s,
                &alice.id,
                &alice.secret,
                &mut RecipientEpochs::default()
            ),
            Err(SealError::EpochDecapsulation { .. })
        ));
    }

    #[test]
    fn epochs_are_reused_then_rotated() {
        let (alice, bob) = (Party::new(1), Party::new(2));
        let s = sender();
        let mut epochs = SenderEpochs::new(EpochPolicy {
            max_uses: 3,
            ..EpochPolicy::default()
        });
        let mut theirs = RecipientEpochs::default();
        let mut r = rng();
        let mut send = |epochs: &mut SenderEpochs, to: &[(AgencyId, EncryptionKey)], now| {
            let sealed = seal(b"doc", &s, to, epochs, now, &mut r).unwrap();
            sealed.manifest.wraps()[0].epoch
        };
        let e1 = send(&mut epochs, &[alice.entry()], NOW);
        let e2 = send(&mut epochs, &[alice.entry()], NOW + 1000);
        assert_eq!(e1, e2);
        assert_eq!(epochs.setups(), 1);
        // Third use still in the epoch, fourth rotates (max_uses = 3).
        assert_eq!(send(&mut epochs, &[alice.entry()], NOW + 2000), e1);
        let e4 = send(&mut epochs, &[alice.entry()], NOW + 3000);
        assert_ne!(e4, e1);
        assert_eq!(epochs.setups(), 2);
        // Age: just under a day keeps it, a day rotates, and so does a clock a day behind.
        assert_eq!(
            send(&mut epochs, &[alice.entry()], NOW + 3000 + DAY - 1),
            e4
        );
        let e6 = send(&mut epochs, &[alice.entry()], NOW + 3000 + DAY);
        assert_ne!(e6, e4);
        let e7 = send(&mut epochs, &[alice.entry()], NOW + 3000);
        assert_ne!(e7, e6);
        // A new key for the recipient rotates at once.
        let rekeyed = (
            alice.id.clone(),
            EncryptionSecret::from_bytes(&[77; 32]).public_key(),
        );
        let e8 = send(&mut epochs, &[rekeyed], NOW + 3000);
        assert_ne!(e8, e7);
        // Another recipient gets its own epoch.
        let eb = send(&mut epochs, &[bob.entry()], NOW + 3000);
        assert_ne!(eb, e8);
        assert_eq!(epochs.setups(), 6);
        assert_eq!(epochs.len(), 2);

        // The recipient decapsulates once per epoch.
        let mut r = rng();
        let to = [alice.entry()];
        let mut warm = SenderEpochs::default();
        for _ in 0..3 {
            let sealed = seal(b"doc", &s, &to, &mut warm, NOW, &mut r).unwrap();
            open(
                &sealed.manifest,
                &sealed.chunks,
                &s,
                &alice.id,
                &alice.secret,
                &mut theirs,
            )
            .unwrap();
        }
        assert_eq!(warm.setups(), 1);
        assert_eq!(theirs.decapsulations(), 1);
        warm.rotate(&s, &alice.id, &alice.secret.public_key(), NOW, &mut r)
            .unwrap();
        let sealed = seal(b"doc", &s, &to, &mut warm, NOW, &mut r).unwrap();
        open(
            &sealed.manifest,
            &sealed.chunks,
            &s,
            &alice.id,
            &alice.secret,
            &mut theirs,
        )
        .unwrap();
        assert_eq!(warm.setups(), 2);
        assert_eq!(theirs.decapsulations(), 2);
        assert_eq!(theirs.len(), 2);
    }

    #[test]
    fn caches_stay_bounded_and_keep_recent_entries() {
        let parties: Vec<Party> = (1..=10).map(Party::new).collect();
        let s = sender();
        let mut r = rng();
        let mut epochs = SenderEpochs::new(EpochPolicy {
            max_entries: 4,
            ..EpochPolicy::default()
        });
        let mut theirs = RecipientEpochs::new(3);
        let all: Vec<_> = parties.iter().map(Party::entry).collect();
        let sealed = seal(b"doc", &s, &all, &mut epochs, NOW, &mut r).unwrap();
        assert_eq!(epochs.len(), 4);
        for p in &parties {
            open(
                &sealed.manifest,
                &sealed.chunks,
                &s,
                &p.id,
                &p.secret,
                &mut theirs,
            )
            .unwrap();
            assert!(theirs.len() <= 3);
        }
        assert_eq!(theirs.decapsulations(), 10);
        // The last four recipients are cached; using #7 keeps it while others come in.
        let setups = epochs.setups();
        seal(b"doc", &s, &all[6..7], &mut epochs, NOW, &mut r).unwrap();
        assert_eq!(epochs.setups(), setups);
        seal(b"doc", &s, &all[0..3], &mut epochs, NOW, &mut r).unwrap();
        assert_eq!(epochs.setups(), setups + 3);
        seal(b"doc", &s, &all[6..7], &mut epochs, NOW, &mut r).unwrap();
        assert_eq!(epochs.setups(), setups + 3);
        assert_eq!(epochs.len(), 4);
        assert_eq!(epochs.cache.order.len(), 4);
        epochs.clear();
        assert!(epochs.is_empty());
        // A zero bound still works (one entry kept).
        let mut tiny = RecipientEpochs::new(0);
        open(
            &sealed.manifest,
            &sealed.chunks,
            &s,
            &parties[0].id,
            &parties[0].secret,
            &mut tiny,
        )
        .unwrap();
        assert_eq!(tiny.len(), 1);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let alice = Party::new(1);
        let s = sender();
        let mut epochs = SenderEpochs::default();
        let mut r = rng();
        let sealed = seal(
            b"secret doc",
            &s,
            &[alice.entry()],
            &mut epochs,
            NOW,
            &mut r,
        )
        .unwrap();
        let mut theirs = RecipientEpochs::default();
        let key = unwrap_content_key(&sealed.manifest, &s, &alice.id, &alice.secret, &mut theirs)
            .unwrap();
        let epoch_secret = {
            let e = epochs
                .cache
                .get_mut(&(s.clone(), alice.id.clone()))
                .unwrap();
            hex(e.secret.as_ref())
        };
        let mut content_key = [0u8; 32];
        rng().fill_bytes(&mut content_key);
        let printed = format!("{epochs:?} {theirs:?} {key:?} {sealed:?}");
        assert!(!printed.contains(&epoch_secret[..16]), "{printed}");
        assert!(!printed.contains(&hex(&content_key)[..16]), "{printed}");
        assert!(printed.contains("secret not shown"));
    }

    fn wire_with(edit: impl FnOnce(&mut ManifestWire)) -> Vec<u8> {
        let alice = Party::new(1);
        let sealed = seal_for(&plaintext(CHUNK_LEN + 1), &[&alice]);
        let mut wire = sealed.manifest.wire.clone();
        edit(&mut wire);
        cbor::to_canonical(&wire).unwrap()
    }

    fn wrap_to(id: &str) -> KeyWrap {
        KeyWrap {
            epoch: [1; 32],
            wrapped: [2; 48],
            to: AgencyId::parse_any(id).unwrap(),
        }
    }

    #[test]
    fn decode_refuses_each_malformed_manifest() {
        let ok = wire_with(|_| {});
        Manifest::decode(&ok).unwrap();
        let mut trailing = ok.clone();
        trailing.push(0);
        assert!(matches!(
            Manifest::decode(&trailing),
            Err(SealError::Cbor(CborError::TrailingBytes { .. }))
        ));
        type Check = fn(&SealError) -> bool;
        let cases: Vec<(Vec<u8>, Check)> = vec![
            (wire_with(|w| w.version = 2), |e| {
                matches!(e, SealError::UnsupportedVersion { got: 2, .. })
            }),
            (wire_with(|w| w.chunk_size = 1024), |e| {
                matches!(e, SealError::ChunkSize { got: 1024, .. })
            }),
            (wire_with(|w| w.total_len = MAX_PAYLOAD_LEN + 1), |e| {
                matches!(e, SealError::PayloadTooLarge { .. })
            }),
            (wire_with(|w| w.total_len = 3 * CHUNK_SIZE as u64), |e| {
                matches!(
                    e,
                    SealError::ChunkCount {
                        got: 2,
                        expected: 3,
                        ..
                    }
                )
            }),
            (wire_with(|w| w.chunks.clear()), |e| {
                matches!(e, SealError::ChunkCount { got: 0, .. })
            }),
            (
                wire_with(|w| {
                    w.wraps = (0..1025).map(|i| wrap_to(&format!("E{i:04}"))).collect();
                }),
                |e| matches!(e, SealError::TooManyWraps { count: 1025, .. }),
            ),
            (wire_with(|w| w.wraps.clear()), |e| {
                matches!(e, SealError::NoWraps)
            }),
            (
                wire_with(|w| w.wraps = vec![wrap_to("B"), wrap_to("A")]),
                |e| matches!(e, SealError::WrapsUnsorted { index: 1 }),
            ),
            (
                wire_with(|w| w.wraps = vec![wrap_to("A"), wrap_to("A")]),
                |e| matches!(e, SealError::DuplicateWrap { .. }),
            ),
        ];
        for (bytes, check) in cases {
            let err = Manifest::decode(&bytes).unwrap_err();
            assert!(check(&err), "unexpected {err}");
            assert!(!err.to_string().is_empty());
        }
        // A full-size manifest fits the limit.
        let full = wire_with(|w| {
            w.total_len = MAX_PAYLOAD_LEN;
            w.chunks = vec![ChunkId([7; 32]); MAX_CHUNKS];
            w.wraps = (0..MAX_RECIPIENTS)
                .map(|i| wrap_to(&format!("{i:0>32}")))
                .collect();
        });
        assert!(full.len() <= MAX_MANIFEST_LEN, "{}", full.len());
        Manifest::decode(&full).unwrap();
        // Unknown fields are refused.
        let mut value: ciborium::Value = ciborium::de::from_reader(ok.as_slice()).unwrap();
        if let ciborium::Value::Map(entries) = &mut value {
            entries.push((
                ciborium::Value::Text("x".into()),
                ciborium::Value::Integer(1.into()),
            ));
        }
        let extra = cbor::to_canonical(&value).unwrap();
        assert!(matches!(
            Manifest::decode(&extra),
            Err(SealError::Cbor(CborError::Schema { .. }))
        ));
    }

    #[test]
    fn ids_print_as_hex() {
        let id = PayloadId([0xab; 32]);
        assert_eq!(id.to_string(), "ab".repeat(32));
        assert_eq!(
            format!("{:?}", ChunkId([1; 32])),
            format!("ChunkId({})", "01".repeat(32))
        );
    }
}
