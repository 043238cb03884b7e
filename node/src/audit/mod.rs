//! The auditor (DESIGN §6, `lienthong audit`): mirror a central node's log, replay it through
//! the pure verifier of `lienthong_protocol::audit`, and report per agency.
//!
//! - [`mirror`]: the on-disk copy of a log, in the C2SP tlog-tiles layout (`checkpoint`,
//!   `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`) plus `checkpoints/<size>-<digest>`
//!   (every checkpoint seen, cosignatures merged) and `roster/<epoch>`; atomic writes.
//! - [`tiles`]: streaming checks that the hash tiles agree with the entry bundles.
//! - [`fetch`]: mirror a log over HTTP (resumable, bounded concurrency, progress bar).
//! - [`replay`]: verify one or several mirrors (or URLs), cross-check them, and render the
//!   violations with their evidence.
//! - [`report`]: the per-agency and per-level report (table, JSON, CSV, HTML).
//! - [`synth`]: deterministic synthetic ledgers for tests and benchmarks.
//!
//! Errors here are [`AuditError`]s naming the file, URL or entry concerned; the CLI
//! (`audit_cli`) adds context. Violations found in the data are not errors: they are the
//! result of a replay.

pub mod fetch;
pub mod mirror;
pub mod replay;
pub mod report;
pub mod synth;
pub mod tiles;

use std::path::PathBuf;

pub use fetch::{FetchOptions, FetchSummary, fetch};
pub use mirror::Mirror;
pub use replay::{ReplayOptions, ReplayOutcome, Source, replay};
pub use report::{ReportFormat, report};

/// Why an audit command could not run (as opposed to violations found in the data).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The I/O error is in the message (not a `source`, so that chains print it once).
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{url}: {error}")]
    Http { url: String, error: String },
    #[error("{what}: {error}")]
    Invalid { what: String, error: String },
    #[error("{0}")]
    Trust(String),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::Invalid {
            what: what.into(),
            error: error.to_string(),
        }
    }
}
