//! Finding devices (issue 15, RFD 0016), end to end against `bulwark up`
//! with real agents under their own host names:
//!
//! - tags and a group set with `bulwark device tag|group`, each change a
//!   `device.tags_changed` / `device.group_changed` event in the tenant's
//!   log; bad names refused with 400 and a message, nothing changed;
//! - `bulwark device list` and `GET /api/v1/devices` find devices by tag
//!   (all must match), group, text (host name, OS, IP) and status, a page
//!   at a time with a total;
//! - `bulwark job run --tag` signs exactly the devices it lists, host name
//!   by host name with the count;
//! - the owned server: a database edited to put an extra device into the
//!   tag gets it into the job only as a device the CLI listed before
//!   signing; a foreign tenant's device moved into the tenant is listed
//!   too, and its agent refuses the job (`wrong_tenant`); a tag row naming
//!   a foreign device under its own tenant is never listed.

use anyhow::{Context, Result, ensure};
use bulwark_api::devices::DeviceView;
use bulwark_api::fleet::DeviceSearchView;
use bulwark_api::jobs::JobView;
use bulwark_api::tenants::TenantView;
use bulwark_e2e::{ExtraAgent, Method, OperatorSetup, StatusCode, decode_json, sql_text};
use serde_json::json;

const PASSPHRASE: &str = "e2e device search: a passphrase nobody guesses";

/// `bulwark device list ARGS --json`: the devices it printed.
async fn list(s: &OperatorSetup, args: &[&str]) -> Result<Vec<DeviceView>> {
    let mut all = vec!["device", "list"];
    all.extend_from_slice(args);
    all.push("--json");
    s.cli_as(&all).await
}

fn hostnames(devices: &[DeviceView]) -> Vec<String> {
    let mut names: Vec<String> = devices.iter().map(|d| d.hostname.clone()).collect();
    names.sort();
    names
}

/// `bulwark job run --tenant demo ARGS --command ... --yes --no-wait --json`:
/// the job and what the CLI told the operator on stderr.
async fn job_by(
    s: &OperatorSetup,
    args: &[&str],
    marker: &std::path::Path,
) -> Result<(JobView, String)> {
    let command = format!("touch '{}'", marker.display());
    let mut all = vec!["job", "run", "--tenant", "demo"];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--command",
        &command,
        "--reason",
        "e2e device search",
        "--yes",
        "--no-wait",
        "--json",
    ]);
    let out = s.cli(&all, None).await?.ok()?;
    let view: JobView = decode_json(&out.stdout).context("job run --json")?;
    Ok((view, out.stderr))
}

