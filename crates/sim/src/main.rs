//! `bulwark-sim`: a fleet of virtual devices, for load figures.
//!
//! Each virtual device is what a real endpoint is to the server: its own
//! Ed25519 key, its own one-time enrolment token, then one TLS WebSocket
//! session kept open with heartbeats and an inventory report. All protocol
//! work is the agent library's (`connection::enroll`, `connection::session`);
//! the simulator only decides how many devices, how fast, and counts.
//!
//! `connection::session` borrows a `&mut Collector` for the whole session, so
//! every virtual device owns one (sysinfo's tables; the summary prints what
//! the whole simulator costs per device: 35-40 KiB at 1,000-5,000 devices,
//! so a fleet up to the open-file limit fits in under 1 GiB). Each session
//! collects one snapshot when it starts; the inventory interval defaults to a
//! day, so a run does no further collection.
//!
//! Phases: enrol every device (ramped), connect every device (ramped), hold
//! the sessions open (`--hold-secs`, or until SIGINT/SIGTERM), close them
//! cleanly and print a summary. A session that drops reconnects with the
//! agent's own backoff, as a real agent would; the summary counts the drops.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bulwark_agent::backoff::Backoff;
use bulwark_agent::connection::{self, Endpoint, ServerAddress, SessionError, SessionOptions};
use bulwark_agent::inventory::Collector;
use bulwark_protocol::token::EnrollToken;
use clap::Parser;
use ed25519_dalek::SigningKey;
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

#[derive(Parser)]
#[command(
    name = "bulwark-sim",
    version,
    about = "Fleet simulator: many virtual devices enrol and stay connected through the real agent protocol"
)]
struct Args {
    /// The agent gateway, e.g. https://127.0.0.1:8443
    #[arg(long)]
    server: String,
    /// One-time enrolment tokens, one per line (blank lines are skipped); the first N are used.
    #[arg(long)]
    token_file: PathBuf,
    /// How many virtual devices to run.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    agents: u32,
    /// Enrolments, and later connections, started per second.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    ramp_per_sec: u32,
    /// Seconds to hold every session open once the fleet is connected
    /// (default: until SIGINT or SIGTERM).
    #[arg(long)]
    hold_secs: Option<u64>,
    /// Handshakes (enrolment or first connection) in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_in_flight: u32,
    /// Seconds between inventory checks in each session.
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    inventory_secs: u64,
    /// Seconds to wait between enrolling and connecting (to measure the server in between).
    #[arg(long, default_value_t = 0)]
    connect_after_secs: u64,
    /// Stop waiting for the whole fleet to connect after this many seconds.
    #[arg(long, default_value_t = 300)]
    connect_timeout_secs: u64,
}

