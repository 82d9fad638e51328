//! One live shell session: the PTY, the sealed channel and the recording
//! (RFD 0015 section 5). The session ends at the grant's expiry on this
//! agent's clock, at the client's `Close`, at a revocation or the server's
//! close, when the shell exits, when a frame fails the channel, or when
//! the connection it was opened through ends.

use std::time::{Duration, Instant};

use bulwark_policy::shell::channel::{Channel, MAX_SHELL_FRAME, ShellInput, ShellOutput};
use bulwark_protocol::message::{
    AgentMessage, AgentRefusalCode, RecordingDigest, ShellClosed, ShellData, ShellRecording,
};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::notice::{self, Moment};
use super::pty::Pty;
use super::recording::{MAX_RECORDING_BYTES, Recording};
use super::wall;

/// What the connection passes on to a session.
#[derive(Debug)]
pub enum Event {
    /// A sealed frame from the client.
    Data(Vec<u8>),
    /// The server closed the relay (no refusal), or the grant was revoked.
    End {
        refusal: Option<AgentRefusalCode>,
        reason: String,
    },
}

/// Most sealed input frames a second before the session waits (keystrokes
/// come far slower; a paste of 16 KiB frames does not).
const INPUT_FRAMES_PER_SEC: u32 = 200;

pub struct Session {
    pub session_id: [u8; 16],
    pub channel: Channel,
    pub pty: Pty,
    pub recording: Recording,
    /// How long until the grant expires, from the open.
    pub remaining: Duration,
    /// What the logged-in users are told; `None` when the policy asks nothing.
    pub notices: Option<Notices>,
}

/// The notices of one session, as the policy verified at its open set them.
pub struct Notices {
    pub setting: bulwark_policy::shell::ShellNotice,
    pub facts: notice::NoticeFacts,
    pub terminals: wall::NoticeTerminals,
}

impl Notices {
    /// Writes the notice for `moment` if the setting asks for it, off the
    /// runtime, and logs how far it got.
    async fn send(&self, session_id: [u8; 16], moment: Moment, lasted_secs: u64) {
        if !notice::wanted(Some(&self.setting), moment) {
            return;
        }
        let text = match moment {
            Moment::Start => notice::opened(&self.facts),
            Moment::End => notice::closed(&self.facts, lasted_secs),
        };
        let terminals = self.terminals.clone();
        let Ok(delivery) =
            tokio::task::spawn_blocking(move || wall::deliver(&terminals, &text)).await
        else {
            warn!(session = %hex::encode(session_id), "The shell notice could not be sent.");
            return;
        };
        for (terminal, error) in &delivery.failed {
            warn!(session = %hex::encode(session_id), %terminal, %error, "A shell notice did not reach a terminal.");
        }
        info!(
            session = %hex::encode(session_id),
            moment = ?moment,
            terminals = delivery.written,
            failed = delivery.failed.len(),
            refused_lines = delivery.refused,
            "Shell notice sent to the logged-in users."
        );
    }
}

/// Runs a session to its end and reports it: a sealed `Ended`, then
/// `ShellClosed` with the recording's digest, then the recording in pieces.
pub async fn run(
    mut session: Session,
    mut events: mpsc::Receiver<Event>,
    out: mpsc::Sender<AgentMessage>,
) {
    let session_id = session.session_id;
    if let Some(notices) = &session.notices {
        notices.send(session_id, Moment::Start, 0).await;
    }
    let started = Instant::now();
    let expiry = tokio::time::sleep(session.remaining);
    tokio::pin!(expiry);
    // Room for the CBOR around the bytes: a full read must still seal.
    let mut buf = vec![0; MAX_SHELL_FRAME - 64];
    let mut window = (Instant::now(), 0u32);
    let (exit_code, refusal, reason) = loop {
        tokio::select! {
            read = session.pty.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let exit = session.pty.wait().await;
                    break (exit, None, "the shell exited".to_owned());
                }
                Ok(n) => {
                    session.recording.output(started.elapsed().as_secs_f64(), &buf[..n]);
                    let Ok(sealed) = session.channel.seal(&ShellOutput::Data(buf[..n].to_vec())) else {
                        break (None, Some(AgentRefusalCode::AgentError), "the channel cannot seal more".to_owned());
                    };
                    if out.send(AgentMessage::ShellData(ShellData { session_id, sealed })).await.is_err() {
                        break (None, None, "the connection ended".to_owned());
                    }
                }
            },
            event = events.recv() => match event {
                None => break (None, None, "the connection ended".to_owned()),
                Some(Event::End { refusal, reason }) => break (None, refusal, reason),
                Some(Event::Data(sealed)) => {
                    if window.0.elapsed() >= Duration::from_secs(1) {
                        window = (Instant::now(), 0);
                    }
                    window.1 += 1;
                    if window.1 > INPUT_FRAMES_PER_SEC {
                        tokio::time::sleep_until((window.0 + Duration::from_secs(1)).into()).await;
                    }
                    match session.channel.open::<ShellInput>(&sealed) {
                        Ok(ShellInput::Data(keys)) => {
                            session.recording.input(started.elapsed().as_secs_f64(), &keys);
                            if session.pty.write_all(&keys).await.is_err() {
                                let exit = session.pty.wait().await;
                                break (exit, None, "the shell exited".to_owned());
                            }
                        }
                        Ok(ShellInput::Resize { cols, rows }) => {
                            let size = 1..=bulwark_policy::shell::MAX_TERMINAL_SIZE;
                            if size.contains(&cols) && size.contains(&rows) {
                                let _ = session.pty.resize(cols, rows);
                            }
                        }
                        Ok(ShellInput::Close) => break (None, None, "the operator closed the session".to_owned()),
                        Err(error) => {
                            warn!(session = %hex::encode(session_id), %error, "A shell frame failed the channel; the session ends.");
                            break (None, Some(AgentRefusalCode::BadSignature), format!("a frame failed the channel: {error}"));
                        }
                    }
                }
            },
            () = &mut expiry => break (None, Some(AgentRefusalCode::Expired), "the grant expired".to_owned()),
        }
    };
    session.pty.kill().await;
    info!(session = %hex::encode(session_id), %reason, "Shell session ended.");
    if let Some(notices) = &session.notices {
        notices
            .send(session_id, Moment::End, started.elapsed().as_secs())
            .await;
    }
    // The client learns why, sealed (the server cannot forge this either).
    if let Ok(sealed) = session.channel.seal(&ShellOutput::Ended {
        exit_code,
        reason: reason.clone(),
    }) {
        let _ = out
            .send(AgentMessage::ShellData(ShellData { session_id, sealed }))
            .await;
    }
    session.channel.end();
    let finished = session.recording.finish();
    let closed = ShellClosed {
        session_id,
        refusal,
        reason,
        recording: Some(RecordingDigest {
            sha256: finished.sha256,
            len: finished.bytes.len() as u64,
            truncated: finished.truncated,
        }),
    };
    if out.send(AgentMessage::ShellClosed(closed)).await.is_err() {
        return;
    }
    let piece = bulwark_protocol::Limits::default().max_output_chunk_bytes;
    for (i, data) in finished.bytes.chunks(piece).enumerate() {
        let message = AgentMessage::ShellRecording(ShellRecording {
            session_id,
            offset: (i * piece) as u64,
            data: data.to_vec(),
        });
        if out.send(message).await.is_err() {
            return;
        }
    }
}

/// A new recording for a session opened now.
pub fn recording(cols: u16, rows: u16, unix_secs: u64) -> Recording {
    Recording::new(cols, rows, unix_secs, MAX_RECORDING_BYTES)
}
