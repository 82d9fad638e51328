//! The RELP SIEM sink (RFD 0003, "SIEM export") against a real rsyslog
//! `imrelp` receiver over TLS, with a receiver that freezes and dies, and a
//! server that crashes (issue 14).
//!
//! Two rsyslogs of their own: one takes RELP (`imrelp`, TLS), the other
//! plain RFC 5425 (`imtcp`, TLS) for the `syslog` sink, as a comparison.
//! Entries are appended to the server's database while it runs. Both
//! receivers are frozen (SIGSTOP) while more entries come, then killed
//! (SIGKILL) and started again; then the server is killed (SIGKILL) and
//! started again. RELP must deliver every entry at least once, and the
//! RELP sink's cursor must never pass an entry the receiver does not hold
//! (checked all along: cursors read first, then the receiver's file). The
//! plain syslog sink's losses in the same run are printed, not asserted.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bulwark_e2e::{Proc, ServerProcess};
use bulwark_store::{AuditAction, NewAuditEvent, Store};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
/// Installed with imrelp (its path depends on the architecture).
const IMRELP: &str = "/usr/share/doc/rsyslog-relp/copyright";
const RELP_SINK: &str = "relp";
const SYSLOG_SINK: &str = "plain";

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// An rsyslog of its own on one loopback port, writing each raw message
/// on a line of `received.log` (appended across restarts). `Direct`
/// queues: a message is written before imrelp answers it.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    output: PathBuf,
    proc: Option<Proc>,
}

impl Rsyslog {
    fn new(dir: &Path, relp: bool, certs: &(PathBuf, PathBuf, PathBuf)) -> Result<Self> {
        ensure!(
            Path::new(RSYSLOGD).exists() && Path::new(IMRELP).exists(),
            "{RSYSLOGD} or {IMRELP} is missing: install rsyslog rsyslog-relp rsyslog-gnutls (`cargo xtask test` does)"
        );
        std::fs::create_dir_all(dir.join("work"))?;
        let port = free_port()?;
        let output = dir.join("received.log");
        let (ca, cert, key) = (certs.0.display(), certs.1.display(), certs.2.display());
        let (globals, input) = if relp {
            (
                String::new(),
                format!(
                    r#"module(load="imrelp" tls.tlslib="openssl")
input(type="imrelp" address="127.0.0.1" port="{port}" tls="on"
      tls.cacert="{ca}" tls.mycert="{cert}" tls.myprivkey="{key}")"#
                ),
            )
        } else {
            (
                format!(
                    r#" defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}" defaultNetstreamDriverKeyFile="{key}""#
                ),
                format!(
                    r#"module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{port}")"#
                ),
            )
        };
        let conf = format!(
            r#"global(workDirectory="{work}" maxMessageSize="16k"{globals})
main_queue(queue.type="Direct")
{input}
template(name="raw" type="string" string="%rawmsg%\n")
action(type="omfile" file="{output}" template="raw" flushOnTXEnd="on" asyncWriting="off")
"#,
            work = dir.join("work").display(),
            output = output.display(),
        );
        std::fs::write(dir.join("rsyslog.conf"), conf)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            port,
            output,
            proc: None,
        })
    }

    async fn start(&mut self) -> Result<()> {
        let pid_file = self.dir.join("rsyslogd.pid");
        let _ = std::fs::remove_file(&pid_file);
        let mut command = Command::new(RSYSLOGD);
        command
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(&pid_file);
        let mut proc = Proc::spawn("rsyslogd", &mut command)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = proc.try_wait()? {
                bail!(
                    "rsyslogd exited ({status}) at start\nstderr:\n{}",
                    proc.stderr.text()
                );
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "rsyslogd is not listening on {addr}\nstderr:\n{}",
                proc.stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.proc = Some(proc);
        Ok(())
    }

    fn signal(&self, signal: &str) -> Result<()> {
        self.proc
            .as_ref()
            .context("rsyslogd is not running")?
            .signal(signal)
    }

    async fn kill9(&mut self) -> Result<()> {
        if let Some(mut proc) = self.proc.take() {
            proc.kill9().await?;
        }
        Ok(())
    }

    /// `(log, idx)` of every line received so far.
    fn positions(&self) -> Result<Vec<(String, u64)>> {
        let text = match std::fs::read(&self.output) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        // A line cut by SIGKILL mid-write is not an entry received.
        text.lines()
            .filter(|l| l.starts_with('<') && l.contains(" idx=\""))
            .map(position)
            .collect()
    }
}

