//! Harness for lienthong's multi-process integration tests and the devnet: building,
//! spawning and observing the real `lienthong` and `lienthong-bootstrap` binaries, each node
//! in its own directory with its own ports, agency nodes driven through their HTTP API like
//! a DMS.
//!
//! Nothing here sleeps to synchronise: every wait re-checks a condition (a health answer,
//! an inbox page, a trace) until it holds or a deadline passes.

#![allow(
    clippy::indexing_slicing,
    reason = "test harness: a wrong node index is a bug in the test itself, and serde_json's \
              `Value` indexing yields Null instead of panicking"
)]

pub mod devnet;
pub mod keepalive;
pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lienthong_bootstrap::config::CentralLayout;
use lienthong_node::federation::{LocalFederation, NodeSpec, free_loopback_port};
use lienthong_protocol::agency::AgencyId;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};

/// How often a condition is re-checked while waiting for it.
pub const RECHECK: Duration = Duration::from_millis(50);

/// Why a harness step failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("building the binaries: {0}")]
    Build(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {after:?} waiting until {what}")]
    Timeout { what: String, after: Duration },
    #[error("{name} exited ({status}) before it was ready; the end of its log:\n{log}")]
    Exited {
        name: String,
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("{name} was not ready after {after:?}; the end of its log:\n{log}")]
    NotReady {
        name: String,
        after: Duration,
        log: String,
    },
    #[error("HTTP {method} {path}: {detail}")]
    Http {
        method: &'static str,
        path: String,
        detail: String,
    },
    #[error("generating the federation: {0}")]
    Federation(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The workspace's target directory for the profile this program was built with.
fn target_dir() -> PathBuf {
    // Test binaries live in <target>/<profile>/deps/, programs in <target>/<profile>/.
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let dir = exe.parent()?;
            Some(if dir.ends_with("deps") {
                dir.parent()?.to_path_buf()
            } else {
                dir.to_path_buf()
            })
        })
        .unwrap_or_else(|| PathBuf::from("target/debug"))
}

/// Path of a workspace binary (`lienthong` or `lienthong-bootstrap`), both built once per
/// run (a no-op when up to date).
pub fn binary(name: &str) -> Result<PathBuf, HarnessError> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let release = target_dir().ends_with("release");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // The whole workspace's binaries: features then resolve as for `scripts/setup`'s
        // workspace build, so this is a no-op after it (a `-p` build would unify features
        // differently and rebuild dependencies).
        cargo.args(["build", "--quiet", "--workspace", "--bins"]);
        if release {
            cargo.arg("--release");
        }
        cargo.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        // Built as a plain `cargo build` would, without what Cargo (or nextest) set for this
        // test or program: `ring`'s build script reruns when CARGO_MANIFEST_DIR changes, so
        // everything above ring (rustls, libp2p, reqwest, the nodes) was rebuilt inside the
        // first test of every run after any plain build (about 2 minutes of CPU; more than
        // the test's 5 under load), and again by the next plain build.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(set_by_cargo_for_a_package) {
                cargo.env_remove(key);
            }
        }
        match cargo.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("cargo build exited with {s}")),
            Err(e) => Err(e.to_string()),
        }
    });
    built.clone().map_err(HarnessError::Build)?;
    Ok(target_dir().join(name))
}

/// The last `n` lines of the file at `path`, or why they could not be read.
pub fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines
                .get(lines.len().saturating_sub(n)..)
                .unwrap_or_default();
            if tail.is_empty() {
                "(empty)".to_owned()
            } else {
                tail.join("\n")
            }
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// Whether Cargo sets the environment variable `key` for the package it builds or runs
/// (rather than to configure Cargo itself, like CARGO_TARGET_DIR or CARGO_BUILD_JOBS).
fn set_by_cargo_for_a_package(key: &str) -> bool {
    matches!(
        key,
        "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_CRATE_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_TARGET_TMPDIR"
            | "OUT_DIR"
    ) || key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_")
}

/// What a node process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `lienthong run`: an agency node with its HTTP API.
    Agency,
    /// `lienthong-bootstrap run`: a central node (ledger over HTTP, relay, custodian).
    Central,
}

