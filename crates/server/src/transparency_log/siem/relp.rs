//! A small RELP client (the Reliable Event Logging Protocol, rsyslog's
//! acknowledged syslog transport; `imrelp` on the receiving side).
//!
//! Specification: librelp's `doc/relp.md` ("RELP - The Reliable Event
//! Logging Protocol", R. Gerhards, 2008), with librelp's frame parser
//! (`src/relpframe.c`) for the details the text leaves open:
//!
//! ```text
//! RELP-FRAME = TXNR SP COMMAND SP DATALEN [SP DATA] LF   ; no SP DATA if DATALEN is 0
//! TXNR       = 1*9DIGIT    ; 1, 2, ... 999999999, then 1 again; 0 is for hints
//! COMMAND    = 1*32ALPHA   ; open, syslog, close, rsp; serverclose (hint)
//! DATALEN    = 1*9DIGIT    ; octets in DATA
//! rsp DATA   = RSP-CODE [SP HUMANMSG] [LF CMDDATA]   ; 200 is OK, anything else an error
//! ```
//!
//! The client sends `open` with the offers `relp_version=0` (what librelp
//! and rsyslog speak), `relp_software=bulwark,...` and `commands=syslog`;
//! the answer must be `rsp 200` offering `relp_version` and the `syslog`
//! command. Each message is one `syslog` command; the server answers each
//! command with an `rsp` carrying its TXNR, in the order the commands were
//! received. `close` ends the session. Any framing error, unexpected TXNR,
//! non-200 answer or `serverclose` hint ends the connection; what was not
//! answered `200` counts as not delivered and is sent again.
//!
//! Parsing is bounded: the numbers have at most 9 digits, a command at
//! most 32 letters, and a frame's data at most [`MAX_RESPONSE_DATA`]
//! octets (responses are short: a status and, for `open`, the offers).

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Longest DATA accepted in a frame from the server.
pub const MAX_RESPONSE_DATA: usize = 16 * 1024;
/// Longest TXNR and DATALEN (digits).
const MAX_DIGITS: usize = 9;
/// Longest command name.
const MAX_COMMAND: usize = 32;
/// Largest TXNR; the next one is 1.
pub const MAX_TXNR: u32 = 999_999_999;
/// Most `syslog` commands awaiting their `rsp` (librelp's default window
/// is 128 too).
pub const WINDOW: usize = 128;
/// Longest wait for an answer once a command was sent.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Most offers read from the `open` answer.
const MAX_OFFERS: usize = 32;
/// The frame read buffer's read size.
const READ_CHUNK: usize = 8 * 1024;

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub txnr: u32,
    pub command: String,
    pub data: Vec<u8>,
}

/// Why bytes from the server are not a RELP frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid RELP frame: {0}")]
    Invalid(&'static str),
    #[error("RELP frame data of {0} octets is over the limit of {MAX_RESPONSE_DATA}")]
    TooLong(usize),
}

/// Reads a run of 1 to 9 digits at `buf[*at..]` ending in a non-digit.
/// `Ok(None)`: the buffer ends first.
fn number(buf: &[u8], at: &mut usize) -> Result<Option<u32>, FrameError> {
    let start = *at;
    let mut value: u32 = 0;
    loop {
        let Some(&b) = buf.get(*at) else {
            return if *at - start > MAX_DIGITS {
                Err(FrameError::Invalid("number too long"))
            } else {
                Ok(None)
            };
        };
        if !b.is_ascii_digit() {
            break;
        }
        if *at - start == MAX_DIGITS {
            return Err(FrameError::Invalid("number too long"));
        }
        // At most 9 digits: fits in u32.
        value = value * 10 + u32::from(b - b'0');
        *at += 1;
    }
    if *at == start {
        return Err(FrameError::Invalid("number expected"));
    }
    Ok(Some(value))
}

