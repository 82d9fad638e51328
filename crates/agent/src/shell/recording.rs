//! A shell session's recording in asciicast v2 (RFD 0015 section 5): a
//! header line, then `[seconds, "o", text]` for output and `[seconds, "i",
//! text]` for input, one JSON array a line. Bounded: past the cap one
//! `"m"` marker says the recording stopped, and the session goes on.
//! Pure: time is an argument.

use sha2::{Digest, Sha256};

/// Largest recording kept: 8 MiB.
pub const MAX_RECORDING_BYTES: usize = 8 * 1024 * 1024;

/// Room kept for the truncation marker.
const MARKER_ROOM: usize = 64;

#[derive(Debug)]
pub struct Recording {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
    /// Bytes of a UTF-8 sequence split across two reads, per direction.
    pending_output: Vec<u8>,
    pending_input: Vec<u8>,
}

/// The finished recording and what the log keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub bytes: Vec<u8>,
    pub sha256: [u8; 32],
    pub truncated: bool,
}

impl Recording {
    /// Starts a recording of a `cols` x `rows` terminal opened at `unix_secs`.
    pub fn new(cols: u16, rows: u16, unix_secs: u64, cap: usize) -> Self {
        let header = serde_json::json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": unix_secs,
            "env": {"TERM": "xterm-256color"},
        });
        let mut bytes = header.to_string().into_bytes();
        bytes.push(b'\n');
        Self {
            bytes,
            cap: cap.max(MARKER_ROOM * 2),
            truncated: false,
            pending_output: Vec::new(),
            pending_input: Vec::new(),
        }
    }

    pub fn output(&mut self, elapsed_secs: f64, data: &[u8]) {
        let text = take_text(&mut self.pending_output, data);
        self.event(elapsed_secs, "o", &text);
    }

    pub fn input(&mut self, elapsed_secs: f64, data: &[u8]) {
        let text = take_text(&mut self.pending_input, data);
        self.event(elapsed_secs, "i", &text);
    }

    fn event(&mut self, elapsed_secs: f64, kind: &str, text: &str) {
        if self.truncated || text.is_empty() {
            return;
        }
        let line = event_line(elapsed_secs, kind, text);
        if self.bytes.len() + line.len() > self.cap - MARKER_ROOM {
            self.truncated = true;
            let marker = event_line(elapsed_secs, "m", "recording truncated");
            self.bytes.extend_from_slice(&marker);
            return;
        }
        self.bytes.extend_from_slice(&line);
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn finish(self) -> Finished {
        Finished {
            sha256: Sha256::digest(&self.bytes).into(),
            bytes: self.bytes,
            truncated: self.truncated,
        }
    }
}

fn event_line(elapsed_secs: f64, kind: &str, text: &str) -> Vec<u8> {
    // Millisecond precision, as asciinema writes.
    let at = (elapsed_secs.max(0.0) * 1000.0).round() / 1000.0;
    let mut line = serde_json::json!([at, kind, text]).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// The text of `pending` + `data`, keeping an incomplete UTF-8 sequence at
/// the end for the next read; other invalid bytes become U+FFFD.
fn take_text(pending: &mut Vec<u8>, data: &[u8]) -> String {
    pending.extend_from_slice(data);
    let keep = incomplete_tail(pending);
    let tail = pending.split_off(pending.len() - keep);
    let text = String::from_utf8_lossy(pending).into_owned();
    *pending = tail;
    text
}

/// How many bytes at the end start a UTF-8 sequence that is not complete yet.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(finished: &Finished) -> Vec<serde_json::Value> {
        std::str::from_utf8(&finished.bytes)
            .expect("ok")
            .lines()
            .map(|l| serde_json::from_str(l).expect("ok"))
            .collect()
    }

    #[test]
    fn header_then_output_and_input_events() {
        let mut r = Recording::new(80, 24, 1_800_000_000, MAX_RECORDING_BYTES);
        r.input(0.5, b"echo hi\r");
        r.output(0.51234, b"hi\r\n\x1b[1m$ ");
        let finished = r.finish();
        let lines = lines(&finished);
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 80);
        assert_eq!(lines[0]["height"], 24);
        assert_eq!(lines[1], serde_json::json!([0.5, "i", "echo hi\r"]));
        assert_eq!(
            lines[2],
            serde_json::json!([0.512, "o", "hi\r\n\u{1b}[1m$ "])
        );
        assert_eq!(
            finished.sha256,
            <[u8; 32]>::from(Sha256::digest(&finished.bytes))
        );
        assert!(!finished.truncated);
    }

    #[test]
    fn a_character_split_across_reads_is_kept_whole() {
        let mut r = Recording::new(80, 24, 0, MAX_RECORDING_BYTES);
        let euro = "€".as_bytes();
        r.output(0.1, &[b'a', euro[0]]);
        r.output(0.2, &euro[1..]);
        r.output(0.3, &[0xff, b'b']);
        let lines = lines(&r.finish());
        assert_eq!(lines[1][2], "a");
        assert_eq!(lines[2][2], "€");
        assert_eq!(lines[3][2], "\u{fffd}b");
    }

    #[test]
    fn past_the_cap_one_marker_and_nothing_more() {
        let mut r = Recording::new(80, 24, 0, 1024);
        for i in 0..100 {
            r.output(f64::from(i), &[b'x'; 50]);
        }
        let finished = r.finish();
        assert!(finished.truncated);
        assert!(finished.bytes.len() <= 1024);
        let lines = lines(&finished);
        assert_eq!(
            lines.last().expect("ok"),
            &serde_json::json!([lines.last().expect("ok")[0], "m", "recording truncated"])
        );
        assert_eq!(lines.iter().filter(|l| l[1] == "m").count(), 1);
    }

    #[test]
    fn incomplete_tails() {
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail(&[0xE2]), 1);
        assert_eq!(incomplete_tail(&[0xE2, 0x82]), 2);
        assert_eq!(incomplete_tail(&[0xE2, 0x82, 0xAC]), 0);
        assert_eq!(incomplete_tail(&[0xF0, 0x9F, 0x98]), 3);
        assert_eq!(incomplete_tail(&[0x80, 0x80, 0x80]), 0);
    }
}
