//! A real apt and dpkg confined to a throwaway directory, with a local
//! repository of two suites: `bookworm-security` (what apt and the agent
//! call a security suite) and `bookworm`. Packages are made with
//! `dpkg-deb` and indexed with `dpkg-scanpackages`; an agent gets the
//! sandbox through `--apt-config` (or `BULWARK_AGENT_APT_CONFIG`). The
//! machine's own dpkg database is never touched.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail, ensure};
use sha2::{Digest, Sha256};

/// The security suite.
pub const SECURITY_SUITE: &str = "bookworm-security";
/// A suite that is not a security suite.
pub const PLAIN_SUITE: &str = "bookworm";

/// A local repository and an apt/dpkg confined to one directory.
pub struct AptSandbox {
    dir: tempfile::TempDir,
}

/// How a package version behaves when dpkg installs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    Succeeds,
    /// Its `preinst` exits 1: dpkg, then apt (exit 100), fail.
    Fails,
}

impl AptSandbox {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn new() -> Result<Self> {
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
        ] {
            std::fs::create_dir_all(sandbox.path(dir))?;
        }
        for suite in [SECURITY_SUITE, PLAIN_SUITE] {
            std::fs::create_dir_all(sandbox.path(&format!("repo/pool/{suite}")))?;
        }
        std::fs::write(sandbox.path("root/var/lib/dpkg/status"), "")?;
        std::fs::write(sandbox.path("root/var/lib/dpkg/available"), "")?;
        let repo = sandbox.path("repo").display().to_string();
        std::fs::write(
            sandbox.path("apt/etc/sources.list"),
            format!(
                "deb [trusted=yes] file:{repo} {SECURITY_SUITE} main\n\
                 deb [trusted=yes] file:{repo} {PLAIN_SUITE} main\n"
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

    /// The apt configuration file to give the agent.
    pub fn config(&self) -> PathBuf {
        self.path("apt.conf")
    }

    /// Builds `version` of `package` into `suite`'s pool.
    pub fn build(&self, package: &str, version: &str, suite: &str, install: Install) -> Result<()> {
        let root = self.path(&format!("build-{package}-{version}"));
        std::fs::create_dir_all(root.join("DEBIAN"))?;
        std::fs::create_dir_all(root.join("usr/share").join(package))?;
        std::fs::write(
            root.join("DEBIAN/control"),
            format!(
                "Package: {package}\nVersion: {version}\nArchitecture: all\n\
                 Maintainer: Bulwark e2e <e2e@example.invalid>\n\
                 Description: a tiny package for the patch tests\n"
            ),
        )?;
        if install == Install::Fails {
            let preinst = root.join("DEBIAN/preinst");
            std::fs::write(&preinst, "#!/bin/sh\nexit 1\n")?;
            let mut permissions = std::fs::metadata(&preinst)?.permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
            std::fs::set_permissions(&preinst, permissions)?;
        }
        std::fs::write(
            root.join("usr/share").join(package).join("version"),
            format!("{version}\n"),
        )?;
        let deb = self.path(&format!("repo/pool/{suite}/{package}_{version}_all.deb"));
        run(Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&root)
            .arg(&deb))
    }

    /// Indexes each suite's pool: Packages and a Release file with its hash.
    pub fn publish(&self) -> Result<()> {
        for suite in [SECURITY_SUITE, PLAIN_SUITE] {
            let out = Command::new("dpkg-scanpackages")
                .args([&format!("pool/{suite}"), "/dev/null"])
                .current_dir(self.path("repo"))
                .output()?;
            ensure!(out.status.success(), "dpkg-scanpackages failed");
            let dists = self.path(&format!("repo/dists/{suite}"));
            std::fs::create_dir_all(dists.join("main/binary-amd64"))?;
            std::fs::write(dists.join("main/binary-amd64/Packages"), &out.stdout)?;
            std::fs::write(
                dists.join("Release"),
                format!(
                    "Origin: Bulwark-Test\nLabel: Bulwark-Test\nSuite: {suite}\n\
                     Codename: {suite}\nArchitectures: amd64\nComponents: main\n\
                     Date: Mon, 07 Dec 2026 00:00:00 UTC\nSHA256:\n {} {} main/binary-amd64/Packages\n",
                    hex::encode(Sha256::digest(&out.stdout)),
                    out.stdout.len()
                ),
            )?;
        }
        Ok(())
    }

    /// `apt-get ARGS` with this sandbox's configuration.
    pub fn apt(&self, args: &[&str]) -> Result<String> {
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

    /// The version of `package` installed in the throwaway root, by its
    /// own file.
    pub fn installed(&self, package: &str) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.path("root/usr/share").join(package).join("version"))?
                .trim()
                .to_owned(),
        )
    }
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
