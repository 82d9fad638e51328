//! SIEM export of the transparency logs (RFD 0003, "SIEM export").
//!
//! One task per configured sink. Each loops over every log (the MSP log and
//! one per tenant), reads entries from the sink's cursor (table
//! `siem_cursors`, by sink name and log id) in batches, sends them, and
//! moves the cursor only once the sink acknowledged the batch:
//!
//! - `ndjson_file`: the lines are written and the file `fsync`ed;
//! - `ndjson_http`: the POST was answered 2xx;
//! - `relp` (RFC 5424 over RELP over TLS, [`relp`]): each message is a
//!   RELP `syslog` command that the receiver answers `rsp 200`; the cursor
//!   moves past exactly the entries answered `200` (after each window of
//!   [`relp::WINDOW`] messages, and before giving up on a failed one). No
//!   answer within [`relp::ACK_TIMEOUT`] is a failure. The recommended
//!   syslog sink;
//! - `syslog` (RFC 5424 over TLS, RFC 5425 framing): the protocol has no
//!   acknowledgement, so a batch counts once it was written and flushed
//!   *and* the connection was still open [`SYSLOG_SETTLE`] later (checked
//!   before each pass). A receiver that went away in between shows up as
//!   end-of-stream or a reset, and the batch is sent again. A receiver
//!   that froze (stopped reading but kept the connection) and was then
//!   killed loses what it had not yet read: nothing tells the sender.
//!
//! On any failure the task drops the connection, waits (exponential
//! backoff, capped at [`BACKOFF_CAP`]) and starts again from the stored
//! cursors: delivery is at least once. Entries below a cursor are never
//! sent again (cursors only move forward); duplicates are possible only for
//! the batches in flight when a failure or a crash hit. The file sink
//! removes even those: at start it reads its file's last line and, if that
//! entry is past the cursor (the crash came between `fsync` and the cursor
//! update), moves the cursor there, and it cuts a partly written last line.
//!
//! Nothing is recorded in the audit log per batch (that would feed itself);
//! `siem.sink_failed` is recorded once per outage of a sink.

pub mod format;
pub mod relp;

use bulwark_store::AuditAction;
use std::collections::HashMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bulwark_store::{AuditLeaf, LogEntry, Store};
use futures_util::FutureExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::{debug, info, warn};

use crate::config::{NdjsonFileSink, NdjsonHttpSink, SiemSink, SyslogSink};

/// Entries read (and sent) at a time.
pub const BATCH_ENTRIES: u32 = 500;
/// A batch stops growing past this many bytes (one entry always goes).
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// How often each sink looks for new entries once it caught up.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// First wait after a failure; doubled on each failure in a row.
pub const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest wait between attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// How long a syslog connection must stay open after a batch was flushed
/// for the batch to count as delivered.
pub const SYSLOG_SETTLE: Duration = Duration::from_secs(1);
/// Connect, handshake, write and HTTP request timeout.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Logs (and cursors) read per query.
const LOG_PAGE: u32 = 1000;
/// Longest CA file read.
const MAX_CA_FILE: u64 = 1 << 20;
/// Longest last line of an NDJSON file read back at start.
const MAX_TAIL_LINE: u64 = 8 << 20;
/// Longest `detail` of a `siem.sink_failed` event.
const MAX_FAILURE_DETAIL: usize = 300;

/// A sink ready to run: its configuration checked and its TLS material
/// loaded.
#[derive(Clone)]
struct Prepared {
    name: String,
    kind: Kind,
}

/// A syslog receiver over TLS (plain RFC 5425 or RELP).
#[derive(Clone)]
struct TlsTarget {
    address: String,
    server_name: rustls::pki_types::ServerName<'static>,
    connector: TlsConnector,
    facility: u8,
    hostname: String,
}

#[derive(Clone)]
enum Kind {
    Syslog(TlsTarget),
    Relp(TlsTarget),
    File {
        path: PathBuf,
    },
    Http {
        url: String,
        token: Option<String>,
        client: reqwest::Client,
    },
}

