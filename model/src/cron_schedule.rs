//! A CronJob's schedule as Kubernetes reads it (robfig/cron's standard parser): five fields
//! (minute, hour, day of month, month, day of week; `*`, `?`, numbers, `JAN`–`DEC` and
//! `SUN`–`SAT`, ranges, lists and steps), or a descriptor (`@yearly`, `@monthly`, `@weekly`,
//! `@daily`, `@midnight`, `@hourly`, `@every 90s`); in an IANA time zone, UTC by default.
//! The syntax is checked here; times are found by `croner`.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Cron fields in a time zone.
    Cron(Box<Cron>, Tz),
    /// `@every D`: every D from the last run (or the CronJob's creation).
    Every(Duration),
}

/// Field names, bounds and the names allowed for each of the five fields.
const FIELDS: [(&str, u32, u32, &[&str]); 5] = [
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day of month", 1, 31, &[]),
    (
        "month",
        1,
        12,
        &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
    ),
    (
        "day of week",
        0,
        6,
        &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    ),
];

impl Schedule {
    /// Parses `text` in `time_zone` (an IANA name; UTC when `None`).
    pub fn parse(text: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
        let tz: Tz = match time_zone {
            None => Tz::UTC,
            Some(name) => name
                .parse()
                .map_err(|_| format!("unknown time zone {name:?}"))?,
        };
        let text = text.trim();
        if text.contains("TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        if let Some(every) = text.strip_prefix("@every ") {
            let d = crate::analysis::parse_duration(every.trim())?;
            if d < Duration::from_secs(1) {
                return Err(format!("@every {every}: must be at least 1s"));
            }
            return Ok(Schedule::Every(d));
        }
        let fields = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => return Err(format!("unrecognized descriptor: {t}")),
            t => t,
        };
        let parts: Vec<&str> = fields.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {text}",
                parts.len()
            ));
        }
        for (part, field) in parts.iter().zip(FIELDS) {
            check_field(part, field)?;
        }
        let cron: Cron = fields
            .replace('?', "*")
            .parse()
            .map_err(|e| format!("{text}: {e}"))?;
        Ok(Schedule::Cron(Box::new(cron), tz))
    }

    /// The latest scheduled time in (`after`, `until`], if any.
    pub fn latest(&self, after: SystemTime, until: SystemTime) -> Option<SystemTime> {
        match self {
            Schedule::Every(d) => {
                let elapsed = until.duration_since(after).ok()?;
                let steps = elapsed.as_secs() / d.as_secs().max(1);
                (steps > 0).then(|| after + *d * u32::try_from(steps).unwrap_or(u32::MAX))
            }
            Schedule::Cron(cron, tz) => {
                let at = tz.from_utc_datetime(&DateTime::<Utc>::from(until).naive_utc());
                let t = cron.find_previous_occurrence(&at, true).ok()?;
                let t = SystemTime::from(t.with_timezone(&Utc));
                (t > after).then_some(t)
            }
        }
    }

    /// The first scheduled time after `now`, for a schedule last run (or made) at `anchor`.
    pub fn next_from(&self, anchor: SystemTime, now: SystemTime) -> Option<SystemTime> {
        match self {
            Schedule::Every(d) => {
                let elapsed = now.duration_since(anchor).unwrap_or_default();
                let steps = elapsed.as_secs() / d.as_secs().max(1) + 1;
                Some(anchor + *d * u32::try_from(steps).unwrap_or(u32::MAX))
            }
            Schedule::Cron(..) => self.next_after(now),
        }
    }

    /// The first scheduled time after `t`.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        match self {
            Schedule::Every(d) => Some(t + *d),
            Schedule::Cron(cron, tz) => {
                let at = tz.from_utc_datetime(&DateTime::<Utc>::from(t).naive_utc());
                let next = cron.find_next_occurrence(&at, false).ok()?;
                Some(SystemTime::from(next.with_timezone(&Utc)))
            }
        }
    }
}

/// Checks one field: a list of `*`, `?`, a value or a range, each with an optional `/step`.
fn check_field(
    text: &str,
    (name, min, max, names): (&str, u32, u32, &[&str]),
) -> Result<(), String> {
    let value = |v: &str| -> Result<u32, String> {
        let upper = v.to_ascii_uppercase();
        if let Some(i) = names.iter().position(|n| *n == upper) {
            let offset = if min == 1 { 1 } else { 0 };
            return Ok(u32::try_from(i).unwrap_or(0) + offset);
        }
        let n: u32 = v.parse().map_err(|_| {
            format!(
                "{name}: {v:?} is not a number{}",
                if names.is_empty() { "" } else { " or a name" }
            )
        })?;
        if n < min || n > max {
            return Err(format!("{name}: {n} is out of range {min}-{max}"));
        }
        Ok(n)
    };
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            let n: u32 = step
                .parse()
                .map_err(|_| format!("{name}: step {step:?} is not a number"))?;
            if n == 0 {
                return Err(format!("{name}: step must be at least 1"));
            }
        }
        match range {
            "*" | "?" => {}
            r => match r.split_once('-') {
                Some((a, b)) => {
                    if value(a)? > value(b)? {
                        return Err(format!("{name}: range {r} goes backwards"));
                    }
                }
                None => {
                    value(r)?;
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        crate::time::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn kubernetes_schedules_parse_and_others_are_refused_by_field() {
        for ok in [
            "*/5 * * * *",
            "0 3 * * MON-FRI",
            "15,45 9-17 1 JAN,jul ?",
            "@hourly",
            "@every 90s",
        ] {
            assert!(Schedule::parse(ok, None).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("* * * *", "expected exactly 5 fields"),
            ("0 0 * * * *", "expected exactly 5 fields"),
            ("60 * * * *", "minute: 60 is out of range 0-59"),
            ("0 0 L * *", "day of month: \"L\" is not a number"),
            ("0 0 * * 5#2", "day of week"),
            ("*/0 * * * *", "step must be at least 1"),
            ("@fortnightly", "unrecognized descriptor"),
            ("TZ=UTC 0 * * * *", "use timeZone field"),
        ] {
            let e = Schedule::parse(bad, None).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(Schedule::parse("0 * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn latest_and_next_times_follow_the_schedule() {
        let s = Schedule::parse("*/15 * * * *", None).unwrap();
        let t = s.latest(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:40:10Z"));
        assert_eq!(t, Some(at("2026-01-01T00:30:00Z")));
        assert_eq!(
            s.latest(at("2026-01-01T00:30:00Z"), at("2026-01-01T00:40:10Z")),
            None
        );
        assert_eq!(
            s.next_after(at("2026-01-01T00:30:00Z")),
            Some(at("2026-01-01T00:45:00Z"))
        );
        // Nine in the morning in New York is 14:00 UTC in January.
        let ny = Schedule::parse("0 9 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            ny.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T14:00:00Z"))
        );
        let every = Schedule::parse("@every 5s", None).unwrap();
        let made = at("2026-01-01T00:00:00Z");
        assert_eq!(
            every.latest(made, at("2026-01-01T00:00:12Z")),
            Some(at("2026-01-01T00:00:10Z"))
        );
        assert_eq!(every.latest(made, at("2026-01-01T00:00:04Z")), None);
        assert_eq!(
            every.next_from(made, at("2026-01-01T00:00:12Z")),
            Some(at("2026-01-01T00:00:15Z"))
        );
    }
}
