//! A login shell on a pseudo-terminal, as a given account (RFD 0015
//! section 5). The PTY comes from `rustix::pty`; the shell is started by
//! util-linux's `setsid --ctty`, which makes the PTY its controlling
//! terminal in a new session, so no `unsafe` pre-exec hook is needed. The
//! master side is non-blocking and driven by tokio's pipe halves, which
//! take any pollable descriptor without `unsafe` (a PTY master is one).

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, anyhow, bail};
use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use tokio::net::unix::pipe;

/// The account a shell runs as, from the system's passwd database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// Looks `name` up in passwd(5) text. An account whose shell refuses
/// logins (`nologin`, `false`) is refused here, with why.
pub fn find_account(passwd: &str, name: &str) -> anyhow::Result<Account> {
    let line = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .ok_or_else(|| anyhow!("there is no account {name:?} on this device"))?;
    let fields: Vec<&str> = line.split(':').collect();
    let [_, _, uid, gid, _, home, shell] = fields[..] else {
        bail!("the passwd entry of {name:?} is malformed");
    };
    let account = Account {
        name: name.to_owned(),
        uid: uid.parse().context("uid")?,
        gid: gid.parse().context("gid")?,
        home: PathBuf::from(home),
        shell: PathBuf::from(if shell.is_empty() { "/bin/sh" } else { shell }),
    };
    let program = account
        .shell
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if matches!(program, "nologin" | "false") {
        bail!(
            "the account {name:?} has no login shell ({})",
            account.shell.display()
        );
    }
    Ok(account)
}

/// A running shell and the master side of its terminal.
pub struct Pty {
    reader: pipe::Receiver,
    writer: pipe::Sender,
    child: tokio::process::Child,
    /// The shell's process group (its session: `setsid` made it the leader).
    pgid: Option<rustix::process::Pid>,
}

impl Pty {
    /// Starts `account`'s login shell on a new `cols` x `rows` terminal.
    pub fn spawn(account: &Account, cols: u16, rows: u16) -> anyhow::Result<Self> {
        let euid = rustix::process::geteuid().as_raw();
        if euid != 0 && euid != account.uid {
            bail!(
                "the agent runs as uid {euid} and cannot start a shell as {} (uid {})",
                account.name,
                account.uid
            );
        }
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)
            .context("cannot open a pseudo-terminal")?;
        rustix::pty::grantpt(&master).context("grantpt")?;
        rustix::pty::unlockpt(&master).context("unlockpt")?;
        let name = rustix::pty::ptsname(&master, Vec::new()).context("ptsname")?;
        resize(&master, cols, rows)?;
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context("cannot open the terminal's slave side")?;
        rustix::fs::fchown(&slave, Some(rustix::fs::Uid::from_raw(account.uid)), None)
            .or_else(|e| if euid == 0 { Err(e) } else { Ok(()) })
            .context("cannot give the terminal to the account")?;
        let stdio = |fd: &OwnedFd| -> anyhow::Result<Stdio> {
            Ok(Stdio::from(fd.try_clone().context("dup")?))
        };
        let mut command = tokio::process::Command::new("setsid");
        command
            .arg("--ctty")
            .arg(&account.shell)
            .arg("-l")
            .env_clear()
            .env("HOME", &account.home)
            .env("USER", &account.name)
            .env("LOGNAME", &account.name)
            .env("SHELL", &account.shell)
            .env("TERM", "xterm-256color")
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .current_dir(if account.home.is_dir() {
                account.home.clone()
            } else {
                PathBuf::from("/")
            })
            .stdin(stdio(&slave)?)
            .stdout(stdio(&slave)?)
            .stderr(stdio(&slave)?)
            .kill_on_drop(true);
        if account.uid != euid {
            // std drops supplementary groups when it changes the uid as root.
            command.uid(account.uid).gid(account.gid);
        }
        let child = command.spawn().context("cannot start setsid")?;
        drop(slave);
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        rustix::io::ioctl_fionbio(&master, true).context("non-blocking")?;
        let writer = master.try_clone().context("dup")?;
        Ok(Self {
            reader: pipe::Receiver::from_owned_fd_unchecked(master)
                .context("cannot watch the terminal")?,
            writer: pipe::Sender::from_owned_fd_unchecked(writer)
                .context("cannot watch the terminal")?,
            child,
            pgid,
        })
    }

    /// Reads what the shell wrote; `Ok(0)` once the terminal hung up.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            self.reader.readable().await?;
            match self.reader.try_read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                // EIO: every holder of the slave side is gone.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `data` to the shell's terminal.
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            self.writer.writable().await?;
            match self.writer.try_write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn resize(&self, cols: u16, rows: u16) -> anyhow::Result<()> {
        resize(&self.reader, cols, rows)
    }

    /// Waits for the shell to exit; its exit code, if it exited.
    pub async fn wait(&mut self) -> Option<i32> {
        self.child.wait().await.ok().and_then(|s| s.code())
    }

    /// Ends the shell and every process of its session (background jobs
    /// are in process groups of their own, but never leave the session
    /// unless they call setsid themselves).
    pub async fn kill(&mut self) {
        if let Some(sid) = self.pgid {
            for pid in session_members(sid.as_raw_nonzero().get()) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.kill().await;
    }
}

