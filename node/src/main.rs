//! `lienthong`: The agency node daemon and CLI.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lienthong_node::audit_cli::{self, AuditCommand};

/// The agency node daemon and CLI.
#[derive(Debug, Parser)]
#[command(name = "lienthong", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Audit a central node's ledger offline: fetch, replay, report.
    #[command(subcommand)]
    Audit(AuditCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Audit(cmd) => audit_cli::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
