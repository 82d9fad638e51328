//! The API against its own OpenAPI document, fuzzed by schemathesis with
//! every check (issue 13): the real `bulwark up`, then `st run ... --checks
//! all` twice, once signed in as the owner (a bearer token) and once signed
//! out. Any 5xx, any response the document does not describe (status,
//! content type, headers, schema), any bound the document and the server
//! disagree on, or a route that ignores missing authentication fails it.
//!
//! A bounded run: few examples per operation and a time budget per run, so
//! it fits the test command, and a fixed seed, so that a failure repeats;
//! `BULWARK_ST_ARGS` (space-separated) adds arguments, e.g. `--seed 1234
//! --max-examples 200 --max-time 900` for a long local run.
//!
//! Needs schemathesis in the virtual environment `cargo xtask test`
//! installs; without it the test fails with the command that installs it,
//! it does not skip.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bulwark_e2e::python_tools::{
    SCHEMATHESIS_VERSION, schemathesis_bin, schemathesis_venv, schemathesis_version_line,
};
use bulwark_e2e::{Api, Finished, UpOptions, UpProcess, run_command};

/// The seed of the test command's runs.
const SEED: &str = "20261206";
/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "10";
/// Time budget of one run (`--max-time`); the whole test stays well under
/// three minutes on two cores with a debug build.
const RUN_SECONDS: &str = "60";
/// How long one run may take before it is killed (its budget and shrinking).
const RUN_TIMEOUT: Duration = Duration::from_secs(150);

/// Operations (by `operationId`) left out of the signed-in run, each
/// because it would end the very session the run signs in with (every later
/// request would then be a 401 and the run would test nothing). The
/// signed-out run still covers them.
const SIGNED_IN_EXCLUDED: &[&str] = &[
    // POST /api/v1/auth/logout ends the calling session.
    "logout",
    // DELETE /api/v1/sessions/{id}: schemathesis reuses the ids it read in
    // responses, and GET /api/v1/sessions lists the run's own session.
    "revoke_session",
    // PUT /api/v1/settings/passkey-policy with `owner` in it leaves the
    // owner's password-and-code session able only to register a passkey
    // (403 `passkey_required` everywhere else).
    "set_passkey_policy",
];

