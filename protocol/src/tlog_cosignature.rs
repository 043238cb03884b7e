//! C2SP tlog-cosignature (c2sp.org/tlog-cosignature), Ed25519 `cosignature/v1`: timestamped
//! witness signatures on checkpoints, and counting a quorum of distinct known witnesses.
//!
//! Signed message: `"cosignature/v1\ntime <unix seconds>\n" || checkpoint note text`.
//! Signature line payload: `key ID (4) || timestamp (8, big-endian) || Ed25519 signature (64)`.
//! Key ID: `SHA-256(name || 0x0A || 0x04 || public key)[:4]`.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use crate::signed_note::{Note, NoteSigner, NoteVerifier, Signature, Vkey, is_valid_name, key_id};
use crate::tlog_checkpoint::Checkpoint;

/// Signature type byte of Ed25519 `cosignature/v1`.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Length of the signature bytes after the key ID: timestamp and Ed25519 signature.
pub const COSIGNATURE_LEN: usize = 8 + 64;

/// Largest timestamp allowed by the spec, `2^63 - 1`.
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Errors from cosigning and checking cosignatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    /// A witness name is empty or contains a space or `+`.
    #[error("cosigner name {name:?} must be non-empty and contain no spaces or '+'")]
    BadName {
        /// The offending name.
        name: String,
    },
    /// The timestamp exceeds [`MAX_TIMESTAMP`].
    #[error("cosignature timestamp {got} exceeds the limit of 2^63-1")]
    TimestampTooLarge {
        /// The timestamp.
        got: u64,
    },
    /// The signature payload is not [`COSIGNATURE_LEN`] bytes.
    #[error("cosignature is {got} bytes after the key ID, expected {expected}")]
    WrongLength {
        /// Length found.
        got: usize,
        /// [`COSIGNATURE_LEN`].
        expected: usize,
    },
    /// The signature does not verify.
    #[error("invalid cosignature from {name}+{key_id:08x}")]
    Invalid {
        /// Witness name.
        name: String,
        /// Key ID.
        key_id: u32,
    },
    /// A verifier key string is malformed or not of type `0x04`.
    #[error("cosigner key: {0}")]
    BadKey(#[from] crate::signed_note::NoteError),
    /// Fewer distinct known witnesses cosigned than required.
    #[error("{got} distinct witness cosignatures, quorum needs {needed}")]
    QuorumNotMet {
        /// Valid distinct cosignatures found.
        got: usize,
        /// Threshold.
        needed: usize,
    },
}

/// The message a `cosignature/v1` signs for checkpoint note `text` at `timestamp`.
#[must_use]
pub fn signed_message(text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// A witness's public key, as configured by clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl CosignerKey {
    /// The key of witness `name`.
    ///
    /// # Errors
    /// [`CosignatureError::BadName`].
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, CosignatureError> {
        if !is_valid_name(name) || name.chars().any(char::is_control) {
            return Err(CosignatureError::BadName {
                name: name.to_owned(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, ALG_COSIGNATURE_V1, key.as_bytes()),
            key,
        })
    }

    /// Parses a `vkey` string of type `0x04`.
    ///
    /// # Errors
    /// [`CosignatureError::BadKey`].
    pub fn from_vkey(s: &str) -> Result<Self, CosignatureError> {
        use crate::signed_note::NoteError;
        let v = Vkey::parse(s)?;
        if v.alg != ALG_COSIGNATURE_V1 {
            return Err(NoteError::WrongAlgorithm {
                got: v.alg,
                expected: ALG_COSIGNATURE_V1,
            }
            .into());
        }
        let bytes: [u8; 32] = v.key.as_slice().try_into().map_err(|_| NoteError::BadKey {
            reason: "Ed25519 public key must be 32 bytes",
        })?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| NoteError::BadKey {
            reason: "Ed25519 public key is not a valid point",
        })?;
        Ok(Self {
            name: v.name,
            key_id: v.key_id,
            key,
        })
    }

    /// The `vkey` string.
    #[must_use]
    pub fn to_vkey(&self) -> String {
        Vkey {
            name: self.name.clone(),
            key_id: self.key_id,
            alg: ALG_COSIGNATURE_V1,
            key: self.key.as_bytes().to_vec(),
        }
        .to_string()
    }

    /// Witness name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key ID.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public key.
    #[must_use]
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether `sig` is a line from this key (name and key ID match).
    #[must_use]
    pub fn matches(&self, sig: &Signature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id
    }

    /// Verifies a cosignature line of this key over checkpoint note `text`; returns its
    /// timestamp. Callers may reject timestamps in the future.
    ///
    /// # Errors
    /// [`CosignatureError::WrongLength`], [`CosignatureError::TimestampTooLarge`] or
    /// [`CosignatureError::Invalid`] (also when the line is from another key).
    pub fn verify(&self, text: &str, sig: &Signature) -> Result<u64, CosignatureError> {
        let invalid = || CosignatureError::Invalid {
            name: sig.name.clone(),
            key_id: sig.key_id,
        };
        if !self.matches(sig) {
            return Err(invalid());
        }
        let (timestamp, signature) = split_payload(&sig.signature)?;
        let msg = signed_message(text, timestamp);
        let signature = ed25519_dalek::Signature::from_bytes(&signature);
        self.key
            .verify_strict(&msg, &signature)
            .map_err(|_| invalid())?;
        Ok(timestamp)
    }
}

