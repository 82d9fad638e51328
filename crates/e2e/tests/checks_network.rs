//! HTTP, TLS-expiry and script checks with real parts (RFD 0009): `bulwark
//! up` with its agent, the tenant's policy signed with the CLI, a plain
//! HTTP server and a TLS server the test runs on loopback (certificates
//! made with rcgen, the TLS one expiring in three days), and a script from
//! the server's library whose hash the same policy allow-lists.
//!
//! 1. HTTP: ok while the server answers 200; a critical alert when it
//!    answers 500; resolved at 200; critical again once it is stopped.
//! 2. TLS: the three-day certificate is a warning (days left).
//! 3. Script: exit 0 is ok, exit 2 a critical alert with the script's
//!    first line. (And a ping of loopback is ok; four error lines appended
//!    to a log make a log-pattern check critical.)
//! 4. The attacker with the database rewrites the script's content in the
//!    library (and then its hash column too). A fresh agent asks for the
//!    script: it refuses the content, runs nothing (the tampered script
//!    would leave a marker), and its check is critical saying why.
//! 5. The device page in headless Chromium lists the new kinds' states
//!    (`docs/screenshots/device-network-checks.png`).

#[path = "support/browser.rs"]
mod browser;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, ensure};
use bulwark_api::alerts::AlertView;
use bulwark_api::checks::{CheckStateView, CheckView, DeviceChecksView};
use bulwark_e2e::{ExtraAgent, OperatorSetup, UpOptions, sql_text, wait_for};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const PASSPHRASE: &str = "e2e network checks: a long passphrase nobody guesses";
const WAIT: Duration = Duration::from_secs(60);

async fn check_state(s: &OperatorSetup, device: &str, name: &str) -> Result<Option<CheckView>> {
    let view: DeviceChecksView = s
        .api
        .get_as(&format!("/api/v1/devices/{device}/checks"))
        .await?;
    Ok(view.checks.into_iter().find(|c| c.name == name))
}

/// Waits until `name` on `device` is in `state` with a summary holding `text`.
async fn wait_state(
    s: &OperatorSetup,
    device: &str,
    name: &str,
    state: CheckStateView,
    text: &str,
) -> Result<CheckView> {
    wait_for(WAIT, &format!("{name} {state:?} ({text})"), async || {
        Ok(check_state(s, device, name)
            .await?
            .filter(|c| c.state == state && c.summary.contains(text)))
    })
    .await
}

/// An open alert of `severity` for `check` on `device`, beyond `seen` of them.
async fn wait_alert(
    s: &OperatorSetup,
    device: &str,
    check: &str,
    severity: &str,
    seen: usize,
) -> Result<AlertView> {
    wait_for(
        WAIT,
        &format!("a {severity} alert for {check}"),
        async || {
            let alerts = s.check_alerts(device, check).await?;
            Ok((alerts.len() > seen)
                .then(|| {
                    alerts
                        .into_iter()
                        .find(|a| a.state == "open" && a.severity == severity)
                })
                .flatten())
        },
    )
    .await
}

/// A plain HTTP server answering every request with the status in `status`.
async fn http_server(status: Arc<AtomicU16>) -> Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let status = status.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let body = "a body nobody reads\n".repeat(1000);
                let head = format!(
                    "HTTP/1.1 {status} Test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok((port, task))
}

/// A TLS server for `localhost` whose certificate expires in `days` days,
/// issued by a CA written to `ca_file`.
async fn tls_server(days: u64, ca_file: &std::path::Path) -> Result<u16> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + (now - Duration::from_secs(86_400));
    params.not_after = epoch + (now + Duration::from_secs(days * 86_400 + 3600));
    let leaf = params.signed_by(&key, &ca, &ca_key)?;
    std::fs::write(ca_file, ca.pem())?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    Ok(port)
}

