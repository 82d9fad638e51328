//! The grantee's end of a remote shell (RFD 0015): the relay's WebSocket
//! (TLS with the CLI's own roots), the local terminal in raw mode, and the
//! loop that seals keystrokes and opens the device's output.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bulwark_policy::shell::channel::{Channel, ShellInput, ShellOutput};
use bulwark_protocol::message::{AgentMessage, ServerMessage, ShellClose, ShellData};
use bulwark_protocol::{PROTOCOL_VERSION, decode_agent_frame, encode_server_frame};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::client::Session;
use crate::output::Cell;

/// A byte stream the relay's WebSocket runs over: TCP, or TLS over TCP.
pub(crate) trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// The relay's WebSocket, with the session's bearer token: TLS with the
/// CLI's own roots (and the private CA given at login) for https.
pub(crate) async fn connect(session: &Session, path: &str) -> Result<Socket> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = session.server().trim_end_matches('/');
    let (tls, rest) = if let Some(rest) = server.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = server.strip_prefix("http://") {
        (false, rest)
    } else {
        bail!("the server URL {server} is neither http nor https");
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let address = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let url = format!("{}://{rest}{path}", if tls { "wss" } else { "ws" });
    let mut request = url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", session.token()).parse()?,
    );
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(&address),
    )
    .await
    .with_context(|| format!("connecting to {address} timed out"))?
    .with_context(|| format!("cannot connect to {address}"))?;
    let stream: Box<dyn Io> = if tls {
        let config = crate::client::tls_config(session.ca_cert_pem())?;
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        )
        .with_context(|| format!("{host} is not a server name"))?;
        Box::new(
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(name, tcp)
                .await
                .context("TLS with the server failed")?,
        )
    } else {
        Box::new(tcp)
    };
    let (socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .with_context(|| format!("cannot open the relay at {url}"))?;
    Ok(socket)
}

/// What a keystroke stream asks for besides input: leaving.
#[derive(Debug, Default)]
pub(crate) struct Escape {
    at_line_start: bool,
    tilde: bool,
}

impl Escape {
    pub(crate) fn new() -> Self {
        Self {
            at_line_start: true,
            tilde: false,
        }
    }

    /// The bytes to send, and whether the person asked to leave (Ctrl-],
    /// or `~.` at the start of a line). A `~` at a line start is held
    /// until the next byte says what it is.
    pub(crate) fn filter(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == 0x1d {
                return (out, true);
            }
            if self.tilde {
                self.tilde = false;
                if b == b'.' {
                    return (out, true);
                }
                out.push(b'~');
                if b == b'~' {
                    self.at_line_start = false;
                    continue;
                }
            } else if self.at_line_start && b == b'~' {
                self.tilde = true;
                continue;
            }
            out.push(b);
            self.at_line_start = b == b'\r' || b == b'\n';
        }
        (out, false)
    }
}