#[tokio::test]
async fn tags_groups_search_and_a_job_by_tag() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let gateway = s.up.info.gateway_url.clone();
    let web = ExtraAgent::start_as(Some("web-leeds"), &s.api, &gateway, "demo").await?;
    let db = ExtraAgent::start_as(Some("db-hq"), &s.api, &gateway, "demo").await?;

    s.cli(
        &[
            "device",
            "tag",
            "web-leeds",
            "--tenant",
            "demo",
            "--add",
            "Server,finance",
        ],
        None,
    )
    .await?
    .ok()?;
    s.cli(
        &[
            "device", "tag", "db-hq", "--add", "server", "--add", "kiosk",
        ],
        None,
    )
    .await?
    .ok()?;
    s.cli(&["device", "tag", "db-hq", "--remove", "kiosk"], None)
        .await?
        .ok()?;
    let grouped = s
        .cli(&["device", "group", "web-leeds", "Branch Leeds"], None)
        .await?
        .ok()?;
    ensure!(
        grouped.stdout.contains("group Branch Leeds"),
        "{}",
        grouped.stdout
    );

    // Bad names: refused by the CLI before asking, and by the API with 400.
    let refused = s
        .cli(&["device", "tag", "web-leeds", "--add", "a b"], None)
        .await?;
    ensure!(
        !refused.success() && refused.stderr.contains("tag \"a b\" holds ' '"),
        "{}",
        refused.stderr
    );
    for (method, path, body, says) in [
        (
            Method::POST,
            format!("/api/v1/devices/{}/tags", web.device_id),
            json!({"add": ["<b>"]}),
            "add: tag",
        ),
        (
            Method::POST,
            format!("/api/v1/devices/{}/tags", web.device_id),
            json!({"add": ["x"], "remove": ["X"]}),
            "both added and removed",
        ),
        (
            Method::PUT,
            format!("/api/v1/devices/{}/group", web.device_id),
            json!({"group": " HQ"}),
            "group name",
        ),
        (
            Method::PUT,
            format!("/api/v1/devices/{}/group", web.device_id),
            json!({"group": "x".repeat(65)}),
            "longer than 64",
        ),
    ] {
        let reply = s.api.call(method, &path, Some(&body)).await?;
        ensure!(
            reply.status == StatusCode::BAD_REQUEST,
            "{path} {body}: {} {}",
            reply.status,
            reply.body
        );
        ensure!(reply.error_code()? == "bad_request", "{}", reply.body);
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        ensure!(message.contains(says), "{path} {body}: {message}");
    }
    let device = s.api.device(&web.device_id).await?;
    ensure!(
        device.tags == ["finance", "server"] && device.group.as_deref() == Some("Branch Leeds"),
        "bad input changed the device: {device:?}"
    );

    // The tenant's log holds each change.
    let audit = s.api.audit("demo").await?;
    let tagged = audit
        .iter()
        .filter(|e| e.action == "device.tags_changed")
        .count();
    let grouped = audit
        .iter()
        .filter(|e| e.action == "device.group_changed")
        .count();
    ensure!(
        tagged == 3 && grouped == 1,
        "tags {tagged}, groups {grouped}: {audit:?}"
    );

    // Searching.
    ensure!(hostnames(&list(&s, &["--tag", "server"]).await?) == ["db-hq", "web-leeds"]);
    ensure!(hostnames(&list(&s, &["--tag", "server", "--tag", "FINANCE"]).await?) == ["web-leeds"]);
    ensure!(hostnames(&list(&s, &["--group", "branch leeds"]).await?) == ["web-leeds"]);
    ensure!(hostnames(&list(&s, &["--search", "WEB-LE"]).await?) == ["web-leeds"]);
    let everything = list(&s, &["--tenant", "demo"]).await?;
    ensure!(everything.len() == 3, "{everything:?}");
    ensure!(list(&s, &["--online"]).await?.len() == 3);
    ensure!(list(&s, &["--offline"]).await?.is_empty());
    if let Some(ip) = s
        .api
        .device(&db.device_id)
        .await?
        .inventory
        .and_then(|i| i.network)
        .and_then(|n| {
            n.into_iter()
                .flat_map(|i| i.addresses)
                .find(|a| !a.starts_with("127."))
        })
    {
        let ip = ip.split('/').next().unwrap_or_default().to_owned();
        ensure!(
            !list(&s, &["--search", &ip]).await?.is_empty(),
            "no device found by {ip}"
        );
    }
    let table = s
        .cli(&["device", "list", "--tag", "server"], None)
        .await?
        .ok()?;
    ensure!(
        table.stdout.contains("Branch Leeds") && table.stdout.ends_with("2 devices\n"),
        "{}",
        table.stdout
    );

    // Paging over the API: a total, a cursor, no device twice.
    let first: DeviceSearchView = s.api.get_as("/api/v1/devices?tag=server&limit=1").await?;
    ensure!(first.total == 2 && first.devices.len() == 1, "{first:?}");
    let cursor = first.next_cursor.clone().context("a next page")?;
    let second: DeviceSearchView = s
        .api
        .get_as(&format!(
            "/api/v1/devices?tag=server&limit=1&cursor={cursor}"
        ))
        .await?;
    ensure!(
        second.total == 2 && second.next_cursor.is_none(),
        "{second:?}"
    );
    ensure!(second.devices[0].id != first.devices[0].id);
    for bad in [
        "?limit=0",
        "?status=up",
        "?tag=a%20b",
        "?cursor=zz",
        "?colour=red",
        "?tenant=nowhere",
    ] {
        let reply = s
            .api
            .call(Method::GET, &format!("/api/v1/devices{bad}"), None)
            .await?;
        let want = if bad.contains("tenant") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        ensure!(
            reply.status == want,
            "{bad}: {} {}",
            reply.status,
            reply.body
        );
        reply.error_code()?;
    }

    // A job by tag names exactly the devices listed.
    let marker = s.work.path().join("by-tag.marker");
    let (view, told) = job_by(&s, &["--tag", "finance"], &marker).await?;
    ensure!(
        view.targets.len() == 1 && view.targets[0].device_id == web.device_id,
        "{view:?}"
    );
    ensure!(
        told.contains("1 device") && told.contains("web-leeds"),
        "{told}"
    );
    let target = s.wait_final(&view.id, &web.device_id).await?;
    ensure!(target.state == "succeeded" && marker.exists(), "{target:?}");
    let (view, told) = job_by(
        &s,
        &["--group", "Branch Leeds", "--tag", "server"],
        &s.work.path().join("g.marker"),
    )
    .await?;
    ensure!(
        view.targets.len() == 1 && told.contains("group \"Branch Leeds\""),
        "{told}"
    );
    Ok(())
}