/// File descriptors the simulator needs beyond one socket per device.
const SPARE_FDS: u64 = 64;

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let n = usize::try_from(args.agents)?;
    check_fd_limit(n)?;
    let address = Arc::new(ServerAddress::parse(&args.server)?);
    let text = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read the token file {}", args.token_file.display()))?;
    let tokens = parse_tokens(&text, n, &args.token_file)?;

    // SIGINT/SIGTERM end the current phase; `stop` then closes the sessions,
    // after the summary has counted them.
    let (signal_tx, signalled) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("Stopping: closing every session…");
        signal_tx.send_replace(true);
    });
    let (stop_tx, stop) = watch::channel(false);

    println!(
        "bulwark-sim: {n} devices against {} (ramp {}/s)",
        args.server, args.ramp_per_sec
    );
    let mut enrolment = enrol_all(&address, tokens, &args, signalled.clone()).await;
    enrolment.print("enrolled");
    if args.connect_after_secs > 0 && !*signalled.borrow() {
        println!("Connecting in {} s…", args.connect_after_secs);
        let mut signalled = signalled.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.connect_after_secs)) => {}
            _ = signalled.changed() => {}
        }
    }
    if *signalled.borrow() {
        return Ok(ExitCode::FAILURE);
    }

    let devices = std::mem::take(&mut enrolment.devices);
    let fleet = connect_all(devices, &args, stop.clone(), signalled.clone()).await;
    let connected = fleet.stats.ever.load(Ordering::Relaxed);
    let rss_connected = own_rss_kib();

    if !*signalled.borrow() {
        hold(&fleet.stats, args.hold_secs, signalled.clone()).await;
    }
    let online_at_end = fleet.stats.online.load(Ordering::Relaxed);
    stop_tx.send_replace(true);
    let mut tasks = fleet.tasks;
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if closed.is_err() {
        eprintln!("warning: some sessions did not close within 15 s");
        tasks.abort_all();
    }

    let stats = &fleet.stats;
    let failed_attempts = stats.failed_attempts.load(Ordering::Relaxed);
    let dropped = stats.dropped.load(Ordering::Relaxed);
    let refused = stats.refused.load(Ordering::Relaxed);
    let connect_secs =
        Duration::from_millis(stats.last_first_connect_ms.load(Ordering::Relaxed)).as_secs_f64();
    let connect_rate = rate(connected, connect_secs);
    println!();
    println!("Summary");
    println!("  devices requested   {n}");
    println!(
        "  enrolled            {} ok, {} failed in {:.2} s ({:.1}/s)",
        enrolment.ok,
        enrolment.failed,
        enrolment.secs,
        enrolment.rate()
    );
    println!(
        "  connected           {connected} of {} in {connect_secs:.2} s ({connect_rate:.1}/s; first session p50 {}, p99 {}, max {})",
        enrolment.ok,
        stats.latency(0.50),
        stats.latency(0.99),
        stats.latency(1.0)
    );
    println!(
        "  failed attempts     {failed_attempts} (connections that ended before the server's welcome)"
    );
    println!(
        "  dropped sessions    {dropped} (ended by the server or the network, then reconnected)"
    );
    println!("  refused             {refused} (the server refused the device; not retried)");
    println!("  online at the end   {online_at_end}");
    if let Some(kib) = rss_connected {
        println!(
            "  simulator RSS       {:.1} MiB with the fleet connected ({:.1} KiB per device, its Collector included)",
            kib as f64 / 1024.0,
            kib as f64 / n as f64
        );
    }
    print_errors("enrolment errors", &enrolment.errors);
    print_errors(
        "session errors",
        &stats.errors.lock().unwrap_or_else(PoisonError::into_inner),
    );
    println!(
        "RESULT agents={n} enrolled={} enrol_failed={} enrol_per_sec={:.1} connected={connected} connect_per_sec={connect_rate:.1} \
         failed_attempts={failed_attempts} dropped={dropped} refused={refused} online_at_end={online_at_end} sim_rss_kib={}",
        enrolment.ok,
        enrolment.failed,
        enrolment.rate(),
        rss_connected.unwrap_or(0)
    );
    Ok(if connected == n && online_at_end == n {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------
// Enrolment
// ---------------------------------------------------------------------------

/// An enrolled virtual device.
struct Device {
    index: usize,
    endpoint: Endpoint,
}

struct Enrolment {
    devices: Vec<Device>,
    ok: usize,
    failed: usize,
    /// From the first start to the last completion.
    secs: f64,
    latencies: Vec<Duration>,
    errors: BTreeMap<String, usize>,
}

impl Enrolment {
    fn rate(&self) -> f64 {
        rate(self.ok, self.secs)
    }

    fn print(&self, what: &str) {
        let mut latencies = self.latencies.clone();
        latencies.sort();
        println!(
            "{what} {} ok, {} failed in {:.2} s ({:.1}/s; p50 {}, p99 {}, max {})",
            self.ok,
            self.failed,
            self.secs,
            self.rate(),
            millis(percentile(&latencies, 0.50)),
            millis(percentile(&latencies, 0.99)),
            millis(percentile(&latencies, 1.0)),
        );
    }
}

async fn enrol_all(
    address: &Arc<ServerAddress>,
    tokens: Vec<EnrollToken>,
    args: &Args,
    signalled: watch::Receiver<bool>,
) -> Enrolment {
    let total = tokens.len();
    let bar = progress_bar("enrolling", total);
    let slots = Arc::new(Semaphore::new(args.max_in_flight as usize));
    let mut tick = ramp(args.ramp_per_sec);
    let mut tasks = JoinSet::new();
    let mut result = Enrolment {
        devices: Vec::with_capacity(total),
        ok: 0,
        failed: 0,
        secs: 0.0,
        latencies: Vec::with_capacity(total),
        errors: BTreeMap::new(),
    };
    let started = Instant::now();
    let mut reporter = Reporter::new(&bar);
    let record =
        |done: Result<(usize, Duration, Result<Device, SessionError>), tokio::task::JoinError>,
         result: &mut Enrolment| {
            match done {
                Ok((_, latency, Ok(device))) => {
                    result.ok += 1;
                    result.latencies.push(latency);
                    result.devices.push(device);
                }
                Ok((index, _, Err(error))) => {
                    result.failed += 1;
                    *result.errors.entry(error.to_string()).or_default() += 1;
                    if result.failed <= 3 {
                        bar.suspend(|| eprintln!("device {index}: enrolment failed: {error}"));
                    }
                }
                Err(error) => {
                    result.failed += 1;
                    *result
                        .errors
                        .entry(format!("task failed: {error}"))
                        .or_default() += 1;
                }
            }
            result.secs = started.elapsed().as_secs_f64();
            bar.inc(1);
        };
    for (index, token) in tokens.into_iter().enumerate() {
        tick.tick().await;
        if *signalled.borrow() {
            break;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let address = address.clone();
        tasks.spawn(async move {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let begun = Instant::now();
            let enrolled =
                connection::enroll(&address, &token, &key, &format!("sim-{index:05}")).await;
            drop(permit);
            let device = enrolled.map(|e| Device {
                index,
                endpoint: Endpoint {
                    address: ServerAddress::clone(&address),
                    pin: token.ca_fingerprint,
                    device_id: e.device_id,
                    key,
                },
            });
            (index, begun.elapsed(), device)
        });
        while let Some(done) = tasks.try_join_next() {
            record(done, &mut result);
        }
        reporter.maybe_print(&format!(
            "enrolling: {} ok, {} failed of {total}",
            result.ok, result.failed
        ));
    }
    while let Some(done) = tasks.join_next().await {
        record(done, &mut result);
        reporter.maybe_print(&format!(
            "enrolling: {} ok, {} failed of {total}",
            result.ok, result.failed
        ));
    }
    bar.finish_and_clear();
    // Connect in enrolment order, so a run is repeatable.
    result.devices.sort_by_key(|d| d.index);
    result
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    /// Sessions open now (welcomed by the server, not yet ended).
    online: AtomicUsize,
    /// Devices that have connected at least once.
    ever: AtomicUsize,
    /// Connections that ended before the server's welcome.
    failed_attempts: AtomicUsize,
    /// Welcomed sessions that ended while the simulator still wanted them.
    dropped: AtomicUsize,
    /// Devices the server refused; they are not retried.
    refused: AtomicUsize,
    /// Milliseconds from the start of the connect phase to the latest first connection.
    last_first_connect_ms: AtomicU64,
    /// First session of each device: from its start to the server's welcome.
    latencies: Mutex<Vec<Duration>>,
    errors: Mutex<BTreeMap<String, usize>>,
}

impl Stats {
    fn error(&self, error: &SessionError) {
        *self
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(error.to_string())
            .or_default() += 1;
    }

    fn latency(&self, q: f64) -> String {
        let mut latencies = self
            .latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        latencies.sort();
        millis(percentile(&latencies, q))
    }
}

struct Fleet {
    stats: Arc<Stats>,
    tasks: JoinSet<()>,
}

/// Starts every session (ramped) and returns once all are connected, the
/// deadline passed or a signal came; the sessions go on until `stop`.
async fn connect_all(
    devices: Vec<Device>,
    args: &Args,
    stop: watch::Receiver<bool>,
    mut signalled: watch::Receiver<bool>,
) -> Fleet {
    let total = devices.len();
    let stats = Arc::new(Stats::default());
    let bar = progress_bar("connecting", total);
    let options = SessionOptions {
        inventory_interval: Duration::from_secs(args.inventory_secs),
        // Virtual devices run no jobs: they refuse each with `jobs_disabled`.
        jobs: None,
        ..SessionOptions::default()
    };
    let started = Instant::now();

    // The spawner ramps; this task watches and reports.
    let spawner = {
        let stats = stats.clone();
        let signalled = signalled.clone();
        let slots = Arc::new(Semaphore::new(args.max_in_flight as usize));
        let mut tick = ramp(args.ramp_per_sec);
        tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            for device in devices {
                tick.tick().await;
                if *signalled.borrow() {
                    break;
                }
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let session = VirtualDevice {
                    device,
                    options: options.clone(),
                    stats: stats.clone(),
                    started,
                };
                tasks.spawn(session.run(Some(permit), stop.clone()));
                while tasks.try_join_next().is_some() {}
            }
            tasks
        })
    };

    let deadline = Duration::from_secs(args.connect_timeout_secs);
    let mut reporter = Reporter::new(&bar);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = signalled.changed() => break,
        }
        let ever = stats.ever.load(Ordering::Relaxed);
        let failed = stats.failed_attempts.load(Ordering::Relaxed);
        let refused = stats.refused.load(Ordering::Relaxed);
        bar.set_position(ever as u64);
        bar.set_message(format!("{failed} failed attempts, {refused} refused"));
        reporter.maybe_print(&format!(
            "connecting: {ever} of {total} connected, {failed} failed attempts, {refused} refused"
        ));
        if ever + refused >= total {
            break;
        }
        if started.elapsed() > deadline {
            bar.suspend(|| {
                eprintln!(
                    "warning: {ever} of {total} connected after {deadline:?}; giving up waiting"
                )
            });
            break;
        }
    }
    bar.finish_and_clear();
    // After a signal the spawner sees the flag at its next tick and returns.
    let tasks = match spawner.await {
        Ok(tasks) => tasks,
        Err(error) => {
            eprintln!("warning: the session spawner failed: {error}");
            JoinSet::new()
        }
    };
    let ever = stats.ever.load(Ordering::Relaxed);
    let secs =
        Duration::from_millis(stats.last_first_connect_ms.load(Ordering::Relaxed)).as_secs_f64();
    println!(
        "connected {ever} of {total} in {secs:.2} s ({:.1}/s; p50 {}, p99 {}, max {}); {} failed attempts, {} refused",
        rate(ever, secs),
        stats.latency(0.50),
        stats.latency(0.99),
        stats.latency(1.0),
        stats.failed_attempts.load(Ordering::Relaxed),
        stats.refused.load(Ordering::Relaxed),
    );
    if ever == total {
        println!("All {total} devices connected.");
    }
    Fleet { stats, tasks }
}