/// The processes whose session id is `sid`, from /proc.
fn session_members(sid: i32) -> Vec<rustix::process::Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .is_some_and(|stat| stat_session(&stat) == Some(sid))
        })
        .filter_map(rustix::process::Pid::from_raw)
        .collect()
}

/// The session field of /proc/PID/stat: after the command name (which may
/// hold spaces and parentheses), state, ppid, pgrp, session.
fn stat_session(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(3)?.parse().ok()
}

fn resize(fd: impl AsFd, cols: u16, rows: u16) -> anyhow::Result<()> {
    rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .context("cannot set the terminal's size")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        ops:x:1001:1001:Ops,,,:/home/ops:/bin/bash\n\
        odd:x:1002:1002::/home/odd:\n\
        broken:x:1003\n";

    #[test]
    fn accounts_from_passwd() {
        let ops = find_account(PASSWD, "ops").expect("ok");
        assert_eq!((ops.uid, ops.gid), (1001, 1001));
        assert_eq!(ops.shell, PathBuf::from("/bin/bash"));
        assert_eq!(
            find_account(PASSWD, "odd").expect("ok").shell,
            PathBuf::from("/bin/sh")
        );
        let nobody = find_account(PASSWD, "nobody")
            .expect_err("refused")
            .to_string();
        assert!(nobody.contains("no login shell"), "{nobody}");
        assert!(find_account(PASSWD, "broken").is_err());
        assert!(find_account(PASSWD, "mallory").is_err());
        // A name that is a prefix of another is not that other.
        assert!(find_account(PASSWD, "op").is_err());
    }

    fn me() -> Account {
        Account {
            name: "test".into(),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            home: std::env::temp_dir(),
            shell: PathBuf::from("/bin/sh"),
        }
    }

    async fn read_until(pty: &Pty, needle: &str) -> String {
        let mut seen = String::new();
        let mut buf = [0; 4096];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !seen.contains(needle) {
            let n = tokio::time::timeout_at(deadline, pty.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in {seen:?}"))
                .expect("ok");
            assert!(n > 0, "hung up before {needle:?}: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen
    }

    #[tokio::test]
    async fn a_shell_on_a_terminal_answers_and_exits() {
        let mut pty = Pty::spawn(&me(), 100, 30).expect("ok");
        pty.write_all(b"tty -s && echo on-a-tty; stty size; echo $((6*7))\n")
            .await
            .expect("ok");
        let seen = read_until(&pty, "42").await;
        assert!(seen.contains("on-a-tty"), "{seen}");
        assert!(seen.contains("30 100"), "{seen}");
        pty.resize(120, 40).expect("ok");
        pty.write_all(b"stty size\n").await.expect("ok");
        read_until(&pty, "40 120").await;
        pty.write_all(b"exit 3\n").await.expect("ok");
        assert_eq!(pty.wait().await, Some(3));
    }

    #[tokio::test]
    async fn kill_ends_the_shell_and_its_background_jobs() {
        let mut pty = Pty::spawn(&me(), 80, 24).expect("ok");
        pty.write_all(b"sleep 300 & echo bg=$!=\n")
            .await
            .expect("ok");
        // The echoed command line says "bg=$!=", the output "bg=1234=".
        let mut seen = String::new();
        let mut buf = [0; 4096];
        let pid: i32 = loop {
            if let Some(pid) = seen
                .split("bg=")
                .filter_map(|s| s.split('=').next()?.parse().ok())
                .next()
            {
                break pid;
            }
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), pty.read(&mut buf))
                .await
                .expect("output")
                .expect("ok");
            assert!(n > 0, "{seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        };
        pty.kill().await;
        let code = tokio::time::timeout(std::time::Duration::from_secs(5), pty.wait())
            .await
            .expect("the shell ends");
        assert_eq!(code, None, "killed, not exited");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
        {
            assert!(std::time::Instant::now() < deadline, "sleep {pid} survived");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    #[test]
    fn the_session_field_of_a_stat_line() {
        assert_eq!(stat_session("42 (sh) S 1 42 42 34816 42 4194560"), Some(42));
        assert_eq!(stat_session("7 (a) b (c) R 1 8 9 0"), Some(9));
        assert_eq!(stat_session("garbage"), None);
    }
}