/// `(log, idx)` of an RFC 5424 line written by Bulwark's syslog sinks.
fn position(line: &str) -> Result<(String, u64)> {
    let param = |name: &str| -> Result<String> {
        let start = line
            .find(&format!(" {name}=\""))
            .with_context(|| format!("no {name}= in {line:?}"))?
            + name.len()
            + 3;
        let end = line[start..]
            .find('"')
            .with_context(|| format!("unterminated {name} in {line:?}"))?;
        Ok(line[start..start + end].to_owned())
    };
    ensure!(
        line.contains(" bulwark-e2e bulwark - "),
        "unexpected HOSTNAME/APP-NAME/PROCID: {line:?}"
    );
    Ok((param("log")?, param("idx")?.parse()?))
}

async fn log_sizes(store: &Store) -> Result<BTreeMap<String, u64>> {
    Ok(store
        .log_heads(None, 10_000)
        .await?
        .into_iter()
        .map(|h| (h.log_id, h.size))
        .collect())
}

async fn sink_cursors(store: &Store, sink: &str) -> Result<BTreeMap<String, u64>> {
    Ok(store
        .siem_cursors(sink, None, 10_000)
        .await?
        .into_iter()
        .collect())
}

fn missing(sizes: &BTreeMap<String, u64>, positions: &[(String, u64)]) -> Vec<(String, u64)> {
    let have: HashSet<&(String, u64)> = positions.iter().collect();
    sizes
        .iter()
        .flat_map(|(log, size)| (0..*size).map(move |i| (log.clone(), i)))
        .filter(|p| !have.contains(p))
        .collect()
}

async fn append(store: &Store, from: u64, count: u64) -> Result<()> {
    // Now: entries older than the retention would be archived meanwhile.
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    for i in from..from + count {
        let event = NewAuditEvent::new(
            now,
            "relp-test",
            AuditAction::JobResult,
            &format!("entry {i}"),
        );
        store.append_audit(event).await?;
    }
    Ok(())
}

