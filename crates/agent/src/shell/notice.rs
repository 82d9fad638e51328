//! What the device's logged-in users read when a remote shell starts and
//! ends (RFD 0015, "Notices"), and which of their terminals get it. Pure:
//! [`super::wall`] reads utmp and writes to the terminals.
//!
//! Every word of a notice comes from the verified grant (grantee, tenant,
//! account, reason, expiry) and the verified policy (the grantee's name,
//! the root holders' message), never from the server's unsigned text. The
//! reason is whatever an operator typed: no control character, escape
//! sequence or bidirectional override in it reaches a terminal, and each
//! part is cut to a length.

use bulwark_policy::shell::{ShellNotice, is_terminal_control};

/// Longest name shown (grantee, tenant, account), in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest reason shown, in bytes.
pub const MAX_REASON_BYTES: usize = 300;
/// Longest notice, line ends included, in bytes.
pub const MAX_NOTICE_BYTES: usize = 1024;
/// Most terminals one notice is written to.
pub const MAX_TERMINALS: usize = 64;
/// Longest terminal line name accepted from utmp (`ut_line` is 32 bytes).
const MAX_LINE_BYTES: usize = 32;

/// What a notice says, taken from the verified grant and policy at the open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeFacts {
    /// The grantee's name in the policy (or its key id).
    pub grantee: String,
    /// The tenant's name as the grant names it.
    pub tenant: String,
    pub reason: String,
    /// The account the shell runs as.
    pub account: String,
    /// The grant's expiry, Unix seconds.
    pub expires_at: u64,
    /// The root holders' line from the policy.
    pub message: Option<String>,
}

/// When in a session a notice may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    Start,
    End,
}

/// Does the policy's setting ask for a notice at `moment`? No setting: never.
pub fn wanted(setting: Option<&ShellNotice>, moment: Moment) -> bool {
    setting.is_some_and(|s| match moment {
        Moment::Start => s.at_start,
        Moment::End => s.at_end,
    })
}

/// The notice at the open.
pub fn opened(facts: &NoticeFacts) -> String {
    let head = format!(
        "Bulwark: remote shell opened by {} for {} (as {}, until {}): {}",
        sanitised(&facts.grantee, MAX_NAME_BYTES),
        sanitised(&facts.tenant, MAX_NAME_BYTES),
        sanitised(&facts.account, MAX_NAME_BYTES),
        crate::text::utc_text(facts.expires_at),
        sanitised(&facts.reason, MAX_REASON_BYTES),
    );
    lines(&head, facts.message.as_deref())
}

/// The notice at the end, however the session ended.
pub fn closed(facts: &NoticeFacts, lasted_secs: u64) -> String {
    let head = format!(
        "Bulwark: remote shell by {} for {} (as {}) closed after {}",
        sanitised(&facts.grantee, MAX_NAME_BYTES),
        sanitised(&facts.tenant, MAX_NAME_BYTES),
        sanitised(&facts.account, MAX_NAME_BYTES),
        duration_text(lasted_secs),
    );
    lines(&head, facts.message.as_deref())
}

/// The notice as a terminal shows it: a blank line first (the user may be
/// mid-line), CR LF after each line (the terminal may be in raw mode), at
/// most [`MAX_NOTICE_BYTES`].
fn lines(head: &str, message: Option<&str>) -> String {
    let mut out = String::from("\r\n");
    out.push_str(head);
    out.push_str("\r\n");
    if let Some(message) = message.filter(|m| !m.trim().is_empty()) {
        out.push_str("Bulwark: ");
        out.push_str(&sanitised(
            message,
            bulwark_policy::shell::MAX_NOTICE_MESSAGE,
        ));
        out.push_str("\r\n");
    }
    if out.len() > MAX_NOTICE_BYTES {
        crate::text::clip(&mut out, MAX_NOTICE_BYTES - 2);
        out.push_str("\r\n");
    }
    out
}

/// `text` fit for a terminal: whitespace controls become spaces, every
/// other control or bidirectional formatting character becomes `?`, and
/// the result is cut to `max` bytes (marked with `...`).
pub fn sanitised(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' | '\u{b}' | '\u{c}' => ' ',
            c if is_terminal_control(c) => '?',
            c => c,
        })
        .collect();
    if out.len() > max {
        crate::text::clip(&mut out, max.saturating_sub(3));
        out.push_str("...");
    }
    out
}

/// `1h 02m 03s`, `5m 07s`, `42s`.
pub fn duration_text(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m {s:02}s"),
    }
}

/// Is this utmp `ut_line` a terminal a notice may go to, as a path under
/// the device directory? Only `ttyX` and `pts/N` names: utmp is written by
/// other programs, so no `..`, no other directory, nothing else.
pub fn terminal_path(line: &str) -> Option<&str> {
    if line.len() > MAX_LINE_BYTES {
        return None;
    }
    let plain = |s: &str, ok: fn(u8) -> bool| !s.is_empty() && s.bytes().all(ok);
    if let Some(number) = line.strip_prefix("pts/") {
        return plain(number, |b| b.is_ascii_digit()).then_some(line);
    }
    if let Some(rest) = line.strip_prefix("tty") {
        return plain(rest, |b| b.is_ascii_alphanumeric()).then_some(line);
    }
    None
}

