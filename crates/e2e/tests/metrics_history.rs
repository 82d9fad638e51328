//! Metrics history with real parts (RFD 0014): `bulwark up`, a real agent
//! run with `--check-values-secs 1` in the demo tenant whose signed policy
//! holds cpu, memory and disk checks (a warning threshold no value reaches,
//! so the counts below are exact) and a port check on a closed port,
//! and a second tenant (`acme`) with an agent and no policy.
//!
//! 1. Samples arrive: the device's series over the API hold cpu and
//!    memory points, at most one per 10 s per metric.
//! 2. The device page in headless Chromium draws the charts (screenshot);
//!    the acme device's page says there is nothing to chart and how to
//!    add a check.
//! 3. The dashboard's counts are right for both tenants (devices, online,
//!    critical alerts and failing checks from the closed port), in the API
//!    and on the page (screenshot).
//! 4. The tenant page draws the tenant-wide charts.
//!
//! (That an operator granted one tenant sees no row of another is proven
//! for every role in `server/tests/authz_matrix.rs`.)

#[path = "support/browser.rs"]
mod browser;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bulwark_api::metrics::{DashboardView, DeviceMetricsView};
use bulwark_e2e::{ExtraAgent, OperatorSetup, UpOptions, wait_for};

const PASSPHRASE: &str = "e2e metrics: a long passphrase nobody guesses";

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn samples_arrive_charts_render_and_the_dashboard_counts_per_tenant() -> Result<()> {
    let s = OperatorSetup::start_with(PASSPHRASE, UpOptions::default().heartbeat_secs(1)).await?;
    s.cli(&["tenant", "create", "acme"], None).await?.ok()?;
    s.cli(&["tenant", "init", "--tenant", "acme"], None)
        .await?
        .ok()?;
    let gateway = s.up.info.gateway_url.clone();
    let agent = ExtraAgent::start_with(
        None,
        &s.api,
        &gateway,
        "demo",
        &["--check-values-secs", "1"],
    )
    .await?;
    let other = ExtraAgent::start(&s.api, &gateway, "acme").await?;
    let device = agent.device_id.clone();

    let closed = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let sections = format!(
        "[[checks]]\nname = \"cpu\"\nkind = \"cpu\"\ninterval_secs = 5\nwarning = 101\nfor_secs = 5\n\n\
         [[checks]]\nname = \"memory\"\nkind = \"memory\"\ninterval_secs = 5\nwarning = 101\nfor_secs = 5\n\n\
         [[checks]]\nname = \"disk-root\"\nkind = \"disk\"\nmount = \"/\"\ninterval_secs = 5\nwarning = 101\nfor_secs = 5\n\n\
         [[checks]]\nname = \"app-port\"\nkind = \"tcp-port\"\nhost = \"127.0.0.1\"\nport = {closed}\ninterval_secs = 5\nfor_secs = 5\n"
    );
    s.sign_policy_sections(&["checks"], &sections, "policy-metrics.toml")
        .await?;

    // 1. Samples arrive (one per 10 s slot at most).
    let view: DeviceMetricsView = wait_for(
        Duration::from_secs(90),
        "cpu and memory samples of the charted device",
        async || {
            let from = now_secs() - 3600;
            let view: DeviceMetricsView = s
                .api
                .get_as(&format!("/api/v1/devices/{device}/metrics?from={from}"))
                .await?;
            let points = |name: &str| {
                view.series
                    .iter()
                    .find(|x| x.metric == name)
                    .map_or(0, |x| x.points.len())
            };
            Ok(
                (points("cpu") >= 3 && points("memory") >= 3 && points("disk-root") >= 3)
                    .then_some(view),
            )
        },
    )
    .await?;
    ensure!(view.bucket_secs == 10, "{view:?}");
    for series in &view.series {
        for pair in series.points.windows(2) {
            ensure!(
                pair[1].at >= pair[0].at + 10,
                "two samples in one 10 s slot: {series:?}"
            );
        }
        if series.metric != "app-port" {
            ensure!(series.points.iter().all(|p| p.max <= 100), "{series:?}");
        }
    }
    let disk = view
        .series
        .iter()
        .find(|x| x.metric == "disk-root")
        .context("disk series")?;
    ensure!(disk.label == "/", "{disk:?}");

    // 3. The dashboard's counts (the API first: alerts take a few seconds).
    let dashboard: DashboardView = wait_for(
        Duration::from_secs(60),
        "the closed port's alerts on the dashboard",
        async || {
            let d: DashboardView = s.api.get_as("/api/v1/dashboard").await?;
            let demo = d.tenants.iter().find(|r| r.tenant == "demo");
            Ok(demo
                .is_some_and(|r| r.alerts.critical >= 2 && r.failing_checks >= 2)
                .then_some(d))
        },
    )
    .await?;
    let row = |name: &str| dashboard.tenants.iter().find(|r| r.tenant == name).cloned();
    let demo = row("demo").context("demo row")?;
    let acme = row("acme").context("acme row")?;
    // Demo: the local agent of `bulwark up` and ours, both running the policy.
    ensure!(
        (
            demo.devices,
            demo.online,
            demo.alerts.critical,
            demo.failing_checks
        ) == (2, 2, 2, 2),
        "{demo:?}"
    );
    ensure!(
        (
            acme.devices,
            acme.online,
            acme.alerts.critical,
            acme.failing_checks
        ) == (1, 1, 0, 0),
        "{acme:?}"
    );

    let browser = browser::Browser::plain(1000).await?;
    let result = pages(&browser, &s, &device, &other.device_id).await;
    browser.close().await?;
    result
}

