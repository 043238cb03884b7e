//! C2SP signed-note (c2sp.org/signed-note): note text, signature lines, key IDs, verifier keys
//! (`vkey`), Ed25519 signing and verification that ignores unknown keys.
//!
//! ```text
//! <text, ending in a newline>
//! <blank line>
//! — <key name> <base64(key ID (4 bytes, big-endian) || signature)>
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Largest encoded note [`Note::parse`] accepts, in bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;

/// Most signature lines [`Note::parse`] accepts (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// Signature type byte of plain Ed25519 note signatures.
pub const ALG_ED25519: u8 = 0x01;

/// Prefix of a signature line: em dash, space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Prefix of the private signer key encoding used by `golang.org/x/mod/sumdb/note`.
const SKEY_PREFIX: &str = "PRIVATE+KEY+";

/// Errors from parsing, signing and verifying notes and keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The encoded note exceeds [`MAX_NOTE_BYTES`].
    #[error("note is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The note is not valid UTF-8.
    #[error("note is not valid UTF-8")]
    InvalidUtf8,
    /// The note contains a control character other than newline.
    #[error(
        "note contains control character {byte:#04x} at byte {offset}; only newline is allowed"
    )]
    ControlCharacter {
        /// The offending byte.
        byte: u8,
        /// Its offset.
        offset: usize,
    },
    /// The note text is empty or does not end in a newline.
    #[error("note text must be non-empty and end in a newline")]
    TextNotTerminated,
    /// No blank line separates the text from the signatures.
    #[error("note has no blank line before its signatures")]
    MissingSignatureBlock,
    /// The note has no signature lines.
    #[error("note has no signature lines")]
    NoSignatures,
    /// The signature block does not end in a newline.
    #[error("signature block must end in a newline")]
    SignaturesNotTerminated,
    /// More signature lines than [`MAX_SIGNATURES`].
    #[error("note has more than {max} signature lines")]
    TooManySignatures {
        /// The limit.
        max: usize,
    },
    /// A signature line is malformed.
    #[error("signature line {line}: {reason}")]
    BadSignatureLine {
        /// 1-based line number within the signature block.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A key name is empty or contains a space or `+`.
    #[error("key name {name:?} must be non-empty and contain no spaces or '+'")]
    BadKeyName {
        /// The offending name.
        name: String,
    },
    /// A verifier or signer key string is malformed.
    #[error("key encoding: {reason}")]
    BadKey {
        /// What is wrong.
        reason: &'static str,
    },
    /// The key uses a signature type this code does not handle here.
    #[error("key has signature type {got:#04x}, expected {expected:#04x}")]
    WrongAlgorithm {
        /// Type byte found.
        got: u8,
        /// Type byte expected.
        expected: u8,
    },
    /// The key ID in a key string does not match the key.
    #[error("key ID {got:08x} does not match the computed {computed:08x}")]
    KeyIdMismatch {
        /// Key ID written in the string.
        got: u32,
        /// Key ID computed from name and key.
        computed: u32,
    },
    /// Two configured verifiers share name and key ID.
    #[error("ambiguous key {name}+{key_id:08x}: more than one verifier matches")]
    AmbiguousKey {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// A signature from a known key failed to verify: the whole note is rejected.
    #[error("invalid signature for key {name}+{key_id:08x}")]
    InvalidSignature {
        /// Key name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// No signature from a known key.
    #[error("note has no signature from a known key")]
    NoKnownSignature,
}

/// Whether `name` is a valid key name: non-empty, no Unicode spaces, no `+`.
#[must_use]
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if is_valid_name(name) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(NoteError::BadKeyName {
            name: name.to_owned(),
        })
    }
}

/// Recommended key ID: `SHA-256(name || 0x0A || alg || public_key)[:4]`, big-endian.
#[must_use]
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let d = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n', alg])
        .chain_update(public_key)
        .finalize();
    let mut id = [0u8; 4];
    id.copy_from_slice(d.get(..4).unwrap_or(&[0; 4]));
    u32::from_be_bytes(id)
}