fn split_payload(payload: &[u8]) -> Result<(u64, [u8; 64]), CosignatureError> {
    let wrong = CosignatureError::WrongLength {
        got: payload.len(),
        expected: COSIGNATURE_LEN,
    };
    if payload.len() != COSIGNATURE_LEN {
        return Err(wrong);
    }
    let (ts, sig) = payload.split_at(8);
    let ts: [u8; 8] = ts.try_into().map_err(|_| wrong.clone())?;
    let sig: [u8; 64] = sig.try_into().map_err(|_| wrong)?;
    let timestamp = u64::from_be_bytes(ts);
    if timestamp > MAX_TIMESTAMP {
        return Err(CosignatureError::TimestampTooLarge { got: timestamp });
    }
    Ok((timestamp, sig))
}

/// A witness key lets a plain [`Note::verify`] accept cosignatures alongside log signatures.
impl NoteVerifier for CosignerKey {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.key_id
    }
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(text) else {
            return false;
        };
        let Ok((timestamp, sig)) = split_payload(signature) else {
            return false;
        };
        let msg = signed_message(text, timestamp);
        self.key
            .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok()
    }
}

/// A witness's signing key. Its `Debug` output omits the secret key.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    /// A cosigner named `name` with `key`.
    ///
    /// # Errors
    /// [`CosignatureError::BadName`].
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CosignatureError> {
        let public = CosignerKey::new(name, key.verifying_key())?;
        Ok(Self {
            name: public.name,
            key_id: public.key_id,
            key,
        })
    }

    /// The public side.
    #[must_use]
    pub fn public(&self) -> CosignerKey {
        CosignerKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Cosigns checkpoint note `text` at `timestamp` (POSIX seconds, from the caller's clock).
    ///
    /// The caller must have checked consistency with the last checkpoint it cosigned for this
    /// origin before calling.
    ///
    /// # Errors
    /// [`CosignatureError::TimestampTooLarge`].
    pub fn cosign_text(&self, text: &str, timestamp: u64) -> Result<Signature, CosignatureError> {
        if timestamp > MAX_TIMESTAMP {
            return Err(CosignatureError::TimestampTooLarge { got: timestamp });
        }
        let sig = self.key.sign(&signed_message(text, timestamp));
        let mut payload = Vec::with_capacity(COSIGNATURE_LEN);
        payload.extend_from_slice(&timestamp.to_be_bytes());
        payload.extend_from_slice(&sig.to_bytes());
        Ok(Signature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: payload,
        })
    }

    /// Cosigns a checkpoint at `timestamp`.
    ///
    /// # Errors
    /// As [`Cosigner::cosign_text`].
    pub fn cosign(
        &self,
        checkpoint: &Checkpoint,
        timestamp: u64,
    ) -> Result<Signature, CosignatureError> {
        self.cosign_text(&checkpoint.to_text(), timestamp)
    }
}

