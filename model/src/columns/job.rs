//! `Job` rows as kubectl prints them (`printJob`): its status from the conditions,
//! `succeeded/completions`, and how long it ran; `CronJob` rows (`printCronJob`).

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{containers_and_images, items, key_values, s};
use crate::time::parse_rfc3339;

/// NAME, STATUS, COMPLETIONS, DURATION, AGE, CONTAINERS, IMAGES, SELECTOR.
pub(super) fn row(v: &Value, name: String, created: String, now: SystemTime) -> Vec<String> {
    let succeeded = v
        .pointer("/status/succeeded")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let completions = match v.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match v.pointer("/spec/parallelism").and_then(Value::as_i64) {
            Some(p) if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = parse_rfc3339(s(v, "/status/startTime"));
    let end = parse_rfc3339(s(v, "/status/completionTime")).unwrap_or(now);
    let duration = start.map_or_else(String::new, |start| {
        human_duration(end.duration_since(start).unwrap_or_default())
    });
    let [names, images] = containers_and_images(v, "/spec/template/spec/containers");
    let selector = match v.pointer("/spec/selector/matchLabels") {
        Some(_) => key_values(v, "/spec/selector/matchLabels"),
        None => "<none>".into(),
    };
    vec![
        name,
        status(v),
        completions,
        duration,
        created,
        names,
        images,
        selector,
    ]
}

/// NAME, SCHEDULE, TIMEZONE, SUSPEND, ACTIVE, LAST SCHEDULE, AGE, CONTAINERS, IMAGES,
/// SELECTOR, as kubectl's `printCronJob`.
pub(super) fn cron_row(v: &Value, name: String, created: String, now: SystemTime) -> Vec<String> {
    let last = v
        .pointer("/status/lastScheduleTime")
        .and_then(Value::as_str)
        .map_or_else(|| "<none>".to_string(), |t| super::age(Some(t), now));
    let [names, images] =
        containers_and_images(v, "/spec/jobTemplate/spec/template/spec/containers");
    let selector = match v.pointer("/spec/jobTemplate/spec/selector/matchLabels") {
        Some(_) => key_values(v, "/spec/jobTemplate/spec/selector/matchLabels"),
        None => "<none>".into(),
    };
    let zone = s(v, "/spec/timeZone");
    let suspend = v.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    vec![
        name,
        s(v, "/spec/schedule").to_string(),
        if zone.is_empty() {
            "<none>".into()
        } else {
            zone.to_string()
        },
        if suspend { "True" } else { "False" }.into(),
        items(v, "/status/active").len().to_string(),
        last,
        created,
        names,
        images,
        selector,
    ]
}

/// kubectl's STATUS of a Job: the first of its conditions that holds, in kubectl's order.
fn status(v: &Value) -> String {
    let holds = |t: &str| {
        items(v, "/status/conditions")
            .iter()
            .any(|c| s(c, "/type") == t && s(c, "/status") == "True")
    };
    let terminating = v.pointer("/metadata/deletionTimestamp").is_some();
    let status = if holds("Complete") {
        "Complete"
    } else if holds("Failed") {
        "Failed"
    } else if terminating {
        "Terminating"
    } else if holds("Suspended") {
        "Suspended"
    } else if holds("FailureTarget") {
        "FailureTarget"
    } else if holds("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    status.into()
}

/// Kubernetes' `duration.HumanDuration`: `45s`, `2m5s`, `12m`, `3h20m`, `30h`, `3d4h`, `20d`.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (m, h, day) = (60, 3600, 86_400);
    match secs {
        s if s < 2 * m => format!("{s}s"),
        s if s < 10 * m && s % m == 0 => format!("{}m", s / m),
        s if s < 10 * m => format!("{}m{}s", s / m, s % m),
        s if s < 3 * h => format!("{}m", s / m),
        s if s < 8 * h && (s % h) / m == 0 => format!("{}h", s / h),
        s if s < 8 * h => format!("{}h{}m", s / h, (s % h) / m),
        s if s < 48 * h => format!("{}h", s / h),
        s if s < 8 * day && (s % day) / h == 0 => format!("{}d", s / day),
        s if s < 8 * day => format!("{}d{}h", s / day, (s % day) / h),
        s if s < 365 * 2 * day => format!("{}d", s / day),
        s => format!("{}y", s / (365 * day)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_read_as_kubectl_prints_them() {
        let job = json!({
            "metadata": {"name": "pi"},
            "spec": {"completions": 3, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 3, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:02:05Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}
        });
        let row = row(&job, "pi".into(), "5m".into(), SystemTime::now());
        assert_eq!(row[..4], ["pi", "Complete", "3/3", "2m5s"]);
        let running = json!({"spec": {"parallelism": 2}, "status": {"succeeded": 1}});
        let row = super::row(&running, "w".into(), "1s".into(), SystemTime::now());
        assert_eq!(row[1..4], ["Running", "1/1 of 2", ""]);
    }

    #[test]
    fn durations_are_kubernetes_human_durations() {
        for (secs, text) in [
            (45, "45s"),
            (119, "119s"),
            (125, "2m5s"),
            (180, "3m"),
            (720, "12m"),
            (12_000, "3h20m"),
            (108_000, "30h"),
            (273_600, "3d4h"),
            (1_728_000, "20d"),
        ] {
            assert_eq!(human_duration(Duration::from_secs(secs)), text);
        }
    }
}
