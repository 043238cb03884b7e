//! `lienthong`: The agency node daemon and CLI.

use clap::Parser;

/// The agency node daemon and CLI.
#[derive(Debug, Parser)]
#[command(name = "lienthong", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
