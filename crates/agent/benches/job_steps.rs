//! What the durable steps of a job's life cost on the agent (issue 19):
//! the history record (fsynced before a job starts), running a script
//! under its supervisor (which writes its pid, the script's group and the
//! exit record, each atomically) against spawning the interpreter
//! directly, the spooled result (fsynced before the run's files go), and
//! the acknowledgement (the result moved to `jobs/done/`).
//!
//! `cargo bench -p bulwark-agent --bench job_steps`. A plain harness
//! (median of timed runs) keeps criterion out of the build. The figures
//! depend on the disk: fsync dominates.

use std::path::Path;
use std::time::{Duration, Instant};

use bulwark_agent::jobs::{History, ResultSpool, run_script};
use bulwark_policy::Interpreter;
use bulwark_protocol::message::{JobOutcome, JobResult, JobRun};

const RUNS: usize = 200;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(what: &str, samples: Vec<Duration>) -> Duration {
    let m = median(samples.clone());
    let max = samples.iter().max().copied().unwrap_or_default();
    println!(
        "{what:<52} median {:>9.1} µs   max {:>9.1} µs",
        micros(m),
        micros(max)
    );
    m
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn id(n: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(n as u64).to_be_bytes());
    id
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = dir.path().join("jobs");
    std::fs::create_dir_all(&jobs).expect("mkdir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let agent = Path::new(env!("CARGO_BIN_EXE_bulwark-agent"));
    let run_dir = jobs.join("run");
    let script = b"exit 0\n";

    println!("{RUNS} runs each, on {}", dir.path().display());
    let mut history = History::open(&jobs.join("history")).expect("history");
    let recorded = report(
        "history record (append + fdatasync)",
        (0..RUNS)
            .map(|n| {
                let start = Instant::now();
                history.record(&id(n), &id(n + 1_000_000)).expect("record");
                start.elapsed()
            })
            .collect(),
    );

    let direct = report(
        "script `exit 0` spawned directly (before issue 19)",
        (0..RUNS)
            .map(|_| {
                runtime.block_on(async {
                    let start = Instant::now();
                    let status = tokio::process::Command::new("/bin/sh")
                        .arg("-c")
                        .arg("exit 0")
                        .process_group(0)
                        .status()
                        .await
                        .expect("sh");
                    assert!(status.success());
                    start.elapsed()
                })
            })
            .collect(),
    );
    let mut last = None;
    let supervised = report(
        "script `exit 0` under its supervisor (run_script)",
        (0..RUNS)
            .map(|n| {
                runtime.block_on(async {
                    let start = Instant::now();
                    let run = run_script(
                        &run_dir,
                        &id(n),
                        script,
                        Interpreter::Sh,
                        Duration::from_secs(30),
                        64 * 1024,
                        agent,
                    )
                    .await
                    .expect("run");
                    let elapsed = start.elapsed();
                    bulwark_agent::jobs::remove_run_files(&run_dir, &id(n));
                    last = Some(run);
                    elapsed
                })
            })
            .collect(),
    );
    let run: JobRun = last.expect("a run");

    let spool = ResultSpool::open(jobs.join("results")).expect("spool");
    let spooled = report(
        "result spooled (write, fsync, rename, fsync dir)",
        (0..RUNS)
            .map(|n| {
                let result = JobResult {
                    job_id: id(n),
                    outcome: JobOutcome::Ran(run.clone()),
                };
                let start = Instant::now();
                spool.put(&result).expect("put");
                start.elapsed()
            })
            .collect(),
    );
    let acknowledged = report(
        "result acknowledged (moved to done/, two dir fsyncs)",
        (0..RUNS)
            .map(|n| {
                let start = Instant::now();
                assert!(spool.acknowledge(&id(n)).expect("ack"));
                start.elapsed()
            })
            .collect(),
    );
    println!(
        "\nper job: supervisor adds {:.1} µs over a direct spawn; the durable \
         records (history, spool, acknowledgement) take {:.1} µs",
        micros(supervised.saturating_sub(direct)),
        micros(recorded + spooled + acknowledged)
    );
}
