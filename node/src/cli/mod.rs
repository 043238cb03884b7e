//! The client side of the `lienthong` CLI: subcommands that call a node's HTTP API (the
//! same path a DMS takes) and print tables, or the API's JSON with `--json`.
//!
//! Exit codes ([`Outcome`]): 0 done, 2 usage error (bad arguments or input file), 3 the
//! node refused (a 4xx problem, printed), 4 the node is unreachable or unavailable
//! (connection failure, timeout, 5xx).

// The only indexing here is `serde_json::Value[&str]`, which yields `Null` for a missing key
// or a non-object and never panics.
#![allow(clippy::indexing_slicing)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::http_body::BodyError;
use serde_json::{Value, json};

/// Longest JSON file `send` reads, in bytes.
const MAX_INPUT: u64 = 96 * 1024 * 1024;
/// Longest answer read from the node, in bytes (an attachment of a 50 MiB document fits).
const MAX_ANSWER: usize = 96 * 1024 * 1024;

/// The subcommands that talk to a node's API.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Send a document: a JSON file in the API's send shape (header and base64
    /// attachments), or an edXML envelope (QCVN 102:2016; a file starting with `<`); `-`
    /// reads standard input.
    Send {
        file: PathBuf,
        /// Makes a retried send answer the first content id.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's inbox after a cursor.
    Inbox {
        #[arg(long)]
        tenant: Option<String>,
        /// Entries after this position.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show a received document, or save one of its attachments.
    Show {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Save attachment N (from 0) instead of showing the document.
        #[arg(long)]
        attachment: Option<usize>,
        /// Where to save the attachment (default: its own name, in the current directory).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Print the whole document as edXML (QCVN 102:2016), or save it with `--output`.
        #[arg(long, conflicts_with_all = ["attachment", "json"])]
        edxml: bool,
        #[arg(long)]
        json: bool,
    },
    /// Post a status (02–06, 15, 16) on a received document.
    Status {
        id: String,
        code: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show each recipient's status chain of a document.
    Trace {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Ask the recipients to give a sent document back (status 13).
    Recall {
        id: String,
        #[arg(long)]
        reason: String,
        /// Only these recipients (default: all).
        #[arg(long = "recipient")]
        recipients: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the federation's agencies.
    Agencies {
        #[arg(long)]
        json: bool,
    },
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Usage,
    Refused,
    Unreachable,
}

impl Outcome {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Done => 0,
            Self::Usage => 2,
            Self::Refused => 3,
            Self::Unreachable => 4,
        }
    }
}

/// Runs `cmd` against the node at `base_url` (e.g. `http://127.0.0.1:8080`) with `token`,
/// printing to standard output (and errors to standard error).
pub async fn run(cmd: ClientCommand, base_url: &str, token: &str) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    let outcome = execute(cmd, base_url, token, &mut out).await;
    std::io::stdout().write_all(&out)?;
    Ok(ExitCode::from(outcome.code()))
}

/// A failed command: what to print on standard error, and how it ended.
struct Failure(Outcome, String);

/// Runs `cmd`, writing what it prints to `out`; errors go to standard error.
pub async fn execute(
    cmd: ClientCommand,
    base_url: &str,
    token: &str,
    out: &mut Vec<u8>,
) -> Outcome {
    let client = Client {
        http: match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
        {
            Ok(http) => http,
            Err(e) => {
                eprintln!("error: cannot start an HTTP client: {e}");
                return Outcome::Unreachable;
            }
        },
        base: base_url.trim_end_matches('/').to_owned(),
        token: token.to_owned(),
    };
    match client.execute(cmd, out).await {
        Ok(()) => Outcome::Done,
        Err(Failure(outcome, message)) => {
            eprintln!("error: {message}");
            outcome
        }
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure(Outcome::Usage, message.into())
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), Failure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .query(query);
        let typed = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            if !typed {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            request = request.body(body);
        }
        let unreachable = |e: reqwest::Error| {
            Failure(
                Outcome::Unreachable,
                format!("node at {} unreachable: {e}", self.base),
            )
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = crate::http_body::read_limited(response, MAX_ANSWER)
            .await
            .map_err(|e| match e {
                BodyError::Http(e) => unreachable(e),
                BodyError::TooLarge { .. } => Failure(
                    Outcome::Unreachable,
                    format!("the node answered more than {MAX_ANSWER} bytes"),
                ),
            })?;
        if status.is_success() {
            return Ok((headers, bytes));
        }
        let outcome = if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Outcome::Unreachable
        } else {
            Outcome::Refused
        };
        let message = match serde_json::from_slice::<Value>(&bytes) {
            Ok(p) => {
                let field = p["field"]
                    .as_str()
                    .map(|f| format!(" (field `{f}`)"))
                    .unwrap_or_default();
                format!(
                    "{} {}: {}{field}",
                    status.as_u16(),
                    p["title"].as_str().unwrap_or("error"),
                    p["detail"].as_str().unwrap_or("")
                )
            }
            Err(_) => format!("{status}"),
        };
        Err(Failure(outcome, message))
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap_or_default());
        let (_, bytes) = self.call(method, path, query, body, &[]).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure(
                Outcome::Unreachable,
                format!("the node answered non-JSON: {e}"),
            )
        })
    }

    async fn execute(&self, cmd: ClientCommand, out: &mut Vec<u8>) -> Result<(), Failure> {
        let tenant =
            |t: &Option<String>| t.iter().map(|t| ("tenant", t.clone())).collect::<Vec<_>>();
        match cmd {
            ClientCommand::Send {
                file,
                idempotency_key,
                json,
            } => {
                let body = read_input(&file)?;
                let is_edxml = body
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b'<');
                if !is_edxml {
                    serde_json::from_slice::<Value>(&body).map_err(|e| {
                        usage(format!("{}: neither JSON nor edXML: {e}", file.display()))
                    })?;
                }
                let mut headers: Vec<(&str, String)> = idempotency_key
                    .into_iter()
                    .map(|k| ("idempotency-key", k))
                    .collect();
                if is_edxml {
                    headers.push(("content-type", "application/xml".to_owned()));
                }
                let (_, bytes) = self
                    .call(Method::POST, "/v1/documents", &[], Some(body), &headers)
                    .await?;
                let answer: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                if json {
                    print_json(out, &answer);
                } else {
                    let note = if answer["duplicate"] == true {
                        " (already sent: same idempotency key)"
                    } else {
                        ""
                    };
                    line(out, format!("sent {}{note}", text(&answer["id"])));
                }
            }
            ClientCommand::Inbox {
                tenant: t,
                after,
                limit,
                json,
            } => {
                let mut query = tenant(&t);
                query.push(("limit", limit.to_string()));
                if let Some(after) = after {
                    query.push(("after", after.to_string()));
                }
                let page = self.json(Method::GET, "/v1/inbox", &query, None).await?;
                if json {
                    print_json(out, &page);
                } else {
                    let rows = items(&page["entries"])
                        .map(|e| {
                            vec![
                                text(&e["position"]),
                                text(&e["kind"]),
                                text(&e["status"]),
                                text(&e["from"]),
                                text(&e["created"]),
                                text(&e["id"]),
                                text(&e["refers_to"]),
                            ]
                        })
                        .collect();
                    table(
                        out,
                        &[
                            "POS",
                            "KIND",
                            "STATUS",
                            "FROM",
                            "CREATED",
                            "ID",
                            "REFERS TO",
                        ],
                        rows,
                    );
                    if let Some(next) = page["next"].as_u64() {
                        line(out, format!("next: --after {next}"));
                    }
                }
            }
            ClientCommand::Show {
                id,
                tenant: t,
                attachment: Some(n),
                output,
                ..
            } => {
                let (headers, bytes) = self
                    .call(
                        Method::GET,
                        &format!("/v1/documents/{id}/attachments/{n}"),
                        &tenant(&t),
                        None,
                        &[],
                    )
                    .await?;
                let name = headers
                    .get(reqwest::header::CONTENT_DISPOSITION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split("filename*=UTF-8''").nth(1))
                    .map(percent_decode)
                    .filter(|n| !n.is_empty() && !n.contains(['/', '\\']) && n != ".." && n != ".")
                    .unwrap_or_else(|| format!("attachment-{n}"));
                let path = output.unwrap_or_else(|| PathBuf::from(name));
                std::fs::write(&path, &bytes)
                    .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
                line(
                    out,
                    format!("saved {} bytes to {}", bytes.len(), path.display()),
                );
            }
            ClientCommand::Show {
                id,
                tenant: t,
                edxml: true,
                output,
                ..
            } => {
                let (_, bytes) = self
                    .call(
                        Method::GET,
                        &format!("/v1/documents/{id}/edxml"),
                        &tenant(&t),
                        None,
                        &[],
                    )
                    .await?;
                match output {
                    Some(path) => {
                        std::fs::write(&path, &bytes)
                            .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
                        line(
                            out,
                            format!("saved {} bytes of edXML to {}", bytes.len(), path.display()),
                        );
                    }
                    None => out.extend_from_slice(&bytes),
                }
            }
            ClientCommand::Show {
                id,
                tenant: t,
                json,
                ..
            } => {
                let doc = self
                    .json(
                        Method::GET,
                        &format!("/v1/documents/{id}"),
                        &tenant(&t),
                        None,
                    )
                    .await?;
                if json {
                    print_json(out, &doc);
                } else {
                    let h = &doc["header"];
                    for (label, value) in [
                        ("id", text(&doc["id"])),
                        ("kind", text(&doc["kind"])),
                        (
                            "from",
                            format!(
                                "{} {}",
                                text(&h["from"]["organ_id"]),
                                text(&h["from"]["organ_name"])
                            ),
                        ),
                        ("created", text(&doc["created"])),
                        ("document id", text(&h["document_id"])),
                        (
                            "code",
                            format!(
                                "{}/{}",
                                text(&h["code"]["number"]),
                                text(&h["code"]["notation"])
                            ),
                        ),
                        ("type", text(&h["document_type_name"])),
                        ("subject", text(&h["subject"])),
                        (
                            "signer",
                            format!(
                                "{} {}",
                                text(&h["signer"]["position"]),
                                text(&h["signer"]["full_name"])
                            ),
                        ),
                        ("due", text(&h["due_date"])),
                        ("refers to", text(&doc["refers_to"])),
                    ] {
                        line(out, format!("{label:<12} {value}"));
                    }
                    let rows = items(&doc["attachments"])
                        .map(|a| {
                            vec![
                                text(&a["index"]),
                                text(&a["name"]),
                                text(&a["content_type"]),
                                text(&a["size"]),
                            ]
                        })
                        .collect();
                    table(out, &["N", "ATTACHMENT", "TYPE", "BYTES"], rows);
                }
            }
            ClientCommand::Status {
                id,
                code,
                reason,
                assignee,
                tenant: t,
                json,
            } => {
                let body = json!({"code": code, "reason": reason, "assignee": assignee});
                let body = strip_nulls(body);
                let answer = self
                    .json(
                        Method::POST,
                        &format!("/v1/documents/{id}/status"),
                        &tenant(&t),
                        Some(body),
                    )
                    .await?;
                if json {
                    print_json(out, &answer);
                } else {
                    line(
                        out,
                        format!(
                            "status {} posted as {}",
                            text(&answer["code"]),
                            text(&answer["id"])
                        ),
                    );
                }
            }
            ClientCommand::Recall {
                id,
                reason,
                recipients,
                tenant: t,
                json,
            } => {
                let answer = self
                    .json(
                        Method::POST,
                        &format!("/v1/documents/{id}/recall"),
                        &tenant(&t),
                        Some(json!({"reason": reason, "recipients": recipients})),
                    )
                    .await?;
                if json {
                    print_json(out, &answer);
                } else {
                    line(
                        out,
                        format!("recall (13) posted as {}", text(&answer["id"])),
                    );
                }
            }
            ClientCommand::Trace {
                id,
                tenant: t,
                json,
            } => {
                let trace = self
                    .json(
                        Method::GET,
                        &format!("/v1/documents/{id}/trace"),
                        &tenant(&t),
                        None,
                    )
                    .await?;
                if json {
                    print_json(out, &trace);
                } else {
                    line(
                        out,
                        format!(
                            "{} sent by {} at {}",
                            text(&trace["id"]),
                            text(&trace["sender"]),
                            text(&trace["sent"])
                        ),
                    );
                    let mut rows = Vec::new();
                    for r in items(&trace["recipients"]) {
                        for e in items(&r["history"]) {
                            let detail = [text(&e["reason"]), text(&e["assignee"])]
                                .into_iter()
                                .filter(|t| !t.is_empty())
                                .collect::<Vec<_>>()
                                .join("; ");
                            rows.push(vec![
                                text(&r["recipient"]),
                                text(&e["code"]),
                                text(&e["description"]),
                                text(&e["at"]),
                                detail,
                            ]);
                        }
                        if items(&r["history"]).next().is_none() {
                            rows.push(vec![
                                text(&r["recipient"]),
                                String::new(),
                                text(&r["stage"]),
                                String::new(),
                                text(&r["ended"]),
                            ]);
                        }
                    }
                    table(out, &["RECIPIENT", "CODE", "STATUS", "AT", "DETAIL"], rows);
                }
            }
            ClientCommand::Agencies { json } => {
                let list = self.json(Method::GET, "/v1/agencies", &[], None).await?;
                if json {
                    print_json(out, &list);
                } else {
                    let rows = items(&list["agencies"])
                        .map(|a| {
                            vec![
                                text(&a["id"]),
                                text(&a["name"]),
                                text(&a["level"]),
                                text(&a["state"]),
                                if a["hosted_here"] == true {
                                    "yes".into()
                                } else {
                                    String::new()
                                },
                            ]
                        })
                        .collect();
                    table(out, &["ID", "NAME", "LEVEL", "STATE", "HERE"], rows);
                    line(out, format!("roster epoch {}", text(&list["epoch"])));
                }
            }
        }
        Ok(())
    }
}

