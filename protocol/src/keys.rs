//! Key material: Ed25519 signing keys (envelopes, statuses, roster and log signatures),
//! X25519 encryption keys (sealed payloads), fingerprints, and the text key-file format.
//!
//! Signing and encryption keys are separate types with separate secrets; neither converts
//! into the other, and the node's libp2p transport key lives outside this crate. Every
//! signature is made over a domain-separation prefix ([`SignatureDomain`]) so that a
//! signature made for one purpose can never be replayed as another.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::Signer as _;
use rand_core::CryptoRngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Why a key, signature or key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{what} must be {expected} bytes, got {got}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error(
        "{what} is not a valid Ed25519 public key (not a canonical curve point or of small order)"
    )]
    BadPublicKey { what: &'static str },
    #[error("signature does not verify for {domain}")]
    BadSignature { domain: &'static str },
    #[error("key file line {line}: {problem}")]
    KeyFile { line: usize, problem: String },
    #[error("batch of {signatures} signatures with {messages} messages and {keys} keys")]
    BatchShape {
        messages: usize,
        signatures: usize,
        keys: usize,
    },
}

/// What a signature is for. The prefix is signed together with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureDomain {
    /// An envelope (documents, statuses, recalls, updates…) signed by its agency.
    Envelope,
    /// A roster epoch signed by a root key of the central office.
    Roster,
}

impl SignatureDomain {
    /// The bytes signed before the message.
    pub fn prefix(self) -> &'static [u8] {
        match self {
            Self::Envelope => b"lienthong/v1/envelope\0",
            Self::Roster => b"lienthong/v1/roster\0",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Envelope => "an envelope",
            Self::Roster => "a roster epoch",
        }
    }

    /// `prefix || message`: the exact bytes given to Ed25519.
    pub fn message(self, message: &[u8]) -> Vec<u8> {
        let mut signed = Vec::with_capacity(self.prefix().len() + message.len());
        signed.extend_from_slice(self.prefix());
        signed.extend_from_slice(message);
        signed
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex_prefix(&self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::cbor::bytes64::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::cbor::bytes64::deserialize(d).map(Self)
    }
}

/// An agency's (or root key holder's) Ed25519 secret signing key. Zeroized on drop.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey(public {})",
            self.verifying_key().fingerprint()
        )
    }
}

impl SigningKey {
    /// A fresh key from a cryptographic RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self(ed25519_dalek::SigningKey::generate(rng))
    }

    /// The key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed (secret): handle with care.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `domain.prefix() || message`.
    pub fn sign(&self, domain: SignatureDomain, message: &[u8]) -> Signature {
        Signature(self.0.sign(&domain.message(message)).to_bytes())
    }

    /// Signs raw bytes with no domain prefix: only for formats whose spec fixes the signed
    /// bytes itself (C2SP signed notes and cosignatures).
    pub fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

/// An Ed25519 public key. Validity of the point is checked when it is used to verify.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerifyingKey(pub [u8; 32]);

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", self.fingerprint())
    }
}

impl Serialize for VerifyingKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::cbor::bytes32::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for VerifyingKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::cbor::bytes32::deserialize(d).map(Self)
    }
}

impl VerifyingKey {
    /// The dalek key, refusing non-canonical encodings and small-order points.
    pub fn to_dalek(&self) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.0).map_err(|_| {
            KeyError::BadPublicKey {
                what: "signing key",
            }
        })?;
        if key.is_weak() {
            return Err(KeyError::BadPublicKey {
                what: "signing key",
            });
        }
        Ok(key)
    }

    /// Checks a signature over `domain.prefix() || message` with `verify_strict`.
    pub fn verify(
        &self,
        domain: SignatureDomain,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), KeyError> {
        self.verify_prefixed(domain, &domain.message(message), signature)
    }

    fn verify_prefixed(
        &self,
        domain: SignatureDomain,
        signed: &[u8],
        signature: &Signature,
    ) -> Result<(), KeyError> {
        let key = self.to_dalek()?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(signed, &sig)
            .map_err(|_| KeyError::BadSignature {
                domain: domain.name(),
            })
    }

    /// Checks a signature over raw bytes (C2SP formats) with `verify_strict`.
    pub fn verify_raw(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        let key = self.to_dalek()?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig)
            .map_err(|_| KeyError::BadSignature {
                domain: "a raw message",
            })
    }

    /// A short printable fingerprint: `ed25519:` and the first 10 bytes of
    /// SHA-256("lienthong/v1/fingerprint\0" || key) in lowercase base32.
    pub fn fingerprint(&self) -> String {
        format!("ed25519:{}", fingerprint_of(&self.0))
    }
}

