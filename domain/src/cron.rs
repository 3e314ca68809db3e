//! Cron expressions: when a schedule fires. Pure: the caller brings the time.
//!
//! Five fields in UTC — minute (0–59), hour (0–23), day of month (1–31), month (1–12 or
//! `jan`–`dec`), day of week (0–7 or `sun`–`sat`; 0 and 7 are Sunday). Each field is `*`, a value,
//! a range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a comma-separated list of those. As in the
//! classic cron, when both day fields are restricted a day matches if either does. The macros
//! `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly` stand for
//! their usual expressions.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// How far back or ahead a tick is searched: long enough for `0 0 29 2 *` (every four years,
/// sometimes eight across a century).
const SEARCH_DAYS: i64 = 366 * 9;

/// A parsed cron expression; it keeps the text it was parsed from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    any_day: bool,
    any_weekday: bool,
}

impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cron({:?})", self.text)
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for Cron {
    type Error = ValidationError;
    fn try_from(text: String) -> Result<Self, ValidationError> {
        Cron::parse(&text)
    }
}

impl From<Cron> for String {
    fn from(cron: Cron) -> String {
        cron.text
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field's name, range and value names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    // 7 is Sunday too; it is folded onto 0 after parsing.
    Field {
        name: "day of week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
    },
];

impl Cron {
    /// Parses five fields or a macro; the error names the field that is wrong.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(invalid(format!(
                    "unknown macro {other}; use @yearly, @monthly, @weekly, @daily or @hourly"
                )))
            }
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(invalid(format!(
                "needs 5 fields (minute hour day-of-month month day-of-week), found {}",
                parts.len()
            )));
        }
        let mut sets = [0u64; 5];
        for ((set, part), field) in sets.iter_mut().zip(&parts).zip(&FIELDS) {
            *set = parse_field(part, field)?;
        }
        let mut weekdays = sets[4];
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        let cron = Self {
            text: text.to_owned(),
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays,
            any_day: parts[2] == "*" || parts[2].starts_with("*/") && sets[2] == full(&FIELDS[2]),
            any_weekday: parts[4] == "*" || parts[4].starts_with("*/") && weekdays == 0x7f,
        };
        if cron
            .next_after(Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().unwrap_or_default())
            .is_none()
        {
            return Err(invalid(format!("{text} names no day that exists")));
        }
        Ok(cron)
    }

    /// The text it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let month = bit(self.months, date.month());
        let day = bit(self.days, date.day());
        let weekday = bit(self.weekdays, date.weekday().num_days_from_sunday());
        month
            && match (self.any_day, self.any_weekday) {
                (true, true) => true,
                (true, false) => weekday,
                (false, true) => day,
                (false, false) => day || weekday,
            }
    }

    /// The latest tick at or before `at` (seconds ignored), if there is one within nine years.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = at.date_naive();
        for back in 0..SEARCH_DAYS {
            let date = start - Duration::days(back);
            if !self.day_matches(date) {
                continue;
            }
            let (max_hour, max_minute) = if back == 0 { (at.hour(), at.minute()) } else { (23, 59) };
            for hour in (0..=max_hour).rev().filter(|h| bit(self.hours, *h)) {
                let last = if back == 0 && hour == max_hour { max_minute } else { 59 };
                if let Some(minute) = (0..=last).rev().find(|m| bit(self.minutes, *m)) {
                    return Some(at_time(date, hour, minute));
                }
            }
        }
        None
    }

    /// The first tick strictly after `at`, if there is one within nine years.
    pub fn next_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = at + Duration::minutes(1);
        let start = from.date_naive();
        for ahead in 0..SEARCH_DAYS {
            let date = start + Duration::days(ahead);
            if !self.day_matches(date) {
                continue;
            }
            let (min_hour, min_minute) = if ahead == 0 {
                (from.hour(), from.minute())
            } else {
                (0, 0)
            };
            for hour in (min_hour..24).filter(|h| bit(self.hours, *h)) {
                let first = if ahead == 0 && hour == min_hour { min_minute } else { 0 };
                if let Some(minute) = (first..60).find(|m| bit(self.minutes, *m)) {
                    return Some(at_time(date, hour, minute));
                }
            }
        }
        None
    }
}

fn at_time(date: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    let time = NaiveTime::from_hms_opt(hour, minute, 0).unwrap_or_default();
    Utc.from_utc_datetime(&date.and_time(time))
}

fn bit(set: u64, value: u32) -> bool {
    set & (1 << value) != 0
}

fn full(field: &Field) -> u64 {
    (field.min..=field.max).fold(0, |set, v| set | 1 << v)
}

fn invalid(message: String) -> ValidationError {
    ValidationError::new("cron", message)
}

