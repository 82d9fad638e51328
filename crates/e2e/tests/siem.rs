//! SIEM export (RFD 0003, "SIEM export") against real receivers: Debian's
//! rsyslog taking RFC 5424 over TLS (RFC 5425), an NDJSON file, and an HTTP
//! receiver run here that refuses the first batches with 503.
//!
//! While events keep coming (failed logins in the MSP log, enrolment
//! tokens in tenants' logs), rsyslog is stopped and started again on the
//! same port, and the Bulwark server itself is restarted. At the end every
//! entry of every log must have reached every sink; the file must hold each
//! entry once; rsyslog must hold each entry acknowledged before its stop
//! once; and nothing acknowledged before the server's restart may have been
//! sent again after it.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use bulwark_api::tenants::TenantView;
use bulwark_e2e::{Api, Method, Proc, ServerProcess, StatusCode};
use bulwark_store::{MSP_LOG, NewAuditEvent, Store};
use serde_json::{Value, json};

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
const HTTP_TOKEN: &str = "e2e-siem-token";
/// The HTTP receiver answers 503 to this many requests first.
const HTTP_REFUSALS: usize = 4;
const SINKS: [&str; 3] = ["rsyslog", "file", "http"];
/// Events recorded before the server starts.
const BACKLOG: u64 = 10_000;

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// An rsyslog of its own: imtcp over gtls (anonymous clients) on one
/// loopback port, `omfile` writing each raw message on a line. No
/// imuxsock (the system's /dev/log is never touched), no default
/// configuration, its work directory and pid file in `dir`.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    output: PathBuf,
    proc: Option<Proc>,
}

impl Rsyslog {
    fn new(dir: &Path, port: u16, certs: &(PathBuf, PathBuf, PathBuf)) -> Result<Self> {
        ensure!(
            Path::new(RSYSLOGD).exists(),
            "{RSYSLOGD} is missing: install rsyslog rsyslog-gnutls gnutls-bin (`cargo xtask test` does)"
        );
        let work = dir.join("work");
        std::fs::create_dir_all(&work)?;
        let output = dir.join("received.log");
        let conf = format!(
            r#"global(
    workDirectory="{work}"
    defaultNetstreamDriver="gtls"
    defaultNetstreamDriverCAFile="{ca}"
    defaultNetstreamDriverCertFile="{cert}"
    defaultNetstreamDriverKeyFile="{key}"
    maxMessageSize="16k"
)
# Direct: a message imtcp took is written before the next is read, so
# nothing sits in a memory queue when rsyslog is told to stop.
main_queue(queue.type="Direct")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="raw" type="string" string="%rawmsg%\n")
action(type="omfile" file="{output}" template="raw" flushOnTXEnd="on" asyncWriting="off")
"#,
            work = work.display(),
            ca = certs.0.display(),
            cert = certs.1.display(),
            key = certs.2.display(),
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
        // Listening once a TCP connection is accepted (it then sees a
        // client that never starts TLS, and drops it).
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

    async fn stop(&mut self) -> Result<()> {
        if let Some(mut proc) = self.proc.take() {
            proc.stop_with("TERM").await?;
        }
        Ok(())
    }

    fn lines(&self) -> Result<Vec<String>> {
        match std::fs::read_to_string(&self.output) {
            Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `(log, idx)` of an RFC 5424 line written by Bulwark's syslog sink.
fn syslog_position(line: &str) -> Result<(String, u64)> {
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
        line.starts_with("<109>1 ") || line.starts_with("<108>1 "),
        "unexpected PRI/VERSION: {line:?}"
    );
    ensure!(
        line.contains(" bulwark-e2e bulwark - "),
        "unexpected HOSTNAME/APP-NAME/PROCID: {line:?}"
    );
    Ok((param("log")?, param("idx")?.parse()?))
}

fn ndjson_position(line: &str) -> Result<(String, u64)> {
    let value: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line:?}"))?;
    let log = value["log"].as_str().context("no log")?.to_owned();
    let idx = value["idx"].as_u64().context("no idx")?;
    ensure!(
        value["leaf_sha256"].as_str().map(str::len) == Some(64),
        "no leaf hash in {line}"
    );
    Ok((log, idx))
}

/// How many times each `(log, idx)` occurs.
fn count(positions: &[(String, u64)]) -> HashMap<(String, u64), usize> {
    let mut counts = HashMap::new();
    for p in positions {
        *counts.entry(p.clone()).or_insert(0) += 1;
    }
    counts
}

/// The HTTP receiver: 503 for the first [`HTTP_REFUSALS`] requests, then
/// 200, keeping every accepted line.
#[derive(Clone, Default)]
struct HttpReceiver {
    requests: Arc<AtomicUsize>,
    lines: Arc<Mutex<Vec<String>>>,
    bad: Arc<Mutex<Vec<String>>>,
}

async fn ingest(
    axum::extract::State(receiver): axum::extract::State<HttpReceiver>,
    headers: HeaderMap,
    body: String,
) -> AxumStatus {
    let n = receiver.requests.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("Bearer {HTTP_TOKEN}") || content_type != "application/x-ndjson" {
        receiver
            .bad
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("{auth:?} {content_type:?}"));
        return AxumStatus::UNAUTHORIZED;
    }
    if n < HTTP_REFUSALS {
        return AxumStatus::SERVICE_UNAVAILABLE;
    }
    receiver
        .lines
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(body.lines().map(str::to_owned));
    AxumStatus::OK
}

