//! Stream codecs for the two request-response protocols.
//!
//! Every frame is length-prefixed (u32, big-endian) and the length is checked against the
//! protocol's limit **before** any buffer is allocated, so a peer cannot make us reserve
//! more than one maximal frame per stream. Decoding of the relay message itself
//! ([`Wire::decode`](lienthong_protocol::relay::wire::Wire::decode)) happens in the task,
//! where a bad message can be counted and penalised; the codec only frames bytes.
//!
//! * `/lienthong/relay/1`: request = one `Wire` (CBOR); response = [`RelayResponse`].
//! * `/lienthong/fetch/1`: request = [`FetchRequest`] (fixed size); response =
//!   [`FetchResponse`].

use std::io;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use lienthong_protocol::relay::wire::MAX_WIRE_LEN;
use lienthong_protocol::seal::{CHUNK_SIZE, MAX_MANIFEST_LEN, TAG_LEN};

/// The relay protocol (direct push, custody hand-off and their acknowledgements).
pub const RELAY_PROTOCOL: StreamProtocol = StreamProtocol::new("/lienthong/relay/1");
/// The payload fetch protocol (manifests and chunks by hash).
pub const FETCH_PROTOCOL: StreamProtocol = StreamProtocol::new("/lienthong/fetch/1");

/// Largest fetch response body: a manifest or one ciphertext chunk.
pub const MAX_FETCH_LEN: usize = {
    let chunk = CHUNK_SIZE as usize + TAG_LEN;
    if chunk > MAX_MANIFEST_LEN {
        chunk
    } else {
        MAX_MANIFEST_LEN
    }
};

/// Longest refusal reason carried in a response.
pub const MAX_REFUSAL_LEN: usize = 256;

/// The answer to a relay request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayResponse {
    /// A relay message (`PushAck` for a push, `CustodyAck` for a custody request).
    Wire(Vec<u8>),
    /// Received; nothing to say (the answer to an acknowledgement sent as a request).
    Empty,
    /// Refused without looking (quota exceeded, malformed); try again later.
    Refused(String),
}

/// What a fetcher asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchRequest {
    /// The manifest whose id (SHA-256 of its bytes) is given.
    Manifest([u8; 32]),
    /// Ciphertext chunk `index` of the manifest.
    Chunk { manifest: [u8; 32], index: u32 },
}

/// What a fetch request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchResponse {
    /// The manifest's canonical bytes.
    Manifest(Vec<u8>),
    /// One ciphertext chunk.
    Chunk(Vec<u8>),
    /// This node does not hold it.
    NotFound,
    /// Refused (quota exceeded, store error); try again later.
    Refused(String),
}

const TAG_WIRE: u8 = 0;
const TAG_EMPTY: u8 = 1;
const TAG_REFUSED: u8 = 2;
const TAG_MANIFEST: u8 = 3;
const TAG_CHUNK: u8 = 4;
const TAG_NOT_FOUND: u8 = 5;

const REQ_MANIFEST: u8 = 0;
const REQ_CHUNK: u8 = 1;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

async fn read_u8<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<u8> {
    let mut b = [0u8; 1];
    io.read_exact(&mut b).await?;
    Ok(b[0])
}

/// Reads a u32 length prefix, refuses it above `max`, then reads exactly that many bytes.
async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(invalid(format!("frame of {len} bytes; the limit is {max}")));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin>(
    io: &mut T,
    bytes: &[u8],
    max: usize,
) -> io::Result<()> {
    if bytes.len() > max {
        return Err(invalid(format!(
            "refusing to send a frame of {} bytes; the limit is {max}",
            bytes.len()
        )));
    }
    let len = u32::try_from(bytes.len()).map_err(|_| invalid("frame too long"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await
}

async fn read_reason<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<String> {
    let bytes = read_frame(io, MAX_REFUSAL_LEN).await?;
    String::from_utf8(bytes).map_err(|_| invalid("refusal reason is not UTF-8"))
}

fn clip(reason: &str) -> &str {
    if reason.len() <= MAX_REFUSAL_LEN {
        return reason;
    }
    let mut end = MAX_REFUSAL_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or("")
}

/// Checks that nothing follows the frame (a response or request is one frame per stream).
async fn expect_eof<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<()> {
    let mut b = [0u8; 1];
    match io.read(&mut b).await? {
        0 => Ok(()),
        _ => Err(invalid("trailing bytes after the frame")),
    }
}

/// Codec for `/lienthong/relay/1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayCodec;

impl Codec for RelayCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = RelayResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, MAX_WIRE_LEN).await?;
        expect_eof(io).await?;
        Ok(bytes)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<RelayResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let response = match read_u8(io).await? {
            TAG_WIRE => RelayResponse::Wire(read_frame(io, MAX_WIRE_LEN).await?),
            TAG_EMPTY => RelayResponse::Empty,
            TAG_REFUSED => RelayResponse::Refused(read_reason(io).await?),
            tag => return Err(invalid(format!("unknown relay response tag {tag}"))),
        };
        expect_eof(io).await?;
        Ok(response)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, MAX_WIRE_LEN).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: RelayResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match res {
            RelayResponse::Wire(bytes) => {
                io.write_all(&[TAG_WIRE]).await?;
                write_frame(io, &bytes, MAX_WIRE_LEN).await?;
            }
            RelayResponse::Empty => io.write_all(&[TAG_EMPTY]).await?,
            RelayResponse::Refused(reason) => {
                io.write_all(&[TAG_REFUSED]).await?;
                write_frame(io, clip(&reason).as_bytes(), MAX_REFUSAL_LEN).await?;
            }
        }
        io.close().await
    }
}

