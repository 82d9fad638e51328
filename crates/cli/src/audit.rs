//! `bulwark audit verify` and `bulwark audit export`: an auditor checks a
//! tenant's (or the MSP's) transparency log end to end, trusting nothing
//! but the log key (RFD 0003, "Export format").
//!
//! `verify` downloads the log key, every signed tree head and every entry
//! (or reads them from an export directory, `--from`), and checks:
//!
//! 1. the log key is the one pinned on first use
//!    (`$BULWARK_CONFIG_DIR/log-keys/<server>.vkey`) or given with `--log-key`;
//! 2. every checkpoint is signed by it and names this log;
//! 3. every entry decodes as a canonical audit event leaf of this log
//!    (tenant field = the tenant id; absent in the MSP log);
//! 4. the entries, replayed in order into an RFC 6962 tree
//!    (`bulwark_translog::LogAuditor`), have no hole and give every signed
//!    root at its size, and the log is exactly as long as its latest head;
//! 5. with `--head FILE`, the log extends the head saved earlier.
//!
//! Entries the server archived (past the retention period; RFD 0003,
//! "Retention and archives") come from `--archive DIR`s; without them the
//! rest is checked from the server's compact range of the archived prefix
//! and the prefix is reported as archived and not checked (exit 3).
//!
//! The first problem is printed with the entry index it concerns (a changed
//! entry is pinpointed with its inclusion proof when online), exit code 1.
//! Usage, connection and server errors exit with 2.
//!
//! Online, both commands announce what they read before reading any entry
//! (`verify` once its local checks of the key, the saved head and the
//! archives passed; `POST …/log/exports` with the purpose and the head's
//! size): the
//! server records a `log.exported` event in that log, after that head, so
//! the run's own check is unchanged (RFD 0003, "Auditor's API"). If the
//! server does not record it, the command stops with exit 2. `--from DIR`
//! reads nothing from a server and announces nothing.

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bulwark_policy::Signed;
use bulwark_policy::replay::{ReplayProblem, Statements, TrustReplay};
use bulwark_protocol::audit_leaf::AuditLeaf;
use bulwark_translog::{
    AuditProblem, AuditSummary, Checkpoint, Frontier, Hash, Limits, LogAuditor, NoteVerifier,
    Pinpoint, check_extension, pinpoint, pinpoint_by_leaf_hashes, verify_note,
};
use serde_json::{Value, json};

use crate::client::{Session, path_segment};

/// Entries (and checkpoints) per request: the API's largest page.
const PAGE: u64 = 1000;
/// Largest range whose bad entry is pinpointed with per-entry inclusion proofs.
const MAX_PINPOINT: u64 = 20_000;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify a transparency log end to end: signatures, every entry, every
    /// root; exit 1 on the first problem (with the index of the entry), 2 on
    /// usage or connection errors.
    Verify(VerifyArgs),
    /// Write a log (key, entries, signed heads, consistency proofs) to a
    /// directory, for offline verification (`bulwark audit verify --from DIR`)
    /// or archiving.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct LogChoice {
    /// The tenant (name or id) whose log to read.
    #[arg(long, conflicts_with = "msp")]
    tenant: Option<String>,
    /// The MSP-wide log (owners and security officers).
    #[arg(long)]
    msp: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    log: LogChoice,
    /// The log key (Go verifier key text) to trust, instead of the one
    /// pinned on first use.
    #[arg(long, value_name = "VKEY")]
    log_key: Option<String>,
    /// A checkpoint note saved earlier (`--save-head`): the log must extend it.
    #[arg(long, value_name = "FILE")]
    head: Option<PathBuf>,
    /// Write the latest verified checkpoint note here, for the next `--head`.
    #[arg(long, value_name = "FILE")]
    save_head: Option<PathBuf>,
    /// Verify an export or archive directory (`bulwark audit export`, or
    /// one of the server's `data_dir/archive/<log>/<first>-<last>/`)
    /// offline instead of downloading.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["tenant", "msp", "archive"])]
    from: Option<PathBuf>,
    /// An archive directory (copied from the server's
    /// `data_dir/archive/<log id>/`) supplying entries the server no longer
    /// holds (past the retention period). Repeat it for consecutive
    /// archives: together they must cover entries 0 to the log's
    /// `archived_below`; the rest is downloaded.
    #[arg(long, value_name = "DIR")]
    archive: Vec<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    log: LogChoice,
    /// The directory to write (created; existing files are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Exit code of `verify` when what it could read is good but entries
/// `0..archived_below` are archived and were not checked (no `--archive`).
pub const EXIT_ARCHIVED_UNCHECKED: i32 = 3;

/// Runs an `audit` command and exits: 0 good, 1 a bad log, 2 anything
/// else, 3 ([`EXIT_ARCHIVED_UNCHECKED`]) good but with an archived prefix
/// not checked.
pub async fn run(command: AuditCommand) -> Result<()> {
    let code = match command {
        AuditCommand::Verify(args) => {
            let json = args.json;
            match verify(args).await {
                Ok(code) => code,
                Err(error) => {
                    if json {
                        println!("{}", json!({"ok": false, "error": format!("{error:#}")}));
                    }
                    eprintln!("error: {error:#}");
                    2
                }
            }
        }
        AuditCommand::Export(args) => match export(args).await {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("error: {error:#}");
                2
            }
        },
    };
    std::process::exit(code)
}

/// The first thing wrong with a log.
#[derive(Debug)]
struct Bad {
    /// The first entry concerned, if the problem is in the entries.
    index: Option<u64>,
    /// The size of the tree head concerned, if the problem is in a head.
    head_size: Option<u64>,
    code: &'static str,
    message: String,
}

impl Bad {
    /// Entry `index` is not what the signed head of size `size` holds there.
    fn changed_entry(index: u64, size: u64) -> Self {
        Self {
            index: Some(index),
            head_size: Some(size),
            code: "changed_entry",
            message: format!(
                "entry {index} is not the entry the signed tree head of size {size} holds at \
                 that index: it was changed (or entries before it were removed or inserted)"
            ),
        }
    }

    fn entry(index: u64, code: &'static str, message: String) -> Self {
        Self {
            index: Some(index),
            head_size: None,
            code,
            message,
        }
    }

