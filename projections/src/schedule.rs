//! When a job is due: ISO 8601 repeating intervals, `R[n]/<start>/<period>`, as Chronos writes
//! them. Pure arithmetic on times from the log; nothing here reads the clock.
//!
//! Occurrence `k` is `start + k·period`, computed from the start each time (never by adding to
//! the previous one), so month ends do not drift (`Jan 31 + 2 months` is `Mar 31`, not
//! `Mar 28`). Years, months, weeks and days move the wall clock in the schedule's time zone
//! (a daily job at 09:00 in `Europe/Berlin` stays at 09:00 across daylight saving); hours,
//! minutes and seconds are exact elapsed time. A start without an offset is read in that zone.

use chrono::{DateTime, Days, LocalResult, Months, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use cairn_log::event::Timestamp;

/// A parsed `R[n]/start/period`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// How many runs in all; `None` repeats forever.
    pub repeats: Option<u64>,
    pub start: Timestamp,
    pub period: Period,
    zone: Tz,
}

/// An ISO 8601 duration split into the parts that move the calendar and the part that is
/// elapsed time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub months: u32,
    pub days: u32,
    pub micros: i64,
}

impl Period {
    /// Parses `PnYnMnDTnHnMnS` or `PnW`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parsed = match iso8601::parsers::parse_duration(text.as_bytes()) {
            Ok(([], d)) => d,
            _ => {
                return Err(format!(
                    "{text:?} is not an ISO 8601 duration (e.g. PT1H, P1D, P1W, P1M, PT30M)"
                ))
            }
        };
        let too_long = || format!("{text:?} is too long");
        match parsed {
            iso8601::Duration::Weeks(w) => Ok(Self {
                months: 0,
                days: w.checked_mul(7).ok_or_else(too_long)?,
                micros: 0,
            }),
            iso8601::Duration::YMDHMS {
                year,
                month,
                day,
                hour,
                minute,
                second,
                millisecond,
            } => {
                let secs = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
                Ok(Self {
                    months: year
                        .checked_mul(12)
                        .and_then(|m| m.checked_add(month))
                        .ok_or_else(too_long)?,
                    days: day,
                    micros: secs * 1_000_000 + i64::from(millisecond) * 1000,
                })
            }
        }
    }

    pub fn is_zero(&self) -> bool {
        self.months == 0 && self.days == 0 && self.micros == 0
    }

    /// The period as elapsed time, if it has no calendar part.
    pub fn exact_micros(&self) -> Option<i64> {
        (self.months == 0 && self.days == 0).then_some(self.micros)
    }

    /// A length close to the period's, for a first guess at how many fit in a span.
    fn approx_micros(&self) -> i64 {
        const DAY: i64 = 86_400_000_000;
        // The Gregorian calendar's mean month, 30.436875 days.
        i64::from(self.months) * (DAY * 30 + DAY * 436_875 / 1_000_000)
            + i64::from(self.days) * DAY
            + self.micros
    }
}