/// Checks, until `stop`, that the RELP cursors never pass an entry the
/// receiver does not hold: cursors are read first, then the file (which
/// only grows). Returns how many checks ran.
async fn watch_cursors(store: Store, output: PathBuf, stop: Arc<AtomicBool>) -> Result<usize> {
    let receiver = Rsyslog {
        dir: PathBuf::new(),
        port: 0,
        output,
        proc: None,
    };
    let mut checks = 0;
    while !stop.load(Ordering::SeqCst) {
        let cursors = sink_cursors(&store, RELP_SINK).await?;
        let have: HashSet<(String, u64)> = receiver.positions()?.into_iter().collect();
        for (log, next) in &cursors {
            for idx in 0..*next {
                ensure!(
                    have.contains(&(log.clone(), idx)),
                    "the RELP cursor of {log} is {next}, but the receiver does not hold entry {idx}"
                );
            }
        }
        checks += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(checks)
}

async fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let started = Instant::now();
    while !done()? {
        ensure!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relp_sink_loses_nothing_when_the_receiver_freezes_and_dies() -> Result<()> {
    let test_started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("bulwark-siem-relp-")
        .tempdir()?;
    let certs = bulwark_e2e::test_certificates(dir.path(), "bulwark e2e RELP CA")?;
    let mut relp = Rsyslog::new(&dir.path().join("relp"), true, &certs)?;
    let mut plain = Rsyslog::new(&dir.path().join("plain"), false, &certs)?;
    relp.start().await?;
    plain.start().await?;

    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let config = dir.path().join("bulwark.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
listen = "127.0.0.1:0"
gateway_listen = "127.0.0.1:0"

[[siem]]
type = "relp"
name = "{RELP_SINK}"
address = "127.0.0.1:{relp_port}"
server_name = "localhost"
ca_file = "{ca}"
hostname = "bulwark-e2e"

[[siem]]
type = "syslog"
name = "{SYSLOG_SINK}"
address = "127.0.0.1:{plain_port}"
server_name = "localhost"
ca_file = "{ca}"
hostname = "bulwark-e2e"
"#,
            data = data_dir.display(),
            relp_port = relp.port,
            plain_port = plain.port,
            ca = certs.0.display(),
        ),
    )?;
    let store = Store::open_sqlite(&data_dir.join("bulwark.db")).await?;
    let mut server = ServerProcess::start(&config, &data_dir).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_cursors(
        store.clone(),
        relp.output.clone(),
        stop.clone(),
    ));

    // 1. A first batch reaches both receivers.
    let mut appended = 0;
    append(&store, appended, 300).await?;
    appended += 300;
    let sizes = log_sizes(&store).await?;
    wait_until(
        "the first entries over RELP",
        Duration::from_secs(60),
        || Ok(missing(&sizes, &relp.positions()?).is_empty()),
    )
    .await?;
    wait_until(
        "the first entries over syslog",
        Duration::from_secs(60),
        || Ok(missing(&sizes, &plain.positions()?).is_empty()),
    )
    .await?;
    let before_freeze = relp.positions()?.len();

    // 2. Both receivers freeze (connections open, nothing read), more
    // entries come, then both are killed.
    relp.signal("STOP")?;
    plain.signal("STOP")?;
    append(&store, appended, 151).await?;
    appended += 151;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let relp_cursor_frozen = sink_cursors(&store, RELP_SINK).await?;
    let plain_cursor_frozen = sink_cursors(&store, SYSLOG_SINK).await?;
    relp.kill9().await?;
    plain.kill9().await?;
    let relp_lines_at_kill = relp.positions()?.len();
    append(&store, appended, 100).await?;
    appended += 100;
    tokio::time::sleep(Duration::from_secs(2)).await;
    relp.start().await?;
    plain.start().await?;

    // 3. While they catch up, the server crashes, more entries come, and it
    // starts again.
    wait_until(
        "RELP delivery after the restart",
        Duration::from_secs(60),
        || Ok(relp.positions()?.len() > relp_lines_at_kill),
    )
    .await?;
    let server_pid = server.info.pid.to_string();
    let status = Command::new("kill").args(["-KILL", &server_pid]).status()?;
    ensure!(status.success(), "kill -KILL {server_pid} failed");
    drop(server);
    append(&store, appended, 200).await?;
    appended += 200;
    server = ServerProcess::start(&config, &data_dir).await?;

    // 4. Everything arrives over RELP, at least once.
    let sizes = log_sizes(&store).await?;
    let total: u64 = sizes.values().sum();
    ensure!(total >= appended, "{total} entries, {appended} appended");
    let relp_done = Instant::now();
    wait_until("every entry over RELP", Duration::from_secs(120), || {
        Ok(missing(&sizes, &relp.positions()?).is_empty())
    })
    .await
    .with_context(|| {
        let m = missing(&sizes, &relp.positions().unwrap_or_default());
        format!(
            "{} missing, e.g. {:?}\nserver stderr:\n{}",
            m.len(),
            &m[..m.len().min(5)],
            server.stderr()
        )
    })?;
    let relp_took = relp_done.elapsed();
    // The cursors reach the heads.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cursors = sink_cursors(&store, RELP_SINK).await?;
        let behind: Vec<_> = sizes
            .iter()
            .filter(|(log, size)| cursors.get(*log).copied().unwrap_or(0) < **size)
            .collect();
        if behind.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "RELP cursors behind: {behind:?} ({cursors:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let checks = watcher.await??;
    ensure!(checks > 10, "the cursor watcher ran only {checks} times");

    // The frozen receiver answered nothing: the RELP cursor did not move
    // past what it held before the freeze.
    let relp_positions = relp.positions()?;
    let frozen_total: u64 = relp_cursor_frozen.values().sum();
    ensure!(
        frozen_total as usize <= before_freeze,
        "the RELP cursors ({relp_cursor_frozen:?}) moved past the {before_freeze} entries held before the freeze"
    );
    let distinct: HashSet<&(String, u64)> = relp_positions.iter().collect();
    let duplicates = relp_positions.len() - distinct.len();

    // The plain syslog sink in the same run (give it time to settle).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let plain_missing = missing(&sizes, &plain.positions()?);
    eprintln!(
        "SIEM RELP: {total} entries in {} logs, all delivered over RELP ({} lines, {duplicates} duplicates; \
         complete {relp_took:.1?} after the server's restart; {checks} cursor checks; cursor while frozen {relp_cursor_frozen:?}). \
         Plain syslog (RFC 5425) in the same run: {} entries lost (cursor while frozen {plain_cursor_frozen:?}). Took {:.1?}.",
        sizes.len(),
        relp_positions.len(),
        plain_missing.len(),
        test_started.elapsed(),
    );

    server.stop().await?;
    relp.kill9().await?;
    plain.kill9().await?;
    store.close().await;
    Ok(())
}