    fn head(size: u64, code: &'static str, message: String) -> Self {
        Self {
            index: None,
            head_size: Some(size),
            code,
            message,
        }
    }

    fn from_problem(problem: &AuditProblem) -> Self {
        let message = problem.to_string();
        match problem {
            AuditProblem::ConflictingHeads { size } => Self::head(*size, problem.code(), message),
            AuditProblem::RootMismatch { size, .. } => Self {
                index: Some(problem.index()),
                head_size: Some(*size),
                code: problem.code(),
                message,
            },
            AuditProblem::OriginMismatch { .. } | AuditProblem::BadEmptyRoot => Self {
                index: None,
                head_size: None,
                code: problem.code(),
                message,
            },
            _ => Self::entry(problem.index(), problem.code(), message),
        }
    }
}

/// Where the log comes from.
enum Source {
    Online {
        session: Session,
        base: String,
        /// Entries below this were archived by the server (410 Gone).
        archived_below: u64,
        /// The server's compact range of `[0, archived_below)`.
        archived_frontier: Vec<Hash>,
        /// Archive directories supplying `[0, archived_below)`, in order.
        archives: Vec<EntryFile>,
    },
    Offline {
        dir: PathBuf,
        entries: EntryFile,
        /// The compact range of the entries before the first one (from the
        /// checkpoint line of that size), when they do not start at 0.
        start: Option<Frontier>,
    },
}

/// An `entries.ndjson` and the indices it holds, `[first, below)`.
#[derive(Debug, Clone)]
struct EntryFile {
    dir: PathBuf,
    first: u64,
    below: u64,
}

/// The entries of `dir/entries.ndjson`, one JSON value per non-blank
/// line, streamed; an unreadable or non-JSON line is an error naming it.
fn entry_lines(dir: &Path) -> Result<impl Iterator<Item = Result<Value>>> {
    let path = dir.join("entries.ndjson");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::io::BufReader::new(file)
        .lines()
        .enumerate()
        .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(move |(n, line)| {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {} is not JSON", path.display(), n + 1))
        }))
}

impl EntryFile {
    /// Reads the first and last index of `dir/entries.ndjson`.
    fn scan(dir: &Path) -> Result<Self> {
        let mut first = None;
        let mut last = None;
        for entry in entry_lines(dir)? {
            let index = entry?["index"]
                .as_u64()
                .with_context(|| format!("{}: an entry without an index", dir.display()))?;
            first.get_or_insert(index);
            last = Some(index);
        }
        let first = first.unwrap_or(0);
        Ok(Self {
            dir: dir.to_owned(),
            first,
            below: last.map_or(first, |l| l + 1),
        })
    }

    /// Feeds every entry of the file to `checker`; `Ok(Err)` at the first
    /// bad one.
    fn feed(&self, checker: &mut Checker, bar: &indicatif::ProgressBar) -> Result<Result<(), Bad>> {
        for entry in entry_lines(&self.dir)? {
            let (index, leaf) = decode_leaf(&entry?)?;
            if let Err(bad) = checker.feed(index, &leaf) {
                return Ok(Err(bad));
            }
            if index % 1024 == 0 {
                bar.set_position(index);
            }
        }
        Ok(Ok(()))
    }

    /// Which entry below `head`'s size is not the one the signed tree holds,
    /// from the leaf hashes the file lists beside its entries (`"hash"`):
    /// [`pinpoint_by_leaf_hashes`], streamed. `start`: the compact range
    /// before the file's first entry. An entry without a listed hash (an
    /// older export) ends the search: [`Pinpoint::None`].
    fn pinpoint(&self, head: &Checkpoint, start: Frontier) -> Result<Pinpoint> {
        let mut failure = None;
        let entries = entry_lines(&self.dir)?.map_while(|entry| {
            let listed = entry.and_then(|entry| {
                let (index, leaf) = decode_leaf(&entry)?;
                Ok(match entry.get("hash") {
                    Some(hash) if !hash.is_null() => {
                        Some((index, leaf, decode_hashes(&json!([hash]))?[0]))
                    }
                    _ => None,
                })
            });
            listed.unwrap_or_else(|e| {
                failure = Some(e);
                None
            })
        });
        let found = pinpoint_by_leaf_hashes(head, start, entries);
        failure.map_or(Ok(found), Err)
    }

    /// The leaves of `[from, below)` this file holds.
    fn leaves(&self, from: u64, below: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for entry in read_ndjson(&self.dir.join("entries.ndjson"))? {
            let (index, leaf) = decode_leaf(&entry)?;
            if (from..below).contains(&index) {
                out.push((index, leaf));
            }
        }
        Ok(out)
    }
}

/// The compact range given on the checkpoint line of size `size` of an
/// export or archive (`"frontier"`), if any.
fn frontier_of(dir: &Path, size: u64) -> Result<Option<Frontier>> {
    for line in read_ndjson(&dir.join("checkpoints.ndjson"))? {
        if line["size"].as_u64() == Some(size)
            && let Some(hashes) = line.get("frontier")
        {
            let frontier = Frontier::from_parts(size, decode_hashes(hashes)?).map_err(|e| {
                anyhow!(
                    "{}: the compact range at size {size} is malformed: {e}",
                    dir.display()
                )
            })?;
            return Ok(Some(frontier));
        }
    }
    Ok(None)
}

/// The log's checked parts, fed entry by entry.
struct Checker {
    auditor: LogAuditor,
    tenant: Option<String>,
    log_id: String,
    /// The meaning of a tenant log's entries, replayed from entry 0.
    replay: Option<Replay>,
}

/// A tenant log's trust history and jobs, replayed with the agents' rules
/// (`bulwark_policy::replay`); the first problem is kept and reported once
/// the tree itself verified, so a rewritten entry is named as such first.
struct Replay {
    replay: TrustReplay,
    statements: Statements,
    problem: Option<ReplayProblem>,
}