/// Verifies many envelope signatures at once (about twice as fast as one by one). When the
/// batch fails, each is checked alone with `verify_strict` and the indices of the bad ones
/// are returned, so a bad signature is always identified.
pub fn verify_batch(
    domain: SignatureDomain,
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[VerifyingKey],
) -> Result<(), BatchFailure> {
    if messages.len() != signatures.len() || messages.len() != keys.len() {
        return Err(BatchFailure::Shape(KeyError::BatchShape {
            messages: messages.len(),
            signatures: signatures.len(),
            keys: keys.len(),
        }));
    }
    let prefixed: Vec<Vec<u8>> = messages.iter().map(|m| domain.message(m)).collect();
    let dalek_keys: Result<Vec<_>, _> = keys.iter().map(VerifyingKey::to_dalek).collect();
    if let Ok(dalek_keys) = dalek_keys {
        let refs: Vec<&[u8]> = prefixed.iter().map(Vec::as_slice).collect();
        let sigs: Vec<_> = signatures
            .iter()
            .map(|s| ed25519_dalek::Signature::from_bytes(&s.0))
            .collect();
        // The batch equation is weaker than verify_strict for crafted (non-canonical or
        // small-order) inputs, so a passing batch is confirmed only for canonical signatures;
        // keys were already checked above.
        if ed25519_dalek::verify_batch(&refs, &sigs, &dalek_keys).is_ok()
            && signatures.iter().all(scalar_is_canonical)
        {
            return Ok(());
        }
    }
    let bad: Vec<usize> = prefixed
        .iter()
        .zip(signatures.iter().zip(keys))
        .enumerate()
        .filter(|(_, (msg, (sig, key)))| key.verify_prefixed(domain, msg, sig).is_err())
        .map(|(i, _)| i)
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(BatchFailure::Invalid(bad))
    }
}

/// Ed25519 `S` must be below the group order; dalek's `from_bytes` does not check it.
fn scalar_is_canonical(sig: &Signature) -> bool {
    let mut s = [0u8; 32];
    s.copy_from_slice(sig.0.get(32..).unwrap_or(&[0u8; 32]));
    bool::from(curve25519_scalar_is_canonical(s))
}

fn curve25519_scalar_is_canonical(bytes: [u8; 32]) -> subtle::Choice {
    // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    // Compare from the most significant byte down.
    for (b, l) in bytes.iter().rev().zip(L.iter().rev()) {
        if b != l {
            return subtle::Choice::from(u8::from(b < l));
        }
    }
    subtle::Choice::from(0)
}

/// Why a batch did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchFailure {
    #[error(transparent)]
    Shape(KeyError),
    #[error("signatures at positions {0:?} do not verify")]
    Invalid(Vec<usize>),
}

/// An agency's X25519 secret encryption key (opens sealed payloads). Zeroized on drop.
pub struct EncryptionSecret(x25519_dalek::StaticSecret);

impl fmt::Debug for EncryptionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EncryptionSecret(public {})",
            self.public_key().fingerprint()
        )
    }
}

impl EncryptionSecret {
    /// A fresh key from a cryptographic RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self(x25519_dalek::StaticSecret::from(*bytes))
    }

    /// The key from its 32 secret bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(x25519_dalek::StaticSecret::from(*bytes))
    }

    /// The 32 secret bytes: handle with care.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public half.
    pub fn public_key(&self) -> EncryptionKey {
        EncryptionKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }
}

/// An agency's X25519 public encryption key, as listed in the roster.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EncryptionKey(pub [u8; 32]);

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({})", self.fingerprint())
    }
}

impl EncryptionKey {
    /// A short printable fingerprint, `x25519:` and the first 10 bytes of the hash.
    pub fn fingerprint(&self) -> String {
        format!("x25519:{}", fingerprint_of(&self.0))
    }
}

impl Serialize for EncryptionKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::cbor::bytes32::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for EncryptionKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::cbor::bytes32::deserialize(d).map(Self)
    }
}

