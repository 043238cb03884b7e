//! `lienthong-bootstrap`: the central node: bootstrap, roster ceremonies, relay and the audit
//! ledger. This binary parses flags and hands over to the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lienthong_bootstrap::ceremony::{self, CentralRequest, Change, GenesisSpec};
use lienthong_bootstrap::config::{Config, Overrides, witness_name, write_key};
use lienthong_bootstrap::node::Node;
use lienthong_node::driver::now_ms;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::KeyFile;
use lienthong_protocol::ledger::log_origin;
use rand_core::RngCore as _;

/// The central node: bootstrap, roster ceremonies, relay and the audit ledger.
#[derive(Debug, Parser)]
#[command(name = "lienthong-bootstrap", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the central node: the ledger (log, checkpoints, tiles over HTTP, witnessing) and
    /// the relay (bootstrap peer, custodian, circuit relay server, roster in force).
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
    /// Creates the log key, the witness key and the transport key files (mode 0600),
    /// writes `central.json` (this node's roster entry, to hand to the central office) and
    /// prints the public keys (vkeys) for the other central nodes' configurations.
    Keygen {
        /// The federation's name.
        #[arg(long)]
        federation: String,
        /// This central node's name.
        #[arg(long)]
        name: String,
        /// Directory for `log.key`, `witness.key`, `transport.key` and `central.json`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Base URL of this node's HTTP interface, as agencies and auditors reach it.
        #[arg(long, default_value = "http://127.0.0.1:7400")]
        http_url: String,
        /// Public libp2p addresses of this node (repeatable), listed in the roster.
        #[arg(long)]
        advertise: Vec<String>,
    },
    /// Roster ceremonies: root keys, genesis, proposals, k-of-n signing, publishing.
    #[command(subcommand)]
    Roster(RosterCommand),
}