/// Codec for `/lienthong/fetch/1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchCodec;

impl Codec for FetchCodec {
    type Protocol = StreamProtocol;
    type Request = FetchRequest;
    type Response = FetchResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<FetchRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let tag = read_u8(io).await?;
        let mut manifest = [0u8; 32];
        io.read_exact(&mut manifest).await?;
        let request = match tag {
            REQ_MANIFEST => FetchRequest::Manifest(manifest),
            REQ_CHUNK => {
                let mut index = [0u8; 4];
                io.read_exact(&mut index).await?;
                FetchRequest::Chunk {
                    manifest,
                    index: u32::from_be_bytes(index),
                }
            }
            tag => return Err(invalid(format!("unknown fetch request tag {tag}"))),
        };
        expect_eof(io).await?;
        Ok(request)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<FetchResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let response = match read_u8(io).await? {
            TAG_MANIFEST => FetchResponse::Manifest(read_frame(io, MAX_MANIFEST_LEN).await?),
            TAG_CHUNK => FetchResponse::Chunk(read_frame(io, MAX_FETCH_LEN).await?),
            TAG_NOT_FOUND => FetchResponse::NotFound,
            TAG_REFUSED => FetchResponse::Refused(read_reason(io).await?),
            tag => return Err(invalid(format!("unknown fetch response tag {tag}"))),
        };
        expect_eof(io).await?;
        Ok(response)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: FetchRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            FetchRequest::Manifest(manifest) => {
                io.write_all(&[REQ_MANIFEST]).await?;
                io.write_all(&manifest).await?;
            }
            FetchRequest::Chunk { manifest, index } => {
                io.write_all(&[REQ_CHUNK]).await?;
                io.write_all(&manifest).await?;
                io.write_all(&index.to_be_bytes()).await?;
            }
        }
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: FetchResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match res {
            FetchResponse::Manifest(bytes) => {
                io.write_all(&[TAG_MANIFEST]).await?;
                write_frame(io, &bytes, MAX_MANIFEST_LEN).await?;
            }
            FetchResponse::Chunk(bytes) => {
                io.write_all(&[TAG_CHUNK]).await?;
                write_frame(io, &bytes, MAX_FETCH_LEN).await?;
            }
            FetchResponse::NotFound => io.write_all(&[TAG_NOT_FOUND]).await?,
            FetchResponse::Refused(reason) => {
                io.write_all(&[TAG_REFUSED]).await?;
                write_frame(io, clip(&reason).as_bytes(), MAX_REFUSAL_LEN).await?;
            }
        }
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use futures::executor::block_on;
    use futures::io::Cursor;

    use super::*;

    fn relay_round_trip(res: RelayResponse) {
        let mut buf = Cursor::new(Vec::new());
        block_on(RelayCodec.write_response(&RELAY_PROTOCOL, &mut buf, res.clone())).unwrap();
        let mut rd = Cursor::new(buf.into_inner());
        let got = block_on(RelayCodec.read_response(&RELAY_PROTOCOL, &mut rd)).unwrap();
        assert_eq!(got, res);
    }

    #[test]
    fn relay_frames_round_trip() {
        relay_round_trip(RelayResponse::Wire(vec![1, 2, 3]));
        relay_round_trip(RelayResponse::Empty);
        relay_round_trip(RelayResponse::Refused("busy".into()));
        let mut buf = Cursor::new(Vec::new());
        block_on(RelayCodec.write_request(&RELAY_PROTOCOL, &mut buf, vec![7; 100])).unwrap();
        let mut rd = Cursor::new(buf.into_inner());
        let got = block_on(RelayCodec.read_request(&RELAY_PROTOCOL, &mut rd)).unwrap();
        assert_eq!(got, vec![7; 100]);
    }

    #[test]
    fn oversize_length_is_refused_before_reading() {
        // A length prefix of 4 GiB followed by nothing: refused at once, no allocation.
        let mut rd = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        let err = block_on(RelayCodec.read_request(&RELAY_PROTOCOL, &mut rd)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut rd = Cursor::new(vec![TAG_CHUNK, 0x00, 0x04, 0x00, 0x11]);
        let err = block_on(FetchCodec.read_response(&FETCH_PROTOCOL, &mut rd)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn fetch_frames_round_trip() {
        for req in [
            FetchRequest::Manifest([3; 32]),
            FetchRequest::Chunk {
                manifest: [4; 32],
                index: 11,
            },
        ] {
            let mut buf = Cursor::new(Vec::new());
            block_on(FetchCodec.write_request(&FETCH_PROTOCOL, &mut buf, req)).unwrap();
            let mut rd = Cursor::new(buf.into_inner());
            assert_eq!(
                block_on(FetchCodec.read_request(&FETCH_PROTOCOL, &mut rd)).unwrap(),
                req
            );
        }
        for res in [
            FetchResponse::Manifest(vec![1; 10]),
            FetchResponse::Chunk(vec![2; MAX_FETCH_LEN]),
            FetchResponse::NotFound,
            FetchResponse::Refused("x".repeat(1000)),
        ] {
            let mut buf = Cursor::new(Vec::new());
            block_on(FetchCodec.write_response(&FETCH_PROTOCOL, &mut buf, res.clone())).unwrap();
            let mut rd = Cursor::new(buf.into_inner());
            let got = block_on(FetchCodec.read_response(&FETCH_PROTOCOL, &mut rd)).unwrap();
            match (&res, got) {
                (FetchResponse::Refused(_), FetchResponse::Refused(r)) => {
                    assert_eq!(r.len(), MAX_REFUSAL_LEN)
                }
                (_, got) => assert_eq!(got, res),
            }
        }
    }
}