fn fingerprint_of(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"lienthong/v1/fingerprint\0")
        .chain_update(key)
        .finalize();
    data_encoding::BASE32_NOPAD
        .encode(digest.get(..10).unwrap_or_default())
        .to_ascii_lowercase()
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// What a key file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileKind {
    /// An Ed25519 signing key (`ed25519-signing`).
    Signing,
    /// An X25519 encryption key (`x25519-encryption`).
    Encryption,
    /// An Ed25519 libp2p transport identity (`ed25519-transport`): the node's peer id,
    /// kept apart from every agency's signing key.
    Transport,
}

impl KeyFileKind {
    fn label(self) -> &'static str {
        match self {
            Self::Signing => "ed25519-signing",
            Self::Encryption => "x25519-encryption",
            Self::Transport => "ed25519-transport",
        }
    }
}

/// The secret-key file format (text, one `name: value` per line, UTF-8):
///
/// ```text
/// lienthong-key v1
/// kind: ed25519-signing            (or x25519-encryption, ed25519-transport)
/// owner: 000.00.00.G22             (free label: agency id or key holder name)
/// public: <base64 of the 32-byte public key>
/// secret: <base64 of the 32-byte secret seed>
/// ```
///
/// Lines appear in this order; the public key is checked against the secret on reading.
/// The node writes these files with mode 0600.
#[derive(Debug)]
pub struct KeyFile {
    pub kind: KeyFileKind,
    pub owner: String,
    pub secret: Zeroizing<[u8; 32]>,
}

impl KeyFile {
    /// A signing key file.
    pub fn signing(owner: &str, key: &SigningKey) -> Self {
        Self {
            kind: KeyFileKind::Signing,
            owner: owner.to_owned(),
            secret: key.seed(),
        }
    }

    /// An encryption key file.
    pub fn encryption(owner: &str, key: &EncryptionSecret) -> Self {
        Self {
            kind: KeyFileKind::Encryption,
            owner: owner.to_owned(),
            secret: key.to_bytes(),
        }
    }

    /// A transport identity file (the seed of the node's libp2p Ed25519 key).
    pub fn transport(owner: &str, seed: &[u8; 32]) -> Self {
        Self {
            kind: KeyFileKind::Transport,
            owner: owner.to_owned(),
            secret: Zeroizing::new(*seed),
        }
    }

    fn public(&self) -> [u8; 32] {
        match self.kind {
            KeyFileKind::Signing | KeyFileKind::Transport => {
                SigningKey::from_seed(&self.secret).verifying_key().0
            }
            KeyFileKind::Encryption => EncryptionSecret::from_bytes(&self.secret).public_key().0,
        }
    }