async fn pages(
    browser: &browser::Browser,
    s: &OperatorSetup,
    device: &str,
    other: &str,
) -> Result<()> {
    let base = s.up.base_url();
    let shots = std::env::var("BULWARK_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    browser.sign_in(&base, &s.owner).await?;

    // 2. The device page's charts.
    browser
        .goto(&format!("{base}/devices/{device}?range=1h"))
        .await?;
    let charts = browser.text("#charts").await?;
    for title in [
        "CPU (cpu)",
        "Memory (memory)",
        "Disk / (disk-root)",
        "Check latency 127.0.0.1:",
    ] {
        ensure!(charts.contains(title), "no chart {title:?}: {charts}");
    }
    let drawn = browser
        .find("#charts svg.line-chart polyline.chart-avg")
        .await?;
    let points = drawn.attr("points").await?.unwrap_or_default();
    ensure!(
        points.split(' ').count() >= 3,
        "the CPU line has too few points: {points}"
    );
    browser
        .screenshot(&shots.join("metrics-device.png"))
        .await?;
    eprintln!(
        "[metrics] screenshot: {}",
        shots.join("metrics-device.png").display()
    );
    browser.goto(&format!("{base}/devices/{other}")).await?;
    let nothing = browser.text("#nothing-to-chart").await?;
    ensure!(
        nothing.contains("bulwark policy sign --tenant acme"),
        "{nothing}"
    );

    // 3. The dashboard page: one row per tenant, its counts.
    browser.goto(&format!("{base}/dashboard")).await?;
    let demo = browser.text("tr[data-tenant=\"demo\"]").await?;
    let acme = browser.text("tr[data-tenant=\"acme\"]").await?;
    ensure!(
        demo.split_whitespace().collect::<Vec<_>>()[..4] == ["demo", "2", "2", "2"],
        "{demo}"
    );
    ensure!(
        acme.split_whitespace().collect::<Vec<_>>() == ["acme", "1", "1", "0", "0", "0", "0"],
        "{acme}"
    );
    browser
        .find("#dashboard-chart svg rect.sla-critical")
        .await?;
    browser
        .screenshot(&shots.join("metrics-dashboard.png"))
        .await?;

    // 4. The tenant page's charts across devices.
    browser
        .goto(&format!("{base}/tenants/demo?range=1h"))
        .await?;
    let tenant = browser.text("#tenant-charts").await?;
    ensure!(tenant.contains("CPU (cpu), all devices"), "{tenant}");
    browser
        .find("#tenant-charts svg polyline.chart-avg")
        .await?;
    browser
        .screenshot(&shots.join("metrics-tenant.png"))
        .await?;
    Ok(())
}
