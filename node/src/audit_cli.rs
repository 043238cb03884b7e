//! `lienthong audit …`: the auditor's command line (fetch, replay, report) over
//! [`crate::audit`]. Exit status: 0 when everything verified (or the command did its work),
//! 1 when violations or mirror problems were found, and the binary's error status (2) when
//! the command could not run.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use lienthong_protocol::audit::Checks;

use crate::audit::{self, FetchOptions, ReplayOptions, ReportFormat, Source};

/// `lienthong audit <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Mirror a central node's log (checkpoint, tiles, entry bundles, rosters) into DIR.
    /// Resumable: files already present and verified are kept.
    Fetch {
        /// The central node's base URL (serving /checkpoint and /tile/...).
        url: String,
        /// The mirror directory (created if needed).
        dir: PathBuf,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Wait (up to 30 s) for a checkpoint with at least this many cosignatures, so that
        /// the mirrored checkpoint meets the witness quorum at replay.
        #[arg(long, default_value_t = 0, value_name = "N")]
        min_cosignatures: usize,
        /// Print a JSON summary and no progress bar.
        #[arg(long)]
        json: bool,
    },
    /// Verify one or several logs (mirror directories or URLs): tree hashes, checkpoint
    /// signatures and cosignature quorum, consistency, agency signatures against the roster
    /// in force, sender chains, status transitions, roster epochs; several logs are
    /// cross-checked for omitted entries. Exit 0 only when everything verifies.
    Replay {
        /// Mirror directories or central node URLs.
        #[arg(required = true, value_name = "DIR|URL")]
        sources: Vec<String>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Check tree hashes and checkpoints only (no entry decoding or signatures).
        #[arg(long, conflicts_with = "no_signatures")]
        hashes_only: bool,
        /// Check everything except agency signatures.
        #[arg(long)]
        no_signatures: bool,
        /// Do not check the hash tiles against the entry bundles.
        #[arg(long)]
        skip_tiles: bool,
        /// Verification threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Print the result as JSON (violations with their evidence) and no progress bar.
        #[arg(long)]
        json: bool,
    },
    /// Per agency and per level: documents sent and received, time to 01/03/06, copies past
    /// due, recipients that never acknowledged, and the stalled documents.
    Report {
        /// A mirror directory made by `audit fetch`.
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
    },
}

/// What the auditor trusts.
#[derive(Debug, Clone, clap::Args)]
pub struct TrustArgs {
    /// The genesis signed roster (default: the mirror's lowest epoch, reported as not pinned).
    #[arg(long, value_name = "FILE")]
    pub genesis: Option<PathBuf>,
    /// A log's checkpoint key (C2SP vkey, named after the log's origin); repeatable.
    /// Default: the genesis roster's central node of that origin.
    #[arg(long = "log-key", value_name = "VKEY")]
    pub log_keys: Vec<String>,
    /// A witness's cosignature key (vkey); repeatable.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witnesses: Vec<String>,
    /// Cosignatures a checkpoint needs (default: the genesis roster's witness quorum).
    #[arg(long)]
    pub quorum: Option<usize>,
    /// The time due dates are compared with, ms since the Unix epoch (default: now).
    #[arg(long, value_name = "MS")]
    pub now_ms: Option<u64>,
}

impl TrustArgs {
    fn options(&self, quiet: bool) -> ReplayOptions {
        ReplayOptions {
            genesis: self.genesis.clone(),
            log_keys: self.log_keys.clone(),
            witnesses: self.witnesses.clone(),
            quorum: self.quorum,
            now_ms: self.now_ms,
            quiet,
            ..ReplayOptions::default()
        }
    }
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to standard output")
}

/// Runs an audit command.
///
/// # Errors
/// When the command cannot run (unreadable mirror, network, missing trust anchors).
pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Fetch {
            url,
            dir,
            concurrency,
            min_cosignatures,
            json,
        } => {
            let opts = FetchOptions {
                concurrency,
                min_cosignatures,
                quiet: json,
                ..FetchOptions::default()
            };
            let s = audit::fetch(&url, &dir, &opts)
                .with_context(|| format!("mirroring {url} into {}", dir.display()))?;
            if json {
                print(&(serde_json::to_string_pretty(&s)? + "\n"))?;
            } else {
                let mut text = format!(
                    "{}: {} entries, root {}; {} files downloaded, {} already held, {} downloaded again; roster epochs {:?}\n",
                    s.origin, s.size, s.root, s.downloaded, s.skipped, s.refetched, s.roster_epochs
                );
                for p in &s.problems {
                    text.push_str(&format!("PROBLEM {p}\n"));
                }
                print(&text)?;
            }
            Ok(if s.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Replay {
            sources,
            trust,
            hashes_only,
            no_signatures,
            skip_tiles,
            threads,
            json,
        } => {
            let mut opts = trust.options(json);
            opts.checks = if hashes_only {
                Checks::HashesOnly
            } else if no_signatures {
                Checks::Structure
            } else {
                Checks::Full
            };
            opts.check_tiles = !skip_tiles;
            if let Some(t) = threads {
                opts.threads = t.max(1);
            }
            let sources: Vec<Source> = sources.iter().map(|s| Source::parse(s)).collect();
            let outcome = audit::replay(&sources, &opts).with_context(|| {
                format!(
                    "replaying {}",
                    sources
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if json {
                print(&(serde_json::to_string_pretty(&outcome.to_json())? + "\n"))?;
            } else {
                print(&outcome.to_text())?;
            }
            Ok(if outcome.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        AuditCommand::Report {
            dir,
            format,
            output,
            trust,
        } => {
            let quiet = format != ReportFormat::Table || output.is_some();
            let text = audit::report(&dir, format, &trust.options(quiet))
                .with_context(|| format!("reporting on {}", dir.display()))?;
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print(&text)?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