/// Parses one frame at the start of `buf`: `Ok(Some((frame, used)))`,
/// `Ok(None)` if `buf` holds only the beginning of a valid frame, or an
/// error as soon as it cannot be one.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut at = 0;
    let Some(txnr) = number(buf, &mut at)? else {
        return Ok(None);
    };
    match buf.get(at) {
        None => return Ok(None),
        Some(b' ') => at += 1,
        Some(_) => return Err(FrameError::Invalid("TXNR not followed by a space")),
    }
    let start = at;
    loop {
        match buf.get(at) {
            None if at - start <= MAX_COMMAND => return Ok(None),
            None => return Err(FrameError::Invalid("command too long")),
            Some(b) if b.is_ascii_alphabetic() => {
                if at - start == MAX_COMMAND {
                    return Err(FrameError::Invalid("command too long"));
                }
                at += 1;
            }
            Some(b' ') if at > start => break,
            Some(_) => return Err(FrameError::Invalid("bad command")),
        }
    }
    // Letters only: ASCII.
    let command = String::from_utf8_lossy(&buf[start..at]).into_owned();
    at += 1;
    let Some(len) = number(buf, &mut at)? else {
        return Ok(None);
    };
    let len = len as usize;
    if len > MAX_RESPONSE_DATA {
        return Err(FrameError::TooLong(len));
    }
    let data = if len == 0 {
        Vec::new()
    } else {
        match buf.get(at) {
            None => return Ok(None),
            Some(b' ') => at += 1,
            Some(_) => return Err(FrameError::Invalid("DATALEN not followed by a space")),
        }
        let Some(data) = buf.get(at..at + len) else {
            return Ok(None);
        };
        at += len;
        data.to_vec()
    };
    match buf.get(at) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((
            Frame {
                txnr,
                command,
                data,
            },
            at + 1,
        ))),
        Some(_) => Err(FrameError::Invalid("no LF after the data")),
    }
}

