//! `lienthong audit fetch`: mirror a central node's log into a directory.
//!
//! Reads `/checkpoint`, then every hash tile and entry bundle of that tree (full and partial)
//! with at most `concurrency` requests in flight, the signed rosters the log records
//! (`/roster/<epoch>`), and finally writes the checkpoint (into the history, merging the
//! cosignatures of an identical checkpoint text, and as `checkpoint`). Resumable: a file
//! already present is not downloaded again, and every file is written atomically. After the
//! download the mirror is checked (bundles against level-0 tiles, tiles against the tiles
//! above, tiles against the checkpoint root); files that disagree are downloaded once more,
//! and what still disagrees is reported (and kept: it is evidence for `audit replay`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use lienthong_protocol::ledger::LedgerEntry;
use lienthong_protocol::rfc6962::{self, Hash};
use lienthong_protocol::roster::MAX_ROSTER_LEN;
use lienthong_protocol::signed_note::MAX_NOTE_BYTES;
use lienthong_protocol::tlog_checkpoint::SignedCheckpoint;
use lienthong_protocol::tlog_tiles::{
    MAX_TILE_LEVEL, TILE_WIDTH, TileHashSource, TileId, parse_entry_bundle, tiles_for_root,
};
use serde::Serialize;

use super::AuditError;
use super::mirror::{Mirror, bundles, write_atomic};
use super::tiles::{TileCheck, TileProblem, leaves};

/// Problems listed before the check of a mirror gives up.
const MAX_PROBLEMS: usize = 10_000;

/// Largest tile or bundle accepted from a server.
const MAX_TILE: usize = 17 * 1024 * 1024;

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// No progress bar.
    pub quiet: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Wait (up to `wait`) for a served checkpoint carrying at least this many cosignature
    /// lines before mirroring it: a checkpoint fetched before its witnesses cosigned it
    /// fails the quorum at replay.
    pub min_cosignatures: usize,
    /// How long to wait for cosignatures.
    pub wait: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            quiet: false,
            timeout: Duration::from_secs(60),
            min_cosignatures: 0,
            wait: Duration::from_secs(30),
        }
    }
}

/// What a fetch did.
#[derive(Debug, Clone, Serialize)]
pub struct FetchSummary {
    /// The log's origin line.
    pub origin: String,
    /// Tree size of the checkpoint mirrored.
    pub size: u64,
    /// Its root hash (base64).
    pub root: String,
    /// Tiles and bundles downloaded.
    pub downloaded: u64,
    /// Tiles and bundles already present.
    pub skipped: u64,
    /// Files downloaded again because they disagreed with the rest.
    pub refetched: u64,
    /// Roster epochs recorded in the log (all mirrored unless listed in `problems`).
    pub roster_epochs: Vec<u64>,
    /// Files that still disagree or could not be had.
    pub problems: Vec<TileProblem>,
}

/// Mirrors the log at `url` into `dir`. See the module docs.
///
/// # Errors
/// Network, HTTP and file errors, naming the URL or file.
pub fn fetch(url: &str, dir: &Path, opts: &FetchOptions) -> Result<FetchSummary, AuditError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| AuditError::io(dir, e))?;
    rt.block_on(fetch_async(url, dir, opts))
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// GETs `path` (relative to the log's URL), at most `limit` bytes; `Ok(None)` on 404.
    async fn get(&self, path: &str, limit: usize) -> Result<Option<Vec<u8>>, AuditError> {
        let url = format!("{}/{path}", self.base);
        let err = |error: String| AuditError::Http {
            url: url.clone(),
            error,
        };
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(err(format!("HTTP status {}", resp.status())));
        }
        crate::http_body::read_limited(resp, limit)
            .await
            .map(Some)
            .map_err(|e| err(e.to_string()))
    }

    /// Downloads a tile into the mirror.
    async fn tile(&self, mirror: &Mirror, id: TileId) -> Result<(), AuditError> {
        let path = id.path();
        let data = self
            .get(&path, MAX_TILE)
            .await?
            .ok_or_else(|| AuditError::Http {
                url: format!("{}/{path}", self.base),
                error: "not found (404)".into(),
            })?;
        let file = mirror.tile_path(&id);
        tokio::task::spawn_blocking(move || write_atomic(&file, &data))
            .await
            .map_err(|e| AuditError::invalid("writer task", e))?
    }
}

