//! `lienthong audit replay`: verify one or several logs from mirrors (or URLs, mirrored into
//! a temporary directory first) with the pure [`Replayer`], and cross-check several logs.
//!
//! Per log: every checkpoint held is pushed first (the replayer compares each with the
//! replayed tree when it reaches its size, so successive checkpoints are checked for
//! consistency and two roots for one size are a split view); then the entry bundles are
//! read one at a time and streamed through the replayer (memory stays flat), while the hash
//! tiles are checked against them ([`TileCheck`]). Missing or unreadable files are
//! reported as mirror problems; the replay stops at the first missing bundle (the
//! checkpoint then shows the truncation).
//!
//! Trust: the genesis roster (`--genesis`, else the mirror's lowest roster epoch, reported
//! as not pinned), the log's key (`--log-key`, else the genesis roster's central node whose
//! origin matches), the witnesses' keys (`--witness`) and the quorum (`--quorum`, else the
//! genesis roster's).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use lienthong_protocol::audit::{Checks, Limits, LogParams, Replayer, Report, cross_check};
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::ledger::log_origin;
use lienthong_protocol::rfc6962::{self, Hash};
use lienthong_protocol::roster::SignedRoster;
use lienthong_protocol::signed_note::{Ed25519Verifier, NoteVerifier};
use lienthong_protocol::tlog_cosignature::CosignerKey;
use lienthong_protocol::tlog_tiles::{
    TileHashSource, TileId, parse_entry_bundle, tiles_for_inclusion_proof,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::AuditError;
use super::fetch::{FetchOptions, base64_of, fetch};
use super::mirror::{Mirror, bundles, read_bounded};
use super::tiles::{TileCheck, TileProblem, leaves};
use crate::driver::now_ms;

/// Entry violations given an inclusion proof in the output (the rest name their index).
const MAX_PROOFS: usize = 1000;

/// Where a log comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A mirror made by `audit fetch`.
    Dir(PathBuf),
    /// A central node's URL (mirrored into a temporary directory first).
    Url(String),
}

impl Source {
    /// `http(s)://…` is a URL, anything else a directory.
    pub fn parse(s: &str) -> Self {
        if s.starts_with("http://") || s.starts_with("https://") {
            Self::Url(s.to_owned())
        } else {
            Self::Dir(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(p) => write!(f, "{}", p.display()),
            Self::Url(u) => f.write_str(u),
        }
    }
}

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// What to check.
    pub checks: Checks,
    /// Threads for decoding and signature verification.
    pub threads: usize,
    /// The trusted genesis roster (signed roster file).
    pub genesis: Option<PathBuf>,
    /// Log keys (C2SP vkeys), matched to logs by name = origin.
    pub log_keys: Vec<String>,
    /// Witness keys (cosignature/v1 vkeys).
    pub witnesses: Vec<String>,
    /// Cosignatures a checkpoint needs.
    pub quorum: Option<usize>,
    /// `now` for due dates (ms since the Unix epoch); default the clock.
    pub now_ms: Option<u64>,
    /// No progress bar.
    pub quiet: bool,
    /// Check the hash tiles against the bundles.
    pub check_tiles: bool,
    /// Entries per signature batch.
    pub batch: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            checks: Checks::Full,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            genesis: None,
            log_keys: Vec::new(),
            witnesses: Vec::new(),
            quorum: None,
            now_ms: None,
            quiet: false,
            check_tiles: true,
            batch: 256,
        }
    }
}

/// The outcome for one log.
#[derive(Debug)]
pub struct LogOutcome {
    /// The source as given.
    pub source: String,
    /// The log's origin line.
    pub origin: String,
    /// The latest checkpoint held (signed note text).
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    /// Where the genesis roster came from.
    pub genesis: String,
    /// The replayer's report.
    pub report: Report,
    /// Files missing or disagreeing with the rest.
    pub problems: Vec<TileProblem>,
    /// Inclusion proofs (in `checkpoint`) of the entries named by violations, by index.
    pub proofs: BTreeMap<u64, Vec<Hash>>,
    /// Wall time of the replay.
    pub seconds: f64,
}

impl LogOutcome {
    /// Whether everything verified.
    pub fn is_clean(&self) -> bool {
        self.report.is_clean() && self.problems.is_empty()
    }
}