impl HttpReceiver {
    fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Log id → size, from the server's database.
async fn log_sizes(store: &Store) -> Result<BTreeMap<String, u64>> {
    Ok(store
        .log_heads(None, 10_000)
        .await?
        .into_iter()
        .map(|h| (h.log_id, h.size))
        .collect())
}

/// `(sink, log id) → cursor`.
async fn cursors(store: &Store) -> Result<HashMap<(String, String), u64>> {
    let mut all = HashMap::new();
    for sink in SINKS {
        for (log, next) in store.siem_cursors(sink, None, 10_000).await? {
            all.insert((sink.to_owned(), log), next);
        }
    }
    Ok(all)
}

/// Failed logins (MSP log) and, every tenth round, a new tenant (a new
/// log, `tenant.created`), until `stop`. Returns the rounds done.
async fn generate(api: Api, owner_api: Api, prefix: &str, stop: Arc<AtomicBool>) -> Result<usize> {
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        // Usernames with the characters RFC 5424 structured data escapes.
        let body = json!({"username": format!("mallory\"\\]{}", n % 7), "password": "wrong", "otp": "000000"});
        let reply = api
            .call(Method::POST, "/api/v1/auth/login", Some(&body))
            .await?;
        ensure!(
            reply.status == StatusCode::UNAUTHORIZED,
            "a failed login got {} {}",
            reply.status,
            reply.body
        );
        if n.is_multiple_of(10) {
            let _: TenantView = owner_api
                .post_as(
                    "/api/v1/tenants",
                    &json!({ "name": format!("{prefix}-{n}") }),
                )
                .await?;
        }
        n += 1;
    }
    Ok(n)
}

/// The entries of `sizes` that are not in `positions`.
fn missing(sizes: &BTreeMap<String, u64>, positions: &[(String, u64)]) -> Vec<(String, u64)> {
    let counts = count(positions);
    sizes
        .iter()
        .flat_map(|(log, size)| (0..*size).map(move |i| (log.clone(), i)))
        .filter(|p| !counts.contains_key(p))
        .collect()
}

fn file_positions(path: &Path) -> Result<Vec<(String, u64)>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(ndjson_position).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

