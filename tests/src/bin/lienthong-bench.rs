//! `lienthong-bench`: the benchmark driver behind `scripts/bench` (DESIGN §8, issue 10). It
//! runs each scenario against real release processes (agency nodes started by the harness,
//! a `nats-server` with JetStream for the baseline) or, for the ledger and the audit replay,
//! the library code paths the criterion benches use, and prints one `name: value` line per
//! figure. With `--out DIR` it also writes the figures, a markdown table and SVG plots there.

#![allow(
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    reason = "a benchmark driver: indices come from lengths checked just before, and printing \
              figures is its purpose"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use base64::Engine as _;
use clap::Parser;
use lienthong_protocol::agency::AgencyId;
use lienthong_tests::{Federation, keepalive, log_tail, percentile, wait_until};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::{Value, json};

/// Runs the benchmark scenarios and prints one `name: value` line per figure.
#[derive(Debug, Parser)]
#[command(name = "lienthong-bench", version, about)]
struct Cli {
    /// The reduced set (under 5 minutes after the build): shorter runs, 10 nodes only (and
    /// JetStream fan-out to 9 consumers), a catch-up of 10 k envelopes, 50 k ledger appends,
    /// a 100 k-entry audit replay.
    #[arg(long)]
    quick: bool,
    /// The `nats-server` binary (2.10 or later, for `sync_interval: always`).
    #[arg(long, env = "LIENTHONG_NATS_SERVER")]
    nats_server: PathBuf,
    /// Where to write `figures.txt`, `table.md` and the SVG plots.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these scenarios (comma-separated): crypto, ingest, e2e (with the wire bytes),
    /// fanout (JetStream), catchup, ledger, replay.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Repetitions of each ingest run (the median is reported).
    #[arg(long)]
    reps: Option<usize>,
    /// Seconds per ingest run.
    #[arg(long)]
    seconds: Option<f64>,
    /// Only these ingest points (comma-separated: 1k_c1, 1k_c64, 64k_c1, 64k_c64), e.g.
    /// while profiling one of them.
    #[arg(long, value_delimiter = ',')]
    points: Vec<String>,
    /// Catch-up with the harness's short relay timings (retries from 200 ms up to 5 s)
    /// instead of the production ones, for comparison.
    #[arg(long)]
    catchup_harness_timings: bool,
    /// Connections the JetStream client spreads its publishing tasks over.
    #[arg(long, default_value_t = 1)]
    nats_connections: usize,
    /// Only these node counts (comma-separated) for the 1 KiB end-to-end runs and the
    /// JetStream fan-out beside them (default: 10 with `--quick`, 10 and 50 otherwise).
    /// Given, the 64 KiB end-to-end run at 3 nodes is left out, e.g. `--only e2e,fanout
    /// --nodes 50` for the 50-node runs alone.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(2..))]
    nodes: Vec<u16>,
}

impl Cli {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

/// The figures printed so far, in order, and the scenarios that failed.
#[derive(Debug, Default)]
struct Figures {
    lines: Vec<(String, String)>,
    failed: Vec<String>,
}

impl Figures {
    fn put(&mut self, name: &str, value: impl std::fmt::Display) {
        let value = value.to_string();
        println!("{name}: {value}");
        self.lines.push((name.to_owned(), value));
    }

    fn num(&mut self, name: &str, value: f64, decimals: usize) {
        self.put(name, format!("{value:.decimals$}"));
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.lines
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse().ok())
    }

    /// A scenario's outcome: its value, or `None` after reporting the error (with its
    /// context chain, on one line) as a figure named `<scenario>_error`.
    fn outcome<T>(&mut self, scenario: &str, result: anyhow::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.put(&format!("{scenario}_error"), one_line(&e));
                self.failed.push(scenario.to_owned());
                None
            }
        }
    }

    /// The error a scenario failed with, if it did.
    fn error(&self, scenario: &str) -> Option<&str> {
        let name = format!("{scenario}_error");
        self.lines
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The 1-minute load average, as a figure named `load_<when>`.
    fn load(&mut self, when: &str) {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let one = load.split_whitespace().next().unwrap_or("?").to_owned();
        self.put(&format!("load_{when}"), one);
    }
}

/// An error with its context chain on one line (lines within it, such as a log's tail,
/// joined by ` ⏎ `).
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ⏎ ")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lienthong-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let mut figures = Figures::default();
    figures.put("mode", if cli.quick { "quick" } else { "full" });
    figures.put(
        "cpus",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    figures.load("start");
    // Each scenario stands alone: a failure is reported as a `<scenario>_error` figure and
    // the run goes on with the next one.
    let mut ingest = None;
    let mut latencies = Vec::new();
    if cli.wants("crypto") {
        let result = crypto(&mut figures).context("crypto costs");
        figures.outcome("crypto", result);
    }
    if cli.wants("ingest") {
        let result = ingest_scenario(cli, &mut figures)
            .await
            .context("ingest scenario");
        ingest = figures.outcome("ingest", result);
    }
    let counts: Vec<usize> = if !cli.nodes.is_empty() {
        cli.nodes.iter().map(|&n| usize::from(n)).collect()
    } else if cli.quick {
        vec![10]
    } else {
        vec![10, 50]
    };
    let seconds = if cli.quick { 5 } else { 15 };
    for &nodes in &counts {
        if cli.wants("e2e") {
            let spec = E2e {
                nodes,
                attachment: 1024,
                rate: 200,
                seconds,
                suffix: nodes.to_string(),
                wire: format!("wire_bytes_per_byte_1k_{nodes}"),
            };
            let result = e2e_scenario(&spec, &mut figures)
                .await
                .with_context(|| format!("end-to-end scenario at {nodes} nodes"));
            if let Some(lat) = figures.outcome(&format!("e2e_{nodes}"), result) {
                latencies.push((format!("lienthong, {nodes} node processes"), lat));
            }
        }
        // The anchor, right after the lienthong run of the same size.
        if cli.wants("fanout") {
            let result = fanout_scenario(cli, nodes - 1, seconds, &mut figures)
                .await
                .with_context(|| format!("JetStream fan-out to {} consumers", nodes - 1));
            if let Some(lat) = figures.outcome(&format!("fanout_{nodes}"), result) {
                latencies.push((format!("JetStream fan-out to {} consumers", nodes - 1), lat));
            }
        }
    }
    if cli.wants("e2e") && cli.nodes.is_empty() {
        // Large documents: the wire overhead where framing is amortised.
        let spec = E2e {
            nodes: 3,
            attachment: 65_536,
            rate: 100,
            seconds: 3,
            suffix: "64k_3".into(),
            wire: "wire_bytes_per_byte_64k".into(),
        };
        let result = e2e_scenario(&spec, &mut figures)
            .await
            .context("end-to-end scenario with 64 KiB documents");
        figures.outcome("e2e_64k_3", result);
    }
    if cli.wants("catchup") {
        let result = catchup_scenario(cli, &mut figures)
            .await
            .context("catch-up scenario");
        figures.outcome("catchup", result);
    }
    if cli.wants("ledger") {
        let result = ledger_scenario(cli, &mut figures)
            .await
            .context("ledger append scenario");
        figures.outcome("ledger", result);
    }
    if cli.wants("replay") {
        let result = replay_scenario(cli, &mut figures).context("audit replay scenario");
        figures.outcome("replay", result);
    }
    figures.load("end");
    let written = match &cli.out {
        Some(out) => write_outputs(out, &figures, ingest.as_deref(), &latencies)
            .with_context(|| format!("writing {}", out.display())),
        None => Ok(()),
    };
    if figures.failed.is_empty() {
        return written;
    }
    if let Err(e) = written {
        eprintln!("lienthong-bench: {e:#}");
    }
    bail!(
        "{} scenario(s) failed: {} (see the `<scenario>_error` lines)",
        figures.failed.len(),
        figures.failed.join(", ")
    )
}

// ---------------------------------------------------------------------------------------
// Crypto costs (what lienthong pays per document that JetStream does not).

fn crypto(figures: &mut Figures) -> anyhow::Result<()> {
    use lienthong_protocol::keys::{EncryptionSecret, SignatureDomain, SigningKey};
    use lienthong_protocol::seal::{SenderEpochs, seal};

    figures.load("crypto");
    let key = SigningKey::from_seed(&[3; 32]);
    let body = vec![5u8; 1333];
    let n = 2_000u32;
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(key.sign(SignatureDomain::Envelope, &body));
    }
    figures.num(
        "sign_us_1k",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(n),
        1,
    );
    let sender = AgencyId::parse("000.00.00.G22").context("agency id")?;
    let recipient = AgencyId::parse("000.00.00.H41").context("agency id")?;
    let recipients = vec![(
        recipient,
        EncryptionSecret::from_bytes(&[4; 32]).public_key(),
    )];
    let mut rng = rand_core::OsRng;
    for (name, size, n) in [
        ("seal_us_1k", 1024usize, 2_000u32),
        ("seal_us_64k", 65_536, 300),
    ] {
        // The node keeps its sender epochs: HPKE setup is paid once per epoch, not per send.
        let mut epochs = SenderEpochs::default();
        let plaintext = vec![6u8; size];
        seal(&plaintext, &sender, &recipients, &mut epochs, 0, &mut rng).context("seal")?;
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(
                seal(&plaintext, &sender, &recipients, &mut epochs, 0, &mut rng).context("seal")?,
            );
        }
        figures.num(
            name,
            started.elapsed().as_secs_f64() * 1e6 / f64::from(n),
            1,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Documents as a DMS posts them.

/// A `POST /v1/documents` JSON body with a hole for the DMS's document number, so each
/// request is unique (the API deduplicates by DocumentId) without re-encoding the
/// attachment.
#[derive(Debug, Clone)]
struct Template {
    head: String,
    tail: String,
}

impl Template {
    const HOLE: &'static str = "@@BENCH@@";

    fn new(from: &AgencyId, to: &AgencyId, attachment: usize, seed: u64) -> anyhow::Result<Self> {
        let mut data = vec![0u8; attachment];
        ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut data);
        let org = |id: &AgencyId| json!({ "organ_id": id.as_str(), "organ_name": format!("Agency {id}") });
        let body = json!({
            "header": {
                "from": org(from),
                "to": [org(to)],
                "document_id": format!("{from},{}", Self::HOLE),
                "code": { "number": "12", "notation": "QĐ-UBND" },
                "promulgation": { "place": "Hà Nội", "date": "2026-11-24" },
                "document_type": "1",
                "subject": "Văn bản đo hiệu năng",
                "signer": { "competence": "TM.", "position": "Chủ tịch", "full_name": "Nguyễn Văn A" }
            },
            "attachments": [{
                "name": "phu-luc.pdf",
                "content_type": "application/pdf",
                "data": base64::engine::general_purpose::STANDARD.encode(&data),
            }]
        })
        .to_string();
        let (head, tail) = body
            .split_once(Self::HOLE)
            .ok_or_else(|| anyhow!("template without its hole"))?;
        Ok(Self {
            head: head.to_owned(),
            tail: tail.to_owned(),
        })
    }

    fn fill(&self, number: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + number.len() + self.tail.len());
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(number.as_bytes());
        out.extend_from_slice(self.tail.as_bytes());
        out
    }
}