/// An entry some logs hold and others do not (censorship evidence once the lagging log has
/// had time to include it).
#[derive(Debug, Clone, Serialize)]
pub struct MissingEntry {
    /// The entry key (content id).
    pub key: ContentId,
    /// Sources holding it.
    pub present_in: Vec<String>,
    /// Sources without it.
    pub absent_from: Vec<String>,
    /// One source and index where it is (fetch it there with an inclusion proof).
    pub found_in: String,
    pub found_at: u64,
}

/// The outcome of a replay of one or several logs.
#[derive(Debug)]
pub struct ReplayOutcome {
    pub logs: Vec<LogOutcome>,
    /// Entries missing from some logs (several logs only).
    pub missing: Vec<MissingEntry>,
}

impl ReplayOutcome {
    /// Whether everything verified.
    pub fn is_clean(&self) -> bool {
        self.logs.iter().all(LogOutcome::is_clean) && self.missing.is_empty()
    }

    /// Violations, mirror problems and missing entries, counted.
    pub fn findings(&self) -> usize {
        self.logs
            .iter()
            .map(|l| l.report.violations.len() + l.problems.len())
            .sum::<usize>()
            + self.missing.len()
    }

    /// The JSON form: per log, its summary, violations (kind, position, message and
    /// evidence) and mirror problems; then the missing entries.
    pub fn to_json(&self) -> Value {
        let logs: Vec<Value> = self
            .logs
            .iter()
            .map(|l| {
                let r = &l.report;
                let violations: Vec<Value> = r
                    .violations
                    .iter()
                    .map(|v| {
                        let mut o = json!({
                            "kind": v.kind(),
                            "position": v.position(),
                            "message": v.to_string(),
                            "evidence": serde_json::to_value(v).unwrap_or(Value::Null),
                        });
                        if let Some(p) = v.position()
                            && let Some(proof) = l.proofs.get(&p)
                            && let Some(obj) = o.as_object_mut()
                        {
                            obj.insert(
                                "inclusion_proof".into(),
                                json!({
                                    "index": p,
                                    "size": l.size,
                                    "hashes": proof.iter().map(|h| base64_of(h)).collect::<Vec<_>>(),
                                }),
                            );
                        }
                        o
                    })
                    .collect();
                json!({
                    "source": l.source,
                    "origin": l.origin,
                    "clean": l.is_clean(),
                    "checkpoint": l.checkpoint,
                    "size": l.size,
                    "genesis": l.genesis,
                    "checks": format!("{:?}", r.checks),
                    "entries": r.entries,
                    "root": base64_of(&r.root),
                    "envelopes": r.envelopes,
                    "documents": r.documents,
                    "statuses": r.statuses,
                    "roster_entries": r.roster_entries,
                    "roster_epoch": r.roster_epoch,
                    "signatures_verified": r.signatures_verified,
                    "checkpoints": r.checkpoints,
                    "forgotten": r.forgotten,
                    "seconds": l.seconds,
                    "violations": violations,
                    "mirror_problems": l.problems,
                })
            })
            .collect();
        json!({
            "clean": self.is_clean(),
            "findings": self.findings(),
            "logs": logs,
            "missing": self.missing,
        })
    }

    /// The human form.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for l in &self.logs {
            let r = &l.report;
            let _ = writeln!(
                s,
                "{} ({}): {} entries, {} envelopes, {} signatures verified, roster epoch {}, {} checkpoints compared, {:.2} s",
                l.source,
                l.origin,
                r.entries,
                r.envelopes,
                r.signatures_verified,
                r.roster_epoch,
                r.checkpoints.compared,
                l.seconds
            );
            let _ = writeln!(s, "  genesis roster: {}", l.genesis);
            if r.checkpoints.covered < r.entries {
                let _ = writeln!(
                    s,
                    "  note: entries after {} are covered by no verified checkpoint",
                    r.checkpoints.covered
                );
            }
            for v in &r.violations {
                let _ = writeln!(s, "  VIOLATION [{}] {v}", v.kind());
                if let Some(p) = v.position()
                    && let Some(proof) = l.proofs.get(&p)
                {
                    let _ = writeln!(
                        s,
                        "    evidence: entry {p} and its inclusion proof ({} hashes) in the checkpoint of size {}; --json prints them",
                        proof.len(),
                        l.size
                    );
                }
            }
            if r.forgotten.violations_not_kept > 0 {
                let _ = writeln!(
                    s,
                    "  … and {} more violations not kept",
                    r.forgotten.violations_not_kept
                );
            }
            if r.forgotten.statuses_waiting > 0 {
                let _ = writeln!(
                    s,
                    "  {} recent statuses wait for their document or request to be logged \
                     (probably still on their way; replay again later)",
                    r.forgotten.statuses_waiting
                );
            }
            for p in &l.problems {
                let _ = writeln!(s, "  MIRROR {p}");
            }
            let _ = writeln!(
                s,
                "  {}",
                if l.is_clean() {
                    "verified: no violation".to_string()
                } else {
                    format!(
                        "{} violation(s), {} mirror problem(s)",
                        r.violations.len(),
                        l.problems.len()
                    )
                }
            );
        }
        for m in &self.missing {
            let _ = writeln!(
                s,
                "MISSING entry {} is in {} (entry {} of {}) but not in {}",
                m.key,
                m.present_in.join(", "),
                m.found_at,
                m.found_in,
                m.absent_from.join(", ")
            );
        }
        s
    }
}