fn parse_field(part: &str, field: &Field) -> Result<u64, ValidationError> {
    let wrong = |what: String| invalid(format!("{} field {part:?}: {what}", field.name));
    let mut set = 0u64;
    for item in part.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| wrong(format!("step {step:?} is not a whole number above 0")))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let value = |raw: &str| -> Result<u32, ValidationError> {
            let named = field
                .names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(raw))
                .map(|i| i as u32 + field.min);
            let number = named
                .or_else(|| raw.parse().ok())
                .ok_or_else(|| wrong(format!("{raw:?} is not a value")))?;
            if number < field.min || number > field.max {
                return Err(wrong(format!("{number} is outside {}-{}", field.min, field.max)));
            }
            Ok(number)
        };
        let (low, high) = match range {
            "*" => (field.min, field.max),
            _ => match range.split_once('-') {
                Some((low, high)) => (value(low)?, value(high)?),
                // `a/n` runs from a to the end of the field.
                None if step.is_some() => (value(range)?, field.max),
                None => {
                    let v = value(range)?;
                    (v, v)
                }
            },
        };
        if low > high {
            return Err(wrong(format!("the range {low}-{high} runs backwards")));
        }
        let step = step.unwrap_or(1);
        set = (low..=high).step_by(step as usize).fold(set, |set, v| set | 1 << v);
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .expect("test setup")
    }

    fn cron(s: &str) -> Cron {
        Cron::parse(s).expect("test setup")
    }

    #[test]
    fn every_minute_ticks_on_the_minute() {
        let c = cron("* * * * *");
        assert_eq!(
            c.latest_at_or_before(t("2026-12-01T10:15:42Z")),
            Some(t("2026-12-01T10:15:00Z"))
        );
        assert_eq!(c.next_after(t("2026-12-01T10:15:42Z")), Some(t("2026-12-01T10:16:00Z")));
        assert_eq!(c.next_after(t("2026-12-01T10:15:00Z")), Some(t("2026-12-01T10:16:00Z")));
    }

    #[test]
    fn the_latest_tick_may_be_the_given_minute_itself() {
        let c = cron("30 2 * * *");
        assert_eq!(
            c.latest_at_or_before(t("2026-12-01T02:30:00Z")),
            Some(t("2026-12-01T02:30:00Z"))
        );
        assert_eq!(
            c.latest_at_or_before(t("2026-12-01T02:29:59Z")),
            Some(t("2026-11-30T02:30:00Z"))
        );
    }

    #[test]
    fn steps_ranges_and_lists() {
        let c = cron("*/15 9-17 * * mon-fri");
        // 2026-12-05 is a Saturday: the latest tick is Friday 17:45.
        assert_eq!(
            c.latest_at_or_before(t("2026-12-05T12:00:00Z")),
            Some(t("2026-12-04T17:45:00Z"))
        );
        assert_eq!(c.next_after(t("2026-12-04T17:45:00Z")), Some(t("2026-12-07T09:00:00Z")));
        let c = cron("5,10 0 1,15 * *");
        assert_eq!(c.next_after(t("2026-12-01T00:07:00Z")), Some(t("2026-12-01T00:10:00Z")));
        assert_eq!(c.next_after(t("2026-12-01T00:10:00Z")), Some(t("2026-12-15T00:05:00Z")));
        let c = cron("10/20 * * * *");
        assert_eq!(c.next_after(t("2026-12-01T00:31:00Z")), Some(t("2026-12-01T00:50:00Z")));
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        // The 13th, or any Friday.
        let c = cron("0 0 13 * fri");
        assert_eq!(c.next_after(t("2026-12-01T00:00:00Z")), Some(t("2026-12-04T00:00:00Z")));
        assert_eq!(c.next_after(t("2026-12-11T00:00:00Z")), Some(t("2026-12-13T00:00:00Z")));
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        assert_eq!(
            cron("0 0 * * 7").next_after(t("2026-12-01T00:00:00Z")),
            Some(t("2026-12-06T00:00:00Z"))
        );
        assert_eq!(
            cron("0 0 * * 0"),
            Cron {
                text: "0 0 * * 0".into(),
                ..cron("0 0 * * 7")
            }
        );
    }

    #[test]
    fn macros_and_rare_days() {
        assert_eq!(
            cron("@daily").latest_at_or_before(t("2026-12-01T10:00:00Z")),
            Some(t("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            cron("@yearly").next_after(t("2026-12-01T10:00:00Z")),
            Some(t("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            cron("0 0 29 feb *").next_after(t("2026-12-01T00:00:00Z")),
            Some(t("2028-02-29T00:00:00Z"))
        );
        assert_eq!(
            cron("0 0 29 2 *").latest_at_or_before(t("2026-12-01T00:00:00Z")),
            Some(t("2024-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn mistakes_name_the_field() {
        for (text, says) in [
            ("* * * *", "needs 5 fields"),
            ("60 * * * *", "minute field"),
            ("* 24 * * *", "hour field"),
            ("* * 0 * *", "day of month field"),
            ("* * * foo *", "month field"),
            ("* * * * 8", "day of week field"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "backwards"),
            ("@often", "unknown macro"),
            ("0 0 31 feb *", "no day that exists"),
        ] {
            let error = Cron::parse(text).expect_err("must be refused").to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn it_round_trips_as_its_text() {
        let c = cron(" 0 3 * * sun ");
        assert_eq!(c.as_str(), "0 3 * * sun");
        let json = serde_json::to_string(&c).expect("test setup");
        assert_eq!(json, "\"0 3 * * sun\"");
        assert_eq!(serde_json::from_str::<Cron>(&json).expect("test setup"), c);
        assert!(serde_json::from_str::<Cron>("\"nope\"").is_err());
    }
}