impl Role {
    fn program(self) -> &'static str {
        match self {
            Self::Agency => "lienthong",
            Self::Central => "lienthong-bootstrap",
        }
    }

    /// A path that answers 200 once the node serves.
    fn ready_path(self) -> &'static str {
        match self {
            Self::Agency => "/v1/health/ready",
            Self::Central => "/checkpoint",
        }
    }
}

/// One node process.
#[derive(Debug)]
pub struct NodeProcess {
    /// Label (central nodes: the log's name).
    pub name: String,
    pub role: Role,
    /// The node's directory (config, keys, data, log).
    pub dir: PathBuf,
    /// `http://127.0.0.1:<port>`: the agency API, or the central node's ledger.
    pub api: String,
    /// Tenants hosted, with their bearer tokens.
    pub tenants: Vec<(AgencyId, String)>,
    /// The network namespace it runs in (partition tests), if any.
    pub netns: Option<String>,
    child: Option<Child>,
    starts: usize,
}

impl NodeProcess {
    /// Starts the process (its output goes to `<dir>/node.log`).
    pub fn start(&mut self) -> Result<(), HarnessError> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .map_err(io("opening node.log"))?;
        let err = log.try_clone().map_err(io("opening node.log"))?;
        let program = binary(self.role.program())?;
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                // `ip netns exec` execs the program: the child's pid is the node's.
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = command
            .args(["run", "--config"])
            .arg(self.dir.join("config.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(format!("spawning {} run", self.role.program())))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// Kills the process at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id while it runs (for reading `/proc/<pid>`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How the process ended, if it has ended (it is then reaped; [`Self::kill`] and
    /// [`Self::stop`] still do nothing harmful).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last `lines` lines of the node's log, or why they could not be read.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.dir.join("node.log"), lines)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// How many times it was started.
    pub fn starts(&self) -> usize {
        self.starts
    }

    /// The first tenant and its token.
    pub fn tenant(&self) -> (&AgencyId, &str) {
        self.tenant_at(0)
    }

    /// Tenant `i` and its token.
    pub fn tenant_at(&self, i: usize) -> (&AgencyId, &str) {
        let (id, token) = &self.tenants[i];
        (id, token.as_str())
    }

    /// Stops the process as an operator would (SIGTERM), waiting until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let terminated = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !terminated {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An agency node to generate: its label and its tenants (agency code, official name).
pub type AgencyNodeSpec<'a> = (&'a str, &'a [(&'a str, &'a str)]);

/// Relay timings for local federations: short custody and retry delays.
fn local_relay_timings() -> lienthong_node::config::RelaySection {
    lienthong_node::config::RelaySection {
        custody_after_ms: Some(1_000),
        retry_base_ms: Some(200),
        retry_max_ms: Some(5_000),
    }
}

/// A federation of node processes on loopback: central nodes and agency nodes.
///
/// On drop, every process is killed first (agency nodes, then central nodes); then the
/// network namespaces are removed and, last, the directory holding the nodes' data (the
/// fields below drop in declaration order, after [`Drop::drop`]).
#[derive(Debug)]
pub struct Federation {
    pub generated: LocalFederation,
    /// Agency nodes, in the order asked for.
    pub nodes: Vec<NodeProcess>,
    /// Central nodes (`central-a`, `central-b`, …).
    pub centrals: Vec<NodeProcess>,
    /// The central nodes' witness keys (vkeys), which auditors pass to `audit replay`.
    pub witness_keys: Vec<String>,
    http: reqwest::Client,
    /// Network namespaces (partition tests), removed after the processes are gone.
    pub netns: Option<netns::Netns>,
    /// Every node's directory: removed after the processes and the namespaces are gone.
    dir: tempfile::TempDir,
}

impl Drop for Federation {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().chain(self.centrals.iter_mut()) {
            node.kill();
        }
    }
}

impl Federation {
    /// Generates one agency node per entry of `tenants` (each a list of agency codes) and
    /// no central node, writes their directories, and starts none of them.
    pub fn generate(seed: u64, tenants: &[&[&str]]) -> Result<Self, HarnessError> {
        let names: Vec<String> = (0..tenants.len()).map(|i| format!("node-{i}")).collect();
        let officials: Vec<Vec<(&str, String)>> = tenants
            .iter()
            .map(|codes| codes.iter().map(|c| (*c, format!("Agency {c}"))).collect())
            .collect();
        let borrowed: Vec<Vec<(&str, &str)>> = officials
            .iter()
            .map(|t| t.iter().map(|(c, n)| (*c, n.as_str())).collect())
            .collect();
        let specs: Vec<AgencyNodeSpec<'_>> = names
            .iter()
            .zip(&borrowed)
            .map(|(name, t)| (name.as_str(), t.as_slice()))
            .collect();
        Self::generate_with(seed, 0, &specs)
    }

    /// Generates `central` central nodes (`central-a`, …, witnessing each other) and the
    /// agency nodes of `agencies`, signs the genesis roster 2 of 3, writes every node's
    /// directory as its operator would have it, and starts none of them.
    pub fn generate_with(
        seed: u64,
        central: usize,
        agencies: &[AgencyNodeSpec<'_>],
    ) -> Result<Self, HarnessError> {
        Self::generate_in(seed, central, agencies, None)
    }

    /// As [`Self::generate_with`], each node (central nodes first) in its own network
    /// namespace of `netns` when given.
    pub fn generate_in(
        seed: u64,
        central: usize,
        agencies: &[AgencyNodeSpec<'_>],
        netns: Option<netns::Netns>,
    ) -> Result<Self, HarnessError> {
        let host = |i: usize| {
            netns
                .as_ref()
                .map_or(std::net::Ipv4Addr::LOCALHOST, |n| n.host(i))
        };
        let dir = tempfile::tempdir().map_err(io("creating a temporary directory"))?;
        let fed_err = |e: String| HarnessError::Federation(e);
        let mut specs: Vec<NodeSpec> = (0..central)
            .map(|i| NodeSpec {
                name: format!(
                    "central-{}",
                    char::from(b'a' + u8::try_from(i % 26).unwrap_or(0))
                ),
                central: true,
                tenants: Vec::new(),
                port: free_loopback_port(),
                http_port: Some(free_loopback_port()),
                host: host(i),
            })
            .collect();
        for (name, tenants) in agencies {
            let index = specs.len();
            specs.push(NodeSpec {
                name: (*name).to_owned(),
                central: false,
                tenants: tenants
                    .iter()
                    .map(|(code, official)| {
                        AgencyId::parse(code)
                            .map(|id| (id, (*official).to_owned()))
                            .map_err(|e| fed_err(format!("{code}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
                port: free_loopback_port(),
                http_port: None,
                host: host(index),
            });
        }
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let generated = LocalFederation::generate("devnet", &specs, 3, 2, &mut rng)
            .map_err(|e| fed_err(e.to_string()))?;

        let mut witness_seeds = Vec::with_capacity(central);
        for _ in 0..central {
            let mut seed = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rng, &mut seed);
            witness_seeds.push(seed);
        }
        let layouts: Vec<CentralLayout<'_>> = generated
            .nodes
            .iter()
            .take(central)
            .zip(&witness_seeds)
            .map(|(node, witness_seed)| CentralLayout {
                federation: "devnet",
                name: &node.spec.name,
                log_seed: node.log_seed.as_ref().unwrap_or(witness_seed),
                witness_seed,
                transport_seed: &node.transport_seed,
                listen: std::net::SocketAddr::from((
                    node.spec.host,
                    node.spec.http_port.unwrap_or(0),
                )),
                p2p_listen: vec![node.addr.to_string()],
                peers: Vec::new(),
                relay: local_relay_timings(),
            })
            .collect();
        let peers: Vec<_> = layouts
            .iter()
            .map(CentralLayout::as_peer)
            .collect::<Result<_, _>>()
            .map_err(|e| fed_err(e.to_string()))?;
        let mut centrals = Vec::with_capacity(central);
        for (i, layout) in layouts.into_iter().enumerate() {
            let node_dir = dir.path().join(layout.name);
            let layout = CentralLayout {
                peers: peers
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| p.clone())
                    .collect(),
                ..layout
            };
            layout
                .write(&node_dir, &generated.genesis)
                .map_err(|e| fed_err(e.to_string()))?;
            centrals.push(NodeProcess {
                name: layout.name.to_owned(),
                role: Role::Central,
                dir: node_dir,
                api: format!("http://{}", layout.listen),
                tenants: Vec::new(),
                netns: netns.as_ref().map(|n| n.name(i)),
                child: None,
                starts: 0,
            });
        }

        let mut nodes = Vec::with_capacity(agencies.len());
        for i in central..specs.len() {
            let name = &generated.nodes[i].spec.name;
            let node_dir = dir.path().join(name);
            let port = free_loopback_port();
            let files = generated
                .write_node(i, &node_dir, port, &mut rng)
                .map_err(io(format!("writing node {name}")))?;
            nodes.push(NodeProcess {
                name: name.clone(),
                role: Role::Agency,
                dir: node_dir,
                api: format!("http://{}:{port}", host(i)),
                tenants: files.tokens,
                netns: netns.as_ref().map(|n| n.name(i)),
                child: None,
                starts: 0,
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| HarnessError::Federation(e.to_string()))?;
        Ok(Self {
            generated,
            nodes,
            centrals,
            witness_keys: peers.into_iter().map(|p| p.witness_key).collect(),
            http,
            netns,
            dir,
        })
    }

    /// The directory holding every node's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts central node `i` and waits until its ledger answers.
    pub async fn start_central(
        &mut self,
        i: usize,
        within: Duration,
    ) -> Result<Duration, HarnessError> {
        let started = Instant::now();
        self.centrals[i].start()?;
        wait_ready(&self.http, &mut self.centrals[i], within).await?;
        Ok(started.elapsed())
    }

    /// Starts agency node `i` and waits until its API answers ready.
    pub async fn start(&mut self, i: usize, within: Duration) -> Result<Duration, HarnessError> {
        let started = Instant::now();
        self.nodes[i].start()?;
        wait_ready(&self.http, &mut self.nodes[i], within).await?;
        Ok(started.elapsed())
    }

    /// Calls agency node `node`'s API with `token`: the HTTP status and the JSON answer
    /// (`Null` when the answer is not JSON).
    pub async fn call(
        &self,
        node: usize,
        method: &'static str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), HarnessError> {
        let url = format!("{}{path}", self.nodes[node].api);
        let request = match method {
            "POST" => self.http.post(&url),
            _ => self.http.get(&url),
        }
        .bearer_auth(token);
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(body.to_string()),
            None => request,
        };
        let err = |detail: String| HarnessError::Http {
            method,
            path: path.to_owned(),
            detail,
        };
        let response = request.send().await.map_err(|e| err(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| err(e.to_string()))?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Sends a document from node `from`'s first tenant to `to`; the content id once the
    /// sender's node has it durably.
    pub async fn send(
        &self,
        from: usize,
        to: &[AgencyId],
        subject: &str,
    ) -> Result<String, HarnessError> {
        let (status, answer) = self.try_send(from, 0, to, subject, None).await?;
        match answer["id"].as_str() {
            Some(id) if (200..300).contains(&status) => Ok(id.to_owned()),
            _ => Err(HarnessError::Http {
                method: "POST",
                path: "/v1/documents".into(),
                detail: format!("{status}: {answer}"),
            }),
        }
    }

    /// Sends a document with a PDF attachment from node `from`'s tenant `tenant` to `to`,
    /// answering the document `response_for` refers to (`{"document_id", "organ_id"}`) if
    /// given; the HTTP status and answer, whatever they are.
    pub async fn try_send(
        &self,
        from: usize,
        tenant: usize,
        to: &[AgencyId],
        subject: &str,
        response_for: Option<Value>,
    ) -> Result<(u16, Value), HarnessError> {
        let extra = response_for.map(|r| ("response_for", r));
        self.post_document(from, tenant, "/v1/documents", to, subject, extra)
            .await
    }

    /// Sends, as node `from`'s first tenant, a document that updates (`change` =
    /// `update`) or replaces (`replace`) the earlier document `id`, which was sent with the
    /// subject `original`; the HTTP status and answer.
    pub async fn change(
        &self,
        from: usize,
        change: &str,
        id: &str,
        original: &str,
        to: &[AgencyId],
        subject: &str,
    ) -> Result<(u16, Value), HarnessError> {
        let (sender, _) = self.nodes[from].tenant();
        let reference = json!({
            "document_id": format!("{sender},{original}"),
            "organ_id": sender.as_str(),
        });
        let path = format!("/v1/documents/{id}/{change}");
        self.post_document(
            from,
            0,
            &path,
            to,
            subject,
            Some(("business_ref", reference)),
        )
        .await
    }

    async fn post_document(
        &self,
        from: usize,
        tenant: usize,
        path: &str,
        to: &[AgencyId],
        subject: &str,
        header_field: Option<(&str, Value)>,
    ) -> Result<(u16, Value), HarnessError> {
        let (sender, token) = self.nodes[from].tenant_at(tenant);
        let org = |id: &AgencyId| json!({ "organ_id": id.as_str(), "organ_name": format!("Agency {id}") });
        let mut body = json!({
            "header": {
                "from": org(sender),
                "to": to.iter().map(org).collect::<Vec<_>>(),
                "document_id": format!("{sender},{subject}"),
                "code": { "number": "12", "notation": "QĐ-UBND" },
                "promulgation": { "place": "Hà Nội", "date": "2026-11-24" },
                "document_type": "1",
                "subject": subject,
                "signer": { "competence": "TM.", "position": "Chủ tịch", "full_name": "Nguyễn Văn A" }
            },
            "attachments": [{
                "name": "van-ban.pdf",
                "content_type": "application/pdf",
                "data": "JVBERi0xLjQKJcfsj6IK"
            }]
        });
        if let Some((field, value)) = header_field {
            body["header"][field] = value;
        }
        self.call(from, "POST", path, token, Some(body)).await
    }

    /// Every content id in node `node`'s first tenant's inbox, in order.
    pub async fn inbox(&self, node: usize) -> Result<Vec<String>, HarnessError> {
        let (tenant, token) = self.nodes[node].tenant();
        let mut ids = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let path = match after {
                Some(a) => format!("/v1/inbox?tenant={tenant}&limit=1000&after={a}"),
                None => format!("/v1/inbox?tenant={tenant}&limit=1000"),
            };
            let (status, page) = self.call(node, "GET", &path, token, None).await?;
            if status != 200 {
                return Err(HarnessError::Http {
                    method: "GET",
                    path,
                    detail: format!("{status}: {page}"),
                });
            }
            let entries = page["entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                return Ok(ids);
            }
            ids.extend(
                entries
                    .iter()
                    .filter(|e| e["kind"] != "status")
                    .filter_map(|e| e["id"].as_str().map(str::to_owned)),
            );
            match page["next"].as_u64() {
                Some(next) => after = Some(next),
                None => return Ok(ids),
            }
        }
    }

    /// Posts a status code on a received document as node `node`'s first tenant; the HTTP
    /// status and answer.
    pub async fn status(
        &self,
        node: usize,
        id: &str,
        code: &str,
    ) -> Result<(u16, Value), HarnessError> {
        let (_, token) = self.nodes[node].tenant();
        let mut body = json!({ "code": code });
        if code == "04" {
            body["assignee"] = json!("Chuyên viên Trần Thị B");
        }
        self.call(
            node,
            "POST",
            &format!("/v1/documents/{id}/status"),
            token,
            Some(body),
        )
        .await
    }

    /// The status codes recipient `recipient` reported on `id`, as the sender's node
    /// `node` traces them.
    pub async fn trace(
        &self,
        node: usize,
        id: &str,
        recipient: &AgencyId,
    ) -> Result<Vec<String>, HarnessError> {
        let (_, token) = self.nodes[node].tenant();
        let (status, trace) = self
            .call(
                node,
                "GET",
                &format!("/v1/documents/{id}/trace"),
                token,
                None,
            )
            .await?;
        if status != 200 {
            return Err(HarnessError::Http {
                method: "GET",
                path: format!("/v1/documents/{id}/trace"),
                detail: format!("{status}: {trace}"),
            });
        }
        Ok(trace["recipients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["recipient"] == recipient.as_str())
            .flat_map(|r| r["history"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["code"].as_str().map(str::to_owned))
            .collect())
    }
}

impl Federation {
    /// Central node `i`'s `GET /status` (JSON).
    pub async fn central_status(&self, i: usize) -> Result<Value, HarnessError> {
        let path = "/status";
        let err = |detail: String| HarnessError::Http {
            method: "GET",
            path: path.to_owned(),
            detail,
        };
        let response = self
            .http
            .get(format!("{}{path}", self.centrals[i].api))
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let bytes = response.bytes().await.map_err(|e| err(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))
    }

    /// Posts a signed roster epoch to central node `i` (`POST /roster`): the HTTP status
    /// and answer text.
    pub async fn publish_roster(
        &self,
        i: usize,
        signed: Vec<u8>,
    ) -> Result<(u16, String), HarnessError> {
        let err = |detail: String| HarnessError::Http {
            method: "POST",
            path: "/roster".to_owned(),
            detail,
        };
        let response = self
            .http
            .post(format!("{}/roster", self.centrals[i].api))
            .header("content-type", "application/cbor")
            .body(signed)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| err(e.to_string()))?;
        Ok((status, text))
    }

    /// The roster epoch agency node `i` has in force (from its readiness answer).
    pub async fn roster_epoch(&self, i: usize) -> Result<u64, HarnessError> {
        let (status, health) = self.call(i, "GET", "/v1/health/ready", "", None).await?;
        health["roster_epoch"]
            .as_u64()
            .filter(|_| status == 200)
            .ok_or_else(|| HarnessError::Http {
                method: "GET",
                path: "/v1/health/ready".into(),
                detail: format!("{status}: {health}"),
            })
    }
}

/// Lines of a node's log quoted when it fails to become ready.
const LOG_TAIL: usize = 20;

/// Waits until `node` answers ready, re-checking every [`RECHECK`], for at most `within`,
/// but fails at once if its process has exited: a node that fails at start-up is reported
/// as such, with the end of its log, not as one not ready at the deadline. (In a network
/// namespace even a missing binary shows only then: the process spawned is `ip netns
/// exec`, which starts and then fails to run the node.)
async fn wait_ready(
    http: &reqwest::Client,
    node: &mut NodeProcess,
    within: Duration,
) -> Result<(), HarnessError> {
    let url = format!("{}{}", node.api, node.role.ready_path());
    let what = format!("{} is ready", node.name);
    let waited = poll_until(&what, within, || {
        let exited = node.exit_status().map(|status| HarnessError::Exited {
            name: node.name.clone(),
            status,
            log: node.log_tail(LOG_TAIL),
        });
        let answer = http.get(&url).send();
        async move {
            match exited {
                Some(e) => Err(e),
                None => Ok(answer.await.is_ok_and(|r| r.status().is_success())),
            }
        }
    })
    .await;
    match waited {
        Err(HarnessError::Timeout { after, .. }) => Err(HarnessError::NotReady {
            name: node.name.clone(),
            after,
            log: node.log_tail(LOG_TAIL),
        }),
        other => other,
    }
}

/// Waits until `check` holds, re-checking every [`RECHECK`], for at most `within`.
pub async fn wait_until<F, Fut>(
    what: &str,
    within: Duration,
    mut check: F,
) -> Result<(), HarnessError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    poll_until(what, within, || {
        let holds = check();
        async move { Ok(holds.await) }
    })
    .await
}

/// As [`wait_until`], but `check` may also fail, which ends the wait at once with its error.
async fn poll_until<F, Fut>(what: &str, within: Duration, mut check: F) -> Result<(), HarnessError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, HarnessError>>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                after: within,
            });
        }
        tokio::time::sleep(RECHECK).await;
    }
}

/// The `p` quantile (0 to 1) of `sorted` latencies, by nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let i = ((last as f64) * p.clamp(0.0, 1.0)).round() as usize;
    sorted.get(i.min(last)).copied().unwrap_or_default()
}