/// Checks the note-wide character rules: no ASCII control characters except newline.
fn check_chars(text: &str) -> Result<(), NoteError> {
    match text
        .bytes()
        .enumerate()
        .find(|&(_, b)| b < 0x20 && b != b'\n')
    {
        Some((offset, byte)) => Err(NoteError::ControlCharacter { byte, offset }),
        None => Ok(()),
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    check_chars(text)?;
    if text.ends_with('\n') {
        Ok(())
    } else {
        Err(NoteError::TextNotTerminated)
    }
}

/// One signature line: key name, key ID and the algorithm-specific signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Key name.
    pub name: String,
    /// Key ID (first four bytes of the encoded signature).
    pub key_id: u32,
    /// Signature bytes after the key ID.
    pub signature: Vec<u8>,
}

impl Signature {
    /// The signature line, including the trailing newline.
    #[must_use]
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }

    fn parse_line(line: &str, number: usize) -> Result<Self, NoteError> {
        let bad = |reason| NoteError::BadSignatureLine {
            line: number,
            reason,
        };
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(bad("must start with an em dash and a space"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(bad("missing space between key name and signature"))?;
        if !is_valid_name(name) {
            return Err(bad(
                "key name must be non-empty and contain no spaces or '+'",
            ));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| bad("signature is not canonical base64"))?;
        match raw.as_slice() {
            [a, b, c, d, sig @ ..] if !sig.is_empty() => Ok(Self {
                name: name.to_owned(),
                key_id: u32::from_be_bytes([*a, *b, *c, *d]),
                signature: sig.to_vec(),
            }),
            _ => Err(bad(
                "signature must be at least 5 bytes (key ID and signature)",
            )),
        }
    }
}

/// Something that can check signatures of one key.
pub trait NoteVerifier {
    /// Key name.
    fn name(&self) -> &str;
    /// Key ID.
    fn key_id(&self) -> u32;
    /// Whether `signature` (without the key ID) is valid over the note `text`.
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool;
}

/// Something that can sign notes with one key.
pub trait NoteSigner {
    /// Key name.
    fn name(&self) -> &str;
    /// Key ID.
    fn key_id(&self) -> u32;
    /// Signature bytes (without the key ID) over the note `text`.
    fn sign(&self, text: &[u8]) -> Vec<u8>;
}

/// Outcome of [`Note::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Indices into the verifier list of the keys whose signature verified, each once, in the
    /// order their first signature appears.
    pub signed_by: Vec<usize>,
    /// Indices of signature lines from unknown keys, which were ignored.
    pub unknown: Vec<usize>,
}

/// A signed note: text and signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<Signature>,
}

