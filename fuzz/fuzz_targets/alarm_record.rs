//! An agent's alarm record reaches an auditor's machine from an endpoint:
//! the reader must never panic, keep to its limits, and read back exactly
//! what it reads when the alarms are written again.
#![no_main]

use bulwark_protocol::alarm_record::{
    MAX_ALARMS, MAX_FIELD_BYTES, MAX_REASON_BYTES, parse_record,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(alarms) = parse_record(text) else {
        return;
    };
    assert!(alarms.len() <= MAX_ALARMS);
    for alarm in &alarms {
        assert!(alarm.subject.len() <= MAX_FIELD_BYTES && alarm.reason.len() <= MAX_REASON_BYTES);
        let line = alarm.to_line().expect("a read alarm writes");
        assert_eq!(parse_record(&line).expect("a written alarm reads"), vec![alarm.clone()]);
    }
});
