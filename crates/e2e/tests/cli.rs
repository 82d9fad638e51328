//! The operator CLI (`bulwark login`, `tenant`, `device`, `logout`) against a
//! real server, with its configuration directory isolated per test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::devices::DeviceView;
use bulwark_api::tenants::{EnrollmentTokenView, TenantView};
use bulwark_e2e::{
    Api, Finished, Owner, UpOptions, UpProcess, bulwark_bin, decode_body, run_command,
};
use serde_json::Value;

const ONLINE_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs `bulwark ARGS` with `BULWARK_CONFIG_DIR=config` and `stdin`.
async fn bulwark(config: &Path, args: &[&str], stdin: Option<&str>) -> Result<Finished> {
    let mut command = tokio::process::Command::new(bulwark_bin()?);
    command
        .args(args)
        .env("BULWARK_CONFIG_DIR", config)
        .env("NO_COLOR", "1")
        .env_remove("BULWARK_SERVER");
    run_command(command, stdin, Duration::from_secs(60)).await
}

async fn bulwark_json(config: &Path, args: &[&str]) -> Result<Value> {
    let finished = bulwark(config, args, None).await?.ok()?;
    serde_json::from_str(&finished.stdout).with_context(|| {
        format!(
            "`bulwark {}` did not print JSON:\n{}",
            args.join(" "),
            finished.stdout
        )
    })
}

async fn login(config: &Path, server: &str, owner: &Owner) -> Result<Finished> {
    let otp = owner.next_otp().await?;
    let args = [
        "login",
        "--server",
        server,
        "--username",
        &owner.username,
        "--password-stdin",
        "--otp",
        &otp,
    ];
    bulwark(config, &args, Some(&format!("{}\n", owner.password))).await
}

