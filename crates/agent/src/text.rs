//! Text the agent sends is cut to the protocol's limits without splitting a
//! character (`bulwark_protocol::Limits::max_text` and friends).

/// Cuts `s` to at most `max` bytes without splitting a char.
pub(crate) fn clip(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub(crate) fn clipped(text: &str, max: usize) -> String {
    let mut s = text.to_owned();
    clip(&mut s, max);
    s
}

/// Unix seconds as an RFC 3339 UTC time, for people reading the agent's
/// records (days to a civil date: Howard Hinnant's algorithm).
pub(crate) fn utc_text(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rest = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_read_as_utc_dates() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_text(1_796_601_331), "2026-12-06T23:55:31Z");
        assert_eq!(utc_text(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn never_splits_a_char() {
        assert_eq!(clipped("héllo", 2), "h");
        assert_eq!(clipped("héllo", 3), "hé");
        assert_eq!(clipped("abc", 10), "abc");
        assert_eq!(clipped("abc", 0), "");
        let mut s = "aé".repeat(10); // 30 bytes, 'é' at odd offsets
        clip(&mut s, 2);
        assert_eq!(s, "a");
    }
}