fn http_client(pool: usize) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

/// Posts one document; its content id.
async fn post_document(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: Vec<u8>,
) -> anyhow::Result<String> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .context("POST /v1/documents")?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.context("reading the answer")?;
    sent_id(status, &bytes)
}

/// The content id an answer to `POST /v1/documents` (status and body) gives, if it is a
/// success.
fn sent_id(status: u16, body: &[u8]) -> anyhow::Result<String> {
    ensure!(
        (200..300).contains(&status),
        "POST /v1/documents: {status}: {}",
        String::from_utf8_lossy(body)
    );
    let answer: Value = serde_json::from_slice(body)
        .with_context(|| format!("answer is not JSON: {}", String::from_utf8_lossy(body)))?;
    answer["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("answer without an id: {answer}"))
}

/// A node process's resident memory (`VmRSS`, or `VmHWM` for the peak) in MiB.
fn rss_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))?;
    Ok(kib / 1024.0)
}

/// CPU time (user + system) a process has used so far, in seconds (`/proc/<pid>/stat`,
/// clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat(&stat)
        .map(|(_, seconds)| seconds)
        .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))
}

/// The name and CPU time (user + system, seconds) in a `/proc/.../stat` line.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    // The name is in parentheses and may hold spaces and parentheses itself; the fields
    // after it start at the state (field 3).
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15: indices 11 and 12 from the state.
    Some((name, (ticks(11)? + ticks(12)?) / 100.0))
}

/// CPU time (user + system, seconds) each live thread of a process has used so far, by
/// thread id, with its name (`/proc/<pid>/task/<tid>/stat`).
fn thread_cpu_seconds(pid: u32) -> anyhow::Result<BTreeMap<u32, (String, f64)>> {
    let dir = format!("/proc/{pid}/task");
    let mut threads = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let entry = entry.with_context(|| format!("listing {dir}"))?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        // A thread that ended since the listing has nothing more to count.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(thread) = parse_stat(&stat) {
            threads.insert(tid, thread);
        }
    }
    Ok(threads)
}

/// What a node thread does, from its name: the async workers (HTTP API, libp2p, and the
/// blocking pool's decoding and sealing: tokio names both `tokio-rt-worker`), the relay
/// driver (relay core, signing), the store writer (RocksDB writes and fsyncs), RocksDB's
/// background flushes and compactions, and the rest.
fn thread_kind(name: &str) -> &'static str {
    match name {
        "tokio-rt-worker" => "workers",
        "relay-driver" => "relay",
        "store-writer" => "store",
        n if n.starts_with("rocksdb") => "rocksdb_bg",
        _ => "other",
    }
}

/// CPU per document (µs) by [`thread_kind`] between two [`thread_cpu_seconds`] snapshots; a
/// thread that started in between counts from zero, one that ended is left out.
fn per_kind(
    before: &BTreeMap<u32, (String, f64)>,
    after: &BTreeMap<u32, (String, f64)>,
    docs: f64,
) -> BTreeMap<&'static str, f64> {
    let mut kinds = BTreeMap::new();
    for (tid, (name, seconds)) in after {
        let start = before.get(tid).map_or(0.0, |(_, s)| *s);
        *kinds.entry(thread_kind(name)).or_insert(0.0) += (seconds - start) * 1e6 / docs;
    }
    kinds
}

// ---------------------------------------------------------------------------------------
// Ingest: lienthong's HTTP API against JetStream with fsync per message.

/// A `nats-server` with JetStream on file storage, fsync per message, in a temporary
/// directory; killed on drop.
struct NatsServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("url", &self.url)
            .finish()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NatsServer {
    async fn start(
        binary: &Path,
        connections: usize,
    ) -> anyhow::Result<(Self, Vec<async_nats::jetstream::Context>)> {
        let dir = tempfile::tempdir().context("creating the JetStream directory")?;
        let port = lienthong_node::federation::free_loopback_port();
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\nmax_payload: 8MB\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
            dir.path().join("js").display()
        );
        let conf = dir.path().join("nats.conf");
        std::fs::write(&conf, config).context("writing nats.conf")?;
        let log = std::fs::File::create(dir.path().join("nats.log")).context("nats.log")?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("nats.log")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let url = format!("nats://127.0.0.1:{port}");
        let server = Self {
            child,
            url,
            _dir: dir,
        };
        let probe = server.url.clone();
        wait_until(
            "nats-server accepts connections",
            Duration::from_secs(20),
            || {
                let probe = probe.clone();
                async move {
                    tokio::net::TcpStream::connect(probe.trim_start_matches("nats://"))
                        .await
                        .is_ok()
                }
            },
        )
        .await?;
        let mut contexts = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            let client = async_nats::connect(&server.url)
                .await
                .context("connecting to nats-server")?;
            contexts.push(async_nats::jetstream::new(client));
        }
        Ok((server, contexts))
    }
}

/// One timed run: documents acknowledged per second and the acknowledgement latencies.
#[derive(Debug, Clone, Default)]
struct Run {
    per_s: f64,
    lat: Vec<Duration>,
    /// CPU the node process used per acknowledged document, in µs (lienthong runs only).
    cpu_us: f64,
    /// CPU this process (the HTTP client) used per acknowledged document, in µs (lienthong
    /// runs only): with the node's, what one document costs the 2 cores.
    client_cpu_us: f64,
    /// The node's CPU per acknowledged document by thread kind ([`thread_kind`]), in µs
    /// (lienthong runs only): where the time goes, in every run.
    node_threads_us: BTreeMap<&'static str, f64>,
}