/// Operations that may answer 400 (or 422, a statement refused) to a request the document's schema
/// admits, because what makes it wrong is not a shape a JSON Schema can
/// state: a secret's or a signature's truth, the state of the server, or a
/// rule tying two fields together. For them (only) schemathesis'
/// `positive_data_acceptance` check also takes a 400; every other check,
/// and every other operation, stays as strict as schemathesis makes it.
const SEMANTIC_400: &[(&str, &str)] = &[
    // RFC 8628 §3.5: every answer but the token is a 400 (pending, slow
    // down, denied, expired, unknown code).
    ("device_token", "RFC 8628 errors are 400s"),
    // A release file's name follows TUF's layout and its content is
    // base64 within the role's size: rules of the repository, not of JSON.
    (
        "upload_file",
        "a file name, base64 or size the mirror refuses",
    ),
    // A one-time code, a passkey assertion or a ceremony id is right or
    // wrong by a secret, not by its shape.
    ("step_up", "a wrong one-time code"),
    ("confirm_invitation", "a wrong one-time code"),
    ("setup_confirm", "a wrong one-time code"),
    (
        "step_up_passkey",
        "a passkey assertion that does not verify",
    ),
    ("passkey_login", "a passkey assertion that does not verify"),
    ("register_passkey", "an attestation that does not verify"),
    ("device_approve", "a passkey assertion that does not verify"),
    (
        "register_signing_key",
        "a key or credential that does not decode",
    ),
    // Passwords are checked against the username and a list of common
    // ones, after NFKC normalisation.
    ("redeem_invitation", "a weak password"),
    // Sizes and indexes are bounded by the log's size now.
    ("tenant_log_inclusion", "a tree size beyond the log"),
    ("tenant_log_consistency", "a tree size beyond the log"),
    ("tenant_log_export", "a tree size beyond the log"),
    ("msp_log_inclusion", "a tree size beyond the log"),
    ("msp_log_consistency", "a tree size beyond the log"),
    ("msp_log_export", "a tree size beyond the log"),
    // A role and its tenants go together (an owner names none, a tenant
    // auditor exactly one).
    ("create_invitation", "a role that does not fit its tenants"),
    ("create_api_token", "a role that does not fit its tenants"),
    // An alert channel's target is an e-mail address or a URL depending on
    // its kind, and a URL must be https:// unless it names a loopback host.
    ("add_channel", "a target that does not fit its kind"),
    // A version must parse by dpkg's rules and an ecosystem name an OSV
    // Debian or Ubuntu release; uploaded records must be OSV records.
    ("check", "a version or ecosystem dpkg or OSV would not take"),
    ("add_records", "a record that is not an OSV record"),
    // An SLA's time zone must be in the server's tzdb, its times HH:MM with
    // each day's start before its end, its holidays real dates, given once.
    ("put_sla", "a zone, time or date that does not exist"),
    // A trust statement is a signed envelope for this tenant: random bytes
    // are not base64, not a statement of the right type, or not signed by
    // the tenant's root (answered 400 or 422 `refused`). The stateful phase
    // reaches these with real tenant names since the dashboard lists them.
    ("publish_freeze", "an envelope that is not a signed freeze"),
    ("publish_root", "an envelope that is not a signed root"),
    ("publish_policy", "an envelope that is not a signed policy"),
    ("sign_proposal", "a signature that does not verify"),
    ("create_proposal", "a statement for another tenant or type"),
    // A job is a signed job statement: the stateful phase can hand it
    // another statement of the tenant's (a policy envelope it read).
    (
        "create_job",
        "an envelope that is not a signed job statement",
    ),
    // A schedule is a signed schedule statement for this tenant with a
    // script of its hash; a revoke needs a reason of 1 to 1000 characters
    // (RFD 0019).
    (
        "create_schedule",
        "an envelope that is not a signed schedule statement",
    ),
    ("revoke_schedule", "an empty reason"),
    // A patch policy is two signed schedule statements of the tenant's, of
    // the install-patches class, tied by their times and devices (RFD
    // 0021): the stateful phase can hand it a policy envelope it read.
    (
        "create_patch_policy",
        "envelopes that are not two signed schedules of one patch policy",
    ),
    ("revoke_patch_policy", "an empty reason"),
    // A script version is text signed by its author: the signature must
    // verify over the content's hash, and the number be the next one
    // (RFD 0013).
    ("create_script", "an author signature that does not verify"),
    (
        "request_shell_grant",
        "an envelope that is not a signed shell grant",
    ),
    ("approve_shell_grant", "a signature that does not verify"),
    ("revoke_shell_grant", "a blank reason"),
    ("connect_shell", "a request that is not a WebSocket upgrade"),
    ("add_version", "an author signature that does not verify"),
    // Tags and group names have rules a schema of a comma-separated list
    // cannot state (letters, digits, `-_.`; a tag not both added and
    // removed), and a cursor is one this server gave (RFD 0016).
    ("search_devices", "a tag, group or cursor that is not one"),
    ("device_tags", "a tag that is not one"),
    ("device_group", "a group name that is not one"),
    // `from` must be before `to`: now that the device search lists real
    // device ids, the stateful phase reaches a device's series (RFD 0016).
    (
        "device_metrics",
        "a range whose start is not before its end",
    ),
];