    /// The file's text.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "lienthong-key v1\nkind: {}\nowner: {}\npublic: {}\nsecret: {}\n",
            self.kind.label(),
            self.owner,
            BASE64.encode(self.public()),
            BASE64.encode(self.secret.as_ref())
        ))
    }

    /// Parses a key file, naming the line and the problem on failure.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let err = |line: usize, problem: &str| KeyError::KeyFile {
            line,
            problem: problem.to_owned(),
        };
        let mut lines = text.lines();
        if lines.next() != Some("lienthong-key v1") {
            return Err(err(1, "expected the header `lienthong-key v1`"));
        }
        let mut field = |n: usize, name: &str| -> Result<String, KeyError> {
            let line = lines
                .next()
                .ok_or_else(|| err(n, &format!("missing `{name}:` line")))?;
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(": "))
                .map(str::to_owned)
                .ok_or_else(|| err(n, &format!("expected `{name}: …`")))
        };
        let kind = match field(2, "kind")?.as_str() {
            "ed25519-signing" => KeyFileKind::Signing,
            "x25519-encryption" => KeyFileKind::Encryption,
            "ed25519-transport" => KeyFileKind::Transport,
            _ => {
                return Err(err(
                    2,
                    "kind must be ed25519-signing, x25519-encryption or ed25519-transport",
                ));
            }
        };
        let owner = field(3, "owner")?;
        let public = field(4, "public")?;
        let secret_b64 = Zeroizing::new(field(5, "secret")?);
        let decode32 =
            |line: usize, what: &str, s: &str| -> Result<Zeroizing<[u8; 32]>, KeyError> {
                let raw = Zeroizing::new(
                    BASE64
                        .decode(s)
                        .map_err(|_| err(line, &format!("{what} is not base64")))?,
                );
                let arr: [u8; 32] = raw
                    .as_slice()
                    .try_into()
                    .map_err(|_| err(line, &format!("{what} must be 32 bytes")))?;
                Ok(Zeroizing::new(arr))
            };
        let secret = decode32(5, "secret", &secret_b64)?;
        let public = decode32(4, "public", &public)?;
        let file = Self {
            kind,
            owner,
            secret,
        };
        if file.public() != *public {
            return Err(err(4, "public key does not match the secret key"));
        }
        Ok(file)
    }

    /// The signing key, if this is a signing key file.
    pub fn signing_key(&self) -> Option<SigningKey> {
        (self.kind == KeyFileKind::Signing).then(|| SigningKey::from_seed(&self.secret))
    }

    /// The encryption secret, if this is an encryption key file.
    pub fn encryption_secret(&self) -> Option<EncryptionSecret> {
        (self.kind == KeyFileKind::Encryption).then(|| EncryptionSecret::from_bytes(&self.secret))
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::type_complexity,
        clippy::needless_range_loop
    )]
    use super::*;
    use rand_core::SeedableRng;

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(7)
    }

    #[test]
    fn domains_separate_signatures() {
        let key = SigningKey::generate(&mut rng());
        let sig = key.sign(SignatureDomain::Envelope, b"hello");
        let public = key.verifying_key();
        public
            .verify(SignatureDomain::Envelope, b"hello", &sig)
            .unwrap();
        assert!(
            public
                .verify(SignatureDomain::Roster, b"hello", &sig)
                .is_err()
        );
        assert!(
            public
                .verify(SignatureDomain::Envelope, b"hellp", &sig)
                .is_err()
        );
    }

    #[test]
    fn batch_identifies_the_bad_signature() {
        let mut r = rng();
        let keys: Vec<_> = (0..8).map(|_| SigningKey::generate(&mut r)).collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<_> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| k.sign(SignatureDomain::Envelope, m))
            .collect();
        let pubs: Vec<_> = keys.iter().map(SigningKey::verifying_key).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        verify_batch(SignatureDomain::Envelope, &refs, &sigs, &pubs).unwrap();
        sigs[5].0[3] ^= 1;
        assert_eq!(
            verify_batch(SignatureDomain::Envelope, &refs, &sigs, &pubs),
            Err(BatchFailure::Invalid(vec![5]))
        );
    }

    #[test]
    fn non_canonical_scalar_is_refused() {
        let key = SigningKey::generate(&mut rng());
        let mut sig = key.sign(SignatureDomain::Envelope, b"m");
        // Add the group order l to S: the same point equation, a different (malleated) signature.
        let mut carry = 0u16;
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        for i in 0..32 {
            let sum = u16::from(sig.0[32 + i]) + u16::from(l[i]) + carry;
            sig.0[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert!(!scalar_is_canonical(&sig));
        let public = key.verifying_key();
        assert!(
            public
                .verify(SignatureDomain::Envelope, b"m", &sig)
                .is_err()
        );
        assert!(verify_batch(SignatureDomain::Envelope, &[b"m"], &[sig], &[public]).is_err());
    }

    #[test]
    fn key_files_round_trip_and_name_problems() {
        let key = SigningKey::generate(&mut rng());
        let text = KeyFile::signing("000.00.00.G22", &key).to_text();
        let back = KeyFile::parse(&text).unwrap();
        assert_eq!(
            back.signing_key().unwrap().verifying_key(),
            key.verifying_key()
        );
        assert!(back.encryption_secret().is_none());
        let enc = EncryptionSecret::generate(&mut rng());
        let text = KeyFile::encryption("x", &enc).to_text();
        assert_eq!(
            KeyFile::parse(&text)
                .unwrap()
                .encryption_secret()
                .unwrap()
                .public_key(),
            enc.public_key()
        );

        let tampered = text.replace("kind: x25519-encryption", "kind: ed25519-signing");
        let err = KeyFile::parse(&tampered).unwrap_err().to_string();
        assert!(
            err.contains("line 4") && err.contains("does not match"),
            "{err}"
        );
        let err = KeyFile::parse("lienthong-key v2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