/// Replays every source, then cross-checks them when there are several.
///
/// # Errors
/// A source that cannot be read at all (no checkpoint), or whose trust anchors are missing.
pub fn replay(sources: &[Source], opts: &ReplayOptions) -> Result<ReplayOutcome, AuditError> {
    let mut temps = Vec::new();
    let mut mirrors = Vec::new();
    for src in sources {
        match src {
            Source::Dir(d) => mirrors.push((src.to_string(), Mirror::new(d))),
            Source::Url(u) => {
                let tmp =
                    tempfile::tempdir().map_err(|e| AuditError::io("temporary directory", e))?;
                let fo = FetchOptions {
                    quiet: opts.quiet,
                    min_cosignatures: opts.quorum.unwrap_or(0),
                    ..FetchOptions::default()
                };
                fetch(u, tmp.path(), &fo)?;
                mirrors.push((src.to_string(), Mirror::new(tmp.path())));
                temps.push(tmp);
            }
        }
    }
    let mut logs = Vec::new();
    for (name, mirror) in &mirrors {
        logs.push(replay_one(name, mirror, opts)?);
    }
    let missing = if mirrors.len() > 1 {
        cross(&mirrors, &logs)?
    } else {
        Vec::new()
    };
    drop(temps);
    Ok(ReplayOutcome { logs, missing })
}

fn cross(
    mirrors: &[(String, Mirror)],
    logs: &[LogOutcome],
) -> Result<Vec<MissingEntry>, AuditError> {
    let keys: Vec<_> = mirrors
        .iter()
        .zip(logs)
        .map(|((_, m), l)| keys_of(m.clone(), l.size))
        .collect();
    let found = cross_check(keys).map_err(|e| AuditError::invalid("cross-check", e))?;
    let name = |i: usize| mirrors.get(i).map(|(n, _)| n.clone()).unwrap_or_default();
    Ok(found
        .into_iter()
        .map(|m| MissingEntry {
            key: m.key,
            present_in: m.present_in.iter().map(|&i| name(i)).collect(),
            absent_from: m.absent_from.iter().map(|&i| name(i)).collect(),
            found_in: name(m.found_at.0),
            found_at: m.found_at.1,
        })
        .collect())
}

/// The entry keys of a mirror, read one bundle at a time (unreadable bundles were reported
/// by the replay; the keys stop there).
fn keys_of(mirror: Mirror, size: u64) -> impl Iterator<Item = (u64, ContentId)> {
    bundles(size)
        .map(move |id| {
            let data = mirror.read_tile(&id).ok().flatten()?;
            let entries = parse_entry_bundle(&data.1).ok()?;
            Some(
                entries
                    .into_iter()
                    .take(usize::from(id.width))
                    .map(ContentId::of)
                    .collect::<Vec<_>>(),
            )
        })
        .take_while(Option::is_some)
        .flatten()
        .flatten()
        .enumerate()
        .map(|(i, k)| (i as u64, k))
}

