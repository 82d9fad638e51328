//! Logged-in users from the Linux utmp database.
//!
//! [`parse`] is pure and fuzzed (`fuzz/fuzz_targets/utmp_parser.rs`): the file
//! is written by other programs, so every byte of it is untrusted. Only
//! [`read_logged_in_users`] touches the file system.
//!
//! Record layout (glibc on x86_64 and aarch64, `struct utmp` in
//! `<bits/utmp.h>`), 384 bytes, native byte order:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `ut_type` (a `short` and 2 bytes of padding) |
//! | 4 | 4 | `ut_pid` |
//! | 8 | 32 | `ut_line`: terminal, e.g. `pts/0` |
//! | 40 | 4 | `ut_id` |
//! | 44 | 32 | `ut_user` |
//! | 76 | 256 | `ut_host`: remote host, empty for local logins |
//! | 332 | 4 | `ut_exit` |
//! | 336 | 4 | `ut_session` |
//! | 340 | 4 | `ut_tv.tv_sec` |
//! | 344 | 4 | `ut_tv.tv_usec` |
//! | 348 | 16 | `ut_addr_v6` |
//! | 364 | 20 | unused |
//!
//! Systems that no longer keep utmp (some distributions rely on
//! systemd-logind alone) simply report no users.

use std::io::Read;
use std::path::Path;

use bulwark_protocol::Limits;
use bulwark_protocol::inventory::LoggedInUser;

/// Size of one record.
pub const RECORD_SIZE: usize = 384;
/// `ut_type` of a user's login session.
pub const USER_PROCESS: i16 = 7;
/// Most bytes read from the utmp file (2730 records, more than `max_users`).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Where utmp lives, in order of preference.
pub const UTMP_PATHS: [&str; 2] = ["/run/utmp", "/var/run/utmp"];

const LINE: std::ops::Range<usize> = 8..40;
const USER: std::ops::Range<usize> = 44..76;
const HOST: std::ops::Range<usize> = 76..332;
const TV_SEC: std::ops::Range<usize> = 340..344;

/// The user sessions in utmp `bytes`: `USER_PROCESS` records with a user name,
/// in file order, at most [`Limits::max_users`] of them, each string cut to
/// [`Limits::max_text`] bytes. A trailing partial record is ignored.
pub fn parse(bytes: &[u8]) -> Vec<LoggedInUser> {
    let limits = Limits::default();
    bytes
        .chunks_exact(RECORD_SIZE)
        .filter_map(|record| parse_record(record, &limits))
        .take(limits.max_users)
        .collect()
}

fn parse_record(record: &[u8], limits: &Limits) -> Option<LoggedInUser> {
    // `ut_type` is a `short` followed by padding: read only its two bytes.
    let ut_type = i16::from_ne_bytes([record[0], record[1]]);
    if ut_type != USER_PROCESS {
        return None;
    }
    let name = text(&record[USER], limits.max_text);
    if name.is_empty() {
        return None;
    }
    // glibc stores the time as a 32-bit field; reading it unsigned keeps it
    // right until 2106 instead of 2038 (a negative login time means nothing).
    let mut tv_sec = [0u8; 4];
    tv_sec.copy_from_slice(&record[TV_SEC]);
    Some(LoggedInUser {
        name,
        terminal: text(&record[LINE], limits.max_text),
        host: text(&record[HOST], limits.max_text),
        login_time: u64::from(u32::from_ne_bytes(tv_sec)),
    })
}

/// A fixed-size C string field: up to the first NUL (or the whole field),
/// invalid UTF-8 replaced, cut to `max` bytes at a char boundary.
fn text(field: &[u8], max: usize) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    let mut s = String::from_utf8_lossy(&field[..end]).into_owned();
    crate::text::clip(&mut s, max);
    s
}

/// One `USER_PROCESS` record of `user` logged in on `line`, as glibc
/// writes it (the rest zero): what tests list their terminals with.
#[doc(hidden)]
pub fn user_record(line: &str, user: &str) -> Vec<u8> {
    let mut record = vec![0u8; RECORD_SIZE];
    record[0..2].copy_from_slice(&USER_PROCESS.to_ne_bytes());
    let put = |record: &mut [u8], field: std::ops::Range<usize>, text: &str| {
        let n = text.len().min(field.len());
        record[field.start..field.start + n].copy_from_slice(&text.as_bytes()[..n]);
    };
    put(&mut record, LINE, line);
    put(&mut record, USER, user);
    record
}

