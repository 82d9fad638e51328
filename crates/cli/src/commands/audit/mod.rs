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
//!    root at its size, and the log is exactly as long as its latest head
//!    (an export read with `--from`: as its newest signed head and the head
//!    it recorded in `head.json`; entries cut from its end, or all of them,
//!    are counted as missing, see `complete`);
//! 5. with `--head FILE`, the log extends the head saved earlier;
//! 6. with witnesses (`--witness VKEY`, or the witness section of the
//!    tenant's policy in force at the end of the replayed log; RFD 0006),
//!    the newest head the entries are checked against carries valid
//!    cosignatures of `k` distinct listed witnesses (`witnesses`). The log
//!    key sits in the server's data directory, so only this shows a history
//!    the server rewrote and re-signed to an auditor who saved no head.
//!
//! Entries the server archived (past the retention period; RFD 0003,
//! "Retention and archives") come from `--archive DIR`s; without them the
//! rest is checked from the server's compact range of the archived prefix
//! and the prefix is reported as archived and not checked (exit 3), but
//! only if the entries checked record its archiving: `log.archived` entries
//! of this log naming its ranges, each with the root of the signed head at
//! its end (`archiving`). Entries absent without such a record (deleted,
//! with `archived_below` raised by hand) are missing (exit 1); so is an
//! export's absent prefix.
//!
//! The first problem is printed with the entry index it concerns (a changed
//! entry is pinpointed with its inclusion proof when online), exit code 1:
//! every way the log fails verification, with or without `--head`, online
//! or offline, a witness cosignature that does not verify among them. Exit
//! 2 means it could not be checked: usage, connection and server errors,
//! unreadable or malformed files. Exit 4: everything else verified, but the
//! newest head lacks the witnesses' cosignatures. [`VERIFY_EXIT_CODES`] is
//! the list `--help` prints.
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
use bulwark_api::log::{
    CheckpointsQuery, ConsistencyProofView, ConsistencyQuery, EntriesQuery, ExportPurpose,
    ExportRecorded, ExportRequest, InclusionProofView, InclusionQuery, LogCheckpointsView,
    LogEntriesView, LogEntryView, LogHeadView, LogKeyView, LogStatementsView,
};
use bulwark_policy::Signed;
use bulwark_policy::replay::{ReplayProblem, Statements, TrustReplay};
use bulwark_protocol::audit_leaf::AuditLeaf;
use bulwark_translog::{
    AuditProblem, AuditSummary, Checkpoint, Frontier, Hash, Limits, LogAuditor, NoteVerifier,
    Pinpoint, check_extension, pinpoint, pinpoint_by_leaf_hashes, verify_log_note,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::client::{Session, path_segment, send};

mod alarms;
mod archiving;
mod complete;
mod export;
mod files;
mod pinpoint;
mod proven;
mod replay;
mod server;
mod verify;
mod witnesses;

use alarms::*;
use archiving::*;
use complete::*;
use export::*;
use files::*;
use pinpoint::*;
pub(crate) use proven::newest_proven;
use replay::*;
use server::*;
use verify::*;
use witnesses::*;

/// Entries (and checkpoints) per request: the API's largest page.
const PAGE: u32 = 1000;
/// Largest range whose bad entry is pinpointed with per-entry inclusion proofs.
const MAX_PINPOINT: u64 = 20_000;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify a transparency log end to end: signatures, every entry, every
    /// root, and witness cosignatures on the newest head; exit 1 on the
    /// first problem (with the index of the entry), 2 if it could not be
    /// checked, 4 if not witnessed (see the exit codes in --help).
    #[command(after_help = VERIFY_EXIT_CODES)]
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
    /// offline instead of downloading. An export must hold every entry up
    /// to its newest signed head; an archive, its range.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["tenant", "msp", "archive"])]
    from: Option<PathBuf>,
    /// An archive directory (copied from the server's
    /// `data_dir/archive/<log id>/`) supplying entries the server no longer
    /// holds (past the retention period). Repeat it for consecutive
    /// archives: together they must cover entries 0 to the log's
    /// `archived_below`; the rest is downloaded.
    #[arg(long, value_name = "DIR")]
    archive: Vec<PathBuf>,
    /// A witness's cosignature key (`<name>+<key id>+<base64>`, as `bulwark
    /// witness init` prints it; RFD 0006). Repeat it for each witness. The
    /// newest head the log is checked against must carry valid
    /// cosignatures of --witnesses-required of them (any time: a rewritten,
    /// re-signed history gathers none); else exit 4. Without it, the
    /// witnesses of the tenant's policy in force are used, if it names any.
    #[arg(long, value_name = "VKEY")]
    witness: Vec<String>,
    /// How many distinct --witness keys must have cosigned (default: all of
    /// them).
    #[arg(long, value_name = "K", requires = "witness")]
    witnesses_required: Option<u32>,
    /// An agent's own record of the alarms it raised (`bulwark-agent alarms
    /// --record` on the endpoint). Repeat it, or concatenate records: each
    /// alarm of this tenant must be in the verified log as the alert entry
    /// its report became, else exit 5 (the server suppressed it).
    #[arg(long, value_name = "FILE")]
    alarms: Vec<PathBuf>,
    /// Alarms raised less than this many minutes ago may still be on their
    /// way to the log, and are not counted missing.
    #[arg(
        long,
        value_name = "MINUTES",
        default_value_t = 15,
        requires = "alarms"
    )]
    alarm_grace: u64,
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

