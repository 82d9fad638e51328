//! A server that withholds a freeze (RFD 0006, "The kill switch the server
//! cannot withhold"), with real processes: `bulwark up`, five more agents
//! of tenant demo and a real `bulwark witness` (grace 5 s) named by demo's
//! root-signed policy (one witness required, freshness `W` 60 s). The
//! customer signs a freeze with the tenant's root key and gives it to the
//! witness only: the server never hears of it, as if it had dropped it.
//!
//! From then on a job goes to three of the agents every 3 s; each must
//! start refusing with `witness_cosignatures_missing` no later than the
//! bound, freeze + grace + `W` (plus slack for a job's round trip), and
//! refuse every job after that. Every new job grows the log, and a head the
//! witness no longer cosigns carries no cosignature, so this happens just
//! after the grace.
//!
//! The `W` in the bound is for jobs released in the grace, whose head the
//! witness did cosign: the two other agents are offline, the server
//! (played with the database) holds a job back for each and keeps heads
//! newer than the last cosigned one from being stored. The job delivered
//! within `W` of that cosignature runs; the one delivered past it must be
//! refused. An agent that ignored the cosignatures' age would run it (and
//! one that ignored cosignatures altogether would run the three agents'
//! jobs until the test's cap): either fails the test. Throughout, neither
//! the server nor any agent holds a freeze.
//!
//! Prints the figures for `docs/figures.md`. Needs the `sqlite3`
//! command-line tool.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bulwark_api::jobs::{JobTargetView, JobView};
use bulwark_api::log::{LogCheckpointsView, LogHeadView, LogKeyView};
use bulwark_e2e::{
    ExtraAgent, OperatorSetup, WitnessProcess, decode_json, is_final, sql_text, target_of,
    wait_for, witnesses_section,
};
use bulwark_policy::{FreezeStatement, Limits, PublicKey, Signed, TrustRoot};
use bulwark_translog::cosignature::cosignature_times;
use bulwark_witness::freeze::request_body;
use ed25519_dalek::SigningKey;

#[path = "support/key_file.rs"]
mod key_file;
use key_file::steal_key;

const PASSPHRASE: &str = "e2e freeze withheld: a long passphrase nobody guesses";
/// The witness's `--freeze-grace-secs`.
const GRACE_SECS: u64 = 5;
/// The policy's witness freshness window `W` (the smallest allowed).
const FRESHNESS_SECS: u64 = 60;
/// The agents that must stop (besides `bulwark up`'s own).
const AGENTS: usize = 3;
/// One job to the agents this often.
const ROUND: Duration = Duration::from_secs(3);
/// What the bound allows for a job's round trip (sign, submit, deliver, answer).
const SLACK_SECS: u64 = 10;
/// How long past the bound jobs are still sent before the test gives up.
const CAP_PAST_BOUND_SECS: u64 = 40;
/// The refusal a job gets without enough fresh cosignatures.
const MISSING: &str = "witness_cosignatures_missing";
/// How long a job may take to reach a final state on every target.
const JOB_WAIT: Duration = Duration::from_secs(30);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs demo's next policy version needing `witness` (`policy show
/// --toml`, edit, `policy sign`); returns the version the server holds.
async fn sign_witness_policy(s: &OperatorSetup, witness: &WitnessProcess) -> Result<u64> {
    let section = witnesses_section(1, FRESHNESS_SECS, &[witness]);
    let shown = s
        .sign_policy_sections(&["witnesses"], &section, "policy-witnessed.toml")
        .await?;
    ensure!(
        shown.contains("required = 1") && shown.contains(&witness.vkey()),
        "the signed policy does not name the witness:\n{shown}"
    );
    s.api
        .trust("demo")
        .await?
        .policy_version
        .context("demo has no policy")
}

/// What `device`'s agent last reported holding (`device_trust`): root
/// version, policy version, freeze sequence, frozen (0 or 1).
fn agent_holds(s: &OperatorSetup, device: &str) -> Result<String> {
    s.sql(&format!(
        "SELECT root_version || ' ' || policy_version || ' ' || freeze_sequence || ' ' || frozen \
         FROM device_trust WHERE device_id = {}",
        sql_text(device)
    ))
}