/// The trust anchors for one log.
fn trust(
    mirror: &Mirror,
    origin: &str,
    opts: &ReplayOptions,
) -> Result<(SignedRoster, String, LogParams), AuditError> {
    let (genesis_path, pinned) = match &opts.genesis {
        Some(p) => (p.clone(), true),
        None => {
            let rosters = mirror.rosters()?;
            let (_, p) = rosters.into_iter().next().ok_or_else(|| {
                AuditError::Trust(format!(
                    "{}: no roster in the mirror and no --genesis <signed roster file> given",
                    mirror.dir().display()
                ))
            })?;
            (p, false)
        }
    };
    let bytes = read_bounded(&genesis_path)?.ok_or_else(|| {
        AuditError::io(
            &genesis_path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        )
    })?;
    let genesis = SignedRoster::decode(&bytes)
        .map_err(|e| AuditError::invalid(genesis_path.display().to_string(), e))?;
    let roster = genesis
        .roster()
        .map_err(|e| AuditError::invalid(genesis_path.display().to_string(), e))?;
    let genesis_note = format!(
        "epoch {} from {}{}",
        roster.epoch,
        genesis_path.display(),
        if pinned {
            ""
        } else {
            " (taken from the mirror: pin it with --genesis)"
        }
    );
    let mut log_key = None;
    for k in &opts.log_keys {
        let v = Ed25519Verifier::from_vkey(k).map_err(|e| AuditError::invalid("--log-key", e))?;
        if NoteVerifier::name(&v) == origin {
            log_key = Some(v);
        }
    }
    let log_key = match log_key {
        Some(k) => k,
        None => {
            let c = roster
                .central
                .iter()
                .find(|c| log_origin(&roster.federation.name, &c.name) == origin)
                .ok_or_else(|| {
                    AuditError::Trust(format!(
                        "no key for log {origin}: it is not a central node of the genesis roster; pass --log-key <vkey>"
                    ))
                })?;
            let key = c
                .log_key
                .to_dalek()
                .map_err(|e| AuditError::invalid("the roster's log key", e))?;
            Ed25519Verifier::new(origin, key)
                .map_err(|e| AuditError::invalid("the roster's log key", e))?
        }
    };
    let witnesses = opts
        .witnesses
        .iter()
        .map(|w| CosignerKey::from_vkey(w).map_err(|e| AuditError::invalid("--witness", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let quorum = opts
        .quorum
        .unwrap_or(usize::from(roster.federation.witness_quorum));
    if quorum > witnesses.len() {
        return Err(AuditError::Trust(format!(
            "a quorum of {quorum} cosignatures is required but {} witness keys were given: pass each witness's key with --witness <vkey> (or --quorum)",
            witnesses.len()
        )));
    }
    Ok((
        genesis,
        genesis_note,
        LogParams {
            origin: origin.to_owned(),
            log_key,
            witnesses,
            quorum,
        },
    ))
}

fn replay_one(name: &str, mirror: &Mirror, opts: &ReplayOptions) -> Result<LogOutcome, AuditError> {
    let started = Instant::now();
    let latest = mirror.latest()?;
    let size = latest.checkpoint().size();
    let origin = latest.checkpoint().origin().to_owned();
    let (genesis, genesis_note, params) = trust(mirror, &origin, opts)?;
    let m = mirror.clone();
    let rosters = move |epoch: u64, _digest: &[u8; 32]| -> Option<SignedRoster> {
        let bytes = read_bounded(&m.roster_path(epoch)).ok()??;
        SignedRoster::decode(&bytes).ok()
    };
    let limits = Limits {
        batch: opts.batch.max(1),
        threads: opts.threads.max(1),
        ..Limits::default()
    };
    let mut r = Replayer::with_options(genesis, params, rosters, opts.checks, limits)
        .map_err(|e| AuditError::invalid("the genesis roster", e))?;
    let mut checkpoints = mirror.checkpoints()?;
    checkpoints.sort_by_key(|(_, b)| {
        lienthong_protocol::tlog_checkpoint::SignedCheckpoint::parse(b)
            .map_or(0, |c| c.checkpoint().size())
    });
    for (_, cp) in &checkpoints {
        r.push_checkpoint(cp);
    }
    let bar = if opts.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(size);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} entries ({per_sec}, eta {eta})",
        ) {
            b.set_style(style);
        }
        b.set_message("replay");
        b
    };
    // A reader thread reads, parses and tile-checks the bundles ahead of the replayer,
    // through a bounded queue (at most `READ_AHEAD` bundles in memory).
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(READ_AHEAD);
    let check_tiles = opts.check_tiles;
    let read = std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_bundles(mirror, size, check_tiles, &tx));
        for (data, want) in rx {
            let Ok(entries) = parse_entry_bundle(&data) else {
                continue; // the reader checked it
            };
            let mut n = 0;
            for e in entries.into_iter().take(want) {
                let index = r.entries();
                r.push_entry(index, e);
                n += 1;
            }
            bar.inc(n);
        }
        reader.join()
    });
    bar.finish_and_clear();
    let problems = match read {
        Ok(result) => result?,
        Err(_) => {
            return Err(AuditError::invalid(
                mirror.dir().display().to_string(),
                "the bundle reader failed",
            ));
        }
    };
    let report = r.finish(opts.now_ms.unwrap_or_else(now_ms));
    let proofs = proofs(mirror, size, &report);
    Ok(LogOutcome {
        source: name.to_owned(),
        origin,
        checkpoint: String::from_utf8_lossy(&latest.to_bytes()).into_owned(),
        size,
        genesis: genesis_note,
        report,
        problems,
        proofs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Bundles read ahead of the replayer.
const READ_AHEAD: usize = 8;

/// Reads the bundles of a tree of `size` entries in order, checks them (and the hash tiles
/// when `check_tiles`), and sends each bundle with the number of entries to take. Stops at
/// the first missing or unreadable bundle. Returns the problems found.
fn read_bundles(
    mirror: &Mirror,
    size: u64,
    check_tiles: bool,
    tx: &std::sync::mpsc::SyncSender<(Vec<u8>, usize)>,
) -> Result<Vec<TileProblem>, AuditError> {
    let mut problems = Vec::new();
    let mut tiles = check_tiles.then(|| TileCheck::new(mirror, size));
    for id in bundles(size) {
        let Some((file, data)) = mirror.read_tile(&id)? else {
            problems.push(TileProblem {
                file: mirror.tile_path(&id),
                problem: "missing: the replay stops here".into(),
            });
            break;
        };
        let want = usize::from(id.width);
        {
            let entries = match parse_entry_bundle(&data) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(TileProblem {
                        file,
                        problem: format!("not an entry bundle ({e}): the replay stops here"),
                    });
                    break;
                }
            };
            if entries.len() < want || (!id.is_partial() && entries.len() != want) {
                problems.push(TileProblem {
                    file: file.clone(),
                    problem: format!("{} entries where {want} are expected", entries.len()),
                });
            }
            if let Some(t) = tiles.as_mut() {
                t.bundle(id.index, &leaves(entries.into_iter().take(want)));
            }
        }
        if tx.send((data, want)).is_err() {
            break;
        }
    }
    if let Some(t) = tiles {
        problems.extend(t.problems);
    }
    Ok(problems)
}

