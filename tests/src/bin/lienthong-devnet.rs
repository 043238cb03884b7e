//! `lienthong-devnet`: starts a whole federation on loopback and walks through the mission
//! (`scripts/devnet` runs it). With `--check`, verifies every step, stops everything and
//! exits 0 only when every step succeeded.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use lienthong_tests::devnet;

/// A local federation: 3 central nodes and 6 agency nodes, and the mission's walk-through.
#[derive(Debug, Parser)]
#[command(name = "lienthong-devnet", version, about)]
struct Cli {
    /// Run the walk-through, verify every step, stop everything and exit (0: all passed).
    #[arg(long)]
    check: bool,
    /// Seed of the generated keys.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lienthong-devnet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    println!("{line}");
}

async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let mut fed = devnet::generate(cli.seed).context("generating the federation")?;
    say(&format!(
        "Generated a federation in {}: 3 root keys (genesis roster signed 2 of 3), {} central nodes, {} agency nodes",
        fed.dir().display(),
        fed.centrals.len(),
        fed.nodes.len()
    ));
    let started = std::time::Instant::now();
    let outcome = async {
        devnet::start_all(&mut fed)
            .await
            .context("starting the nodes")?;
        say(&format!(
            "All {} processes are up ({:.1} s)\n",
            fed.centrals.len() + fed.nodes.len(),
            started.elapsed().as_secs_f64()
        ));
        let mut narrate = |line: &str| say(line);
        devnet::walk(&mut fed, &mut narrate)
            .await
            .map_err(anyhow::Error::from)
    }
    .await;
    let summary = match outcome {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("\nFAILED: {e:#}");
            eprintln!(
                "Each node's log is in {}/<node>/node.log",
                fed.dir().display()
            );
            // Keep the logs for a look: the directory outlives this process.
            let kept = fed.dir().to_path_buf();
            stop_all(&mut fed);
            std::mem::forget(fed);
            eprintln!("(kept {})", kept.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    say(&format!(
        "\nAll {} steps passed in {:.1} s.",
        summary.steps.len(),
        started.elapsed().as_secs_f64()
    ));
    if cli.check {
        stop_all(&mut fed);
        return Ok(ExitCode::SUCCESS);
    }
    say("\nThe federation keeps running. Try, for example:");
    for node in &fed.nodes {
        for (tenant, token) in &node.tenants {
            say(&format!(
                "  {:<20} {tenant}  {}  token {token}",
                node.name, node.api
            ));
        }
    }
    for central in &fed.centrals {
        say(&format!(
            "  {:<20} ledger {}/checkpoint  status {}/status",
            central.name, central.api, central.api
        ));
    }
    if let Some(node) = fed.nodes.first() {
        let (tenant, token) = node.tenant();
        let api = &node.api;
        say(&format!(
            "\n  target/release/lienthong --node {api} --token {token} inbox --tenant {tenant}\n  \
             target/release/lienthong --node {api} --token {token} agencies\n  \
             curl -H 'authorization: Bearer {token}' '{api}/v1/inbox?tenant={tenant}'\n  \
             API reference (OpenAPI): {api}/v1/openapi.json"
        ));
    }
    say("\nCtrl-C stops every process.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    stop_all(&mut fed);
    Ok(ExitCode::SUCCESS)
}

fn stop_all(fed: &mut lienthong_tests::Federation) {
    for node in fed.nodes.iter_mut().chain(fed.centrals.iter_mut()) {
        node.stop();
    }
}