/// A [`NoteSigner`] view of a cosigner at a fixed timestamp, for [`Note::sign`].
#[derive(Debug)]
pub struct TimestampedCosigner<'a> {
    /// The cosigner.
    pub cosigner: &'a Cosigner,
    /// POSIX seconds, at most [`MAX_TIMESTAMP`] (larger values are clamped).
    pub timestamp: u64,
}

impl NoteSigner for TimestampedCosigner<'_> {
    fn name(&self) -> &str {
        &self.cosigner.name
    }
    fn key_id(&self) -> u32 {
        self.cosigner.key_id
    }
    fn sign(&self, text: &[u8]) -> Vec<u8> {
        let timestamp = self.timestamp.min(MAX_TIMESTAMP);
        let msg = [
            format!("cosignature/v1\ntime {timestamp}\n").as_bytes(),
            text,
        ]
        .concat();
        let mut payload = Vec::with_capacity(COSIGNATURE_LEN);
        payload.extend_from_slice(&timestamp.to_be_bytes());
        payload.extend_from_slice(&self.cosigner.key.sign(&msg).to_bytes());
        payload
    }
}

/// Distinct witnesses whose cosignature verified, from [`count_cosignatures`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// `(index into the witness list, timestamp)`, one per distinct witness key, in the order
    /// their first cosignature appears.
    pub cosigned_by: Vec<(usize, u64)>,
}

impl Quorum {
    /// Number of distinct witnesses.
    #[must_use]
    pub fn count(&self) -> usize {
        self.cosigned_by.len()
    }
}

/// Counts valid cosignatures on `note` from distinct keys of `witnesses`. Lines from unknown
/// keys (and log signatures) are ignored; a witness configured twice, or two names sharing one
/// public key, count once; a cosignature from a known witness that fails to verify rejects the
/// note.
///
/// # Errors
/// [`CosignatureError::Invalid`], [`CosignatureError::WrongLength`] or
/// [`CosignatureError::TimestampTooLarge`] for a bad line from a known witness.
pub fn count_cosignatures(
    note: &Note,
    witnesses: &[CosignerKey],
) -> Result<Quorum, CosignatureError> {
    let mut cosigned_by: Vec<(usize, u64)> = Vec::new();
    for sig in note.signatures() {
        let Some((i, w)) = witnesses.iter().enumerate().find(|(_, w)| w.matches(sig)) else {
            continue;
        };
        let timestamp = w.verify(note.text(), sig)?;
        let seen = cosigned_by
            .iter()
            .any(|&(j, _)| witnesses.get(j).is_some_and(|other| other.key == w.key));
        if !seen {
            cosigned_by.push((i, timestamp));
        }
    }
    Ok(Quorum { cosigned_by })
}

