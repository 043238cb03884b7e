//! `lienthong`: the agency node daemon and its CLI. This binary parses flags and hands over
//! to the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lienthong_node::audit_cli::{self, AuditCommand};
use lienthong_node::cli::ClientCommand;
use lienthong_node::config::{Config, FileConfig, Overrides, write_key};
use lienthong_node::federation::{MemberRequest, transport_keypair};
use lienthong_node::node::Node;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::{EncryptionSecret, KeyFile, SigningKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

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

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn init(
    dir: &Path,
    tenants: &[String],
    listen: Vec<String>,
    advertise: Vec<String>,
    api: String,
) -> anyhow::Result<ExitCode> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
    let config_path = dir.join("config.toml");
    anyhow::ensure!(
        !config_path.exists(),
        "{} exists already; init never overwrites a node's configuration",
        config_path.display()
    );
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let transport_path = keys.join("transport.key");
    write_key(&transport_path, &KeyFile::transport("node", &seed))
        .with_context(|| format!("writing {}", transport_path.display()))?;
    let peer_id = transport_keypair(&seed).public().to_peer_id();

    let mut sections = Vec::new();
    let mut members = Vec::new();
    let mut tokens = Vec::new();
    for spec in tenants {
        let (code, name) = spec
            .split_once('=')
            .with_context(|| format!("--tenant {spec}: expected CODE=Official name"))?;
        let id = AgencyId::parse(code).map_err(|e| anyhow::anyhow!("--tenant {spec}: {e}"))?;
        let signing = SigningKey::generate(&mut OsRng);
        let encryption = EncryptionSecret::generate(&mut OsRng);
        let signing_path = keys.join(format!("{id}.signing.key"));
        let encryption_path = keys.join(format!("{id}.encryption.key"));
        write_key(&signing_path, &KeyFile::signing(id.as_str(), &signing))
            .with_context(|| format!("writing {}", signing_path.display()))?;
        write_key(
            &encryption_path,
            &KeyFile::encryption(id.as_str(), &encryption),
        )
        .with_context(|| format!("writing {}", encryption_path.display()))?;
        let mut token = [0u8; 32];
        OsRng.fill_bytes(&mut token);
        let token = data_encoding::BASE64URL_NOPAD.encode(&token);
        sections.push(lienthong_node::config::TenantSection {
            id: id.to_string(),
            signing_key: PathBuf::from(format!("keys/{id}.signing.key")),
            encryption_key: PathBuf::from(format!("keys/{id}.encryption.key")),
            token_sha256: vec![hex(&Sha256::digest(token.as_bytes()))],
        });
        tokens.push((id.clone(), token));
        members.push(MemberRequest {
            id: id.to_string(),
            name: name.to_owned(),
            signing_key: data_encoding::BASE64.encode(&signing.verifying_key().0),
            encryption_key: data_encoding::BASE64.encode(&encryption.public_key().0),
            node: peer_id.to_string(),
            addrs: advertise.clone(),
        });
    }
    let file = FileConfig {
        data_dir: PathBuf::from("data"),
        genesis_roster: PathBuf::from("roster.cbor"),
        transport_key: PathBuf::from("keys/transport.key"),
        network: lienthong_node::config::NetworkSection {
            listen,
            bootstrap: Vec::new(),
        },
        api: lienthong_node::config::ApiSection { listen: api },
        tenants: sections,
        relay: lienthong_node::config::RelaySection::default(),
    };
    let text = toml::to_string_pretty(&file).context("writing the configuration")?;
    std::fs::write(&config_path, text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let member_path = dir.join("member.json");
    let member_json = serde_json::to_string_pretty(&members)?;
    std::fs::write(&member_path, &member_json)
        .with_context(|| format!("writing {}", member_path.display()))?;

    println!("node peer id: {peer_id}");
    println!("configuration: {}", config_path.display());
    println!(
        "send {} to the central office; place the signed genesis roster at {}",
        member_path.display(),
        dir.join("roster.cbor").display()
    );
    for (id, token) in tokens {
        println!("API token for {id} (shown once; only its hash is stored): {token}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run(config_path: &Path, overrides: Overrides) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path, overrides.with_env())
        .with_context(|| format!("configuration {}", config_path.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let node = Node::start(config.setup)
            .await
            .context("starting the node")?;
        let addrs = node.listen_addrs().await;
        let api = node
            .serve_api(
                config.api_listen,
                &config.tokens,
                lienthong_node::api::ApiConfig::default(),
            )
            .await
            .with_context(|| format!("binding the HTTP API on {}", config.api_listen))?;
        tracing::info!(peer = %node.peer_id(), ?addrs, api = %api.addr(), "node running");
        shutdown_signal().await;
        tracing::info!("stopping");
        api.shutdown().await;
        node.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
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