/// Runs `concurrency` loops of `op` for `seconds`; each loop gets its index and a counter.
async fn timed<F, Fut>(concurrency: usize, seconds: f64, op: F) -> anyhow::Result<Run>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..concurrency {
        let op = op.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                op(task, n).await?;
                lat.push(t.elapsed());
                n += 1;
            }
            anyhow::Ok(lat)
        });
    }
    let mut lat = Vec::new();
    while let Some(done) = tasks.join_next().await {
        lat.extend(done.context("an ingest task panicked")??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    Ok(Run {
        per_s: lat.len() as f64 / elapsed,
        lat,
        cpu_us: f64::NAN,
        client_cpu_us: f64::NAN,
        node_threads_us: BTreeMap::new(),
    })
}

/// The ingest figures of one payload size and concurrency.
#[derive(Debug, Clone)]
struct IngestPoint {
    size: usize,
    concurrency: usize,
    lienthong: f64,
    jetstream: f64,
}

fn size_label(size: usize) -> String {
    format!("{}k", size / 1024)
}

async fn ingest_scenario(cli: &Cli, figures: &mut Figures) -> anyhow::Result<Vec<IngestPoint>> {
    let reps = cli.reps.unwrap_or(if cli.quick { 3 } else { 5 });
    let seconds = cli.seconds.unwrap_or(if cli.quick { 2.0 } else { 5.0 });
    figures.load("ingest");
    let mut node = IngestNode::start().await?;
    // Idle: after start and a settling second with nothing to do.
    tokio::time::sleep(Duration::from_secs(1)).await;
    figures.num("idle_rss_mib", rss_mib(node.pid, "VmRSS")?, 1);

    let (_server, js) = NatsServer::start(&cli.nats_server, cli.nats_connections).await?;
    figures.put("nats_connections", js.len());
    figures.put("nats_server", nats_version(&cli.nats_server));

    let mut points = Vec::new();
    let mut serial = 0u64;
    let mut peak_rss: f64 = 0.0;
    let mut fresh = true;
    for size in [1024usize, 65_536] {
        for concurrency in [1usize, 64] {
            let label = format!("{}_c{concurrency}", size_label(size));
            if !cli.points.is_empty() && !cli.points.contains(&label) {
                continue;
            }
            // Each point on a fresh node: the outbox the points before left (the recipient
            // never runs) would reach the node's bound on pending deliveries (200 000).
            if !fresh {
                node.renew(&mut peak_rss).await?;
            }
            fresh = false;
            // Documents this node holds: near that bound sends are refused with 503, so a
            // node that has taken more than half of it is replaced before the next run (and
            // warmed up).
            let mut on_node = 0usize;
            let template = Arc::new(Template::new(&node.sender, &node.recipient, size, 1)?);
            let mut l_runs = Vec::new();
            let mut j_runs = Vec::new();
            // One warm-up of each (connections, caches, the JetStream stream's files).
            for rep in 0..=reps {
                let seconds = if rep == 0 { 0.5 } else { seconds };
                let order = if rep % 2 == 0 {
                    [true, false]
                } else {
                    [false, true]
                };
                for lienthong in order {
                    serial += 1;
                    let run = if lienthong {
                        if on_node > 100_000 {
                            node.renew(&mut peak_rss).await?;
                            let warm_up = node
                                .run(&template, concurrency, 0.5, format!("warm-{serial}"))
                                .await
                                .with_context(|| format!("lienthong ingest {label} (warm-up)"))?;
                            on_node = warm_up.lat.len();
                        }
                        let run = node
                            .run(&template, concurrency, seconds, format!("bench-{serial}"))
                            .await
                            .with_context(|| format!("lienthong ingest {label}"))?;
                        on_node += run.lat.len();
                        run
                    } else {
                        jetstream_run(&js, &template, concurrency, seconds, serial)
                            .await
                            .with_context(|| format!("JetStream ingest {label}"))?
                    };
                    if rep > 0 {
                        if lienthong { &mut l_runs } else { &mut j_runs }.push(run);
                    }
                }
            }
            let by_rate = |runs: &mut Vec<Run>| {
                runs.sort_by(|a, b| a.per_s.total_cmp(&b.per_s));
                runs[runs.len() / 2].clone()
            };
            let (l, j) = (by_rate(&mut l_runs), by_rate(&mut j_runs));
            figures.num(&format!("ingest_per_s_{label}"), l.per_s, 0);
            figures.num(
                &format!("ingest_p50_ms_{label}"),
                ms(percentile(&l.lat, 0.5)),
                2,
            );
            figures.num(
                &format!("ingest_p99_ms_{label}"),
                ms(percentile(&l.lat, 0.99)),
                2,
            );
            let median = |of: fn(&Run) -> f64| {
                let mut values: Vec<f64> = l_runs.iter().map(of).collect();
                values.sort_by(f64::total_cmp);
                values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
            };
            figures.num(
                &format!("ingest_node_cpu_us_per_doc_{label}"),
                median(|r| r.cpu_us),
                0,
            );
            figures.num(
                &format!("ingest_client_cpu_us_per_doc_{label}"),
                median(|r| r.client_cpu_us),
                0,
            );
            // The median run's (by rate) split: its threads' figures add up to its node CPU.
            let split = l
                .node_threads_us
                .iter()
                .map(|(kind, us)| format!("{kind} {us:.0}"))
                .collect::<Vec<_>>()
                .join(", ");
            figures.put(&format!("ingest_node_cpu_us_by_thread_{label}"), split);
            figures.num(&format!("jetstream_fsync_per_s_{label}"), j.per_s, 0);
            figures.num(
                &format!("jetstream_p99_ms_{label}"),
                ms(percentile(&j.lat, 0.99)),
                2,
            );
            figures.num(
                &format!("ingest_vs_jetstream_{label}"),
                l.per_s / j.per_s,
                2,
            );
            figures.put(
                &format!("ingest_runs_{label}"),
                format!(
                    "lienthong {:?} jetstream {:?}",
                    l_runs.iter().map(|r| r.per_s.round()).collect::<Vec<_>>(),
                    j_runs.iter().map(|r| r.per_s.round()).collect::<Vec<_>>()
                ),
            );
            figures.load(&format!("after_ingest_{label}"));
            points.push(IngestPoint {
                size,
                concurrency,
                lienthong: l.per_s,
                jetstream: j.per_s,
            });
        }
    }
    peak_rss = peak_rss.max(rss_mib(node.pid, "VmHWM")?);
    figures.num("loaded_rss_peak_mib", peak_rss, 1);
    // The headline: 1 KiB documents, 64 in flight (DESIGN §8).
    for (headline, name) in [
        ("ingest_per_s", "ingest_per_s_1k_c64"),
        ("ingest_p99_ms", "ingest_p99_ms_1k_c64"),
        ("jetstream_fsync_per_s", "jetstream_fsync_per_s_1k_c64"),
        ("ingest_vs_jetstream", "ingest_vs_jetstream_1k_c64"),
    ] {
        let Some(value) = figures.get(name) else {
            continue;
        };
        let decimals = if headline.ends_with("per_s") { 0 } else { 2 };
        figures.num(headline, value, decimals);
    }
    Ok(points)
}

/// The node the ingest scenario posts to: a federation of two agency nodes of which only
/// the sender's runs, so the recipient's delivery work does not share the CPU with either
/// system's run (the sender's outbox keeps its documents).
struct IngestNode {
    /// Kills the node when dropped.
    _fed: Federation,
    pid: u32,
    url: String,
    token: String,
    sender: AgencyId,
    recipient: AgencyId,
}

impl IngestNode {
    async fn start() -> anyhow::Result<Self> {
        let mut fed = Federation::generate(10, &[&["000.00.00.G22"], &["000.00.00.H41"]])
            .context("generating the federation")?;
        production_relay_timings(&fed.nodes[0].dir.join("config.toml"))?;
        fed.start(0, Duration::from_secs(60))
            .await
            .context("starting the node")?;
        let pid = fed.nodes[0]
            .pid()
            .ok_or_else(|| anyhow!("node without a pid"))?;
        let (sender, token) = fed.nodes[0].tenant();
        let (sender, token) = (sender.clone(), token.to_owned());
        let recipient = fed.nodes[1].tenant().0.clone();
        let url = format!("{}/v1/documents", fed.nodes[0].api);
        Ok(Self {
            _fed: fed,
            pid,
            url,
            token,
            sender,
            recipient,
        })
    }
}

impl IngestNode {
    /// Replaces this node with a fresh one, first taking its peak RSS into `peak`.
    async fn renew(&mut self, peak: &mut f64) -> anyhow::Result<()> {
        *peak = peak.max(rss_mib(self.pid, "VmHWM")?);
        *self = Self::start().await?;
        Ok(())
    }

    /// Posts documents made from `template` (ids `<tag>-<task>-<n>`) for `seconds`, with
    /// `concurrency` in flight, each task on its own keep-alive connection (opened before
    /// the clock starts); with the node's and this process's (the client's) CPU per
    /// acknowledged document.
    async fn run(
        &self,
        template: &Arc<Template>,
        concurrency: usize,
        seconds: f64,
        tag: String,
    ) -> anyhow::Result<Run> {
        let authorization = format!("Bearer {}", self.token);
        let headers = [
            ("authorization", authorization.as_str()),
            ("content-type", "application/json"),
        ];
        let mut connections = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            let connection = keepalive::Connection::open(&self.url, &headers).await?;
            connections.push(tokio::sync::Mutex::new(connection));
        }
        let (connections, template) = (Arc::new(connections), Arc::clone(template));
        let cpu_before = cpu_seconds(self.pid)?;
        let threads_before = thread_cpu_seconds(self.pid)?;
        let client_before = cpu_seconds(std::process::id())?;
        let mut run = timed(concurrency, seconds, move |task, n| {
            let body = template.fill(&format!("{tag}-{task}-{n}"));
            let connections = Arc::clone(&connections);
            async move {
                let mut connection = connections
                    .get(task)
                    .ok_or_else(|| anyhow!("no connection for task {task}"))?
                    .lock()
                    .await;
                acknowledged(&connection.post(&body).await?)
            }
        })
        .await?;
        // Every acknowledged document (the run's wall time exceeds `seconds`).
        let docs = (run.lat.len() as f64).max(1.0);
        run.cpu_us = (cpu_seconds(self.pid)? - cpu_before) * 1e6 / docs;
        run.client_cpu_us = (cpu_seconds(std::process::id())? - client_before) * 1e6 / docs;
        run.node_threads_us = per_kind(&threads_before, &thread_cpu_seconds(self.pid)?, docs);
        Ok(run)
    }
}

/// Checks that an answer to `POST /v1/documents` acknowledged the document: 202 (durable
/// in the outbox) with its content id.
fn acknowledged(answer: &keepalive::Answer) -> anyhow::Result<()> {
    let id = sent_id(answer.status, &answer.body)?;
    ensure!(
        answer.status == 202 && !id.is_empty(),
        "POST /v1/documents answered {} with id {id:?}, not a new durable send",
        answer.status
    );
    Ok(())
}

/// Puts the relay's production timings (node/src/config.rs: custody after 5 s, retries from
/// 1 s backing off to 10 min) in a generated node's config instead of the harness's short
/// ones (200 ms to 5 s), so retries toward a recipient that is not running (ingest,
/// catch-up) stay at the rate a deployment would see.
fn production_relay_timings(config: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut changed = 0;
    let text: String = text
        .lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or_default().trim();
            let value = match key {
                "custody_after_ms" => Some(5_000),
                "retry_base_ms" => Some(1_000),
                "retry_max_ms" => Some(600_000),
                _ => None,
            };
            match value {
                Some(v) => {
                    changed += 1;
                    format!("{key} = {v}\n")
                }
                None => format!("{line}\n"),
            }
        })
        .collect();
    ensure!(
        changed == 3,
        "{}: relay timings not found",
        config.display()
    );
    std::fs::write(config, text).with_context(|| format!("writing {}", config.display()))
}

fn nats_version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().replace(' ', "-"))
        .unwrap_or_else(|| "unknown".into())
}

/// Publishes the same JSON documents to a fresh file-backed stream, each publish waiting
/// for its acknowledgement (the stream's fsync), from `concurrency` tasks.
async fn jetstream_run(
    contexts: &[async_nats::jetstream::Context],
    template: &Arc<Template>,
    concurrency: usize,
    seconds: f64,
    serial: u64,
) -> anyhow::Result<Run> {
    use async_nats::jetstream::stream::{Config, StorageType};
    let name = format!("BENCH{serial}");
    let subject = format!("bench.{serial}");
    let js = contexts
        .first()
        .ok_or_else(|| anyhow!("no JetStream connection"))?;
    js.create_stream(Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        storage: StorageType::File,
        ..Config::default()
    })
    .await
    .map_err(|e| anyhow!("creating stream {name}: {e}"))?;
    let run = {
        let (contexts, template, subject) = (contexts.to_vec(), template.clone(), subject.clone());
        timed(concurrency, seconds, move |task, n| {
            let payload = template.fill(&format!("bench-{serial}-{task}-{n}"));
            let (js, subject) = (contexts[task % contexts.len()].clone(), subject.clone());
            async move {
                js.publish(subject, payload.into())
                    .await
                    .map_err(|e| anyhow!("publish: {e}"))?
                    .await
                    .map_err(|e| anyhow!("ack: {e}"))?;
                Ok(())
            }
        })
        .await?
    };
    js.delete_stream(&name)
        .await
        .map_err(|e| anyhow!("deleting stream {name}: {e}"))?;
    Ok(run)
}

// ---------------------------------------------------------------------------------------
// End to end: send → recipient DMS across node processes.