impl Checker {
    fn feed(&mut self, index: u64, leaf: &[u8]) -> Result<(), Bad> {
        let event = AuditLeaf::decode(leaf).map_err(|e| {
            Bad::entry(
                index,
                "bad_leaf",
                format!("entry {index} is not a canonical audit event leaf: {e}"),
            )
        })?;
        if event.tenant != self.tenant {
            return Err(Bad::entry(
                index,
                "foreign_leaf",
                format!(
                    "entry {index} is an event of log {:?}, not of this log {:?}",
                    event.log_id(),
                    self.log_id
                ),
            ));
        }
        self.auditor
            .push(index, leaf)
            .map_err(|p| Bad::from_problem(&p))?;
        if let Some(replay) = &mut self.replay
            && replay.problem.is_none()
            && let Err(problem) = replay.replay.feed(index, &event, &replay.statements)
        {
            replay.problem = Some(problem);
        }
        Ok(())
    }
}

/// What replaying a tenant's log needs, from the server: every statement
/// and job envelope (`GET …/log/statements`), and the root this machine
/// pinned for the tenant.
async fn replay_for(session: &Session, base: &str, tenant_id: &str, quiet: bool) -> Result<Replay> {
    let reply = session.get(&format!("{base}/statements")).await?;
    let pin = crate::pins::pin_by_tenant_id(session.server(), tenant_id)?.map(|p| p.root);
    replay_from(&reply, tenant_id, pin, quiet)
}

/// A replay over `reply` (the statements, as served or exported) from the
/// pinned root, or, unpinned, from the statements' first root (said so).
fn replay_from(
    reply: &Value,
    tenant_id: &str,
    pin: Option<[u8; 32]>,
    quiet: bool,
) -> Result<Replay> {
    let limits = bulwark_policy::Limits::default();
    let envelope = |value: &Value| -> Result<Signed> {
        let bytes = B64
            .decode(value.as_str().unwrap_or_default())
            .context("a statement is not base64")?;
        Signed::from_bytes(&bytes, &limits)
            .map_err(|e| anyhow!("a statement is not an envelope: {e}"))
    };
    let mut statements = Statements::default();
    for item in reply["trust"].as_array().context("no trust statements")? {
        let version = item["version"]
            .as_u64()
            .context("a statement without a version")?;
        let signed = envelope(&item["envelope"])?;
        match item["kind"].as_str() {
            Some("root") => statements.roots.insert(version, signed),
            Some("policy") => statements.policies.insert(version, signed),
            Some("freeze") => statements.freezes.insert(version, signed),
            other => bail!("a trust statement of kind {other:?}"),
        };
    }
    for item in reply["jobs"].as_array().context("no jobs")? {
        let id = item["id"]
            .as_str()
            .context("a job without an id")?
            .to_owned();
        statements.jobs.insert(id, envelope(&item["envelope"])?);
    }
    let pinned = match pin {
        Some(pin) => pin,
        None => {
            let first = statements
                .roots
                .get(&1)
                .map(bulwark_policy::root::root_fingerprint)
                .unwrap_or_default();
            if !quiet {
                eprintln!(
                    "warning: this machine pinned no root for tenant {tenant_id}: its history is \
                     replayed from the statements' first root {}. Pin it with `bulwark policy \
                     show --tenant NAME` and compare it out of band.",
                    bulwark_protocol::token::fingerprint_text(&first)
                );
            }
            first
        }
    };
    Ok(Replay {
        replay: TrustReplay::new(tenant_id, pinned),
        statements,
        problem: None,
    })
}

fn decode_leaf(entry: &Value) -> Result<(u64, Vec<u8>)> {
    let index = entry["index"]
        .as_u64()
        .ok_or_else(|| anyhow!("an entry without an index: {entry}"))?;
    let leaf = entry["leaf"]
        .as_str()
        .ok_or_else(|| anyhow!("entry {index} has no leaf"))?;
    let leaf = B64
        .decode(leaf)
        .with_context(|| format!("entry {index}'s leaf is not base64"))?;
    Ok((index, leaf))
}

fn decode_hashes(value: &Value) -> Result<Vec<Hash>> {
    value
        .as_array()
        .ok_or_else(|| anyhow!("a proof without hashes"))?
        .iter()
        .map(|h| {
            let bytes = B64
                .decode(h.as_str().unwrap_or_default())
                .context("a proof hash is not base64")?;
            Hash::try_from(bytes.as_slice()).map_err(|_| anyhow!("a proof hash is not 32 bytes"))
        })
        .collect()
}

/// Announces to the server that this tool is about to read the log at
/// `base` up to the head of size `tree_size` (`purpose`: `verify` or
/// `export`): the server records a `log.exported` event in that log, after
/// that head, so it is not part of what this run checks or writes. A
/// refusal is an error (exit 2): the log is not read unannounced.
async fn announce(session: &Session, base: &str, purpose: &str, head: &Value) -> Result<()> {
    let tree_size = head["size"]
        .as_u64()
        .context("the server sent a head without a size")?;
    session
        .post(
            &format!("{base}/exports"),
            &json!({"purpose": purpose, "tree_size": tree_size}),
        )
        .await
        .with_context(|| {
            format!(
                "the server did not record this {purpose} of the log (POST {base}/exports); \
                 stopped before reading its entries"
            )
        })?;
    Ok(())
}

/// What an online `verify` or `export` starts from.
struct ServedLog {
    session: Session,
    /// The log's API path.
    base: String,
    /// The log key the server serves (checked against the pinned one later).
    vkey: String,
    /// The log's head, as `GET {base}` answers.
    head: Value,
    log_id: String,
}

/// Signs in from the saved credentials and reads the log key and the
/// head. Reading the head makes the server sign one covering the whole log.
async fn served_log(choice: &LogChoice) -> Result<ServedLog> {
    let session = Session::load()?;
    let base = log_path(choice)?;
    let key = session.get("/api/v1/log/key").await?;
    let vkey = key["vkey"]
        .as_str()
        .context("the server sent no log key")?
        .to_owned();
    let head = session.get(&base).await?;
    let log_id = head["log_id"]
        .as_str()
        .context("the server sent no log id")?
        .to_owned();
    Ok(ServedLog {
        session,
        base,
        vkey,
        head,
        log_id,
    })
}

fn log_path(choice: &LogChoice) -> Result<String> {
    match (&choice.tenant, choice.msp) {
        (Some(tenant), false) => Ok(format!("/api/v1/tenants/{}/log", path_segment(tenant)?)),
        (None, true) => Ok("/api/v1/msp/log".to_owned()),
        _ => bail!("name the log: --tenant NAME or --msp"),
    }
}

