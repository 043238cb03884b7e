//! C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): the note text of a log's tree head
//! (origin, tree size, root hash, optional extension lines), strict parsing and formatting,
//! and signed checkpoints on top of `signed_note`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::rfc6962::Hash;
use crate::signed_note::{Note, NoteError, NoteSigner, NoteVerifier, Verified};

/// Largest checkpoint text accepted, in bytes.
pub const MAX_CHECKPOINT_BYTES: usize = 8 * 1024;

/// Most extension lines accepted.
pub const MAX_EXTENSION_LINES: usize = 16;

/// Errors from parsing and checking checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint text exceeds [`MAX_CHECKPOINT_BYTES`].
    #[error("checkpoint text is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Size of the text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text is not valid UTF-8.
    #[error("checkpoint text is not valid UTF-8")]
    InvalidUtf8,
    /// The text does not end in a newline.
    #[error("checkpoint text must end in a newline")]
    NotTerminated,
    /// Fewer than three lines.
    #[error("checkpoint has {got} lines, needs at least 3 (origin, tree size, root hash)")]
    TooFewLines {
        /// Lines found.
        got: usize,
    },
    /// The origin line is empty.
    #[error("checkpoint origin line must be non-empty")]
    EmptyOrigin,
    /// A control character (other than the line separators) appears in the text.
    #[error("checkpoint contains a control character on line {line}")]
    ControlCharacter {
        /// 1-based line number.
        line: usize,
    },
    /// The tree size is not canonical decimal or does not fit in 64 bits.
    #[error(
        "checkpoint tree size {got:?} must be decimal digits, no leading zeroes, at most 2^64-1"
    )]
    BadTreeSize {
        /// The line found.
        got: String,
    },
    /// The root hash is not canonical base64 of 32 bytes.
    #[error("checkpoint root hash must be canonical base64 of 32 bytes")]
    BadRootHash,
    /// An extension line is empty.
    #[error("checkpoint extension line {line} is empty")]
    EmptyExtension {
        /// 1-based line number.
        line: usize,
    },
    /// More extension lines than [`MAX_EXTENSION_LINES`].
    #[error("checkpoint has {got} extension lines, more than the limit of {max}")]
    TooManyExtensions {
        /// Lines found.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A line contains a newline (when building a checkpoint).
    #[error("checkpoint {field} must be a single non-empty line")]
    BadLine {
        /// Which field.
        field: &'static str,
    },
    /// The enclosing signed note is invalid or not signed by the log.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
}

/// A log's tree head: origin, size and root hash, plus opaque extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

fn check_line(s: &str, field: &'static str) -> Result<(), CheckpointError> {
    if s.is_empty() || s.contains('\n') {
        return Err(CheckpointError::BadLine { field });
    }
    if s.chars().any(char::is_control) {
        return Err(CheckpointError::BadLine { field });
    }
    Ok(())
}

impl Checkpoint {
    /// A checkpoint with no extension lines.
    ///
    /// # Errors
    /// [`CheckpointError::BadLine`] if the origin is empty or not a single line.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        Self::with_extensions(origin, size, root, Vec::new())
    }

    /// A checkpoint with extension lines (NOT RECOMMENDED by the spec: monitors cannot audit
    /// them).
    ///
    /// # Errors
    /// [`CheckpointError::BadLine`] or [`CheckpointError::TooManyExtensions`].
    pub fn with_extensions(
        origin: &str,
        size: u64,
        root: Hash,
        extensions: Vec<String>,
    ) -> Result<Self, CheckpointError> {
        check_line(origin, "origin")?;
        if extensions.len() > MAX_EXTENSION_LINES {
            return Err(CheckpointError::TooManyExtensions {
                got: extensions.len(),
                max: MAX_EXTENSION_LINES,
            });
        }
        for e in &extensions {
            check_line(e, "extension line")?;
        }
        let c = Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        };
        let len = c.to_text().len();
        if len > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::TooLarge {
                len,
                max: MAX_CHECKPOINT_BYTES,
            });
        }
        Ok(c)
    }

    /// Parses checkpoint note text (the body of the note, ending in a newline). Never panics.
    ///
    /// # Errors
    /// Any [`CheckpointError`] describing the first problem found.
    pub fn parse(text: &[u8]) -> Result<Self, CheckpointError> {
        if text.len() > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::TooLarge {
                len: text.len(),
                max: MAX_CHECKPOINT_BYTES,
            });
        }
        let s = std::str::from_utf8(text).map_err(|_| CheckpointError::InvalidUtf8)?;
        let body = s.strip_suffix('\n').ok_or(CheckpointError::NotTerminated)?;
        let lines: Vec<&str> = body.split('\n').collect();
        for (i, l) in lines.iter().enumerate() {
            if l.chars().any(char::is_control) {
                return Err(CheckpointError::ControlCharacter { line: i + 1 });
            }
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines { got: lines.len() });
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(size)?;
        let root = parse_root(root)?;
        if extensions.len() > MAX_EXTENSION_LINES {
            return Err(CheckpointError::TooManyExtensions {
                got: extensions.len(),
                max: MAX_EXTENSION_LINES,
            });
        }
        if let Some(i) = extensions.iter().position(|e| e.is_empty()) {
            return Err(CheckpointError::EmptyExtension { line: i + 4 });
        }
        Ok(Self {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        })
    }

    /// The origin line.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash.
    #[must_use]
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The extension lines.
    #[must_use]
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: origin, size and root lines, extension lines, each ending in a newline.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// A signed note of this checkpoint, signed by `signer` (normally the log key, whose name
    /// should equal the origin).
    ///
    /// # Errors
    /// [`CheckpointError::Note`] if signing fails.
    pub fn sign(&self, signer: &dyn NoteSigner) -> Result<SignedCheckpoint, CheckpointError> {
        let mut note = Note::new(self.to_text())?;
        note.sign(signer)?;
        Ok(SignedCheckpoint {
            checkpoint: self.clone(),
            note,
        })
    }
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let bad = || CheckpointError::BadTreeSize { got: s.to_owned() };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(bad());
    }
    s.parse::<u64>().map_err(|_| bad())
}