impl Note {
    /// An unsigned note with `text`, which must end in a newline and hold no control characters
    /// other than newline.
    ///
    /// # Errors
    /// [`NoteError::TextNotTerminated`], [`NoteError::ControlCharacter`] or
    /// [`NoteError::TooLarge`].
    pub fn new(text: impl Into<String>) -> Result<Self, NoteError> {
        let text = text.into();
        if text.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge {
                len: text.len(),
                max: MAX_NOTE_BYTES,
            });
        }
        check_text(&text)?;
        Ok(Self {
            text,
            signatures: Vec::new(),
        })
    }

    /// Parses an encoded signed note, strictly. Never panics; signatures are not checked
    /// (see [`Note::verify`]).
    ///
    /// # Errors
    /// Any [`NoteError`] describing the first problem found.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge {
                len: bytes.len(),
                max: MAX_NOTE_BYTES,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::InvalidUtf8)?;
        check_chars(s)?;
        let split = s.rfind("\n\n").ok_or(NoteError::MissingSignatureBlock)?;
        let (text, sigs) = match (s.get(..=split), s.get(split + 2..)) {
            (Some(t), Some(g)) => (t, g),
            _ => return Err(NoteError::MissingSignatureBlock),
        };
        if sigs.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or(NoteError::SignaturesNotTerminated)?;
        let mut signatures = Vec::new();
        for (i, line) in sigs.split('\n').enumerate() {
            if i >= MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_SIGNATURES,
                });
            }
            signatures.push(Signature::parse_line(line, i + 1)?);
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note text, ending in a newline.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    #[must_use]
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Adds a signature line, replacing any with the same key name and ID.
    ///
    /// # Errors
    /// [`NoteError::BadKeyName`], or [`NoteError::TooManySignatures`] past [`MAX_SIGNATURES`].
    pub fn add_signature(&mut self, signature: Signature) -> Result<(), NoteError> {
        check_name(&signature.name)?;
        if let Some(existing) = self
            .signatures
            .iter_mut()
            .find(|s| s.name == signature.name && s.key_id == signature.key_id)
        {
            *existing = signature;
            return Ok(());
        }
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        self.signatures.push(signature);
        Ok(())
    }

    /// Signs the text with `signer` and adds the signature line.
    ///
    /// # Errors
    /// As [`Note::add_signature`].
    pub fn sign(&mut self, signer: &dyn NoteSigner) -> Result<(), NoteError> {
        let signature = signer.sign(self.text.as_bytes());
        self.add_signature(Signature {
            name: signer.name().to_owned(),
            key_id: signer.key_id(),
            signature,
        })
    }

    /// The encoded note: text, blank line, signature lines.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Verifies the note against known keys. Signatures from unknown keys (name and key ID not
    /// both matching a verifier) are ignored; a failed signature from a known key rejects the
    /// whole note; at least one known key must have signed.
    ///
    /// # Errors
    /// [`NoteError::InvalidSignature`], [`NoteError::AmbiguousKey`] or
    /// [`NoteError::NoKnownSignature`].
    pub fn verify(&self, verifiers: &[&dyn NoteVerifier]) -> Result<Verified, NoteError> {
        let mut signed_by = Vec::new();
        let mut unknown = Vec::new();
        for (i, sig) in self.signatures.iter().enumerate() {
            let mut matching = verifiers
                .iter()
                .enumerate()
                .filter(|(_, v)| v.name() == sig.name && v.key_id() == sig.key_id);
            let Some((j, v)) = matching.next() else {
                unknown.push(i);
                continue;
            };
            if matching.next().is_some() {
                return Err(NoteError::AmbiguousKey {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                });
            }
            if !v.verify(self.text.as_bytes(), &sig.signature) {
                return Err(NoteError::InvalidSignature {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                });
            }
            if !signed_by.contains(&j) {
                signed_by.push(j);
            }
        }
        if signed_by.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok(Verified { signed_by, unknown })
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for s in &self.signatures {
            f.write_str(&s.to_line())?;
        }
        Ok(())
    }
}

/// A decoded verifier key string `<name>+<hex key ID>+<base64(type || public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vkey {
    /// Key name.
    pub name: String,
    /// Key ID.
    pub key_id: u32,
    /// Signature type byte.
    pub alg: u8,
    /// Public key material after the type byte.
    pub key: Vec<u8>,
}

impl Vkey {
    /// Parses a verifier key string and checks that the key ID is
    /// `SHA-256(name || 0x0A || type || key)[:4]`. Never panics.
    ///
    /// # Errors
    /// [`NoteError::BadKeyName`], [`NoteError::BadKey`] or [`NoteError::KeyIdMismatch`].
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey {
                reason: "expected <name>+<key ID>+<key>",
            });
        };
        check_name(name)?;
        let key_id = parse_hex_id(id)?;
        let raw = B64.decode(b64).map_err(|_| NoteError::BadKey {
            reason: "key is not canonical base64",
        })?;
        let Some((&alg, key)) = raw.split_first() else {
            return Err(NoteError::BadKey {
                reason: "key is empty",
            });
        };
        let computed = self::key_id(name, alg, key);
        if computed != key_id {
            return Err(NoteError::KeyIdMismatch {
                got: key_id,
                computed,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            key_id,
            alg,
            key: key.to_vec(),
        })
    }
}

impl std::fmt::Display for Vkey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = Vec::with_capacity(1 + self.key.len());
        raw.push(self.alg);
        raw.extend_from_slice(&self.key);
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }
}

/// Parses exactly eight lowercase hex digits.
fn parse_hex_id(s: &str) -> Result<u32, NoteError> {
    if s.len() != 8
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(NoteError::BadKey {
            reason: "key ID must be 8 lowercase hex digits",
        });
    }
    u32::from_str_radix(s, 16).map_err(|_| NoteError::BadKey {
        reason: "key ID must be 8 lowercase hex digits",
    })
}

fn ed25519_public(key: &[u8]) -> Result<VerifyingKey, NoteError> {
    let bytes: [u8; 32] = key.try_into().map_err(|_| NoteError::BadKey {
        reason: "Ed25519 public key must be 32 bytes",
    })?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| NoteError::BadKey {
        reason: "Ed25519 public key is not a valid point",
    })
}