async fn wait_complete(
    what: &str,
    timeout: Duration,
    sizes: &BTreeMap<String, u64>,
    positions: impl Fn() -> Result<Vec<(String, u64)>>,
) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let missing = missing(sizes, &positions()?);
        if missing.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!(
                "{what}: {} entries never arrived, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn siem_export_survives_receiver_and_server_restarts() -> Result<()> {
    let test_started = Instant::now();
    let dir = tempfile::Builder::new().prefix("bulwark-siem-").tempdir()?;
    let certs = bulwark_e2e::test_certificates(dir.path(), "bulwark e2e SIEM CA")?;

    let rsyslog_dir = dir.path().join("rsyslog");
    std::fs::create_dir_all(&rsyslog_dir)?;
    let mut rsyslog = Rsyslog::new(&rsyslog_dir, free_port()?, &certs)?;
    rsyslog.start().await?;

    let receiver = HttpReceiver::default();
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http_addr = http_listener.local_addr()?;
    let app = axum::Router::new()
        .route("/ingest", axum::routing::post(ingest))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(http_listener, app).await });

    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let ndjson = dir.path().join("export.ndjson");
    let config = dir.path().join("bulwark.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
listen = "127.0.0.1:0"
gateway_listen = "127.0.0.1:0"

[[siem]]
type = "syslog"
name = "rsyslog"
address = "127.0.0.1:{syslog_port}"
server_name = "localhost"
ca_file = "{ca}"
hostname = "bulwark-e2e"

[[siem]]
type = "ndjson_file"
name = "file"
path = "{ndjson}"

[[siem]]
type = "ndjson_http"
name = "http"
url = "http://{http_addr}/ingest"
token = "{HTTP_TOKEN}"
"#,
            data = data_dir.display(),
            syslog_port = rsyslog.port,
            ca = certs.0.display(),
            ndjson = ndjson.display(),
        ),
    )?;
    // A backlog, recorded before the server starts: how fast each sink
    // drains it is the throughput figure.
    let store = Store::open_sqlite(&data_dir.join("bulwark.db")).await?;
    for i in 0..BACKLOG {
        let event = NewAuditEvent::new(
            1_764_000_000_000 + i64::try_from(i)?,
            "backlog",
            bulwark_store::AuditAction::JobResult,
            &format!("entry {i}"),
        )
        .with_detail("recorded before the server started, to measure the export");
        store.append_audit(event).await?;
    }
    let mut server = ServerProcess::start(&config, &data_dir).await?;
    let started = Instant::now();
    let backlog: BTreeMap<String, u64> = [(MSP_LOG.to_owned(), BACKLOG)].into();
    let mut drained: [Option<Duration>; 3] = [None; 3];
    while drained.iter().any(Option::is_none) {
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the backlog was not exported within 120 s: {drained:?}"
        );
        for (i, done) in drained.iter_mut().enumerate() {
            if done.is_some() {
                continue;
            }
            let positions: Vec<(String, u64)> = match i {
                0 => rsyslog
                    .lines()?
                    .iter()
                    .map(|l| syslog_position(l))
                    .collect::<Result<_>>()?,
                1 => file_positions(&ndjson)?,
                _ => receiver
                    .lines()
                    .iter()
                    .map(|l| ndjson_position(l))
                    .collect::<Result<_>>()?,
            };
            if missing(&backlog, &positions).is_empty() {
                *done = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rate = |d: Option<Duration>| d.map_or(0.0, |d| BACKLOG as f64 / d.as_secs_f64());
    eprintln!(
        "SIEM backlog of {BACKLOG} entries exported from server start: syslog in {:.2?} ({:.0}/s), \
         file in {:.2?} ({:.0}/s), http in {:.2?} ({:.0}/s, after {HTTP_REFUSALS} refusals and backoff)",
        drained[0].unwrap_or_default(),
        rate(drained[0]),
        drained[1].unwrap_or_default(),
        rate(drained[1]),
        drained[2].unwrap_or_default(),
        rate(drained[2]),
    );

    let api = server.api()?;
    let owner = api.create_owner(&server.setup_code().await?).await?;
    let token = api.login(&owner).await?;
    let owner_api = api.with_token(&token);

    let stop = Arc::new(AtomicBool::new(false));
    let mut generator = tokio::spawn(generate(
        api.clone(),
        owner_api.clone(),
        "first",
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;

    // rsyslog goes away mid-stream and comes back on the same port.
    let before_kill = cursors(&store).await?;
    rsyslog.stop().await?;
    let rsyslog_lines_at_kill = rsyslog.lines()?.len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    rsyslog.start().await?;
    // The same server process reconnects (after its backoff) and resends.
    let restarted = Instant::now();
    while rsyslog.lines()?.len() <= rsyslog_lines_at_kill {
        ensure!(
            restarted.elapsed() < Duration::from_secs(60),
            "nothing reached rsyslog within 60 s of its restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The server restarts: what its cursors hold is never sent again.
    // The generator's clients lose their server for a moment: stop it first.
    stop.store(true, Ordering::SeqCst);
    let generated_first = (&mut generator).await??;
    server.stop().await?;
    let at_restart = cursors(&store).await?;
    let rsyslog_lines_at_restart = rsyslog.lines()?.len();
    let http_lines_at_restart = receiver.lines().len();
    let file_lines_at_restart = std::fs::read_to_string(&ndjson)?.lines().count();
    server = ServerProcess::start(&config, &data_dir).await?;
    let api = server.api()?;
    // The session outlives the restart (the failed logins have locked
    // this address by now, so no new login would succeed).
    let owner_api = api.with_token(&token);
    let stop = Arc::new(AtomicBool::new(false));
    let generator = tokio::spawn(generate(api, owner_api, "second", stop.clone()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::SeqCst);
    let generated = generated_first + generator.await??;

    let sizes = log_sizes(&store).await?;
    let total: u64 = sizes.values().sum();
    ensure!(
        sizes.len() >= 3,
        "expected the MSP log and tenants' logs, got {sizes:?}"
    );

    let timeout = Duration::from_secs(90);
    let file_lines = || -> Result<Vec<String>> {
        Ok(std::fs::read_to_string(&ndjson)?
            .lines()
            .map(str::to_owned)
            .collect())
    };
    let file_done = wait_complete("ndjson_file", timeout, &sizes, || {
        file_lines()?.iter().map(|l| ndjson_position(l)).collect()
    })
    .await?;
    let http_done = wait_complete("ndjson_http", timeout, &sizes, || {
        receiver
            .lines()
            .iter()
            .map(|l| ndjson_position(l))
            .collect()
    })
    .await?;
    let syslog_done = wait_complete("syslog", timeout, &sizes, || {
        rsyslog
            .lines()?
            .iter()
            .map(|l| syslog_position(l))
            .collect()
    })
    .await?;

    // The file: every entry exactly once.
    let file: Vec<(String, u64)> = file_lines()?
        .iter()
        .map(|l| ndjson_position(l))
        .collect::<Result<_>>()?;
    let dups: Vec<_> = count(&file).into_iter().filter(|(_, n)| *n > 1).collect();
    ensure!(
        dups.is_empty(),
        "the NDJSON file holds duplicates: {dups:?}"
    );

    // rsyslog: entries acknowledged before the stop arrived once.
    let syslog: Vec<(String, u64)> = rsyslog
        .lines()?
        .iter()
        .map(|l| syslog_position(l))
        .collect::<Result<_>>()?;
    let syslog_counts = count(&syslog);
    for ((sink, log), next) in &before_kill {
        if sink != "rsyslog" {
            continue;
        }
        for idx in 0..*next {
            let n = syslog_counts.get(&(log.clone(), idx)).copied().unwrap_or(0);
            ensure!(
                n == 1,
                "rsyslog holds entry {idx} of {log} {n} times, though it was acknowledged before the stop (cursor {next})"
            );
        }
    }
    let syslog_dups = syslog_counts.values().filter(|n| **n > 1).count();

    // After the server's restart, nothing below the cursors came again.
    let check_after_restart = |sink: &str, positions: &[(String, u64)]| -> Result<()> {
        for (log, idx) in positions {
            let next = at_restart
                .get(&(sink.to_owned(), log.clone()))
                .copied()
                .unwrap_or(0);
            ensure!(
                *idx >= next,
                "{sink}: entry {idx} of {log} was sent again after the restart (cursor {next})"
            );
        }
        Ok(())
    };
    check_after_restart("rsyslog", &syslog[rsyslog_lines_at_restart..])?;
    let http: Vec<(String, u64)> = receiver
        .lines()
        .iter()
        .map(|l| ndjson_position(l))
        .collect::<Result<_>>()?;
    check_after_restart("http", &http[http_lines_at_restart..])?;
    check_after_restart("file", &file[file_lines_at_restart..])?;
    let http_dups = count(&http).values().filter(|n| **n > 1).count();

    // The cursors reach the heads (syslog's a moment after delivery: a
    // batch counts once the connection stayed up for a while after it).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let final_cursors = cursors(&store).await?;
        let behind: Vec<String> = SINKS
            .iter()
            .flat_map(|sink| sizes.iter().map(move |(log, size)| (sink, log, size)))
            .filter_map(|(sink, log, size)| {
                let next = final_cursors
                    .get(&((*sink).to_owned(), log.clone()))
                    .copied()
                    .unwrap_or(0);
                (next != *size)
                    .then(|| format!("{sink}: cursor of {log} is {next}, log size {size}"))
            })
            .collect();
        if behind.is_empty() {
            break;
        }
        ensure!(Instant::now() < deadline, "cursors behind: {behind:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bad = receiver
        .bad
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    ensure!(
        bad.is_empty(),
        "requests without token or content type: {bad:?}"
    );
    ensure!(
        receiver.requests.load(Ordering::SeqCst) > HTTP_REFUSALS,
        "the HTTP receiver was never asked again after refusing"
    );

    let elapsed = test_started.elapsed();
    let msp_before_kill = before_kill
        .get(&("rsyslog".to_owned(), MSP_LOG.to_owned()))
        .copied()
        .unwrap_or(0);
    eprintln!(
        "SIEM export: {total} entries in {} logs ({generated} rounds of events) in {elapsed:.1?}; \
         after the last event: file complete in {file_done:.1?}, http in {http_done:.1?}, syslog in {syslog_done:.1?}; \
         rsyslog lines {} (at its stop {rsyslog_lines_at_kill}, MSP cursor then {msp_before_kill}); \
         duplicates: syslog {syslog_dups}, http {http_dups}, file 0",
        sizes.len(),
        syslog.len(),
    );

    server.stop().await?;
    rsyslog.stop().await?;
    store.close().await;
    Ok(())
}
