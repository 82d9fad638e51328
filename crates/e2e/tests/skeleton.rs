//! The walking skeleton, end to end: `bulwark up` with its local agent, a
//! second agent, restarts, refusals and the API's handling of bad input.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::devices::DeviceView;
use bulwark_api::tenants::TenantView;
use bulwark_e2e::{
    Api, ExtraAgent, Method, StatusCode, UpOptions, UpProcess, enroll_agent, run_command,
    spawn_agent,
};
use bulwark_protocol::token::EnrollToken;
use serde_json::{Value, json};

/// How long the local agent may take to show up online after `bulwark up`.
const ONLINE_TIMEOUT: Duration = Duration::from_secs(15);
/// `--heartbeat-secs` for tests that watch a device go offline.
const HEARTBEAT_SECS: u64 = 2;
/// A crashed agent must be shown offline within this (a few heartbeats).
const OFFLINE_TIMEOUT: Duration = Duration::from_secs(4 * HEARTBEAT_SECS + 4);

async fn start_up() -> Result<UpProcess> {
    UpProcess::start(UpOptions::default().heartbeat_secs(HEARTBEAT_SECS)).await
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// (a) `bulwark up` → owner through the API → login → the local agent's
/// device is online in tenant `demo`, with an inventory.
#[tokio::test]
async fn up_shows_the_local_agent_online_with_inventory() -> Result<()> {
    let up = start_up().await?;
    let console = up.printed_console_url().await?;
    ensure!(
        console == up.info.console_url,
        "stdout says Console: {console}, server.json says {}",
        up.info.console_url
    );
    ensure!(
        console.starts_with("http://localhost:"),
        "console URL {console} is not http://localhost:PORT/"
    );
    ensure!(
        up.info.gateway_url.starts_with("https://127.0.0.1:"),
        "gateway URL {} is not https",
        up.info.gateway_url
    );

    let health = up.api().call(Method::GET, "/healthz", None).await?;
    ensure!(
        health.status == StatusCode::OK && health.body == json!({"status": "ok"}),
        "GET /healthz: {health:?}"
    );

    let code = up.setup_code().await?;
    let (owner, api) = Api::bootstrap(&up).await?;

    // The setup code is single-use: with an owner in place it is refused.
    let again = up
        .api()
        .call(
            Method::POST,
            "/api/v1/setup",
            Some(&json!({"code": code, "username": "second", "password": "another long password"})),
        )
        .await?;
    ensure!(
        again.status.is_client_error(),
        "POST /api/v1/setup with a used code: expected 4xx, got {again:?}"
    );
    again.error_code()?;

    let tenants = api.tenants().await?;
    let demo = tenants
        .iter()
        .find(|t| t.name == "demo")
        .with_context(|| format!("no tenant demo in {tenants:?}"))?;
    ensure!(!demo.id.is_empty(), "tenant without id: {demo:?}");

    let device = api
        .wait_single_device_online("demo", ONLINE_TIMEOUT)
        .await?;
    let id = device.id.clone();
    // The listing's shape, as JSON: every field there, null or not (the
    // typed view reads an absent optional field as null).
    let listing = api.get_json("/api/v1/tenants/demo/devices").await?;
    let raw = listing
        .as_array()
        .and_then(|devices| devices.iter().find(|d| d["id"] == id.as_str()))
        .with_context(|| format!("device {id} not in the listing {listing}"))?;
    for field in [
        "id",
        "tenant",
        "hostname",
        "agent_version",
        "online",
        "last_seen_at",
        "enrolled_at",
        "os",
    ] {
        ensure!(
            raw.get(field).is_some(),
            "device listing lacks `{field}`: {raw}"
        );
    }
    ensure!(
        device.hostname == machine_hostname(),
        "device hostname {} is not this machine's",
        device.hostname
    );
    ensure!(
        device.last_seen_at.is_some(),
        "an online device has no last_seen_at: {device:?}"
    );

    let detail = wait_for_inventory(&api, &id).await?;
    let inventory = detail.inventory.as_ref().context("no inventory")?;
    let system = inventory.system.as_ref().context("no inventory.system")?;
    ensure!(
        system.hostname == machine_hostname(),
        "inventory hostname: {system:?}"
    );
    for (field, value) in [
        ("os_name", &system.os_name),
        ("kernel_version", &system.kernel_version),
        ("architecture", &system.architecture),
        ("agent_version", &system.agent_version),
    ] {
        ensure!(
            !value.is_empty(),
            "inventory.system.{field} is empty: {system:?}"
        );
    }
    ensure!(
        inventory.cpu.is_some(),
        "inventory has no cpu: {inventory:?}"
    );
    let memory = inventory
        .memory
        .as_ref()
        .with_context(|| format!("inventory has no memory: {inventory:?}"))?;
    ensure!(
        memory.total_bytes > 0,
        "inventory.memory.total_bytes is not positive: {memory:?}"
    );
    let disks = inventory
        .disks
        .as_ref()
        .with_context(|| format!("inventory.disks is not a list: {inventory:?}"))?;
    ensure!(!disks.is_empty(), "inventory.disks is empty: {inventory:?}");

    let tenants = api.tenants().await?;
    let demo = tenants
        .iter()
        .find(|t| t.name == "demo")
        .context("tenant demo vanished")?;
    ensure!(
        demo.device_count == 1 && demo.online_count == 1,
        "tenant demo counts: {demo:?}"
    );

    // The owner can log in again (with the next unused TOTP step).
    api.login(&owner).await?;
    Ok(())
}

async fn wait_for_inventory(api: &Api, id: &str) -> Result<DeviceView> {
    bulwark_e2e::wait_for(
        ONLINE_TIMEOUT,
        &format!("device {id} to report its inventory"),
        async || {
            let device = api.device(id).await?;
            let reported = device
                .inventory
                .as_ref()
                .is_some_and(|i| i.system.is_some());
            Ok(reported.then_some(device))
        },
    )
    .await
}

/// (b) A second agent, killed with SIGKILL, is shown offline within the
/// heartbeat timeout; the local agent stays online; a restarted agent comes
/// back as the same device.
#[tokio::test]
async fn a_killed_agent_is_shown_offline_and_comes_back() -> Result<()> {
    let up = start_up().await?;
    let (_owner, api) = Api::bootstrap(&up).await?;
    let local = api
        .wait_single_device_online("demo", ONLINE_TIMEOUT)
        .await?;
    let local_id = local.id;

    let mut extra = ExtraAgent::start(&api, &up.info.gateway_url, "demo").await?;
    ensure!(
        extra.device_id != local_id,
        "the second agent got the local agent's device id"
    );
    ensure!(
        api.devices("demo").await?.len() == 2,
        "expected two devices in demo"
    );

    extra.proc.kill9().await?;
    api.wait_device_online(&extra.device_id, false, OFFLINE_TIMEOUT)
        .await
        .context("a SIGKILLed agent must be shown offline within a few heartbeats")?;
    ensure!(
        api.device(&local_id).await?.online,
        "the local agent went offline too"
    );
    let tenants = api.tenants().await?;
    let demo = tenants
        .iter()
        .find(|t| t.name == "demo")
        .context("no tenant demo")?;
    ensure!(
        demo.device_count == 2 && demo.online_count == 1,
        "tenant demo counts: {demo:?}"
    );

    // Same state directory → same device, online again, still two devices.
    let _again = spawn_agent(extra.state_dir.path())?;
    api.wait_device_online(&extra.device_id, true, ONLINE_TIMEOUT)
        .await?;
    ensure!(
        api.devices("demo").await?.len() == 2,
        "a reconnecting agent created a new device"
    );
    Ok(())
}

/// (c) Stop and start again on the same data directory: same owner, tenant
/// and device, no duplicate, agent online again.
#[tokio::test]
async fn a_restart_keeps_owner_tenant_and_device() -> Result<()> {
    let up = start_up().await?;
    let (owner, api) = Api::bootstrap(&up).await?;
    let device = api
        .wait_single_device_online("demo", ONLINE_TIMEOUT)
        .await?;
    let tenants_before = api.tenants().await?;

    let up = up.restart().await?;
    up.printed_console_url().await?;
    ensure!(
        !up.stdout().iter().any(|line| line.contains("Setup code:")),
        "a restarted server with an owner printed a setup code again: {:?}",
        up.stdout()
    );

    let api = up.api();
    let api = api.with_token(&api.login(&owner).await?);
    let again = api
        .wait_single_device_online("demo", ONLINE_TIMEOUT)
        .await?;
    ensure!(
        again.id == device.id,
        "device id changed over a restart: {} → {}",
        device.id,
        again.id
    );
    let tenants_after = api.tenants().await?;
    let ids = |tenants: &[TenantView]| {
        tenants
            .iter()
            .map(|t| (t.id.clone(), t.name.clone()))
            .collect::<Vec<_>>()
    };
    ensure!(
        ids(&tenants_before) == ids(&tenants_after),
        "tenants changed over a restart: {tenants_before:?} → {tenants_after:?}"
    );
    let demo = tenants_after
        .iter()
        .find(|t| t.name == "demo")
        .context("no tenant demo")?;
    ensure!(
        demo.device_count == 1,
        "device count changed over a restart: {demo:?}"
    );
    Ok(())
}

/// (d) A second `bulwark up` on a data directory in use is refused; the
/// first keeps running.
#[tokio::test]
async fn a_second_up_on_the_same_data_dir_is_refused() -> Result<()> {
    let mut up = start_up().await?;
    up.printed_console_url().await?;
    let server_json = std::fs::read_to_string(up.data_dir().join("server.json"))?;

    let command = tokio::process::Command::from(up.options().command(up.data_dir())?);
    let second = run_command(command, None, Duration::from_secs(30)).await?;
    ensure!(
        !second.success(),
        "a second bulwark up on the same data dir started:\n{}",
        second.all_output()
    );
    ensure!(
        second.all_output().contains("already in use"),
        "the refusal does not say \"already in use\":\n{}",
        second.all_output()
    );

    ensure!(
        up.process().try_wait()?.is_none(),
        "the first bulwark up exited"
    );
    let health = up.api().call(Method::GET, "/healthz", None).await?;
    ensure!(
        health.status == StatusCode::OK,
        "the first server is unhealthy after the refusal: {health:?}"
    );
    ensure!(
        std::fs::read_to_string(up.data_dir().join("server.json"))? == server_json,
        "the refused second instance changed server.json"
    );
    // Ctrl-C is a clean shutdown too: exit 0, agent stopped, server.json gone.
    up.stop_with("INT").await
}

/// (e) Enrolment with a used, tampered, unknown or malformed token, or one
/// naming the wrong CA, fails with a clear message and adds no device.
#[tokio::test]
async fn enrolment_refuses_bad_tokens() -> Result<()> {
    let up = start_up().await?;
    let (_owner, api) = Api::bootstrap(&up).await?;
    api.wait_single_device_online("demo", ONLINE_TIMEOUT)
        .await?;
    let gateway = up.info.gateway_url.clone();

    // A good token enrols, and the agent prints the CA fingerprint it pinned.
    // Typed: `token`, `expires_at` and `ca_fingerprint` are strings, or the
    // reply does not decode.
    let reply = api.issue_token_reply("demo").await?;
    ensure!(
        reply.tenant == "demo",
        "token reply names tenant {}",
        reply.tenant
    );
    let token = reply.token;
    let fingerprint = reply.ca_fingerprint;
    let dir = tempfile::tempdir()?;
    let enrolled = enroll_agent(&gateway, &token, dir.path()).await?.ok()?;
    ensure!(
        hex_digits(&enrolled.all_output()).contains(&hex_digits(&fingerprint)),
        "the agent did not print the pinned CA fingerprint {fingerprint}:\n{}",
        enrolled.all_output()
    );
    let count = api.devices("demo").await?.len();

    let parsed = EnrollToken::parse(&token)
        .map_err(|e| anyhow::anyhow!("the server issued an unparsable token: {e}"))?;
    let mut tampered = parsed.clone();
    tampered.secret[0] ^= 0x01;
    let unknown = EnrollToken {
        secret: [0x42; 32],
        ca_fingerprint: parsed.ca_fingerprint,
        root_fingerprint: parsed.root_fingerprint,
    };

    let cases = [
        ("a used token", token.clone(), "token"),
        ("a tampered token", tampered.to_string(), "token"),
        ("an unknown token", unknown.to_string(), "token"),
        ("a malformed token", "bwe1.not-a-token".to_owned(), "token"),
    ];
    for (what, bad, keyword) in cases {
        let dir = tempfile::tempdir()?;
        let result = enroll_agent(&gateway, &bad, dir.path()).await?;
        ensure!(
            !result.success(),
            "enrolment with {what} succeeded:\n{}",
            result.all_output()
        );
        ensure!(
            result.stderr.to_lowercase().contains(keyword),
            "enrolment with {what} failed without a clear message (expected it to mention {keyword:?}):\n{}",
            result.all_output()
        );
    }

    // A token naming another CA: the agent must refuse the server before it
    // sends the secret, so the same token still works with the right CA.
    let fresh =
        EnrollToken::parse(&api.issue_token("demo").await?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let wrong_ca = EnrollToken {
        secret: fresh.secret,
        ca_fingerprint: [0x5A; 32],
        root_fingerprint: fresh.root_fingerprint,
    };
    let dir = tempfile::tempdir()?;
    let result = enroll_agent(&gateway, &wrong_ca.to_string(), dir.path()).await?;
    ensure!(
        !result.success(),
        "enrolment against an unpinned CA succeeded:\n{}",
        result.all_output()
    );
    let message = result.stderr.to_lowercase();
    ensure!(
        message.contains("fingerprint")
            || message.contains("certificate")
            || message.contains(" ca"),
        "the CA mismatch is not explained:\n{}",
        result.all_output()
    );

    let devices = api.devices("demo").await?;
    ensure!(
        devices.len() == count,
        "failed enrolments changed the device count from {count} to {}: {devices:?}",
        devices.len()
    );

    let dir = tempfile::tempdir()?;
    enroll_agent(&gateway, &fresh.to_string(), dir.path())
        .await?
        .ok()
        .context("the token offered to a wrong CA was used up (the agent sent its secret before checking the pin)")?;
    Ok(())
}

fn hex_digits(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_uppercase()
}

/// (f) Bad input gets a 4xx with the error shape; every non-public route
/// needs a session.
#[tokio::test]
async fn the_api_rejects_bad_input_and_requires_auth() -> Result<()> {
    let up = start_up().await?;
    let (owner, api) = Api::bootstrap(&up).await?;
    let device = api
        .wait_single_device_online("demo", ONLINE_TIMEOUT)
        .await?;
    let device_id = device.id;
    let anon = up.api();

    let login = "/api/v1/auth/login";
    let tokens = "/api/v1/tenants/demo/enrollment-tokens";
    let big = "a".repeat(100 * 1024);
    let cases: Vec<(&str, &Api, &str, String)> = vec![
        (
            "malformed JSON",
            &anon,
            login,
            r#"{"username": "owner", "#.to_owned(),
        ),
        (
            "malformed JSON (authenticated)",
            &api,
            tokens,
            "not json".to_owned(),
        ),
        (
            "an oversized body",
            &anon,
            login,
            format!(r#"{{"username":"{big}","password":"x","otp":"000000"}}"#),
        ),
        (
            "an oversized body (authenticated)",
            &api,
            tokens,
            format!(r#"{{"x":"{big}"}}"#),
        ),
        (
            "an unknown field",
            &anon,
            login,
            r#"{"username":"owner","password":"x","otp":"000000","admin":true}"#.to_owned(),
        ),
        (
            "an unknown field (authenticated)",
            &api,
            tokens,
            r#"{"ttl_minutes":5,"tenant":"other"}"#.to_owned(),
        ),
        (
            "a wrong type",
            &api,
            tokens,
            r#"{"ttl_minutes":"ten"}"#.to_owned(),
        ),
        (
            "a zero TTL",
            &api,
            tokens,
            r#"{"ttl_minutes":0}"#.to_owned(),
        ),
        (
            "a TTL above the maximum",
            &api,
            tokens,
            r#"{"ttl_minutes":100000000}"#.to_owned(),
        ),
        (
            "an unknown field in setup",
            &anon,
            "/api/v1/setup",
            r#"{"code":"x","username":"u","password":"long enough password","role":"owner"}"#
                .to_owned(),
        ),
    ];
    let mut failures = Vec::new();
    for (what, client, path, body) in &cases {
        let request = client
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .body(body.clone());
        let reply = client.send(request).await?;
        if !reply.status.is_client_error() {
            failures.push(format!(
                "POST {path} with {what}: expected 4xx, got {} {}",
                reply.status, reply.body
            ));
        } else if let Err(error) = reply.error_code() {
            failures.push(format!("POST {path} with {what}: {error}"));
        }
    }
    let reply = api
        .call(
            Method::GET,
            "/api/v1/devices/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await?;
    if reply.status != StatusCode::NOT_FOUND || reply.error_code().is_err() {
        failures.push(format!(
            "GET of an unknown device: expected 404 with the error shape, got {} {}",
            reply.status, reply.body
        ));
    }
    let reply = api.call(Method::GET, "/api/v1/no-such-route", None).await?;
    if reply.status != StatusCode::NOT_FOUND || reply.error_code().is_err() {
        failures.push(format!(
            "GET of an unknown API route: expected 404 with the error shape, got {} {}",
            reply.status, reply.body
        ));
    }

    // Wrong password, wrong code and unknown user look the same (no enumeration).
    let mut login_failures = Vec::new();
    for (what, body) in [
        (
            "a wrong password",
            json!({"username": owner.username, "password": "wrong password!!", "otp": owner.next_otp().await?}),
        ),
        (
            "a wrong one-time code",
            json!({"username": owner.username, "password": owner.password, "otp": "000000"}),
        ),
        (
            "an unknown user",
            json!({"username": "nobody", "password": owner.password, "otp": "123456"}),
        ),
    ] {
        let reply = anon.call(Method::POST, login, Some(&body)).await?;
        match reply.error_code() {
            Ok(code) if reply.status == StatusCode::UNAUTHORIZED => {
                login_failures.push((reply.status, code, reply.body.clone()))
            }
            _ => failures.push(format!(
                "login with {what}: expected 401 with the error shape, got {} {}",
                reply.status, reply.body
            )),
        }
    }
    if login_failures.windows(2).any(|pair| pair[0] != pair[1]) {
        failures.push(format!(
            "failed logins can be told apart: {login_failures:?}"
        ));
    }

    // Every route but the public ones answers 401 without a valid session.
    let mut routes: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/tenants".to_owned()),
        (Method::POST, "/api/v1/tenants".to_owned()),
        (Method::POST, tokens.to_owned()),
        (Method::GET, "/api/v1/tenants/demo/devices".to_owned()),
        (Method::GET, format!("/api/v1/devices/{device_id}")),
        (Method::POST, "/api/v1/auth/logout".to_owned()),
    ];
    let openapi = anon.call(Method::GET, "/api/v1/openapi.json", None).await?;
    if openapi.status == StatusCode::OK {
        routes.extend(openapi_routes(&openapi.body, &device_id));
    } else {
        failures.push(format!(
            "GET /api/v1/openapi.json: expected 200, got {}",
            openapi.status
        ));
    }
    routes.sort_by(|a, b| (a.1.as_str(), a.0.as_str()).cmp(&(b.1.as_str(), b.0.as_str())));
    routes.dedup();
    let public = [
        "/healthz",
        "/api/v1/openapi.json",
        "/api/v1/setup",
        "/api/v1/setup/confirm",
        "/api/v1/auth/login",
        // Passkey login: options, then password and assertion in one request.
        "/api/v1/auth/passkey/options",
        "/api/v1/auth/passkey/login",
        // Device sign-in for the CLI (RFC 8628): start, then poll.
        "/api/v1/auth/device",
        "/api/v1/auth/device/token",
        "/api/v1/invitations/redeem",
        "/api/v1/invitations/confirm",
    ];
    let bad_credentials: [(&str, Option<&str>); 4] = [
        ("no Authorization header", None),
        ("an unknown bearer token", Some("Bearer 6Zk0d2hhdGV2ZXI")),
        ("an empty bearer token", Some("Bearer ")),
        (
            "Basic credentials",
            Some("Basic b3duZXI6Y29ycmVjdCBob3JzZSBiYXR0ZXJ5IHN0YXBsZQ=="),
        ),
    ];
    for (method, path) in routes
        .iter()
        .filter(|(_, path)| !public.contains(&path.as_str()))
    {
        for (what, header) in bad_credentials {
            let mut request = anon.request(method.clone(), path);
            if let Some(header) = header {
                request = request.header("authorization", header);
            }
            if *method == Method::POST {
                request = request.json(&json!({}));
            }
            let reply = anon.send(request).await?;
            if reply.status != StatusCode::UNAUTHORIZED || reply.error_code().is_err() {
                failures.push(format!(
                    "{method} {path} with {what}: expected 401 with the error shape, got {} {}",
                    reply.status, reply.body
                ));
            }
        }
    }

    // After logout the token is dead.
    let reply = api.call(Method::POST, "/api/v1/auth/logout", None).await?;
    if reply.status != StatusCode::NO_CONTENT {
        failures.push(format!(
            "POST /api/v1/auth/logout: expected 204, got {} {}",
            reply.status, reply.body
        ));
    }
    let reply = api.call(Method::GET, "/api/v1/tenants", None).await?;
    if reply.status != StatusCode::UNAUTHORIZED {
        failures.push(format!(
            "GET /api/v1/tenants after logout: expected 401, got {} {}",
            reply.status, reply.body
        ));
    }

    ensure!(
        failures.is_empty(),
        "{} API checks failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    Ok(())
}

/// Every (method, path) in an OpenAPI document, with path parameters filled
/// in with plausible values.
fn openapi_routes(doc: &Value, device_id: &str) -> Vec<(Method, String)> {
    let mut routes = Vec::new();
    let Some(paths) = doc["paths"].as_object() else {
        return routes;
    };
    for (template, operations) in paths {
        let path = template
            .split('/')
            .map(|segment| match segment {
                "{tenant}" | "{tenant_id}" | "{name}" => "demo".to_owned(),
                s if s.starts_with('{') => device_id.to_owned(),
                s => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, _) in operations.as_object().into_iter().flatten() {
            let method = match method.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "put" => Method::PUT,
                "patch" => Method::PATCH,
                "delete" => Method::DELETE,
                _ => continue,
            };
            routes.push((method, path.clone()));
        }
    }
    routes
}
