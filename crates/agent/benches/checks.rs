//! What the policy's checks cost the agent (issue 16's figure: "agent CPU
//! and memory with 50 checks every 60 s"): each probe kind measured on
//! this machine (median of timed runs), then the CPU share and memory of a
//! mix of 50 checks each run once a minute, computed from those medians.
//!
//! `cargo bench -p bulwark-agent --bench checks`. A plain harness keeps
//! criterion out of the build.

use std::time::{Duration, Instant};

use bulwark_agent::checks::probes::{Probes, measure_slow};
use bulwark_policy::checks::Probe;
use sha2::{Digest, Sha256};

const RUNS: usize = 100;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sshd_config");
    std::fs::write(&file, "PermitRootLogin no\n".repeat(200)).expect("write");
    let sha256: [u8; 32] = Sha256::digest("PermitRootLogin no\n".repeat(200)).into();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let own_name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();

    let rss_before = rss_kib();
    let mut probes = Probes::new(None);
    let kinds: Vec<(&str, Probe)> = vec![
        ("cpu", Probe::Cpu),
        ("memory", Probe::Memory),
        ("disk /", Probe::Disk { mount: "/".into() }),
        ("load", Probe::Load),
        (
            "process (every process read)",
            Probe::Process { name: own_name },
        ),
        (
            "file-hash (3.8 KB file)",
            Probe::FileHash {
                path: file.display().to_string(),
                sha256,
            },
        ),
        (
            "tcp-port (loopback)",
            Probe::TcpPort {
                host: "127.0.0.1".into(),
                port,
            },
        ),
    ];
    println!("{RUNS} runs of each probe");
    let mut medians = Vec::new();
    for (what, probe) in &kinds {
        let mut samples = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            let measured = match probes.measure_fast(probe) {
                Some(m) => m,
                None => runtime.block_on(measure_slow(probe.clone())),
            };
            samples.push(started.elapsed());
            assert!(measured.is_ok(), "{what}: {measured:?}");
        }
        let m = median(samples);
        println!("{what:<32} median {:>9.1} µs", m.as_secs_f64() * 1e6);
        medians.push(m);
    }
    let rss_after = rss_kib();
    // The mix: 50 checks, seven of each kind and one more disk check,
    // each run once a minute.
    let per_minute: Duration = medians.iter().map(|m| *m * 7).sum::<Duration>() + medians[2];
    println!(
        "50 checks every 60 s: {:.2} ms of CPU a minute = {:.4}% of one core; probe tables {} KiB resident",
        per_minute.as_secs_f64() * 1e3,
        per_minute.as_secs_f64() / 60.0 * 100.0,
        rss_after.saturating_sub(rss_before)
    );
    drop(listener);
}
