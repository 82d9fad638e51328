//! What a SIEM receives for one transparency-log entry: an RFC 5424 syslog
//! message (framed for RFC 5425) or one NDJSON line. Pure: no I/O, no
//! clock; every output has a known maximum size.
//!
//! Syslog message (RFC 5424 §6), at most [`MAX_SYSLOG_MESSAGE`] bytes:
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME bulwark - MSGID [bulwark@32473 log=".." idx=".." actor=".." target=".." tenant=".."] MSG
//! ```
//!
//! - PRI: facility (13 log audit, or 10 authpriv) × 8 + severity (5
//!   notice; 4 warning for `alert.*` actions).
//! - TIMESTAMP: the entry's `at`, RFC 3339 UTC with milliseconds; `-` if
//!   it is outside years 0000–9999.
//! - MSGID: the action, non-printable ASCII replaced by `_`, at most 32
//!   characters; `-` if empty.
//! - STRUCTURED-DATA: parameter values are cut to [`MAX_PARAM_BYTES`]
//!   (at a character boundary), control characters become U+FFFD, then
//!   `"`, `\` and `]` are escaped with `\` (§6.3.3). `tenant` is absent
//!   for the MSP log.
//! - MSG: `actor action target: detail`, control characters replaced by a
//!   space, no BOM, cut so the whole message fits.
//!
//! The exact leaf bytes are in the NDJSON formats; syslog is for reading and
//! searching, and names the entry (`log`, `idx`) so it can be fetched.

use std::fmt::Write as _;

use base64::Engine as _;
use bulwark_store::AuditLeaf;
use serde::Serialize;

/// Largest syslog message (SYSLOG-MSG, without the RFC 5425 length prefix).
/// RFC 5425 §4.3.1: receivers must take 2048 octets and should take 8192;
/// rsyslog's default limit is 8096.
pub const MAX_SYSLOG_MESSAGE: usize = 4096;
/// Largest value of one structured-data parameter, before escaping.
pub const MAX_PARAM_BYTES: usize = 256;
/// Largest MSGID (RFC 5424 §6.2.7).
pub const MAX_MSGID: usize = 32;
/// Largest HOSTNAME (RFC 5424 §6.2.4).
pub const MAX_HOSTNAME: usize = 255;
/// The SD-ID: `bulwark` at the private enterprise number of RFC 5612's
/// documentation examples.
pub const SD_ID: &str = "bulwark@32473";
/// APP-NAME.
pub const APP_NAME: &str = "bulwark";

/// Severity 5 (notice).
const SEVERITY_NOTICE: u8 = 5;
/// Severity 4 (warning), for `alert.*` actions.
const SEVERITY_WARNING: u8 = 4;

/// One entry to export: where it sits and its exact leaf bytes, decoded if
/// it is an audit event leaf (every entry is one today; other leaf kinds
/// are exported with their bytes and without the audit fields).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub log_id: &'a str,
    pub idx: u64,
    pub leaf_bytes: &'a [u8],
    pub leaf: Option<&'a AuditLeaf>,
}

/// RFC 3339 UTC with milliseconds (`2026-11-24T14:47:43.123Z`), or `None`
/// outside years 0000–9999.
pub fn rfc3339_millis(at_ms: i64) -> Option<String> {
    let nanos = i128::from(at_ms).checked_mul(1_000_000)?;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    ))
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A HOSTNAME field: printable ASCII, at most 255, `-` if nothing is left.
pub fn hostname_field(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_HOSTNAME)
        .collect();
    if cleaned.is_empty() {
        "-".to_owned()
    } else {
        cleaned
    }
}

/// MSGID: printable ASCII (33..=126), at most 32, `-` if empty.
fn msgid(action: &str) -> String {
    let id: String = action
        .chars()
        .take(MAX_MSGID)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if id.is_empty() { "-".to_owned() } else { id }
}

fn is_control(c: char) -> bool {
    c.is_control()
}

