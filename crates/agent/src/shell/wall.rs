//! Writes a shell notice to every logged-in user's terminal, like
//! `wall(1)` (RFD 0015, "Notices"). The terminals come from utmp through
//! [`super::notice::terminals`]; each is opened non-blocking, without
//! becoming the agent's controlling terminal and without following a
//! symlink, must be a character device, and gets a short deadline: a
//! stuck terminal costs the agent a fraction of a second, never a hang.
//! As root the agent reaches every terminal; unprivileged, those it may
//! write to, and the log says how many it missed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use super::notice;

/// Longest a notice may take on one terminal.
const PER_TERMINAL: Duration = Duration::from_millis(250);
/// Longest a notice may take on all of them.
const ALL_TERMINALS: Duration = Duration::from_secs(2);

/// Where the logged-in users and their terminals are found. Tests point
/// both elsewhere (`bulwark-agent run --shell-notice-utmp`, `--shell-notice-dev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeTerminals {
    /// utmp files, the first existing one read.
    pub utmp: Vec<PathBuf>,
    /// The directory terminal lines are under (`/dev`).
    pub dev_root: PathBuf,
}

impl Default for NoticeTerminals {
    fn default() -> Self {
        Self {
            utmp: crate::utmp::UTMP_PATHS.iter().map(PathBuf::from).collect(),
            dev_root: PathBuf::from("/dev"),
        }
    }
}

/// How a notice went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Terminals that took the whole notice.
    pub written: usize,
    /// Terminals that did not, with why.
    pub failed: Vec<(String, String)>,
    /// utmp lines that name no plain terminal (or past the most written to).
    pub refused: usize,
}

/// Writes `text` to every logged-in user's terminal. Blocking (at most
/// [`ALL_TERMINALS`]): call it off the async runtime.
pub fn deliver(terminals: &NoticeTerminals, text: &str) -> Delivery {
    let users = crate::utmp::read_first_existing(terminals.utmp.iter().map(PathBuf::as_path));
    let (lines, refused) = notice::terminals(users.iter().map(|u| u.terminal.as_str()));
    let deadline = Instant::now() + ALL_TERMINALS;
    let mut delivery = Delivery {
        refused,
        ..Delivery::default()
    };
    for line in lines {
        let now = Instant::now();
        let until = deadline.min(now + PER_TERMINAL);
        match write_terminal(&terminals.dev_root.join(&line), text.as_bytes(), until) {
            Ok(()) => delivery.written += 1,
            Err(why) => delivery.failed.push((line, why)),
        }
    }
    delivery
}

fn write_terminal(path: &Path, mut bytes: &[u8], until: Instant) -> Result<(), String> {
    let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::NOFOLLOW;
    let fd = rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("cannot open: {e}"))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| format!("cannot stat: {e}"))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::CharacterDevice {
        return Err("not a terminal device".into());
    }
    while !bytes.is_empty() {
        match rustix::io::write(&fd, bytes) {
            Ok(0) => return Err("the terminal takes nothing".into()),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::AGAIN | Errno::INTR) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(Errno::AGAIN) => return Err("the terminal is not reading".into()),
            Err(e) => return Err(format!("cannot write: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shell::testing::WatchedTerminal;

    fn terminals_in(dir: &Path, lines: &[&str]) -> NoticeTerminals {
        let utmp = dir.join("utmp");
        let records: Vec<u8> = lines
            .iter()
            .flat_map(|line| crate::utmp::user_record(line, "someone"))
            .collect();
        std::fs::write(&utmp, records).expect("utmp");
        NoticeTerminals {
            utmp: vec![utmp],
            dev_root: dir.join("dev"),
        }
    }

    #[test]
    fn only_character_devices_are_written_and_no_symlink_is_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = dir.path().join("dev");
        std::fs::create_dir(&dev).expect("dev");
        let file = dir.path().join("not-a-terminal");
        std::fs::write(&file, b"before").expect("file");
        std::fs::write(dev.join("tty1"), b"before").expect("tty1");
        std::os::unix::fs::symlink(&file, dev.join("tty2")).expect("symlink");
        std::os::unix::fs::symlink("/dev/null", dev.join("tty3")).expect("symlink");
        let terminals = terminals_in(dir.path(), &["tty1", "tty2", "tty3", "pts/../../x"]);
        let delivery = deliver(&terminals, "hello");
        assert_eq!((delivery.written, delivery.refused), (0, 1), "{delivery:?}");
        assert_eq!(delivery.failed.len(), 3, "{delivery:?}");
        assert_eq!(std::fs::read(dev.join("tty1")).expect("read"), b"before");
        assert_eq!(std::fs::read(&file).expect("read"), b"before");
    }

    #[test]
    fn a_terminal_nobody_reads_costs_a_deadline_never_a_hang() {
        let terminal = WatchedTerminal::open().expect("a terminal");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut terminals = terminals_in(dir.path(), &[&terminal.line]);
        terminals.dev_root = PathBuf::from("/dev");
        let text = "x".repeat(notice::MAX_NOTICE_BYTES);
        let first = deliver(&terminals, &text);
        assert_eq!(first.written, 1, "{first:?}");
        // Nobody reads: the terminal's buffer fills, and then each notice
        // gives up after its deadline.
        let mut stuck = None;
        for _ in 0..1000 {
            let started = Instant::now();
            let delivery = deliver(&terminals, &text);
            assert!(started.elapsed() < Duration::from_secs(1));
            if let Some((_, why)) = delivery.failed.first() {
                stuck = Some(why.clone());
                break;
            }
        }
        assert_eq!(stuck.as_deref(), Some("the terminal is not reading"));
    }
}
