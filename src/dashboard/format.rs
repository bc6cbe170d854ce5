//! How the dashboards write times, durations and numbers, and how they cut time into buckets.

use chrono::{DateTime, Duration, SecondsFormat, Utc};

/// `2026-11-21 05:44:02` (UTC, whole seconds).
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `05:44:02.123` (UTC, milliseconds), for steps that are close together.
pub fn clock_ms(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

/// RFC 3339, for `<time datetime>` and links.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The value an `<input type="datetime-local" step="1">` shows for `t` (UTC).
pub fn input_value(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - t).num_seconds();
    match seconds {
        s if s < 1 => "just now".to_owned(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3_600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3_600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// `85 ms`, `1.24 s`, `3 min 05 s`, `2 h 03 min`, `4 d 2 h`.
pub fn duration_ms(ms: f64) -> String {
    let ms = ms.max(0.0);
    if ms < 1_000.0 {
        return format!("{} ms", ms.round() as i64);
    }
    let seconds = ms / 1_000.0;
    if seconds < 60.0 {
        return if seconds < 10.0 {
            format!("{seconds:.2} s")
        } else {
            format!("{seconds:.1} s")
        };
    }
    let s = seconds.round() as i64;
    match s {
        s if s < 3_600 => format!("{} min {:02} s", s / 60, s % 60),
        s if s < 86_400 => format!("{} h {:02} min", s / 3_600, (s % 3_600) / 60),
        s => format!("{} d {} h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// A whole number of seconds the short way: `1 s`, `90 s` → `1 min 30 s`, `1 min`, `2 h`, `1 d`.
pub fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    let parts = [
        (s / 86_400, "d"),
        (s % 86_400 / 3_600, "h"),
        (s % 3_600 / 60, "min"),
        (s % 60, "s"),
    ];
    let shown: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect();
    if shown.is_empty() {
        "0 s".to_owned()
    } else {
        shown.join(" ")
    }
}

/// The time from `from` to `to` in milliseconds (0 if `to` is earlier).
pub fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1_000.0).max(0.0)
}

/// A whole number with thin spaces between thousands: `12 345`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

/// Bucket widths the charts use, smallest first.
const WIDTHS_SECONDS: [i64; 20] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200, 86_400,
    172_800, 604_800,
];

/// The smallest bucket width (at least `min`) that cuts `span` into at most `max_buckets` buckets.
pub fn bucket_width(span: Duration, max_buckets: usize, min: Duration) -> Duration {
    let max_buckets = max_buckets.max(1);
    let span = span.num_seconds().max(1) as u64;
    let max_buckets = max_buckets as u64;
    WIDTHS_SECONDS
        .into_iter()
        .map(Duration::seconds)
        .find(|w| *w >= min && span.div_ceil(w.num_seconds().max(1) as u64) <= max_buckets)
        .unwrap_or_else(|| Duration::seconds(WIDTHS_SECONDS.last().copied().unwrap_or(86_400)))
}

/// The start of the bucket of `width` that holds `t` (buckets are aligned on the Unix epoch).
pub fn floor_to(t: DateTime<Utc>, width: Duration) -> DateTime<Utc> {
    let w = width.num_seconds().max(1);
    let start = t.timestamp().div_euclid(w) * w;
    DateTime::from_timestamp(start, 0).unwrap_or(t)
}

/// The buckets of `width` from the one holding `start` to the one holding `end`.
pub fn buckets(start: DateTime<Utc>, end: DateTime<Utc>, width: Duration) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut at = floor_to(start, width);
    let last = floor_to(end.max(start), width);
    while at <= last && out.len() < 10_000 {
        out.push(at);
        at += width;
    }
    out
}

/// The index of the bucket holding `t`, if it is in range.
pub fn bucket_index(starts: &[DateTime<Utc>], width: Duration, t: DateTime<Utc>) -> Option<usize> {
    let first = *starts.first()?;
    if t < first {
        return None;
    }
    let i = ((t - first).num_seconds() / width.num_seconds().max(1)) as usize;
    (i < starts.len()).then_some(i)
}

/// How a bucket start is labelled for its width.
pub fn bucket_label(t: DateTime<Utc>, width: Duration) -> String {
    if width >= Duration::days(1) {
        t.format("%m-%d").to_string()
    } else if width >= Duration::minutes(1) {
        t.format("%H:%M").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}

/// The nearest-rank percentile `p` (0–100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(0.4), "0 ms");
        assert_eq!(duration_ms(85.0), "85 ms");
        assert_eq!(duration_ms(1_240.0), "1.24 s");
        assert_eq!(duration_ms(12_340.0), "12.3 s");
        assert_eq!(duration_ms(185_000.0), "3 min 05 s");
        assert_eq!(duration_ms(7_380_000.0), "2 h 03 min");
        assert_eq!(duration_ms(360_000_000.0), "4 d 4 h");
    }

    #[test]
    fn spans_leave_out_zero_units() {
        assert_eq!(span(0), "0 s");
        assert_eq!(span(1), "1 s");
        assert_eq!(span(60), "1 min");
        assert_eq!(span(90), "1 min 30 s");
        assert_eq!(span(7_200), "2 h");
        assert_eq!(span(86_400 + 60), "1 d 1 min");
    }

    #[test]
    fn ages_and_counts() {
        let now = t("2026-11-21T12:00:00Z");
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(t("2026-11-21T11:59:48Z"), now), "12 s ago");
        assert_eq!(ago(t("2026-11-21T11:55:00Z"), now), "5 min ago");
        assert_eq!(ago(t("2026-11-19T12:00:00Z"), now), "2 d ago");
        assert_eq!(count(12), "12");
        assert_eq!(count(12_345), "12\u{2009}345");
        assert_eq!(count(1_000_000), "1\u{2009}000\u{2009}000");
    }

    #[test]
    fn bucket_widths_fit_the_span() {
        let second = Duration::seconds(1);
        assert_eq!(
            bucket_width(Duration::seconds(20), 24, second),
            Duration::seconds(1)
        );
        assert_eq!(
            bucket_width(Duration::minutes(30), 30, Duration::minutes(1)),
            Duration::minutes(1)
        );
        assert_eq!(
            bucket_width(Duration::minutes(30), 24, second),
            Duration::minutes(2)
        );
        assert_eq!(bucket_width(Duration::days(1), 24, second), Duration::hours(1));
        assert_eq!(bucket_width(Duration::days(3650), 24, second), Duration::days(7));
        assert_eq!(
            bucket_width(Duration::zero(), 24, Duration::minutes(1)),
            Duration::minutes(1)
        );
    }

    #[test]
    fn buckets_cover_the_range_and_place_times() {
        let width = Duration::minutes(1);
        let starts = buckets(t("2026-11-21T10:00:30Z"), t("2026-11-21T10:03:10Z"), width);
        assert_eq!(starts.len(), 4);
        assert_eq!(starts[0], t("2026-11-21T10:00:00Z"));
        assert_eq!(
            bucket_index(&starts, width, t("2026-11-21T10:02:59.999Z")),
            Some(2)
        );
        assert_eq!(bucket_index(&starts, width, t("2026-11-21T10:04:00Z")), None);
        assert_eq!(bucket_index(&starts, width, t("2026-11-21T09:59:59Z")), None);
        assert_eq!(bucket_label(starts[1], width), "10:01");
        assert_eq!(bucket_label(starts[1], Duration::seconds(5)), "10:01:00");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 95.0), Some(95.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