fn read_input(file: &PathBuf) -> Result<Vec<u8>, Failure> {
    use std::io::Read as _;
    let mut body = Vec::new();
    let result = if file.as_os_str() == "-" {
        std::io::stdin().take(MAX_INPUT + 1).read_to_end(&mut body)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut body))
    };
    result.map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
    if body.len() as u64 > MAX_INPUT {
        return Err(usage(format!(
            "{} is larger than {MAX_INPUT} bytes",
            file.display()
        )));
    }
    Ok(body)
}

fn strip_nulls(mut value: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    value
}

fn items(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

/// A JSON value as table text (empty for null).
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn line(out: &mut Vec<u8>, text: String) {
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

fn print_json(out: &mut Vec<u8>, value: &Value) {
    line(out, serde_json::to_string_pretty(value).unwrap_or_default());
}

/// Left-aligned columns, two spaces apart, widths by characters.
fn table(out: &mut Vec<u8>, head: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<String>| {
        let mut s = String::new();
        for (cell, w) in cells.iter().zip(&widths) {
            s.push_str(cell);
            s.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(cell.chars().count()) + 2,
            ));
        }
        s.trim_end().to_owned()
    };
    line(out, render(head.iter().map(|h| (*h).to_owned()).collect()));
    for row in rows {
        line(out, render(row));
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
