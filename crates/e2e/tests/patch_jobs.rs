//! Pending updates and an install-patches job, end to end (issue 17), with
//! a real apt and dpkg confined to a throwaway directory.
//!
//! The test builds a local apt repository (two versions of a tiny package
//! made with `dpkg-deb`, indexed with `dpkg-scanpackages`, a Release file
//! naming the suite `bookworm-security`) and an apt configuration whose
//! every directory (lists, cache, sources, parts, logs, dpkg's status
//! database and root) is under a temporary directory; the agent of `bulwark
//! up` gets it through `BULWARK_AGENT_APT_CONFIG`. Version 1.0 is
//! installed into the throwaway root, 2.0 published; the agent (root here,
//! so it refreshes the lists itself) reports the pending security update;
//! the operator signs an install-patches job (quorum 1 in the default
//! policy); the agent upgrades; the result (1.0 -> 2.0, no failure) is
//! recorded and shown by `bulwark job show`, and the pending list empties.
//! A job naming an option-like package is refused. The machine's own dpkg
//! database is checked unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bulwark_api::devices::{InventoryView, PendingUpdateView};
use bulwark_api::jobs::JobView;
use bulwark_e2e::{OperatorSetup, UpOptions, decode_json, target_of, wait_for};
use sha2::{Digest, Sha256};

const PASSPHRASE: &str = "e2e patch jobs: a passphrase nobody guesses";
const PACKAGE: &str = "bulwark-e2e-tiny";
const SUITE: &str = "bookworm-security";

