//! The vulnerability database with the real binaries: OSV records written
//! here in the real schema, imported from a folder and from a zip through
//! `bulwark vulndb import` against a real server, then `status` and
//! `check`; a re-import while a reader keeps asking (never an empty
//! answer); a malformed file named and nothing changed; a non-owner
//! refused.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, ensure};
use bulwark_api::operators::InvitationCreated;
use bulwark_api::setup::SetupResponse;
use bulwark_api::vulndb::{VulnDbCheckView, VulnDbStatusView};
use bulwark_e2e::{Api, Owner};
use bulwark_e2e::{OperatorSetup, operator_login};
use serde_json::{Value, json};

const PASSPHRASE: &str = "vulndb test passphrase";

fn dsa_openssl() -> Value {
    json!({
      "schema_version": "1.6.0",
      "id": "DSA-5764-1",
      "summary": "openssl - security update",
      "aliases": ["CVE-2024-5535", "CVE-2024-6119"],
      "modified": "2024-09-04T05:12:25Z",
      "published": "2024-09-03T00:00:00Z",
      "affected": [{
        "package": {"ecosystem": "Debian:12", "name": "openssl", "purl": "pkg:deb/debian/openssl?arch=source"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.15-1~deb12u1"}]}],
        "database_specific": {"source": "https://salsa.debian.org/security-tracker-team/security-tracker/-/raw/master/data/DSA/list"}
      }]
    })
}

fn debian_cve(id: &str, package: &str, fixed: Option<&str>, vector: &str) -> Value {
    let mut events = vec![json!({"introduced": "0"})];
    if let Some(fixed) = fixed {
        events.push(json!({"fixed": fixed}));
    }
    json!({
      "id": id,
      "modified": "2024-10-01T00:00:00Z",
      "details": format!("A flaw in {package}.\nMore details."),
      "severity": [{"type": "CVSS_V3", "score": vector}],
      "affected": [{
        "package": {"ecosystem": "Debian:12", "name": package},
        "ranges": [{"type": "ECOSYSTEM", "events": events}]
      }]
    })
}

fn the_first_set() -> Vec<Value> {
    vec![
        dsa_openssl(),
        debian_cve(
            "DEBIAN-CVE-2024-9143",
            "openssl",
            Some("3.0.15-1~deb12u1"),
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:H/A:H",
        ),
        // No fix yet: stays open whatever the version.
        debian_cve(
            "DEBIAN-CVE-2025-0001",
            "openssl",
            None,
            "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N",
        ),
        json!({
          "id": "USN-7000-1", "modified": "2024-09-01T00:00:00Z", "summary": "curl vulnerabilities",
          "severity": [{"type": "Ubuntu", "score": "medium"}],
          "affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "curl"},
                        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "7.81.0-1ubuntu1.18"}]}]}]
        }),
        json!({"id": "GHSA-xxxx", "modified": "2024-01-01T00:00:00Z",
               "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"}, "versions": ["2.0"]}]}),
        json!({"id": "DSA-1-1", "modified": "2024-01-01T00:00:00Z", "withdrawn": "2024-02-01T00:00:00Z",
               "affected": [{"package": {"ecosystem": "Debian:12", "name": "x"}, "versions": ["1.0"]}]}),
    ]
}

/// A changed set: the DSA stays (so every moment has an answer for
/// openssl), its fix moves, and `n` generated advisories make the import
/// long enough for a reader to ask during it.
fn the_second_set(n: usize) -> Vec<Value> {
    let mut dsa = dsa_openssl();
    dsa["affected"][0]["ranges"][0]["events"][1]["fixed"] = json!("3.0.16-1~deb12u1");
    let mut set = vec![dsa];
    for i in 0..n {
        set.push(debian_cve(
            &format!("DEBIAN-CVE-2099-{i:05}"),
            &format!("pkg{}", i % 100),
            Some(&format!("1:{}.0-1", i % 7)),
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N",
        ));
    }
    set
}