pub(crate) async fn relay_terminal(
    socket: &mut Socket,
    channel: &mut Channel,
    session_id: [u8; 16],
) -> Result<i32> {
    let limits = bulwark_protocol::Limits::default();
    // Standard input read on a thread of its own (a blocking read: the
    // runtime has no `io-std`), its chunks handed over; an empty one is the end.
    let (stdin_tx, mut stdin_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut stdin = std::io::stdin();
        let mut buffer = vec![0u8; 4096];
        loop {
            let n = stdin.read(&mut buffer).unwrap_or(0);
            if stdin_tx.blocking_send(buffer[..n].to_vec()).is_err() || n == 0 {
                return;
            }
        }
    });
    let mut escape = Escape::new();
    let mut stdin_open = true;
    let mut winch = terminal::resizes();
    let mut stdout = std::io::stdout();
    let send = |channel: &mut Channel, input: &ShellInput| -> Result<Message> {
        let sealed = channel.seal(input).map_err(|e| anyhow::anyhow!("{e}"))?;
        let frame = encode_server_frame(
            PROTOCOL_VERSION,
            &ServerMessage::ShellData(ShellData { session_id, sealed }),
        )?;
        Ok(Message::Binary(frame.into()))
    };
    loop {
        tokio::select! {
            read = stdin_rx.recv(), if stdin_open => {
                let chunk = read.unwrap_or_default();
                if chunk.is_empty() {
                    // Input ended (a pipe): the shell runs on until it exits.
                    stdin_open = false;
                    continue;
                }
                let (bytes, leave) = escape.filter(&chunk);
                if !bytes.is_empty() {
                    socket.send(send(channel, &ShellInput::Data(bytes))?).await?;
                }
                if leave {
                    socket.send(send(channel, &ShellInput::Close)?).await?;
                    let close = encode_server_frame(PROTOCOL_VERSION, &ServerMessage::ShellClose(ShellClose {
                        session_id,
                        reason: "the operator left".into(),
                    }))?;
                    let _ = socket.send(Message::Binary(close.into())).await;
                    eprintln!("\r\nLeft the shell.\r");
                    return Ok(0);
                }
            }
            Some(()) = terminal::next_resize(&mut winch) => {
                let (cols, rows) = terminal::size();
                socket.send(send(channel, &ShellInput::Resize { cols, rows })?).await?;
            }
            next = socket.next() => match next {
                Some(Ok(Message::Binary(bytes))) => match decode_agent_frame(&bytes, &limits)?.message {
                    AgentMessage::ShellData(data) if data.session_id == session_id => {
                        match channel.open::<ShellOutput>(&data.sealed) {
                            Ok(ShellOutput::Data(bytes)) => {
                                stdout.write_all(&bytes)?;
                                stdout.flush()?;
                            }
                            Ok(ShellOutput::Ended { exit_code, reason }) => {
                                eprintln!("\r\nThe shell ended: {}\r", Cell::from(reason.as_str()).text);
                                return Ok(exit_code.unwrap_or(0));
                            }
                            Err(e) => bail!("STOP: a frame from the relay failed the channel's check ({e}): the session is ended"),
                        }
                    }
                    AgentMessage::ShellClosed(closed) => {
                        eprintln!("\r\nThe device ended the session: {}\r", Cell::from(closed.reason.as_str()).text);
                        return Ok(if closed.refusal.is_some() { 1 } else { 0 });
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                    eprintln!("\r\nThe server ended the session: {}\r", Cell::from(reason.as_str()).text);
                    return Ok(1);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => {
                    eprintln!("\r\nThe connection ended.\r");
                    return Ok(1);
                }
            },
        }
    }
}

/// The local terminal: raw mode while the shell runs, its size and resizes.
pub(crate) mod terminal {
    use rustix::termios;

    /// The terminal's size, or 80x24 when standard output is not one.
    pub fn size() -> (u16, u16) {
        match termios::tcgetwinsize(std::io::stdout()) {
            Ok(w) if w.ws_col > 0 && w.ws_row > 0 => (
                w.ws_col.min(bulwark_policy::shell::MAX_TERMINAL_SIZE),
                w.ws_row.min(bulwark_policy::shell::MAX_TERMINAL_SIZE),
            ),
            _ => (80, 24),
        }
    }

    /// Raw mode on standard input while alive (nothing when it is not a terminal).
    pub struct RawMode(Option<termios::Termios>);

    impl RawMode {
        pub fn enter() -> Self {
            let stdin = std::io::stdin();
            if !termios::isatty(&stdin) {
                return Self(None);
            }
            let Ok(saved) = termios::tcgetattr(&stdin) else {
                return Self(None);
            };
            let mut raw = saved.clone();
            raw.make_raw();
            if termios::tcsetattr(&stdin, termios::OptionalActions::Now, &raw).is_err() {
                return Self(None);
            }
            Self(Some(saved))
        }
    }

    impl Drop for RawMode {
        fn drop(&mut self) {
            if let Some(saved) = &self.0 {
                let _ = termios::tcsetattr(std::io::stdin(), termios::OptionalActions::Now, saved);
            }
        }
    }

    /// Window size changes (SIGWINCH), when they can be listened for.
    pub fn resizes() -> Option<tokio::signal::unix::Signal> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    }

    pub async fn next_resize(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
        match signal {
            Some(signal) => signal.recv().await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaving_takes_ctrl_bracket_or_tilde_dot_at_a_line_start() {
        let mut e = Escape::new();
        assert_eq!(e.filter(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(e.filter(b"~."), (Vec::new(), true));
        let mut e = Escape::new();
        assert_eq!(e.filter(b"a~.b"), (b"a~.b".to_vec(), false));
        assert_eq!(e.filter(b"\x1d"), (Vec::new(), true));
        // A held tilde goes out once the next byte shows it was not an escape.
        let mut e = Escape::new();
        assert_eq!(e.filter(b"~"), (Vec::new(), false));
        assert_eq!(e.filter(b"x"), (b"~x".to_vec(), false));
        let mut e = Escape::new();
        assert_eq!(e.filter(b"~~."), (b"~.".to_vec(), false));
    }
}
