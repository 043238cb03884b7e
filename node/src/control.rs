//! The running node's local control socket (`<data_dir>/control.sock`, mode 0600): operator
//! requests from the same machine that only the running process can serve — today a
//! consistent backup (a RocksDB checkpoint) while the node keeps working.
//!
//! One JSON request line in, one JSON answer line out, then the connection closes. Who may
//! ask is decided by the socket file's permissions (the node's own user), as for a database's
//! local socket; nothing here listens on the network. A line protocol rather than HTTP: the
//! CLI speaks it with the standard library's blocking `UnixStream`, and the requests are
//! few and small ([`MAX_LINE`]).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::store::Store;

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "control.sock";
/// Longest request or answer line, in bytes.
pub const MAX_LINE: usize = 8 * 1024;
/// Connections served at once; more wait for a turn.
const MAX_CONNECTIONS: usize = 4;
/// How long a client may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to the running node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// Write a consistent checkpoint of the store into `dir` (absolute; must not exist, its
    /// parent must).
    Backup { dir: PathBuf },
}

/// The node's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlAnswer {
    /// Whether the request was done.
    pub ok: bool,
    /// What was done, or why not.
    pub detail: String,
}

impl ControlAnswer {
    fn done(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            detail: detail.into(),
        }
    }

    fn refused(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Why a control request could not be made (the CLI side).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing answers on the socket: the node is not running (or runs elsewhere).
    #[error("no node answers on {path}: {source}")]
    NotRunning {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The exchange failed midway.
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The answer was not one.
    #[error("control socket {path}: unreadable answer: {reason}")]
    BadAnswer { path: PathBuf, reason: String },
}

/// Serves the control socket at `path` until the task is aborted; the socket file is
/// replaced if stale and made owner-only. Errors only when it cannot be bound.
pub fn serve(path: &Path, store: Store) -> std::io::Result<JoinHandle<()>> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} answers: another node runs here", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let turns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: accept failed");
                    continue;
                }
            };
            let Ok(turn) = Arc::clone(&turns).acquire_owned().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, store).await {
                    tracing::warn!(error = %e, "control socket: request not answered");
                }
                drop(turn);
            });
        }
    }))
}

/// Reads one request line from `stream`, serves it, writes the answer line.
async fn answer(stream: tokio::net::UnixStream, store: Store) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_LINE as u64 + 1));
    tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request line"))??;
    let reply = if line.len() > MAX_LINE {
        ControlAnswer::refused(format!("request longer than {MAX_LINE} bytes"))
    } else {
        match serde_json::from_str::<ControlRequest>(&line) {
            Ok(request) => serve_request(request, store).await,
            Err(e) => ControlAnswer::refused(format!("not a control request: {e}")),
        }
    };
    let mut bytes = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.shutdown().await
}

async fn serve_request(request: ControlRequest, store: Store) -> ControlAnswer {
    match request {
        ControlRequest::Backup { dir } => {
            if !dir.is_absolute() {
                return ControlAnswer::refused(format!(
                    "{}: the backup directory must be an absolute path",
                    dir.display()
                ));
            }
            let target = dir.clone();
            let made = tokio::task::spawn_blocking(move || store.checkpoint(&target)).await;
            match made {
                Ok(Ok(())) => {
                    tracing::info!(dir = %dir.display(), "backup checkpoint written");
                    ControlAnswer::done(format!("checkpoint written to {}", dir.display()))
                }
                Ok(Err(e)) => ControlAnswer::refused(format!("{e:#}")),
                Err(e) => ControlAnswer::refused(format!("checkpoint task failed: {e}")),
            }
        }
    }
}

/// Sends `request` to the node whose control socket is `path` and returns its answer
/// (blocking: for the CLI). `timeout` bounds the whole exchange.
pub fn request(
    path: &Path,
    request: &ControlRequest,
    timeout: Duration,
) -> Result<ControlAnswer, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| ControlError::NotRunning {
        path: path.to_owned(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| io(std::io::Error::other(e)))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_LINE as u64 + 1))
        .read_line(&mut answer)
        .map_err(io)?;
    if answer.len() > MAX_LINE {
        return Err(ControlError::BadAnswer {
            path: path.to_owned(),
            reason: format!("longer than {MAX_LINE} bytes"),
        });
    }
    serde_json::from_str(&answer).map_err(|e| ControlError::BadAnswer {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::io::Write as _;

    use super::*;

    /// Sends raw `bytes` and reads the answer line (blocking).
    fn raw(path: &Path, bytes: &[u8]) -> ControlAnswer {
        let mut stream = UnixStream::connect(path).unwrap();
        stream.write_all(bytes).unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_are_served_and_bad_ones_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let socket = dir.path().join(SOCKET_NAME);
        let task = serve(&socket, store.clone()).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "owner-only");
        // A second server on the same socket is refused while the first answers.
        assert_eq!(
            serve(&socket, store.clone()).unwrap_err().kind(),
            std::io::ErrorKind::AddrInUse
        );

        let (path, target) = (socket.clone(), dir.path().join("backup"));
        let answers = tokio::task::spawn_blocking(move || {
            let ask = |dir: PathBuf| {
                request(
                    &path,
                    &ControlRequest::Backup { dir },
                    Duration::from_secs(30),
                )
                .unwrap()
            };
            [
                ask(target.clone()),
                ask(target.clone()),
                ask(PathBuf::from("relative")),
                raw(&path, b"{\"op\":\"format_disk\"}\n"),
                raw(&path, &[b'x'; MAX_LINE + 10]),
            ]
        })
        .await
        .unwrap();
        assert!(answers[0].ok, "{:?}", answers[0]);
        assert!(
            Store::open(dir.path().join("backup")).is_ok(),
            "the backup opens"
        );
        assert!(
            !answers[1].ok,
            "an existing target is refused: {:?}",
            answers[1]
        );
        assert!(answers[2].detail.contains("absolute"), "{:?}", answers[2]);
        assert!(
            answers[3].detail.contains("not a control request"),
            "{:?}",
            answers[3]
        );
        assert!(
            answers[4].detail.contains("longer than"),
            "{:?}",
            answers[4]
        );
        task.abort();
    }
}