/// One end-to-end run: its shape and the names of its figures.
#[derive(Debug, Clone)]
struct E2e {
    nodes: usize,
    /// Attachment bytes per document.
    attachment: usize,
    /// Documents per second, all nodes together.
    rate: u64,
    seconds: u64,
    /// Suffix of the run's figures (`e2e_p99_ms_<suffix>`).
    suffix: String,
    /// Name of its wire figure (bytes sent by every node's transport per attachment byte
    /// delivered).
    wire: String,
}

/// Send → recipient DMS across node processes (one tenant each, no central node), and the
/// bytes on the wire per delivered byte. The driver follows every inbox over server-sent
/// events, sends one warm-up document per node, then posts documents between random pairs
/// at `rate` for `seconds`; latency runs from a send's scheduled time to the recipient's
/// event. Wire bytes: what every connection between the nodes' libp2p ports sent (see
/// [`tcp_sent`]: Noise and Yamux framing included) from after the warm-up until every
/// delivery is confirmed (pushes, acknowledgements, gossip and pings; no ledger traffic, as
/// there is no central node), divided by the attachment bytes delivered (one recipient per
/// document). A 2 s window with nothing sent before the timed part gives the background rate.
async fn e2e_scenario(spec: &E2e, figures: &mut Figures) -> anyhow::Result<Vec<Duration>> {
    let E2e {
        nodes,
        attachment,
        rate,
        seconds,
        ref suffix,
        ref wire,
    } = *spec;
    ensure!(nodes >= 2, "an end-to-end run needs two nodes");
    figures.load(&format!("e2e_{suffix}"));
    let codes: Vec<String> = (0..nodes)
        .map(|i| format!("000.00.00.H{:02}", 10 + i))
        .collect();
    let tenants: Vec<[&str; 1]> = codes.iter().map(|c| [c.as_str()]).collect();
    let specs: Vec<&[&str]> = tenants.iter().map(|t| t.as_slice()).collect();
    let mut fed = Federation::generate(20 + nodes as u64, &specs).context("generating")?;
    let waves = start_in_waves(&mut fed).await?;
    figures.num(
        &format!("e2e_startup_s_{suffix}"),
        waves.iter().map(Duration::as_secs_f64).sum::<f64>(),
        1,
    );
    if waves.len() > 1 {
        let each: Vec<String> = waves
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64()))
            .collect();
        figures.put(
            &format!("e2e_startup_waves_s_{suffix}"),
            format!("{} (waves of {START_WAVE})", each.join(", ")),
        );
    }
    let p2p_ports: HashSet<u16> = fed.generated.nodes.iter().map(|n| n.spec.port).collect();
    let client = http_client(64)?;
    // Follow every node's inbox (server-sent events): when each document arrives.
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut streams = tokio::task::JoinSet::new();
    for node in &fed.nodes {
        let (tenant, token) = node.tenant();
        let response = open_inbox_stream(&node.api, tenant, token).await?;
        streams.spawn(follow(response, arrived.clone()));
    }
    // Templates per (from, to) pair, built on demand.
    let mut templates: HashMap<(usize, usize), Arc<Template>> = HashMap::new();
    let mut template = |from: usize, to: usize, seed: u64| -> anyhow::Result<Arc<Template>> {
        if let Some(t) = templates.get(&(from, to)) {
            return Ok(t.clone());
        }
        let t = Arc::new(Template::new(
            fed.nodes[from].tenant().0,
            fed.nodes[to].tenant().0,
            attachment,
            seed,
        )?);
        templates.insert((from, to), t.clone());
        Ok(t)
    };
    let senders: Vec<(String, String)> = fed
        .nodes
        .iter()
        .map(|n| (format!("{}/v1/documents", n.api), n.tenant().1.to_owned()))
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    // Warm-up: each node sends one document to the next, delivered before the clock starts.
    let mut warm = Vec::new();
    for (i, (url, token)) in senders.iter().enumerate() {
        let body = template(i, (i + 1) % nodes, i as u64)?.fill(&format!("warm-{i}"));
        warm.push(
            post_document(&client, url, token, body)
                .await
                .context("warm-up send")?,
        );
    }
    let seen = arrived.clone();
    wait_until(
        "the warm-up documents arrive",
        Duration::from_secs(120),
        || {
            let done = warm.iter().all(|id| {
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .contains_key(id)
            });
            async move { done }
        },
    )
    .await?;
    wait_settled(&fed).await?;
    // The wire bytes need `ss` (iproute2); without it the run goes on without them.
    let wire_start = match tcp_sent(&p2p_ports) {
        Ok(idle_from) => {
            // A measurement window, not a wait for a condition: what the transports send
            // with no document moving (gossip heartbeats, pings), the background.
            let idle_start = Instant::now();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let before = tcp_sent(&p2p_ports)?;
            let idle_per_s =
                wire_delta(&idle_from, &before).0 as f64 / idle_start.elapsed().as_secs_f64();
            Some((before, Instant::now(), idle_per_s))
        }
        Err(e) => {
            figures.put(wire, format!("unavailable: {e:#}"));
            None
        }
    };

    let total = rate * seconds;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..total {
        interval.tick().await;
        let scheduled = Instant::now();
        let from = usize::try_from(rng.next_u32())? % nodes;
        let to = (from + 1 + usize::try_from(rng.next_u32())? % (nodes - 1)) % nodes;
        let template = template(from, to, n)?;
        let (url, token) = &senders[from];
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        let permit = in_flight.clone().acquire_owned().await?;
        sends.spawn(async move {
            let id = post_document(&client, &url, &token, template.fill(&format!("e2e-{n}"))).await;
            drop(permit);
            id.map(|id| (id, scheduled))
        });
    }
    let mut scheduled = HashMap::new();
    while let Some(done) = sends.join_next().await {
        let (id, at) = done.context("a send task panicked")??;
        scheduled.insert(id, at);
    }
    let seen = arrived.clone();
    let ids: Vec<String> = scheduled.keys().cloned().collect();
    let all_arrived = wait_until("every document arrives", Duration::from_secs(120), || {
        let done = {
            let seen = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            ids.iter().all(|id| seen.contains_key(id))
        };
        async move { done }
    })
    .await;
    streams.abort_all();
    // The senders' deliveries confirmed (the recipients' acknowledgements sent) before the
    // bytes are read again, so each delivery's whole exchange is counted.
    let settled = wait_settled(&fed).await;
    let wire_end = match wire_start {
        Some((before, from, idle_per_s)) => Some((
            before,
            tcp_sent(&p2p_ports)?,
            from.elapsed().as_secs_f64(),
            idle_per_s,
        )),
        None => None,
    };
    let lat: Vec<Duration> = {
        let seen = arrived
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut lat: Vec<Duration> = scheduled
            .iter()
            .filter_map(|(id, at)| seen.get(id).map(|t| t.saturating_duration_since(*at)))
            .collect();
        lat.sort_unstable();
        lat
    };
    figures.put(
        &format!("e2e_delivered_{suffix}"),
        format!("{}/{}", lat.len(), scheduled.len()),
    );
    figures.num(
        &format!("e2e_p50_ms_{suffix}"),
        ms(percentile(&lat, 0.5)),
        2,
    );
    figures.num(
        &format!("e2e_p99_ms_{suffix}"),
        ms(percentile(&lat, 0.99)),
        2,
    );
    figures.num(
        &format!("e2e_max_ms_{suffix}"),
        ms(lat.last().copied().unwrap_or_default()),
        2,
    );
    if let Some((before, after, counted, idle_per_s)) = wire_end {
        let (sent, closed) = wire_delta(&before, &after);
        let delivered = (lat.len() * attachment) as f64;
        figures.num(wire, sent as f64 / delivered.max(1.0), 2);
        figures.num(&format!("wire_idle_bytes_per_s_{suffix}"), idle_per_s, 0);
        figures.put(
            &format!("{wire}_detail"),
            format!(
                "{sent} B sent over {} connections ({closed} closed during the run) in \
                 {counted:.1} s for {} documents of {attachment} B, of which about {:.0} B \
                 background at the idle rate",
                after.len(),
                lat.len(),
                idle_per_s * counted
            ),
        );
    }
    let rss: Vec<f64> = fed
        .nodes
        .iter()
        .filter_map(|n| n.pid().and_then(|p| rss_mib(p, "VmHWM").ok()))
        .collect();
    figures.num(
        &format!("e2e_rss_peak_mib_{suffix}"),
        rss.iter().copied().fold(0.0, f64::max),
        1,
    );
    all_arrived?;
    settled?;
    Ok(lat)
}

/// Node processes started together: on 2 cores, 50 nodes starting at once (each opening
/// its store and dialling its peers) left some not ready after two minutes.
const START_WAVE: usize = 10;

/// How long one wave of [`START_WAVE`] nodes may take to be ready.
const WAVE_TIMEOUT: Duration = Duration::from_secs(180);

/// Starts the federation's agency nodes [`START_WAVE`] at a time, each wave ready before
/// the next starts; how long each wave took. A node that exits or is not ready within
/// [`WAVE_TIMEOUT`] fails it, with the tail of that node's log.
async fn start_in_waves(fed: &mut Federation) -> anyhow::Result<Vec<Duration>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("readiness client")?;
    // The harness builds the binaries on the first start (a no-op when up to date): done
    // here, so no wave's clock counts a build.
    lienthong_tests::binary("lienthong").context("building the node binary")?;
    let mut waves = Vec::new();
    let all: Vec<usize> = (0..fed.nodes.len()).collect();
    for wave in all.chunks(START_WAVE) {
        let started = Instant::now();
        let deadline = started + WAVE_TIMEOUT;
        for &i in wave {
            let node = fed.nodes.get_mut(i).ok_or_else(|| anyhow!("no node {i}"))?;
            node.start()
                .with_context(|| format!("starting node {i} ({})", node.name))?;
        }
        for &i in wave {
            let node = fed.nodes.get(i).ok_or_else(|| anyhow!("no node {i}"))?;
            wait_node_ready(&client, node, deadline)
                .await
                .with_context(|| {
                    format!(
                        "node {i} of {} (wave of nodes {}–{}, started {:.1} s before)",
                        fed.nodes.len(),
                        wave.first().copied().unwrap_or_default(),
                        wave.last().copied().unwrap_or_default(),
                        started.elapsed().as_secs_f64()
                    )
                })?;
        }
        waves.push(started.elapsed());
    }
    Ok(waves)
}