fn progress(n: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// Downloads `ids` with at most `opts.concurrency` requests in flight; returns how many.
async fn download(
    client: &Client,
    mirror: &Mirror,
    ids: impl Iterator<Item = TileId>,
    bar: &ProgressBar,
    opts: &FetchOptions,
) -> Result<u64, AuditError> {
    let mut stream = futures::stream::iter(ids)
        .map(|id| client.tile(mirror, id))
        .buffer_unordered(opts.concurrency.max(1));
    let mut n = 0;
    while let Some(r) = stream.next().await {
        r?;
        n += 1;
        bar.inc(1);
    }
    Ok(n)
}

/// How many tiles and bundles [`tile_ids`] yields.
pub fn tile_count(size: u64) -> u64 {
    let width = u64::from(TILE_WIDTH);
    let hashes: u64 = (0..64u32)
        .step_by(8)
        .map(|shift| (size >> shift).div_ceil(width))
        .sum();
    hashes + size.div_ceil(width)
}

/// Every hash tile and entry bundle of a tree of `size` entries (full and partial), lazily
/// (a forged size costs requests, not memory).
pub fn tile_ids(size: u64) -> impl Iterator<Item = TileId> {
    let width = u64::from(TILE_WIDTH);
    (0..=MAX_TILE_LEVEL)
        .map_while(move |level| {
            let shift = u32::from(level) * 8;
            let n = if shift < 64 { size >> shift } else { 0 };
            (n > 0).then_some((level, n))
        })
        .flat_map(move |(level, n)| {
            (0..n.div_ceil(width)).filter_map(move |i| TileId::at_size(level, i, size))
        })
        .chain(bundles(size))
}

async fn fetch_async(
    url: &str,
    dir: &Path,
    opts: &FetchOptions,
) -> Result<FetchSummary, AuditError> {
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(opts.timeout)
            .build()
            .map_err(|e| AuditError::Http {
                url: url.to_owned(),
                error: e.to_string(),
            })?,
        base: url.trim_end_matches('/').to_owned(),
    };
    let mirror = Mirror::new(dir);
    let deadline = tokio::time::Instant::now() + opts.wait;
    let (cp_bytes, cp) = loop {
        let bytes = client
            .get("checkpoint", MAX_NOTE_BYTES)
            .await?
            .ok_or_else(|| AuditError::Http {
                url: format!("{}/checkpoint", client.base),
                error: "no checkpoint (404)".into(),
            })?;
        let cp = SignedCheckpoint::parse(&bytes)
            .map_err(|e| AuditError::invalid(format!("{}/checkpoint", client.base), e))?;
        let lines = cp.note().signatures().len().saturating_sub(1);
        if lines >= opts.min_cosignatures {
            break (bytes, cp);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AuditError::Http {
                url: format!("{}/checkpoint", client.base),
                error: format!(
                    "the checkpoint carries {lines} cosignature(s) after {:?}; {} wanted",
                    opts.wait, opts.min_cosignatures
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let size = cp.checkpoint().size();
    let root = *cp.checkpoint().root();

    let total = tile_count(size);
    let bar = progress(total, opts.quiet, "tiles");
    let todo = tile_ids(size).filter(|id| {
        let held = mirror.tile_path(id).is_file();
        if held {
            bar.inc(1);
        }
        !held
    });
    let downloaded = download(&client, &mirror, todo, &bar, opts).await?;
    bar.finish_and_clear();

    // Check what is held; download again what disagrees, once.
    let m = mirror.clone();
    let (mut problems, epochs) = blocking(move || verify(&m, size, &root)).await?;
    let mut refetched = 0;
    let bad: HashSet<PathBuf> = problems.iter().map(|p| p.file.clone()).collect();
    let again: Vec<TileId> = tile_ids(size)
        .filter(|id| {
            bad.contains(&mirror.tile_path(id)) || bad.contains(&mirror.tile_path(&id.full()))
        })
        .collect();
    if !again.is_empty() {
        let bar = progress(again.len() as u64, opts.quiet, "again");
        refetched = download(&client, &mirror, again.into_iter(), &bar, opts).await?;
        bar.finish_and_clear();
        let m = mirror.clone();
        problems = blocking(move || verify(&m, size, &root)).await?.0;
    }

    for &epoch in &epochs {
        let path = mirror.roster_path(epoch);
        if path.is_file() {
            continue;
        }
        match client
            .get(&format!("roster/{epoch}"), MAX_ROSTER_LEN)
            .await?
        {
            Some(data) => blocking(move || write_atomic(&path, &data)).await?,
            None => problems.push(TileProblem {
                file: path,
                problem: format!("the log records roster epoch {epoch} but does not serve it"),
            }),
        }
    }

    let m = mirror.clone();
    let bytes = cp_bytes.clone();
    blocking(move || {
        m.record_checkpoint(&bytes)?;
        write_atomic(&m.checkpoint_path(), &bytes)
    })
    .await?;
    Ok(FetchSummary {
        origin: cp.checkpoint().origin().to_owned(),
        size,
        root: base64_of(&root),
        downloaded,
        skipped: total - downloaded,
        refetched,
        roster_epochs: epochs.into_iter().collect(),
        problems,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuditError> + Send + 'static,
) -> Result<T, AuditError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuditError::invalid("blocking task", e))?
}

pub(crate) fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Checks a mirror of a tree of `size` entries with root `root`: bundles against level-0
/// tiles, tiles against the tiles above, and the root. Returns the problems and the roster
/// epochs the bundles record.
pub fn verify(
    mirror: &Mirror,
    size: u64,
    root: &Hash,
) -> Result<(Vec<TileProblem>, BTreeSet<u64>), AuditError> {
    let mut check = TileCheck::new(mirror, size);
    let mut epochs = BTreeSet::new();
    let mut problems = Vec::new();
    for id in bundles(size) {
        if problems.len() >= MAX_PROBLEMS {
            problems.push(TileProblem {
                file: mirror.dir().to_path_buf(),
                problem: format!("more than {MAX_PROBLEMS} problems; not checked further"),
            });
            break;
        }
        let Some((file, data)) = mirror.read_tile(&id)? else {
            problems.push(TileProblem {
                file: mirror.tile_path(&id),
                problem: "missing".into(),
            });
            continue;
        };
        let entries = match parse_entry_bundle(&data) {
            Ok(e) => e,
            Err(e) => {
                problems.push(TileProblem {
                    file,
                    problem: format!("not an entry bundle: {e}"),
                });
                continue;
            }
        };
        let want = usize::from(id.width);
        if entries.len() < want || (!id.is_partial() && entries.len() != want) {
            problems.push(TileProblem {
                file: file.clone(),
                problem: format!("{} entries where {want} are expected", entries.len()),
            });
        }
        let entries: Vec<&[u8]> = entries.into_iter().take(want).collect();
        for e in &entries {
            if e.first().is_some_and(|b| *b != 0x82)
                && let Ok(LedgerEntry::Roster(r)) = LedgerEntry::decode(e)
            {
                epochs.insert(r.epoch);
            }
        }
        check.bundle(id.index, &leaves(entries.iter().copied()));
    }
    problems.append(&mut check.problems);
    // The root from the tiles.
    let mut held: HashMap<TileId, Vec<u8>> = HashMap::new();
    if let Ok(ids) = tiles_for_root(size) {
        for id in ids {
            if let Some((_, data)) = mirror.read_tile(&id)? {
                held.insert(id, data);
            }
        }
    }
    let src = TileHashSource::new(&held, size);
    match rfc6962::root(&src, size) {
        Ok(r) if r == *root => {}
        Ok(r) => problems.push(TileProblem {
            file: PathBuf::from("tile"),
            problem: format!(
                "the tiles give root {} but the checkpoint signs {}",
                base64_of(&r),
                base64_of(root)
            ),
        }),
        Err(e) => problems.push(TileProblem {
            file: PathBuf::from("tile"),
            problem: format!("the root cannot be computed from the tiles: {e}"),
        }),
    }
    Ok((problems, epochs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lienthong_protocol::tlog_tiles::new_tiles;

    #[test]
    fn lazy_tile_ids_are_the_tiles_of_the_tree() {
        for size in [
            0u64, 1, 255, 256, 257, 65_535, 65_536, 65_537, 70_000, 16_777_217,
        ] {
            let mut want = new_tiles(0, size, false);
            want.extend(new_tiles(0, size, true));
            let got: Vec<TileId> = tile_ids(size).collect();
            assert_eq!(got, want, "size {size}");
            assert_eq!(tile_count(size), want.len() as u64, "size {size}");
        }
    }
}