struct VirtualDevice {
    device: Device,
    options: SessionOptions,
    stats: Arc<Stats>,
    started: Instant,
}

impl VirtualDevice {
    /// Keeps one session open until `stop`, reconnecting like the agent does.
    /// `permit` (a handshake slot) is released at the first welcome or failure.
    async fn run(self, mut permit: Option<OwnedSemaphorePermit>, mut stop: watch::Receiver<bool>) {
        let Self {
            device,
            options,
            stats,
            started,
        } = self;
        // Without the host sections: every virtual device would scan this
        // process's thousands of sockets (see `HostSections`).
        let mut collector = Collector::with_host_sections(
            bulwark_agent::AGENT_VERSION,
            bulwark_agent::inventory::HostSections::Skip,
        );
        let backoff = Backoff::default();
        let mut attempt: u32 = 0;
        let mut first = true;
        loop {
            let begun = Instant::now();
            let mut connected = false;
            let result = {
                let mut on_connect = || {
                    connected = true;
                    drop(permit.take());
                    stats.online.fetch_add(1, Ordering::Relaxed);
                    if first {
                        stats
                            .latencies
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(begun.elapsed());
                        stats.ever.fetch_add(1, Ordering::Relaxed);
                        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        stats.last_first_connect_ms.fetch_max(ms, Ordering::Relaxed);
                    }
                };
                connection::session(
                    &device.endpoint,
                    &mut collector,
                    &options,
                    &mut stop,
                    &mut on_connect,
                )
                .await
            };
            drop(permit.take());
            if connected {
                stats.online.fetch_sub(1, Ordering::Relaxed);
                first = false;
            }
            match result {
                Ok(()) => return, // stop requested
                Err(error @ SessionError::Refused { .. }) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    stats.error(&error);
                    return;
                }
                Err(error) => {
                    if *stop.borrow() {
                        return;
                    }
                    if connected {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        attempt = 0;
                    } else {
                        stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    }
                    stats.error(&error);
                }
            }
            let delay = backoff.delay(attempt, rand::thread_rng().r#gen::<f64>());
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

async fn hold(stats: &Stats, hold_secs: Option<u64>, mut signalled: watch::Receiver<bool>) {
    let until = hold_secs.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    match hold_secs {
        Some(s) => println!("Holding the sessions for {s} s…"),
        None => println!("Holding the sessions until SIGINT or SIGTERM…"),
    }
    let mut status = tokio::time::interval(Duration::from_secs(30));
    status.set_missed_tick_behavior(MissedTickBehavior::Delay);
    status.tick().await;
    let mut watch = tokio::time::interval(Duration::from_millis(20));
    watch.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut storm = StormWatch::new(stats.online.load(Ordering::Relaxed));
    loop {
        let end = async {
            match until {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = end => return,
            _ = signalled.changed() => return,
            _ = status.tick() => println!(
                "holding: {} online, {} dropped, {} failed attempts",
                stats.online.load(Ordering::Relaxed),
                stats.dropped.load(Ordering::Relaxed),
                stats.failed_attempts.load(Ordering::Relaxed),
            ),
            _ = watch.tick() => storm.look(stats),
        }
    }
}

/// Reconnect storms while the fleet is held: when the online count falls
/// (the server was killed), the time from the first drop until every
/// device is back, and the session errors meanwhile. Times are printed as
/// Unix milliseconds too, so a script that knows when the server came back
/// can subtract.
struct StormWatch {
    fleet: usize,
    current: Option<Storm>,
}

struct Storm {
    dropped_at: Instant,
    dropped_at_unix_ms: u128,
    lowest: usize,
    errors_before: BTreeMap<String, usize>,
}

impl StormWatch {
    fn new(fleet: usize) -> Self {
        Self {
            fleet,
            current: None,
        }
    }

    fn look(&mut self, stats: &Stats) {
        let online = stats.online.load(Ordering::Relaxed);
        match &mut self.current {
            None if online < self.fleet => {
                println!(
                    "storm: {online} of {} online; waiting for the fleet to come back",
                    self.fleet
                );
                self.current = Some(Storm {
                    dropped_at: Instant::now(),
                    dropped_at_unix_ms: unix_ms(),
                    lowest: online,
                    errors_before: stats
                        .errors
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone(),
                });
            }
            None => {}
            Some(storm) if online < self.fleet => storm.lowest = storm.lowest.min(online),
            Some(storm) => {
                let took = storm.dropped_at.elapsed();
                println!(
                    "STORM fleet={} lowest_online={} dropped_at_unix_ms={} back_at_unix_ms={} back_after_ms={}",
                    self.fleet,
                    storm.lowest,
                    storm.dropped_at_unix_ms,
                    unix_ms(),
                    took.as_millis()
                );
                let errors = stats
                    .errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let during: BTreeMap<String, usize> = errors
                    .into_iter()
                    .filter_map(|(message, count)| {
                        let before = storm.errors_before.get(&message).copied().unwrap_or(0);
                        (count > before).then(|| (message, count - before))
                    })
                    .collect();
                if during.is_empty() {
                    println!("  no session errors during the storm");
                }
                print_errors("session errors during the storm", &during);
                self.current = None;
            }
        }
    }
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// The first `n` tokens of a token file; every line must parse.
fn parse_tokens(text: &str, n: usize, path: &Path) -> anyhow::Result<Vec<EnrollToken>> {
    let mut tokens = Vec::with_capacity(n);
    for (number, line) in text.lines().enumerate() {
        if tokens.len() == n {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let token = EnrollToken::parse(line).with_context(|| {
            format!("{}:{}: not an enrolment token", path.display(), number + 1)
        })?;
        tokens.push(token);
    }
    if tokens.len() < n {
        bail!(
            "{} holds {} tokens; {n} devices need one each",
            path.display(),
            tokens.len()
        );
    }
    Ok(tokens)
}

/// The soft "Max open files" value from `/proc/self/limits` text (`None`: unlimited or unreadable).
fn open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.strip_prefix("Max open files")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Refuses to start a fleet the open-file limit cannot hold (the simulator
/// cannot raise it without `unsafe`; the shell can, with `ulimit -n`).
fn check_fd_limit(n: usize) -> anyhow::Result<()> {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return Ok(());
    };
    let Some(soft) = open_files_limit(&limits) else {
        return Ok(());
    };
    let needed = n as u64 + SPARE_FDS;
    if soft < needed {
        bail!(
            "the open-file limit is {soft}, but {n} devices need about {needed} (one socket each); \
             raise it with `ulimit -n {needed}` (up to the hard limit) or run fewer devices"
        );
    }
    Ok(())
}

/// This process's resident set size in KiB, from `/proc/self/status`.
fn own_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_rss_kib(&status)
}

fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn millis(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        None => "-".into(),
    }
}

fn rate(count: usize, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Evenly spaced starts at `per_sec`; late ticks catch up, so the average holds.
fn ramp(per_sec: u32) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_sec.max(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    tick
}

fn progress_bar(prefix: &'static str, len: usize) -> ProgressBar {
    // indicatif draws to stderr and hides itself when that is not a terminal;
    // `Reporter` prints plain lines instead.
    let bar = ProgressBar::new(len as u64).with_prefix(prefix);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Plain progress lines every two seconds when the bar is hidden (logs, CI).
struct Reporter {
    enabled: bool,
    last: Instant,
}

impl Reporter {
    fn new(bar: &ProgressBar) -> Self {
        Self {
            enabled: bar.is_hidden(),
            last: Instant::now(),
        }
    }

    fn maybe_print(&mut self, line: &str) {
        if self.enabled && self.last.elapsed() >= Duration::from_secs(2) {
            self.last = Instant::now();
            println!("{line}");
        }
    }
}

fn print_errors(title: &str, errors: &BTreeMap<String, usize>) {
    if errors.is_empty() {
        return;
    }
    let mut by_count: Vec<_> = errors.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1));
    println!("  {title}:");
    for (message, count) in by_count.into_iter().take(5) {
        println!("    {count:>6} × {message}");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(byte: u8) -> EnrollToken {
        EnrollToken {
            secret: [byte; 32],
            ca_fingerprint: [7; 32],
            root_fingerprint: [8; 32],
        }
    }

    #[test]
    fn token_files_skip_blank_lines_and_name_bad_lines() {
        let path = Path::new("tokens.txt");
        let text = format!("{}\n\n  {}  \n{}\n", token(1), token(2), token(3));
        let tokens = parse_tokens(&text, 2, path).expect("two tokens");
        assert_eq!(
            tokens.iter().map(|t| t.secret[0]).collect::<Vec<_>>(),
            [1, 2]
        );

        let short = parse_tokens(&text, 4, path).expect_err("too few");
        assert_eq!(
            short.to_string(),
            "tokens.txt holds 3 tokens; 4 devices need one each"
        );

        let bad =
            parse_tokens(&format!("{}\nnonsense\n", token(1)), 2, path).expect_err("bad line");
        assert_eq!(bad.to_string(), "tokens.txt:2: not an enrolment token");
    }

    #[test]
    fn reads_the_soft_open_file_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95000                95000                processes \n\
                      Max open files            20000                40000                files     \n";
        assert_eq!(open_files_limit(limits), Some(20_000));
        assert_eq!(
            open_files_limit(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
        assert_eq!(open_files_limit(""), None);
    }

    #[test]
    fn reads_vm_rss() {
        assert_eq!(
            vm_rss_kib("VmPeak:\t  10 kB\nVmRSS:\t   12345 kB\n"),
            Some(12_345)
        );
        assert_eq!(vm_rss_kib("VmPeak:\t  10 kB\n"), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&values, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&values, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
