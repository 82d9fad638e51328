//! A job while it runs (protocol version 3, RFD 0012): the link between the
//! job runner and the connection that streams its start and output, and
//! the server's cancels.
//!
//! Live output is best effort and never spooled: the result stays the
//! record. Pieces go only while a version 3 connection is attached; a piece
//! that cannot go (no such connection, or its queue full) is counted and
//! sent as `skipped` with the next piece of its stream, so the reader knows
//! what is missing and where.
//!
//! A cancel can only make less run: a job not started yet is answered
//! `cancelled` and not recorded as run; a running script's process group
//! is killed, except an install-patches run (apt and dpkg killed midway
//! leave packages half configured: it finishes, and its result says what
//! it did). A cancel for a job this agent does not hold is ignored, so the
//! server cannot grow the set.

use super::*;

/// Messages waiting for the connection: start notices and output pieces.
const LIVE_QUEUE: usize = 64;
/// How long a piece waits for room in the queue before it is counted as
/// skipped instead.
const SEND_WAIT: Duration = Duration::from_millis(500);
/// How long a finished run waits for its last pieces to be taken.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Shared by the runner (which sends) and the sessions (which take).
#[derive(Clone)]
pub struct LiveLink {
    tx: mpsc::Sender<bulwark_protocol::message::AgentMessage>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<bulwark_protocol::message::AgentMessage>>>,
    /// A version 3 connection takes the messages now.
    attached: Arc<std::sync::atomic::AtomicBool>,
    /// Jobs the server cancelled, held (queued or running) when it did.
    cancels: Arc<Mutex<HashSet<[u8; 16]>>>,
}

impl Default for LiveLink {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(LIVE_QUEUE);
        Self {
            tx,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            attached: Arc::default(),
            cancels: Arc::default(),
        }
    }
}

/// A version 3 connection's hold on the link; detaches when dropped.
pub struct Attached {
    link: LiveLink,
    rx: tokio::sync::OwnedMutexGuard<mpsc::Receiver<bulwark_protocol::message::AgentMessage>>,
}

impl Attached {
    /// The next message to send.
    pub async fn next(&mut self) -> Option<bulwark_protocol::message::AgentMessage> {
        self.rx.recv().await
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.link.attached.store(false, Ordering::SeqCst);
    }
}

impl LiveLink {
    /// Attaches a connection: what was queued for an earlier one is dropped
    /// (late start notices and pieces mean nothing now).
    pub async fn attach(&self) -> Attached {
        let mut rx = self.rx.clone().lock_owned().await;
        while rx.try_recv().is_ok() {}
        self.attached.store(true, Ordering::SeqCst);
        Attached {
            link: self.clone(),
            rx,
        }
    }

    /// Queues a message if a connection takes them, waiting a little for
    /// room (the connection's pace); false if it was not queued.
    pub(super) async fn send(&self, message: bulwark_protocol::message::AgentMessage) -> bool {
        if !self.attached.load(Ordering::SeqCst) {
            return false;
        }
        matches!(
            tokio::time::timeout(SEND_WAIT, self.tx.send(message)).await,
            Ok(Ok(()))
        )
    }

    /// Waits (a little) until the connection took everything queued, so
    /// that a run's last pieces go before its result.
    pub(super) async fn flush(&self) {
        let deadline = tokio::time::Instant::now() + FLUSH_WAIT;
        while self.attached.load(Ordering::SeqCst)
            && self.tx.capacity() < self.tx.max_capacity()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(super) fn cancel(&self, job_id: [u8; 16]) {
        self.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(job_id);
    }

    pub(super) fn is_cancelled(&self, job_id: &[u8; 16]) -> bool {
        self.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(job_id)
    }

    pub(super) fn forget(&self, job_id: &[u8; 16]) {
        self.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(job_id);
    }
}

/// What a run streams to and hears from the link.
pub(super) struct Watch<'a> {
    pub(super) link: &'a LiveLink,
    /// Killed on a cancel (not an apt run).
    pub(super) cancellable: bool,
    /// Most output bytes streamed, both streams together.
    pub(super) max_bytes: usize,
    /// Largest piece.
    pub(super) max_piece: usize,
}

/// One stream's progress.
#[derive(Default)]
struct StreamState {
    offset: u64,
    /// Bytes not sent since the last piece that went.
    skipped: u64,
}

/// Streams a run's output files as they grow.
pub(super) struct Streamer<'a> {
    watch: Watch<'a>,
    job_id: [u8; 16],
    seq: u64,
    sent: usize,
    streams: [StreamState; 2],
}

/// The longest prefix of `piece` that does not end inside a UTF-8
/// sequence (unless that would be nothing: then all of it).
fn utf8_cut(piece: &[u8]) -> usize {
    match std::str::from_utf8(piece) {
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
        _ => piece.len(),
    }
}

impl<'a> Streamer<'a> {
    pub(super) fn new(watch: Watch<'a>, job_id: [u8; 16]) -> Self {
        Self {
            watch,
            job_id,
            seq: 0,
            sent: 0,
            streams: Default::default(),
        }
    }

