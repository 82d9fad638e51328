//! Business time in a tenant's time zone, for SLAs (RFD 0008): how many
//! milliseconds of business hours lie between two instants, and when a
//! number of them will have passed.
//!
//! Pure: no clock (instants are arguments, milliseconds since the Unix
//! epoch as the store keeps them), no I/O. The zone is a
//! [`jiff::tz::TimeZone`] the caller looked up. Opening hours are local
//! wall-clock times: a Monday 09:00-17:00 is eight hours on the day clocks
//! go forward or back too, because each day's opening and closing are
//! converted to instants on their own date (`TimeZone::to_timestamp`,
//! "compatible": a time in a spring-forward gap moves on by the gap's
//! length, 02:30 becomes 03:30; one in a fold is its first occurrence).

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

/// Minutes in a day; `end` may be this (24:00, the next day's midnight).
pub const MINUTES_PER_DAY: u16 = 24 * 60;
/// Most holidays one calendar holds (a few years' worth).
pub const MAX_HOLIDAYS: usize = 200;
/// Furthest ahead [`BusinessCalendar::add`] looks, in days.
const MAX_DEADLINE_DAYS: u32 = 3_660;
/// The weekdays' names as the API, the CLI and the stored text spell them,
/// Monday first.
pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The opening hours of one weekday: `[start, end)` in local minutes after
/// midnight, `end` at most [`MINUTES_PER_DAY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayHours {
    pub start: u16,
    pub end: u16,
}

/// A week's opening hours, Monday first; `None`: closed.
pub type WeekHours = [Option<DayHours>; 7];

/// Why a calendar cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("{0:?} is not a time of day (HH:MM, 00:00 to 24:00)")]
    Time(String),
    #[error("opening hours must start before they end ({0})")]
    EmptyDay(&'static str),
    #[error("at least one weekday must have business hours")]
    NoBusinessDay,
    #[error("{0:?} is not a date (YYYY-MM-DD)")]
    Date(String),
    #[error("at most {MAX_HOLIDAYS} holidays")]
    TooManyHolidays,
    #[error("{0:?} is not a weekday (mon, tue, wed, thu, fri, sat, sun)")]
    Weekday(String),
    #[error("{0} is given twice")]
    Duplicate(String),
}