#[tokio::test]
async fn operator_cli_logs_in_lists_and_logs_out() -> Result<()> {
    let up = UpProcess::start(UpOptions::default()).await?;
    let owner = up.api().create_owner(&up.setup_code().await?).await?;
    let config = tempfile::tempdir()?;
    let config_dir = config.path().join("bulwark");
    let server = up.info.console_url.clone();

    // Not logged in yet: a clear error.
    let out = bulwark(&config_dir, &["tenant", "list"], None).await?;
    ensure!(
        !out.success(),
        "tenant list without login succeeded:\n{}",
        out.all_output()
    );
    ensure!(
        out.stderr.contains("bulwark login"),
        "no hint to log in:\n{}",
        out.all_output()
    );

    // MFA always: --password-stdin without --otp is refused before any request.
    let out = bulwark(
        &config_dir,
        &[
            "login",
            "--server",
            &server,
            "--username",
            &owner.username,
            "--password-stdin",
        ],
        Some(&owner.password),
    )
    .await?;
    ensure!(
        !out.success(),
        "login without --otp succeeded:\n{}",
        out.all_output()
    );
    ensure!(
        out.stderr.contains("--otp"),
        "the refusal does not mention --otp:\n{}",
        out.all_output()
    );
    // Without --password-stdin and without a terminal there is nothing to prompt on.
    let out = bulwark(
        &config_dir,
        &["login", "--server", &server, "--username", &owner.username],
        None,
    )
    .await?;
    ensure!(
        !out.success(),
        "non-interactive login without --password-stdin succeeded:\n{}",
        out.all_output()
    );
    ensure!(
        !config_dir.join("credentials.json").exists(),
        "failed logins wrote credentials"
    );

    // A wrong password shows the server's error message.
    let otp = owner.next_otp().await?;
    let args = [
        "login",
        "--server",
        &server,
        "--username",
        &owner.username,
        "--password-stdin",
        "--otp",
        &otp,
    ];
    let out = bulwark(&config_dir, &args, Some("not the password\n")).await?;
    ensure!(!out.success(), "login with a wrong password succeeded");
    ensure!(
        out.stderr
            .contains("the username, password or one-time code is wrong")
            || out.stderr.contains("401"),
        "the API's error message is not shown:\n{}",
        out.all_output()
    );

    login(&config_dir, &server, &owner).await?.ok()?;
    let credentials = config_dir.join("credentials.json");
    let mode = std::fs::metadata(&credentials)?.permissions().mode() & 0o777;
    ensure!(
        mode == 0o600,
        "credentials.json has mode {mode:o}, expected 600"
    );
    let dir_mode = std::fs::metadata(&config_dir)?.permissions().mode() & 0o777;
    ensure!(
        dir_mode == 0o700,
        "the config directory has mode {dir_mode:o}, expected 700"
    );
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&credentials)?)?;
    ensure!(
        stored["token"].is_string(),
        "credentials.json has no token: {stored}"
    );

    // Typed: a tenant without a numeric `device_count` does not decode.
    let tenants: Vec<TenantView> =
        decode_body(&bulwark_json(&config_dir, &["tenant", "list", "--json"]).await?)
            .context("tenant list --json")?;
    tenants
        .iter()
        .find(|t| t.name == "demo")
        .with_context(|| format!("no tenant demo in {tenants:?}"))?;

    // The local agent's device, through the CLI.
    let api = up.api();
    let api = api.with_token(stored["token"].as_str().context("token")?);
    api.wait_single_device_online("demo", ONLINE_TIMEOUT)
        .await?;
    let devices: Vec<DeviceView> = decode_body(
        &bulwark_json(
            &config_dir,
            &["device", "list", "--tenant", "demo", "--json"],
        )
        .await?,
    )
    .context("device list --json")?;
    let device = devices
        .first()
        .with_context(|| format!("no device in {devices:?}"))?;
    let id = device.id.clone();
    // The raw JSON too: the field must be there (the typed view reads an
    // absent one as null).
    let shown = bulwark_json(&config_dir, &["device", "show", &id, "--json"]).await?;
    let shown_view: DeviceView = decode_body(&shown).context("device show --json")?;
    ensure!(
        shown_view.id == device.id,
        "device show returned another device: {shown}"
    );
    ensure!(
        shown.get("inventory").is_some(),
        "device show has no inventory field: {shown}"
    );

    // Human-readable output: aligned tables, no colour codes when not a TTY.
    let table = bulwark(&config_dir, &["device", "list", "--tenant", "demo"], None)
        .await?
        .ok()?;
    let hostname = device.hostname.as_str();
    ensure!(
        table.stdout.contains("HOSTNAME") && table.stdout.contains(hostname),
        "device table:\n{}",
        table.stdout
    );
    ensure!(
        table.stdout.contains("online"),
        "device table lacks the status:\n{}",
        table.stdout
    );
    ensure!(
        !table.stdout.contains('\x1b'),
        "colour codes in non-TTY output:\n{}",
        table.stdout
    );
    let text = bulwark(&config_dir, &["device", "show", &id], None)
        .await?
        .ok()?;
    ensure!(
        text.stdout.contains(hostname),
        "device show:\n{}",
        text.stdout
    );
    let table = bulwark(&config_dir, &["tenant", "list"], None)
        .await?
        .ok()?;
    ensure!(
        table.stdout.lines().any(|l| l.starts_with("demo")),
        "tenant table:\n{}",
        table.stdout
    );

    let token: EnrollmentTokenView = decode_body(
        &bulwark_json(
            &config_dir,
            &["tenant", "enroll-token", "--tenant", "demo", "--json"],
        )
        .await?,
    )
    .context("tenant enroll-token --json")?;
    ensure!(token.token.starts_with("bwe1."), "enroll-token: {token:?}");
    ensure!(
        token.tenant == "demo",
        "enroll-token for another tenant: {token:?}"
    );
    // Typed: a reply whose `expires_at` is not a string does not decode.
    let _: EnrollmentTokenView = decode_body(
        &bulwark_json(
            &config_dir,
            &[
                "tenant",
                "enroll-token",
                "--tenant",
                "demo",
                "--ttl-minutes",
                "5",
                "--json",
            ],
        )
        .await?,
    )
    .context("tenant enroll-token --ttl-minutes 5 --json")?;
    let out = bulwark(
        &config_dir,
        &["device", "list", "--tenant", "no-such-tenant"],
        None,
    )
    .await?;
    ensure!(
        !out.success(),
        "listing an unknown tenant succeeded:\n{}",
        out.all_output()
    );
    ensure!(
        out.stderr.contains("no such"),
        "the API's not-found message is not shown:\n{}",
        out.all_output()
    );

    // Logout ends the session on the server and removes the file.
    let old_token = stored["token"].as_str().context("token")?.to_owned();
    bulwark(&config_dir, &["logout"], None).await?.ok()?;
    ensure!(!credentials.exists(), "logout left credentials.json behind");
    let reply = Api::new(&up.base_url())
        .with_token(&old_token)
        .call(bulwark_e2e::Method::GET, "/api/v1/tenants", None)
        .await?;
    ensure!(
        reply.status == 401,
        "the token still works after logout: {} {}",
        reply.status,
        reply.body
    );
    let out = bulwark(&config_dir, &["tenant", "list"], None).await?;
    ensure!(!out.success(), "tenant list after logout succeeded");
    Ok(())
}