fn parse_root(s: &str) -> Result<Hash, CheckpointError> {
    let raw = B64.decode(s).map_err(|_| CheckpointError::BadRootHash)?;
    raw.try_into().map_err(|_| CheckpointError::BadRootHash)
}

/// A checkpoint together with the signed note that carries it (log signature and any
/// cosignatures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

impl SignedCheckpoint {
    /// Parses a signed checkpoint: note syntax, then checkpoint text. Signatures are not
    /// checked; see [`SignedCheckpoint::verify`]. Never panics.
    ///
    /// # Errors
    /// Any [`CheckpointError`].
    pub fn parse(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let note = Note::parse(bytes)?;
        let checkpoint = Checkpoint::parse(note.text().as_bytes())?;
        Ok(Self { checkpoint, note })
    }

    /// Parses and requires a valid signature by the log key.
    ///
    /// # Errors
    /// Any [`CheckpointError`]; `Note(NoKnownSignature)` if the log did not sign.
    pub fn open(bytes: &[u8], log: &dyn NoteVerifier) -> Result<Self, CheckpointError> {
        let c = Self::parse(bytes)?;
        c.verify(&[log])?;
        Ok(c)
    }

    /// Verifies the note signatures against known keys (see [`Note::verify`]).
    ///
    /// # Errors
    /// [`CheckpointError::Note`].
    pub fn verify(&self, verifiers: &[&dyn NoteVerifier]) -> Result<Verified, CheckpointError> {
        Ok(self.note.verify(verifiers)?)
    }

    /// The checkpoint.
    #[must_use]
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signed note.
    #[must_use]
    pub fn note(&self) -> &Note {
        &self.note
    }

    /// The signed note, for adding cosignatures.
    pub fn note_mut(&mut self) -> &mut Note {
        &mut self.note
    }

    /// The encoded signed note.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.note.to_bytes()
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
    use crate::signed_note::Ed25519Signer;

    // The example of c2sp.org/tlog-checkpoint.
    const SPEC_TEXT: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    const SPEC_NOTE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";

    #[test]
    fn spec_example() {
        let c = Checkpoint::parse(SPEC_TEXT.as_bytes()).unwrap();
        assert_eq!(c.origin(), "example.com/behind-the-sofa");
        assert_eq!(c.size(), 20_852_163);
        assert_eq!(c.root()[..2], [0x0a, 0xc5]);
        assert_eq!(c.to_text(), SPEC_TEXT);
        let s = SignedCheckpoint::parse(SPEC_NOTE.as_bytes()).unwrap();
        assert_eq!(s.checkpoint(), &c);
        assert_eq!(s.to_bytes(), SPEC_NOTE.as_bytes());
    }

    #[test]
    fn strict_parsing() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let bad = [
            format!("o\n1\n{root}"),
            "o\n1\n".to_owned(),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n 1\n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nAAAA\n".to_owned(),
            format!("o\n1\n{}\n", &root[..root.len() - 1]),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\next\n\n"),
            format!("o\r\n1\n{root}\n"),
            format!("o\n1\n{root}\n{}", "e\n".repeat(17)),
        ];
        for b in &bad {
            assert!(Checkpoint::parse(b.as_bytes()).is_err(), "{b:?}");
        }
        let ok = format!("o\n0\n{root}\nfirst\nsecond\n");
        let c = Checkpoint::parse(ok.as_bytes()).unwrap();
        assert_eq!(c.size(), 0);
        assert_eq!(c.extensions(), ["first", "second"]);
        assert_eq!(c.to_text(), ok);
        let max = format!("o\n18446744073709551615\n{root}\n");
        assert_eq!(Checkpoint::parse(max.as_bytes()).unwrap().size(), u64::MAX);
        assert_eq!(
            Checkpoint::parse(format!("o\n007\n{root}\n").as_bytes()),
            Err(CheckpointError::BadTreeSize { got: "007".into() })
        );
    }

    #[test]
    fn sign_and_open() {
        let signer = Ed25519Signer::new(
            "example.com/log",
            ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        )
        .unwrap();
        let c = Checkpoint::new("example.com/log", 5, [9; 32]).unwrap();
        let s = c.sign(&signer).unwrap();
        let opened = SignedCheckpoint::open(&s.to_bytes(), &signer.verifier()).unwrap();
        assert_eq!(opened.checkpoint(), &c);
        let other = Ed25519Signer::new(
            "example.com/log",
            ed25519_dalek::SigningKey::from_bytes(&[2; 32]),
        )
        .unwrap();
        assert_eq!(
            SignedCheckpoint::open(&s.to_bytes(), &other.verifier()),
            Err(CheckpointError::Note(NoteError::NoKnownSignature))
        );
        assert!(Checkpoint::new("two\nlines", 1, [0; 32]).is_err());
        assert!(Checkpoint::new("", 1, [0; 32]).is_err());
    }
}