/// [`count_cosignatures`], then requires at least `threshold` distinct witnesses.
///
/// # Errors
/// As [`count_cosignatures`], plus [`CosignatureError::QuorumNotMet`].
pub fn verify_quorum(
    note: &Note,
    witnesses: &[CosignerKey],
    threshold: usize,
) -> Result<Quorum, CosignatureError> {
    let q = count_cosignatures(note, witnesses)?;
    if q.count() < threshold {
        return Err(CosignatureError::QuorumNotMet {
            got: q.count(),
            needed: threshold,
        });
    }
    Ok(q)
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
    use crate::signed_note::Ed25519Signer;

    fn witness(i: u8) -> Cosigner {
        Cosigner::new(
            &format!("witness.example/w{i}"),
            SigningKey::from_bytes(&[i; 32]),
        )
        .unwrap()
    }

    #[test]
    fn message_format_matches_spec() {
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(
            signed_message(text, 1_679_315_147),
            b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn spec_example_line_shape() {
        // c2sp.org/tlog-cosignature example: the witness key is not published; check shape.
        let note = Note::parse("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n".as_bytes()).unwrap();
        let w = &note.signatures()[1];
        assert_eq!(w.signature.len(), COSIGNATURE_LEN);
        let (ts, _) = split_payload(&w.signature).unwrap();
        assert_eq!(ts, 1_679_315_147);
    }

    #[test]
    fn cosign_verify_and_quorum() {
        let log = Ed25519Signer::new("example.com/log", SigningKey::from_bytes(&[9; 32])).unwrap();
        let cp = Checkpoint::new("example.com/log", 10, [3; 32]).unwrap();
        let mut signed = cp.sign(&log).unwrap();
        let ws: Vec<Cosigner> = (1..=4).map(witness).collect();
        let keys: Vec<CosignerKey> = ws.iter().map(Cosigner::public).collect();
        for (i, w) in ws.iter().take(3).enumerate() {
            let line = w.cosign(&cp, 1_700_000_000 + i as u64).unwrap();
            assert_eq!(
                keys[i].verify(&cp.to_text(), &line).unwrap(),
                1_700_000_000 + i as u64
            );
            signed.note_mut().add_signature(line).unwrap();
        }
        // Duplicate line from w1 counts once.
        signed
            .note_mut()
            .add_signature(ws[0].cosign(&cp, 5).unwrap())
            .unwrap();
        let q = verify_quorum(signed.note(), &keys, 3).unwrap();
        assert_eq!(q.count(), 3);
        assert_eq!(
            verify_quorum(signed.note(), &keys, 4),
            Err(CosignatureError::QuorumNotMet { got: 3, needed: 4 })
        );
        // Round trip through bytes, and plain note verification with mixed keys.
        let back = Note::parse(&signed.to_bytes()).unwrap();
        let lv = log.verifier();
        let v = back.verify(&[&lv, &keys[0], &keys[3]]).unwrap();
        assert_eq!(v.signed_by, vec![0, 1]);
        // A witness configured twice counts once.
        let twice = vec![keys[0].clone(), keys[0].clone()];
        assert_eq!(count_cosignatures(&back, &twice).unwrap().count(), 1);
        // Wrong checkpoint: rejected.
        let other = Checkpoint::new("example.com/log", 11, [3; 32]).unwrap();
        let line = ws[0].cosign(&cp, 1).unwrap();
        assert!(keys[0].verify(&other.to_text(), &line).is_err());
        // The Note::sign path gives the same bytes.
        let mut n = Note::new(cp.to_text()).unwrap();
        n.sign(&TimestampedCosigner {
            cosigner: &ws[1],
            timestamp: 77,
        })
        .unwrap();
        assert_eq!(n.signatures()[0], ws[1].cosign(&cp, 77).unwrap());
    }

    #[test]
    fn vkey_and_limits() {
        let w = witness(5);
        let k = w.public();
        assert_eq!(CosignerKey::from_vkey(&k.to_vkey()).unwrap(), k);
        let plain = Ed25519Signer::new("witness.example/w5", SigningKey::from_bytes(&[5; 32]))
            .unwrap()
            .verifier()
            .to_vkey();
        assert!(CosignerKey::from_vkey(&plain).is_err());
        assert_eq!(
            w.cosign_text("o\n1\nAA==\n", MAX_TIMESTAMP + 1),
            Err(CosignatureError::TimestampTooLarge {
                got: MAX_TIMESTAMP + 1
            })
        );
        let mut line = w.cosign_text("x\n", 1).unwrap();
        line.signature.truncate(71);
        assert_eq!(
            k.verify("x\n", &line),
            Err(CosignatureError::WrongLength {
                got: 71,
                expected: 72
            })
        );
        assert!(Cosigner::new("bad name", SigningKey::from_bytes(&[1; 32])).is_err());
    }
}
