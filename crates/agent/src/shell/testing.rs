//! For tests (the agent's and the end-to-end ones), never called by the
//! agent: a real pseudo-terminal standing for a logged-in user's, and the
//! utmp record that lists it, so a test reads the shell notices exactly as
//! that user's terminal receives them.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::pty::OpenptFlags;

/// A pseudo-terminal pair: the user's side stays open (as a login
/// shell's would), the test reads what arrives on the master side.
pub struct WatchedTerminal {
    master: OwnedFd,
    _user_side: OwnedFd,
    /// Its utmp line, e.g. `pts/7`.
    pub line: String,
}

impl WatchedTerminal {
    pub fn open() -> anyhow::Result<Self> {
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)
            .context("cannot open a pseudo-terminal")?;
        rustix::pty::grantpt(&master).context("grantpt")?;
        rustix::pty::unlockpt(&master).context("unlockpt")?;
        let name = rustix::pty::ptsname(&master, Vec::new()).context("ptsname")?;
        let user_side = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context("cannot open the terminal's user side")?;
        rustix::io::ioctl_fionbio(&master, true).context("non-blocking")?;
        let path = name.to_string_lossy().into_owned();
        let line = path
            .strip_prefix("/dev/")
            .context("a terminal outside /dev")?
            .to_owned();
        Ok(Self {
            master,
            _user_side: user_side,
            line,
        })
    }

    /// What arrived until `needle` shows or `wait` passes (then whatever came).
    pub fn read_until(&self, needle: &str, wait: Duration) -> String {
        let until = Instant::now() + wait;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < until && !String::from_utf8_lossy(&seen).contains(needle) {
            match rustix::io::read(&self.master, &mut buf) {
                Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                Ok(_) | Err(Errno::AGAIN | Errno::INTR) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => break,
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    /// Everything that arrived within `wait`.
    pub fn read_for(&self, wait: Duration) -> String {
        self.read_until("\u{0}never\u{0}", wait)
    }

    /// A utmp file listing this terminal as `user`'s login.
    pub fn utmp(&self, user: &str) -> Vec<u8> {
        crate::utmp::user_record(&self.line, user)
    }
}