impl Schedule {
    /// Parses `R[n]/<start>/<period>` with the zone `time_zone` (an IANA name; UTC when
    /// absent). The error says which part is wrong.
    pub fn parse(text: &str, time_zone: Option<&str>) -> Result<Self, String> {
        let zone: Tz = match time_zone.filter(|z| !z.is_empty()) {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| {
                format!("{name:?} is not a time zone name (e.g. UTC, Europe/Berlin)")
            })?,
        };
        let mut parts = text.split('/');
        let (Some(r), Some(start), Some(period), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "{text:?} is not R[n]/<start>/<period> (e.g. R/2015-10-01T00:00:00Z/PT1H)"
            ));
        };
        let repeats = match r.strip_prefix('R') {
            Some("") => None,
            Some(n) => Some(n.parse::<u64>().map_err(|_| {
                format!("{r:?} must be R (forever) or R followed by a number of runs")
            })?),
            None => return Err(format!("{text:?} must start with R or R<n>")),
        };
        if repeats == Some(0) {
            return Err("R0 never runs".into());
        }
        let start = parse_start(start, zone)?;
        let period = Period::parse(period)?;
        if period.is_zero() && repeats != Some(1) {
            return Err(format!(
                "the period {period:?} is zero: only R1 may have it"
            ));
        }
        Ok(Self {
            repeats,
            start,
            period,
            zone,
        })
    }

    /// Occurrence `k` (0 is the start); `None` past the last one or beyond representable time.
    pub fn nth(&self, k: u64) -> Option<Timestamp> {
        if self.repeats.is_some_and(|n| k >= n) {
            return None;
        }
        let exact = self.period.micros.checked_mul(i64::try_from(k).ok()?)?;
        let calendar = if self.period.months == 0 && self.period.days == 0 {
            self.start
        } else {
            let local = self
                .start
                .to_datetime()
                .with_timezone(&self.zone)
                .naive_local();
            let months = u32::try_from(k.checked_mul(u64::from(self.period.months))?).ok()?;
            let days = k.checked_mul(u64::from(self.period.days))?;
            let moved = local
                .checked_add_months(Months::new(months))?
                .checked_add_days(Days::new(days))?;
            to_utc(moved, self.zone)?
        };
        Some(Timestamp::from_micros(
            calendar.as_micros().checked_add(exact)?,
        ))
    }

    /// The first occurrence at or after `t`, with its index; `None` when none is left.
    pub fn first_at_or_after(&self, t: Timestamp) -> Option<(u64, Timestamp)> {
        let span = t.as_micros().saturating_sub(self.start.as_micros());
        let mut k = if span <= 0 || self.period.is_zero() {
            0
        } else {
            (span / self.period.approx_micros().max(1)) as u64
        };
        if let Some(n) = self.repeats {
            k = k.min(n - 1);
        }
        // The guess is close (months vary by days in a mean month); walk to the exact one.
        while k > 0 && self.nth(k).is_none_or(|at| at >= t) {
            k -= 1;
        }
        loop {
            let at = self.nth(k)?;
            if at >= t {
                return Some((k, at));
            }
            k += 1;
        }
    }

    /// The first occurrence strictly after `t`.
    pub fn first_after(&self, t: Timestamp) -> Option<(u64, Timestamp)> {
        self.first_at_or_after(Timestamp::from_micros(t.as_micros().saturating_add(1)))
    }

    /// The last occurrence of a finite schedule.
    pub fn last(&self) -> Option<Timestamp> {
        self.nth(self.repeats?.checked_sub(1)?)
    }
}

/// A start time: with an offset (`Z`, `+02:00`) it is that instant; without one, a wall-clock
/// time in the schedule's zone.
fn parse_start(text: &str, zone: Tz) -> Result<Timestamp, String> {
    let bad = || {
        format!("{text:?} is not a start time (e.g. 2015-10-01T00:00:00Z or 2015-10-01T09:00:00)")
    };
    let at = match DateTime::parse_from_rfc3339(text) {
        Ok(at) => at.with_timezone(&Utc),
        Err(_) => {
            let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
                .map_err(|_| bad())?;
            to_utc(local, zone).ok_or_else(bad)?.to_datetime()
        }
    };
    Ok(Timestamp::from_micros(at.timestamp_micros()))
}