/// The root keys of `root` among the key files of the CLI's key store
/// (the customer's machine, here), opened with the passphrase.
fn root_keys_held(s: &OperatorSetup, root: &TrustRoot) -> Result<Vec<SigningKey>> {
    let mut held = Vec::new();
    for entry in std::fs::read_dir(s.config.join("keys"))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "key") {
            continue;
        }
        let Ok(key) = steal_key(&path, PASSPHRASE) else {
            continue;
        };
        let public = PublicKey::Ed25519(key.verifying_key().to_bytes());
        if root.keys.iter().any(|k| k.key == public) {
            held.push(key);
        }
    }
    Ok(held)
}

/// A script for round `name`: it appends the directory it runs in (the
/// agent's `STATE_DIR/jobs/run`) to `WORK/NAME.ran`, so the file tells which
/// agents ran it. Returns (script, that file).
fn round_script(work: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let ran = work.join(format!("{name}.ran"));
    let script = work.join(format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\npwd -P >> '{}'\necho 'hello from {name}'\n",
            ran.display()
        ),
    )?;
    Ok((script, ran))
}

/// Whether the agent with state directory `state_dir` ran the script whose
/// file is `ran`.
fn ran_on(ran: &Path, state_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(ran) else {
        return false;
    };
    text.lines()
        .any(|line| Path::new(line).starts_with(state_dir))
}

/// An agent offline from before the freeze, and the job the server holds
/// back for it.
struct HeldBack {
    agent: ExtraAgent,
    /// Its state directory, canonical.
    dir: PathBuf,
    job: String,
    /// What its script writes to.
    ran: PathBuf,
}

impl HeldBack {
    fn new(agent: ExtraAgent) -> Result<Self> {
        Ok(Self {
            dir: std::fs::canonicalize(agent.state_dir.path())?,
            agent,
            job: String::new(),
            ran: PathBuf::new(),
        })
    }

    /// Signs and submits its job (`--no-wait`): it enters the log at once.
    async fn submit(&mut self, s: &OperatorSetup, name: &str) -> Result<()> {
        let (script, ran) = round_script(s.work.path(), name)?;
        let out = s
            .run_script(&self.agent.device_id, &script, &["--no-wait"])
            .await?
            .ok()?;
        let view: JobView = decode_json(&out.stdout).context("job run --json")?;
        self.job = view.id;
        self.ran = ran;
        Ok(())
    }

    fn ran(&self) -> bool {
        ran_on(&self.ran, &self.dir)
    }

    /// Brings the agent back once a cosignature made at Unix time
    /// `cosigned_at` is `age` seconds old (the server then delivers the
    /// job) and waits for its answer; returns it, the seconds from the
    /// freeze `t` to the delivery, and the cosignature's age then.
    async fn deliver(
        &mut self,
        s: &OperatorSetup,
        cosigned_at: u64,
        age: u64,
        t: Instant,
    ) -> Result<(JobTargetView, f64, u64)> {
        let at = UNIX_EPOCH + Duration::from_secs(cosigned_at + age);
        if let Ok(wait) = at.duration_since(SystemTime::now()) {
            tokio::time::sleep(wait).await;
        }
        let delivered = t.elapsed().as_secs_f64();
        let age = now_secs().saturating_sub(cosigned_at);
        self.agent.resume()?;
        let answer = s.wait_final(&self.job, &self.agent.device_id).await?;
        Ok((answer, delivered, age))
    }
}

/// One agent's answer to one round's job.
#[derive(Debug, Clone)]
struct Answer {
    /// Seconds from the freeze until the test saw it final.
    seen_at: f64,
    target: JobTargetView,
    ran: bool,
}

/// One job to every agent: when it was submitted, and each agent's answer.
struct Round {
    id: String,
    submitted_at: f64,
    answers: Vec<Answer>,
}

