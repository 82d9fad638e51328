//! `bulwark-fault-storm`: the long, seeded, randomised fault run of issue 19
//! (DESIGN.md invariant 8, "nothing is lost"), with the real binaries.
//!
//! One `bulwark up`, several agents, and a seeded mix of signed jobs and
//! faults: kill -9 and SIGSTOP of the server (with reconnect delays), kill -9
//! of an agent mid-script and just after a script's exit, agent restarts with
//! results in the spool. Every job is valid and every agent comes back, so
//! every job must run exactly once and be recorded with its true exit code
//! and output, and no security alert may be raised. It prints the tally and
//! exits 1 if anything was lost, run twice, wrong, refused, unfinished or
//! falsely alarmed.
//!
//! `cargo xtask faults [--seed N] [--jobs N] [--faults N] [--agents N]`
//! builds the binaries and runs it; the same seed gives the same plan.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bulwark_api::jobs::{JobTargetView, JobView};
use bulwark_e2e::{
    ExtraAgent, OperatorSetup, UpOptions, decode_json, is_final, kill_agent_after_exit, target_of,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PASSPHRASE: &str = "fault storm: a long passphrase nobody guesses";
const USAGE: &str = "usage: bulwark-fault-storm [--seed N] [--jobs N] [--faults N] [--agents N]";
/// How long the jobs may take to settle once the last fault is over.
const SETTLE: Duration = Duration::from_secs(240);

struct Plan {
    seed: u64,
    jobs: usize,
    faults: usize,
    agents: usize,
}

impl Plan {
    fn parse(args: &[String]) -> Result<Self> {
        let mut plan = Plan {
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs(),
            jobs: 120,
            faults: 20,
            agents: 3,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let number: u64 = args
                .next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))?
                .parse()
                .with_context(|| format!("{flag} takes a number\n{USAGE}"))?;
            let count = usize::try_from(number)?;
            match flag.as_str() {
                "--seed" => plan.seed = number,
                "--jobs" => plan.jobs = count.clamp(1, 1000),
                "--faults" => plan.faults = count.min(200),
                "--agents" => plan.agents = count.clamp(1, 8),
                _ => bail!("unknown argument {flag}\n{USAGE}"),
            }
        }
        Ok(plan)
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// kill -9 of `bulwark up`, started again after a short outage.
    ServerKill,
    /// kill -9 of the server and an outage long enough that agents back off.
    ServerKillLongOutage,
    /// SIGSTOP of the server, SIGCONT after a few seconds.
    ServerStop,
    /// kill -9 of an agent, wherever it is (often mid-script).
    AgentKill,
    /// A job whose script kills its agent just after it exits.
    AgentKillAtScriptExit,
    /// SIGTERM of an agent (results in its spool), started again.
    AgentRestart,
}

const FAULTS: [Fault; 6] = [
    Fault::ServerKill,
    Fault::ServerKillLongOutage,
    Fault::ServerStop,
    Fault::AgentKill,
    Fault::AgentKillAtScriptExit,
    Fault::AgentRestart,
];

/// A job the storm submitted, and the truth it must be recorded with.
struct Submitted {
    n: usize,
    id: String,
    device: String,
    exit_code: i64,
    /// The file the script appends `begin` and `end` to.
    ran: PathBuf,
}

#[derive(Default, Debug)]
struct Tally {
    jobs: usize,
    ran: usize,
    ran_twice: usize,
    results_lost: usize,
    wrong_results: usize,
    refused: usize,
    unfinished: usize,
    false_alarms: usize,
    faults: usize,
    /// Ended by a clean agent restart and recorded so (no exit status).
    stopped_with_agent: usize,
}