/// Appends `value` as an SD PARAM-VALUE body: cut, controls replaced,
/// `"` `\` `]` escaped (RFC 5424 §6.3.3).
fn push_param_value(out: &mut String, value: &str) {
    for c in cut(value, MAX_PARAM_BYTES).chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if is_control(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

fn push_param(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    push_param_value(out, value);
    out.push('"');
}

/// The syslog severity of an action.
pub fn severity(action: &str) -> u8 {
    if action.starts_with("alert.") {
        SEVERITY_WARNING
    } else {
        SEVERITY_NOTICE
    }
}

/// The RFC 5424 SYSLOG-MSG for `entry` (at most [`MAX_SYSLOG_MESSAGE`]
/// bytes, valid UTF-8). `hostname` should come from [`hostname_field`]; it
/// is cleaned again here.
pub fn syslog_message(entry: &Entry<'_>, facility: u8, hostname: &str) -> String {
    let facility = facility.min(23);
    let (at, action, actor, target, tenant, detail) = match entry.leaf {
        Some(leaf) => (
            Some(leaf.at),
            leaf.action.as_str(),
            leaf.actor.as_str(),
            leaf.target.as_str(),
            leaf.tenant.as_deref(),
            leaf.detail.as_str(),
        ),
        None => (None, "", "", "", None, ""),
    };
    let pri = u16::from(facility) * 8 + u16::from(severity(action));
    let timestamp = at
        .and_then(rfc3339_millis)
        .unwrap_or_else(|| "-".to_owned());
    let mut out = String::with_capacity(512);
    let _ = write!(
        out,
        "<{pri}>1 {timestamp} {} {APP_NAME} - {} [{SD_ID}",
        hostname_field(hostname),
        msgid(action),
    );
    push_param(&mut out, "log", entry.log_id);
    push_param(&mut out, "idx", &entry.idx.to_string());
    if entry.leaf.is_some() {
        push_param(&mut out, "actor", actor);
        push_param(&mut out, "target", target);
        if let Some(tenant) = tenant {
            push_param(&mut out, "tenant", tenant);
        }
    }
    out.push(']');
    // The header and structured data are bounded well below the maximum
    // (see `header_and_sd_are_bounded`); MSG takes what is left.
    let room = MAX_SYSLOG_MESSAGE.saturating_sub(out.len() + 1);
    let msg = match entry.leaf {
        Some(_) if detail.is_empty() => format!("{actor} {action} {target}"),
        Some(_) => format!("{actor} {action} {target}: {detail}"),
        None => format!(
            "entry {} of log {} is not an audit event",
            entry.idx, entry.log_id
        ),
    };
    let msg: String = msg
        .chars()
        .map(|c| if is_control(c) { ' ' } else { c })
        .collect();
    let msg = cut(&msg, room);
    if !msg.is_empty() {
        out.push(' ');
        out.push_str(msg);
    }
    out
}

/// RFC 5425 §4.3 octet-counting frame: `MSGLEN SP SYSLOG-MSG`.
pub fn octet_frame(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// One NDJSON record (field order is the line's).
#[derive(Serialize)]
struct Line<'a> {
    log: &'a str,
    idx: u64,
    /// RFC 3339 UTC with milliseconds (`null` if out of range or unknown).
    at: Option<String>,
    /// Unix milliseconds.
    at_ms: Option<i64>,
    tenant: Option<&'a str>,
    actor: Option<&'a str>,
    action: Option<&'a str>,
    target: Option<&'a str>,
    detail: Option<&'a str>,
    /// Hex of the RFC 6962 leaf hash, `SHA-256(0x00 || leaf)`: what the
    /// tree (and so every checkpoint) commits to.
    leaf_sha256: String,
    /// Base64 (standard, padded) of the exact leaf bytes.
    leaf: String,
}

/// The NDJSON line for `entry`, newline included. JSON escapes every
/// control character, so the line holds exactly one `\n`, at its end.
pub fn ndjson_line(entry: &Entry<'_>) -> String {
    let leaf = entry.leaf;
    let line = Line {
        log: entry.log_id,
        idx: entry.idx,
        at: leaf.and_then(|l| rfc3339_millis(l.at)),
        at_ms: leaf.map(|l| l.at),
        tenant: leaf.and_then(|l| l.tenant.as_deref()),
        actor: leaf.map(|l| l.actor.as_str()),
        action: leaf.map(|l| l.action.as_str()),
        target: leaf.map(|l| l.target.as_str()),
        detail: leaf.map(|l| l.detail.as_str()),
        leaf_sha256: hex::encode(bulwark_translog::leaf_hash(entry.leaf_bytes).0),
        leaf: base64::engine::general_purpose::STANDARD.encode(entry.leaf_bytes),
    };
    // Serialising plain strings and numbers cannot fail.
    let mut text = serde_json::to_string(&line).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    /// A strict reader of what [`syslog_message`] writes (RFC 5424 §6
    /// grammar, with our one SD-ELEMENT): header fields and the unescaped
    /// parameters, or why it is not a valid message.
    #[derive(Debug, PartialEq)]
    struct Parsed {
        pri: u16,
        timestamp: String,
        hostname: String,
        msgid: String,
        params: Vec<(String, String)>,
        msg: String,
    }

    fn parse(message: &str) -> Result<Parsed, String> {
        let rest = message.strip_prefix('<').ok_or("no <")?;
        let (pri, rest) = rest.split_once('>').ok_or("no >")?;
        if pri.is_empty() || pri.len() > 3 || !pri.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad PRI {pri:?}"));
        }
        let pri: u16 = pri.parse().map_err(|_| "PRI")?;
        if pri > 191 {
            return Err("PRI > 191".into());
        }
        let rest = rest.strip_prefix("1 ").ok_or("VERSION")?;
        let mut fields = rest.splitn(6, ' ');
        let mut next = |what: &str| fields.next().ok_or(format!("no {what}"));
        let timestamp = next("TIMESTAMP")?.to_owned();
        let hostname = next("HOSTNAME")?.to_owned();
        let app = next("APP-NAME")?;
        let procid = next("PROCID")?;
        let msgid = next("MSGID")?.to_owned();
        let sd = next("STRUCTURED-DATA")?;
        for (field, max) in [(&hostname, 255), (&msgid, 32)] {
            if field.is_empty()
                || field.len() > max
                || !field.bytes().all(|b| (33..=126).contains(&b))
            {
                return Err(format!("bad header field {field:?}"));
            }
        }
        if app != APP_NAME || procid != "-" {
            return Err("APP-NAME or PROCID".into());
        }
        // STRUCTURED-DATA: one element, parsed by characters.
        let mut chars = sd.char_indices().peekable();
        let expect = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, c: char| {
            match chars.next() {
                Some((_, got)) if got == c => Ok(()),
                other => Err(format!("expected {c:?}, got {other:?}")),
            }
        };
        expect(&mut chars, '[')?;
        for c in SD_ID.chars() {
            expect(&mut chars, c)?;
        }
        let mut params = Vec::new();
        let end = loop {
            match chars.next() {
                Some((i, ']')) => break i + 1,
                Some((_, ' ')) => {}
                other => return Err(format!("expected SP or ], got {other:?}")),
            }
            let mut name = String::new();
            loop {
                match chars.next() {
                    Some((_, '=')) => break,
                    Some((_, c)) if c.is_ascii_graphic() && !matches!(c, '"' | ']') => name.push(c),
                    other => return Err(format!("bad PARAM-NAME char {other:?}")),
                }
            }
            if name.is_empty() || name.len() > 32 {
                return Err("PARAM-NAME length".into());
            }
            expect(&mut chars, '"')?;
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c @ ('"' | '\\' | ']'))) => value.push(c),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, ']')) => return Err("unescaped ]".into()),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated PARAM-VALUE".into()),
                }
            }
            params.push((name, value));
        };
        // The rest of `rest` after the element: nothing, or SP MSG.
        let after_sd = &rest[rest.len() - sd.len() + end..];
        let msg = match after_sd {
            "" => String::new(),
            text => text.strip_prefix(' ').ok_or("no SP before MSG")?.to_owned(),
        };
        Ok(Parsed {
            pri,
            timestamp,
            hostname,
            msgid,
            params,
            msg,
        })
    }

    /// CBOR head: major type `major`, argument `n`, shortest form.
    fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        match n {
            0..=23 => out.push(m | n as u8),
            24..=0xff => out.extend([m | 24, n as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend((n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(m | 26);
                out.extend((n as u32).to_be_bytes());
            }
            _ => {
                out.push(m | 27);
                out.extend(n.to_be_bytes());
            }
        }
    }

    /// The leaf bytes of RFD 0003 ("Audit event leaf, version 1"), encoded
    /// here by hand, independently of the store's encoder.
    fn leaf_bytes(
        at: i64,
        tenant: Option<&str>,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        head(&mut out, 5, if tenant.is_some() { 7 } else { 6 });
        head(&mut out, 0, 0);
        head(&mut out, 0, 1);
        head(&mut out, 0, 1);
        if at >= 0 {
            head(&mut out, 0, at as u64);
        } else {
            head(&mut out, 1, !(at as u64));
        }
        let text = |out: &mut Vec<u8>, key: u64, value: &str| {
            head(out, 0, key);
            head(out, 3, value.len() as u64);
            out.extend(value.as_bytes());
        };
        if let Some(tenant) = tenant {
            text(&mut out, 2, tenant);
        }
        text(&mut out, 3, actor);
        text(&mut out, 4, action);
        text(&mut out, 5, target);
        text(&mut out, 6, detail);
        out
    }

    fn leaf(
        tenant: Option<&str>,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> (AuditLeaf, Vec<u8>) {
        leaf_at(1_764_000_000_123, tenant, actor, action, target, detail)
    }

    fn leaf_at(
        at: i64,
        tenant: Option<&str>,
        actor: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) -> (AuditLeaf, Vec<u8>) {
        let bytes = leaf_bytes(at, tenant, actor, action, target, detail);
        let leaf = AuditLeaf::decode(&bytes).unwrap();
        (leaf, bytes)
    }

    #[test]
    fn example_message() {
        let (leaf, bytes) = leaf(
            Some("4f8c7f1e-0000-4000-8000-000000000001"),
            "alice",
            "job.approved",
            "job-7",
            "",
        );
        let entry = Entry {
            log_id: "4f8c7f1e-0000-4000-8000-000000000001",
            idx: 42,
            leaf_bytes: &bytes,
            leaf: Some(&leaf),
        };
        assert_eq!(
            syslog_message(&entry, 13, "bulwark-1"),
            "<109>1 2025-11-24T16:00:00.123Z bulwark-1 bulwark - job.approved \
             [bulwark@32473 log=\"4f8c7f1e-0000-4000-8000-000000000001\" idx=\"42\" \
             actor=\"alice\" target=\"job-7\" tenant=\"4f8c7f1e-0000-4000-8000-000000000001\"] \
             alice job.approved job-7"
        );
        let mut framed = Vec::new();
        octet_frame("<109>1 - - bulwark - - -", &mut framed);
        assert_eq!(framed, b"24 <109>1 - - bulwark - - -");
    }

    #[test]
    fn escaping_severity_and_facility() {
        let (leaf, bytes) = leaf(
            None,
            "a\"b\\c]d",
            "alert.login_burst",
            "x\ny",
            "line1\nline2",
        );
        let entry = Entry {
            log_id: "msp",
            idx: 0,
            leaf_bytes: &bytes,
            leaf: Some(&leaf),
        };
        let message = syslog_message(&entry, 10, "h");
        assert!(message.starts_with("<84>1 "), "{message}");
        assert!(message.contains(r#"actor="a\"b\\c\]d""#), "{message}");
        assert!(message.contains("target=\"x\u{FFFD}y\""), "{message}");
        assert!(!message.contains("tenant="), "{message}");
        assert!(message.ends_with("x y: line1 line2"), "{message}");
        let parsed = parse(&message).unwrap();
        assert_eq!(parsed.params[2], ("actor".into(), "a\"b\\c]d".into()));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_millis(0).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(-1).unwrap(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339_millis(253_402_300_799_999).unwrap(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(rfc3339_millis(253_402_300_800_000), None);
        assert_eq!(rfc3339_millis(i64::MIN), None);
        assert_eq!(rfc3339_millis(i64::MAX), None);
    }

    #[test]
    fn non_audit_leaves_are_still_exported() {
        let bytes = b"\xff\x00 not cbor";
        let entry = Entry {
            log_id: "msp",
            idx: 9,
            leaf_bytes: bytes,
            leaf: None,
        };
        let parsed = parse(&syslog_message(&entry, 13, "h")).unwrap();
        assert_eq!(parsed.timestamp, "-");
        assert_eq!(parsed.msgid, "-");
        let line: serde_json::Value = serde_json::from_str(&ndjson_line(&entry)).unwrap();
        assert_eq!(line["idx"], 9);
        assert_eq!(line["action"], serde_json::Value::Null);
        assert_eq!(line["leaf"], "/wAgbm90IGNib3I=");
    }

    #[test]
    fn ndjson_example() {
        let (leaf, bytes) = leaf(
            None,
            "mallory",
            "login.failed",
            "mallory",
            "password; from 127.0.0.2",
        );
        let entry = Entry {
            log_id: "msp",
            idx: 17,
            leaf_bytes: &bytes,
            leaf: Some(&leaf),
        };
        let line = ndjson_line(&entry);
        // The example of RFD 0003, "SIEM export".
        assert_eq!(
            line,
            concat!(
                r#"{"log":"msp","idx":17,"at":"2025-11-24T16:00:00.123Z","at_ms":1764000000123,"#,
                r#""tenant":null,"actor":"mallory","action":"login.failed","target":"mallory","#,
                r#""detail":"password; from 127.0.0.2","#,
                r#""leaf_sha256":"49dfe67fb8bb34adc288d6e7cb18b55a66e98a2d1168c285c543944f3f6af1df","#,
                r#""leaf":"pgABARsAAAGatpfoewNnbWFsbG9yeQRsbG9naW4uZmFpbGVkBWdtYWxsb3J5BngYcGFzc3dvcmQ7IGZyb20gMTI3LjAuMC4y"}"#,
                "\n"
            )
        );
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["log"], "msp");
        assert_eq!(value["at"], "2025-11-24T16:00:00.123Z");
        assert_eq!(value["at_ms"], 1_764_000_000_123_i64);
        assert_eq!(value["tenant"], serde_json::Value::Null);
        assert_eq!(
            value["leaf_sha256"],
            hex::encode(bulwark_translog::leaf_hash(&bytes).0)
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value["leaf"].as_str().unwrap())
            .unwrap();
        assert_eq!(AuditLeaf::decode(&decoded).unwrap(), leaf);
    }

    /// What a parameter value becomes: cut, controls replaced.
    fn expected_param(value: &str) -> String {
        cut(value, MAX_PARAM_BYTES)
            .chars()
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect()
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,40}",
            "[\"\\\\\\] =\n\r\t\u{0}\u{7f}\u{85}é€😀a-z]{0,600}",
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any leaf text gives a message the strict reader accepts, no longer
        /// than the maximum, whose parameters read back as the (cut,
        /// cleaned) inputs: escaping never breaks the SD framing.
        #[test]
        fn any_leaf_gives_a_valid_message(
            tenant in proptest::option::of(any_text()),
            actor in any_text(),
            action in any_text(),
            target in any_text(),
            detail in any_text(),
            log_id in any_text(),
            idx in any::<u64>(),
            at in any::<i64>(),
            facility in prop_oneof![Just(13u8), Just(10u8)],
            hostname in any_text(),
        ) {
            let (leaf, bytes) = leaf_at(at, tenant.as_deref(), &actor, &action, &target, &detail);
            let entry = Entry { log_id: &log_id, idx, leaf_bytes: &bytes, leaf: Some(&leaf) };
            let message = syslog_message(&entry, facility, &hostname);
            prop_assert!(message.len() <= MAX_SYSLOG_MESSAGE);
            prop_assert!(!message.contains('\n'));
            let parsed = parse(&message).map_err(|e| TestCaseError::fail(format!("{e}: {message}")))?;
            prop_assert_eq!(parsed.pri, u16::from(facility) * 8 + u16::from(severity(&action)));
            prop_assert_eq!(&parsed.hostname, &hostname_field(&hostname));
            let mut expected = vec![
                ("log".to_owned(), expected_param(&log_id)),
                ("idx".to_owned(), idx.to_string()),
                ("actor".to_owned(), expected_param(&actor)),
                ("target".to_owned(), expected_param(&target)),
            ];
            if let Some(t) = &tenant {
                expected.push(("tenant".to_owned(), expected_param(t)));
            }
            prop_assert_eq!(parsed.params, expected);
            if let Some(ts) = rfc3339_millis(at) {
                prop_assert_eq!(parsed.timestamp, ts);
            }
            // MSG is the start of the human line, never a control character.
            prop_assert!(!parsed.msg.chars().any(char::is_control));
            let line = format!("{actor} {action} {target}");
            let line: String = line.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
            let n = parsed.msg.len().min(line.len());
            prop_assert_eq!(&parsed.msg[..n], &line[..n]);
            // The frame's length prefix is the message's length in bytes.
            let mut framed = Vec::new();
            octet_frame(&message, &mut framed);
            let (len, body) = std::str::from_utf8(&framed).unwrap().split_once(' ').unwrap();
            prop_assert_eq!(len.parse::<usize>().unwrap(), body.len());
        }

        /// Any leaf gives one JSON line that reads back to the same fields.
        #[test]
        fn any_leaf_gives_one_json_line(
            tenant in proptest::option::of(any_text()),
            actor in any_text(),
            detail in any_text(),
            idx in any::<u64>(),
            at in any::<i64>(),
        ) {
            let (leaf, bytes) = leaf_at(at, tenant.as_deref(), &actor, "a.b", "t", &detail);
            let entry = Entry { log_id: "msp", idx, leaf_bytes: &bytes, leaf: Some(&leaf) };
            let line = ndjson_line(&entry);
            prop_assert_eq!(line.matches('\n').count(), 1);
            prop_assert!(line.ends_with('\n'));
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(value["idx"].as_u64(), Some(idx));
            prop_assert_eq!(value["at_ms"].as_i64(), Some(at));
            prop_assert_eq!(value["actor"].as_str(), Some(actor.as_str()));
            prop_assert_eq!(value["detail"].as_str(), Some(detail.as_str()));
            prop_assert_eq!(value["tenant"].as_str(), tenant.as_deref());
        }
    }

    /// The bound the MSG room relies on: header and structured data of the
    /// largest inputs stay well below the maximum.
    #[test]
    fn header_and_sd_are_bounded() {
        let worst = "]".repeat(10_000);
        let (leaf, bytes) = leaf(Some(&worst), &worst, &worst, &worst, &worst);
        let entry = Entry {
            log_id: &worst,
            idx: u64::MAX,
            leaf_bytes: &bytes,
            leaf: Some(&leaf),
        };
        let message = syslog_message(&entry, 13, &"h".repeat(1000));
        let parsed = parse(&message).unwrap();
        assert!(message.len() <= MAX_SYSLOG_MESSAGE);
        assert!(
            message.len() - parsed.msg.len() < MAX_SYSLOG_MESSAGE - 512,
            "header + SD take {} bytes",
            message.len() - parsed.msg.len()
        );
    }
}