/// The log key to trust: `--log-key`, else the key pinned for this server
/// (pinned now on first use). A served key that differs is an error.
fn trusted_key(
    served: &str,
    given: Option<&str>,
    server: Option<&str>,
    quiet: bool,
) -> Result<(NoteVerifier, String)> {
    let served = served.trim();
    if let Some(given) = given {
        let given = given.trim();
        ensure!(
            given == served,
            "the log key served ({served}) is not the one given with --log-key ({given})"
        );
        let verifier =
            NoteVerifier::from_vkey(given).map_err(|e| anyhow!("--log-key is unusable: {e}"))?;
        return Ok((verifier, "given with --log-key".to_owned()));
    }
    let verifier = NoteVerifier::from_vkey(served)
        .map_err(|e| anyhow!("the server's log key is unusable: {e}"))?;
    let Some(server) = server else {
        if !quiet {
            eprintln!(
                "warning: trusting the log key in the export ({served}); compare it out of band \
                 or pass --log-key"
            );
        }
        return Ok((verifier, "taken from the export (not pinned)".to_owned()));
    };
    match crate::pins::check_log_key(server, served)? {
        (path, None) => Ok((verifier, format!("pinned in {path}"))),
        (path, Some(_)) => {
            if !quiet {
                eprintln!(
                    "First use: pinned the log key {served}\n  in {path}. Compare it with the MSP out of band."
                );
            }
            Ok((verifier, format!("pinned now in {path} (first use)")))
        }
    }
}

fn progress(total: u64, what: &'static str) -> indicatif::ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Every stored checkpoint of the log, smallest first.
async fn fetch_checkpoints(session: &Session, base: &str) -> Result<Vec<(u64, String)>> {
    let mut out: Vec<(u64, String)> = Vec::new();
    let mut from = 0u64;
    loop {
        let page = session
            .get(&format!("{base}/checkpoints?from_size={from}&limit={PAGE}"))
            .await?;
        let list = page["checkpoints"]
            .as_array()
            .ok_or_else(|| anyhow!("the server's checkpoint list is malformed"))?;
        for c in list {
            let size = c["size"]
                .as_u64()
                .ok_or_else(|| anyhow!("a checkpoint without a size"))?;
            let note = c["note"]
                .as_str()
                .ok_or_else(|| anyhow!("a checkpoint without a note"))?;
            out.push((size, note.to_owned()));
            from = size + 1;
        }
        if (list.len() as u64) < PAGE {
            return Ok(out);
        }
    }
}

async fn fetch_entries(session: &Session, base: &str, start: u64) -> Result<Vec<(u64, Vec<u8>)>> {
    let page = session
        .get(&format!("{base}/entries?start={start}&limit={PAGE}"))
        .await?;
    page["entries"]
        .as_array()
        .ok_or_else(|| anyhow!("the server's entry list is malformed"))?
        .iter()
        .map(decode_leaf)
        .collect()
}

/// Opens every checkpoint with the key; the log id from their origin.
fn open_checkpoints(
    notes: &[(u64, String)],
    key: &NoteVerifier,
    log_id: &str,
) -> Result<Vec<Checkpoint>, Bad> {
    let limits = Limits::default();
    let origin = format!("{}/{log_id}", key.name());
    notes
        .iter()
        .map(|(size, note)| {
            let head = verify_note(note, key, &limits).map_err(|e| {
                Bad::head(
                    *size,
                    "bad_signature",
                    format!("the tree head of size {size} is not signed by the log key: {e}"),
                )
            })?;
            if head.size() != *size {
                return Err(Bad::head(
                    *size,
                    "bad_checkpoint",
                    format!("the tree head listed as size {size} says {}", head.size()),
                ));
            }
            if head.origin() != origin {
                return Err(Bad::head(
                    *size,
                    "origin_mismatch",
                    format!(
                        "the tree head of size {size} is of log {:?}, not {origin:?}",
                        head.origin()
                    ),
                ));
            }
            Ok(head)
        })
        .collect()
}

fn read_saved_head(path: &Path, key: &NoteVerifier) -> Result<Result<Checkpoint, Bad>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(
        verify_note(&text, key, &Limits::default()).map_err(|e| Bad {
            index: None,
            head_size: None,
            code: "bad_saved_head",
            message: format!(
                "the saved head {} is not a checkpoint signed by the log key: {e}",
                path.display()
            ),
        }),
    )
}

struct Verified {
    summary: AuditSummary,
    latest_note: Option<String>,
    /// Offline, a directory holding only entries `[first, below)` of a log
    /// whose latest head in it has size `latest` (an archive).
    partial: Option<(u64, u64, u64)>,
    /// The log's meaning was replayed: the released jobs checked.
    replayed: Option<u64>,
}

/// The `--archive` directories, checked to be of this key and to chain
/// from 0 up to at least `archived_below`, in order.
fn archive_chain(dirs: &[PathBuf], vkey: &str, archived_below: u64) -> Result<Vec<EntryFile>> {
    let mut chain = Vec::new();
    for dir in dirs {
        let key = std::fs::read_to_string(dir.join("log.vkey"))
            .with_context(|| format!("reading {}", dir.join("log.vkey").display()))?;
        ensure!(
            key.trim() == vkey.trim(),
            "the archive {} is signed by another log key ({}), not the server's ({})",
            dir.display(),
            key.trim(),
            vkey.trim()
        );
        chain.push(EntryFile::scan(dir)?);
    }
    chain.sort_by_key(|a| a.first);
    let mut next = 0u64;
    for archive in &chain {
        ensure!(
            archive.first == next,
            "the archives do not follow each other: {} starts at entry {}, where entry {next} \
             was due",
            archive.dir.display(),
            archive.first
        );
        next = archive.below;
    }
    if !chain.is_empty() {
        ensure!(
            next >= archived_below,
            "the archives given hold entries 0 to {}, but the server archived entries up to {}: \
             pass the archive directories of the rest too",
            next.saturating_sub(1),
            archived_below.saturating_sub(1)
        );
    }
    Ok(chain)
}

