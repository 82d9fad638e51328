//! A certificate's notAfter, read from its DER (RFC 5280 §4.1): the one
//! field the TLS expiry check needs, so a walk of five nested values
//! instead of an X.509 library. Pure and fuzzed (`cert_not_after`); the
//! bytes come from whatever server the check dials, verified or not.

/// Reads one DER value: (tag, contents, the rest).
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, rest) = input.split_first().ok_or("truncated")?;
    if tag & 0x1f == 0x1f {
        return Err("multi-byte tags are not used here");
    }
    let (&first, rest) = rest.split_first().ok_or("truncated")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err("bad length");
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("truncated");
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), &'static str> {
    let (tag, contents, rest) = tlv(input)?;
    if tag != want {
        return Err("unexpected structure");
    }
    Ok((contents, rest))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const EXPLICIT_0: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The certificate's notAfter in Unix seconds (negative before 1970).
pub fn not_after(der: &[u8]) -> Result<i64, &'static str> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    if tbs.first() == Some(&EXPLICIT_0) {
        tbs = tlv(tbs)?.2; // version
    }
    let (_, tbs) = expect(tbs, INTEGER)?; // serialNumber
    let (_, tbs) = expect(tbs, SEQUENCE)?; // signature
    let (_, tbs) = expect(tbs, SEQUENCE)?; // issuer
    let (validity, _) = expect(tbs, SEQUENCE)?;
    let (_, _, validity) = tlv(validity)?; // notBefore
    let (tag, time, _) = tlv(validity)?;
    parse_time(tag, time)
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950 to 2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), as RFC 5280 §4.1.2.5 requires them.
fn parse_time(tag: u8, text: &[u8]) -> Result<i64, &'static str> {
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return Err("notAfter is not a time in RFC 5280's form"),
    };
    if rest[10] != b'Z' {
        return Err("notAfter is not in UTC");
    }
    let [month, day, hour, minute, second] = [0, 2, 4, 6, 8].map(|i| digits(&rest[i..i + 2]));
    let (month, day, hour, minute, second) = (month?, day?, hour?, minute?, second?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err("notAfter is not a valid time");
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(text: &[u8]) -> Result<i64, &'static str> {
    text.iter().try_fold(0i64, |acc, b| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + i64::from(b - b'0'))
        } else {
            Err("notAfter has a non-digit")
        }
    })
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whole days from `now` to `not_after`; 0 once it has passed.
pub fn days_left(not_after: i64, now: u64) -> u64 {
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    u64::try_from(not_after.saturating_sub(now).div_euclid(86_400)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(year: i32, month: u8, day: u8) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(vec!["example.test".to_owned()]).expect("params");
        params.not_after = rcgen::date_time_ymd(year, month, day);
        params
            .self_signed(&rcgen::KeyPair::generate().expect("key"))
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn not_after_is_read_from_real_certificates() {
        // 2030-01-02T00:00:00Z and 2049-12-31 (UTCTime), 2051-06-01 (GeneralizedTime).
        assert_eq!(not_after(&certificate(2030, 1, 2)), Ok(1_893_542_400));
        assert_eq!(not_after(&certificate(2049, 12, 31)), Ok(2_524_521_600));
        assert_eq!(not_after(&certificate(2051, 6, 1)), Ok(2_569_190_400));
    }

    #[test]
    fn days_left_round_down_and_stop_at_zero() {
        assert_eq!(days_left(86_400 * 3, 0), 3);
        assert_eq!(days_left(86_400 * 3 - 1, 0), 2);
        assert_eq!(days_left(10, 20), 0);
        assert_eq!(days_left(i64::MIN, u64::MAX), 0);
    }

    #[test]
    fn malformed_certificates_are_errors_not_panics() {
        let good = certificate(2030, 1, 2);
        for cut in 0..good.len() {
            assert!(not_after(&good[..cut]).is_err(), "cut at {cut}");
        }
        for (tag, text) in [
            (UTC_TIME, &b"3001020000000"[..]),
            (UTC_TIME, b"300102000000+"),
            (UTC_TIME, b"301302000000Z"),
            (UTC_TIME, b"3001020000a0Z"),
            (GENERALIZED_TIME, b"20300102000000"),
            (0x04, b"300102000000Z"),
        ] {
            assert!(parse_time(tag, text).is_err(), "{text:?}");
        }
        assert_eq!(parse_time(UTC_TIME, b"700101000001Z"), Ok(1));
        assert_eq!(parse_time(UTC_TIME, b"491231235959Z"), Ok(2_524_607_999));
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(tlv(&[0x1f, 0x01, 0x00]).is_err());
    }
}
