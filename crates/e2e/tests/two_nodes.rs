//! Two `bulwark` nodes on one PostgreSQL database and one NATS bus (RFD
//! 0018), as real processes: node A holds the agent, node B takes the
//! operator's requests. PostgreSQL (127.0.0.1:5432) and NATS
//! (127.0.0.1:4222) must be running (see TESTING.md); an unreachable one
//! fails the test, it is never skipped.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use bulwark_api::jobs::JobView;
use bulwark_api::log::{ConsistencyProofView, InclusionProofView, LogEntriesView, LogHeadView};
use bulwark_api::tenants::TenantView;
use bulwark_e2e::{
    Api, OPERATOR_WAIT, OperatorSetup, UpOptions, UpProcess, decode_json, target_of, wait_for,
};
use bulwark_translog::{Hash, leaf_hash, root_of, verify_consistency, verify_inclusion};
use serde_json::json;

const NATS: &str = "nats://127.0.0.1:4222";
const PASSPHRASE: &str = "two nodes e2e passphrase";
/// Jobs timed through each node.
const RUNS: usize = 3;
/// Failed sign-ins each node records at once, to write the MSP log concurrently.
const WRITES_PER_NODE: usize = 12;

#[tokio::test]
async fn two_nodes_share_jobs_sessions_and_one_log() -> Result<()> {
    let (url, schema) = bulwark_store::testing::postgres_test_url()
        .await
        .context("creating a PostgreSQL test schema (is PostgreSQL running on 127.0.0.1:5432?)")?;
    let result = scenario(&url).await;
    schema.drop().await;
    result
}

/// Node B's data directory: the agent CA and the log key of node A (every
/// node of a deployment holds the same; see docs/deployment/two-nodes.md).
fn second_data_dir(a: &Path) -> Result<Arc<bulwark_e2e::TempDir>> {
    let dir = Arc::new(
        tempfile::Builder::new()
            .prefix("bulwark-e2e-node-b-")
            .tempdir()?,
    );
    for (sub, file) in [("tls", "ca.pem"), ("tls", "ca.key"), ("log", "log.skey")] {
        std::fs::create_dir_all(dir.path().join(sub))?;
        std::fs::copy(a.join(sub).join(file), dir.path().join(sub).join(file))
            .with_context(|| format!("copying {sub}/{file} to node B"))?;
    }
    Ok(dir)
}

/// Node A (`bulwark up` with its local agent, the owner's CLI logged in to
/// it) and node B (the same database and bus, no agent), and a CLI
/// configuration holding node A's session pointed at node B.
struct Nodes {
    a: OperatorSetup,
    b: UpProcess,
    b_api: Api,
    config_b: std::path::PathBuf,
}

async fn start_nodes(url: &str) -> Result<Nodes> {
    let a = OperatorSetup::start_with(
        PASSPHRASE,
        UpOptions::default()
            .heartbeat_secs(2)
            .database_url(url)
            .env("BULWARK_BUS_URL", NATS),
    )
    .await?;
    let b = UpProcess::start(
        UpOptions::default()
            .heartbeat_secs(2)
            .database_url(url)
            .no_agent()
            .data_dir(second_data_dir(a.up.data_dir())?)
            .env("BULWARK_BUS_URL", NATS)
            .env("BULWARK_CONFIG_DIR", a.config.display().to_string())
            .env("BULWARK_KEY_PASSPHRASE", PASSPHRASE),
    )
    .await?;
    let token = a.api.token().context("node A's API client has no token")?;
    let b_api = b.api().with_token(token);
    // The CLI's stored session (made on A), pointed at node B.
    let config_b = a.work.path().join("config-b");
    copy_dir(&a.config, &config_b)?;
    let credentials = config_b.join("credentials.json");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&credentials)?)?;
    saved["server"] = json!(b.base_url());
    std::fs::write(&credentials, serde_json::to_vec_pretty(&saved)?)?;
    Ok(Nodes {
        a,
        b,
        b_api,
        config_b,
    })
}

