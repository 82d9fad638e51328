//! A shell notice is written to people's terminals from operator-written
//! text (the grant's reason) and utmp lines other programs wrote: whatever
//! the bytes, no control character but the added line ends comes out, the
//! notice stays within its cap, and only plain terminal names are chosen.
#![no_main]

use bulwark_agent::shell::notice::{
    MAX_NOTICE_BYTES, MAX_TERMINALS, NoticeFacts, closed, opened, terminal_path, terminals,
};
use bulwark_policy::shell::is_terminal_control;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\u{1f}').map(str::to_owned);
    let mut next = || parts.next().unwrap_or_default();
    let facts = NoticeFacts {
        grantee: next(),
        tenant: next(),
        reason: next(),
        account: next(),
        expires_at: u64::from(data.len() as u32) * 1_000_003,
        message: Some(next()),
    };
    for notice in [opened(&facts), closed(&facts, data.len() as u64)] {
        assert!(notice.len() <= MAX_NOTICE_BYTES);
        assert!(
            !notice
                .chars()
                .any(|c| is_terminal_control(c) && c != '\r' && c != '\n')
        );
    }
    let (chosen, _) = terminals(text.split('\n'));
    assert!(chosen.len() <= MAX_TERMINALS);
    for line in &chosen {
        assert_eq!(terminal_path(line), Some(line.as_str()));
        assert!(!line.contains("..") && !line.starts_with('/'));
    }
});
