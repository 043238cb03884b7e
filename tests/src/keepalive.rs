//! A lean HTTP/1.1 keep-alive connection for load generation: one request at a time on one
//! TCP connection, the request framed from bytes made once, the answer's head parsed with
//! `httparse` and its body read by `content-length`.
//!
//! Written by hand rather than taken from reqwest or hyper's client because the benchmark's
//! client shares the machine's two cores with the node it measures: reqwest (a pool, a URL
//! parse, a header map and a connection task per request) cost about 30 µs of CPU per
//! request here, a fifth of what the node spends, and that time is taken from the node.
//! Load generators such as wrk do the same. It speaks only what the node answers: no
//! chunked bodies, no `100 Continue`, no TLS.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest answer head (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Largest answer body.
const MAX_BODY: usize = 1024 * 1024;
/// Headers parsed in an answer.
const MAX_HEADERS: usize = 32;

/// Why a request on a [`Connection`] failed.
#[derive(Debug, thiserror::Error)]
pub enum KeepAliveError {
    #[error("{url}: not an http:// URL with a host, port and path")]
    Url { url: String },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr}: no answer within {timeout:?}", timeout = TIMEOUT)]
    Timeout { addr: String },
    #[error("{addr}: the connection closed before the whole answer arrived")]
    Closed { addr: String },
    #[error("{addr}: the connection failed on an earlier request")]
    Broken { addr: String },
    #[error("{addr}: malformed answer: {detail}")]
    Malformed { addr: String, detail: String },
}

/// How long a request may wait for its answer.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// An answer: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection posting to one URL with fixed headers.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    addr: String,
    /// `POST <path> HTTP/1.1`, the host and the fixed headers, up to `content-length: `.
    head: Vec<u8>,
    /// The answer being read.
    buffer: Vec<u8>,
    /// A request failed: what is left on the connection cannot be trusted.
    broken: bool,
}

impl Connection {
    /// Connects to `url` (`http://host:port/path`) with `TCP_NODELAY`; every request will
    /// carry `headers` (name, value) and its body's `content-length`.
    pub async fn open(url: &str, headers: &[(&str, &str)]) -> Result<Self, KeepAliveError> {
        let bad_url = || KeepAliveError::Url {
            url: url.to_owned(),
        };
        let rest = url.strip_prefix("http://").ok_or_else(bad_url)?;
        let (addr, path) = rest
            .find('/')
            .map(|slash| rest.split_at(slash))
            .ok_or_else(bad_url)?;
        if !addr.contains(':') {
            return Err(bad_url());
        }
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| KeepAliveError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        stream
            .set_nodelay(true)
            .map_err(|source| KeepAliveError::Io {
                addr: addr.to_owned(),
                source,
            })?;
        let mut head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("content-length: ");
        Ok(Self {
            stream,
            addr: addr.to_owned(),
            head: head.into_bytes(),
            buffer: Vec::with_capacity(4096),
            broken: false,
        })
    }

    /// Posts `body` and reads the whole answer. After an error the connection is not used
    /// again: every later request fails with [`KeepAliveError::Broken`].
    pub async fn post(&mut self, body: &[u8]) -> Result<Answer, KeepAliveError> {
        if self.broken {
            return Err(KeepAliveError::Broken {
                addr: self.addr.clone(),
            });
        }
        let result = match tokio::time::timeout(TIMEOUT, self.exchange(body)).await {
            Ok(result) => result,
            Err(_) => Err(KeepAliveError::Timeout {
                addr: self.addr.clone(),
            }),
        };
        self.broken = result.is_err();
        result
    }