async fn scenario(url: &str) -> Result<()> {
    let Nodes {
        a,
        b: _b,
        b_api,
        config_b,
    } = start_nodes(url).await?;
    let device = a.local.clone();

    // 1. A session made on node A is valid on node B (the API here, the
    //    CLI below), and B knows from the bus that the device is online on A.
    let tenants: Vec<TenantView> = b_api
        .tenants()
        .await
        .context("node A's session on node B")?;
    ensure!(
        tenants.iter().any(|t| t.name == "demo"),
        "node B does not list demo: {tenants:?}"
    );
    b_api
        .wait_device_online(&device, true, OPERATOR_WAIT)
        .await
        .context("node B never learnt that the device is online on node A")?;

    // 2. A job submitted through node B is delivered by node A and runs,
    //    about as fast as one submitted through A.
    let mut via_a = Vec::new();
    let mut via_b = Vec::new();
    for run in 0..RUNS {
        via_a.push(timed_job(&a, &a.config, &a.api, &device, &format!("a{run}")).await?);
        via_b.push(timed_job(&a, &config_b, &b_api, &device, &format!("b{run}")).await?);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (a_median, b_median) = (median(&mut via_a), median(&mut via_b));
    println!(
        "two nodes: submit→delivered, median of {RUNS}: through node A (same node) {a_median:?}, \
         through node B (other node, over NATS) {b_median:?}; all A {via_a:?}, all B {via_b:?}"
    );
    ensure!(
        b_median <= a_median + Duration::from_millis(1000),
        "a job through node B took {b_median:?} to reach the agent, against {a_median:?} through node A"
    );

    // 3. Both nodes append to the MSP log at once (failed sign-ins of
    //    names no one has: `login.failed` goes to the MSP log): one tree.
    let before: LogHeadView = a.api.get_as("/api/v1/msp/log").await?;
    let writes = |api: Api, node: &'static str| async move {
        let calls = (0..WRITES_PER_NODE).map(|i| {
            let api = api.clone();
            async move {
                let body = json!({ "username": format!("{node}-ghost-{i}"), "password": "not the password", "otp": "000000" });
                let reply = api.call(bulwark_e2e::Method::POST, "/api/v1/auth/login", Some(&body)).await?;
                ensure!(
                    reply.status == bulwark_e2e::StatusCode::UNAUTHORIZED,
                    "a wrong sign-in through {node} answered {} {}",
                    reply.status,
                    reply.body
                );
                anyhow::Ok(())
            }
        });
        futures_util::future::try_join_all(calls).await
    };
    let (wrote_a, wrote_b) = tokio::join!(
        writes(a.api.clone(), "node-a"),
        writes(b_api.clone(), "node-b")
    );
    wrote_a.context("MSP log writes through node A")?;
    wrote_b.context("MSP log writes through node B")?;
    one_tree(&a.api, &b_api, before.size).await?;
    Ok(())
}

/// Submits a job through the server `config` is logged in to, and returns
/// how long from the CLI's return (the job stored and approved) until `api`
/// shows it delivered to the agent; waits for it to succeed.
async fn timed_job(
    a: &OperatorSetup,
    config: &Path,
    api: &Api,
    device: &str,
    name: &str,
) -> Result<Duration> {
    let (script, marker) = a.script(name)?;
    let script = script.display().to_string();
    let out = a
        .cli_in(
            config,
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                device,
                "--script",
                &script,
                "--reason",
                "two nodes",
                "--json",
                "--no-wait",
            ],
            None,
        )
        .await?
        .ok()?;
    let started = Instant::now();
    let view: JobView = decode_json(&out.stdout).context("job run --json")?;
    let delivered = wait_for(
        Duration::from_secs(30),
        &format!("job {name} to reach the agent"),
        async || {
            let target = target_of(&api.job(&view.id).await?, device)?;
            Ok(target.delivered_at.is_some().then(|| started.elapsed()))
        },
    )
    .await?;
    let done = bulwark_e2e::wait_job_final(api, &view.id, device).await?;
    ensure!(
        done.state == "succeeded" && marker.exists(),
        "job {name} did not run on the agent: {done:?}"
    );
    Ok(delivered)
}