    pub(super) async fn started(&self, started_at_ms: u64) {
        self.watch
            .link
            .send(AgentMessage::JobStarted(JobStarted {
                job_id: self.job_id,
                started_at_ms,
            }))
            .await;
    }

    /// At the end of a run: its last pieces go before its result.
    pub(super) async fn flush(&self) {
        self.watch.link.flush().await;
    }

    /// Whether the server cancelled this run and it may be killed.
    pub(super) fn kill_requested(&self) -> bool {
        self.watch.cancellable && self.watch.link.is_cancelled(&self.job_id)
    }

    /// Sends what the files gained since the last call (at most a few
    /// pieces per stream per call); at `last`, also says how much of each
    /// stream was never sent.
    pub(super) async fn pump(&mut self, files: &RunFiles, last: bool) {
        for (i, (path, stream)) in [
            (&files.stdout, OutputStream::Stdout),
            (&files.stderr, OutputStream::Stderr),
        ]
        .into_iter()
        .enumerate()
        {
            let Ok(mut file) = File::open(path) else {
                continue;
            };
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut pieces = 0;
            while self.streams[i].offset < size && (last || pieces < 8) {
                let room = self.watch.max_bytes.saturating_sub(self.sent);
                if room == 0 {
                    // Past the cap: counted, never read.
                    self.streams[i].skipped += size - self.streams[i].offset;
                    self.streams[i].offset = size;
                    break;
                }
                let want = usize::try_from(size - self.streams[i].offset)
                    .unwrap_or(usize::MAX)
                    .min(self.watch.max_piece)
                    .min(room);
                let mut buf = vec![0; want];
                if file
                    .seek(io::SeekFrom::Start(self.streams[i].offset))
                    .and_then(|_| file.read_exact(&mut buf))
                    .is_err()
                {
                    break;
                }
                let cut = if want == self.watch.max_piece {
                    utf8_cut(&buf)
                } else {
                    want
                };
                buf.truncate(cut);
                self.streams[i].offset += cut as u64;
                self.sent += cut;
                pieces += 1;
                self.piece(i, stream, buf).await;
            }
            if last && self.streams[i].skipped > 0 {
                self.piece(i, stream, Vec::new()).await;
            }
        }
    }

    async fn piece(&mut self, i: usize, stream: OutputStream, data: Vec<u8>) {
        let len = data.len() as u64;
        let message = AgentMessage::JobOutput(JobOutput {
            job_id: self.job_id,
            seq: self.seq,
            stream,
            data,
            skipped: self.streams[i].skipped,
        });
        if self.watch.link.send(message).await {
            self.seq += 1;
            self.streams[i].skipped = 0;
        } else {
            self.streams[i].skipped += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cancel kills a script but never an apt run (RFD 0012): dpkg stopped
    /// midway leaves packages half configured.
    #[test]
    fn a_cancel_never_kills_a_patch_run() {
        let link = LiveLink::default();
        let watch = |cancellable| Watch {
            link: &link,
            cancellable,
            max_bytes: 1024,
            max_piece: 16,
        };
        let script = Streamer::new(watch(true), [1; 16]);
        let patches = Streamer::new(watch(false), [1; 16]);
        assert!(!script.kill_requested() && !patches.kill_requested());
        link.cancel([1; 16]);
        assert!(script.kill_requested());
        assert!(!patches.kill_requested());
        link.forget(&[1; 16]);
        assert!(!script.kill_requested());
    }

    /// Without a version 3 connection nothing is queued: the bytes are
    /// counted as skipped and said with the next piece that goes.
    #[tokio::test]
    async fn pieces_that_cannot_go_become_skipped_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = RunFiles::new(dir.path(), "job");
        std::fs::write(&files.stdout, b"0123456789").expect("write");
        std::fs::write(&files.stderr, b"").expect("write");
        let link = LiveLink::default();
        let mut streamer = Streamer::new(
            Watch {
                link: &link,
                cancellable: true,
                max_bytes: 1024,
                max_piece: 4,
            },
            [2; 16],
        );
        streamer.pump(&files, false).await;
        let mut attached = link.attach().await;
        std::fs::write(&files.stdout, b"0123456789ab").expect("write");
        streamer.pump(&files, true).await;
        let Some(AgentMessage::JobOutput(piece)) = attached.next().await else {
            panic!("a piece");
        };
        assert_eq!(
            (piece.seq, piece.skipped, piece.data.as_slice()),
            (0, 10, &b"ab"[..])
        );
    }

    #[test]
    fn pieces_do_not_end_inside_a_character() {
        assert_eq!(utf8_cut(b"abc"), 3);
        assert_eq!(utf8_cut("aé".as_bytes()), 3);
        // "é" is two bytes: a piece ending after the first stops before it.
        assert_eq!(utf8_cut(&"aé".as_bytes()[..2]), 1);
        // Not text at all: sent as it is.
        assert_eq!(utf8_cut(&[0xff, 0xfe]), 2);
        assert_eq!(utf8_cut(&[0xc3]), 1);
    }
}
