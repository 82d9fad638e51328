//! Five-field cron expressions (RFD 0019), parsed by hand: the whole
//! grammar is on the trust path, and this is small enough to audit.
//!
//! `minute hour day-of-month month day-of-week`; each field `*`, `N`,
//! `A-B`, `*/S`, `A-B/S` or `N/S` (from N to the field's end), or a comma
//! list of those. Day of week 0-7, 0 and 7 being Sunday. As in Vixie cron,
//! when both day fields are restricted (neither starts with `*`) a day
//! matches if either does. No names, no `@daily`, no seconds.

use jiff::civil::{Date, DateTime, Weekday};

/// Longest expression accepted, in bytes.
pub const MAX_CRON_BYTES: usize = 100;
/// Most comma-separated items in one field.
pub const MAX_CRON_ITEMS: usize = 16;

/// A parsed expression: one bit per allowed value of each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    /// Bit 0 Sunday … bit 6 Saturday.
    days_of_week: u8,
    day_of_month_restricted: bool,
    day_of_week_restricted: bool,
}

/// Why an expression is refused, for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron expression: {0}")]
pub struct CronError(pub String);

fn err(message: impl Into<String>) -> CronError {
    CronError(message.into())
}

/// One field's allowed values as a bit set over `lo..=hi`.
fn parse_field(text: &str, name: &str, lo: u32, hi: u32) -> Result<u64, CronError> {
    let number = |s: &str| -> Result<u32, CronError> {
        // Digits only (no sign, no spaces), at most two of them.
        if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(format!("{name}: {s:?} is not a number")));
        }
        let n: u32 = s
            .parse()
            .map_err(|_| err(format!("{name}: {s:?} is not a number")))?;
        if n < lo || n > hi {
            return Err(err(format!("{name}: {n} is outside {lo}-{hi}")));
        }
        Ok(n)
    };
    let items: Vec<&str> = text.split(',').collect();
    if items.len() > MAX_CRON_ITEMS {
        return Err(err(format!("{name}: more than {MAX_CRON_ITEMS} items")));
    }
    let mut bits = 0u64;
    for item in items {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = number_any(step, name)?;
                if step == 0 || step > hi {
                    return Err(err(format!("{name}: step {step} outside 1-{hi}")));
                }
                (range, Some(step))
            }
            None => (item, None),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(err(format!("{name}: range {a}-{b} runs backwards")));
            }
            (a, b)
        } else {
            let a = number(range)?;
            // `N/S` runs from N to the end of the field.
            (a, if step.is_some() { hi } else { a })
        };
        let step = step.unwrap_or(1);
        let mut v = from;
        while v <= to {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

/// A step: digits, at most two.
fn number_any(s: &str, name: &str) -> Result<u32, CronError> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!("{name}: step {s:?} is not a number")));
    }
    s.parse()
        .map_err(|_| err(format!("{name}: step {s:?} is not a number")))
}

impl Cron {
    /// Parses an expression: exactly five fields separated by single
    /// spaces or tabs (runs of them allowed), at most [`MAX_CRON_BYTES`].
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        if text.len() > MAX_CRON_BYTES {
            return Err(err(format!("longer than {MAX_CRON_BYTES} bytes")));
        }
        if !text.is_ascii() {
            return Err(err("only ASCII digits, `*`, `,`, `-`, `/` and spaces"));
        }
        let fields: Vec<&str> = text.split_ascii_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(err(format!(
                "five fields (minute hour day-of-month month day-of-week), {} given",
                fields.len()
            )));
        };
        // Bits of values that fit the narrower types; `parse_field` only sets
        // bits in lo..=hi, so these conversions never drop a bit.
        let narrow = |bits: u64| bits as u32;
        let dow_bits = parse_field(dow, "day of week", 0, 7)?;
        // 7 is Sunday too.
        let dow_bits = (dow_bits | (dow_bits >> 7)) & 0x7f;
        Ok(Cron {
            minutes: parse_field(minute, "minute", 0, 59)?,
            hours: narrow(parse_field(hour, "hour", 0, 23)?),
            days_of_month: narrow(parse_field(dom, "day of month", 1, 31)?),
            months: narrow(parse_field(month, "month", 1, 12)?) as u16,
            days_of_week: dow_bits as u8,
            day_of_month_restricted: !dom.starts_with('*'),
            day_of_week_restricted: !dow.starts_with('*'),
        })
    }

    /// Does the expression allow this local date (month and day fields)?
    pub fn matches_date(&self, date: Date) -> bool {
        let month = u32::from(date.month().unsigned_abs());
        if self.months & (1 << month) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << date.day().unsigned_abs()) != 0;
        let dow = self.days_of_week & (1 << weekday_bit(date.weekday())) != 0;
        if self.day_of_month_restricted && self.day_of_week_restricted {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// Does the expression allow this local wall-clock minute (seconds ignored)?
    pub fn matches(&self, local: DateTime) -> bool {
        self.matches_date(local.date()) && self.matches_time(local.hour(), local.minute())
    }

    /// Does the expression allow this hour and minute (any allowed day)?
    pub fn matches_time(&self, hour: i8, minute: i8) -> bool {
        self.hours & (1 << hour.unsigned_abs()) != 0
            && self.minutes & (1 << minute.unsigned_abs()) != 0
    }

    /// The allowed (hour, minute) pairs of a day, earliest first.
    pub fn times(&self) -> impl Iterator<Item = (i8, i8)> + '_ {
        (0i8..24)
            .filter(|h| self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0i8..60)
                    .filter(|m| self.minutes & (1 << m) != 0)
                    .map(move |m| (h, m))
            })
    }
}

