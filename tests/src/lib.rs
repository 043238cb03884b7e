//! Harness for lienthong's multi-process integration tests: building, spawning and
//! observing the real `lienthong` binary, each node in its own directory with its own
//! ports, driven through its HTTP API like a DMS.
//!
//! Nothing here sleeps to synchronise: every wait re-checks a condition (a health answer,
//! an inbox page, a trace) until it holds or a deadline passes.

#![allow(
    clippy::indexing_slicing,
    reason = "test harness: a wrong node index is a bug in the test itself, and serde_json's \
              `Value` indexing yields Null instead of panicking"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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

/// The workspace's target directory for the profile these tests were built with.
fn target_dir() -> PathBuf {
    // The test binary lives in <target>/<profile>/deps/.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/debug"))
}

/// Path of a workspace binary, built once per test run (a no-op when up to date).
pub fn binary(name: &str) -> Result<PathBuf, HarnessError> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let release = target_dir().ends_with("release");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args([
            "build",
            "--quiet",
            "-p",
            "lienthong-node",
            "--bin",
            "lienthong",
        ]);
        if release {
            cargo.arg("--release");
        }
        cargo.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        match cargo.status() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("cargo build exited with {s}")),
            Err(e) => Err(e.to_string()),
        }
    });
    built.clone().map_err(HarnessError::Build)?;
    Ok(target_dir().join(name))
}

/// One agency node process.
#[derive(Debug)]
pub struct NodeProcess {
    /// The node's directory (config, keys, data, log).
    pub dir: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub api: String,
    /// Tenants hosted, with their bearer tokens.
    pub tenants: Vec<(AgencyId, String)>,
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
        let child = Command::new(binary("lienthong")?)
            .args(["run", "--config"])
            .arg(self.dir.join("config.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io("spawning lienthong run"))?;
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
        let (id, token) = &self.tenants[0];
        (id, token.as_str())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A federation of agency node processes on loopback.
#[derive(Debug)]
pub struct Federation {
    _dir: tempfile::TempDir,
    pub generated: LocalFederation,
    pub nodes: Vec<NodeProcess>,
    http: reqwest::Client,
}

impl Federation {
    /// Generates one node per entry of `tenants` (each a list of agency codes), writes
    /// their directories, and starts none of them.
    pub fn generate(seed: u64, tenants: &[&[&str]]) -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir().map_err(io("creating a temporary directory"))?;
        let specs: Vec<NodeSpec> = tenants
            .iter()
            .enumerate()
            .map(|(i, codes)| {
                Ok(NodeSpec {
                    name: format!("node-{i}"),
                    central: false,
                    tenants: codes
                        .iter()
                        .map(|c| {
                            AgencyId::parse(c)
                                .map(|id| (id, format!("Agency {c}")))
                                .map_err(|e| HarnessError::Federation(format!("{c}: {e}")))
                        })
                        .collect::<Result<_, _>>()?,
                    port: free_loopback_port(),
                    http_port: None,
                })
            })
            .collect::<Result<_, HarnessError>>()?;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let generated = LocalFederation::generate("processes", &specs, 3, 2, &mut rng)
            .map_err(|e| HarnessError::Federation(e.to_string()))?;
        let mut nodes = Vec::with_capacity(specs.len());
        for i in 0..specs.len() {
            let node_dir = dir.path().join(format!("node-{i}"));
            let port = free_loopback_port();
            let files = generated
                .write_node(i, &node_dir, port, &mut rng)
                .map_err(io(format!("writing node {i}")))?;
            nodes.push(NodeProcess {
                dir: node_dir,
                api: format!("http://127.0.0.1:{port}"),
                tenants: files.tokens,
                child: None,
                starts: 0,
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| HarnessError::Federation(e.to_string()))?;
        Ok(Self {
            _dir: dir,
            generated,
            nodes,
            http,
        })
    }

    /// Starts node `i` and waits until its API answers ready.
    pub async fn start(&mut self, i: usize, within: Duration) -> Result<Duration, HarnessError> {
        let started = Instant::now();
        self.nodes[i].start()?;
        let url = format!("{}/v1/health/ready", self.nodes[i].api);
        let http = self.http.clone();
        wait_until(&format!("node {i} is ready"), within, || {
            let http = http.clone();
            let url = url.clone();
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await?;
        Ok(started.elapsed())
    }

    async fn call(
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
        let (sender, token) = self.nodes[from].tenant();
        let org = |id: &AgencyId| json!({ "organ_id": id.as_str(), "organ_name": format!("Agency {id}") });
        let body = json!({
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
        let (status, answer) = self
            .call(from, "POST", "/v1/documents", token, Some(body))
            .await?;
        match answer["id"].as_str() {
            Some(id) if (200..300).contains(&status) => Ok(id.to_owned()),
            _ => Err(HarnessError::Http {
                method: "POST",
                path: "/v1/documents".into(),
                detail: format!("{status}: {answer}"),
            }),
        }
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
    let deadline = Instant::now() + within;
    loop {
        if check().await {
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