/// A wall-clock time in `zone` as an instant: the earlier of two when the clocks went back,
/// the first valid one after a gap when they went forward.
fn to_utc(local: NaiveDateTime, zone: Tz) -> Option<Timestamp> {
    let mut probe = local;
    // Daylight-saving gaps are at most a few hours; step over one in minutes.
    for _ in 0..=240 {
        match zone.from_local_datetime(&probe) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => {
                return Some(Timestamp::from_micros(at.timestamp_micros()))
            }
            LocalResult::None => probe = probe.checked_add_signed(chrono::TimeDelta::minutes(1))?,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    fn occurrences(s: &Schedule, n: u64) -> Vec<String> {
        (0..n)
            .filter_map(|k| s.nth(k))
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn the_example_job_is_hourly_from_its_start() {
        let s = Schedule::parse("R/2015-10-01T00:00:00Z/PT1H", Some("UTC")).unwrap();
        assert_eq!(s.repeats, None);
        assert_eq!(
            occurrences(&s, 3),
            [
                "2015-10-01T00:00:00.000000Z",
                "2015-10-01T01:00:00.000000Z",
                "2015-10-01T02:00:00.000000Z"
            ]
        );
        let (k, next) = s.first_at_or_after(at("2026-11-27T10:17:00Z")).unwrap();
        assert_eq!(next, at("2026-11-27T11:00:00Z"));
        assert_eq!(s.nth(k), Some(next));
        assert_eq!(s.first_at_or_after(next), Some((k, next)));
        assert_eq!(s.first_after(next).unwrap().1, at("2026-11-27T12:00:00Z"));
    }

    #[test]
    fn months_count_from_the_start_so_month_ends_do_not_drift() {
        let s = Schedule::parse("R/2024-01-31T12:00:00Z/P1M", None).unwrap();
        assert_eq!(
            occurrences(&s, 4),
            [
                "2024-01-31T12:00:00.000000Z",
                "2024-02-29T12:00:00.000000Z",
                "2024-03-31T12:00:00.000000Z",
                "2024-04-30T12:00:00.000000Z"
            ]
        );
        let (k, next) = s.first_at_or_after(at("2030-06-01T00:00:00Z")).unwrap();
        assert_eq!(next, at("2030-06-30T12:00:00Z"));
        assert_eq!(k, 6 * 12 + 5);
    }

    #[test]
    fn days_keep_the_wall_clock_of_the_zone_across_daylight_saving() {
        // Berlin moved from UTC+1 to UTC+2 on 2025-03-30.
        let s = Schedule::parse("R/2025-03-29T09:00:00/P1D", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            occurrences(&s, 2),
            ["2025-03-29T08:00:00.000000Z", "2025-03-30T07:00:00.000000Z"]
        );
        // Hours are elapsed time: an hourly job does not skip or repeat an hour.
        let h = Schedule::parse("R/2025-03-30T00:00:00Z/PT1H", Some("Europe/Berlin")).unwrap();
        assert_eq!(h.nth(3), Some(at("2025-03-30T03:00:00Z")));
        // A wall-clock time that does not exist that day runs when the clock reaches it.
        let gap = Schedule::parse("R/2025-03-29T02:30:00/P1D", Some("Europe/Berlin")).unwrap();
        assert_eq!(gap.nth(1), Some(at("2025-03-30T01:00:00Z")));
    }

    #[test]
    fn finite_schedules_end_and_weeks_are_seven_days() {
        let s = Schedule::parse("R3/2026-01-01T00:00:00Z/P2W", None).unwrap();
        assert_eq!(s.last(), Some(at("2026-01-29T00:00:00Z")));
        assert_eq!(s.nth(3), None);
        assert_eq!(s.first_after(at("2026-01-29T00:00:00Z")), None);
        assert_eq!(
            s.first_at_or_after(at("2025-01-01T00:00:00Z")),
            Some((0, at("2026-01-01T00:00:00Z")))
        );
        let once = Schedule::parse("R1/2026-01-01T00:00:00Z/PT0S", None).unwrap();
        assert_eq!(once.last(), Some(at("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let err = |s: &str, z: Option<&str>| Schedule::parse(s, z).unwrap_err();
        assert!(err("R/2026-01-01T00:00:00Z", None).contains("R[n]/<start>/<period>"));
        assert!(err("X/2026-01-01T00:00:00Z/PT1H", None).contains("must start with R"));
        assert!(err("Rx/2026-01-01T00:00:00Z/PT1H", None).contains("number of runs"));
        assert!(err("R0/2026-01-01T00:00:00Z/PT1H", None).contains("never runs"));
        assert!(err("R/2026-13-01T00:00:00Z/PT1H", None).contains("start time"));
        assert!(err("R/2026-01-01T00:00:00Z/1H", None).contains("ISO 8601 duration"));
        assert!(err("R/2026-01-01T00:00:00Z/PT1Hx", None).contains("ISO 8601 duration"));
        assert!(err("R/2026-01-01T00:00:00Z/PT0S", None).contains("zero"));
        assert!(err("R/2026-01-01T00:00:00Z/PT1H", Some("Mars/Olympus")).contains("time zone"));
        assert_eq!(
            Period::parse("PT90M").unwrap().exact_micros(),
            Some(5_400_000_000)
        );
    }
}
