//! Reading HTTP bodies from the network with bounds: answers from other nodes and services
//! ([`read_limited`], bounded in size) and requests to this node's listeners
//! ([`read_request`], bounded in size and in how long the client may leave it waiting).

use std::time::Duration;

use axum::body::{Body, Bytes};
use futures::StreamExt as _;

/// Longest a request body may go without sending anything: a client that stalls midway
/// (slowloris) gives up its slot instead of holding it.
pub const REQUEST_BODY_IDLE: Duration = Duration::from_secs(30);
/// Slowest a request body may arrive on average, once it has taken longer than
/// [`REQUEST_BODY_IDLE`]: a byte every 29 s is not a way to hold a slot either.
pub const REQUEST_BODY_MIN_BYTES_PER_S: u64 = 16 * 1024;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error("the body may be at most {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body stalled: nothing arrived for {} s", .idle.as_secs())]
    Stalled { idle: Duration },
    #[error("the body arrived too slowly: {bytes} bytes in {} s", .elapsed.as_secs())]
    TooSlow { bytes: usize, elapsed: Duration },
    #[error("the body was cut off: {0}")]
    Broken(String),
}

/// The body length a request declares in `Content-Length`, if it declares a valid one
/// (for refusing an oversized body before reading it).
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Reads a request body of at most `limit` bytes (refused as soon as it goes past), each
/// piece arriving within `idle` of the previous one and, past `idle`, at
/// [`REQUEST_BODY_MIN_BYTES_PER_S`] on average.
///
/// # Errors
/// [`RequestBodyError`]: too large, stalled, too slow, or cut off by the client.
pub async fn read_request(
    body: Body,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, RequestBodyError> {
    let started = tokio::time::Instant::now();
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    loop {
        let elapsed = started.elapsed();
        if elapsed > idle && (bytes.len() as u64) < REQUEST_BODY_MIN_BYTES_PER_S * elapsed.as_secs()
        {
            return Err(RequestBodyError::TooSlow {
                bytes: bytes.len(),
                elapsed,
            });
        }
        let next = tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| RequestBodyError::Stalled { idle })?;
        let Some(chunk) = next else {
            return Ok(Bytes::from(bytes));
        };
        let chunk = chunk.map_err(|e| RequestBodyError::Broken(e.to_string()))?;
        if bytes.len() + chunk.len() > limit {
            return Err(RequestBodyError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
}

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
}

/// Reads the body of `resp`, whatever its status, refusing more than `limit` bytes (by the
/// announced length before reading, and while reading).
///
/// # Errors
/// [`BodyError::TooLarge`] past `limit`; [`BodyError::Http`] when the transfer fails.
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|l| l > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn body_of(pieces: Vec<Result<&'static [u8], std::io::Error>>) -> Body {
        Body::from_stream(futures::stream::iter(pieces))
    }

    #[tokio::test]
    async fn a_request_body_is_read_whole_within_its_limit() {
        let body = body_of(vec![Ok(b"ab"), Ok(b"cd")]);
        let read = read_request(body, 4, REQUEST_BODY_IDLE).await.unwrap();
        assert_eq!(&read[..], b"abcd");
    }

    #[tokio::test]
    async fn a_request_body_past_its_limit_or_cut_off_is_refused_saying_which() {
        let long = body_of(vec![Ok(b"ab"), Ok(b"cde")]);
        let err = read_request(long, 4, REQUEST_BODY_IDLE).await.unwrap_err();
        assert!(
            matches!(err, RequestBodyError::TooLarge { limit: 4 }),
            "{err}"
        );
        let cut = body_of(vec![Ok(b"ab"), Err(std::io::Error::other("reset"))]);
        let err = read_request(cut, 4, REQUEST_BODY_IDLE).await.unwrap_err();
        assert!(matches!(err, RequestBodyError::Broken(_)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_that_trickles_is_given_up() {
        // A byte every 20 s: never idle for 30 s, far below the minimum rate.
        let trickle = futures::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            (n < 100).then_some((Ok::<_, std::io::Error>(&b"x"[..]), n + 1))
        });
        let err = read_request(Body::from_stream(trickle), 1024, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RequestBodyError::TooSlow { bytes: 2, .. }),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_body_that_stalls_is_given_up() {
        let stalled = futures::stream::iter([Ok::<_, std::io::Error>(&b"ab"[..])])
            .chain(futures::stream::pending());
        // Bounded, so that a broken idle check fails the test instead of hanging it.
        let read = read_request(Body::from_stream(stalled), 4, Duration::from_secs(30));
        let err = tokio::time::timeout(Duration::from_secs(3600), read)
            .await
            .expect("the stalled body was not given up")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the body stalled: nothing arrived for 30 s"
        );
    }
}
