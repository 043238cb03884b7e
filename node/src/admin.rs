//! The operator's commands on a node's own files: the public part of its keys, checked
//! against a roster (`lienthong keys`); a consistent backup of its store, through the running
//! node's control socket or directly when it is stopped (`lienthong backup`); and a restore
//! from such a backup into a stopped node (`lienthong restore`). Blocking: for the CLI.
//!
//! A backup is a RocksDB checkpoint: a complete database, consistent at one instant, that
//! [`Store::open`] opens. Restored, the node resumes from it as after a crash: deliveries
//! unfinished at the checkpoint resume. What the node confirmed after it is not resent (its
//! senders' deliveries ended), and what it signed after it would be signed again with the
//! same sequence numbers: restore is for a lost store (ARCHITECTURE.md, "Backup and
//! restore"). Keys are files beside the configuration, not in the store: back them up
//! separately.

use std::path::{Path, PathBuf};
use std::time::Duration;

use data_encoding::BASE64;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::roster::Roster;
use serde::Serialize;

use crate::control::{self, ControlError, ControlRequest};
use crate::node::NodeSetup;
use crate::store::{Store, StoreError};

/// How long a live backup may take before the CLI gives up waiting (the node finishes it).
const BACKUP_TIMEOUT: Duration = Duration::from_secs(600);
/// The store's directory inside the data directory.
const STORE_DIR: &str = "store";

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{path} already exists: a backup goes into a new directory")]
    TargetExists { path: PathBuf },
    #[error("no store at {path}: is `data_dir` right?")]
    NoStore { path: PathBuf },
    #[error("{path} is not a backup (no RocksDB CURRENT file)")]
    NotABackup { path: PathBuf },
    #[error("{path} holds a subdirectory ({name}); a backup is a flat directory")]
    UnexpectedEntry { path: PathBuf, name: String },
    #[error("the node is running (its control socket {socket} answers): stop it first")]
    NodeRunning { socket: PathBuf },
    #[error("{path} already holds a store; pass --force to move it aside (to {aside}) and restore")]
    StoreExists { path: PathBuf, aside: PathBuf },
    #[error("the running node refused the backup: {0}")]
    Refused(String),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AdminError + '_ {
    move |source| AdminError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `lienthong keys` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyReport {
    /// The node's transport identity (its id in the roster).
    pub peer_id: String,
    /// The roster epoch compared against.
    pub roster_epoch: u64,
    pub agencies: Vec<AgencyKeys>,
}

/// One hosted agency's public keys and whether the roster lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgencyKeys {
    pub id: AgencyId,
    /// Ed25519 signing key, base64 (as in `member.json`).
    pub signing_key: String,
    /// X25519 encryption key, base64.
    pub encryption_key: String,
    /// `matches`, `absent`, or what differs (`signing key differs`, …).
    pub roster: String,
}

impl KeyReport {
    /// Whether the roster lists every agency with exactly these keys on this node.
    pub fn all_match(&self) -> bool {
        self.agencies.iter().all(|a| a.roster == "matches")
    }
}

/// The public part of `setup`'s keys, each compared with `roster`.
pub fn keys(setup: &NodeSetup, roster: &Roster) -> KeyReport {
    let peer_id = setup.transport.public().to_peer_id().to_string();
    let agencies = setup
        .tenants
        .iter()
        .map(|tenant| {
            let signing = tenant.signing.verifying_key();
            let encryption = tenant.encryption.public_key();
            let verdict = match roster.agency(&tenant.id) {
                None => "absent".to_owned(),
                Some(entry) => {
                    let mut differs = Vec::new();
                    if entry.signing_key != signing {
                        differs.push("signing key");
                    }
                    if entry.encryption_key != encryption {
                        differs.push("encryption key");
                    }
                    if entry.node != peer_id {
                        differs.push("node");
                    }
                    if differs.is_empty() {
                        "matches".to_owned()
                    } else {
                        format!("{} differ(s)", differs.join(", "))
                    }
                }
            };
            AgencyKeys {
                id: tenant.id.clone(),
                signing_key: BASE64.encode(&signing.0),
                encryption_key: BASE64.encode(&encryption.0),
                roster: verdict,
            }
        })
        .collect();
    KeyReport {
        peer_id,
        roster_epoch: roster.epoch,
        agencies,
    }
}