/// Checks every sink and loads what it needs (CA files), then spawns one
/// export duty per sink (`siem:<name>`, one node at a time, RFD 0018) on
/// `tasks`; they end at shutdown. Fails, starting nothing, if a sink
/// cannot be prepared.
pub fn spawn(
    store: &Store,
    sinks: &[SiemSink],
    duties: &crate::duties::Duties,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let prepared = sinks
        .iter()
        .map(prepare)
        .collect::<anyhow::Result<Vec<_>>>()?;
    for sink in prepared {
        info!(sink = %sink.name, kind = sink.kind.label(), "SIEM export started.");
        let store = store.clone();
        let duty = format!("siem:{}", sink.name);
        duties.spawn(tasks, &duty, move |shutdown, _| {
            Exporter {
                store: store.clone(),
                sink: sink.clone(),
                shutdown,
                backoff: BACKOFF_START,
                failing: false,
            }
            .run()
        });
    }
    Ok(())
}

impl Kind {
    fn label(&self) -> &'static str {
        match self {
            Kind::Syslog(_) => "syslog",
            Kind::Relp(_) => "relp",
            Kind::File { .. } => "ndjson_file",
            Kind::Http { .. } => "ndjson_http",
        }
    }
}

fn prepare(sink: &SiemSink) -> anyhow::Result<Prepared> {
    sink.validate()?;
    let name = sink.name().to_owned();
    let kind = match sink {
        SiemSink::Syslog(s) => Kind::Syslog(prepare_syslog(s)?),
        SiemSink::Relp(s) => Kind::Relp(prepare_syslog(s)?),
        SiemSink::NdjsonFile(NdjsonFileSink { path, .. }) => Kind::File { path: path.clone() },
        SiemSink::NdjsonHttp(s) => prepare_http(s)?,
    };
    Ok(Prepared { name, kind })
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one), read with a size limit.
fn read_ca_file(path: &Path) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the CA file {}", path.display()))?;
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE + 1)
        .read_to_end(&mut pem)
        .with_context(|| format!("cannot read the CA file {}", path.display()))?;
    ensure!(
        pem.len() as u64 <= MAX_CA_FILE,
        "the CA file {} is larger than {MAX_CA_FILE} bytes",
        path.display()
    );
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the CA file {} is not valid PEM", path.display()))?;
    ensure!(
        !certs.is_empty(),
        "the CA file {} holds no PEM CERTIFICATE block",
        path.display()
    );
    Ok(certs)
}

fn roots_from(path: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_ca_file(path)? {
        roots
            .add(cert)
            .with_context(|| format!("{} holds an unusable certificate", path.display()))?;
    }
    Ok(roots)
}

fn prepare_syslog(s: &SyslogSink) -> anyhow::Result<TlsTarget> {
    let roots = roots_from(&s.ca_file)?;
    let config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(s.server_name.clone())
        .with_context(|| format!("server_name {:?}", s.server_name))?;
    let hostname = match &s.hostname {
        Some(h) => format::hostname_field(h),
        None => format::hostname_field(&machine_hostname()),
    };
    Ok(TlsTarget {
        address: s.address.clone(),
        server_name,
        connector: TlsConnector::from(Arc::new(config)),
        facility: s.facility.code(),
        hostname,
    })
}

/// This machine's host name (Linux), or `-`.
fn machine_hostname() -> String {
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(file) = std::fs::File::open(path) {
            let mut text = String::new();
            if file.take(256).read_to_string(&mut text).is_ok() && !text.trim().is_empty() {
                return text.trim().to_owned();
            }
        }
    }
    "-".to_owned()
}

fn prepare_http(s: &NdjsonHttpSink) -> anyhow::Result<Kind> {
    let extra = match &s.ca_file {
        Some(path) => read_ca_file(path)?,
        None => Vec::new(),
    };
    let client = crate::tls::https_client(
        extra,
        concat!("bulwark-siem/", env!("CARGO_PKG_VERSION")),
        IO_TIMEOUT,
    )?;
    Ok(Kind::Http {
        url: s.url.clone(),
        token: s.token.clone(),
        client,
    })
}

impl TlsTarget {
    async fn connect(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let address = &self.address;
        let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(address.as_str()))
            .await
            .context("connecting timed out")?
            .with_context(|| format!("cannot connect to {address}"))?;
        tcp.set_nodelay(true)?;
        tokio::time::timeout(
            IO_TIMEOUT,
            self.connector.connect(self.server_name.clone(), tcp),
        )
        .await
        .context("TLS handshake timed out")?
        .with_context(|| format!("TLS handshake with {address} failed"))
    }
}