#[derive(Debug, Subcommand)]
enum RosterCommand {
    /// Creates one key holder's root key file (mode 0600) and prints its public key.
    RootKeygen {
        /// The key file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// The key holder's name, recorded in the file.
        #[arg(long, default_value = "root")]
        holder: String,
    },
    /// Writes an unsigned genesis proposal (epoch 1).
    Genesis {
        /// The federation's name.
        #[arg(long)]
        federation: String,
        /// k: root signatures needed for every epoch.
        #[arg(long)]
        threshold: u8,
        /// The n root public keys (base64, as `root-keygen` printed them).
        #[arg(long = "root-pub", num_args = 1.., required = true)]
        root_pub: Vec<String>,
        /// Member request files from `lienthong init` (member.json).
        #[arg(long, num_args = 1..)]
        members: Vec<PathBuf>,
        /// Central node files from `lienthong-bootstrap keygen` (central.json).
        #[arg(long, num_args = 1..)]
        central: Vec<PathBuf>,
        /// Cosignatures a checkpoint needs (default: all other central nodes but one).
        #[arg(long)]
        witness_quorum: Option<u8>,
        /// The proposal file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes an unsigned proposal for the next epoch of the roster in force.
    Propose {
        /// The roster in force (signed, CBOR).
        #[arg(long)]
        current: PathBuf,
        /// Admits the agencies of a member request file.
        #[arg(long)]
        admit: Vec<PathBuf>,
        /// Rotates the keys (node, addresses) of members from a member request file.
        #[arg(long)]
        rotate: Vec<PathBuf>,
        /// Suspends an agency.
        #[arg(long, value_name = "CODE")]
        suspend: Vec<String>,
        /// Reinstates a suspended agency.
        #[arg(long, value_name = "CODE")]
        reinstate: Vec<String>,
        /// Revokes an agency.
        #[arg(long, value_name = "CODE")]
        revoke: Vec<String>,
        /// OLD is succeeded by NEW (a member already).
        #[arg(long, value_name = "OLD=NEW")]
        succeed: Vec<String>,
        /// Adds a central node from its central.json.
        #[arg(long)]
        add_central: Vec<PathBuf>,
        /// Removes a central node by name.
        #[arg(long, value_name = "NAME")]
        remove_central: Vec<String>,
        /// The proposal file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Adds a root key holder's signature to a proposal, in place.
    Sign {
        /// The key holder's root key file.
        #[arg(long)]
        key: PathBuf,
        /// The roster in force, whose root keys must sign (default: the proposal's own,
        /// right for a genesis and for any epoch that keeps the root keys).
        #[arg(long)]
        current: Option<PathBuf>,
        /// The proposal file.
        proposal: PathBuf,
    },
    /// Shows a roster or proposal: epoch, members, states, signatures valid / needed.
    Show {
        /// The roster or proposal file.
        file: PathBuf,
        /// Count signatures against this roster in force (default: the file's own).
        #[arg(long)]
        current: Option<PathBuf>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Publishes a signed roster to a central node, which verifies it against the roster
    /// in force, applies it, gossips it to the federation and logs it.
    Publish {
        /// The central node's HTTP base URL.
        #[arg(long)]
        url: String,
        /// The signed roster file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    lienthong_node::init_tracing();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lienthong-bootstrap: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            config,
            listen,
            data_dir,
        } => {
            let overrides = Overrides { listen, data_dir };
            let config = Config::load(&config, &overrides)
                .with_context(|| format!("invalid configuration {}", config.display()))?;
            tracing::info!(origin = %config.origin, log_key = %config.log_vkey(),
                witness_key = %config.witness_vkey(), peers = config.peers.len(),
                relay = config.relay.is_some(), "starting");
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
            http_url,
            advertise,
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
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            rng.fill_bytes(seed.as_mut_slice());
            let peer_id = lienthong_node::federation::transport_keypair(&seed)
                .context("deriving the transport identity")?
                .public()
                .to_peer_id();
            let central = CentralRequest {
                name: name.clone(),
                peer_id: peer_id.to_string(),
                addrs: advertise,
                log_key: ceremony::encode_key(&lienthong_protocol::keys::VerifyingKey(
                    log_key.verifying_key().to_bytes(),
                )),
                http_url,
            };
            central.to_node()?; // Validates the addresses and URL before anything is written.
            let central_path = dir.join("central.json");
            anyhow::ensure!(
                !central_path.exists(),
                "{} exists already; keygen never overwrites",
                central_path.display()
            );
            write_key(&dir.join("log.key"), &origin, &log_key)?;
            write_key(
                &dir.join("witness.key"),
                &witness_name(&origin),
                &witness_key,
            )?;
            let transport_path = dir.join("transport.key");
            lienthong_node::config::write_key(&transport_path, &KeyFile::transport(&name, &seed))
                .with_context(|| format!("writing {}", transport_path.display()))?;
            std::fs::write(&central_path, serde_json::to_string_pretty(&central)?)
                .with_context(|| format!("writing {}", central_path.display()))?;
            println!("log key file:       {}", dir.join("log.key").display());
            println!("witness key file:   {}", dir.join("witness.key").display());
            println!("transport key file: {}", transport_path.display());
            println!(
                "central node entry: {} (hand it to the central office)",
                central_path.display()
            );
            println!("origin:             {origin}");
            println!("peer id:            {peer_id}");
            println!("log_key = \"{}\"", config.log_vkey());
            println!("witness_key = \"{}\"", config.witness_vkey());
            Ok(())
        }
        Command::Roster(cmd) => roster(cmd),
    }
}

fn agency(flag: &str, code: &str) -> anyhow::Result<AgencyId> {
    AgencyId::parse_any(code).map_err(|e| anyhow::anyhow!("--{flag} {code}: {e}"))
}

fn current_roster(
    path: Option<&Path>,
) -> anyhow::Result<Option<lienthong_protocol::roster::Roster>> {
    path.map(|p| ceremony::read_roster(p).map(|(_, r)| r))
        .transpose()
        .map_err(Into::into)
}

fn roster(cmd: RosterCommand) -> anyhow::Result<()> {
    match cmd {
        RosterCommand::RootKeygen { out, holder } => {
            let public = ceremony::root_keygen(&out, &holder)?;
            println!("root key file: {}", out.display());
            println!("public key:    {}", ceremony::encode_key(&public));
        }
        RosterCommand::Genesis {
            federation,
            threshold,
            root_pub,
            members,
            central,
            witness_quorum,
            out,
        } => {
            let root_keys = root_pub
                .iter()
                .map(|k| {
                    ceremony::decode_key(k).ok_or_else(|| {
                        anyhow::anyhow!("--root-pub {k}: not a 32-byte public key in base64")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut entries = Vec::new();
            for m in &members {
                entries.extend(ceremony::read_members(m)?);
            }
            let central = central
                .iter()
                .map(|c| ceremony::read_central(c))
                .collect::<Result<Vec<_>, _>>()?;
            let proposal = ceremony::genesis(GenesisSpec {
                federation,
                threshold,
                root_keys,
                members: entries,
                central,
                witness_quorum,
                issued_ms: now_ms(),
            })?;
            ceremony::write_roster(&out, &proposal)?;
            println!(
                "genesis proposal written to {}; it needs {threshold} root signatures (roster sign)",
                out.display()
            );
        }
        RosterCommand::Propose {
            current,
            admit,
            rotate,
            suspend,
            reinstate,
            revoke,
            succeed,
            add_central,
            remove_central,
            out,
        } => {
            let (_, roster) = ceremony::read_roster(&current)?;
            let mut changes = Vec::new();
            for m in &admit {
                changes.extend(ceremony::read_members(m)?.into_iter().map(Change::Admit));
            }
            for m in &rotate {
                changes.extend(ceremony::read_members(m)?.into_iter().map(Change::Rotate));
            }
            for c in &add_central {
                changes.push(Change::AddCentral(ceremony::read_central(c)?));
            }
            changes.extend(remove_central.into_iter().map(Change::RemoveCentral));
            for code in &suspend {
                changes.push(Change::Suspend(agency("suspend", code)?));
            }
            for code in &reinstate {
                changes.push(Change::Reinstate(agency("reinstate", code)?));
            }
            for pair in &succeed {
                let (old, new) = pair
                    .split_once('=')
                    .with_context(|| format!("--succeed {pair}: expected OLD=NEW"))?;
                changes.push(Change::Succeed {
                    old: agency("succeed", old)?,
                    new: agency("succeed", new)?,
                });
            }
            for code in &revoke {
                changes.push(Change::Revoke(agency("revoke", code)?));
            }
            let proposal = ceremony::propose(&roster, changes, now_ms())
                .with_context(|| format!("proposing the epoch after {}", current.display()))?;
            ceremony::write_roster(&out, &proposal)?;
            println!(
                "proposal for epoch {} written to {}; it needs {} root signatures (roster sign)",
                roster.epoch + 1,
                out.display(),
                roster.federation.threshold
            );
        }
        RosterCommand::Sign {
            key,
            current,
            proposal,
        } => {
            let (mut signed, roster) = ceremony::read_roster(&proposal)?;
            let current = current_roster(current.as_deref())?;
            let trusted = ceremony::trusting(&roster, current.as_ref())?;
            let root = ceremony::load_root_key(&key)?;
            ceremony::sign(&mut signed, &root, &key, trusted)?;
            ceremony::write_roster(&proposal, &signed)?;
            let count = ceremony::count_signatures(&signed, trusted);
            println!(
                "signed {} (epoch {}): {} of {} signatures",
                proposal.display(),
                roster.epoch,
                count.valid,
                count.needed
            );
        }
        RosterCommand::Show {
            file,
            current,
            json,
        } => {
            let (signed, roster) = ceremony::read_roster(&file)?;
            let current = current_roster(current.as_deref())?;
            let trusted = ceremony::trusting(&roster, current.as_ref())?;
            let summary = ceremony::summary(&signed, &roster, trusted);
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{summary}");
            }
        }
        RosterCommand::Publish { url, file } => {
            let (signed, roster) = ceremony::read_roster(&file)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let answer = runtime.block_on(ceremony::publish(&url, &signed))?;
            println!(
                "epoch {} accepted by {url}: ledger index {}{}",
                roster.epoch,
                answer.index,
                if answer.duplicate {
                    " (already logged)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}