impl Tally {
    fn clean(&self) -> bool {
        self.ran_twice == 0
            && self.results_lost == 0
            && self.wrong_results == 0
            && self.refused == 0
            && self.unfinished == 0
            && self.false_alarms == 0
            && self.ran == self.jobs
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    match storm(&args).await {
        Ok(tally) if tally.clean() => std::process::ExitCode::SUCCESS,
        Ok(_) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("fault storm failed: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn storm(args: &[String]) -> Result<Tally> {
    let plan = Plan::parse(args)?;
    let started = Instant::now();
    println!(
        "fault storm: seed {}, {} jobs, {} faults, {} agents",
        plan.seed, plan.jobs, plan.faults, plan.agents
    );
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut s = OperatorSetup::start_with(PASSPHRASE, UpOptions::default().fixed_ports()?).await?;
    let mut agents = Vec::new();
    for _ in 0..plan.agents {
        agents.push(s.victim().await?);
    }
    println!(
        "[{:>5.1}s] server and {} agents up",
        started.elapsed().as_secs_f64(),
        agents.len()
    );

    // The order of jobs and faults, fixed by the seed.
    let mut steps: Vec<Option<Fault>> = (0..plan.jobs).map(|_| None).collect();
    for _ in 0..plan.faults {
        let at = rng.gen_range(0..=steps.len());
        steps.insert(at, Some(FAULTS[rng.gen_range(0..FAULTS.len())]));
    }
    let total = steps.len();
    let mut submitted = Vec::new();
    let mut tally = Tally::default();
    for (step, fault) in steps.into_iter().enumerate() {
        revive_dead_agents(&mut agents)?;
        let progress = format!(
            "[{:>5.1}s {:>3}/{total}]",
            started.elapsed().as_secs_f64(),
            step + 1
        );
        match fault {
            None => {
                let agent = rng.gen_range(0..agents.len());
                let job = submit(&s, &agents[agent], submitted.len(), &mut rng, false).await?;
                println!(
                    "{progress} job {} (exit {}) to agent {agent}",
                    job.n, job.exit_code
                );
                submitted.push(job);
            }
            Some(fault) => {
                tally.faults += 1;
                let agent = rng.gen_range(0..agents.len());
                let what =
                    inject(&mut s, &mut agents, agent, fault, &mut submitted, &mut rng).await?;
                println!("{progress} fault: {what}");
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..1200))).await;
    }
    revive_dead_agents(&mut agents)?;
    println!(
        "[{:>5.1}s] all submitted; waiting for every job to settle",
        started.elapsed().as_secs_f64()
    );
    settle(&s, &mut agents, &submitted, &mut tally).await?;
    tally.false_alarms = alerts(&s).await?;
    print_tally(&plan, &tally, started.elapsed());
    Ok(tally)
}

/// Starts again every agent whose process has exited (killed by a fault).
fn revive_dead_agents(agents: &mut [ExtraAgent]) -> Result<()> {
    for agent in agents.iter_mut() {
        if agent.proc.try_wait()?.is_some() {
            agent.resume()?;
        }
    }
    Ok(())
}

/// Submits job `n` to `agent` without waiting: it appends to its own file,
/// sleeps a little, prints `out-N` and exits with a code of its own; with
/// `kill_agent`, a killer outside its process group kills the agent as soon
/// as the run's script file is gone (just after the script exits).
async fn submit(
    s: &OperatorSetup,
    agent: &ExtraAgent,
    n: usize,
    rng: &mut StdRng,
    kill_agent: bool,
) -> Result<Submitted> {
    let ran = s.work.path().join(format!("ran-{n}.log"));
    let exit_code = i64::try_from(n % 4)?;
    let sleep = f64::from(rng.gen_range(0u32..2500)) / 1000.0;
    let killer = if kill_agent {
        kill_agent_after_exit(&s.work.path().join(format!("killer-{n}.ready")))
    } else {
        String::new()
    };
    let body = format!(
        "echo begin >> '{ran}'\n{killer}sleep {sleep}\necho end >> '{ran}'\necho out-{n}\nexit {exit_code}\n",
        ran = ran.display(),
    );
    let path = s.work.path().join(format!("job-{n}.sh"));
    std::fs::write(&path, body)?;
    // The CLI talks to the server: retried while a fault has it down.
    let mut last = None;
    for _ in 0..20 {
        match s.run_script(&agent.device_id, &path, &["--no-wait"]).await {
            Ok(out) if out.success() => {
                let view: JobView = decode_json(&out.stdout).context("job run --json")?;
                return Ok(Submitted {
                    n,
                    id: view.id,
                    device: agent.device_id.clone(),
                    exit_code,
                    ran,
                });
            }
            Ok(out) => last = Some(out.all_output()),
            Err(error) => last = Some(format!("{error:#}")),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "job {n} could not be submitted: {}",
        last.unwrap_or_default()
    )
}

async fn inject(
    s: &mut OperatorSetup,
    agents: &mut [ExtraAgent],
    agent: usize,
    fault: Fault,
    submitted: &mut Vec<Submitted>,
    rng: &mut StdRng,
) -> Result<String> {
    Ok(match fault {
        Fault::ServerKill => {
            let down = Duration::from_millis(rng.gen_range(0..3000));
            s.up.crash_and_restart(down).await?;
            format!("kill -9 of the server, down {down:?}")
        }
        Fault::ServerKillLongOutage => {
            let down = Duration::from_millis(rng.gen_range(5000..15000));
            s.up.crash_and_restart(down).await?;
            format!("kill -9 of the server, down {down:?} (agents back off)")
        }
        Fault::ServerStop => {
            let stopped = Duration::from_millis(rng.gen_range(1000..7000));
            s.up.process().signal("STOP")?;
            tokio::time::sleep(stopped).await;
            s.up.process().signal("CONT")?;
            format!("SIGSTOP of the server for {stopped:?}")
        }
        Fault::AgentKill => {
            agents[agent].proc.kill9().await?;
            format!("kill -9 of agent {agent}")
        }
        Fault::AgentKillAtScriptExit => {
            let job = submit(s, &agents[agent], submitted.len(), rng, true).await?;
            let text = format!(
                "job {} (exit {}) to agent {agent} kills its agent as it exits",
                job.n, job.exit_code
            );
            submitted.push(job);
            text
        }
        Fault::AgentRestart => {
            agents[agent].stop().await?;
            agents[agent].resume()?;
            format!("restart of agent {agent}")
        }
    })
}

/// Waits until every job is final on its device (or [`SETTLE`] passes),
/// then counts, job by job, what ran and what was recorded.
async fn settle(
    s: &OperatorSetup,
    agents: &mut [ExtraAgent],
    submitted: &[Submitted],
    tally: &mut Tally,
) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    let mut targets: Vec<Option<JobTargetView>> = vec![None; submitted.len()];
    loop {
        revive_dead_agents(agents)?;
        for (job, target) in submitted.iter().zip(targets.iter_mut()) {
            if target.is_some() {
                continue;
            }
            let Ok(view) = s.job_view(&job.id).await else {
                continue;
            };
            let t = target_of(&view, &job.device)?;
            if is_final(&t) {
                *target = Some(t);
            }
        }
        let open = targets.iter().filter(|t| t.is_none()).count();
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tally.jobs = submitted.len();
    for (job, target) in submitted.iter().zip(&targets) {
        let lines = std::fs::read_to_string(&job.ran).unwrap_or_default();
        let begun = lines.lines().filter(|l| *l == "begin").count();
        let ended = lines.lines().filter(|l| *l == "end").count();
        if begun > 0 {
            tally.ran += 1;
        }
        if begun > 1 {
            tally.ran_twice += 1;
            println!("job {} ran {begun} times", job.n);
        }
        let Some(target) = target else {
            tally.unfinished += 1;
            println!("job {} ({}) never reached a final state", job.n, job.id);
            continue;
        };
        let state = target.state.as_str();
        let recorded_run = matches!(state, "succeeded" | "failed" | "timed_out");
        if state == "refused" {
            tally.refused += 1;
            if begun > 0 {
                tally.results_lost += 1;
            }
            println!(
                "job {} was refused ({}: {}){}",
                job.n,
                target.refusal_code.as_deref().unwrap_or("null"),
                target.refusal_reason.as_deref().unwrap_or("null"),
                if begun > 0 { " although it ran" } else { "" }
            );
        } else if recorded_run && ended > 0 {
            let output_ok = target
                .stdout
                .as_deref()
                .is_some_and(|o| o.contains(&format!("out-{}", job.n)));
            if target.exit_code.map(i64::from) != Some(job.exit_code) || !output_ok {
                tally.wrong_results += 1;
                println!(
                    "job {} recorded {state}, exit {:?}, stdout {:?}: the script exited {}",
                    job.n, target.exit_code, target.stdout, job.exit_code
                );
            }
        } else if recorded_run && target.exit_code.is_none() {
            // A clean agent stop ends the script it runs (as systemd's stop
            // of the unit would): the truth is "killed, no exit status".
            tally.stopped_with_agent += 1;
        } else if recorded_run {
            tally.wrong_results += 1;
            println!(
                "job {} recorded {state}, exit {:?}, but its script did not finish",
                job.n, target.exit_code
            );
        }
    }
    Ok(())
}

/// Security alerts in `demo`'s audit log: nothing in a storm is an attack.
async fn alerts(s: &OperatorSetup) -> Result<usize> {
    let alerts = s.api.security_alerts("demo").await?;
    for alert in &alerts {
        println!("false alarm: {} {}", alert.action, alert.detail);
    }
    Ok(alerts.len())
}

fn print_tally(plan: &Plan, tally: &Tally, took: Duration) {
    println!(
        "\nfault storm, seed {} ({:.0} s)",
        plan.seed,
        took.as_secs_f64()
    );
    let rows = [
        ("jobs", tally.jobs),
        ("faults injected", tally.faults),
        ("ran", tally.ran),
        ("ran twice", tally.ran_twice),
        ("ended by agent stop", tally.stopped_with_agent),
        ("results lost", tally.results_lost),
        ("wrong results", tally.wrong_results),
        ("valid jobs refused", tally.refused),
        ("unfinished", tally.unfinished),
        ("false alarms", tally.false_alarms),
    ];
    for (name, value) in rows {
        println!("  {name:<20} {value:>5}");
    }
    println!(
        "{}",
        if tally.clean() {
            "PASS: every job ran once and was recorded with its true result"
        } else {
            "FAIL"
        }
    );
}