/// An Ed25519 note verifier (signature type `0x01`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ed25519Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Ed25519Verifier {
    /// A verifier for `key` under `name`.
    ///
    /// # Errors
    /// [`NoteError::BadKeyName`].
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, ALG_ED25519, key.as_bytes()),
            key,
        })
    }

    /// Parses a `vkey` string of type `0x01`.
    ///
    /// # Errors
    /// As [`Vkey::parse`], plus [`NoteError::WrongAlgorithm`] and [`NoteError::BadKey`].
    pub fn from_vkey(s: &str) -> Result<Self, NoteError> {
        let v = Vkey::parse(s)?;
        if v.alg != ALG_ED25519 {
            return Err(NoteError::WrongAlgorithm {
                got: v.alg,
                expected: ALG_ED25519,
            });
        }
        Ok(Self {
            key: ed25519_public(&v.key)?,
            name: v.name,
            key_id: v.key_id,
        })
    }

    /// The `vkey` string.
    #[must_use]
    pub fn to_vkey(&self) -> String {
        Vkey {
            name: self.name.clone(),
            key_id: self.key_id,
            alg: ALG_ED25519,
            key: self.key.as_bytes().to_vec(),
        }
        .to_string()
    }

    /// The public key.
    #[must_use]
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl NoteVerifier for Ed25519Verifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|s| self.key.verify_strict(text, &s).is_ok())
    }
}