async fn verify(args: VerifyArgs) -> Result<i32> {
    let started = Instant::now();
    let quiet = args.json;
    // 1. The key, the log id and the checkpoints.
    let (source, served_key, log_id, notes, server, head) = match &args.from {
        Some(dir) => {
            let vkey = std::fs::read_to_string(dir.join("log.vkey"))
                .with_context(|| format!("reading {}", dir.join("log.vkey").display()))?;
            let notes = read_ndjson(&dir.join("checkpoints.ndjson"))?
                .iter()
                .map(|c| {
                    Ok((
                        c["size"].as_u64().context("a checkpoint without a size")?,
                        c["note"]
                            .as_str()
                            .context("a checkpoint without a note")?
                            .to_owned(),
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let key = NoteVerifier::from_vkey(vkey.trim())
                .map_err(|e| anyhow!("log.vkey is unusable: {e}"))?;
            // The log id is what the checkpoints' origin names after the key name.
            let log_id = notes
                .first()
                .and_then(|(_, note)| note.lines().next())
                .and_then(|origin| origin.strip_prefix(&format!("{}/", key.name())))
                .map(str::to_owned)
                .context("the export holds no checkpoint of this key's logs")?;
            let entries = EntryFile::scan(dir)?;
            let start = if entries.first > 0 {
                Some(frontier_of(dir, entries.first)?.with_context(|| {
                    format!(
                        "the entries of {} start at {} and checkpoints.ndjson gives no compact \
                         range (\"frontier\") of the entries before them: nothing to check \
                         them from",
                        dir.display(),
                        entries.first
                    )
                })?)
            } else {
                None
            };
            (
                Source::Offline {
                    dir: dir.clone(),
                    entries,
                    start,
                },
                vkey,
                log_id,
                notes,
                None,
                None,
            )
        }
        None => {
            let ServedLog {
                session,
                base,
                vkey,
                head,
                log_id,
            } = served_log(&args.log).await?;
            let notes = fetch_checkpoints(&session, &base).await?;
            let server = session.server().to_owned();
            let archived_below = head["archived_below"].as_u64().unwrap_or(0);
            let archived_frontier = match head.get("archived_frontier") {
                Some(hashes) if archived_below > 0 => decode_hashes(hashes)?,
                _ => Vec::new(),
            };
            let archives = archive_chain(&args.archive, &vkey, archived_below)?;
            (
                Source::Online {
                    session,
                    base,
                    archived_below,
                    archived_frontier,
                    archives,
                },
                vkey,
                log_id,
                notes,
                Some(server),
                Some(head),
            )
        }
    };
    let (key, key_status) = trusted_key(
        &served_key,
        args.log_key.as_deref(),
        server.as_deref(),
        quiet,
    )?;
    let saved = match &args.head {
        Some(path) => Some(read_saved_head(path, &key)?),
        None => None,
    };
    // Announced once the local checks passed, before any entry is read.
    if let (Source::Online { session, base, .. }, Some(head)) = (&source, &head) {
        announce(session, base, "verify", head).await?;
    }

    let outcome = check(&source, &key, &log_id, &notes, saved, quiet).await?;
    let elapsed = started.elapsed();
    match outcome {
        Ok(verified) => {
            if let (Some(path), Some(note)) = (&args.save_head, &verified.latest_note) {
                std::fs::write(path, note)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let s = &verified.summary;
            let checked = s.size - s.start;
            let rate = checked as f64 / elapsed.as_secs_f64().max(1e-9);
            // Online without the archive: entries [0, start) were not checked.
            let unchecked = (s.start > 0 && verified.partial.is_none()).then_some(s.start);
            let archive = verified
                .partial
                .map(|(first, below, latest)| json!({"first": first, "below": below, "latest_head": latest}));
            if args.json {
                println!(
                    "{}",
                    json!({
                        "ok": true,
                        "log_id": log_id,
                        "size": s.size,
                        "first_checked": s.start,
                        "entries_checked": checked,
                        "archived_unchecked_below": unchecked,
                        "archive": archive,
                        "root": B64.encode(s.root.0),
                        "heads_checked": s.heads_checked,
                        "heads_skipped": s.heads_skipped,
                        "saved_head_checked": s.saved_head_checked,
                        "meaning_replayed": verified.replayed.is_some(),
                        "released_jobs_checked": verified.replayed,
                        "log_key": served_key.trim(),
                        "seconds": elapsed.as_secs_f64(),
                        "entries_per_second": rate,
                    })
                );
            } else {
                match (unchecked, verified.partial) {
                    (Some(n), _) => println!(
                        "Log {log_id}: OK from entry {n} on; entries 0 to {} are ARCHIVED and \
                         were NOT checked",
                        n - 1
                    ),
                    (None, Some((first, below, latest))) if below < latest => println!(
                        "Log {log_id}: archive of entries {first} to {} OK (the log had {latest} \
                         entries when it was written)",
                        below.saturating_sub(1)
                    ),
                    (None, Some((first, below, _))) => println!(
                        "Log {log_id}: entries {first} to {} OK; entries 0 to {} are not in this \
                         directory (archived)",
                        below.saturating_sub(1),
                        first.saturating_sub(1)
                    ),
                    (None, None) => println!("Log {log_id}: OK"),
                }
                println!("  log key:       {} ({key_status})", served_key.trim());
                println!(
                    "  entries:       {checked} checked, {} to {}",
                    s.start,
                    s.size.saturating_sub(1)
                );
                if let Some(n) = unchecked {
                    println!(
                        "  archived:      entries 0 to {} left the server (past the retention \
                         period); the server's subtree hashes of them give the signed head of size \
                         {n}, and earlier heads are consistent with it, but their contents were \
                         not checked: pass --archive DIR (the server's data_dir/archive/{log_id}/...)",
                        n - 1
                    );
                }
                if let Some((first, below, latest)) = verified.partial {
                    if first > 0 {
                        println!(
                            "  start:         from the compact range of entries 0 to {} given \
                             with the signed head of size {first}",
                            first - 1
                        );
                    }
                    if latest > below {
                        println!(
                            "  not here:      entries {below} to {} (checked only that the signed \
                             head of size {latest} extends the one of size {below})",
                            latest - 1
                        );
                    }
                }
                println!(
                    "  root:          {} (size {})",
                    B64.encode(s.root.0),
                    s.size
                );
                println!("  signed heads:  {} checked", s.heads_checked);
                match verified.replayed {
                    Some(jobs) => println!(
                        "  meaning:       trust history and {jobs} released job(s) replayed with the agents' rules"
                    ),
                    None => println!(
                        "  meaning:       NOT replayed (the MSP log, a log read from an archived start, or an export without {STATEMENTS})"
                    ),
                }
                if s.heads_skipped > 0 {
                    println!(
                        "  earlier heads: {} below entry {}, checked only by consistency proofs",
                        s.heads_skipped, s.start
                    );
                }
                if s.saved_head_checked {
                    println!("  saved head:    the log extends it");
                } else if args.head.is_some() {
                    println!("  saved head:    NOT checked (it is within the archived entries)");
                }
                if let Some(path) = &args.save_head {
                    println!("  head saved to: {}", path.display());
                }
                println!("  time:          {elapsed:.2?} ({rate:.0} entries/s)");
            }
            Ok(if unchecked.is_some() {
                EXIT_ARCHIVED_UNCHECKED
            } else {
                0
            })
        }
        Err(bad) => {
            if args.json {
                println!(
                    "{}",
                    json!({
                        "ok": false,
                        "log_id": log_id,
                        "index": bad.index,
                        "head_size": bad.head_size,
                        "problem": bad.code,
                        "message": bad.message,
                    })
                );
            } else {
                println!("Log {log_id}: FAILED");
                if let Some(index) = bad.index {
                    println!("  first bad index: {index}");
                }
                if let Some(size) = bad.head_size {
                    println!("  tree head size:  {size}");
                }
                println!("  problem:         {} ({})", bad.message, bad.code);
            }
            Ok(1)
        }
    }
}

/// Steps 2 to 5. `Err`: could not check (exit 2); `Ok(Err)`: a bad log.
async fn check(
    source: &Source,
    key: &NoteVerifier,
    log_id: &str,
    notes: &[(u64, String)],
    saved: Option<Result<Checkpoint, Bad>>,
    quiet: bool,
) -> Result<Result<Verified, Bad>> {
    let heads = match open_checkpoints(notes, key, log_id) {
        Ok(heads) => heads,
        Err(bad) => return Ok(Err(bad)),
    };
    let saved = match saved.transpose() {
        Ok(saved) => saved,
        Err(bad) => return Ok(Err(bad)),
    };
    // Where replay starts and which heads it can check.
    let (auditor, partial) = match source {
        Source::Online {
            session,
            base,
            archived_below,
            archived_frontier,
            archives,
        } if *archived_below > 0 && archives.is_empty() => {
            // The archived prefix is not here: start from the server's
            // compact range of it, which must give the signed root at its
            // size, and check the heads below it by consistency proofs.
            let n = *archived_below;
            let Some(at_n) = heads.iter().find(|h| h.size() == n) else {
                bail!(
                    "entries 0 to {} are archived and the server holds no signed head of size \
                     {n}: the rest cannot be checked without the archive (pass --archive DIR)",
                    n - 1
                );
            };
            for head in heads.iter().filter(|h| h.size() > 0 && h.size() < n) {
                let proof = session
                    .get(&format!(
                        "{base}/proof/consistency?from={}&to={n}",
                        head.size()
                    ))
                    .await?;
                if let Err(e) = check_extension(head, at_n, &decode_hashes(&proof["hashes"])?) {
                    return Ok(Err(Bad::head(
                        n,
                        "inconsistent_heads",
                        format!(
                            "the tree head of size {n} does not extend the one of size {}: {e}",
                            head.size()
                        ),
                    )));
                }
            }
            let start = Frontier::from_parts(n, archived_frontier.clone())
                .map_err(|e| anyhow!("the server's compact range of the archived entries: {e}"))?;
            match LogAuditor::resume(&heads, saved.as_ref(), start) {
                Ok(auditor) => (auditor, None),
                Err(problem) => {
                    let mut bad = Bad::from_problem(&problem);
                    bad.message = format!(
                        "the server's compact range of the archived entries 0 to {} does not \
                         give the signed root at size {n}: {problem}",
                        n - 1
                    );
                    return Ok(Err(bad));
                }
            }
        }
        Source::Offline { entries, start, .. } => {
            // An archive holds a range of the log, checked against the
            // signed heads up to its end; later heads only by the
            // consistency proofs below.
            let latest = heads.iter().map(Checkpoint::size).max().unwrap_or(0);
            let partial = (entries.first > 0 || entries.below < latest).then_some((
                entries.first,
                entries.below,
                latest,
            ));
            let covered: Vec<Checkpoint> = heads
                .iter()
                .filter(|h| h.size() <= entries.below.max(entries.first))
                .cloned()
                .collect();
            if let Some(saved) = &saved
                && saved.size() > entries.below.max(entries.first)
            {
                bail!(
                    "the saved head (size {}) is beyond the entries of this directory (up to {})",
                    saved.size(),
                    entries.below
                );
            }
            let made = match start {
                Some(start) => LogAuditor::resume(&covered, saved.as_ref(), start.clone()),
                None => LogAuditor::new(&covered, saved.as_ref()),
            };
            match made {
                Ok(auditor) => (auditor, partial),
                Err(problem) => return Ok(Err(Bad::from_problem(&problem))),
            }
        }
        Source::Online { .. } => match LogAuditor::new(&heads, saved.as_ref()) {
            Ok(auditor) => (auditor, None),
            Err(problem) => return Ok(Err(Bad::from_problem(&problem))),
        },
    };
    let expected = auditor.expected_size().unwrap_or(0);
    // The meaning of a tenant's log is replayed online, from entry 0.
    let tenant_log = log_id != bulwark_protocol::audit_leaf::MSP_LOG;
    let replay = match source {
        Source::Online { session, base, .. } if tenant_log && auditor.size() == 0 => {
            Some(replay_for(session, base, log_id, quiet).await?)
        }
        Source::Offline { dir, .. }
            if tenant_log && auditor.size() == 0 && dir.join(STATEMENTS).exists() =>
        {
            let path = dir.join(STATEMENTS);
            let reply: Value = serde_json::from_str(
                &std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("{} is not JSON", path.display()))?;
            let pin = crate::pins::pin_by_tenant_id_anywhere(log_id)?.map(|p| p.root);
            Some(replay_from(&reply, log_id, pin, quiet)?)
        }
        _ => None,
    };
    let mut checker = Checker {
        auditor,
        tenant: (log_id != bulwark_protocol::audit_leaf::MSP_LOG).then(|| log_id.to_owned()),
        log_id: log_id.to_owned(),
        replay,
    };
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        progress(expected, "verifying entries")
    };
    let fed = match source {
        Source::Online {
            session,
            base,
            archives,
            ..
        } => {
            let mut result = Ok(());
            for archive in archives {
                result = archive.feed(&mut checker, &bar)?;
                if result.is_err() {
                    break;
                }
            }
            let mut next = checker.auditor.size();
            'pages: while result.is_ok() && next < expected {
                let page = fetch_entries(session, base, next).await?;
                if page.is_empty() {
                    break;
                }
                for (index, leaf) in page {
                    // Entries appended after the latest head: not ours to check.
                    if index >= expected {
                        break 'pages;
                    }
                    if let Err(bad) = checker.feed(index, &leaf) {
                        result = Err(bad);
                        break 'pages;
                    }
                    next = index + 1;
                }
                bar.set_position(next);
            }
            result
        }
        Source::Offline { entries, .. } => entries.feed(&mut checker, &bar)?,
    };
    bar.finish_and_clear();
    if let Err(mut bad) = fed {
        // A range that does not give its signed root: find the entry.
        if let Some(AuditProblem::RootMismatch { from, size }) = checker.auditor.problem() {
            let head = heads
                .iter()
                .find(|h| h.size() == *size)
                .expect("the auditor names a head it was given");
            match source {
                Source::Online {
                    session,
                    base,
                    archives,
                    ..
                } => {
                    if size - from <= MAX_PINPOINT {
                        bad = pinpoint_online(session, base, archives, head, *from).await?;
                    }
                }
                Source::Offline { entries, start, .. } => {
                    let start = start.clone().unwrap_or_else(Frontier::new);
                    if let Pinpoint::Entry(index) = entries.pinpoint(head, start)? {
                        bad = Bad::changed_entry(index, *size);
                    }
                }
            }
        }
        return Ok(Err(bad));
    }
    let summary = match checker.auditor.finish() {
        Ok(summary) => summary,
        Err(problem) => return Ok(Err(Bad::from_problem(&problem))),
    };
    // The tree holds; does what it records hold too?
    if let Some(Replay {
        problem: Some(problem),
        ..
    }) = &checker.replay
    {
        return Ok(Err(Bad::entry(
            problem.index,
            problem.code,
            problem.message.clone(),
        )));
    }
    let replayed = checker.replay.as_ref().map(|r| r.replay.released);
    // Offline: the consistency proofs of the export must hold too (they
    // are what a verifier without the entries would check).
    if let Source::Offline { dir, .. } = source {
        let path = dir.join("proofs.ndjson");
        if path.exists() {
            for proof in read_ndjson(&path)? {
                let from = proof["from"].as_u64().context("a proof without from")?;
                let to = proof["to"].as_u64().context("a proof without to")?;
                let (Some(old), Some(new)) = (
                    heads.iter().find(|h| h.size() == from),
                    heads.iter().find(|h| h.size() == to),
                ) else {
                    bail!("proofs.ndjson names sizes {from} and {to}, not both signed heads");
                };
                if let Err(e) = check_extension(old, new, &decode_hashes(&proof["hashes"])?) {
                    return Ok(Err(Bad::head(
                        to,
                        "inconsistent_heads",
                        format!(
                            "the tree head of size {to} does not extend the one of size {from}: {e}"
                        ),
                    )));
                }
            }
        }
    }
    let latest_note = notes
        .iter()
        .find(|(size, _)| *size == summary.size)
        .map(|(_, note)| note.clone());
    Ok(Ok(Verified {
        summary,
        latest_note,
        partial,
        replayed,
    }))
}

/// Which entry of `from..head.size()` is not in the signed head: each
/// entry's inclusion proof from the server, checked against the head.
async fn pinpoint_online(
    session: &Session,
    base: &str,
    archives: &[EntryFile],
    head: &Checkpoint,
    from: u64,
) -> Result<Bad> {
    let size = head.size();
    let mut leaves: Vec<(u64, Vec<u8>, Vec<Hash>)> = Vec::new();
    let mut next = from;
    // Archived entries from the archives (their proofs still come from the
    // server, which keeps every subtree hash).
    for archive in archives {
        if archive.below <= next || archive.first >= size {
            continue;
        }
        for (index, leaf) in archive.leaves(next, size)? {
            let proof = session
                .get(&format!(
                    "{base}/proof/inclusion?index={index}&tree_size={size}"
                ))
                .await?;
            leaves.push((index, leaf, decode_hashes(&proof["hashes"])?));
            next = index + 1;
        }
    }
    while next < size {
        let page = fetch_entries(session, base, next).await?;
        if page.is_empty() {
            break;
        }
        for (index, leaf) in page {
            if index >= size {
                break;
            }
            next = index + 1;
            let proof = session
                .get(&format!(
                    "{base}/proof/inclusion?index={index}&tree_size={size}"
                ))
                .await?;
            leaves.push((index, leaf, decode_hashes(&proof["hashes"])?));
        }
    }
    let found = pinpoint(
        head,
        leaves
            .iter()
            .map(|(i, l, p)| (*i, l.as_slice(), p.as_slice())),
    );
    Ok(match found {
        Pinpoint::Entry(index) => Bad::changed_entry(index, size),
        Pinpoint::Head => Bad {
            index: Some(from),
            head_size: Some(size),
            code: "forged_head",
            message: format!(
                "no entry from {from} to {} is in the signed tree head of size {size}: that \
                 head was not made from this log (a second, forked tree head for size {size}), \
                 or every one of those entries was changed",
                size - 1
            ),
        },
        Pinpoint::None => Bad {
            index: Some(from),
            head_size: Some(size),
            code: "root_mismatch",
            message: format!(
                "entries {from} to {} do not give the root of the signed tree head of size \
                 {size}, yet each is included in it: entries were removed or inserted",
                size - 1
            ),
        },
    })
}

fn read_ndjson(path: &Path) -> Result<Vec<Value>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {} is not JSON", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

/// The export's statements file (tenant logs).
const STATEMENTS: &str = "statements.json";

const README: &str = "\
Bulwark transparency log export
===============================

This directory holds one Bulwark transparency log (RFD 0003): every entry,
every signed tree head, and the consistency proofs between consecutive
heads. It can be verified offline, without the server:

    bulwark audit verify --from DIR [--log-key VKEY] [--head SAVED-HEAD]

Compare the key in log.vkey with the one the MSP gives you out of band (or
pass it with --log-key): everything else is checked against it.

Files
-----
log.vkey           The log key: a Go signed-note verifier key
                   (<name>+<key id>+<base64 of 0x01 || Ed25519 public key>).
entries.ndjson     One JSON object per line, in index order from 0:
                   {\"index\": N, \"leaf\": \"<base64>\", \"at\": <unix ms>,
                    \"hash\": \"<base64>\"}
                   leaf: standard base64 (padded) of the exact leaf bytes.
                   The Merkle tree (RFC 6962 / RFC 9162, SHA-256) holds
                   SHA-256(0x00 || leaf); audit events are the canonical CBOR
                   map of RFD 0003, \"Audit event leaf, version 1\".
                   at: when the entry was appended (not part of the leaf).
                   hash: the leaf hash the server's tree held at that index,
                   stored apart from the leaf. When the hashes give a signed
                   head's root, an entry whose own hash differs was changed:
                   verify names it.
statements.json    A tenant log's trust statements and job envelopes:
                   {\"trust\": [{\"kind\", \"version\", \"envelope\"}],
                    \"jobs\": [{\"id\", \"envelope\"}]} (envelopes base64).
                   verify replays the log's meaning with them: each
                   published statement with the agents' rules from the
                   pinned root, each released job against its policy.
checkpoints.ndjson One JSON object per line, smallest size first:
                   {\"size\": N, \"note\": \"<signed checkpoint>\"}
                   note: the C2SP checkpoint (origin <key name>/<log id>,
                   size, base64 root) signed by log.vkey, verbatim.
proofs.ndjson      One JSON object per line, for each pair of consecutive
                   checkpoints (sizes above 0):
                   {\"from\": A, \"to\": B, \"hashes\": [\"<base64>\", ...]}
                   the RFC 9162 2.1.4 consistency proof from size A to B.

What verification checks
------------------------
Every checkpoint is signed by log.vkey and names this log; every leaf is a
canonical audit event of this log; the entries, replayed in order, have no
missing index and give each checkpoint's root at its size; the log ends at
the latest checkpoint; each consistency proof holds; and, with --head, the
log extends a checkpoint you saved earlier (bulwark audit verify
--save-head FILE). Keep a saved head outside the MSP's reach: a log
truncated or rewritten after you saved it cannot match it again.
";

async fn export(args: ExportArgs) -> Result<()> {
    let started = Instant::now();
    let ServedLog {
        session,
        base,
        vkey,
        head,
        log_id,
    } = served_log(&args.log).await?;
    announce(&session, &base, "export", &head).await?;
    let notes = fetch_checkpoints(&session, &base).await?;
    let size = notes.last().map_or(0, |(size, _)| *size);
    // Entries below `archived_below` left the server (retention): the
    // export starts there, from the compact range of the archived ones.
    let archived_below = head["archived_below"].as_u64().unwrap_or(0).min(size);
    if archived_below > 0 {
        ensure!(
            notes.iter().any(|(s, _)| *s == archived_below),
            "entries 0 to {} are archived and the server holds no signed head of size \
             {archived_below} to start the export from",
            archived_below - 1
        );
    }

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let create = |name: &str| -> Result<BufWriter<std::fs::File>> {
        let path = args.out.join(name);
        Ok(BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?,
        ))
    };
    std::fs::write(args.out.join("log.vkey"), format!("{}\n", vkey.trim()))?;
    std::fs::write(args.out.join("README.txt"), README)?;
    if log_id != bulwark_protocol::audit_leaf::MSP_LOG {
        let statements = session.get(&format!("{base}/statements")).await?;
        std::fs::write(
            args.out.join(STATEMENTS),
            serde_json::to_string(&statements)?,
        )?;
    }

    let mut file = create("checkpoints.ndjson")?;
    for (size, note) in &notes {
        let mut line = json!({"size": size, "note": note});
        if archived_below > 0 && *size == archived_below {
            line["frontier"] = head["archived_frontier"].clone();
        }
        writeln!(file, "{line}")?;
    }
    file.flush()?;

    let mut file = create("proofs.ndjson")?;
    for pair in notes.windows(2) {
        let (from, to) = (pair[0].0, pair[1].0);
        if from == 0 {
            continue;
        }
        let proof = session
            .get(&format!("{base}/proof/consistency?from={from}&to={to}"))
            .await?;
        writeln!(
            file,
            "{}",
            json!({"from": from, "to": to, "hashes": proof["hashes"]})
        )?;
    }
    file.flush()?;

    let bar = progress(size, "exporting entries");
    let mut file = create("entries.ndjson")?;
    let mut next = archived_below;
    while next < size {
        let page = session
            .get(&format!("{base}/entries?start={next}&limit={PAGE}"))
            .await?;
        let entries = page["entries"]
            .as_array()
            .ok_or_else(|| anyhow!("the server's entry list is malformed"))?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            let index = entry["index"]
                .as_u64()
                .context("an entry without an index")?;
            if index >= size {
                next = size;
                break;
            }
            writeln!(
                file,
                "{}",
                json!({"index": index, "leaf": entry["leaf"], "at": entry["at"], "hash": entry["hash"]})
            )?;
            next = index + 1;
        }
        bar.set_position(next);
    }
    file.flush()?;
    bar.finish_and_clear();
    println!(
        "Exported log {log_id}: {} entries, {} signed heads, to {} in {:.2?}.",
        next - archived_below,
        notes.len(),
        args.out.display(),
        started.elapsed()
    );
    if archived_below > 0 {
        println!(
            "Entries 0 to {} are archived (past the retention period) and not in this export: \
             it starts at {archived_below}, from the compact range of those entries (the \
             server's data_dir/archive/{log_id}/ holds them).",
            archived_below - 1
        );
    }
    println!(
        "Verify it offline with: bulwark audit verify --from {}",
        args.out.display()
    );
    Ok(())
}
