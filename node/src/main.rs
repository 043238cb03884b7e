//! `lienthong`: the agency node daemon and its CLI. This binary parses flags and hands over
//! to the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lienthong_node::admin::{self, AdminError, BackupMode};
use lienthong_node::audit_cli::{self, AuditCommand};
use lienthong_node::cli::{ClientCommand, Outcome};
use lienthong_node::config::{Config, NodeLayout, Overrides, RelaySection};
use lienthong_node::federation::{MemberRequest, transport_keypair};
use lienthong_node::node::Node;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::roster::SignedRoster;
use rand_core::{OsRng, RngCore};

/// mimalloc rather than glibc's malloc: under the ingest benchmark glibc's allocator took
/// ≈ 10 % of the node's CPU (`_int_malloc`, `malloc_consolidate`, `unlink_chunk` across the
/// request, relay and writer threads); see docs/BENCHMARKS.md. Built without transparent
/// huge pages (`no_thp`): where THP is on `madvise`, mimalloc's advice backed its arenas
/// with 2 MiB pages and an idle node's RSS rose from 34 to 47 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The agency node daemon and CLI.
#[derive(Debug, Parser)]
#[command(name = "lienthong", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    access: NodeAccess,
}

/// Where the client commands find the node, and as whom they act.
#[derive(Debug, clap::Args)]
struct NodeAccess {
    /// The node's HTTP API.
    #[arg(
        long,
        env = "LIENTHONG_NODE",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    node: String,
    /// A tenant's bearer token (as printed by `lienthong init`).
    #[arg(long, env = "LIENTHONG_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generates keys and a configuration for a node hosting one or more agencies, and
    /// prints the public part to hand to the central office for the roster.
    Init {
        /// Directory for config.toml, keys/ and data/ (created; existing keys are kept).
        #[arg(long)]
        dir: PathBuf,
        /// An agency hosted here: `CODE=Official name` (repeatable).
        #[arg(long = "tenant", value_name = "CODE=NAME", required = true)]
        tenants: Vec<String>,
        /// libp2p listen addresses.
        #[arg(long, default_values = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"])]
        listen: Vec<String>,
        /// Public addresses other nodes dial (listed in the roster).
        #[arg(long)]
        advertise: Vec<String>,
        /// Where the HTTP API for the DMS listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        api: String,
    },
    /// Runs the node until Ctrl-C or SIGTERM.
    Run {
        /// The configuration file (TOML).
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: PathBuf,
        /// Overrides `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Overrides `api.listen`.
        #[arg(long)]
        api_listen: Option<String>,
        /// Overrides `network.listen` (repeatable).
        #[arg(long)]
        listen: Vec<String>,
    },
    /// Prints the public part of the node's keys (for the roster) and checks them against
    /// the genesis roster, or the signed roster in `--roster`. Exit 1 if any differs.
    Keys {
        /// The configuration file (TOML).
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: PathBuf,
        /// A signed roster file (CBOR, as `GET /roster` of a central node serves it) to
        /// compare with instead of the genesis.
        #[arg(long)]
        roster: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Writes a consistent backup of the node's store into a new directory: taken by the
    /// running node (which goes on working), or from the store when the node is stopped.
    Backup {
        /// The configuration file (TOML).
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: PathBuf,
        /// The backup directory to create (its parent must exist).
        #[arg(long)]
        to: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Restores a backup as the store of a stopped node, which then resumes from it as after
    /// a crash. For a lost store: what the node confirmed or signed after the backup is not
    /// in it (see ARCHITECTURE.md, "Backup and restore").
    Restore {
        /// The configuration file (TOML).
        #[arg(long, env = "LIENTHONG_CONFIG")]
        config: PathBuf,
        /// The backup directory (written by `lienthong backup`).
        #[arg(long)]
        from: PathBuf,
        /// Move an existing store aside (to `store.before-restore-<time>`) instead of
        /// refusing.
        #[arg(long)]
        force: bool,
    },
    /// Commands for a DMS operator, through the node's HTTP API.
    #[command(flatten)]
    Client(ClientCommand),
    /// Audit a central node's ledger offline: fetch, replay, report.
    #[command(subcommand)]
    Audit(AuditCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    lienthong_node::init_tracing();
    let result = match cli.command {
        Command::Client(command) => client(command, &cli.access),
        Command::Audit(command) => audit_cli::run(command),
        Command::Init {
            dir,
            tenants,
            listen,
            advertise,
            api,
        } => init(&dir, &tenants, listen, advertise, api),
        Command::Keys {
            config,
            roster,
            json,
        } => keys(&config, roster.as_deref(), json),
        Command::Backup { config, to, json } => backup(&config, &to, json),
        Command::Restore {
            config,
            from,
            force,
        } => restore(&config, &from, force),
        Command::Run {
            config,
            data_dir,
            api_listen,
            listen,
        } => run(
            &config,
            Overrides {
                data_dir,
                api_listen,
                listen: (!listen.is_empty()).then_some(listen),
                bootstrap: None,
            },
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // 2 = could not run (usage, configuration, input), as the client and audit
            // commands use it; 1 is reserved for a verdict (audit violations).
            eprintln!("lienthong: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn client(command: ClientCommand, access: &NodeAccess) -> anyhow::Result<ExitCode> {
    let Some(token) = access.token.as_deref() else {
        eprintln!("lienthong: a bearer token is needed: --token or LIENTHONG_TOKEN");
        return Ok(ExitCode::from(2));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(lienthong_node::cli::run(command, &access.node, token))
}

fn init(
    dir: &Path,
    tenants: &[String],
    listen: Vec<String>,
    advertise: Vec<String>,
    api: String,
) -> anyhow::Result<ExitCode> {
    // Every --tenant is checked before anything is written.
    let mut hosted = Vec::with_capacity(tenants.len());
    for spec in tenants {
        let (code, name) = spec
            .split_once('=')
            .with_context(|| format!("--tenant {spec}: expected CODE=Official name"))?;
        let id = AgencyId::parse(code).map_err(|e| anyhow::anyhow!("--tenant {spec}: {e}"))?;
        hosted.push((
            id,
            name.to_owned(),
            SigningKey::generate(&mut OsRng),
            EncryptionSecret::generate(&mut OsRng),
        ));
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(seed.as_mut_slice());
    let peer_id = transport_keypair(&seed)
        .context("deriving the transport identity")?
        .public()
        .to_peer_id();
    let keys: Vec<_> = hosted
        .iter()
        .map(|(id, _, signing, encryption)| (id.clone(), signing, encryption))
        .collect();
    let written = NodeLayout {
        owner: "node",
        transport_seed: &seed,
        tenants: &keys,
        listen,
        api_listen: api,
        relay: RelaySection::default(),
    }
    .write(dir, &mut OsRng)
    .with_context(|| {
        format!(
            "writing the node in {} (init never overwrites)",
            dir.display()
        )
    })?;

    let members: Vec<MemberRequest> = hosted
        .iter()
        .map(|(id, name, signing, encryption)| MemberRequest {
            id: id.to_string(),
            name: name.clone(),
            signing_key: data_encoding::BASE64.encode(&signing.verifying_key().0),
            encryption_key: data_encoding::BASE64.encode(&encryption.public_key().0),
            node: peer_id.to_string(),
            addrs: advertise.clone(),
        })
        .collect();
    let member_path = dir.join("member.json");
    std::fs::write(&member_path, serde_json::to_string_pretty(&members)?)
        .with_context(|| format!("writing {}", member_path.display()))?;

    println!("node peer id: {peer_id}");
    println!("configuration: {}", written.config.display());
    println!(
        "send {} to the central office; place the signed genesis roster at {}",
        member_path.display(),
        dir.join("roster.cbor").display()
    );
    for (id, token) in written.tokens {
        println!("API token for {id} (shown once; only its hash is stored): {token}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run(config_path: &Path, overrides: Overrides) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path, overrides.with_env())
        .with_context(|| format!("configuration {}", config_path.display()))?;
    // The blocking pool runs short CPU work (decoding, sealing checks) and store reads: a
    // few threads per core keep them busy; tokio's default (512) lets a burst of requests
    // start dozens of threads that only take turns on the cores.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(4 * cores)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let node = Node::start(config.setup)
            .await
            .context("starting the node")?;
        let addrs = node.listen_addrs().await;
        let api = node
            .serve_api_tls(
                config.api_listen,
                &config.tokens,
                lienthong_node::api::ApiConfig::default(),
                config.api_tls,
            )
            .await
            .with_context(|| format!("binding the HTTP API on {}", config.api_listen))?;
        let hub = match config.hub_compat {
            Some(hub) => {
                let listen = hub.listen;
                Some(
                    lienthong_node::hub_compat::serve(&node, hub)
                        .await
                        .with_context(|| {
                            format!("binding the hub-compatible listener on {listen}")
                        })?,
                )
            }
            None => None,
        };
        tracing::info!(peer = %node.peer_id(), ?addrs, api = %api.addr(), hub = ?hub.as_ref().map(|h| h.addr()), "node running");
        shutdown_signal().await;
        tracing::info!("stopping");
        if let Some(hub) = hub {
            hub.shutdown().await;
        }
        api.shutdown().await;
        node.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path, Overrides::default().with_env())
        .with_context(|| format!("configuration {}", path.display()))
}

fn keys(config_path: &Path, roster: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let signed = match roster {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            SignedRoster::decode(&bytes)
                .with_context(|| format!("{}: not a signed roster", path.display()))?
        }
        None => config.setup.genesis.clone(),
    };
    let roster = signed.roster().context("decoding the roster")?;
    let report = admin::keys(&config.setup, &roster);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("node (transport peer id): {}", report.peer_id);
        println!("compared with roster epoch {}", report.roster_epoch);
        println!(
            "{:<16} {:<46} {:<46} ROSTER",
            "AGENCY", "SIGNING KEY", "ENCRYPTION KEY"
        );
        for a in &report.agencies {
            println!(
                "{:<16} {:<46} {:<46} {}",
                a.id, a.signing_key, a.encryption_key, a.roster
            );
        }
    }
    Ok(ExitCode::from(if report.all_match() { 0 } else { 1 }))
}

/// The exit code for an operator command's error: refused (3) for what the node or the
/// files' state refused, else 2.
fn admin_failure(e: &AdminError) -> ExitCode {
    eprintln!("lienthong: {e}");
    match e {
        AdminError::NodeRunning { .. }
        | AdminError::StoreExists { .. }
        | AdminError::TargetExists { .. }
        | AdminError::Refused(_) => ExitCode::from(Outcome::Refused.code()),
        _ => ExitCode::from(Outcome::Usage.code()),
    }
}

fn backup(config_path: &Path, to: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    match admin::backup(&config.setup.data_dir, to) {
        Ok((mode, dir)) => {
            if json {
                println!("{}", serde_json::json!({ "mode": mode, "dir": dir }));
            } else {
                let how = match mode {
                    BackupMode::Live => "taken by the running node",
                    BackupMode::Offline => "taken from the stopped node's store",
                };
                println!("backup written to {} ({how})", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(admin_failure(&e)),
    }
}

fn restore(config_path: &Path, from: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let data_dir = &config.setup.data_dir;
    match admin::restore(data_dir, from, force) {
        Ok(replaced) => {
            println!(
                "restored {} into {}",
                from.display(),
                data_dir.join("store").display()
            );
            if let Some(old) = replaced {
                println!("the previous store was moved to {}", old.display());
            }
            println!(
                "start the node: it resumes from the backup. Documents it confirmed after the \
                 backup are not sent again, and envelopes it signed after the backup will be \
                 signed again with the same sequence numbers (auditors see forks): see \
                 ARCHITECTURE.md, \"Backup and restore\""
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(admin_failure(&e)),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