fn write_folder(dir: &Path, records: &[Value]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for r in records {
        let id = r["id"].as_str().unwrap_or("x");
        std::fs::write(
            dir.join(format!("{id}.json")),
            serde_json::to_vec_pretty(r)?,
        )?;
    }
    Ok(())
}

fn write_zip(path: &Path, records: &[Value]) -> Result<()> {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path)?);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for r in records {
        zip.start_file(format!("{}.json", r["id"].as_str().unwrap_or("x")), options)?;
        zip.write_all(&serde_json::to_vec(r)?)?;
    }
    zip.finish()?;
    Ok(())
}

async fn check(api: &Api, version: &str) -> Result<VulnDbCheckView> {
    api.get_as(&format!(
        "/api/v1/vulndb/check?ecosystem=Debian%3A12&package=openssl&version={version}"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn osv_imports_switch_atomically_and_only_owners_import() -> Result<()> {
    let s = OperatorSetup::start(PASSPHRASE).await?;
    let work = s.work.path();

    // 1. A folder, through the CLI.
    let folder = work.join("osv");
    write_folder(&folder, &the_first_set())?;
    let out = s
        .cli(&["vulndb", "import", &folder.display().to_string()], None)
        .await?
        .ok()?;
    ensure!(out.stdout.contains("Records read:     6"), "{}", out.stdout);
    ensure!(out.stdout.contains("Imported:         4"), "{}", out.stdout);
    ensure!(out.stdout.contains("withdrawn: 1"), "{}", out.stdout);
    ensure!(
        out.stdout.contains("no Debian or Ubuntu package: 1"),
        "{}",
        out.stdout
    );
    let status: VulnDbStatusView = s.cli_as(&["vulndb", "status", "--json"]).await?;
    let first = status.current.clone().expect("a current generation");
    ensure!(first.records == 4, "{status:?}");
    ensure!(status.ecosystems.len() == 2, "{status:?}");
    let text = s.cli(&["vulndb", "status"], None).await?.ok()?.stdout;
    ensure!(
        text.contains("Debian:12") && text.contains("Ubuntu:22.04:LTS"),
        "{text}"
    );

    // `check`: three advisories below the fix, ranked by score; one (no fix) at it.
    let args = [
        "vulndb",
        "check",
        "--ecosystem",
        "Debian:12",
        "--package",
        "openssl",
        "--version",
        "3.0.11-1~deb12u2",
    ];
    let found: VulnDbCheckView = s.cli_as(&[&args[..], &["--json"]].concat()).await?;
    let ids: Vec<&str> = found.findings.iter().map(|f| f.advisory.as_str()).collect();
    ensure!(
        ids == ["DEBIAN-CVE-2024-9143", "DEBIAN-CVE-2025-0001", "DSA-5764-1"],
        "{ids:?}"
    );
    ensure!(
        found.findings[0].severity.as_ref().and_then(|s| s.score) == Some(9.4),
        "{found:?}"
    );
    ensure!(found.findings[0].fixed_version.as_deref() == Some("3.0.15-1~deb12u1"));
    ensure!(found.findings[1].fixed_version.is_none());
    let text = s.cli(&args, None).await?.ok()?.stdout;
    ensure!(
        text.contains("9.4 critical") && text.contains("3.0.15-1~deb12u1"),
        "{text}"
    );
    let at_fix = check(&s.api, "3.0.15-1~deb12u1").await?;
    ensure!(at_fix.findings.len() == 1, "{at_fix:?}");

    // 2. A zip with a changed, larger set, while a reader keeps asking.
    let zip_path = work.join("all.zip");
    let second = the_second_set(3000);
    write_zip(&zip_path, &second)?;
    let reader_api = s.api.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader_stop = stop.clone();
    let reader = tokio::spawn(async move {
        let mut answers = Vec::new();
        while !reader_stop.load(std::sync::atomic::Ordering::Relaxed) {
            let c = check(&reader_api, "3.0.11-1~deb12u2").await?;
            answers.push((c.generation, c.findings.len()));
        }
        anyhow::Ok(answers)
    });
    let started = Instant::now();
    let out = s
        .cli(&["vulndb", "import", &zip_path.display().to_string()], None)
        .await?
        .ok()?;
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = reader.await??;
    ensure!(
        out.stdout.contains("Imported:         3001"),
        "{}",
        out.stdout
    );
    eprintln!(
        "imported {} records from a zip in {:.2} s ({:.0} records/s, CLI and server on this machine); {} reads during it",
        second.len(),
        took.as_secs_f64(),
        second.len() as f64 / took.as_secs_f64(),
        answers.len()
    );
    let status: VulnDbStatusView = s.api.get_as("/api/v1/vulndb").await?;
    let second_gen = status.current.clone().expect("current");
    ensure!(second_gen.records == 3001, "{status:?}");
    ensure!(status.previous.as_ref().map(|p| p.generation) == Some(first.generation));
    // Every read saw a whole set: the old one (3 findings) or the new (1).
    ensure!(!answers.is_empty());
    for (generation, findings) in &answers {
        let whole = (*generation == Some(first.generation) && *findings == 3)
            || (*generation == Some(second_gen.generation) && *findings == 1);
        ensure!(whole, "a read saw {generation:?} with {findings} findings");
    }
    let moved = check(&s.api, "3.0.15-1~deb12u1").await?;
    ensure!(
        moved.findings.len() == 1
            && moved.findings[0].fixed_version.as_deref() == Some("3.0.16-1~deb12u1"),
        "{moved:?}"
    );

    // 3. A malformed file is named, and nothing changes.
    std::fs::write(
        folder.join("broken.json"),
        b"{\"id\": \"X\", \"modified\": ",
    )?;
    let out = s
        .cli(&["vulndb", "import", &folder.display().to_string()], None)
        .await?;
    ensure!(!out.success(), "{}", out.all_output());
    ensure!(out.stderr.contains("broken.json"), "{}", out.stderr);
    ensure!(out.all_output().contains("nothing was imported"));
    let after: VulnDbStatusView = s.api.get_as("/api/v1/vulndb").await?;
    ensure!(
        after.current.map(|c| c.generation) == Some(second_gen.generation),
        "a refused import changed the database"
    );

    // 4. A security officer (the strongest tenant role) reads but may not import.
    let password = "security officer password, long enough";
    let invite: InvitationCreated = s
        .api
        .post_as(
            "/api/v1/invitations",
            &json!({ "username": "officer", "role": "security_officer", "tenants": ["demo"] }),
        )
        .await?;
    let redeemed: SetupResponse = s
        .api
        .post_as(
            "/api/v1/invitations/redeem",
            &json!({ "token": invite.token, "password": password }),
        )
        .await?;
    let officer = Owner::new("officer", password, &redeemed.totp_secret);
    s.api
        .post_json(
            "/api/v1/invitations/confirm",
            &json!({ "enrolment_id": redeemed.enrolment_id, "otp": officer.next_otp().await? }),
        )
        .await?;
    let officer_config = work.join("officer");
    std::fs::create_dir_all(&officer_config)?;
    operator_login(&s.up, &officer_config, PASSPHRASE, &officer).await?;
    let zip_arg = zip_path.display().to_string();
    let out = s
        .cli_in(&officer_config, &["vulndb", "import", &zip_arg], None)
        .await?;
    ensure!(!out.success(), "{}", out.all_output());
    ensure!(out.stderr.contains("HTTP 403"), "{}", out.stderr);
    let out = s
        .cli_in(&officer_config, &["vulndb", "status"], None)
        .await?
        .ok()?;
    ensure!(out.stdout.contains("Generation:"), "{}", out.stdout);
    let last: VulnDbStatusView = s.api.get_as("/api/v1/vulndb").await?;
    ensure!(last.current.map(|c| c.generation) == Some(second_gen.generation));
    Ok(())
}
