//! Reading HTTP answers from other nodes and services with a bound on their size: every
//! answer read from the network goes through [`read_limited`].

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