/// One sink's export loop.
struct Exporter {
    store: Store,
    sink: Prepared,
    shutdown: watch::Receiver<bool>,
    backoff: Duration,
    /// An outage is in progress (its `siem.sink_failed` was recorded).
    failing: bool,
}

/// A connection to a sink, for one session (until the first failure).
enum Conn {
    Syslog {
        stream: Box<TlsStream<TcpStream>>,
        facility: u8,
        hostname: String,
        /// Flushed batches waiting to settle: (log id, next index, when).
        pending: Vec<(String, u64, Instant)>,
    },
    Relp {
        client: Box<relp::Client<TlsStream<TcpStream>>>,
        facility: u8,
        hostname: String,
    },
    File {
        file: tokio::fs::File,
    },
    Http {
        client: reqwest::Client,
        url: String,
        token: Option<String>,
    },
}

/// What sending a batch did.
enum Sent {
    /// The sink acknowledged it: the cursor may move.
    Acknowledged,
    /// Written, waiting to settle (syslog).
    InFlight,
    /// Acknowledged, and the cursor already moved (RELP).
    Recorded,
}

impl Exporter {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    async fn run(mut self) {
        loop {
            if self.stopping() {
                break;
            }
            let error = match self.session().await {
                Ok(()) => break,
                Err(error) => error,
            };
            warn!(
                sink = %self.sink.name,
                error = format!("{error:#}"),
                retry_in = ?self.backoff,
                "SIEM export failed; will resend from the stored cursor."
            );
            if !self.failing {
                self.failing = true;
                let mut detail = format!("{error:#}");
                if detail.len() > MAX_FAILURE_DETAIL {
                    let mut end = MAX_FAILURE_DETAIL;
                    while !detail.is_char_boundary(end) {
                        end -= 1;
                    }
                    detail.truncate(end);
                }
                let event = bulwark_store::NewAuditEvent::new(
                    crate::now_millis(),
                    "server",
                    AuditAction::SiemSinkFailed,
                    &self.sink.name,
                )
                .with_detail(detail);
                self.store.record_event(event).await;
            }
            let wait = self.backoff;
            self.backoff = (self.backoff * 2).min(BACKOFF_CAP);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.changed() => {}
            }
        }
        info!(sink = %self.sink.name, "SIEM export stopped.");
    }

    /// Connects and exports until shutdown (`Ok`) or the first failure.
    async fn session(&mut self) -> anyhow::Result<()> {
        let mut conn = self.connect().await?;
        // What the sink acknowledged (from the store), and what this
        // session sent (acknowledged or in flight), per log.
        let mut acked = self.load_cursors().await?;
        if let Conn::File { file } = &mut conn {
            self.recover_file_tail(file, &mut acked).await?;
        }
        let mut sent = acked.clone();
        loop {
            let busy = self.pass(&mut conn, &mut acked, &mut sent).await?;
            if self.stopping() {
                self.close(&mut conn, &mut acked).await;
                return Ok(());
            }
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = self.shutdown.changed() => {}
                }
            }
        }
    }

    async fn load_cursors(&self) -> anyhow::Result<HashMap<String, u64>> {
        let mut cursors = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .siem_cursors(&self.sink.name, after.as_deref(), LOG_PAGE)
                .await?;
            let full = page.len() == LOG_PAGE as usize;
            after = page.last().map(|(log, _)| log.clone());
            cursors.extend(page);
            if !full {
                return Ok(cursors);
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<Conn> {
        match &self.sink.kind {
            Kind::Syslog(target) => {
                let stream = target.connect().await?;
                info!(sink = %self.sink.name, address = %target.address, "Connected to the syslog receiver.");
                Ok(Conn::Syslog {
                    stream: Box::new(stream),
                    facility: target.facility,
                    hostname: target.hostname.clone(),
                    pending: Vec::new(),
                })
            }
            Kind::Relp(target) => {
                let stream = target.connect().await?;
                let client = relp::Client::open(stream)
                    .await
                    .with_context(|| format!("opening a RELP session with {}", target.address))?;
                info!(sink = %self.sink.name, address = %target.address, "Connected to the RELP receiver.");
                Ok(Conn::Relp {
                    client: Box::new(client),
                    facility: target.facility,
                    hostname: target.hostname.clone(),
                })
            }
            Kind::File { path } => {
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .read(true)
                    .mode(0o600)
                    .open(path)
                    .await
                    .with_context(|| format!("cannot open {}", path.display()))?;
                Ok(Conn::File { file })
            }
            Kind::Http { url, token, client } => Ok(Conn::Http {
                client: client.clone(),
                url: url.clone(),
                token: token.clone(),
            }),
        }
    }

    /// The file's last complete line names the last entry written. If it
    /// is past the stored cursor, the previous run stopped between `fsync`
    /// and moving the cursor: move it now instead of writing the batch
    /// twice. A partly written last line (a crash mid-write) is cut.
    async fn recover_file_tail(
        &self,
        file: &mut tokio::fs::File,
        acked: &mut HashMap<String, u64>,
    ) -> anyhow::Result<()> {
        let std_file = file.try_clone().await?.into_std().await;
        let last = tokio::task::spawn_blocking(move || tail_line(std_file)).await??;
        let Some(line) = last else { return Ok(()) };
        #[derive(serde::Deserialize)]
        struct Position {
            log: String,
            idx: u64,
        }
        let Ok(position) = serde_json::from_slice::<Position>(&line) else {
            warn!(sink = %self.sink.name, "The last line of the NDJSON file is not an export line; not reading it.");
            return Ok(());
        };
        let next = position.idx.saturating_add(1);
        if acked.get(&position.log).copied().unwrap_or(0) < next {
            match self
                .store
                .advance_siem_cursor(&self.sink.name, &position.log, next, crate::now_millis())
                .await
            {
                Ok(stored) => {
                    info!(sink = %self.sink.name, log = %position.log, next = stored,
                        "The NDJSON file already held entries past the cursor; cursor moved.");
                    acked.insert(position.log, stored);
                }
                // A line naming an entry the log does not have: not ours.
                Err(bulwark_store::StoreError::Invalid(_)) => {
                    warn!(sink = %self.sink.name, "The last line of the NDJSON file names an entry beyond its log.");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// One pass over every log. Returns true if it sent a full batch (more
    /// may be waiting: go again at once).
    async fn pass(
        &mut self,
        conn: &mut Conn,
        acked: &mut HashMap<String, u64>,
        sent: &mut HashMap<String, u64>,
    ) -> anyhow::Result<bool> {
        self.settle(conn, acked, false).await?;
        let mut busy = false;
        let mut after: Option<String> = None;
        loop {
            let heads = self.store.log_heads(after.as_deref(), LOG_PAGE).await?;
            let full = heads.len() == LOG_PAGE as usize;
            after = heads.last().map(|h| h.log_id.clone());
            for head in heads {
                let from = sent.get(&head.log_id).copied().unwrap_or(0);
                if from >= head.size || self.stopping() {
                    continue;
                }
                let entries = self
                    .store
                    .log_entries(&head.log_id, from, BATCH_ENTRIES)
                    .await?;
                let Some(next) = self.send(conn, &head.log_id, &entries).await? else {
                    continue;
                };
                sent.insert(head.log_id.clone(), next);
                if entries.len() == BATCH_ENTRIES as usize || next < head.size {
                    busy = true;
                }
            }
            if !full {
                break;
            }
        }
        self.settle(conn, acked, false).await?;
        Ok(busy)
    }

    /// Sends `entries` (consecutive, from one log) as one batch, within
    /// [`MAX_BATCH_BYTES`]; returns the index after the last one sent.
    async fn send(
        &mut self,
        conn: &mut Conn,
        log_id: &str,
        entries: &[LogEntry],
    ) -> anyhow::Result<Option<u64>> {
        let Some(first) = entries.first() else {
            return Ok(None);
        };
        let mut body: Vec<u8> = Vec::new();
        // RELP: one message per entry.
        let mut messages: Vec<String> = Vec::new();
        let mut next = first.idx;
        for entry in entries {
            if entry.idx != next {
                bail!("log {log_id} skips from index {next} to {}", entry.idx);
            }
            if !body.is_empty() && body.len() >= MAX_BATCH_BYTES {
                break;
            }
            let leaf = AuditLeaf::decode(&entry.leaf).ok();
            let record = format::Entry {
                log_id,
                idx: entry.idx,
                leaf_bytes: &entry.leaf,
                leaf: leaf.as_ref(),
            };
            match conn {
                Conn::Syslog {
                    facility, hostname, ..
                } => {
                    let message = format::syslog_message(&record, *facility, hostname);
                    format::octet_frame(&message, &mut body);
                }
                Conn::Relp {
                    facility, hostname, ..
                } => {
                    let message = format::syslog_message(&record, *facility, hostname);
                    // Counted in `body` for the batch size limit only.
                    body.resize(body.len() + message.len() + 32, 0);
                    messages.push(message);
                }
                Conn::File { .. } | Conn::Http { .. } => {
                    body.extend_from_slice(format::ndjson_line(&record).as_bytes());
                }
            }
            next = entry.idx + 1;
        }
        let count = next - first.idx;
        let outcome = match conn {
            Conn::Syslog {
                stream, pending, ..
            } => {
                tokio::time::timeout(IO_TIMEOUT, async {
                    stream.write_all(&body).await?;
                    stream.flush().await
                })
                .await
                .context("writing to the syslog receiver timed out")?
                .context("writing to the syslog receiver failed")?;
                pending.push((log_id.to_owned(), next, Instant::now()));
                Sent::InFlight
            }
            Conn::Relp { client, .. } => {
                let refs: Vec<&[u8]> = messages.iter().map(String::as_bytes).collect();
                let start = first.idx;
                let mut moved = start;
                let mut shutdown = self.shutdown.clone();
                let this = &mut *self;
                let sending = client.send_all(&refs, |acked| {
                    // Only past the entries answered `200`.
                    let to = start + acked as u64;
                    let advance = to > moved;
                    moved = to;
                    let store = this.store.clone();
                    let sink = this.sink.name.clone();
                    let log = log_id.to_owned();
                    async move {
                        if advance {
                            store
                                .advance_siem_cursor(&sink, &log, to, crate::now_millis())
                                .await?;
                        }
                        Ok(())
                    }
                });
                let result = tokio::select! {
                    result = sending => result,
                    // Unanswered messages are sent again after the restart.
                    _ = shutdown.changed() => return Ok(None),
                };
                let acked = result?;
                self.backoff = BACKOFF_START;
                if self.failing {
                    self.failing = false;
                    info!(sink = %self.sink.name, "SIEM export recovered.");
                }
                debug_assert_eq!(start + acked as u64, next);
                Sent::Recorded
            }
            Conn::File { file } => {
                let before = file.metadata().await?.len();
                let written = async {
                    file.write_all(&body).await?;
                    file.flush().await?;
                    file.sync_data().await
                }
                .await;
                if let Err(error) = written {
                    // Leave no partial batch behind (best effort).
                    let _ = file.set_len(before).await;
                    return Err(anyhow::Error::new(error).context("writing the NDJSON file failed"));
                }
                Sent::Acknowledged
            }
            Conn::Http { client, url, token } => {
                let mut request = client
                    .post(url.as_str())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                    .body(body);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                let mut shutdown = self.shutdown.clone();
                let response = tokio::select! {
                    response = request.send() => response.context("the HTTP request failed")?,
                    // Not acknowledged: sent again after the restart.
                    _ = shutdown.changed() => return Ok(None),
                };
                let status = response.status();
                ensure!(status.is_success(), "the HTTP receiver answered {status}");
                Sent::Acknowledged
            }
        };
        debug!(sink = %self.sink.name, log = %log_id, from = first.idx, count, "SIEM batch sent.");
        if let Sent::Acknowledged = outcome {
            self.acknowledge(log_id, next).await?;
        }
        Ok(Some(next))
    }

    /// Records that the sink holds every entry of `log_id` below `next`.
    async fn acknowledge(&mut self, log_id: &str, next: u64) -> anyhow::Result<u64> {
        let stored = self
            .store
            .advance_siem_cursor(&self.sink.name, log_id, next, crate::now_millis())
            .await?;
        self.backoff = BACKOFF_START;
        if self.failing {
            self.failing = false;
            info!(sink = %self.sink.name, "SIEM export recovered.");
        }
        Ok(stored)
    }

    /// Syslog: fails if the receiver closed the connection; else
    /// acknowledges the batches flushed at least [`SYSLOG_SETTLE`] ago (all
    /// of them, after waiting, if `drain`).
    async fn settle(
        &mut self,
        conn: &mut Conn,
        acked: &mut HashMap<String, u64>,
        drain: bool,
    ) -> anyhow::Result<()> {
        let Conn::Syslog {
            stream, pending, ..
        } = conn
        else {
            return Ok(());
        };
        if drain && let Some((_, _, at)) = pending.last() {
            tokio::time::sleep_until((*at + SYSLOG_SETTLE).into()).await;
        }
        check_open(stream)?;
        let now = Instant::now();
        let settled = pending
            .iter()
            .take_while(|(_, _, at)| now.duration_since(*at) >= SYSLOG_SETTLE)
            .count();
        let done: Vec<_> = pending.drain(..settled).collect();
        for (log_id, next, _) in done {
            let stored = self.acknowledge(&log_id, next).await?;
            acked.insert(log_id, stored);
        }
        Ok(())
    }

    /// Ends a session at shutdown: lets syslog batches in flight settle
    /// (within the server's shutdown grace), then closes.
    async fn close(&mut self, conn: &mut Conn, acked: &mut HashMap<String, u64>) {
        if let Err(error) = self.settle(conn, acked, true).await {
            warn!(sink = %self.sink.name, error = format!("{error:#}"),
                "Batches in flight at shutdown were not confirmed; they will be sent again.");
        }
        if let Conn::Syslog { stream, .. } = conn {
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
        }
        if let Conn::Relp { client, .. } = conn {
            client.close().await;
        }
    }
}

/// Fails if the syslog receiver closed the connection or reset it. It
/// never sends anything, so a read that would block means "still open".
fn check_open(stream: &mut TlsStream<TcpStream>) -> anyhow::Result<()> {
    let mut buf = [0u8; 1024];
    for _ in 0..16 {
        match stream.read(&mut buf).now_or_never() {
            None => return Ok(()),
            Some(Ok(0)) => bail!("the syslog receiver closed the connection"),
            Some(Ok(_)) => continue, // unexpected data: ignored
            Some(Err(error)) => {
                return Err(anyhow::Error::new(error).context("the syslog connection failed"));
            }
        }
    }
    Ok(())
}

/// Reads the last complete line of an NDJSON file (without its newline),
/// cutting an incomplete last line first. `None` for an empty file or one
/// whose last line is longer than [`MAX_TAIL_LINE`].
fn tail_line(mut file: std::fs::File) -> std::io::Result<Option<Vec<u8>>> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let window = len.min(MAX_TAIL_LINE + 1);
    file.seek(SeekFrom::Start(len - window))?;
    let mut tail = Vec::new();
    (&mut file).take(window).read_to_end(&mut tail)?;
    let Some(last_newline) = tail.iter().rposition(|&b| b == b'\n') else {
        return Ok(None);
    };
    if last_newline + 1 < tail.len() {
        let keep = len - window + last_newline as u64 + 1;
        warn!(
            cut = tail.len() - last_newline - 1,
            "The NDJSON file ends with a partly written line; cutting it."
        );
        file.set_len(keep)?;
        file.sync_data()?;
    }
    let body = &tail[..last_newline];
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if start == 0 && len > window {
        return Ok(None); // the line starts before the window
    }
    Ok(Some(body[start..].to_vec()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::Write as _;

    fn tail_of(content: &[u8]) -> (Option<Vec<u8>>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(content)
            .unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        let last = tail_line(file).unwrap();
        (last, std::fs::read(&path).unwrap())
    }

    #[test]
    fn tail_lines() {
        assert_eq!(tail_of(b""), (None, b"".to_vec()));
        assert_eq!(tail_of(b"a\n"), (Some(b"a".to_vec()), b"a\n".to_vec()));
        assert_eq!(
            tail_of(b"a\nbc\n"),
            (Some(b"bc".to_vec()), b"a\nbc\n".to_vec())
        );
        // A partly written line is cut.
        assert_eq!(
            tail_of(b"a\nbc\n{\"lo"),
            (Some(b"bc".to_vec()), b"a\nbc\n".to_vec())
        );
        assert_eq!(tail_of(b"partial"), (None, b"partial".to_vec()));
    }
}