/// Exit code of `verify` when the log fails verification.
pub const EXIT_BAD_LOG: i32 = 1;
/// Exit code of `verify` (and `export`) when it could not check (or write).
pub const EXIT_NOT_CHECKED: i32 = 2;
/// Exit code of `verify` when what it could read is good but entries
/// `0..archived_below` are archived and were not checked (no `--archive`).
pub const EXIT_ARCHIVED_UNCHECKED: i32 = 3;

/// Exit code of `verify` when the log verified but the newest head it is
/// checked against lacks the cosignatures of the required witnesses.
pub const EXIT_NOT_WITNESSED: i32 = 4;

/// `verify`'s exit codes, as `--help` prints them.
pub const VERIFY_EXIT_CODES: &str = "\
Exit codes:
  0  The log verified: every entry up to its newest signed head (and, with
     --head, the saved head), or, for a server archive read with --from, the
     archive's range; with witnesses (--witness, or the tenant's policy),
     the newest head carries enough of their cosignatures.
  1  The log fails verification, online or offline, with or without --head:
     a changed, deleted, reordered or foreign entry; entries missing (a log
     or an export cut short of its newest signed head, of the head the
     export recorded or of the saved head, or an empty entries.ndjson;
     first entries the server calls archived but no log.archived entry of
     the log itself records, with the signed root at the range's end); a
     head forged, forked or not signed by the log key; entries no signed
     head covers; a witness cosignature (of a listed witness) that does not
     verify. The problem and the first entry (or head size) concerned
     are printed (--json: \"problem\", \"index\", \"head_size\").
  2  It could not be checked: usage, connection or server errors, a log key
     other than the pinned or given one, unreadable or malformed files.
  3  What could be read verified, but entries 0 to N-1 are archived on the
     server (as the log's own log.archived entries record) and were not
     checked (pass --archive DIR).
  4  Not witnessed: the log verified against its heads, but the newest one
     carries valid cosignatures of fewer than the required witnesses
     (--witness and --witnesses-required, else the tenant's policy): a
     history rewritten and re-signed with the log key looks like this.
     Who cosigned is printed (--json: \"problem\": \"not_witnessed\",
     \"witnesses\"). Takes precedence over 3 and 5.
  5  The log verified, but alarms the agents recorded on their endpoints
     (--alarms) older than --alarm-grace are not in it: the server dropped
     their reports. Each is printed (--json: \"alarms\"). With entries
     archived and not checked, 3 instead (the alarms may be there).";

/// Runs an `audit` command and exits: 0 good, 1 ([`EXIT_BAD_LOG`]) a bad
/// log, 2 ([`EXIT_NOT_CHECKED`]) anything else, 3
/// ([`EXIT_ARCHIVED_UNCHECKED`]) good but with an archived prefix not
/// checked, 4 ([`EXIT_NOT_WITNESSED`]) good but not witnessed, 5
/// ([`EXIT_ALARMS_MISSING`]) good but lacking alarms an agent recorded.
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
                    EXIT_NOT_CHECKED
                }
            }
        }
        AuditCommand::Export(args) => match export(args).await {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("error: {error:#}");
                EXIT_NOT_CHECKED
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
