//! `lienthong-bootstrap`: the central node: bootstrap, roster ceremonies, relay and the audit
//! ledger. This binary parses flags and hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lienthong_bootstrap::config::{Config, Overrides, witness_name, write_key};
use lienthong_bootstrap::node::Node;
use lienthong_protocol::ledger::log_origin;

/// The central node: bootstrap, roster ceremonies, relay and the audit ledger.
#[derive(Debug, Parser)]
#[command(name = "lienthong-bootstrap", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the central node's ledger: log, checkpoints, tiles over HTTP, witnessing.
    Run {
        /// The configuration file (TOML).
        #[arg(long, env = "LIENTHONG_BOOTSTRAP_CONFIG")]
        config: PathBuf,
        /// Overrides `listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Overrides `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Creates the log key and the witness key files (mode 0600) and prints their public
    /// keys (vkeys) for the other central nodes' configurations.
    Keygen {
        /// The federation's name.
        #[arg(long)]
        federation: String,
        /// This central node's name.
        #[arg(long)]
        name: String,
        /// Directory for `log.key` and `witness.key`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Command::Run {
            config,
            listen,
            data_dir,
        } => {
            let overrides = Overrides { listen, data_dir };
            let config = Config::load(&config, &overrides)
                .with_context(|| format!("invalid configuration {}", config.display()))?;
            tracing::info!(origin = %config.origin, log_key = %config.log_vkey(),
                witness_key = %config.witness_vkey(), peers = config.peers.len(), "starting");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async {
                let node = Node::start(config).await.context("starting the node")?;
                tokio::signal::ctrl_c()
                    .await
                    .context("waiting for Ctrl-C")?;
                tracing::info!("stopping");
                node.shutdown().await;
                Ok(())
            })
        }
        Command::Keygen {
            federation,
            name,
            dir,
        } => {
            let origin = log_origin(&federation, &name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let mut rng = rand_core::OsRng;
            let log_key = ed25519_dalek::SigningKey::generate(&mut rng);
            let witness_key = ed25519_dalek::SigningKey::generate(&mut rng);
            // Validates the names before anything is written.
            let config = Config::new(
                &federation,
                &name,
                dir.clone(),
                log_key.clone(),
                witness_key.clone(),
            )?;
            write_key(&dir.join("log.key"), &origin, &log_key)?;
            write_key(
                &dir.join("witness.key"),
                &witness_name(&origin),
                &witness_key,
            )?;
            println!("log key file:     {}", dir.join("log.key").display());
            println!("witness key file: {}", dir.join("witness.key").display());
            println!("origin:           {origin}");
            println!("log_key = \"{}\"", config.log_vkey());
            println!("witness_key = \"{}\"", config.witness_vkey());
            Ok(())
        }
    }
}
