//! `bulwark-agent install` and `uninstall`: put the agent on a machine the
//! way a service belongs there (binary, systemd unit, state directory), and
//! take it off again.
//!
//! The plan is pure ([`Layout`], [`unit_file`]); [`install`] and
//! [`uninstall`] do the file work, and [`Systemd`] the calls to `systemctl`,
//! only where systemd is the running init. Everything happens under an
//! optional root directory, so the same code is tested in a temporary
//! directory and used on `/`.
//!
//! The agent runs as root: it exists to run its tenant's signed jobs, which
//! administer the machine. So the unit keeps only what does not get in a
//! job's way: a private umask, a state directory only root can read, and
//! `KillMode=process`, because a job's supervisor must outlive an agent
//! restart to report the true result (see [`crate::supervisor`]).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::files::write_atomic;

/// The unit's name.
pub const UNIT_NAME: &str = "bulwark-agent.service";

/// Where the pieces go, as paths on the target system (`system_*`) and as
/// paths this process writes (under `root`, which is `/` outside tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
    pub binary: PathBuf,
    pub unit: PathBuf,
    pub state_dir: PathBuf,
}

impl Layout {
    /// The standard places: `/usr/local/bin`, `/etc/systemd/system` and the
    /// given state directory (`/var/lib/bulwark-agent` by default).
    pub fn standard(root: &Path, state_dir: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
            binary: PathBuf::from("/usr/local/bin/bulwark-agent"),
            unit: PathBuf::from("/etc/systemd/system").join(UNIT_NAME),
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// `path` (absolute on the target system) as this process reaches it.
    pub fn under_root(&self, path: &Path) -> PathBuf {
        self.root
            .join(path.strip_prefix("/").unwrap_or(path.as_ref()))
    }

    /// Whether this layout is the running system itself.
    pub fn is_live_system(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// The systemd unit that runs `binary` with `state_dir`. `extra_args` are
/// appended to `run` (each checked by [`unit_argument`]).
pub fn unit_file(binary: &Path, state_dir: &Path, extra_args: &[String]) -> io::Result<String> {
    let mut exec = format!(
        "{} --state-dir {} run",
        unit_argument(&binary.display().to_string())?,
        unit_argument(&state_dir.display().to_string())?
    );
    for arg in extra_args {
        exec.push(' ');
        exec.push_str(&unit_argument(arg)?);
    }
    Ok(format!(
        "# Written by `bulwark-agent install`; `bulwark-agent uninstall` removes it.
[Unit]
Description=Bulwark endpoint agent
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
ExecStart={exec}
Restart=always
RestartSec=5
# A job's supervisor outlives an agent restart and reports the true result
# to the next agent; the agent stops its jobs itself on a clean stop.
KillMode=process
UMask=0077
LimitNOFILE=4096

[Install]
WantedBy=multi-user.target
"
    ))
}

/// One argument of `ExecStart=`: refused if systemd would read it as
/// anything but itself (spaces, quotes, specifiers, variables, control
/// characters), since an install command is often pasted from a page.
pub fn unit_argument(arg: &str) -> io::Result<String> {
    let plain = !arg.is_empty()
        && arg.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | ':' | '=' | ',' | '+')
        });
    if plain {
        Ok(arg.to_owned())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{arg:?} cannot be written into the unit: only letters, digits and / . - _ : = , + are allowed"
            ),
        ))
    }
}

/// What an install did, for the report printed to the technician.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Installed {
    pub binary_copied: bool,
    pub unit_written: bool,
    pub state_dir_created: bool,
}

/// Copies `source` to the layout's binary (unless it is that file already),
/// writes the unit, and makes the state directory (mode 0700). Idempotent:
/// a second install with the same inputs changes nothing.
pub fn install(layout: &Layout, source: &Path, extra_args: &[String]) -> io::Result<Installed> {
    let mut done = Installed::default();
    let binary = layout.under_root(&layout.binary);
    let state_dir = layout.under_root(&layout.state_dir);
    let unit_path = layout.under_root(&layout.unit);
    let unit = unit_file(&layout.binary, &layout.state_dir, extra_args)?;

    let same_file = match (source.canonicalize(), binary.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same_file {
        let bytes = std::fs::read(source).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot read {}: {e}", source.display()))
        })?;
        let current = std::fs::read(&binary).ok();
        if current.as_deref() != Some(bytes.as_slice()) {
            create_dir(binary.parent(), 0o755)?;
            write_atomic(&binary, &bytes, 0o755)?;
            done.binary_copied = true;
        }
    }
    if std::fs::read_to_string(&unit_path).ok().as_deref() != Some(unit.as_str()) {
        create_dir(unit_path.parent(), 0o755)?;
        write_atomic(&unit_path, unit.as_bytes(), 0o644)?;
        done.unit_written = true;
    }
    if !state_dir.is_dir() {
        create_dir(state_dir.parent(), 0o755)?;
        std::fs::create_dir(&state_dir)?;
        done.state_dir_created = true;
    }
    // The device key lives here: only root reads it, however it was made.
    std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(done)
}

/// What an uninstall removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub binary: bool,
    pub unit: bool,
    pub state_dir: bool,
}

/// Removes the unit and the binary, and with `purge` the state directory
/// (the device key and identity: the device must then enrol again).
pub fn uninstall(layout: &Layout, purge: bool) -> io::Result<Removed> {
    Ok(Removed {
        unit: remove_file(&layout.under_root(&layout.unit))?,
        binary: remove_file(&layout.under_root(&layout.binary))?,
        state_dir: purge && remove_dir(&layout.under_root(&layout.state_dir))?,
    })
}