/// `HH:MM`, from 00:00 to 24:00, as minutes after midnight.
pub fn parse_time(text: &str) -> Result<u16, CalendarError> {
    let bad = || CalendarError::Time(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let minutes = h * 60 + m;
    if m >= 60 || minutes > MINUTES_PER_DAY {
        return Err(bad());
    }
    Ok(minutes)
}

/// Minutes after midnight as `HH:MM`.
pub fn format_time(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A weekday's index (Monday 0) from its name.
pub fn parse_weekday(text: &str) -> Result<usize, CalendarError> {
    WEEKDAYS
        .iter()
        .position(|d| *d == text)
        .ok_or_else(|| CalendarError::Weekday(text.to_owned()))
}

/// A date as `YYYY-MM-DD` exactly (jiff also reads other ISO 8601 forms).
pub fn parse_date(text: &str) -> Result<Date, CalendarError> {
    let bad = || CalendarError::Date(text.to_owned());
    let shape = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shape {
        return Err(bad());
    }
    text.parse::<Date>().map_err(|_| bad())
}

/// The stored text of a week's hours: `mon 09:00-17:00,tue 09:00-17:00`
/// (closed days left out).
pub fn encode_week(week: &WeekHours) -> String {
    week.iter()
        .zip(WEEKDAYS)
        .filter_map(|(hours, day)| {
            hours.map(|h| format!("{day} {}-{}", format_time(h.start), format_time(h.end)))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads [`encode_week`]'s text back.
pub fn decode_week(text: &str) -> Result<WeekHours, CalendarError> {
    let mut week: WeekHours = [None; 7];
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (day, range) = part
            .split_once(' ')
            .ok_or_else(|| CalendarError::Weekday(part.to_owned()))?;
        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| CalendarError::Time(range.to_owned()))?;
        let index = parse_weekday(day)?;
        if week[index].is_some() {
            return Err(CalendarError::Duplicate(day.to_owned()));
        }
        week[index] = Some(DayHours {
            start: parse_time(start)?,
            end: parse_time(end)?,
        });
    }
    Ok(week)
}

/// A tenant's business calendar: its zone, weekly hours and holidays.
#[derive(Debug, Clone)]
pub struct BusinessCalendar {
    zone: TimeZone,
    week: WeekHours,
    holidays: BTreeSet<Date>,
}

/// `millis` as a timestamp, clamped to what jiff represents (years -9999
/// to 9999), so a corrupt stored time cannot panic anything.
fn timestamp(millis: i64) -> Timestamp {
    Timestamp::from_millisecond(millis).unwrap_or(if millis < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

impl BusinessCalendar {
    /// A calendar: every day's hours start before they end, at least one
    /// weekday is open, at most [`MAX_HOLIDAYS`] holidays.
    pub fn new(
        zone: TimeZone,
        week: WeekHours,
        holidays: impl IntoIterator<Item = Date>,
    ) -> Result<Self, CalendarError> {
        for (hours, day) in week.iter().zip(WEEKDAYS) {
            if let Some(h) = hours
                && (h.start >= h.end || h.end > MINUTES_PER_DAY)
            {
                return Err(CalendarError::EmptyDay(day));
            }
        }
        if week.iter().all(Option::is_none) {
            return Err(CalendarError::NoBusinessDay);
        }
        let holidays: BTreeSet<Date> = holidays.into_iter().collect();
        if holidays.len() > MAX_HOLIDAYS {
            return Err(CalendarError::TooManyHolidays);
        }
        Ok(Self {
            zone,
            week,
            holidays,
        })
    }

    /// Every hour of every day in `zone` (business time = wall-clock time).
    pub fn always(zone: TimeZone) -> Self {
        let day = Some(DayHours {
            start: 0,
            end: MINUTES_PER_DAY,
        });
        Self {
            zone,
            week: [day; 7],
            holidays: BTreeSet::new(),
        }
    }

    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    pub fn week(&self) -> &WeekHours {
        &self.week
    }

    pub fn holidays(&self) -> impl Iterator<Item = &Date> {
        self.holidays.iter()
    }

    /// The local date at `at`.
    pub fn local_date(&self, at: i64) -> Date {
        self.zone.to_datetime(timestamp(at)).date()
    }

    /// The instant of local time `minutes` after midnight on `day` (24:00
    /// is the next day's midnight); `None` past jiff's range.
    fn instant(&self, day: Date, minutes: u16) -> Option<i64> {
        let (day, minutes) = if minutes >= MINUTES_PER_DAY {
            (day.tomorrow().ok()?, minutes - MINUTES_PER_DAY)
        } else {
            (day, minutes)
        };
        let time = Time::new(
            i8::try_from(minutes / 60).ok()?,
            i8::try_from(minutes % 60).ok()?,
            0,
            0,
        )
        .ok()?;
        let at = self.zone.to_timestamp(day.to_datetime(time)).ok()?;
        Some(at.as_millisecond())
    }

    /// `day`'s business hours as instants `[open, close)`, if it has any.
    fn open_on(&self, day: Date) -> Option<(i64, i64)> {
        if self.holidays.contains(&day) {
            return None;
        }
        let weekday = usize::try_from(day.weekday().to_monday_zero_offset()).ok()?;
        let hours = self.week.get(weekday).copied().flatten()?;
        let open = self.instant(day, hours.start)?;
        let close = self.instant(day, hours.end)?;
        // A day whose hours fall wholly in a gap has none that day.
        (open < close).then_some((open, close))
    }

    /// The business intervals `[open, close)` from local date `first` on,
    /// in order and disjoint: a day's hours never start before the
    /// previous day's closed (a zone whose DST gap straddles midnight
    /// could otherwise map them so), which is what makes business time
    /// add up over any split of a span. Ends past jiff's range.
    fn intervals(&self, first: Date) -> impl Iterator<Item = (i64, i64)> + '_ {
        let mut day = Some(first);
        let mut floor = i64::MIN;
        std::iter::from_fn(move || {
            loop {
                let today = day?;
                day = today.tomorrow().ok();
                if let Some((open, close)) = self.open_on(today) {
                    let open = open.max(floor);
                    if open < close {
                        floor = close;
                        return Some((open, close));
                    }
                }
            }
        })
    }

    /// Whether `at` falls inside business hours.
    pub fn is_open(&self, at: i64) -> bool {
        self.between(at, at.saturating_add(1)) > 0
    }

    /// Business milliseconds in `[from, to)`; zero when `to <= from`.
    /// Linear in the days between them.
    pub fn between(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        // From the day before `from`'s local date: nothing of an earlier
        // day's hours reaches past the next local midnight.
        let Ok(first) = self.local_date(from).yesterday() else {
            return 0;
        };
        let mut total = 0;
        for (open, close) in self.intervals(first) {
            if open >= to {
                break;
            }
            total += (close.min(to) - open.max(from)).max(0);
        }
        total
    }

    /// The instant by which `amount` business milliseconds after `from`
    /// have passed (the end of the last one needed); `None` when that is
    /// more than ten years of days away.
    pub fn add(&self, from: i64, amount: i64) -> Option<i64> {
        if amount <= 0 {
            return Some(from);
        }
        let first = self.local_date(from).yesterday().ok()?;
        let horizon = first
            .checked_add(jiff::Span::new().days(i64::from(MAX_DEADLINE_DAYS)))
            .ok()?;
        let mut left = amount;
        for (open, close) in self.intervals(first) {
            if self.local_date(open) > horizon {
                return None;
            }
            let start = open.max(from);
            if close > start {
                if left <= close - start {
                    return Some(start + left);
                }
                left -= close - start;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).expect("the system's tzdb has the zone")
    }

    fn nine_to_five(zone_name: &str) -> BusinessCalendar {
        let day = Some(DayHours {
            start: 9 * 60,
            end: 17 * 60,
        });
        BusinessCalendar::new(zone(zone_name), [day, day, day, day, day, None, None], [])
            .expect("calendar")
    }

    /// The instant of a local time in `zone_name`.
    fn local(zone_name: &str, text: &str) -> i64 {
        let dt: jiff::civil::DateTime = text.parse().expect("datetime");
        zone(zone_name)
            .to_timestamp(dt)
            .expect("in range")
            .as_millisecond()
    }

    #[test]
    fn open_means_inside_the_hours_of_an_open_day() {
        let cal = nine_to_five("Europe/Berlin");
        let at = |text: &str| local("Europe/Berlin", text);
        // Monday 2026-03-30: 09:00 is open, 17:00 is closed again.
        assert!(!cal.is_open(at("2026-03-30T08:59:59.999")));
        assert!(cal.is_open(at("2026-03-30T09:00")));
        assert!(cal.is_open(at("2026-03-30T16:59:59.999")));
        assert!(!cal.is_open(at("2026-03-30T17:00")));
        // Saturday.
        assert!(!cal.is_open(at("2026-04-04T12:00")));
    }

    #[test]
    fn times_dates_and_weeks_parse_strictly() {
        assert_eq!(parse_time("09:30"), Ok(570));
        assert_eq!(parse_time("24:00"), Ok(1440));
        for bad in ["9:30", "24:01", "12:60", "ab:cd", "", "12-00", "+1:00"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        assert!(parse_date("2026-12-25").is_ok());
        for bad in ["20261225", "2026-02-30", "2026-1-05", "2026-12-25T00:00"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        let week = decode_week("mon 09:00-17:00,sat 10:00-24:00").expect("week");
        assert_eq!(encode_week(&week), "mon 09:00-17:00,sat 10:00-24:00");
        assert!(decode_week("mon 09:00-17:00,mon 10:00-12:00").is_err());
        assert!(decode_week("moon 09:00-17:00").is_err());
        let closed = [None; 7];
        assert_eq!(
            BusinessCalendar::new(zone("UTC"), closed, []).err(),
            Some(CalendarError::NoBusinessDay)
        );
        let backwards = Some(DayHours {
            start: 600,
            end: 540,
        });
        assert!(BusinessCalendar::new(zone("UTC"), [backwards; 7], []).is_err());
    }

    /// Spring forward and fall back in Berlin (2026-03-29, 2026-10-25) and
    /// New York (2026-03-08, 2026-11-01): a working day is still 8 hours.
    #[test]
    fn a_working_day_is_eight_hours_on_the_days_clocks_change() {
        for (zone_name, days) in [
            (
                "Europe/Berlin",
                ["2026-03-27", "2026-03-30", "2026-10-23", "2026-10-26"],
            ),
            (
                "America/New_York",
                ["2026-03-06", "2026-03-09", "2026-10-30", "2026-11-02"],
            ),
        ] {
            let cal = nine_to_five(zone_name);
            // Friday before to Monday after each change: 2 working days,
            // across a 23- or 25-hour Sunday.
            for pair in days.chunks(2) {
                let from = local(zone_name, &format!("{}T00:00", pair[0]));
                let to = local(zone_name, &format!("{}T23:59", pair[1]));
                assert_eq!(cal.between(from, to), 16 * HOUR, "{zone_name} {pair:?}");
                let wall = to - from;
                assert!(wall != 3 * DAY + 23 * HOUR + 59 * 60_000, "clocks changed");
            }
        }
        // A 24/7 calendar counts the short and the long day as they are.
        let always = BusinessCalendar::always(zone("Europe/Berlin"));
        let from = local("Europe/Berlin", "2026-03-29T00:00");
        let to = local("Europe/Berlin", "2026-03-30T00:00");
        assert_eq!(always.between(from, to), 23 * HOUR);
        let from = local("Europe/Berlin", "2026-10-25T00:00");
        let to = local("Europe/Berlin", "2026-10-26T00:00");
        assert_eq!(always.between(from, to), 25 * HOUR);
    }

    /// Hours that the clock change cuts into: 01:00-04:00 on the Sunday
    /// Berlin springs forward (02:00 -> 03:00) is two hours; on the Sunday
    /// it falls back (03:00 -> 02:00) four.
    #[test]
    fn hours_across_the_change_itself_count_as_the_clock_runs() {
        let night = Some(DayHours {
            start: 60,
            end: 240,
        });
        let cal = BusinessCalendar::new(
            zone("Europe/Berlin"),
            [None, None, None, None, None, None, night],
            [],
        )
        .expect("calendar");
        let spring = local("Europe/Berlin", "2026-03-29T00:00");
        assert_eq!(cal.between(spring, spring + DAY), 2 * HOUR);
        let autumn = local("Europe/Berlin", "2026-10-25T00:00");
        assert_eq!(cal.between(autumn, autumn + DAY), 4 * HOUR);
        // Opening inside the gap moves on by the gap: 02:30 opens at 03:30.
        let gap = Some(DayHours {
            start: 150,
            end: 240,
        });
        let cal = BusinessCalendar::new(
            zone("Europe/Berlin"),
            [None, None, None, None, None, None, gap],
            [],
        )
        .expect("calendar");
        assert_eq!(cal.between(spring, spring + DAY), HOUR / 2);
    }

    #[test]
    fn time_zones_and_midnight() {
        // 16:00 UTC on a Monday is 17:00 in Berlin (closed) but 11:00 in
        // New York (open): the same instants, different business time.
        let from = local("UTC", "2026-01-05T16:00");
        let to = local("UTC", "2026-01-05T18:00");
        assert_eq!(nine_to_five("Europe/Berlin").between(from, to), 0);
        assert_eq!(nine_to_five("America/New_York").between(from, to), 2 * HOUR);
        // Hours to midnight and from midnight on: Friday 20:00 to Saturday
        // 02:00 in Tokyo.
        let evening = Some(DayHours {
            start: 18 * 60,
            end: MINUTES_PER_DAY,
        });
        let early = Some(DayHours { start: 0, end: 180 });
        let cal = BusinessCalendar::new(
            zone("Asia/Tokyo"),
            [None, None, None, None, evening, early, None],
            [],
        )
        .expect("calendar");
        let from = local("Asia/Tokyo", "2026-01-09T20:00");
        let to = local("Asia/Tokyo", "2026-01-10T02:00");
        assert_eq!(cal.between(from, to), 6 * HOUR);
        assert_eq!(cal.add(from, 6 * HOUR), Some(to));
        assert_eq!(cal.add(from, 5 * HOUR), Some(to - HOUR));
        // Saturday 03:00 closes; the next opening is Friday 18:00.
        assert_eq!(
            cal.add(from, 7 * HOUR + HOUR / 2),
            Some(local("Asia/Tokyo", "2026-01-16T18:30"))
        );
    }

    #[test]
    fn holidays_are_closed() {
        let day = Some(DayHours {
            start: 9 * 60,
            end: 17 * 60,
        });
        let christmas = parse_date("2026-12-25").expect("date");
        let cal =
            BusinessCalendar::new(zone("Europe/Berlin"), [day; 7], [christmas]).expect("calendar");
        let from = local("Europe/Berlin", "2026-12-24T12:00");
        let to = local("Europe/Berlin", "2026-12-26T12:00");
        assert_eq!(cal.between(from, to), 5 * HOUR + 3 * HOUR);
    }

    fn zones() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe", // a 30-minute DST change
            "Asia/Kolkata",
            "Pacific/Chatham",
            "America/Santiago", // changes at midnight
            "UTC",
        ])
    }

    fn day_hours() -> impl Strategy<Value = Option<DayHours>> {
        prop::option::of(
            (0u16..MINUTES_PER_DAY, 1u16..=MINUTES_PER_DAY).prop_map(|(a, b)| {
                let (start, end) = if a < b {
                    (a, b)
                } else {
                    (b.saturating_sub(1), a + 1)
                };
                DayHours { start, end }
            }),
        )
    }

    fn calendars() -> impl Strategy<Value = BusinessCalendar> {
        (
            zones(),
            prop::array::uniform7(day_hours()),
            prop::collection::vec(0i64..800, 0..20),
        )
            .prop_filter_map("some day open", |(name, week, holidays)| {
                let base = parse_date("2025-01-01").expect("date");
                let holidays = holidays
                    .into_iter()
                    .filter_map(|d| base.checked_add(jiff::Span::new().days(d)).ok());
                BusinessCalendar::new(zone(name), week, holidays).ok()
            })
    }

    /// Instants from 2025 to 2027, which hold DST changes in every zone above.
    fn instants() -> impl Strategy<Value = i64> {
        1_735_689_600_000i64..1_798_761_600_000i64
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn business_time_adds_up(cal in calendars(), a in instants(), b in instants(), c in instants()) {
            let mut t = [a, b, c];
            t.sort_unstable();
            let [a, b, c] = t;
            prop_assert_eq!(cal.between(a, c), cal.between(a, b) + cal.between(b, c));
            prop_assert!(cal.between(a, c) <= c - a);
            prop_assert!(cal.between(a, c) >= 0);
            prop_assert_eq!(cal.between(c, a), 0);
        }

        #[test]
        fn the_deadline_is_exactly_the_business_time_asked(
            cal in calendars(), from in instants(), amount in 1i64..(40 * DAY)
        ) {
            match cal.add(from, amount) {
                Some(deadline) => {
                    prop_assert_eq!(cal.between(from, deadline), amount);
                    // And not a moment later than needed.
                    prop_assert!(cal.between(from, deadline - 1) < amount);
                }
                // A calendar of a few minutes a week: not within ten years.
                None => prop_assert!(cal.between(from, from + 3_650 * DAY) < amount),
            }
        }

        #[test]
        fn around_the_clock_is_wall_clock_time(name in zones(), a in instants(), b in instants()) {
            let cal = BusinessCalendar::always(zone(name));
            prop_assert_eq!(cal.between(a.min(b), a.max(b)), (a - b).abs());
        }

        #[test]
        fn nothing_on_holidays_and_closed_days(cal in calendars(), at in instants()) {
            let day = cal.local_date(at);
            let weekday = usize::try_from(day.weekday().to_monday_zero_offset()).unwrap();
            let closed = cal.holidays.contains(&day) || cal.week[weekday].is_none();
            let from = cal.zone().to_timestamp(day.to_datetime(Time::midnight())).unwrap().as_millisecond();
            let to = cal.zone().to_timestamp(day.tomorrow().unwrap().to_datetime(Time::midnight())).unwrap().as_millisecond();
            if closed {
                prop_assert_eq!(cal.between(from, to), 0);
            } else {
                let h = cal.week[weekday].unwrap();
                // Never more than the hours on the clock face plus an hour of fold.
                prop_assert!(cal.between(from, to) <= i64::from(h.end - h.start) * 60_000 + HOUR);
            }
        }

        /// Mon-Fri 9-17 is 8 hours a working day, 40 a week, in any week
        /// of 2025-2027, DST changes included.
        #[test]
        fn nine_to_five_is_forty_hours_a_week(name in prop::sample::select(vec!["Europe/Berlin", "America/New_York"]), at in instants()) {
            let cal = nine_to_five(name);
            let day = cal.local_date(at);
            let monday = day.checked_sub(jiff::Span::new().days(i64::from(day.weekday().to_monday_zero_offset()))).unwrap();
            let start = cal.zone().to_timestamp(monday.to_datetime(Time::midnight())).unwrap().as_millisecond();
            let next = monday.checked_add(jiff::Span::new().days(7)).unwrap();
            let end = cal.zone().to_timestamp(next.to_datetime(Time::midnight())).unwrap().as_millisecond();
            prop_assert_eq!(cal.between(start, end), 40 * HOUR);
        }

        /// Moving both instants a week on keeps the business time, unless a
        /// holiday or a clock change lies in either span.
        #[test]
        fn a_week_later_is_the_same_outside_holidays_and_clock_changes(
            cal in calendars(), a in instants(), len in 0i64..(3 * DAY)
        ) {
            let week = 7 * DAY;
            let (b, a2, b2) = (a + len, a + week, a + len + week);
            let offsets_same = [a, b, a2, b2].windows(2).all(|w| {
                cal.zone().to_offset(timestamp(w[0])) == cal.zone().to_offset(timestamp(w[1]))
            }) && cal.zone().to_offset(timestamp(a - DAY)) == cal.zone().to_offset(timestamp(b2 + DAY));
            let holiday_near = cal.holidays.iter().any(|h| {
                let d = |t| cal.local_date(t);
                (d(a - DAY)..=d(b2 + DAY)).contains(h)
            });
            prop_assume!(offsets_same && !holiday_near);
            prop_assert_eq!(cal.between(a, b), cal.between(a2, b2));
        }
    }
}