/// An `rsp` frame's data: `(code, human message, command data)`.
pub fn parse_rsp(data: &[u8]) -> Result<(u16, &[u8], &[u8]), FrameError> {
    let (head, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    let code = head
        .get(..3)
        .filter(|d| d.iter().all(u8::is_ascii_digit))
        .ok_or(FrameError::Invalid("rsp without a 3-digit code"))?;
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let human = match head.get(3) {
        None => &head[3..],
        Some(b' ') => &head[4..],
        Some(_) => return Err(FrameError::Invalid("rsp code not followed by a space")),
    };
    Ok((code, human, rest))
}

/// Entry point for the `relp_response` fuzz target: bytes from a RELP
/// receiver (which may be anyone on the path) read as frames and answers.
/// Must never panic.
#[cfg(fuzzing)]
pub fn fuzz_response(mut bytes: &[u8]) {
    while let Ok(Some((frame, used))) = parse_frame(bytes) {
        let _ = parse_rsp(&frame.data);
        let _ = offers(&frame.data);
        bytes = &bytes[used.max(1).min(bytes.len())..];
    }
}

/// Appends one frame from the client.
pub fn encode_frame(txnr: u32, command: &str, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(txnr.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(command.as_bytes());
    out.push(b' ');
    out.extend_from_slice(data.len().to_string().as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// The offers of an `open` answer's command data: `name[=value]` lines.
fn offers(cmddata: &[u8]) -> Vec<(String, String)> {
    cmddata
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .take(MAX_OFFERS)
        .map(|line| {
            let line = String::from_utf8_lossy(line);
            match line.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => (line.into_owned(), String::new()),
            }
        })
        .collect()
}

/// Printable, short text of the server's for error messages.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A RELP session over `S` (a TLS stream in production).
pub struct Client<S> {
    stream: S,
    /// The next TXNR to use.
    txnr: u32,
    /// Received bytes not parsed yet.
    rbuf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Opens a session: `open`, and the answer's offers checked.
    pub async fn open(stream: S) -> anyhow::Result<Self> {
        let mut client = Client {
            stream,
            txnr: 1,
            rbuf: Vec::new(),
        };
        let offer = concat!(
            "relp_version=0\nrelp_software=bulwark,",
            env!("CARGO_PKG_VERSION"),
            "\ncommands=syslog"
        );
        let txnr = client.next_txnr();
        let mut out = Vec::new();
        encode_frame(txnr, "open", offer.as_bytes(), &mut out);
        client.write(&out).await?;
        let data = tokio::time::timeout(ACK_TIMEOUT, client.response(txnr))
            .await
            .context("no answer to RELP open")??;
        let (code, human, cmddata) = parse_rsp(&data)?;
        ensure!(
            code == 200,
            "the RELP receiver refused the session: {code} {}",
            shown(human)
        );
        let offers = offers(cmddata);
        ensure!(
            offers.iter().any(|(name, _)| name == "relp_version"),
            "the RELP receiver's answer to open has no relp_version"
        );
        ensure!(
            offers
                .iter()
                .any(|(name, value)| name == "commands" && value.split(',').any(|c| c == "syslog")),
            "the RELP receiver does not offer the syslog command"
        );
        Ok(client)
    }

    fn next_txnr(&mut self) -> u32 {
        let txnr = self.txnr;
        self.txnr = if txnr >= MAX_TXNR { 1 } else { txnr + 1 };
        txnr
    }

    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        tokio::time::timeout(super::IO_TIMEOUT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .context("writing to the RELP receiver timed out")?
        .context("writing to the RELP receiver failed")
    }

    /// The next frame from the server.
    async fn read_frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.rbuf)? {
                self.rbuf.drain(..used);
                return Ok(frame);
            }
            let mut chunk = [0u8; READ_CHUNK];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .context("reading from the RELP receiver failed")?;
            if n == 0 {
                bail!("the RELP receiver closed the connection");
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The data of the `rsp` to `txnr` (answers come in command order, so
    /// the next answer must be this one). Hints other than `serverclose`
    /// are skipped.
    async fn response(&mut self, txnr: u32) -> anyhow::Result<Vec<u8>> {
        loop {
            let frame = self.read_frame().await?;
            if frame.txnr == 0 {
                ensure!(
                    frame.command != "serverclose",
                    "the RELP receiver is closing the session"
                );
                continue;
            }
            ensure!(
                frame.command == "rsp",
                "the RELP receiver sent a {:?} command",
                frame.command
            );
            ensure!(
                frame.txnr == txnr,
                "the RELP receiver answered transaction {} where {txnr} was due",
                frame.txnr
            );
            return Ok(frame.data);
        }
    }

    /// Sends `messages` as `syslog` commands, at most [`WINDOW`] awaiting
    /// an answer at a time, and returns how many (from the first) were
    /// answered `200`, in order. `on_acked(n)` is called after each window
    /// with the count so far. Fails at the first error, timeout or refusal;
    /// the count reached is in the error's context only through
    /// `on_acked`.
    pub async fn send_all<F, Fut>(
        &mut self,
        messages: &[&[u8]],
        mut on_acked: F,
    ) -> anyhow::Result<usize>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let mut acked = 0;
        for window in messages.chunks(WINDOW) {
            let mut out = Vec::new();
            let mut due = VecDeque::with_capacity(window.len());
            for message in window {
                let txnr = self.next_txnr();
                encode_frame(txnr, "syslog", message, &mut out);
                due.push_back(txnr);
            }
            self.write(&out).await?;
            let waited = tokio::time::timeout(ACK_TIMEOUT, async {
                while let Some(txnr) = due.front().copied() {
                    let data = self.response(txnr).await?;
                    let (code, human, _) = parse_rsp(&data)?;
                    ensure!(
                        code == 200,
                        "the RELP receiver answered {code} {} to a message",
                        shown(human)
                    );
                    due.pop_front();
                    acked += 1;
                }
                anyhow::Ok(())
            })
            .await;
            let outcome = match waited {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!(
                    "the RELP receiver did not answer within {ACK_TIMEOUT:?}"
                )),
            };
            // What was answered before a failure still counts.
            on_acked(acked).await?;
            outcome?;
        }
        Ok(acked)
    }

    /// Ends the session: `close`, its answer awaited briefly, then the
    /// stream shut down.
    pub async fn close(&mut self) {
        let txnr = self.next_txnr();
        let mut out = Vec::new();
        encode_frame(txnr, "close", b"", &mut out);
        if self.write(&out).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.response(txnr)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn frame(txnr: u32, command: &str, data: &[u8]) -> Frame {
        Frame {
            txnr,
            command: command.to_owned(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn frames() {
        assert_eq!(
            parse_frame(b"1 rsp 6 200 OK\n").unwrap(),
            Some((frame(1, "rsp", b"200 OK"), 15))
        );
        assert_eq!(
            parse_frame(b"0 serverclose 0\nrest").unwrap(),
            Some((frame(0, "serverclose", b""), 16))
        );
        // librelp's answer to open (relpSessCBrspOpen), data and all.
        let data = b"200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog";
        let open = &[format!("1 rsp {} ", data.len()).as_bytes(), data, b"\n"].concat();
        let (f, used) = parse_frame(open).unwrap().unwrap();
        assert_eq!(used, open.len());
        let (code, human, cmd) = parse_rsp(&f.data).unwrap();
        assert_eq!((code, human), (200, &b"OK"[..]));
        let offers = offers(cmd);
        assert_eq!(offers[0], ("relp_version".to_owned(), "0".to_owned()));
        assert_eq!(offers[2], ("commands".to_owned(), "syslog".to_owned()));
        // Every proper prefix is incomplete, not wrong.
        for i in 0..open.len() {
            assert_eq!(parse_frame(&open[..i]).unwrap(), None, "prefix {i}");
        }
        // Limits and errors.
        assert!(parse_frame(b"1234567890 rsp 0\n").is_err());
        assert!(parse_frame(b"1234567890").is_err());
        assert!(parse_frame(b"999999999 rsp 0\n").unwrap().is_some());
        assert!(parse_frame(&[b"1 ".as_slice(), &[b'a'; 33]].concat()).is_err());
        assert!(
            parse_frame(&[b"1 ".as_slice(), &[b'a'; 32], b" 0\n"].concat())
                .unwrap()
                .is_some()
        );
        assert_eq!(
            parse_frame(b"1 rsp 16385 ").unwrap_err(),
            FrameError::TooLong(16385)
        );
        assert!(parse_frame(b"1 rsp 999999999 ").is_err());
        assert!(parse_frame(b"1 rsp 0 \n").is_err());
        assert!(parse_frame(b"1 rsp 2 OKX").is_err());
        assert!(parse_frame(b"x rsp 0\n").is_err());
        assert!(parse_frame(b"1  rsp 0\n").is_err());
        assert!(parse_frame(b"1 r5p 0\n").is_err());
        assert!(parse_frame(b"1 rsp x\n").is_err());
        // rsp data.
        assert_eq!(parse_rsp(b"500").unwrap().0, 500);
        assert_eq!(
            parse_rsp(b"500 error").unwrap(),
            (500, &b"error"[..], &b""[..])
        );
        assert!(parse_rsp(b"20").is_err());
        assert!(parse_rsp(b"200OK").is_err());
        assert!(parse_rsp(b"").is_err());
    }

    #[test]
    fn encoding() {
        let mut out = Vec::new();
        encode_frame(7, "syslog", b"<13>1 - - - - - - hi", &mut out);
        encode_frame(8, "close", b"", &mut out);
        assert_eq!(out, b"7 syslog 20 <13>1 - - - - - - hi\n8 close 0\n");
    }

    #[test]
    fn txnr_wraps_to_one() {
        let (a, _b) = tokio::io::duplex(64);
        let mut client = Client {
            stream: a,
            txnr: MAX_TXNR,
            rbuf: Vec::new(),
        };
        assert_eq!(client.next_txnr(), MAX_TXNR);
        assert_eq!(client.next_txnr(), 1);
    }

    /// A fake receiver answering `open` and then `200` to the first
    /// `good` messages and `500` to the rest.
    async fn fake_server(mut stream: tokio::io::DuplexStream, good: usize) -> Vec<Vec<u8>> {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // Client frames parse with the same grammar (their data is
            // small in these tests).
            while let Some((f, used)) = parse_frame(&buf).unwrap() {
                buf.drain(..used);
                let answer: Vec<u8> = match f.command.as_str() {
                    "open" => b"200 OK\nrelp_version=0\ncommands=syslog".to_vec(),
                    "syslog" => {
                        got.push(f.data.clone());
                        if got.len() <= good {
                            b"200 OK".to_vec()
                        } else {
                            b"500 no".to_vec()
                        }
                    }
                    _ => b"200 OK".to_vec(),
                };
                let mut out = Vec::new();
                encode_frame(f.txnr, "rsp", &answer, &mut out);
                if stream.write_all(&out).await.is_err() {
                    return got; // the client went away
                }
            }
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return got;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    #[tokio::test]
    async fn a_session_counts_only_answered_messages() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(fake_server(b, 200));
        let mut client = Client::open(a).await.unwrap();
        let messages: Vec<Vec<u8>> = (0..300).map(|i| format!("m{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let mut reported = Vec::new();
        let error = client
            .send_all(&refs, |n| {
                reported.push(n);
                async { Ok(()) }
            })
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains("500"), "{error:#}");
        // Windows of 128: 128 answered, then 200 (72 of the second), then the refusal.
        assert_eq!(reported, vec![128, 200]);
        drop(client);
        assert_eq!(server.await.unwrap().len(), 256);
    }

    #[tokio::test]
    async fn a_refused_open_fails() {
        let (a, mut b) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            let _ = b.read(&mut chunk).await;
            b.write_all(b"1 rsp 9 500 nope\n").await.unwrap();
        });
        assert!(Client::open(a).await.is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_parse_within_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((f, used))) = parse_frame(&bytes) {
                prop_assert!(used <= bytes.len());
                prop_assert!(f.data.len() <= MAX_RESPONSE_DATA);
                prop_assert!(f.command.len() <= MAX_COMMAND);
                prop_assert!(f.txnr <= MAX_TXNR);
            }
            let _ = parse_rsp(&bytes);
        }

        #[test]
        fn encoded_frames_parse_back(
            txnr in 0u32..=MAX_TXNR,
            command in "[a-zA-Z]{1,32}",
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            tail in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut out = Vec::new();
            encode_frame(txnr, &command, &data, &mut out);
            let len = out.len();
            out.extend_from_slice(&tail);
            let (f, used) = parse_frame(&out).unwrap().unwrap();
            prop_assert_eq!(used, len);
            prop_assert_eq!(f, Frame { txnr, command, data });
            for i in 0..len {
                prop_assert_eq!(parse_frame(&out[..i]).unwrap(), None);
            }
        }
    }
}
