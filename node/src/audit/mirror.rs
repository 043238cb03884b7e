//! A log's copy on disk, in the C2SP tlog-tiles layout, and atomic file writes.
//!
//! ```text
//! <dir>/checkpoint                     the latest checkpoint fetched (as served)
//! <dir>/checkpoints/<size>-<digest>    every checkpoint fetched; cosignatures of one
//!                                      checkpoint text are merged into one file
//! <dir>/tile/<L>/<N>[.p/<W>]           hash tiles
//! <dir>/tile/entries/<N>[.p/<W>]       entry bundles
//! <dir>/roster/<epoch>                 signed rosters recorded in the log
//! ```
//! A partial tile that is not held is read from the full tile of the same index (C2SP
//! allows serving the full tile in its place).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use lienthong_protocol::signed_note::Note;
use lienthong_protocol::tlog_checkpoint::SignedCheckpoint;
use lienthong_protocol::tlog_tiles::{TILE_WIDTH, TileId, TileKind};
use sha2::{Digest as _, Sha256};

use super::AuditError;

/// Largest file the mirror reads (a tile of 256 entries of at most 64 KiB each, plus
/// lengths, is below this).
pub const MAX_FILE: u64 = 17 * 1024 * 1024;

/// A mirror directory.
#[derive(Debug, Clone)]
pub struct Mirror {
    root: PathBuf,
}

impl Mirror {
    /// The mirror at `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { root: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// `<dir>/checkpoint`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.root.join("checkpoint")
    }

    /// `<dir>/checkpoints`.
    pub fn history_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// The file of a tile or bundle.
    pub fn tile_path(&self, id: &TileId) -> PathBuf {
        self.root.join(id.path())
    }

    /// `<dir>/roster/<epoch>`.
    pub fn roster_path(&self, epoch: u64) -> PathBuf {
        self.root.join("roster").join(epoch.to_string())
    }

    /// Reads a file of at most [`MAX_FILE`] bytes; `Ok(None)` if it does not exist.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
        read_bounded(path)
    }

    /// The data of `id`, or of its full tile when a partial one is not held (then cut to the
    /// partial width for hash tiles; bundles are returned whole, the caller takes `width`
    /// entries). `Ok(None)` if neither file exists. Returns the path read too.
    pub fn read_tile(&self, id: &TileId) -> Result<Option<(PathBuf, Vec<u8>)>, AuditError> {
        let path = self.tile_path(id);
        if let Some(data) = read_bounded(&path)? {
            return Ok(Some((path, data)));
        }
        if !id.is_partial() {
            return Ok(None);
        }
        let full = self.tile_path(&id.full());
        let Some(mut data) = read_bounded(&full)? else {
            return Ok(None);
        };
        if let TileKind::Hashes { .. } = id.kind {
            data.truncate(usize::from(id.width) * 32);
        }
        Ok(Some((full, data)))
    }

    /// Every checkpoint held: the history files, then `checkpoint` (duplicates removed),
    /// each with its path.
    pub fn checkpoints(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, AuditError> {
        let mut out: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        let dir = self.history_dir();
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                let mut paths: Vec<PathBuf> = Vec::new();
                for e in rd {
                    let e = e.map_err(|e| AuditError::io(&dir, e))?;
                    let p = e.path();
                    if p.is_file() && !is_temp(&p) {
                        paths.push(p);
                    }
                }
                paths.sort();
                for p in paths {
                    if let Some(b) = read_bounded(&p)? {
                        out.push((p, b));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AuditError::io(&dir, e)),
        }
        let latest = self.checkpoint_path();
        if let Some(b) = read_bounded(&latest)?
            && !out.iter().any(|(_, x)| *x == b)
        {
            out.push((latest, b));
        }
        Ok(out)
    }

    /// The latest checkpoint (`<dir>/checkpoint`), parsed (not verified).
    pub fn latest(&self) -> Result<SignedCheckpoint, AuditError> {
        let path = self.checkpoint_path();
        let bytes = read_bounded(&path)?.ok_or_else(|| {
            AuditError::io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no checkpoint: is this a mirror made by `lienthong audit fetch`?",
                ),
            )
        })?;
        SignedCheckpoint::parse(&bytes)
            .map_err(|e| AuditError::invalid(path.display().to_string(), e))
    }

    /// Rosters held, by epoch.
    pub fn rosters(&self) -> Result<BTreeMap<u64, PathBuf>, AuditError> {
        let dir = self.root.join("roster");
        let mut out = BTreeMap::new();
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd {
                    let e = e.map_err(|e| AuditError::io(&dir, e))?;
                    let p = e.path();
                    if let Some(epoch) = p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        out.insert(epoch, p);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AuditError::io(&dir, e)),
        }
        Ok(out)
    }

    /// Records a checkpoint in the history: `checkpoints/<size>-<digest of its text>`; when
    /// that file exists, the signature lines not yet in it are added (cosignatures arrive
    /// after the checkpoint is first served). Returns the path.
    pub fn record_checkpoint(&self, bytes: &[u8]) -> Result<PathBuf, AuditError> {
        let note = Note::parse(bytes).map_err(|e| AuditError::invalid("checkpoint", e))?;
        let cp =
            SignedCheckpoint::parse(bytes).map_err(|e| AuditError::invalid("checkpoint", e))?;
        let digest = Sha256::digest(note.text().as_bytes());
        let name = format!(
            "{}-{}",
            cp.checkpoint().size(),
            digest
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let path = self.history_dir().join(name);
        let merged = match read_bounded(&path)? {
            Some(old) => match Note::parse(&old) {
                Ok(mut old_note) if old_note.text() == note.text() => {
                    for sig in note.signatures() {
                        let held = old_note
                            .signatures()
                            .iter()
                            .any(|s| s.name == sig.name && s.key_id == sig.key_id);
                        if !held {
                            // Too many signatures: keep what is held.
                            let _ = old_note.add_signature(sig.clone());
                        }
                    }
                    old_note.to_bytes()
                }
                _ => bytes.to_vec(),
            },
            None => bytes.to_vec(),
        };
        write_atomic(&path, &merged)?;
        Ok(path)
    }
}

/// Whether `path` is a temporary file of [`write_atomic`].
fn is_temp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".tmp-"))
}

/// Reads at most [`MAX_FILE`] bytes; `Ok(None)` if the file does not exist.
pub fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::io(path, e)),
    };
    let mut data = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .map_err(|e| AuditError::io(path, e))?;
    if data.len() as u64 > MAX_FILE {
        return Err(AuditError::invalid(
            path.display().to_string(),
            format!("larger than {MAX_FILE} bytes"),
        ));
    }
    Ok(Some(data))
}

/// Writes `data` to `path` atomically: a temporary file in the same directory, fsynced,
/// renamed over `path`, then the directory fsynced. Creates the parent directories.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), AuditError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| AuditError::io(parent, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = parent.join(format!(".tmp-{name}-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(parent)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(AuditError::io(path, e));
    }
    Ok(())
}

/// The entry bundle ids of a tree of `size` entries, in order.
pub fn bundles(size: u64) -> impl Iterator<Item = TileId> {
    let width = u64::from(TILE_WIDTH);
    let full = size / width;
    let rest = size % width;
    (0..full)
        .map(|index| TileId {
            kind: TileKind::Entries,
            index,
            width: TILE_WIDTH,
        })
        .chain((rest > 0).then(|| TileId {
            kind: TileKind::Entries,
            index: full,
            width: u16::try_from(rest).unwrap_or(TILE_WIDTH),
        }))
}