#[tokio::test]
async fn a_tag_edited_in_the_database_gets_no_unseen_device_into_a_job() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let gateway = s.up.info.gateway_url.clone();
    let _: TenantView = s
        .api
        .post_as("/api/v1/tenants", &json!({ "name": "other" }))
        .await?;
    s.cli(&["tenant", "init", "--tenant", "other"], None)
        .await?
        .ok()?;
    let chosen = ExtraAgent::start_as(Some("ws-chosen"), &s.api, &gateway, "demo").await?;
    let extra = ExtraAgent::start_as(Some("ws-extra"), &s.api, &gateway, "demo").await?;
    let theirs = ExtraAgent::start_as(Some("pos-other"), &s.api, &gateway, "other").await?;
    s.cli(&["device", "tag", "ws-chosen", "--add", "finance"], None)
        .await?
        .ok()?;
    let demo = s.sql("SELECT id FROM tenants WHERE name = 'demo'")?;

    // 1. A tag row naming the foreign device as demo's (the attacker is not
    //    bound by foreign keys): the search joins the device's own tenant,
    //    so the search for demo never lists it and the job never names it.
    s.sql(&format!(
        "INSERT INTO device_tags (device_id, tenant_id, tag) VALUES ({}, {}, 'finance')",
        sql_text(&theirs.device_id),
        sql_text(&demo)
    ))?;
    let marker = s.work.path().join("one.marker");
    let (view, told) = job_by(&s, &["--tag", "finance"], &marker).await?;
    ensure!(
        view.targets.len() == 1 && view.targets[0].device_id == chosen.device_id,
        "a device the operator did not choose is in the job: {view:?}"
    );
    ensure!(
        told.contains("1 device") && !told.contains("pos-other"),
        "{told}"
    );

    // 2. An extra device of the tenant put into the tag: it is in the job
    //    only because the CLI listed it, by name, in the count it printed.
    s.sql(&format!(
        "INSERT INTO device_tags (device_id, tenant_id, tag) VALUES ({}, {}, 'finance')",
        sql_text(&extra.device_id),
        sql_text(&demo)
    ))?;
    let (view, told) = job_by(&s, &["--tag", "finance"], &s.work.path().join("two.marker")).await?;
    ensure!(told.contains("2 devices"), "{told}");
    for target in &view.targets {
        ensure!(
            told.contains(&target.hostname),
            "the job names {} which the CLI never listed:\n{told}",
            target.hostname
        );
    }
    ensure!(view.targets.len() == 2, "{view:?}");

    // 3. The foreign device moved into demo by the database: listed (the
    //    operator sees pos-other), signed for tenant demo, and its agent,
    //    pinned to its own tenant, refuses it.
    s.sql(&format!(
        "UPDATE devices SET tenant_id = {} WHERE id = {}",
        sql_text(&demo),
        sql_text(&theirs.device_id)
    ))?;
    let marker = s.work.path().join("three.marker");
    let (view, told) = job_by(&s, &["--tag", "finance"], &marker).await?;
    ensure!(
        told.contains("3 devices") && told.contains("pos-other"),
        "{told}"
    );
    let target = s.wait_final(&view.id, &theirs.device_id).await?;
    ensure!(
        target.state == "refused" && target.refusal_code.as_deref() == Some("wrong_tenant"),
        "the foreign agent did not refuse: {target:?}"
    );
    Ok(())
}
