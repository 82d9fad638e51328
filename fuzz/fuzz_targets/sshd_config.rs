//! An sshd configuration is text any administrator or package writes: the
//! posture parser must never panic, loop or read more files than its
//! limit on any bytes. The input is cut at the first NUL byte: the main
//! file, then the text every `Include` reads (itself able to include).
#![no_main]

use bulwark_agent::checks::posture::{MAX_SSHD_FILES, root_device, sshd_settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (main, included) = text.split_once('\0').unwrap_or((&text, ""));
    let result = sshd_settings(main, "sshd_config", &mut |pattern| {
        vec![(format!("/etc/ssh/{pattern}"), included.to_owned())]
    });
    if let Ok(settings) = result {
        assert!(settings.files.len() <= MAX_SSHD_FILES);
        assert!(!settings.permit_root_login.chars().any(char::is_whitespace));
    }
    let _ = root_device(main);
});