fn create_dir(dir: Option<&Path>, mode: u32) -> io::Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

fn remove_file(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot remove {}: {e}", path.display()),
        )),
    }
}

fn remove_dir(path: &Path) -> io::Result<bool> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot remove {}: {e}", path.display()),
        )),
    }
}

/// systemd as the running init, or not.
pub enum Systemd {
    Running,
    /// Not the init here (a container, another init, a test root): the
    /// technician is told what to run instead.
    Absent,
}

impl Systemd {
    /// systemd's own test: `/run/systemd/system` exists only when it is PID 1.
    pub fn detect(layout: &Layout) -> Self {
        if layout.is_live_system() && Path::new("/run/systemd/system").is_dir() {
            Systemd::Running
        } else {
            Systemd::Absent
        }
    }

    /// Runs `systemctl ARGS`, failing with its own message.
    pub fn systemctl(args: &[&str]) -> io::Result<()> {
        let output = Command::new("systemctl")
            .args(args)
            .env_clear()
            .env("PATH", crate::supervisor::JOB_PATH)
            .output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "`systemctl {}` failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }
}

/// Makes the account unprivileged remote shells run as (RFD 0015) when it
/// is missing: a system account with a home and `/bin/sh`, no password
/// (nobody logs in as it but through a granted shell). Only on the live
/// system (an image being built under `--root-dir` makes its own). True
/// when it was made now.
pub fn ensure_shell_account(layout: &Layout, name: &str) -> io::Result<bool> {
    if !layout.is_live_system() || account_exists(name)? {
        return Ok(false);
    }
    run_tool(
        "useradd",
        &[
            "--system",
            "--create-home",
            "--home-dir",
            &format!("/var/lib/{name}"),
            "--shell",
            "/bin/sh",
            name,
        ],
    )?;
    Ok(true)
}

/// Removes that account and its home, if it is there (live system only).
pub fn remove_shell_account(layout: &Layout, name: &str) -> io::Result<bool> {
    if !layout.is_live_system() || !account_exists(name)? {
        return Ok(false);
    }
    run_tool("userdel", &["--remove", name])?;
    Ok(true)
}

fn account_exists(name: &str) -> io::Result<bool> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    Ok(passwd.lines().any(|l| l.split(':').next() == Some(name)))
}

fn run_tool(tool: &str, args: &[&str]) -> io::Result<()> {
    let output = Command::new(tool)
        .args(args)
        .env_clear()
        .env("PATH", crate::supervisor::JOB_PATH)
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{tool} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(root: &Path) -> Layout {
        Layout::standard(root, Path::new("/var/lib/bulwark-agent"))
    }

    #[test]
    fn the_unit_runs_the_installed_binary_with_its_state_dir() {
        let unit = unit_file(
            Path::new("/usr/local/bin/bulwark-agent"),
            Path::new("/var/lib/bulwark-agent"),
            &["--inventory-secs=300".to_owned()],
        )
        .expect("unit");
        assert!(unit.contains(
            "\nExecStart=/usr/local/bin/bulwark-agent --state-dir /var/lib/bulwark-agent run --inventory-secs=300\n"
        ));
        assert!(unit.contains("\nKillMode=process\n"));
        assert!(unit.contains("\nWantedBy=multi-user.target\n"));
    }

    #[test]
    fn arguments_systemd_would_reinterpret_are_refused() {
        for bad in [
            "",
            "a b",
            "$HOME",
            "%h",
            "x;y",
            "\"q\"",
            "a\nExecStartPre=/bin/sh",
            "back\\slash",
        ] {
            assert!(unit_argument(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            unit_file(
                Path::new("/usr/local/bin/bulwark-agent"),
                Path::new("/var/lib/bulwark agent"),
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn install_is_idempotent_and_uninstall_keeps_the_identity_unless_purged() {
        let root = tempfile::tempdir().expect("tempdir");
        let source = root.path().join("build-output");
        std::fs::write(&source, b"\x7fELF agent").expect("write");
        let layout = layout(root.path());

        let first = install(&layout, &source, &[]).expect("install");
        assert_eq!(
            first,
            Installed {
                binary_copied: true,
                unit_written: true,
                state_dir_created: true
            }
        );
        let binary = root.path().join("usr/local/bin/bulwark-agent");
        assert_eq!(std::fs::read(&binary).expect("binary"), b"\x7fELF agent");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&binary), 0o755);
        let state = root.path().join("var/lib/bulwark-agent");
        assert_eq!(mode(&state), 0o700);
        let unit = root.path().join("etc/systemd/system/bulwark-agent.service");
        assert_eq!(mode(&unit), 0o644);

        // Installing the installed binary over itself changes nothing.
        let again = install(&layout, &binary, &[]).expect("again");
        assert_eq!(again, Installed::default());

        // A state directory someone opened up is closed again.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(state.join("agent.json"), b"{}").expect("identity");
        install(&layout, &source, &[]).expect("reinstall");
        assert_eq!(mode(&state), 0o700);

        let removed = uninstall(&layout, false).expect("uninstall");
        assert_eq!(
            removed,
            Removed {
                binary: true,
                unit: true,
                state_dir: false
            }
        );
        assert!(state.join("agent.json").exists());
        let purged = uninstall(&layout, true).expect("purge");
        assert_eq!(
            purged,
            Removed {
                binary: false,
                unit: false,
                state_dir: true
            }
        );
        assert!(!state.exists());
    }

    #[test]
    fn a_test_root_is_never_the_live_system() {
        let root = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Systemd::detect(&layout(root.path())),
            Systemd::Absent
        ));
        assert!(layout(Path::new("/")).is_live_system());
    }
}
