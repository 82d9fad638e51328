//! The release mirror on the agent gateway (RFD 0017): plain HTTP/1.1
//! `GET`s on the same pinned TLS listener as the agents' WebSocket, so an
//! agent fetches TUF metadata and binaries over the connection it already
//! trusts to be this server (which keeps them private from the network,
//! not trusted: the agent verifies every byte with its release root).
//!
//! * `GET /agent/v1/releases/metadata/{name}`: `timestamp.json`,
//!   `2.root.json`, ... (at most 1 MiB);
//! * `GET /agent/v1/releases/targets/{path}`: a target file (at most 64 MiB).
//!
//! 200 with the bytes, or 404; one request per connection. No device key
//! is asked for: the files are a public release, and a client gets no
//! more than the internet's copy. At most [`MAX_DOWNLOADS`] are served at
//! once (each holds its file in memory), the rest get 503 and try later.
//!
//! The request head is read before the WebSocket upgrade; any other
//! request goes on to the upgrade with the bytes already read put back in
//! front ([`Prefixed`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bulwark_api::releases::{is_metadata_name, is_target_path};
use bulwark_store::ReleaseFileKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::GatewayState;

/// Largest request head read before deciding (a WebSocket upgrade's is
/// a few hundred bytes).
const MAX_HEAD: usize = 8 << 10;
/// Downloads served at once by one node.
pub const MAX_DOWNLOADS: usize = 8;
/// Time to send one file.
const SEND_TIMEOUT: Duration = Duration::from_secs(600);

/// A stream with bytes already read from it put back in front.
pub struct Prefixed<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(inner: S, head: Vec<u8>) -> Self {
        Self { head, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            if self.at == self.head.len() {
                // The head is replayed once: its memory goes now, not
                // with the connection.
                self.head = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads until the end of the request head (or [`MAX_HEAD`] bytes, or
/// the end of the stream): what was read, which may run past the head.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

/// A release file asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    pub kind: ReleaseFileKind,
    pub path: String,
}

/// The release file a request head asks for, if it is one of the two
/// release routes: `Some(None)` for a name the mirror never has, or
/// another method (answered 404).
pub fn release_request(head: &[u8]) -> Option<Option<ReleaseRequest>> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut words = line.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    let rest = target.strip_prefix("/agent/v1/releases/")?;
    if method != "GET" {
        return Some(None);
    }
    let request = if let Some(name) = rest.strip_prefix("metadata/") {
        is_metadata_name(name).then(|| ReleaseRequest {
            kind: ReleaseFileKind::Metadata,
            path: name.to_owned(),
        })
    } else if let Some(path) = rest.strip_prefix("targets/") {
        is_target_path(path).then(|| ReleaseRequest {
            kind: ReleaseFileKind::Target,
            path: path.to_owned(),
        })
    } else {
        None
    };
    Some(request)
}

/// Answers one release request on its own task (a download may take
/// longer than the handshake's deadline), then closes the connection.
pub fn serve<S>(state: Arc<GatewayState>, stream: S, request: Option<ReleaseRequest>)
where
    S: AsyncWrite + Unpin + Send + 'static,
{
    let permit = state.downloads.clone().try_acquire_owned();
    tokio::spawn(async move {
        let mut stream = stream;
        let answer = match (&permit, request) {
            (Err(_), _) => Err("503 Service Unavailable"),
            (Ok(_), None) => Err("404 Not Found"),
            (Ok(_), Some(request)) => {
                match state.store.release_file(request.kind, &request.path).await {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) => Err("404 Not Found"),
                    Err(error) => {
                        warn!(%error, path = %request.path, "Cannot read a release file.");
                        Err("503 Service Unavailable")
                    }
                }
            }
        };
        let sent = tokio::time::timeout(SEND_TIMEOUT, async {
            match answer {
                Ok(bytes) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        bytes.len()
                    );
                    stream.write_all(head.as_bytes()).await?;
                    stream.write_all(&bytes).await?;
                }
                Err(status) => {
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    stream.write_all(head.as_bytes()).await?;
                }
            }
            stream.shutdown().await
        })
        .await;
        if let Ok(Err(error)) = sent {
            debug!(%error, "A release download ended early.");
        }
        drop(permit);
    });
}

/// The download slots of one gateway.
pub fn download_slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_DOWNLOADS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(head: &str, expect: Option<Option<(&str, &str)>>) {
        let got = release_request(head.as_bytes())
            .map(|r| r.map(|r| (r.kind.as_str().to_owned(), r.path)));
        let expect = expect.map(|r| r.map(|(k, p)| (k.to_owned(), p.to_owned())));
        assert_eq!(got, expect, "{head:?}");
    }

    #[test]
    fn requests_are_recognised() {
        check(
            "GET /agent/v1/releases/metadata/timestamp.json HTTP/1.1\r\nHost: x\r\n\r\n",
            Some(Some(("metadata", "timestamp.json"))),
        );
        check(
            "GET /agent/v1/releases/targets/bulwark-agent/0.2.0/x HTTP/1.1\r\n\r\n",
            Some(Some(("target", "bulwark-agent/0.2.0/x"))),
        );
        check(
            "GET /agent/v1/releases/targets/../x HTTP/1.1\r\n\r\n",
            Some(None),
        );
        check(
            "GET /agent/v1/releases/metadata/x.json HTTP/1.1\r\n\r\n",
            Some(None),
        );
        check(
            "POST /agent/v1/releases/metadata/root.json HTTP/1.1\r\n\r\n",
            Some(None),
        );
        check("GET /agent/v1 HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", None);
        check("GET /agent/v1/releases/metadata/root.json", None);
    }

    #[tokio::test]
    async fn the_head_is_replayed_in_front() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"GET / HTTP/1.1\r\n\r\nrest")
            .await
            .expect("write");
        drop(a);
        let mut b = b;
        let head = read_head(&mut b).await.expect("head");
        let mut all = Vec::new();
        Prefixed::new(b, head)
            .read_to_end(&mut all)
            .await
            .expect("read");
        assert_eq!(all, b"GET / HTTP/1.1\r\n\r\nrest");
    }
}