/// The user sessions in this machine's utmp; empty when there is none.
pub fn read_logged_in_users() -> Vec<LoggedInUser> {
    read_first_existing(UTMP_PATHS.iter().map(Path::new))
}

/// Parses the first of `paths` that exists (at most [`MAX_FILE_BYTES`] of it).
pub(crate) fn read_first_existing<'a>(
    paths: impl IntoIterator<Item = &'a Path>,
) -> Vec<LoggedInUser> {
    for path in paths {
        match std::fs::File::open(path) {
            Ok(file) => {
                let mut bytes = Vec::new();
                if let Err(error) = file.take(MAX_FILE_BYTES).read_to_end(&mut bytes) {
                    tracing::debug!(path = %path.display(), %error, "Could not read utmp.");
                }
                return parse(&bytes);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "Could not open utmp.");
                return Vec::new();
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One record as glibc writes it.
    fn record(ut_type: i16, line: &[u8], user: &[u8], host: &[u8], tv_sec: u32) -> Vec<u8> {
        let mut r = vec![0u8; RECORD_SIZE];
        r[0..2].copy_from_slice(&ut_type.to_ne_bytes());
        r[4..8].copy_from_slice(&4242i32.to_ne_bytes());
        r[LINE.start..LINE.start + line.len()].copy_from_slice(line);
        r[40..44].copy_from_slice(b"ts/0");
        r[USER.start..USER.start + user.len()].copy_from_slice(user);
        r[HOST.start..HOST.start + host.len()].copy_from_slice(host);
        r[336..340].copy_from_slice(&77i32.to_ne_bytes());
        r[TV_SEC].copy_from_slice(&tv_sec.to_ne_bytes());
        r[344..348].copy_from_slice(&123_456i32.to_ne_bytes());
        r[348..352].copy_from_slice(&[192, 0, 2, 7]);
        r
    }

    fn user(name: &str, terminal: &str, host: &str, login_time: u64) -> LoggedInUser {
        LoggedInUser {
            name: name.into(),
            terminal: terminal.into(),
            host: host.into(),
            login_time,
        }
    }

    fn check(bytes: &[u8], expect: &[LoggedInUser]) {
        assert_eq!(parse(bytes), expect);
    }

    const BOOT_TIME: i16 = 2;
    const INIT_PROCESS: i16 = 5;
    const LOGIN_PROCESS: i16 = 6;
    const DEAD_PROCESS: i16 = 8;

    #[test]
    fn keeps_only_user_sessions_in_file_order() {
        let bytes = [
            record(BOOT_TIME, b"~", b"reboot", b"6.1.0-18-amd64", 1_700_000_000),
            record(
                USER_PROCESS,
                b"pts/0",
                b"alice",
                b"192.0.2.7",
                1_700_000_100,
            ),
            record(LOGIN_PROCESS, b"tty1", b"LOGIN", b"", 1_700_000_000),
            record(DEAD_PROCESS, b"pts/1", b"", b"", 1_700_000_200),
            record(USER_PROCESS, b"tty2", b"bob", b"", 1_700_000_300),
            record(INIT_PROCESS, b"tty3", b"", b"", 0),
        ]
        .concat();
        check(
            &bytes,
            &[
                user("alice", "pts/0", "192.0.2.7", 1_700_000_100),
                user("bob", "tty2", "", 1_700_000_300),
            ],
        );
    }

    #[test]
    fn empty_and_partial_input() {
        check(&[], &[]);
        let one = record(USER_PROCESS, b"pts/0", b"alice", b"", 1);
        check(&one[..RECORD_SIZE - 1], &[]);
        let mut with_tail = one.clone();
        with_tail.extend_from_slice(&one[..100]);
        check(&with_tail, &[user("alice", "pts/0", "", 1)]);
    }

    #[test]
    fn fields_that_fill_their_whole_width_have_no_nul() {
        let line = [b'l'; 32];
        let name = [b'u'; 32];
        let host = [b'h'; 256];
        let parsed = parse(&record(USER_PROCESS, &line, &name, &host, 5));
        assert_eq!(
            parsed,
            [user(&"u".repeat(32), &"l".repeat(32), &"h".repeat(256), 5)]
        );
    }

    #[test]
    fn text_after_the_first_nul_is_ignored() {
        check(
            &record(USER_PROCESS, b"tty1\0junk", b"root\0x", b"a\0b", 9),
            &[user("root", "tty1", "a", 9)],
        );
    }

    #[test]
    fn records_without_a_user_name_are_skipped() {
        check(&record(USER_PROCESS, b"pts/9", b"", b"x", 9), &[]);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_the_result_cut_to_the_limit() {
        // 256 invalid bytes become 256 three-byte U+FFFD: cut to 85 whole chars.
        let parsed = parse(&record(
            USER_PROCESS,
            b"pts/0",
            b"caf\xc3\xa9\xff",
            &[0xff; 256],
            1,
        ));
        assert_eq!(parsed[0].name, "café\u{fffd}");
        assert_eq!(parsed[0].host, "\u{fffd}".repeat(85));
        assert!(parsed[0].host.len() <= Limits::default().max_text);
    }

    #[test]
    fn type_padding_and_times_past_2038_are_read_correctly() {
        let mut r = record(USER_PROCESS, b"pts/0", b"alice", b"", 3_000_000_000);
        r[2] = 0xaa; // garbage in the padding after the 16-bit ut_type
        check(&r, &[user("alice", "pts/0", "", 3_000_000_000)]);
    }

    #[test]
    fn at_most_max_users_sessions() {
        let max = Limits::default().max_users;
        let one = record(USER_PROCESS, b"pts/0", b"alice", b"", 1);
        let bytes = one.repeat(max + 5);
        assert_eq!(parse(&bytes).len(), max);
    }

    #[test]
    fn reads_the_first_existing_file_and_tolerates_missing_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing");
        let present = dir.path().join("utmp");
        let other = dir.path().join("other");
        std::fs::write(&present, record(USER_PROCESS, b"pts/0", b"alice", b"", 1))
            .expect("write utmp");
        std::fs::write(&other, record(USER_PROCESS, b"pts/1", b"bob", b"", 2)).expect("write utmp");
        assert_eq!(
            read_first_existing([missing.as_path(), present.as_path(), other.as_path()]),
            [user("alice", "pts/0", "", 1)]
        );
        assert_eq!(read_first_existing([missing.as_path()]), []);
        // A directory cannot be read as a file: no users, no panic.
        assert_eq!(read_first_existing([dir.path()]), []);
    }

    #[test]
    fn this_machine_does_not_panic() {
        let users = read_logged_in_users();
        assert!(users.len() <= Limits::default().max_users);
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_within_limits(bytes in proptest::collection::vec(any::<u8>(), 0..4 * RECORD_SIZE)) {
            let limits = Limits::default();
            let users = parse(&bytes);
            prop_assert!(users.len() <= bytes.len() / RECORD_SIZE);
            for u in users {
                prop_assert!(!u.name.is_empty());
                prop_assert!(u.name.len() <= limits.max_text);
                prop_assert!(u.terminal.len() <= limits.max_text);
                prop_assert!(u.host.len() <= limits.max_text);
            }
        }

        #[test]
        fn user_records_survive_any_surrounding_bytes(
            before in proptest::collection::vec(any::<u8>(), 0..3),
            name in "[a-z_][a-z0-9_-]{0,31}",
            time in any::<u32>(),
        ) {
            // Whole garbage records before a user record do not disturb it.
            let mut bytes: Vec<u8> = before.iter().flat_map(|b| vec![*b; RECORD_SIZE]).collect();
            bytes.extend(record(USER_PROCESS, b"pts/3", name.as_bytes(), b"", time));
            let users = parse(&bytes);
            prop_assert_eq!(users.last(), Some(&user(&name, "pts/3", "", u64::from(time))));
        }
    }
}