/// Submits round `n`'s job to every device of `devices` (`--no-wait`) and
/// waits for each answer, timed from `freeze`.
async fn round(
    s: &OperatorSetup,
    n: usize,
    agents: &[(String, PathBuf)],
    freeze: Instant,
) -> Result<Round> {
    let (script, ran) = round_script(s.work.path(), &format!("round-{n}"))?;
    let targets = agents
        .iter()
        .map(|(device, _)| device.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let submitted_at = freeze.elapsed().as_secs_f64();
    let out = s
        .run_script(&targets, &script, &["--no-wait"])
        .await?
        .ok()?;
    let view: JobView = decode_json(&out.stdout).context("job run --json")?;
    let id = view.id;
    let mut seen: Vec<Option<(JobTargetView, f64)>> = vec![None; agents.len()];
    wait_for(
        JOB_WAIT,
        &format!("round {n}'s job {id} to end on every agent"),
        async || {
            let view = s.api.job(&id).await?;
            let at = freeze.elapsed().as_secs_f64();
            for ((device, _), seen) in agents.iter().zip(seen.iter_mut()) {
                let target = target_of(&view, device)?;
                if seen.is_none() && is_final(&target) {
                    *seen = Some((target, at));
                }
            }
            Ok(seen.iter().all(Option::is_some).then_some(()))
        },
    )
    .await?;
    let answers = seen
        .into_iter()
        .flatten()
        .zip(agents)
        .map(|((target, seen_at), (_, state_dir))| Answer {
            seen_at,
            ran: ran_on(&ran, state_dir),
            target,
        })
        .collect();
    Ok(Round {
        id,
        submitted_at,
        answers,
    })
}

/// The rounds so far, one line per job, for a failure's message.
fn table(rounds: &[Round]) -> String {
    let mut out = String::new();
    for (n, r) in rounds.iter().enumerate() {
        out.push_str(&format!(
            "  round {n} (job {}) submitted at T+{:.1} s:",
            r.id, r.submitted_at
        ));
        for (i, a) in r.answers.iter().enumerate() {
            out.push_str(&format!(
                "  agent {i} {}{} ran={} at T+{:.1} s;",
                a.target.state,
                a.target
                    .refusal_code
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default(),
                a.ran,
                a.seen_at
            ));
        }
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn a_freeze_the_server_withholds_stops_every_agent_within_the_bound() -> Result<()> {
    let started = Instant::now();
    let limits = Limits::default();
    let mut s = OperatorSetup::start(PASSPHRASE).await?;
    // The three agents jobs are sent to after the freeze, and two more,
    // offline meanwhile, that the server holds a job back for.
    let mut agents: Vec<ExtraAgent> = Vec::new();
    for _ in 0..AGENTS + 2 {
        agents.push(s.victim().await?);
    }
    let mut late = HeldBack::new(agents.pop().context("an agent")?)?;
    let mut early = HeldBack::new(agents.pop().context("an agent")?)?;
    let targets: Vec<(String, PathBuf)> = agents
        .iter()
        .map(|a| {
            Ok((
                a.device_id.clone(),
                std::fs::canonicalize(a.state_dir.path())?,
            ))
        })
        .collect::<Result<_>>()?;
    let everyone: Vec<(String, PathBuf)> = targets
        .iter()
        .cloned()
        .chain([&early, &late].map(|h| (h.agent.device_id.clone(), h.dir.clone())))
        .collect();

    // 1. A witness following demo's log, with demo's first root pinned
    //    (the fingerprint as the server gives it; the customer compares it
    //    with its own copy), named by demo's next policy.
    let trust = s.api.trust("demo").await?;
    let fingerprint = trust
        .root_fingerprint
        .clone()
        .context("tenant demo has a trust root")?;
    let log_key: LogKeyView = s.api.get_as("/api/v1/log/key").await?;
    let head: LogHeadView = s.api.get_as("/api/v1/tenants/demo/log").await?;
    let mut witness =
        WitnessProcess::init("witness.test/freeze-withheld")?.with_freeze_grace(GRACE_SECS);
    witness.add_log(&head.origin, &log_key.vkey, Some(&fingerprint))?;
    witness.start().await?;
    let policy_version = sign_witness_policy(&s, &witness).await?;
    for (device, _) in &everyone {
        let want = format!("{} {policy_version} 0 0", trust.root_version.unwrap_or(1));
        wait_for(
            Duration::from_secs(30),
            &format!("agent {device} to hold policy v{policy_version}, not frozen"),
            async || Ok((agent_holds(&s, device)? == want).then_some(())),
        )
        .await?;
    }

    // 2. Under the witnessed policy, a good job runs on all five agents;
    //    then the two the server will hold jobs back for go offline.
    let devices = everyone
        .iter()
        .map(|(d, _)| d.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let (script, ran) = round_script(s.work.path(), "before")?;
    let out = s.run_script(&devices, &script, &[]).await?.ok()?;
    let view: JobView = decode_json(&out.stdout).context("job run --json")?;
    for (device, state_dir) in &everyone {
        let target = target_of(&view, device)?;
        ensure!(
            target.state == "succeeded" && ran_on(&ran, state_dir),
            "the job before the freeze did not run on {device}: {target:?}"
        );
    }
    for held in [&mut early, &mut late] {
        held.agent.stop().await?;
        s.api
            .wait_device_online(&held.agent.device_id, false, Duration::from_secs(30))
            .await?;
    }

    // 3. The customer's freeze, signed by demo's root key(s) held on this
    //    machine, with the root chain as the server hands it out, is given
    //    to the witness, and to nobody else: the server withholds it.
    let roots = trust
        .roots
        .iter()
        .map(|r| {
            Signed::from_bytes(&STANDARD.decode(r)?, &limits).map_err(|e| anyhow!("a root: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let root: TrustRoot = roots
        .last()
        .context("no root")?
        .statement(&limits)
        .map_err(|e| anyhow!("{e}"))?;
    let keys = root_keys_held(&s, &root)?;
    ensure!(
        u32::try_from(keys.len())? >= root.threshold,
        "this machine holds {} of demo's root keys, {} sign",
        keys.len(),
        root.threshold
    );
    let mut freeze = Signed::new(&FreezeStatement {
        tenant: root.tenant.clone(),
        sequence: trust.freeze_sequence + 1,
        frozen: true,
        reason: "e2e: a freeze the server withholds".into(),
    });
    for key in &keys {
        freeze.sign(key);
    }
    let body = request_body(&roots, &freeze);
    // T: just before the witness takes it (so every time below is, if
    // anything, longer than from the witness's own `since`).
    let t = Instant::now();
    let t_wall = now_secs();
    let reply = bulwark_e2e::http_client()?
        .post(format!("{}/bulwark/v1/freeze", witness.url()))
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .send()
        .await?;
    let status = reply.status().as_u16();
    let text = reply.text().await?;
    ensure!(
        status == 200 && text.contains("frozen"),
        "the witness did not take the freeze: {status} {text:?}"
    );
    eprintln!(
        "[test] T: the witness took the freeze in {:.3} s: {}",
        t.elapsed().as_secs_f64(),
        text.trim()
    );

    // The jobs the server will hold back: signed with the operator key and
    // released into the log now, in the witness's grace, for the two agents
    // that are offline.
    early.submit(&s, "held-back-early").await?;
    late.submit(&s, "held-back-late").await?;

    // 4. From T on, a job to the three agents every ROUND, each waited for,
    //    until each has refused one with `witness_cosignatures_missing` and
    //    then another one, or the cap.
    let bound = GRACE_SECS + FRESHNESS_SECS;
    let cap = Duration::from_secs(bound + CAP_PAST_BOUND_SECS);
    let mut rounds: Vec<Round> = Vec::new();
    // Each agent's first refusal: (round, seconds from T).
    let mut stopped: Vec<Option<(usize, f64)>> = vec![None; AGENTS];
    loop {
        let round_start = Instant::now();
        let n = rounds.len();
        rounds.push(round(&s, n, &targets, t).await?);
        let this = &rounds[n];
        for (i, answer) in this.answers.iter().enumerate() {
            let target = &answer.target;
            let refused =
                target.state == "refused" && target.refusal_code.as_deref() == Some(MISSING);
            let ran = target.state == "succeeded" && target.exit_code == Some(0);
            if answer.ran != ran || !(ran || refused) {
                bail!(
                    "agent {i}: an unexpected answer in round {n}: {target:?}, the script ran: {}\n{}",
                    answer.ran,
                    table(&rounds)
                );
            }
            match stopped[i] {
                None if refused => stopped[i] = Some((n, answer.seen_at)),
                Some((first, _)) if ran => {
                    bail!(
                        "agent {i} ran round {n}'s job after refusing round {first}'s\n{}",
                        table(&rounds)
                    );
                }
                _ => {}
            }
        }
        // Done when every agent refused, and refused once more after that.
        if stopped
            .iter()
            .all(|s| s.is_some_and(|(first, _)| first < n))
        {
            break;
        }
        if t.elapsed() >= cap {
            bail!(
                "not every agent stopped within {cap:?} of the freeze (bound: grace {GRACE_SECS} s \
                 + W {FRESHNESS_SECS} s = {bound} s):\n{}",
                table(&rounds)
            );
        }
        tokio::time::sleep(ROUND.saturating_sub(round_start.elapsed())).await;
    }
    eprintln!("[test] the rounds from T:\n{}", table(&rounds));

    // 5. Every agent stopped within the bound (with the slack), and not
    //    before the witness's grace ran out: in the grace it still cosigns.
    //    Its clock counts whole seconds, so its grace may end up to 1 s
    //    before T + grace.
    let mut firsts = Vec::new();
    for (i, stop) in stopped.iter().enumerate() {
        let (first, at) = stop.context("unreachable: every agent stopped")?;
        let last_run = rounds[..first]
            .iter()
            .rev()
            .find(|r| r.answers[i].ran)
            .map(|r| r.answers[i].seen_at);
        eprintln!(
            "[test] agent {i} ({}): last job run at T+{}, first refusal (round {first}, job {}) seen at T+{at:.1} s",
            targets[i].0,
            last_run.map_or_else(|| "-".to_owned(), |at| format!("{at:.1} s")),
            rounds[first].id,
        );
        ensure!(
            at <= (bound + SLACK_SECS) as f64,
            "agent {i} first refused at T+{at:.1} s, past the bound {bound} s + {SLACK_SECS} s"
        );
        ensure!(
            at >= (GRACE_SECS - 1) as f64,
            "agent {i} refused at T+{at:.1} s, inside the witness's grace of {GRACE_SECS} s"
        );
        let refusal = &rounds[first].answers[i].target;
        ensure!(
            refusal
                .refusal_reason
                .as_deref()
                .is_some_and(|r| r.contains("0 of the policy's witnesses")),
            "agent {i}'s refusal: {refusal:?}"
        );
        firsts.push(at);
    }

    // 6. The owned server's best move against the bound: hold the jobs
    //    back and deliver them under the newest head the witness cosigned
    //    (in its grace), storing no newer head, so that the agents get no
    //    uncosigned head to refuse. Until that cosignature is W old an agent
    //    takes such a job (the W in the bound); once it is older it must
    //    refuse it.
    let tenant = sql_text(s.sql("SELECT id FROM tenants WHERE name = 'demo'")?.trim());
    let mut release = 0;
    for held in [&early, &late] {
        let idx: u64 = s
            .sql(&format!(
                "SELECT release_log_idx FROM jobs WHERE id = {}",
                sql_text(&held.job)
            ))?
            .parse()
            .context("the held-back job was released into the log")?;
        release = release.max(idx);
    }
    let stored: LogCheckpointsView = s
        .api
        .get_as(&format!(
            "/api/v1/tenants/demo/log/checkpoints?from_size={}",
            release + 1
        ))
        .await?;
    let (kept, cosigned_at) = stored
        .checkpoints
        .iter()
        .rev()
        .find_map(|c| {
            let times =
                cosignature_times(&c.note, std::slice::from_ref(witness.verifier()), &limits)
                    .ok()?;
            Some((c.size, times[0]?))
        })
        .context("no stored head covering the held-back jobs carries the witness's cosignature")?;
    // The witness's clock counts whole seconds from when it took the freeze
    // (at most a second after T): nothing it cosigned is dated at or past
    // the end of its grace.
    ensure!(
        cosigned_at <= t_wall + GRACE_SECS,
        "the witness cosigned at {cosigned_at}, past the grace ending about {}",
        t_wall + GRACE_SECS
    );
    eprintln!(
        "[test] the held-back jobs (log entries up to {release}) are covered by head {kept}, \
         cosigned at T+{} s",
        cosigned_at.saturating_sub(t_wall)
    );
    s.sql(&format!(
        "CREATE TRIGGER withhold_heads BEFORE INSERT ON log_checkpoints \
           WHEN NEW.log_id = {tenant} BEGIN SELECT RAISE(IGNORE); END; \
         DELETE FROM log_checkpoints WHERE log_id = {tenant} AND size > {kept};"
    ))?;
    // Within W of the cosignature, the job runs: the server can hold a job
    // back that long, and this is what the W in the bound is for (and
    // proves the server does deliver under the kept head).
    let (ran_early, early_at, early_age) = early
        .deliver(&s, cosigned_at, FRESHNESS_SECS / 2, t)
        .await?;
    ensure!(
        ran_early.state == "succeeded" && early.ran(),
        "the held-back job delivered within W of its head's cosignature: {ran_early:?}"
    );
    // Past W (by this machine's clock, which is the agent's: an agent takes
    // a cosignature while `cosigned_at + W >= now`), it is refused.
    let (refused, late_at, late_age) = late.deliver(&s, cosigned_at, FRESHNESS_SECS + 2, t).await?;
    ensure!(
        refused.state == "refused"
            && refused.refusal_code.as_deref() == Some(MISSING)
            && refused
                .refusal_reason
                .as_deref()
                .is_some_and(|r| r.contains("0 of the policy's witnesses")),
        "the held-back job delivered past W of its head's cosignature: {refused:?}"
    );
    ensure!(!late.ran(), "the held-back job ran on the late agent");
    ensure!(
        late_at <= (bound + SLACK_SECS) as f64,
        "the held-back job was delivered at T+{late_at:.1} s, past the bound"
    );
    // Both were delivered under the kept head, and it got no newer cosignature.
    ensure!(
        s.sql(&format!(
            "SELECT MAX(size) FROM log_checkpoints WHERE log_id = {tenant}"
        ))? == kept.to_string(),
        "a head newer than {kept} was stored"
    );
    let now_kept: LogCheckpointsView = s
        .api
        .get_as(&format!(
            "/api/v1/tenants/demo/log/checkpoints?from_size={kept}&limit=1"
        ))
        .await?;
    let now_kept = now_kept.checkpoints.first().context("the kept head")?;
    ensure!(
        now_kept.size == kept
            && cosignature_times(
                &now_kept.note,
                std::slice::from_ref(witness.verifier()),
                &limits
            )? == [Some(cosigned_at)],
        "the kept head changed: {now_kept:?}"
    );
    s.sql("DROP TRIGGER withhold_heads;")?;

    // 7. The server never published a freeze, and no agent holds one: the
    //    agents stopped on the witness's silence alone.
    let after = s.api.trust("demo").await?;
    ensure!(
        !after.frozen && after.freeze_sequence == trust.freeze_sequence && after.freeze.is_none(),
        "the server holds a freeze: {after:?}"
    );
    for (device, _) in &everyone {
        let holds = agent_holds(&s, device)?;
        ensure!(
            holds.ends_with(&format!(" {} 0", trust.freeze_sequence)),
            "agent {device} reports a freeze (root, policy, freeze sequence, frozen): {holds}"
        );
    }
    // The server's side: the witness answered 423 (frozen) to its asks.
    let locked =
        s.up.process()
            .stderr
            .snapshot()
            .into_iter()
            .filter(|l| l.contains("did not cosign") && l.contains("423"))
            .collect::<Vec<_>>();
    ensure!(
        !locked.is_empty(),
        "the server never logged the witness's 423"
    );
    eprintln!(
        "[test] the server logged {} refusal(s) of the witness, the first: {}",
        locked.len(),
        locked[0]
    );

    let max = firsts.iter().copied().fold(0.0_f64, f64::max);
    let each = firsts
        .iter()
        .map(|at| format!("{at:.1} s"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!(
        "[figure] freeze given to the witness only: all {AGENTS} agents refusing after \
         {max:.1} s (each: {each}; jobs every {} s; bound grace {GRACE_SECS} + W \
         {FRESHNESS_SECS} = {bound} s)",
        ROUND.as_secs()
    );
    eprintln!(
        "[figure] jobs released in the grace, their head cosigned at T+{} s, held back by the \
         server: one delivered at T+{early_at:.1} s ran (cosignature {early_age} s old), one \
         delivered at T+{late_at:.1} s was refused (cosignature {late_age} s old; W \
         {FRESHNESS_SECS} s)",
        cosigned_at.saturating_sub(t_wall),
    );
    witness.stop().await?;
    eprintln!("[test] took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