/// Sunday 0 … Saturday 6, as cron counts.
fn weekday_bit(day: Weekday) -> u8 {
    day.to_sunday_zero_offset().unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Result<(u64, u32, u32, u16, u8), &str>) {
        let got = Cron::parse(text).map(|c| {
            (
                c.minutes,
                c.hours,
                c.days_of_month,
                c.months,
                c.days_of_week,
            )
        });
        match (got, expect) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "{text}"),
            (Err(g), Err(e)) => assert!(g.0.contains(e), "{text}: {g}"),
            (g, e) => panic!("{text}: got {g:?}, expected {e:?}"),
        }
    }

    #[test]
    fn fields() {
        let all_min = (1u64 << 60) - 1;
        let all_hours = (1u32 << 24) - 1;
        let all_dom = !1u32;
        let all_months = ((1u16 << 13) - 1) & !1;
        check(
            "* * * * *",
            Ok((all_min, all_hours, all_dom, all_months, 0x7f)),
        );
        check("0 3 * * 1", Ok((1, 1 << 3, all_dom, all_months, 1 << 1)));
        check(
            "*/15 0-6/2 1,15 1-12/6 7",
            Ok((
                1 | 1 << 15 | 1 << 30 | 1 << 45,
                1 | 1 << 2 | 1 << 4 | 1 << 6,
                1 << 1 | 1 << 15,
                1 << 1 | 1 << 7,
                1,
            )),
        );
        check(
            "55/2 * * * *",
            Ok((
                1 << 55 | 1 << 57 | 1 << 59,
                all_hours,
                all_dom,
                all_months,
                0x7f,
            )),
        );
        check("0 0 * * 0,7", Ok((1, 1, all_dom, all_months, 1)));
        check(
            "0 0 * * 5-7",
            Ok((1, 1, all_dom, all_months, 1 | 1 << 5 | 1 << 6)),
        );
    }

    #[test]
    fn refusals() {
        check("* * * *", Err("five fields"));
        check("* * * * * *", Err("five fields"));
        check("60 * * * *", Err("outside 0-59"));
        check("* 24 * * *", Err("outside 0-23"));
        check("* * 0 * *", Err("outside 1-31"));
        check("* * * 13 *", Err("outside 1-12"));
        check("* * * * 8", Err("outside 0-7"));
        check("5-1 * * * *", Err("backwards"));
        check("*/0 * * * *", Err("step 0"));
        check("*/61 * * * *", Err("step 61"));
        check("-1 * * * *", Err("not a number"));
        check("+1 * * * *", Err("not a number"));
        check("001 * * * *", Err("not a number"));
        check("* * * JAN *", Err("not a number"));
        check("1,,2 * * * *", Err("not a number"));
        check("1/2/3 * * * *", Err("not a number"));
        check(
            "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 * * * *",
            Err("more than 16"),
        );
        check(
            "* * * * * ",
            Ok((
                (1u64 << 60) - 1,
                (1 << 24) - 1,
                !1u32,
                ((1 << 13) - 1) & !1,
                0x7f,
            )),
        );
        check("é * * * *", Err("ASCII"));
        check(&"1,".repeat(60), Err("longer than"));
    }

    #[test]
    fn day_fields_are_or_when_both_restricted() {
        let d = |s: &str| -> Date { s.parse().expect("date") };
        // 2026-12-07 is a Monday.
        let both = Cron::parse("0 0 1 * 1").expect("parses");
        assert!(both.matches_date(d("2026-12-07")));
        assert!(both.matches_date(d("2026-12-01")));
        assert!(!both.matches_date(d("2026-12-08")));
        let dow_only = Cron::parse("0 0 * * 1").expect("parses");
        assert!(!dow_only.matches_date(d("2026-12-01")));
        let stepped = Cron::parse("0 0 */2 * 1").expect("parses");
        // `*/2` starts with `*`: AND, as Vixie cron does.
        assert!(!stepped.matches_date(d("2026-12-01")));
        assert!(!stepped.matches_date(d("2026-12-14")));
        assert!(stepped.matches_date(d("2026-12-07")));
    }
}