fn b64(text: &str) -> Result<Vec<u8>> {
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

fn hash(text: &str) -> Result<Hash> {
    Hash::try_from(b64(text)?.as_slice()).map_err(|e| anyhow::anyhow!("bad hash {text}: {e:?}"))
}

fn hashes(texts: &[String]) -> Result<Vec<Hash>> {
    texts.iter().map(|t| hash(t)).collect()
}

/// The MSP log as node A and node B tell it is one tree: B's entries hash
/// to A's root, each node proves the other's head consistent with its own,
/// and every entry has an inclusion proof from one node under the other's
/// root.
async fn one_tree(a: &Api, b: &Api, before: u64) -> Result<()> {
    let head_a: LogHeadView = a.get_as("/api/v1/msp/log").await?;
    let head_b: LogHeadView = b.get_as("/api/v1/msp/log").await?;
    ensure!(
        head_a.size == head_b.size && head_a.root == head_b.root,
        "the nodes disagree on the MSP log with no writes in flight: A {} {} / B {} {}",
        head_a.size,
        head_a.root,
        head_b.size,
        head_b.root
    );
    let size = head_a.size;
    ensure!(
        size >= before + 2 * WRITES_PER_NODE as u64,
        "the MSP log grew from {before} to {size} entries, less than the {} failed sign-ins",
        2 * WRITES_PER_NODE
    );
    let root = hash(&head_a.root)?;

    // Every entry, read from node B, against node A's root.
    let mut leaves = Vec::new();
    while (leaves.len() as u64) < size {
        let page: LogEntriesView = b
            .get_as(&format!(
                "/api/v1/msp/log/entries?start={}&limit=1000",
                leaves.len()
            ))
            .await?;
        ensure!(
            !page.entries.is_empty(),
            "node B returned no entries at {}",
            leaves.len()
        );
        for entry in page.entries {
            ensure!(entry.index == leaves.len() as u64, "entries out of order");
            leaves.push(b64(&entry.leaf)?);
        }
    }
    ensure!(
        root_of(&leaves) == root,
        "node B's entries do not hash to node A's root"
    );

    // Inclusion: node A proves each entry under node B's root, and back.
    let root_b = hash(&head_b.root)?;
    for (index, leaf) in leaves.iter().enumerate() {
        let (prover, root) = if index % 2 == 0 {
            (a, &root_b)
        } else {
            (b, &root)
        };
        let proof: InclusionProofView = prover
            .get_as(&format!(
                "/api/v1/msp/log/proof/inclusion?index={index}&tree_size={size}"
            ))
            .await?;
        verify_inclusion(
            &leaf_hash(leaf),
            index as u64,
            size,
            &hashes(&proof.hashes)?,
            root,
        )
        .map_err(|e| anyhow::anyhow!("entry {index} not in the other node's tree: {e:?}"))?;
    }

    // Consistency: every earlier size, proved by one node, checked against
    // the roots the other computes.
    for from in 1..size {
        let prover = if from % 2 == 0 { a } else { b };
        let proof: ConsistencyProofView = prover
            .get_as(&format!(
                "/api/v1/msp/log/proof/consistency?from={from}&to={size}"
            ))
            .await?;
        let old_root = root_of(&leaves[..from as usize]);
        verify_consistency(from, size, &old_root, &root, &hashes(&proof.hashes)?)
            .map_err(|e| anyhow::anyhow!("size {from} not consistent with {size}: {e:?}"))?;
    }
    println!(
        "two nodes: the MSP log is one tree of {size} entries after concurrent writes through both nodes"
    );
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Agents behind the load balancer reach node B when node A is killed in
/// the middle of a fan-out (submitted through node B), get what was
/// pending, and run every job exactly once.
#[tokio::test]
async fn a_node_killed_mid_fan_out_loses_nothing_and_runs_nothing_twice() -> Result<()> {
    let (url, schema) = bulwark_store::testing::postgres_test_url()
        .await
        .context("creating a PostgreSQL test schema (is PostgreSQL running on 127.0.0.1:5432?)")?;
    let result = killed_node(&url).await;
    schema.drop().await;
    result
}

/// Agents behind the balancer.
const AGENTS: usize = 3;
/// Jobs per agent; half are submitted before node A dies, half after.
const JOBS_PER_AGENT: usize = 2;

async fn killed_node(url: &str) -> Result<()> {
    let Nodes {
        mut a,
        b,
        b_api,
        config_b,
    } = start_nodes(url).await?;
    let balancer = Balancer::start(vec![
        gateway_addr(&a.up.info.gateway_url)?,
        gateway_addr(&b.info.gateway_url)?,
    ])
    .await?;
    let mut agents = Vec::new();
    for n in 0..AGENTS {
        agents.push(
            bulwark_e2e::ExtraAgent::start_as(
                Some(&format!("fanout-{n}")),
                &a.api,
                &balancer.url(),
                "demo",
            )
            .await?,
        );
    }

    let mut jobs = Vec::new();
    for round in 0..JOBS_PER_AGENT {
        for (n, agent) in agents.iter().enumerate() {
            jobs.push(
                submit_slow_job(&a, &config_b, &format!("fan-{round}-{n}"), &agent.device_id)
                    .await?,
            );
        }
        if round == 0 {
            // Mid-fan-out: node A (and its own local agent) dies at once.
            wait_for(
                Duration::from_secs(20),
                "a first job on its agent",
                async || {
                    let view = b_api.job(&jobs[0].0).await?;
                    Ok(target_of(&view, &jobs[0].1)?.delivered_at.map(|_| ()))
                },
            )
            .await?;
            a.up.process().kill9().await?;
            balancer.forget(0);
        }
    }

    for (id, device, runs) in &jobs {
        let done = bulwark_e2e::wait_job_final(&b_api, id, device).await?;
        ensure!(
            done.state == "succeeded",
            "job {id} on {device} did not succeed after node A died: {done:?}"
        );
        let lines = std::fs::read_to_string(runs)
            .with_context(|| format!("job {id} never ran ({})", runs.display()))?;
        ensure!(
            lines.lines().count() == 1,
            "job {id} ran {} times on {device}",
            lines.lines().count()
        );
    }
    for agent in &agents {
        b_api
            .wait_device_online(&agent.device_id, true, OPERATOR_WAIT)
            .await
            .context("an agent did not come back through node B")?;
    }
    println!(
        "two nodes: node A killed mid-fan-out; {} jobs on {AGENTS} agents each ran once, through node B",
        jobs.len()
    );
    Ok(())
}

/// A job through node B (`config_b`) that takes a while and appends one
/// line to its own file each time it runs: (job id, device, that file).
async fn submit_slow_job(
    a: &OperatorSetup,
    config_b: &Path,
    name: &str,
    device: &str,
) -> Result<(String, String, std::path::PathBuf)> {
    let runs = a.work.path().join(format!("{name}.runs"));
    let script = a.work.path().join(format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{}'\nsleep 2\necho 'hello from {name}'\n",
            runs.display()
        ),
    )?;
    let script = script.display().to_string();
    let out = a
        .cli_in(
            config_b,
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                device,
                "--script",
                &script,
                "--reason",
                "fan-out",
                "--json",
                "--no-wait",
            ],
            None,
        )
        .await?
        .ok()?;
    let view: JobView = decode_json(&out.stdout).context("job run --json")?;
    Ok((view.id, device.to_owned(), runs))
}

fn gateway_addr(url: &str) -> Result<std::net::SocketAddr> {
    url.trim_start_matches("https://")
        .parse()
        .with_context(|| format!("gateway URL {url} is not https://ip:port"))
}

/// A TCP forwarder standing in for the load balancer: each connection goes
/// to the first backend still listed that accepts it.
struct Balancer {
    addr: std::net::SocketAddr,
    backends: Arc<std::sync::Mutex<Vec<Option<std::net::SocketAddr>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(backends: Vec<std::net::SocketAddr>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let backends = Arc::new(std::sync::Mutex::new(
            backends.into_iter().map(Some).collect::<Vec<_>>(),
        ));
        let listed = backends.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let candidates: Vec<_> = listed
                    .lock()
                    .map(|b| b.iter().flatten().copied().collect())
                    .unwrap_or_default();
                tokio::spawn(async move {
                    for backend in candidates {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            backends,
            task,
        })
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Takes backend `n` out, as a health check would.
    fn forget(&self, n: usize) {
        if let Ok(mut backends) = self.backends.lock() {
            backends[n] = None;
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