/// How a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupMode {
    /// By the running node, which went on working.
    Live,
    /// From the store directly: no node was running.
    Offline,
}

/// Writes a consistent backup of the store under `data_dir` into `target` (a new
/// directory; its parent must exist): through the running node's control socket, or
/// directly when no node answers there.
pub fn backup(data_dir: &Path, target: &Path) -> Result<(BackupMode, PathBuf), AdminError> {
    let target = std::path::absolute(target).map_err(io(target))?;
    if target.exists() {
        return Err(AdminError::TargetExists { path: target });
    }
    let store_path = data_dir.join(STORE_DIR);
    if !store_path.join("CURRENT").is_file() {
        return Err(AdminError::NoStore { path: store_path });
    }
    let socket = data_dir.join(control::SOCKET_NAME);
    let request = ControlRequest::Backup {
        dir: target.clone(),
    };
    match control::request(&socket, &request, BACKUP_TIMEOUT) {
        Ok(answer) if answer.ok => Ok((BackupMode::Live, target)),
        Ok(answer) => Err(AdminError::Refused(answer.detail)),
        Err(ControlError::NotRunning { .. }) => {
            // Nothing runs: the store is ours to open (RocksDB's lock refuses it otherwise).
            let store = Store::open(&store_path)?;
            store.checkpoint(&target)?;
            drop(store);
            Ok((BackupMode::Offline, target))
        }
        Err(e) => Err(e.into()),
    }
}

/// Restores the backup `from` as the store under `data_dir`, for a stopped node. The
/// backup is copied and opened (which checks it) before it takes the store's place; an
/// existing store is refused unless `force`, which moves it aside. Returns where the old
/// store went, if there was one.
pub fn restore(data_dir: &Path, from: &Path, force: bool) -> Result<Option<PathBuf>, AdminError> {
    let socket = data_dir.join(control::SOCKET_NAME);
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Err(AdminError::NodeRunning { socket });
    }
    if !from.join("CURRENT").is_file() {
        return Err(AdminError::NotABackup {
            path: from.to_owned(),
        });
    }
    let store_path = data_dir.join(STORE_DIR);
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = data_dir.join(format!("{STORE_DIR}.before-restore-{unix}"));
    if store_path.exists() && !force {
        return Err(AdminError::StoreExists {
            path: store_path,
            aside,
        });
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let staging = data_dir.join(format!("{STORE_DIR}.restoring"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    copy_flat(from, &staging)?;
    // Opening checks the copy (and recovers it, as after a crash); closing syncs it.
    drop(Store::open(&staging)?);
    let replaced = if store_path.exists() {
        std::fs::rename(&store_path, &aside).map_err(io(&store_path))?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&staging, &store_path).map_err(io(&staging))?;
    sync_dir(data_dir)?;
    Ok(replaced)
}

/// Copies the files of the flat directory `from` into the new directory `to`, each synced.
fn copy_flat(from: &Path, to: &Path) -> Result<(), AdminError> {
    std::fs::create_dir(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let path = entry.path();
        if !entry.file_type().map_err(io(&path))?.is_file() {
            return Err(AdminError::UnexpectedEntry {
                path: from.to_owned(),
                name: entry.file_name().to_string_lossy().into_owned(),
            });
        }
        let copy = to.join(entry.file_name());
        std::fs::copy(&path, &copy).map_err(io(&path))?;
        std::fs::File::open(&copy)
            .and_then(|f| f.sync_all())
            .map_err(io(&copy))?;
    }
    sync_dir(to)
}

/// Makes a directory's entries (renames, new files) durable.
fn sync_dir(dir: &Path) -> Result<(), AdminError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}