#[tokio::test]
async fn http_tls_and_script_checks_and_a_tampered_script_is_refused() -> Result<()> {
    let s = OperatorSetup::start_with(PASSPHRASE, UpOptions::default().heartbeat_secs(1)).await?;
    let device = s.local.clone();

    let status = Arc::new(AtomicU16::new(200));
    let (http_port, http_task) = http_server(status.clone()).await?;
    let ca_file = s.work.path().join("internal-ca.pem");
    let tls_port = tls_server(3, &ca_file).await?;

    // The script reads its exit code from a file the test writes; a
    // tampered copy would leave a marker.
    let code_file = s.work.path().join("script-exit-code");
    std::fs::write(&code_file, "0")?;
    let content = format!(
        "#!/bin/sh\ncode=$(cat '{}')\necho \"backup age check says $code\"\nexit \"$code\"\n",
        code_file.display()
    );
    let hash = hex::encode(Sha256::digest(&content));
    let script_path = s.work.path().join("backup-age.sh");
    std::fs::write(&script_path, &content)?;
    s.cli(
        &[
            "script",
            "add",
            "backup-age",
            "--file",
            &script_path.display().to_string(),
            "--interpreter",
            "sh",
            "--description",
            "Exit code from a file",
        ],
        None,
    )
    .await?
    .ok()?;

    let app_log = s.work.path().join("app.log");
    std::fs::write(&app_log, "ERROR before the check: not counted\n")?;
    let sections = format!(
        "[[checks]]\nname = \"web\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{http_port}/health\"\ninterval_secs = 5\ntimeout_secs = 3\n\n\
         [[checks]]\nname = \"cert\"\nkind = \"tls-expiry\"\nhost = \"127.0.0.1\"\nport = {tls_port}\nserver_name = \"localhost\"\nca_file = \"{}\"\nwarning = 14\ncritical = 1\ninterval_secs = 5\ntimeout_secs = 3\n\n\
         [[checks]]\nname = \"loopback\"\nkind = \"ping\"\nhost = \"127.0.0.1\"\ncount = 3\nwarning = 34\ncritical = 100\ninterval_secs = 5\ntimeout_secs = 4\n\n\
         [[checks]]\nname = \"app-errors\"\nkind = \"log-pattern\"\npath = \"{}\"\npattern = \"ERROR|FATAL\"\ncritical = 3\ninterval_secs = 5\n\n\
         [[checks]]\nname = \"backup-age\"\nkind = \"script\"\nsha256 = \"{hash}\"\ninterpreter = \"sh\"\ninterval_secs = 5\ntimeout_secs = 5\n",
        ca_file.display(),
        app_log.display()
    );
    let toml = s
        .cli(&["policy", "show", "--tenant", "demo", "--toml"], None)
        .await?
        .ok()?
        .stdout;
    let toml: String = toml
        .lines()
        .map(|line| {
            if line.starts_with("allowed_scripts") {
                format!("allowed_scripts = [\"{hash}\"]\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let path = s.work.path().join("policy-network-checks.toml");
    std::fs::write(
        &path,
        bulwark_e2e::replace_policy_sections(&toml, &["checks"], &sections),
    )?;
    s.cli(
        &[
            "policy",
            "sign",
            "--tenant",
            "demo",
            "--file",
            &path.display().to_string(),
        ],
        None,
    )
    .await?
    .ok()?;

    // 1. HTTP: ok, then critical at 500, ok again, critical when stopped.
    let web = wait_state(&s, &device, "web", CheckStateView::Ok, "status 200").await?;
    ensure!(web.value.is_some(), "no latency: {web:?}");
    status.store(500, Ordering::SeqCst);
    let alert = wait_alert(&s, &device, "web", "critical", 0).await?;
    ensure!(alert.detail.contains("status 500"), "{alert:?}");
    status.store(200, Ordering::SeqCst);
    wait_state(&s, &device, "web", CheckStateView::Ok, "status 200").await?;
    wait_for(WAIT, "the web alert to resolve", async || {
        Ok(s.check_alerts(&device, "web")
            .await?
            .into_iter()
            .find(|a| a.state == "resolved"))
    })
    .await?;
    http_task.abort();
    let _ = http_task.await;
    let stopped = wait_alert(&s, &device, "web", "critical", 1).await?;
    ensure!(
        stopped.detail.contains(&format!("127.0.0.1:{http_port}")),
        "{stopped:?}"
    );
    eprintln!("[checks_network] web stopped: {}", stopped.detail);

    // 2. TLS: three days left is a warning.
    let cert = wait_state(
        &s,
        &device,
        "cert",
        CheckStateView::Warning,
        "expires in 3 days",
    )
    .await?;
    ensure!(cert.value == Some(3), "{cert:?}");
    wait_alert(&s, &device, "cert", "warning", 0).await?;

    // Ping: loopback answers every echo (the agent is root: a raw socket
    // where ping_group_range leaves it out).
    wait_state(
        &s,
        &device,
        "loopback",
        CheckStateView::Ok,
        "3 of 3 replies",
    )
    .await?;

    // Log pattern: new matching lines per interval.
    wait_state(&s, &device, "app-errors", CheckStateView::Ok, "app.log").await?;
    {
        use std::io::Write as _;
        let mut log = std::fs::OpenOptions::new().append(true).open(&app_log)?;
        log.write_all(b"ok\nERROR one\nFATAL two\nERROR three\nERROR four\n")?;
    }
    let errors = wait_state(
        &s,
        &device,
        "app-errors",
        CheckStateView::Critical,
        "4 new matching lines",
    )
    .await?;
    ensure!(errors.value == Some(4), "{errors:?}");

    // 3. Script: exit 0 ok, exit 2 critical with its first line.
    wait_state(
        &s,
        &device,
        "backup-age",
        CheckStateView::Ok,
        "backup age check says 0",
    )
    .await?;
    std::fs::write(&code_file, "2")?;
    let alert = wait_alert(&s, &device, "backup-age", "critical", 0).await?;
    ensure!(
        alert.detail.contains("backup age check says 2"),
        "{alert:?}"
    );

    // 4. The library's copy rewritten in the database: a fresh agent refuses it.
    let marker = s.work.path().join("tampered-script-ran");
    let tampered = format!("#!/bin/sh\ntouch '{}'\nexit 0\n", marker.display());
    s.sql(&format!(
        "UPDATE script_versions SET content = {} WHERE sha256 = {}",
        sql_text(&tampered),
        sql_text(&hash)
    ))?;
    let fresh =
        ExtraAgent::start_as(Some("fresh-host"), &s.api, &s.up.info.gateway_url, "demo").await?;
    let refused = wait_state(
        &s,
        &fresh.device_id,
        "backup-age",
        CheckStateView::Critical,
        "refused: the server sent a script whose sha256",
    )
    .await?;
    eprintln!("[checks_network] tampered content: {}", refused.summary);
    wait_alert(&s, &fresh.device_id, "backup-age", "critical", 0).await?;
    // The hash column rewritten too: the server has nothing with the
    // policy's hash, and the fresh agent still runs nothing.
    s.sql(&format!(
        "UPDATE script_versions SET sha256 = {} WHERE sha256 = {}",
        sql_text(&hex::encode(Sha256::digest(&tampered))),
        sql_text(&hash)
    ))?;
    wait_state(
        &s,
        &fresh.device_id,
        "backup-age",
        CheckStateView::Critical,
        "the server has no script with sha256",
    )
    .await?;
    ensure!(!marker.exists(), "the tampered script ran");
    // The agent that verified the script before keeps running its copy.
    std::fs::write(&code_file, "0")?;
    wait_state(
        &s,
        &device,
        "backup-age",
        CheckStateView::Ok,
        "backup age check says 0",
    )
    .await?;
    ensure!(!marker.exists(), "the tampered script ran");

    // 5. The device page shows the new kinds like the others.
    let browser = browser::Browser::plain(1100).await?;
    let result = device_page(&browser, &s, &device).await;
    browser.close().await?;
    result
}

async fn device_page(browser: &browser::Browser, s: &OperatorSetup, device: &str) -> Result<()> {
    let base = s.up.base_url();
    browser.sign_in(&base, &s.owner).await?;
    browser.goto(&format!("{base}/devices/{device}")).await?;
    let card = browser.text("#checks").await?;
    for name in ["web", "cert", "loopback", "app-errors", "backup-age"] {
        ensure!(
            card.contains(name),
            "{name} is not on the device page: {card}"
        );
    }
    ensure!(card.contains("expires in 3 days"), "{card}");
    let shot = bulwark_e2e::workspace_root().join("docs/screenshots/device-network-checks.png");
    browser.screenshot(&shot).await?;
    eprintln!("[checks_network] screenshot: {}", shot.display());
    Ok(())
}