/// Waits until `node` answers ready, failing at once if its process has exited and at
/// `deadline` if it is still not ready; the error ends with the tail of the node's log.
async fn wait_node_ready(
    client: &reqwest::Client,
    node: &lienthong_tests::NodeProcess,
    deadline: Instant,
) -> anyhow::Result<()> {
    let pid = node
        .pid()
        .ok_or_else(|| anyhow!("{} is not running", node.name))?;
    let url = format!("{}/v1/health/ready", node.api);
    let why = loop {
        let last = match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => format!("ready answered {}", r.status()),
            Err(e) => format!("ready: {e}"),
        };
        if exited(pid) {
            break format!("{} (pid {pid}) exited before it was ready", node.name);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break format!(
                "{} not ready within the wave's {} s (last: {last})",
                node.name,
                WAVE_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(lienthong_tests::RECHECK.min(left)).await;
    };
    let log = node.dir.join("node.log");
    bail!(
        "{why}; the last lines of {}:\n{}",
        log.display(),
        log_tail(&log, 10)
    )
}

/// Whether process `pid` has exited (gone, or a zombie not yet reaped).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

/// Opens agency `tenant`'s inbox event stream (`GET /v1/inbox/stream`) on the node at
/// `api`; the stream starts at the inbox's end.
async fn open_inbox_stream(
    api: &str,
    tenant: &AgencyId,
    token: &str,
) -> anyhow::Result<reqwest::Response> {
    let stream_client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("SSE client")?;
    let response = stream_client
        .get(format!("{api}/v1/inbox/stream?tenant={tenant}"))
        .bearer_auth(token)
        .send()
        .await
        .context("opening the inbox stream")?;
    ensure!(
        response.status().is_success(),
        "inbox stream: {}",
        response.status()
    );
    Ok(response)
}

/// Waits until no node has deliveries waiting for their recipient's confirmation
/// (`pending_deliveries` of `GET /v1/health/ready`).
async fn wait_settled(fed: &Federation) -> anyhow::Result<()> {
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("health client")?;
    let urls: Vec<String> = fed
        .nodes
        .iter()
        .map(|n| format!("{}/v1/health/ready", n.api))
        .collect();
    wait_until(
        "every delivery is confirmed",
        Duration::from_secs(60),
        || {
            let (probe, urls) = (probe.clone(), urls.clone());
            async move {
                for url in &urls {
                    let pending = match probe.get(url).send().await {
                        Ok(r) => r
                            .bytes()
                            .await
                            .ok()
                            .and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
                        Err(_) => None,
                    }
                    .and_then(|h| h["pending_deliveries"].as_u64());
                    if pending != Some(0) {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await?;
    Ok(())
}

/// A TCP connection: its local and peer addresses as `ss` prints them.
type Socket = (String, String);

/// What each established TCP connection with an end on one of `ports` (the nodes' libp2p
/// listening ports) has sent so far: the kernel's `tcp_info.bytes_sent`, read with `ss`
/// (iproute2). That is everything the libp2p transport writes: multistream-select, the
/// Noise handshake and frames (length and tag), Yamux headers and the protocols' bytes.
/// libp2p's own bandwidth counters count only the bytes of the streams, and the nodes do
/// not serve them on `/metrics`.
fn tcp_sent(ports: &HashSet<u16>) -> anyhow::Result<HashMap<Socket, u64>> {
    let out = Command::new("ss")
        .args(["-tinH", "state", "established"])
        .output()
        .context("running ss (iproute2)")?;
    ensure!(
        out.status.success(),
        "ss: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let port_of = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
    };
    let mut sockets = HashMap::new();
    let mut current: Option<Socket> = None;
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            // The details of the socket on the line before.
            let Some(socket) = current.take() else {
                continue;
            };
            let sent = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix("bytes_sent:"))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            sockets.insert(socket, sent);
        } else {
            // Recv-Q, Send-Q, local address, peer address.
            let fields: Vec<&str> = line.split_whitespace().collect();
            current = match fields.as_slice() {
                [_, _, local, peer, ..]
                    if [local, peer]
                        .iter()
                        .any(|a| port_of(a).is_some_and(|p| ports.contains(&p))) =>
                {
                    Some(((*local).to_owned(), (*peer).to_owned()))
                }
                _ => None,
            };
        }
    }
    Ok(sockets)
}

/// Bytes sent between two readings of [`tcp_sent`], and how many connections of the first
/// closed in between (their bytes after the first reading are not counted).
fn wire_delta(before: &HashMap<Socket, u64>, after: &HashMap<Socket, u64>) -> (u64, usize) {
    let sent = after
        .iter()
        .map(|(s, n)| n.saturating_sub(before.get(s).copied().unwrap_or(0)))
        .sum();
    let closed = before.keys().filter(|s| !after.contains_key(*s)).count();
    (sent, closed)
}

/// Reads a server-sent event stream of inbox entries, recording when each document
/// arrives.
async fn follow(
    mut response: reqwest::Response,
    arrived: Arc<Mutex<HashMap<String, Instant>>>,
) -> anyhow::Result<()> {
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await.context("reading the inbox stream")? {
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let entry: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
            if entry["kind"] != "status"
                && let Some(id) = entry["id"].as_str()
            {
                arrived
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(id.to_owned())
                    .or_insert(now);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// JetStream fan-out: the anchor of the end-to-end latency.

/// What one consumer received: (message number, when).
type Received = Arc<Mutex<Vec<(u64, Instant)>>>;

/// The anchor of the end-to-end latency: JetStream fan-out to `consumers` durable consumers
/// (the other nodes of an e2e run of `consumers + 1`). A nats-server with `sync_interval:
/// always` (fsync per message), a file-backed stream, one publisher at 200 messages/s of
/// 1 KiB documents (the e2e's JSON bodies) for the e2e's seconds, each publish's
/// acknowledgement awaited in its own task; `consumers` durable pull consumers
/// (`AckPolicy::Explicit`), each on its own connection, acknowledging every message. The
/// latency of every (message, consumer) pair, from the publish's scheduled time to the
/// consumer's receipt, in the driver process as the e2e's.
async fn fanout_scenario(
    cli: &Cli,
    consumers: usize,
    seconds: u64,
    figures: &mut Figures,
) -> anyhow::Result<Vec<Duration>> {
    use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
    use async_nats::jetstream::stream::{Config, StorageType};
    use futures::StreamExt as _;

    const HEADER: &str = "Bench-N";
    const WARM: u64 = u64::MAX;
    let rate = 200u64;
    let label = consumers + 1;
    figures.load(&format!("fanout_{label}"));
    let (server, js) = NatsServer::start(&cli.nats_server, 1).await?;
    let js = js
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no JetStream connection"))?;
    let (name, subject) = ("FANOUT", "fanout.documents");
    let stream = js
        .create_stream(Config {
            name: name.into(),
            subjects: vec![subject.into()],
            storage: StorageType::File,
            ..Config::default()
        })
        .await
        .map_err(|e| anyhow!("creating stream {name}: {e}"))?;
    let received: Vec<Received> = (0..consumers).map(|_| Arc::default()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, got) in received.iter().enumerate() {
        let client = async_nats::connect(&server.url)
            .await
            .context("connecting a consumer")?;
        let consumer: PullConsumer = async_nats::jetstream::new(client)
            .get_stream(name)
            .await
            .map_err(|e| anyhow!("stream {name}: {e}"))?
            .create_consumer(pull::Config {
                durable_name: Some(format!("node{c}")),
                ack_policy: AckPolicy::Explicit,
                ..pull::Config::default()
            })
            .await
            .map_err(|e| anyhow!("creating consumer {c}: {e}"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| anyhow!("consumer {c}'s messages: {e}"))?;
        let got = got.clone();
        tasks.spawn(async move {
            while let Some(message) = messages.next().await {
                let now = Instant::now();
                let message = message.map_err(|e| anyhow!("consumer {c}: {e}"))?;
                let n = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(HEADER))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .ok_or_else(|| anyhow!("a message without its number"))?;
                message.ack().await.map_err(|e| anyhow!("ack: {e}"))?;
                got.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((n, now));
            }
            anyhow::Ok(())
        });
    }
    drop(stream);
    let template = Template::new(
        &AgencyId::parse("000.00.00.H10").context("agency id")?,
        &AgencyId::parse("000.00.00.H11").context("agency id")?,
        1024,
        1,
    )?;
    let publish = |n: u64| {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HEADER, n.to_string().as_str());
        let js = js.clone();
        let payload = template.fill(&format!("fanout-{n}"));
        async move {
            js.publish_with_headers(subject, headers, payload.into())
                .await
                .map_err(|e| anyhow!("publish: {e}"))
        }
    };
    // Warm-up: one message every consumer has received before the clock starts.
    publish(WARM)
        .await?
        .await
        .map_err(|e| anyhow!("publish ack: {e}"))?;
    let count = |received: &[Received]| -> usize {
        received
            .iter()
            .map(|r| {
                r.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    };
    wait_until(
        "every consumer has the warm-up message",
        Duration::from_secs(30),
        || {
            let done = count(&received) >= consumers;
            async move { done }
        },
    )
    .await?;

    let total = rate * seconds;
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let mut acks = tokio::task::JoinSet::new();
    let mut scheduled = Vec::with_capacity(usize::try_from(total)?);
    for n in 0..total {
        interval.tick().await;
        scheduled.push(Instant::now());
        let permit = in_flight.clone().acquire_owned().await?;
        let ack = publish(n).await?;
        acks.spawn(async move {
            let acked = ack.await.map_err(|e| anyhow!("publish ack: {e}"));
            drop(permit);
            acked.map(drop)
        });
    }
    while let Some(done) = acks.join_next().await {
        done.context("a publish task panicked")??;
    }
    let expected = consumers * scheduled.len();
    let all = wait_until(
        "every consumer has every message",
        Duration::from_secs(60),
        || {
            let done = count(&received) >= expected + consumers;
            async move { done }
        },
    )
    .await;
    tasks.abort_all();
    let mut lat: Vec<Duration> = received
        .iter()
        .flat_map(|r| {
            r.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
        .filter_map(|(n, at)| {
            let sent = scheduled.get(usize::try_from(n).ok()?)?;
            Some(at.saturating_duration_since(*sent))
        })
        .collect();
    lat.sort_unstable();
    figures.put(
        &format!("jetstream_fanout_delivered_{label}"),
        format!("{}/{expected}", lat.len()),
    );
    figures.num(
        &format!("jetstream_fanout_p50_ms_{label}"),
        ms(percentile(&lat, 0.5)),
        2,
    );
    figures.num(
        &format!("jetstream_fanout_p99_ms_{label}"),
        ms(percentile(&lat, 0.99)),
        2,
    );
    figures.num(
        &format!("jetstream_fanout_max_ms_{label}"),
        ms(lat.last().copied().unwrap_or_default()),
        2,
    );
    all?;
    Ok(lat)
}

// ---------------------------------------------------------------------------------------
// Catch-up: a recipient comes back to a backlog.

/// The number of entries an inbox holds, as its event stream shows them, and when that
/// number last grew.
type InboxCount = Arc<Mutex<(u64, Instant)>>;

/// Catch-up after reconnect (DESIGN §8: 100 k envelopes in ≤ 5 s). Two agency nodes as
/// separate processes, both with the relay's production timings (retries from 1 s doubling up
/// to 10 min, custody after 5 s; not the harness's 200 ms to 5 s), as a deployment would
/// have them. The recipient is not running while the driver posts `n` 1 KiB documents to the
/// sender's HTTP API from 64 tasks (each durable in the outbox when acknowledged; 10 k in
/// quick mode, 100 k in the full set); then the recipient starts. The clock runs from the
/// moment its API answers ready until its inbox holds all `n`, followed over server-sent
/// events opened at that moment (the events' positions also count what arrived before).
/// Bounded: it gives up after 120 s (600 s in the full set) or once the inbox has not grown
/// for 40 s (120 s), and reports how far it got. `catchup_s_100k_est` scales the rate to
/// 100 k envelopes linearly (an estimate in quick mode, the measurement in the full set).
async fn catchup_scenario(cli: &Cli, figures: &mut Figures) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};

    let n: u64 = if cli.quick { 10_000 } else { 100_000 };
    let concurrency = 64;
    // Bounded: give up after this long, or once the inbox has not grown for `stall`.
    let give_up = Duration::from_secs(if cli.quick { 120 } else { 600 });
    let stall = Duration::from_secs(if cli.quick { 40 } else { 120 });
    figures.load("catchup");
    figures.put("catchup_n", n);
    let mut fed = Federation::generate(40, &[&["000.00.00.G22"], &["000.00.00.H41"]])
        .context("generating the federation")?;
    figures.put(
        "catchup_relay_timings",
        if cli.catchup_harness_timings {
            "harness"
        } else {
            "production"
        },
    );
    if !cli.catchup_harness_timings {
        for node in &fed.nodes {
            production_relay_timings(&node.dir.join("config.toml"))?;
        }
    }
    fed.start(0, Duration::from_secs(60))
        .await
        .context("starting the sender")?;
    let sender_pid = fed.nodes[0]
        .pid()
        .ok_or_else(|| anyhow!("node without a pid"))?;
    let (sender, token) = fed.nodes[0].tenant();
    let token = token.to_owned();
    let template = Arc::new(Template::new(sender, fed.nodes[1].tenant().0, 1024, 3)?);
    let url = format!("{}/v1/documents", fed.nodes[0].api);
    let client = http_client(concurrency)?;

    // The backlog: n documents durable in the sender's outbox, the recipient not running.
    let next = Arc::new(AtomicU64::new(0));
    let posting = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, token, template, next) = (
            client.clone(),
            url.clone(),
            token.clone(),
            template.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let body = template.fill(&format!("catchup-{i}"));
                post_document(&client, &url, &token, body).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a send task panicked")??;
    }
    figures.num("catchup_post_s", posting.elapsed().as_secs_f64(), 1);

    // The recipient comes back.
    let sender_cpu = cpu_seconds(sender_pid)?;
    let spawned = Instant::now();
    fed.nodes[1].start().context("starting the recipient")?;
    let recipient_pid = fed.nodes[1]
        .pid()
        .ok_or_else(|| anyhow!("node without a pid"))?;
    fed.start(1, Duration::from_secs(120))
        .await
        .context("the recipient answers ready")?;
    let ready = Instant::now();
    figures.num(
        "catchup_start_to_ready_s",
        ready.duration_since(spawned).as_secs_f64(),
        2,
    );
    let (tenant, recipient_token) = fed.nodes[1].tenant();
    let response = open_inbox_stream(&fed.nodes[1].api, tenant, recipient_token).await?;
    let count: InboxCount = Arc::new(Mutex::new((0, ready)));
    let follower = tokio::spawn(follow_count(response, count.clone()));
    let read = || {
        *count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    // The inbox's size at each whole second after ready, and whether it stalled.
    let mut progress: Vec<u64> = Vec::new();
    // Waiting ends in time (complete or stalled) or by its deadline, reported as incomplete.
    let timed_out = wait_until("the recipient's inbox holds the backlog", give_up, || {
        let (seen, grew) = read();
        let now = Instant::now();
        while (progress.len() as f64) < (now - ready).as_secs_f64().floor() {
            progress.push(seen);
        }
        let stalled = seen < n && now.saturating_duration_since(grew.max(ready)) > stall;
        let done = seen >= n || stalled;
        async move { done }
    })
    .await
    .is_err();
    let (delivered, last) = read();
    let cpu = (
        cpu_seconds(recipient_pid)?,
        cpu_seconds(sender_pid)? - sender_cpu,
    );
    follower.abort();
    // What the nodes say about it: pushes dropped on the sender's full queue, and warnings
    // in each log (e.g. libp2p refusing streams beyond its concurrency limit).
    let dropped = metric(&fed.nodes[0].api, "lienthong_outbound_dropped").await;
    let warnings: Vec<usize> = fed
        .nodes
        .iter()
        .map(|node| {
            std::fs::read_to_string(node.dir.join("node.log"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("WARN"))
                .count()
        })
        .collect();
    figures.put("catchup_delivered", format!("{}/{n}", delivered.min(n)));
    figures.put(
        "catchup_progress",
        progress
            .iter()
            .enumerate()
            .map(|(s, seen)| format!("{}s:{seen}", s + 1))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let complete = delivered >= n;
    let secs = if complete {
        last.saturating_duration_since(ready).as_secs_f64()
    } else {
        ready.elapsed().as_secs_f64()
    };
    if complete {
        figures.num("catchup_s", secs, 2);
    } else {
        let why = if timed_out { "timed out" } else { "stalled" };
        figures.put("catchup_s", format!("incomplete: {why} after {secs:.1} s"));
    }
    if !complete || warnings.iter().any(|w| *w > 0) {
        for node in &fed.nodes {
            let log = std::fs::read_to_string(node.dir.join("node.log")).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            eprintln!(
                "catch-up: {} logged {} warnings or errors; the last ones:",
                node.name,
                lines.len()
            );
            for line in lines.iter().rev().take(10).rev() {
                eprintln!("  {line}");
            }
        }
    }
    let per_s = delivered.min(n) as f64 / secs.max(1e-9);
    figures.num("catchup_per_s", per_s, 0);
    // The fastest second: what the recipient manages between the stalls.
    let peak = progress
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .chain(progress.first().copied())
        .max()
        .unwrap_or(0);
    figures.put("catchup_peak_per_s", peak);
    figures.num("catchup_s_100k_est", 100_000.0 / per_s.max(1e-9), 2);
    figures.num("catchup_recipient_cpu_s", cpu.0, 2);
    figures.num("catchup_sender_cpu_s", cpu.1, 2);
    figures.put(
        "catchup_sender_outbound_dropped",
        dropped.map_or_else(|| "?".to_owned(), |d| d.to_string()),
    );
    figures.put(
        "catchup_log_warnings",
        format!(
            "sender {}, recipient {}",
            warnings.first().copied().unwrap_or(0),
            warnings.get(1).copied().unwrap_or(0)
        ),
    );
    Ok(())
}

/// A counter from a node's `GET /metrics` (Prometheus text; `_total` appended to counters),
/// if the node answers and has it.
async fn metric(api: &str, name: &str) -> Option<u64> {
    let text = reqwest::Client::new()
        .get(format!("{api}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            let key = key.strip_suffix("_total").unwrap_or(key);
            (key == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|v| v as u64)
}

/// Reads an inbox event stream, keeping the number of entries the inbox holds (the last
/// event's position + 1: positions count from 0 without gaps) and when it last grew.
async fn follow_count(mut response: reqwest::Response, count: InboxCount) -> anyhow::Result<()> {
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await.context("reading the inbox stream")? {
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        let Some(end) = buffer.rfind('\n') else {
            continue;
        };
        let top = buffer[..end]
            .lines()
            .filter_map(|l| l.strip_prefix("id:")?.trim().parse::<u64>().ok())
            .max();
        buffer.drain(..=end);
        if let Some(position) = top {
            let mut count = count
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if position + 1 > count.0 {
                *count = (position + 1, now);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Ledger append (one central node's log, as bootstrap/benches/append.rs).

async fn ledger_scenario(cli: &Cli, figures: &mut Figures) -> anyhow::Result<()> {
    use lienthong_bootstrap::checkpoint::Checkpoints;
    use lienthong_bootstrap::log::{Log, LogConfig};
    use lienthong_bootstrap::store::Store;
    use lienthong_protocol::signed_note::Ed25519Signer;

    let n = if cli.quick { 50_000 } else { 200_000 };
    let submitters = 256;
    figures.load("ledger");
    let data = Arc::new(ledger_entries(n)?);
    let dir = tempfile::tempdir().context("ledger directory")?;
    let store = Store::open(dir.path()).map_err(|e| anyhow!("opening the store: {e}"))?;
    let log = Arc::new(
        Log::open(store, LogConfig::default()).map_err(|e| anyhow!("opening the log: {e}"))?,
    );
    let signer = Ed25519Signer::new(
        "bench/central-a",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )
    .map_err(|e| anyhow!("signer: {e}"))?;
    let cps = Arc::new(
        Checkpoints::open(&log, "bench/central-a", signer, vec![])
            .map_err(|e| anyhow!("checkpoints: {e}"))?,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let checkpointer =
        tokio::spawn(Arc::clone(&cps).run(Arc::clone(&log), Duration::from_secs(1), stop_rx));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..submitters {
        let (log, data) = (Arc::clone(&log), Arc::clone(&data));
        tasks.spawn(async move {
            let mut lat = Vec::new();
            for entry in data.iter().skip(s).step_by(submitters) {
                let t = Instant::now();
                log.append(entry.clone())
                    .await
                    .map_err(|e| anyhow!("append: {e}"))?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        });
    }
    let mut lat = Vec::new();
    while let Some(done) = tasks.join_next().await {
        lat.extend(done.context("an append task panicked")??);
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    let _ = stop_tx.send(true);
    checkpointer.await.context("checkpointer")?;
    let groups = log.stats().groups;
    log.close().await;
    figures.num("ledger_append_per_s", n as f64 / elapsed.as_secs_f64(), 0);
    figures.put("ledger_append_submitters", submitters);
    figures.num(
        "ledger_entries_per_fsync",
        n as f64 / groups.max(1) as f64,
        1,
    );
    figures.num("ledger_ack_p99_ms", ms(percentile(&lat, 0.99)), 2);
    Ok(())
}

/// `n` ledger entries: signed envelope headers of about 280 bytes, from two agencies.
fn ledger_entries(n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    use lienthong_protocol::content_id::ContentId;
    use lienthong_protocol::envelope::{
        ENVELOPE_VERSION, EnvelopeBody, Kind, Payload, Routing, SignedEnvelope,
    };
    use lienthong_protocol::keys::SigningKey;
    use lienthong_protocol::ledger::LedgerEntry;

    let per = n.div_ceil(2);
    let handles: Vec<_> = (0..2u8)
        .map(|t| {
            std::thread::spawn(move || -> anyhow::Result<Vec<Vec<u8>>> {
                let key = SigningKey::from_seed(&[t + 1; 32]);
                let from = AgencyId::parse(&format!("000.00.00.G{:02}", t + 1))?;
                let to = vec![
                    AgencyId::parse("000.00.00.H41")?,
                    AgencyId::parse("000.00.00.H44")?,
                ];
                (0..per as u64)
                    .map(|i| {
                        let body = EnvelopeBody {
                            v: ENVELOPE_VERSION,
                            kind: Kind::Document,
                            from: from.clone(),
                            to: to.clone(),
                            seq: i + 1,
                            prev: (i > 0).then(|| ContentId::of(&i.to_be_bytes())),
                            created_ms: 1_700_000_000_000 + i,
                            routing: Routing::default(),
                            payload: Payload::External {
                                manifest: [7; 32],
                                size: 1024,
                            },
                        };
                        let env = SignedEnvelope::sign(body, &key)?;
                        Ok(LedgerEntry::envelope(&env)?.to_bytes())
                    })
                    .collect()
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.extend(
            h.join()
                .map_err(|_| anyhow!("an entry generator panicked"))??,
        );
    }
    out.truncate(n);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Audit replay (as node/benches/replay.rs, on a smaller ledger in quick mode).

fn replay_scenario(cli: &Cli, figures: &mut Figures) -> anyhow::Result<()> {
    use lienthong_node::audit::synth::{self, Spec};
    use lienthong_node::audit::{Mirror, ReplayOptions, Source, replay};
    use lienthong_protocol::audit::Checks;
    use lienthong_protocol::keys::VerifyingKey;
    use lienthong_protocol::ledger::log_origin;

    const FED: &str = "lienthong-bench";
    let target = if cli.quick { 100_000 } else { 1_000_000 };
    figures.load("replay");
    let dir = tempfile::tempdir().context("mirror directory")?;
    let origin = log_origin(FED, "c0");
    let log = synth::log_signer(&origin, 0)?;
    let other = synth::log_signer(&log_origin(FED, "c1"), 1)?;
    let witness = synth::witness("bench-witness", 0)?;
    let started = Instant::now();
    let mut documents = target * 10 / 33;
    let ledger = loop {
        let spec = Spec {
            agencies: 200,
            documents,
            federation: FED.into(),
            central: vec![
                (
                    "c0".into(),
                    VerifyingKey(log.verifier().public_key().to_bytes()),
                ),
                (
                    "c1".into(),
                    VerifyingKey(other.verifier().public_key().to_bytes()),
                ),
            ],
            witness_quorum: 1,
            inject: vec![],
        };
        let l = synth::generate(&spec)?;
        if l.entries.len() >= target {
            break l;
        }
        documents += documents / 20 + 1;
    };
    synth::write_mirror(
        &ledger,
        dir.path(),
        &log,
        &origin,
        std::slice::from_ref(&witness),
    )?;
    drop(ledger);
    figures.num("replay_generate_s", started.elapsed().as_secs_f64(), 1);
    let size = Mirror::new(dir.path())
        .latest()
        .map_err(|e| anyhow!("no checkpoint in the mirror: {e}"))?
        .checkpoint()
        .size();
    figures.put("replay_entries", size);
    let base = ReplayOptions {
        witnesses: vec![witness.public().to_vkey()],
        quiet: true,
        now_ms: Some(synth::T0 + 365 * 86_400_000),
        threads: 2,
        ..ReplayOptions::default()
    };
    for (name, checks, threads) in [
        ("replay_hash_per_s", Checks::HashesOnly, 2),
        ("replay_sig_1thread_per_s", Checks::Full, 1),
        ("replay_sig_per_s", Checks::Full, 2),
    ] {
        let opts = ReplayOptions {
            checks,
            check_tiles: false,
            threads,
            ..base.clone()
        };
        let started = Instant::now();
        let outcome = replay(&[Source::Dir(dir.path().to_path_buf())], &opts)?;
        let secs = started.elapsed().as_secs_f64();
        if !outcome.is_clean() {
            bail!("replay not clean: {}", outcome.to_text());
        }
        figures.num(name, size as f64 / secs, 0);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Outputs: figures, a markdown table, SVG plots.

fn write_outputs(
    out: &Path,
    figures: &Figures,
    ingest: Option<&[IngestPoint]>,
    latencies: &[(String, Vec<Duration>)],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let mut text = String::new();
    for (name, value) in &figures.lines {
        writeln!(text, "{name}: {value}")?;
    }
    std::fs::write(out.join("figures.txt"), text)?;
    std::fs::write(out.join("table.md"), table(figures)?)?;
    if let Some(points) = ingest {
        std::fs::write(out.join("ingest.svg"), ingest_svg(points)?)?;
    }
    if !latencies.is_empty() {
        std::fs::write(out.join("e2e-latency.svg"), latency_svg(latencies)?)?;
    }
    Ok(())
}

/// The DESIGN §8 table: figure, goal, anchor, measured, ratio (measured ÷ goal, > 1 is
/// better than the goal for rates, < 1 for latencies and memory).
fn table(figures: &Figures) -> anyhow::Result<String> {
    let rows: &[(&str, &str, f64, &str)] = &[
        (
            "ingest_per_s",
            "≥ 20 000 /s (1 KiB, 64 in flight)",
            20_000.0,
            "JetStream fsync 5.1 k/s",
        ),
        ("ingest_vs_jetstream", "≥ 4×", 4.0, "same run, alternated"),
        ("ingest_p99_ms", "≤ 10 ms", 10.0, "—"),
        ("jetstream_fsync_per_s", "—", f64::NAN, "5.1 k/s (issue 10)"),
        (
            "e2e_p99_ms_10",
            "≤ 5 ms",
            5.0,
            "JetStream fan-out p99 1.9 ms",
        ),
        (
            "jetstream_fanout_p99_ms_10",
            "—",
            f64::NAN,
            "1.9 ms (DESIGN §8, 9 consumers)",
        ),
        (
            "e2e_p99_ms_50",
            "≤ 20 ms",
            20.0,
            "JetStream fan-out p99 5.8 ms",
        ),
        (
            "jetstream_fanout_p99_ms_50",
            "—",
            f64::NAN,
            "5.8 ms (DESIGN §8, 49 consumers)",
        ),
        ("wire_bytes_per_byte_1k_10", "≤ 4× (1 KiB)", 4.0, "—"),
        ("wire_bytes_per_byte_1k_50", "≤ 4× (1 KiB)", 4.0, "—"),
        ("wire_bytes_per_byte_64k", "≤ 1.2× (64 KiB)", 1.2, "—"),
        (
            "catchup_s_100k_est",
            "≤ 5 s (100 k envelopes)",
            5.0,
            "verify-bound ≈ 2–5 s",
        ),
        ("catchup_per_s", "≥ 20 000 /s", 20_000.0, "—"),
        (
            "ledger_append_per_s",
            "≥ 20 000 /s",
            20_000.0,
            "Tessera ≈ 1.5 k/s",
        ),
        (
            "replay_hash_per_s",
            "≥ 1 000 000 /s",
            1_000_000.0,
            "SHA-256 ≈ 1.4 GB/s",
        ),
        (
            "replay_sig_per_s",
            "≥ 80 000 /s",
            80_000.0,
            "verify_strict ≈ 28 k/s/core",
        ),
        ("idle_rss_mib", "≤ 50 MiB", 50.0, "—"),
        ("loaded_rss_peak_mib", "≤ 256 MiB", 256.0, "—"),
    ];
    let mut md = String::from(
        "| figure | goal | anchor | measured | ratio to goal |\n|---|---|---|---|---|\n",
    );
    for (name, goal, target, anchor) in rows {
        let failed = figures.error(scenario_of(name));
        let Some(value) = figures.get(name) else {
            // Not measured: a failed scenario shows its error, one not run is left out.
            if let Some(e) = failed {
                writeln!(
                    md,
                    "| `{name}` | {goal} | {anchor} | **failed** (`{}_error`): {} | — |",
                    scenario_of(name),
                    markdown_cell(e, 240)
                )?;
            }
            continue;
        };
        let ratio = if target.is_nan() {
            "—".to_owned()
        } else {
            format!("{:.2}", value / target)
        };
        // The catch-up's 100 k figure is scaled from a smaller backlog in quick mode.
        let n = figures.get("catchup_n").unwrap_or(100_000.0);
        let mut measured = if *name == "catchup_s_100k_est" && n < 100_000.0 {
            format!("{value} (estimate from {n} envelopes)")
        } else {
            value.to_string()
        };
        if failed.is_some() {
            measured.push_str(" (the scenario failed afterwards)");
        }
        writeln!(
            md,
            "| `{name}` | {goal} | {anchor} | {measured} | {ratio} |"
        )?;
    }
    if !figures.failed.is_empty() {
        md.push_str("\nFailed scenarios:\n\n");
        for scenario in &figures.failed {
            let e = figures.error(scenario).unwrap_or_default();
            writeln!(md, "- `{scenario}`: {}", markdown_cell(e, usize::MAX))?;
        }
    }
    Ok(md)
}

/// The scenario (as named in its `<scenario>_error` figure) that measures a table figure.
fn scenario_of(figure: &str) -> &str {
    let size = figure.rsplit('_').next().unwrap_or_default();
    match figure {
        "idle_rss_mib" | "loaded_rss_peak_mib" => "ingest",
        "wire_bytes_per_byte_64k" => "e2e_64k_3",
        f if f.starts_with("ingest_") || f.starts_with("jetstream_fsync_") => "ingest",
        f if f.starts_with("jetstream_fanout_") => match size {
            "10" => "fanout_10",
            "50" => "fanout_50",
            _ => "fanout",
        },
        f if f.starts_with("e2e_") || f.starts_with("wire_bytes_per_byte_1k_") => match size {
            "10" => "e2e_10",
            "50" => "e2e_50",
            _ => "e2e",
        },
        f if f.starts_with("catchup_") => "catchup",
        f if f.starts_with("ledger_") => "ledger",
        f if f.starts_with("replay_") => "replay",
        _ => "",
    }
}

/// `text` made safe for a markdown table cell (pipes and backticks escaped), cut to `max`
/// characters.
fn markdown_cell(text: &str, max: usize) -> String {
    let mut cell: String = text
        .chars()
        .take(max)
        .collect::<String>()
        .replace('|', "\\|")
        .replace('`', "'");
    if text.chars().count() > max {
        cell.push('…');
    }
    cell
}

fn svg_text(
    svg: &mut String,
    x: f64,
    y: f64,
    anchor: &str,
    size: u32,
    text: &str,
) -> std::fmt::Result {
    writeln!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-family="sans-serif" font-size="{size}">{text}</text>"#
    )
}

/// Grouped bars: documents/s by payload size and concurrency, lienthong beside JetStream.
fn ingest_svg(points: &[IngestPoint]) -> anyhow::Result<String> {
    let (w, h, left, bottom, top) = (720.0, 360.0, 70.0, 60.0, 40.0);
    let max = points
        .iter()
        .map(|p| p.lienthong.max(p.jetstream))
        .fold(1.0, f64::max)
        * 1.1;
    let plot_h = h - bottom - top;
    let group_w = (w - left - 20.0) / points.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#
    );
    svg.push('\n');
    writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#)?;
    svg_text(
        &mut svg,
        w / 2.0,
        22.0,
        "middle",
        15,
        "Ingest: documents acknowledged durably per second (median)",
    )?;
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let y = h - bottom - plot_h * f64::from(k) / 4.0;
        writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##,
            w - 20.0
        )?;
        svg_text(&mut svg, left - 6.0, y + 4.0, "end", 11, &format!("{v:.0}"))?;
    }
    for (i, p) in points.iter().enumerate() {
        let x0 = left + group_w * i as f64;
        let bar = group_w * 0.35;
        for (j, (value, colour)) in [(p.lienthong, "#2a6f97"), (p.jetstream, "#e07a1f")]
            .into_iter()
            .enumerate()
        {
            let bh = plot_h * value / max;
            let x = x0 + group_w * 0.12 + bar * j as f64;
            writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{colour}"/>"#,
                h - bottom - bh
            )?;
            svg_text(
                &mut svg,
                x + bar / 2.0,
                h - bottom - bh - 4.0,
                "middle",
                10,
                &format!("{value:.0}"),
            )?;
        }
        svg_text(
            &mut svg,
            x0 + group_w / 2.0,
            h - bottom + 18.0,
            "middle",
            12,
            &format!("{} KiB, {} in flight", p.size / 1024, p.concurrency),
        )?;
    }
    writeln!(
        svg,
        r##"<rect x="{left}" y="{}" width="12" height="12" fill="#2a6f97"/>"##,
        h - 26.0
    )?;
    svg_text(
        &mut svg,
        left + 16.0,
        h - 16.0,
        "start",
        12,
        "lienthong (HTTP API, sign + seal + fsync)",
    )?;
    writeln!(
        svg,
        r##"<rect x="{}" y="{}" width="12" height="12" fill="#e07a1f"/>"##,
        left + 330.0,
        h - 26.0
    )?;
    svg_text(
        &mut svg,
        left + 346.0,
        h - 16.0,
        "start",
        12,
        "NATS JetStream (fsync per message)",
    )?;
    svg.push_str("</svg>\n");
    Ok(svg)
}

/// Cumulative distribution of send → recipient inbox latency, one line per run (lienthong
/// solid, the JetStream fan-out beside it dashed).
fn latency_svg(latencies: &[(String, Vec<Duration>)]) -> anyhow::Result<String> {
    let (w, h, left, bottom, top) = (720.0, 360.0, 70.0, 50.0, 40.0);
    // A log scale from 0.5 ms to the largest latency.
    let max_ms = latencies
        .iter()
        .filter_map(|(_, l)| l.last().map(|d| ms(*d)))
        .fold(10.0, f64::max);
    let (lo, hi) = (0.5f64.log10(), max_ms.log10());
    let plot_w = w - left - 20.0;
    let plot_h = h - bottom - top;
    let x_of = |v: f64| left + plot_w * ((v.max(0.5).log10() - lo) / (hi - lo));
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">"#
    );
    svg.push('\n');
    writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#)?;
    svg_text(
        &mut svg,
        w / 2.0,
        22.0,
        "middle",
        15,
        "Send → recipient inbox latency (cumulative, 200 docs/s, 1 KiB)",
    )?;
    for tick in [
        0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
    ] {
        if tick > max_ms * 1.01 {
            break;
        }
        let x = x_of(tick);
        writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ddd"/>"##,
            h - bottom
        )?;
        svg_text(
            &mut svg,
            x,
            h - bottom + 16.0,
            "middle",
            11,
            &format!("{tick} ms"),
        )?;
    }
    for k in 0..=4 {
        let y = h - bottom - plot_h * f64::from(k) / 4.0;
        writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##,
            w - 20.0
        )?;
        svg_text(
            &mut svg,
            left - 6.0,
            y + 4.0,
            "end",
            11,
            &format!("{}%", k * 25),
        )?;
    }
    for (k, (label, lat)) in latencies.iter().enumerate() {
        let colour = ["#2a6f97", "#e07a1f", "#c1121f", "#588157"][k % 4];
        let dash = if label.starts_with("JetStream") {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let mut path = String::new();
        for (i, d) in lat.iter().enumerate() {
            let x = x_of(ms(*d));
            let y = h - bottom - plot_h * (i + 1) as f64 / lat.len() as f64;
            write!(path, "{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" })?;
        }
        writeln!(
            svg,
            r#"<path d="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#
        )?;
        let p99 = ms(percentile(lat, 0.99));
        svg_text(
            &mut svg,
            left + 10.0,
            top + 18.0 + 16.0 * k as f64,
            "start",
            12,
            &format!(
                "{label}: p50 {:.1} ms, p99 {p99:.1} ms",
                ms(percentile(lat, 0.5))
            ),
        )?;
        writeln!(
            svg,
            r#"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="{colour}" stroke-width="3"{dash}/>"#,
            left - 2.0 + 0.0,
            left + 8.0,
            y = top + 14.0 + 16.0 * k as f64
        )?;
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn per_kind_adds_each_threads_cpu_since_the_first_snapshot_by_kind() {
        let thread = |name: &str, seconds: f64| (name.to_owned(), seconds);
        let before = BTreeMap::from([
            (1, thread("lienthong", 1.0)),
            (2, thread("tokio-rt-worker", 2.0)),
            (3, thread("tokio-rt-worker", 3.0)),
            (4, thread("relay-driver", 0.5)),
            (9, thread("rocksdb:low", 0.1)),
        ]);
        let after = BTreeMap::from([
            (1, thread("lienthong", 1.0)),
            (2, thread("tokio-rt-worker", 2.5)),
            (3, thread("tokio-rt-worker", 3.25)),
            (4, thread("relay-driver", 1.0)),
            // Started between the snapshots: all of its time counts.
            (5, thread("rocksdb:high", 0.25)),
            (6, thread("store-writer", 0.125)),
        ]);
        let kinds = per_kind(&before, &after, 1_000.0);
        let us = |kind: &str| kinds.get(kind).copied();
        assert_eq!(us("workers"), Some(750.0));
        assert_eq!(us("relay"), Some(500.0));
        assert_eq!(us("rocksdb_bg"), Some(250.0));
        assert_eq!(us("store"), Some(125.0));
        assert_eq!(us("other"), Some(0.0));
        assert_eq!(kinds.len(), 5);
    }

    #[test]
    fn parse_stat_reads_the_name_and_utime_plus_stime() {
        let stat = "4117 (tokio-rt) worker) S 1 4117 4117 0 -1 4194560 100 0 0 0 250 125 0 0";
        assert_eq!(
            parse_stat(stat),
            Some(("tokio-rt) worker".to_owned(), 3.75))
        );
        assert_eq!(parse_stat("4117 (short) S 1 2"), None);
    }

    #[test]
    fn thread_cpu_seconds_lists_this_process_threads_by_name() {
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let worker = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                started_tx.send(()).unwrap();
                stop_rx.recv().ok();
            })
            .unwrap();
        started_rx.recv().unwrap();
        let threads = thread_cpu_seconds(std::process::id()).unwrap();
        stop_tx.send(()).unwrap();
        worker.join().unwrap();
        assert!(
            threads
                .values()
                .any(|(name, seconds)| name == "store-writer" && *seconds >= 0.0),
            "{threads:?}"
        );
        assert_eq!(thread_kind("store-writer"), "store");
        assert_eq!(thread_kind("rocksdb:high"), "rocksdb_bg");
    }
}
