//! `lienthong-bootstrap`: The central node: bootstrap, roster ceremonies, relay and the audit ledger.

use clap::Parser;

/// The central node: bootstrap, roster ceremonies, relay and the audit ledger.
#[derive(Debug, Parser)]
#[command(name = "lienthong-bootstrap", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