/// Violations about one entry (as opposed to checkpoints).
fn is_entry_violation(kind: &str) -> bool {
    !matches!(
        kind,
        "index-mismatch"
            | "checkpoint-malformed"
            | "checkpoint-wrong-origin"
            | "checkpoint-bad-signature"
            | "cosignature-invalid"
            | "quorum-not-met"
            | "root-mismatch"
            | "split-view"
            | "truncated"
            | "inconsistent-checkpoint"
    )
}

/// Inclusion proofs, from the mirror's tiles, of the entries violations name.
fn proofs(mirror: &Mirror, size: u64, report: &Report) -> BTreeMap<u64, Vec<Hash>> {
    let mut out = BTreeMap::new();
    for v in &report.violations {
        if out.len() >= MAX_PROOFS {
            break;
        }
        let Some(index) = v.position().filter(|&p| p < size) else {
            continue;
        };
        if !is_entry_violation(v.kind()) || out.contains_key(&index) {
            continue;
        }
        if let Some(p) = inclusion_proof(mirror, index, size) {
            out.insert(index, p);
        }
    }
    out
}

fn inclusion_proof(mirror: &Mirror, index: u64, size: u64) -> Option<Vec<Hash>> {
    let mut held: std::collections::HashMap<TileId, Vec<u8>> = std::collections::HashMap::new();
    for id in tiles_for_inclusion_proof(index, size).ok()? {
        let (_, data) = mirror.read_tile(&id).ok()??;
        held.insert(id, data);
    }
    rfc6962::inclusion_proof(&TileHashSource::new(&held, size), index, size).ok()
}