/// The terminals to write to: each acceptable line once, in utmp order,
/// at most [`MAX_TERMINALS`]. Also how many lines were refused.
pub fn terminals<'a>(lines: impl IntoIterator<Item = &'a str>) -> (Vec<String>, usize) {
    let mut chosen: Vec<String> = Vec::new();
    let mut refused = 0;
    for line in lines {
        match terminal_path(line) {
            Some(path) if chosen.iter().any(|c| c == path) => {}
            Some(path) if chosen.len() < MAX_TERMINALS => chosen.push(path.to_owned()),
            _ => refused += 1,
        }
    }
    (chosen, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts(reason: &str) -> NoticeFacts {
        NoticeFacts {
            grantee: "alice".into(),
            tenant: "Acme Dental".into(),
            reason: reason.into(),
            account: "root".into(),
            expires_at: 1_796_601_331,
            message: None,
        }
    }

    fn check(actual: &str, expect: &str) {
        assert_eq!(actual, expect);
    }

    #[test]
    fn the_open_and_the_close_read_like_wall() {
        check(
            &opened(&facts("ticket 4711: printer")),
            "\r\nBulwark: remote shell opened by alice for Acme Dental (as root, until 2026-12-06T23:55:31Z): ticket 4711: printer\r\n",
        );
        check(
            &closed(&facts("x"), 3723),
            "\r\nBulwark: remote shell by alice for Acme Dental (as root) closed after 1h 02m 03s\r\n",
        );
        let mut with_message = facts("x");
        with_message.message = Some("Questions? Call 555-0100.".into());
        check(
            &closed(&with_message, 42),
            "\r\nBulwark: remote shell by alice for Acme Dental (as root) closed after 42s\r\nBulwark: Questions? Call 555-0100.\r\n",
        );
    }

    #[test]
    fn escape_sequences_in_the_reason_arrive_as_plain_text() {
        let text = opened(&facts(
            "fix\x1b[2J\x1b]0;owned\x07\r\nroot# \u{9b}31m \u{202e}gnp.exe\x7f",
        ));
        assert!(text.ends_with(": fix?[2J?]0;owned?  root# ?31m ?gnp.exe?\r\n"));
    }

    #[test]
    fn long_parts_are_cut_and_marked() {
        let text = opened(&facts(&"é".repeat(400)));
        let reason = text.rsplit(": ").next().expect("reason");
        assert!(reason.ends_with("...\r\n"));
        assert!(reason.len() <= MAX_REASON_BYTES + 2);
        assert_eq!(sanitised("abcdef", 5), "ab...");
        assert_eq!(sanitised("abc", 3), "abc");
    }

    #[test]
    fn only_what_the_setting_asks_for() {
        let both = ShellNotice {
            at_start: true,
            at_end: true,
            message: None,
        };
        let start_only = ShellNotice {
            at_end: false,
            ..both.clone()
        };
        assert!(wanted(Some(&both), Moment::Start) && wanted(Some(&both), Moment::End));
        assert!(wanted(Some(&start_only), Moment::Start));
        assert!(!wanted(Some(&start_only), Moment::End));
        assert!(!wanted(None, Moment::Start) && !wanted(None, Moment::End));
    }

    #[test]
    fn only_plain_terminal_names_are_written_to() {
        for good in ["pts/0", "pts/17", "tty1", "ttyS0", "ttyUSB3"] {
            assert_eq!(terminal_path(good), Some(good), "{good}");
        }
        for bad in [
            "",
            "pts/",
            "pts/../../etc/passwd",
            "pts/1/x",
            "tty",
            "tty1/../sda",
            "../tty1",
            "/dev/tty1",
            ":0",
            "console",
            "sda",
            "pts/0 ",
            "tty-1",
            "pts/00000000000000000000000000001",
        ] {
            assert_eq!(terminal_path(bad), None, "{bad:?}");
        }
        assert_eq!(
            terminals(["pts/0", "tty1", "pts/0", ":0", "pts/../x"]),
            (vec!["pts/0".to_owned(), "tty1".to_owned()], 2)
        );
        let many: Vec<String> = (0..MAX_TERMINALS + 3).map(|n| format!("pts/{n}")).collect();
        let (chosen, refused) = terminals(many.iter().map(String::as_str));
        assert_eq!((chosen.len(), refused), (MAX_TERMINALS, 3));
    }

    #[test]
    fn durations() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(307), "5m 07s");
        assert_eq!(duration_text(8 * 3600), "8h 00m 00s");
    }

    proptest! {
        #[test]
        fn no_control_byte_but_the_line_ends_reaches_a_terminal(
            grantee in any::<String>(),
            tenant in any::<String>(),
            reason in any::<String>(),
            account in any::<String>(),
            message in proptest::option::of(any::<String>()),
            expires_at in any::<u32>(),
            lasted in any::<u64>(),
        ) {
            let facts = NoticeFacts { grantee, tenant, reason, account, expires_at: u64::from(expires_at), message };
            for text in [opened(&facts), closed(&facts, lasted)] {
                prop_assert!(text.len() <= MAX_NOTICE_BYTES);
                prop_assert!(text.ends_with("\r\n"));
                prop_assert!(!text.chars().any(|c| is_terminal_control(c) && c != '\r' && c != '\n'));
                // Every CR is followed by LF, and every LF preceded by CR.
                prop_assert_eq!(text.matches("\r\n").count(), text.matches('\r').count());
                prop_assert_eq!(text.matches('\r').count(), text.matches('\n').count());
            }
        }
    }
}