    async fn exchange(&mut self, body: &[u8]) -> Result<Answer, KeepAliveError> {
        let mut request = Vec::with_capacity(self.head.len() + 24 + body.len());
        request.extend_from_slice(&self.head);
        request.extend_from_slice(body.len().to_string().as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
        if let Err(source) = self.stream.write_all(&request).await {
            return Err(KeepAliveError::Io {
                addr: self.addr.clone(),
                source,
            });
        }
        let (status, head_len, body_len) = loop {
            if let Some(parsed) = self.parse_head()? {
                break parsed;
            }
            if self.buffer.len() >= MAX_HEAD {
                return Err(self.malformed(format!("answer head over {MAX_HEAD} bytes")));
            }
            self.fill().await?;
        };
        while self.buffer.len() < head_len + body_len {
            self.fill().await?;
        }
        let body = self.buffer[head_len..head_len + body_len].to_vec();
        self.buffer.drain(..head_len + body_len);
        if !self.buffer.is_empty() {
            return Err(self.malformed(format!(
                "{} bytes after the answer to one request",
                self.buffer.len()
            )));
        }
        Ok(Answer { status, body })
    }

    /// The status, head length and body length once the head is whole.
    fn parse_head(&self) -> Result<Option<(u16, usize, usize)>, KeepAliveError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut answer = httparse::Response::new(&mut headers);
        let head_len = match answer.parse(&self.buffer) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(self.malformed(e.to_string())),
        };
        let status = answer
            .code
            .ok_or_else(|| self.malformed("no status code".into()))?;
        let mut body_len = None;
        for header in answer.headers.iter() {
            if header.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(self.malformed("a chunked answer (only content-length is read)".into()));
            }
            if header.name.eq_ignore_ascii_case("content-length") {
                let len = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or_else(|| self.malformed("content-length is not a number".into()))?;
                body_len = Some(len);
            }
        }
        let body_len = body_len.ok_or_else(|| self.malformed("no content-length".into()))?;
        if body_len > MAX_BODY {
            return Err(self.malformed(format!("a body of {body_len} bytes")));
        }
        Ok(Some((status, head_len, body_len)))
    }

    async fn fill(&mut self) -> Result<(), KeepAliveError> {
        let mut chunk = [0u8; 4096];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(|source| KeepAliveError::Io {
                addr: self.addr.clone(),
                source,
            })?;
        if n == 0 {
            return Err(KeepAliveError::Closed {
                addr: self.addr.clone(),
            });
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn malformed(&self, detail: String) -> KeepAliveError {
        KeepAliveError::Malformed {
            addr: self.addr.clone(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a failed step should panic")]

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that reads each request whole (by its content-length) and writes the next
    /// canned answer; returns the requests it read.
    async fn serve(answers: Vec<&'static [u8]>) -> (String, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut requests = Vec::new();
            let mut buffer = Vec::new();
            for answer in answers {
                let request = loop {
                    let mut headers = [httparse::EMPTY_HEADER; 16];
                    let mut req = httparse::Request::new(&mut headers);
                    if let Ok(httparse::Status::Complete(n)) = req.parse(&buffer) {
                        let len: usize = req
                            .headers
                            .iter()
                            .find(|h| h.name == "content-length")
                            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                            .unwrap();
                        if buffer.len() >= n + len {
                            break buffer.drain(..n + len).collect::<Vec<u8>>();
                        }
                    }
                    let mut chunk = [0u8; 1024];
                    let read = socket.read(&mut chunk).await.unwrap();
                    assert!(read > 0, "the client closed early");
                    buffer.extend_from_slice(&chunk[..read]);
                };
                requests.push(request);
                // Written in two parts, so the client must read the answer in pieces.
                let (first, second) = answer.split_at(answer.len() / 2);
                socket.write_all(first).await.unwrap();
                socket.flush().await.unwrap();
                socket.write_all(second).await.unwrap();
            }
            requests
        });
        (format!("http://{addr}/v1/documents"), task)
    }

    #[tokio::test]
    async fn two_requests_share_one_connection_and_each_answer_is_read_whole() {
        let (url, server) = serve(vec![
            b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"id\":\"a\"}\n",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
        ])
        .await;
        let mut connection = Connection::open(&url, &[("authorization", "Bearer t")])
            .await
            .unwrap();
        let first = connection.post(b"{\"n\":1}").await.unwrap();
        assert_eq!(first.status, 202);
        assert_eq!(first.body, b"{\"id\":\"a\"}\n");
        let second = connection.post(b"{\"n\":22}").await.unwrap();
        assert_eq!(second.status, 503);
        assert_eq!(second.body, b"busy");
        let requests = server.await.unwrap();
        let text = String::from_utf8(requests[1].clone()).unwrap();
        assert!(
            text.starts_with("POST /v1/documents HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("authorization: Bearer t\r\n"), "{text}");
        assert!(
            text.ends_with("content-length: 8\r\n\r\n{\"n\":22}"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_chunked_answer_is_an_error_that_says_so_and_breaks_the_connection() {
        let (url, _server) = serve(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ])
        .await;
        let mut connection = Connection::open(&url, &[]).await.unwrap();
        let error = connection.post(b"x").await.unwrap_err().to_string();
        assert!(error.contains("chunked"), "{error}");
        let error = connection.post(b"x").await.unwrap_err();
        assert!(matches!(error, KeepAliveError::Broken { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_an_error() {
        let (url, server) =
            serve(vec![b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"]).await;
        let mut connection = Connection::open(&url, &[]).await.unwrap();
        assert_eq!(connection.post(b"x").await.unwrap().status, 202);
        // The server answered its one request and closed the connection.
        server.await.unwrap();
        let error = connection.post(b"x").await.unwrap_err();
        assert!(
            matches!(
                error,
                KeepAliveError::Closed { .. } | KeepAliveError::Io { .. }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_url_without_a_port_is_refused() {
        let error = Connection::open("http://localhost/v1", &[])
            .await
            .unwrap_err();
        assert!(matches!(error, KeepAliveError::Url { .. }), "{error}");
    }
}