/// A local repository and an apt/dpkg confined to one directory.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn new() -> Result<Self> {
        for tool in ["dpkg-deb", "dpkg-scanpackages", "apt-get"] {
            ensure!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()?
                    .status
                    .success(),
                "{tool} is needed (dpkg-dev and apt)"
            );
        }
        let sandbox = Self {
            dir: tempfile::tempdir()?,
        };
        for dir in [
            "root/var/lib/dpkg/info",
            "root/var/lib/dpkg/updates",
            "root/var/lib/dpkg/triggers",
            "apt/lists/partial",
            "apt/archives/partial",
            "apt/cache",
            "apt/log",
            "apt/etc/apt.conf.d",
            "apt/etc/sources.list.d",
            "apt/etc/preferences.d",
            "apt/etc/trusted.gpg.d",
            "repo/pool",
        ] {
            std::fs::create_dir_all(sandbox.path(dir))?;
        }
        std::fs::write(sandbox.path("root/var/lib/dpkg/status"), "")?;
        std::fs::write(sandbox.path("root/var/lib/dpkg/available"), "")?;
        std::fs::write(
            sandbox.path("apt/etc/sources.list"),
            format!(
                "deb [trusted=yes] file:{} {SUITE} main\n",
                sandbox.path("repo").display()
            ),
        )?;
        let t = sandbox.dir.path().display().to_string();
        std::fs::write(
            sandbox.config(),
            format!(
                r#"Dir::State "{t}/apt/";
Dir::State::lists "{t}/apt/lists/";
Dir::State::status "{t}/root/var/lib/dpkg/status";
Dir::State::extended_states "{t}/apt/extended_states";
Dir::Cache "{t}/apt/cache/";
Dir::Cache::archives "{t}/apt/archives/";
Dir::Etc "{t}/apt/etc/";
Dir::Etc::main "{t}/apt/etc/apt.conf";
Dir::Etc::Parts "{t}/apt/etc/apt.conf.d/";
Dir::Etc::SourceList "{t}/apt/etc/sources.list";
Dir::Etc::SourceParts "{t}/apt/etc/sources.list.d/";
Dir::Etc::Preferences "{t}/apt/etc/preferences";
Dir::Etc::PreferencesParts "{t}/apt/etc/preferences.d/";
Dir::Etc::Trusted "{t}/apt/etc/trusted.gpg";
Dir::Etc::TrustedParts "{t}/apt/etc/trusted.gpg.d/";
Dir::Log "{t}/apt/log/";
APT::Sandbox::User "root";
DPkg::Options {{ "--root={t}/root"; "--admindir={t}/root/var/lib/dpkg"; "--log={t}/apt/log/dpkg.log"; }};
DPkg::Use-Pty "false";
"#
            ),
        )?;
        Ok(sandbox)
    }

    fn config(&self) -> PathBuf {
        self.path("apt.conf")
    }

    /// Builds `version` of the package into the repository's pool.
    fn build(&self, version: &str) -> Result<()> {
        let root = self.path(&format!("build-{version}"));
        std::fs::create_dir_all(root.join("DEBIAN"))?;
        std::fs::create_dir_all(root.join("usr/share").join(PACKAGE))?;
        std::fs::write(
            root.join("DEBIAN/control"),
            format!(
                "Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\n\
                 Maintainer: Bulwark e2e <e2e@example.invalid>\n\
                 Description: a tiny package for the patch test\n"
            ),
        )?;
        std::fs::write(
            root.join("usr/share").join(PACKAGE).join("version"),
            format!("{version}\n"),
        )?;
        let deb = self.path(&format!("repo/pool/{PACKAGE}_{version}_all.deb"));
        run(Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&root)
            .arg(&deb))?;
        Ok(())
    }

    /// Indexes the pool: Packages and a Release file with its hash.
    fn publish(&self) -> Result<()> {
        let out = Command::new("dpkg-scanpackages")
            .args(["pool", "/dev/null"])
            .current_dir(self.path("repo"))
            .output()?;
        ensure!(out.status.success(), "dpkg-scanpackages failed");
        let dists = self.path(&format!("repo/dists/{SUITE}"));
        std::fs::create_dir_all(dists.join("main/binary-amd64"))?;
        std::fs::write(dists.join("main/binary-amd64/Packages"), &out.stdout)?;
        std::fs::write(
            dists.join("Release"),
            format!(
                "Origin: Bulwark-Test\nLabel: Bulwark-Test-Security\nSuite: {SUITE}\n\
                 Codename: {SUITE}\nArchitectures: amd64\nComponents: main\n\
                 Date: Mon, 07 Dec 2026 00:00:00 UTC\nSHA256:\n {} {} main/binary-amd64/Packages\n",
                hex(&Sha256::digest(&out.stdout)),
                out.stdout.len()
            ),
        )?;
        Ok(())
    }

    /// `apt-get ARGS` with this sandbox's configuration.
    fn apt(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("apt-get")
            .args(args)
            .env("APT_CONFIG", self.config())
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()?;
        ensure!(
            out.status.success(),
            "apt-get {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The version installed in the throwaway root, by its own file.
    fn installed(&self) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.path("root/usr/share").join(PACKAGE).join("version"))?
                .trim()
                .to_owned(),
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn run(command: &mut Command) -> Result<()> {
    let out = command.output()?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn system_dpkg_status() -> Result<Vec<u8>> {
    Ok(Sha256::digest(std::fs::read(Path::new("/var/lib/dpkg/status"))?).to_vec())
}

async fn pending(s: &OperatorSetup) -> Result<Option<Vec<PendingUpdateView>>> {
    let inventory: Option<InventoryView> = s.api.device(&s.local).await?.inventory;
    Ok(inventory.and_then(|i| i.pending_updates))
}

#[tokio::test]
async fn a_pending_security_update_is_reported_installed_by_a_signed_job_and_recorded() -> Result<()>
{
    let system_before = system_dpkg_status()?;
    let sandbox = Sandbox::new()?;
    sandbox.build("1.0")?;
    sandbox.publish()?;
    sandbox.apt(&["update", "-q"])?;
    sandbox.apt(&["install", "-y", "-q", PACKAGE])?;
    ensure!(sandbox.installed()? == "1.0");
    // 2.0 is published; the agent refreshes the lists itself (it is root).
    sandbox.build("2.0")?;
    sandbox.publish()?;

    let s = OperatorSetup::start_with(
        PASSPHRASE,
        UpOptions::default().env(
            "BULWARK_AGENT_APT_CONFIG",
            sandbox.config().display().to_string(),
        ),
    )
    .await?;
    let update = wait_for(
        Duration::from_secs(90),
        "the pending update in the device's inventory",
        async || {
            Ok(pending(&s)
                .await?
                .and_then(|us| us.into_iter().find(|u| u.name == PACKAGE)))
        },
    )
    .await?;
    ensure!(
        update.current_version == "1.0" && update.new_version == "2.0" && update.security,
        "unexpected pending update: {update:?}"
    );
    ensure!(update.origin.contains(SUITE), "{update:?}");
    // Only the sandbox's packages: the machine's own lists are not read.
    let all = pending(&s).await?.unwrap_or_default();
    ensure!(all.len() == 1, "the agent read another apt: {all:?}");

    // The CLI lists it.
    let out = s
        .cli(&["device", "updates", &s.local], None)
        .await?
        .ok()?
        .stdout;
    ensure!(
        out.contains("1 pending updates, 1 from a security suite") && out.contains(PACKAGE),
        "{out}"
    );

    // The console's device page lists it, marked as a security update.
    let page = s.console_page(&format!("/devices/{}", s.local)).await?;
    ensure!(
        page.contains("Pending updates")
            && page.contains("1 pending, 1 from a security suite")
            && page.contains(PACKAGE),
        "the device page does not show the pending update"
    );

    // A job naming an option-like package is refused before anything is
    // signed or sent, and the refusal names the grammar.
    let refused = s
        .cli(
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                &s.local,
                "--install-patches",
                "--packages=-oAPT::Update::Pre-Invoke::=touch /tmp/x",
                "--reason",
                "e2e",
            ],
            None,
        )
        .await?;
    ensure!(
        !refused.success() && refused.all_output().contains("not a Debian package name"),
        "{}",
        refused.all_output()
    );

    // The signed job: every pending security update (no names).
    let out = s
        .cli(
            &[
                "job",
                "run",
                "--tenant",
                "demo",
                "--targets",
                &s.local,
                "--install-patches",
                "--reason",
                "e2e: security updates",
                "--timeout",
                "600",
                "--json",
            ],
            None,
        )
        .await?
        .ok()?;
    let view: JobView = decode_json(&out.stdout).context("job run --json")?;
    ensure!(view.class == "install-patches", "{view:?}");
    let target = target_of(&view, &s.local)?;
    ensure!(
        target.state == "succeeded" && target.exit_code == Some(0),
        "{target:?}"
    );
    let report = target.patches.context("no patch report")?;
    ensure!(report.failed.is_empty(), "{report:?}");
    ensure!(
        report.installed.len() == 1
            && report.installed[0].name == PACKAGE
            && report.installed[0].old_version == "1.0"
            && report.installed[0].new_version == "2.0",
        "{report:?}"
    );
    ensure!(sandbox.installed()? == "2.0");

    // Recorded: `bulwark job show` prints it from the server's record.
    let shown = s.cli(&["job", "show", &view.id], None).await?.ok()?.stdout;
    ensure!(
        shown.contains("1 installed, 0 failed") && shown.contains("1.0 -> 2.0"),
        "{shown}"
    );
    // And the pending list empties.
    wait_for(
        Duration::from_secs(90),
        "the pending list to empty",
        async || Ok(pending(&s).await?.filter(|us| us.is_empty())),
    )
    .await?;
    // The console's job page shows what was installed.
    let page = s.console_page(&format!("/jobs/{}", view.id)).await?;
    ensure!(page.contains("patches-installed") && page.contains(PACKAGE));

    ensure!(
        system_dpkg_status()? == system_before,
        "the machine's own dpkg database changed"
    );
    Ok(())
}