/// An Ed25519 note signer (signature type `0x01`). Its `Debug` output omits the secret key.
#[derive(Clone)]
pub struct Ed25519Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    /// A signer for `key` under `name`.
    ///
    /// # Errors
    /// [`NoteError::BadKeyName`].
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, ALG_ED25519, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// Parses the private key string of `golang.org/x/mod/sumdb/note`:
    /// `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte seed)>`.
    ///
    /// # Errors
    /// [`NoteError::BadKey`], [`NoteError::BadKeyName`], [`NoteError::WrongAlgorithm`] or
    /// [`NoteError::KeyIdMismatch`].
    pub fn from_skey(s: &str) -> Result<Self, NoteError> {
        let bad = |reason| NoteError::BadKey { reason };
        let rest = s
            .strip_prefix(SKEY_PREFIX)
            .ok_or(bad("signer key must start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected PRIVATE+KEY+<name>+<key ID>+<key>"));
        };
        let id = parse_hex_id(id)?;
        let raw = B64
            .decode(b64)
            .map_err(|_| bad("key is not canonical base64"))?;
        let (&alg, seed) = raw.split_first().ok_or(bad("key is empty"))?;
        if alg != ALG_ED25519 {
            return Err(NoteError::WrongAlgorithm {
                got: alg,
                expected: ALG_ED25519,
            });
        }
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("Ed25519 seed must be 32 bytes"))?;
        let signer = Self::new(name, SigningKey::from_bytes(&seed))?;
        if signer.key_id != id {
            return Err(NoteError::KeyIdMismatch {
                got: id,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The matching verifier.
    #[must_use]
    pub fn verifier(&self) -> Ed25519Verifier {
        Ed25519Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }
}

impl NoteSigner for Ed25519Signer {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn sign(&self, text: &[u8]) -> Vec<u8> {
        self.key.sign(text).to_bytes().to_vec()
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

    // Vectors from golang.org/x/mod/sumdb/note (note_test.go).
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn vkey_roundtrip_and_manglings() {
        let v = Ed25519Verifier::from_vkey(PETER_VKEY).unwrap();
        assert_eq!(v.key_id(), 0xc74f20a3);
        assert_eq!(v.to_vkey(), PETER_VKEY);
        let b = PETER_VKEY.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i == 0 && j == b.len() {
                    continue;
                }
                if let Ok(s) = std::str::from_utf8(&b[i..j]) {
                    assert!(Ed25519Verifier::from_vkey(s).is_err(), "{s}");
                }
            }
        }
        let mut m = b.to_vec();
        for i in 0..m.len() {
            m[i] = m[i].wrapping_add(1);
            if let Ok(s) = std::str::from_utf8(&m) {
                assert!(Ed25519Verifier::from_vkey(s).is_err(), "{s}");
            }
            m[i] = m[i].wrapping_sub(1);
        }
        // Unknown algorithm with a consistent key ID.
        assert!(matches!(
            Ed25519Verifier::from_vkey(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(NoteError::WrongAlgorithm { got: 0x65, .. })
        ));
    }

    #[test]
    fn sign_matches_go_vector() {
        let signer = Ed25519Signer::from_skey(PETER_SKEY).unwrap();
        assert_eq!(signer.verifier().to_vkey(), PETER_VKEY);
        let mut note = Note::new(TEXT).unwrap();
        note.sign(&signer).unwrap();
        assert_eq!(note.to_string(), format!("{TEXT}\n{PETER_SIG}"));
        // Re-signing replaces the line rather than adding one.
        note.sign(&signer).unwrap();
        assert_eq!(note.signatures().len(), 1);
        assert!(!format!("{signer:?}").contains("AYEK"));
    }

    #[test]
    fn open_go_vectors() {
        let peter = Ed25519Verifier::from_vkey(PETER_VKEY).unwrap();
        let enoch = Ed25519Verifier::from_vkey(ENOCH_VKEY).unwrap();
        let msg = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let n = Note::parse(msg.as_bytes()).unwrap();
        assert_eq!(n.text(), TEXT);
        assert_eq!(n.to_string(), msg);

        let v = n.verify(&[&peter]).unwrap();
        assert_eq!(v.signed_by, vec![0]);
        assert_eq!(v.unknown, vec![1]);
        let v = n.verify(&[&enoch, &peter]).unwrap();
        assert_eq!(v.signed_by, vec![1, 0]);
        assert_eq!(n.verify(&[]), Err(NoteError::NoKnownSignature));
        assert!(matches!(
            n.verify(&[&enoch, &peter, &enoch]),
            Err(NoteError::AmbiguousKey { .. })
        ));

        // A corrupted signature from a known key rejects the note.
        let bad = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        let n = Note::parse(bad.as_bytes()).unwrap();
        assert!(matches!(
            n.verify(&[&peter]),
            Err(NoteError::InvalidSignature {
                key_id: 0xc74f20a3,
                ..
            })
        ));

        // Too many signature lines.
        let many = format!("{TEXT}\n{}", PETER_SIG.repeat(101));
        assert_eq!(
            Note::parse(many.as_bytes()),
            Err(NoteError::TooManySignatures { max: 100 })
        );
    }

    #[test]
    fn malformed_notes() {
        let bad: Vec<String> = vec![
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            format!(
                "{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            ),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!("{TEXT}\n\u{2014} a+b x08go/ZJ=\n"),
            format!("{TEXT}\n\u{2014} short AAAA\n"),
        ];
        for m in &bad {
            assert!(Note::parse(m.as_bytes()).is_err(), "{m:?}");
        }
        assert_eq!(Note::parse(b"\xff\n\n"), Err(NoteError::InvalidUtf8));
        assert_eq!(
            Note::parse(&vec![b'a'; MAX_NOTE_BYTES + 1]),
            Err(NoteError::TooLarge {
                len: MAX_NOTE_BYTES + 1,
                max: MAX_NOTE_BYTES
            })
        );
        assert_eq!(Note::new("no newline"), Err(NoteError::TextNotTerminated));
        assert!(Note::new("tab\there\n").is_err());
    }

    #[test]
    fn text_may_contain_blank_lines() {
        let signer =
            Ed25519Signer::new("example.com/poet", SigningKey::from_bytes(&[7; 32])).unwrap();
        let mut n = Note::new("line one\n\nline three\n").unwrap();
        n.sign(&signer).unwrap();
        let back = Note::parse(&n.to_bytes()).unwrap();
        assert_eq!(back, n);
        assert_eq!(
            back.verify(&[&signer.verifier()]).unwrap().signed_by,
            vec![0]
        );
    }

    #[test]
    fn spec_example_parses() {
        // The example of c2sp.org/signed-note; its public key is not published, so only the
        // syntax is checked.
        let msg = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n\n\u{2014} quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n";
        let n = Note::parse(msg.as_bytes()).unwrap();
        assert!(n.text().ends_with("subito sera.\n"));
        assert_eq!(n.signatures()[0].name, "quasimodo.example/salvatore");
        assert_eq!(n.signatures()[0].key_id, 0x367ba04b);
        assert_eq!(n.signatures()[0].signature.len(), 64);
        assert_eq!(n.to_string(), msg);
    }
}