#[tokio::test]
async fn schemathesis_finds_nothing_signed_in_or_out() -> Result<()> {
    let st = installed_schemathesis()?;
    let mut up = UpProcess::start(UpOptions::default()).await?;
    let (_owner, api) = Api::bootstrap(&up).await?;
    let token = api.token().context("bootstrap gave no token")?.to_owned();
    let schema = format!("{}/api/v1/openapi.json", up.base_url());

    let started = Instant::now();
    let signed_in = run_st(&st, &schema, Some(&token), SIGNED_IN_EXCLUDED).await?;
    eprintln!("[schemathesis] signed in: {:?}", started.elapsed());
    let started = Instant::now();
    let signed_out = run_st(&st, &schema, None, &[]).await?;
    eprintln!("[schemathesis] signed out: {:?}", started.elapsed());
    up.stop().await?;

    let mut failed = Vec::new();
    for (name, run) in [("signed in", &signed_in), ("signed out", &signed_out)] {
        if !run.success() {
            failed.push(format!(
                "schemathesis found problems {name} ({}):\n{}",
                run.status,
                run.all_output()
            ));
        }
    }
    ensure!(failed.is_empty(), "{}", failed.join("\n\n"));
    Ok(())
}

/// `st` from the virtual environment `cargo xtask test` makes, at the
/// pinned version, or an error saying how to install it.
fn installed_schemathesis() -> Result<PathBuf> {
    let st = schemathesis_bin();
    let install = format!(
        "Install it with `cargo xtask test` (which runs `python3 -m venv {venv}` and \
         `{venv}/bin/pip install schemathesis=={SCHEMATHESIS_VERSION}`), or run those two \
         commands yourself.",
        venv = schemathesis_venv().display()
    );
    if !st.is_file() {
        bail!(
            "this test runs schemathesis, but {} does not exist.\n{install}",
            st.display()
        );
    }
    let output = std::process::Command::new(&st)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", st.display()))?;
    let version = String::from_utf8_lossy(&output.stdout);
    ensure!(
        version.trim() == schemathesis_version_line(),
        "{} is `{}`, not schemathesis {SCHEMATHESIS_VERSION}.\n{install}",
        st.display(),
        version.trim()
    );
    Ok(st)
}

async fn run_st(
    st: &PathBuf,
    schema: &str,
    token: Option<&str>,
    excluded: &[&str],
) -> Result<Finished> {
    let config = tempfile::Builder::new()
        .prefix("schemathesis-")
        .suffix(".toml")
        .tempfile()?;
    std::fs::write(config.path(), config_toml())?;
    let mut command = tokio::process::Command::new(st);
    command
        .arg("--config-file")
        .arg(config.path())
        .args(["run", schema, "--checks", "all"])
        .args(["--max-examples", MAX_EXAMPLES, "--max-time", RUN_SECONDS])
        // One worker: with two, hypothesis' lambda descriptions race
        // ("AST constructor recursion depth mismatch") and fail the run.
        .args(["--request-timeout", "10", "--workers", "1"])
        // No `.hypothesis` directory in the work tree, no stale examples.
        .args(["--generation-database", "none", "--no-color"])
        // The token must show in a failure's reproduction (it dies with the test's server).
        .args(["--output-sanitize", "false"]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    for operation_id in excluded {
        command.args(["--exclude-operation-id", operation_id]);
    }
    let extra = std::env::var("BULWARK_ST_ARGS").unwrap_or_default();
    // A fixed seed in the test command, so a red run is the same run when
    // repeated; `BULWARK_ST_ARGS="--seed N"` explores further.
    if !extra.split_whitespace().any(|a| a == "--seed") {
        command.args(["--seed", SEED]);
    }
    command.args(extra.split_whitespace());
    // Schemathesis writes nothing to the work tree: its reports go nowhere.
    command.current_dir(std::env::temp_dir());
    run_command(command, None, RUN_TIMEOUT).await
}

/// The `--config-file`: [`SEMANTIC_400`].
fn config_toml() -> String {
    let ids: Vec<String> = SEMANTIC_400
        .iter()
        .map(|(id, _)| format!("{id:?}"))
        .collect();
    format!(
        "[[operations]]\n\
         include-operation-id = [{}]\n\
         checks.positive_data_acceptance.expected-statuses = \
         [\"2xx\", \"3xx\", \"400\", \"401\", \"403\", \"404\", \"409\", \"422\", \"429\"]\n",
        ids.join(", ")
    )
}
