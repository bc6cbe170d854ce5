//! The report of a run: the JSON document of `--json`, the summary table, and the figures behind both.
//!
//! Completion latency is measured from the `201` (the harness's clock) to the saga's `completedAt` (the
//! node's clock). The two clocks are related by an offset estimated from the orders themselves: a saga's
//! `startedAt` lies between the moment its order was sent and the moment the `201` came back, so every
//! order bounds the offset from both sides. On one machine the bounds contain zero and no correction is
//! made; across machines the smallest correction that fits every order is used.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::invariants::Violation;

/// Longest latency the histograms hold, in microseconds (one hour); longer values are clamped.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
/// Significant digits of the histograms.
const HISTOGRAM_DIGITS: u8 = 3;

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
}

/// The latencies of the contract, and the whole saga's.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latencies {
    /// From the moment the order was due (open loop) or sent (closed loop) to its `201`.
    pub accept: LatencySummary,
    /// From the `201` to the saga's end.
    pub completion: LatencySummary,
    /// From the moment the order was due or sent to the saga's end: what a client waiting for the
    /// outcome sees (accept and completion together).
    pub saga: LatencySummary,
}

/// The outcome of the invariant checks.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvariantReport {
    pub ok: bool,
    pub violations: Vec<Violation>,
    /// Checks that could not be made, and why.
    pub skipped: Vec<String>,
}

/// One second of the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Second {
    /// Seconds since the start of the run.
    pub second: u64,
    /// Orders accepted (`201`) in this second.
    pub accepted: u64,
    /// Sagas that ended in this second.
    pub ended: u64,
    /// Completion latency of the sagas that ended in this second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_p99_ms: Option<f64>,
}

/// How the load was applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum LoadDescription {
    /// `concurrency` workers, each placing its next order once the previous one was answered.
    Closed { concurrency: u64 },
    /// `concurrency` workers, each placing its next order once the previous one's saga had ended.
    Sagas { concurrency: u64 },
    /// Orders due at a fixed rate, whatever the answers.
    Open { rate: f64 },
}

/// The report of one run (`--json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Orders sent.
    pub orders: u64,
    /// Orders the node accepted (`201`).
    pub accepted: u64,
    /// Accepted orders whose saga ended (`confirmed + failed`).
    pub completed: u64,
    pub confirmed: u64,
    pub failed: u64,
    /// From the first order to the end of the last saga.
    pub duration_seconds: f64,
    /// Sagas ended per second of `durationSeconds`.
    pub orders_per_second: f64,
    pub latency_ms: Latencies,
    pub invariants: InvariantReport,

    pub run_id: String,
    pub url: String,
    pub load: LoadDescription,
    pub skus: u64,
    pub stock: i64,
    pub seed: u64,
    pub started_at: DateTime<Utc>,
    /// Orders the node refused (after retries), by reason.
    pub rejected: u64,
    pub rejections: BTreeMap<String, u64>,
    /// Failed orders whose saga was compensated (payment failed after the stock was reserved).
    pub compensated: u64,
    /// Accepted orders still `PENDING` when the harness stopped waiting.
    pub not_ended: u64,
    /// Whether the harness waited for the sagas (`false` with `--no-wait`: only placement was measured).
    pub waited: bool,
    /// Accepted orders per second while placing.
    pub accepted_per_second: f64,
    /// The node's clock minus the harness's, as estimated from the orders (milliseconds).
    pub clock_offset_ms: f64,
    pub timeline: Vec<Second>,
}

/// An accepted order's timing: offsets from the start of the run (harness clock), and the saga's
/// timestamps (node clock).
#[derive(Clone, Debug)]
pub struct Timing {
    /// When the order was due (open loop) or first sent (closed loop).
    pub due: Duration,
    /// When it was first sent.
    pub sent: Duration,
    /// When the `201` arrived.
    pub accepted: Duration,
    pub saga_started_at: Option<DateTime<Utc>>,
    pub saga_completed_at: Option<DateTime<Utc>>,
}

/// The figures derived from the timings.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub latency: Latencies,
    pub duration: Duration,
    pub clock_offset_ms: f64,
    /// Whether the bounds on the clock offset agreed with each other.
    pub clock_consistent: bool,
    pub timeline: Vec<Second>,
}

fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_DIGITS)
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let micros = u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, HISTOGRAM_MAX_US);
    h.saturating_record(micros);
}

/// Microseconds as milliseconds, to the microsecond.
fn ms(micros: f64) -> f64 {
    micros.round() / 1_000.0
}

/// Percentiles of a histogram in milliseconds (zeros when empty).
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        p50: ms(h.value_at_quantile(0.50) as f64),
        p90: ms(h.value_at_quantile(0.90) as f64),
        p99: ms(h.value_at_quantile(0.99) as f64),
        max: ms(h.max() as f64),
        mean: ms(h.mean()),
        count: h.len(),
    }
}

/// The node's clock minus the harness's, in microseconds, and whether the orders agree on it. `start` is
/// the harness's wall-clock time at offset zero.
pub fn clock_offset(start: DateTime<Utc>, timings: &[Timing]) -> (i64, bool) {
    let wall = |d: Duration| start + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let mut low = i64::MIN;
    let mut high = i64::MAX;
    for t in timings {
        let Some(started) = t.saga_started_at else {
            continue;
        };
        // started ∈ [sent + offset, accepted + offset]
        let lower = (started - wall(t.accepted)).num_microseconds().unwrap_or(0);
        let upper = (started - wall(t.sent)).num_microseconds().unwrap_or(0);
        low = low.max(lower);
        high = high.min(upper);
    }
    if low == i64::MIN && high == i64::MAX {
        return (0, true);
    }
    // The node keeps microseconds (truncated): allow a millisecond of slack before calling it inconsistent.
    if low <= high.saturating_add(1_000) {
        (0i64.clamp(low.min(high), high.max(low)), true)
    } else {
        (low / 2 + high / 2, false)
    }
}

/// Latencies, duration and timeline of the accepted orders. `placing` is how long placing took (the
/// duration when no saga ended).
pub fn figures(
    start: DateTime<Utc>,
    timings: &[Timing],
    placing: Duration,
) -> Result<Figures, hdrhistogram::CreationError> {
    let (offset_us, consistent) = clock_offset(start, timings);
    let offset = chrono::Duration::microseconds(offset_us);
    let mut accept = histogram()?;
    let mut completion = histogram()?;
    let mut saga = histogram()?;
    let mut per_second: BTreeMap<u64, (u64, Vec<Duration>)> = BTreeMap::new();
    let mut accepted_per_second: BTreeMap<u64, u64> = BTreeMap::new();
    let mut end = placing;
    for t in timings {
        record(&mut accept, t.accepted.saturating_sub(t.due));
        *accepted_per_second.entry(t.accepted.as_secs()).or_default() += 1;
        end = end.max(t.accepted);
        let Some(completed_at) = t.saga_completed_at else {
            continue;
        };
        // The saga's end on the harness's clock, as an offset from the start.
        let ended = ((completed_at - offset) - start)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let latency = ended.saturating_sub(t.accepted);
        record(&mut completion, latency);
        record(&mut saga, ended.saturating_sub(t.due));
        end = end.max(ended);
        let slot = per_second.entry(ended.as_secs()).or_default();
        slot.0 += 1;
        slot.1.push(latency);
    }
    let seconds = end.as_secs() + u64::from(end.subsec_nanos() > 0);
    let timeline = (0..seconds)
        .map(|second| {
            let accepted = accepted_per_second.get(&second).copied().unwrap_or(0);
            let (ended, mut latencies) = per_second.remove(&second).unwrap_or_default();
            latencies.sort_unstable();
            let pick = |q: f64| -> Option<f64> {
                if latencies.is_empty() {
                    return None;
                }
                let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
                latencies.get(index).map(|l| ms(l.as_micros() as f64))
            };
            Second {
                second,
                accepted,
                ended,
                completion_p50_ms: pick(0.50),
                completion_p99_ms: pick(0.99),
            }
        })
        .collect();
    Ok(Figures {
        latency: Latencies {
            accept: summarize(&accept),
            completion: summarize(&completion),
            saga: summarize(&saga),
        },
        duration: end,
        clock_offset_ms: ms(offset_us as f64),
        clock_consistent: consistent,
        timeline,
    })
}

fn rate(count: u64, over: f64) -> f64 {
    if over > 0.0 {
        (count as f64 / over * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// Orders (or sagas) per second, rounded to a tenth.
pub fn per_second(count: u64, over: Duration) -> f64 {
    rate(count, over.as_secs_f64())
}

/// The summary table printed at the end of a run.
pub fn render_summary(report: &Report) -> String {
    let mut out = String::new();
    let load = match &report.load {
        LoadDescription::Closed { concurrency } => format!("closed loop, {concurrency} concurrent"),
        LoadDescription::Sagas { concurrency } => {
            format!("closed loop over whole sagas, {concurrency} concurrent")
        }
        LoadDescription::Open { rate } => format!("open loop, {rate} orders/s due"),
    };
    let _ = writeln!(
        out,
        "ordersaga loadtest — run {} against {}",
        report.run_id, report.url
    );
    let _ = writeln!(
        out,
        "  load          {load}, {} SKUs of {}",
        report.skus, report.stock
    );
    let _ = writeln!(
        out,
        "  orders        {} sent, {} accepted, {} rejected",
        report.orders, report.accepted, report.rejected
    );
    for (reason, n) in &report.rejections {
        let _ = writeln!(out, "                  {n} × {reason}");
    }
    if !report.waited {
        let _ = writeln!(out, "  sagas ended   not waited for (--no-wait)");
        let _ = writeln!(
            out,
            "  throughput    {:.1} accepted/s over {:.2} s",
            report.accepted_per_second, report.duration_seconds
        );
        let _ = writeln!(
            out,
            "  accept (ms)   p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            report.latency_ms.accept.p50,
            report.latency_ms.accept.p90,
            report.latency_ms.accept.p99,
            report.latency_ms.accept.max
        );
        return out;
    }
    let _ = writeln!(
        out,
        "  sagas ended   {} ({} confirmed, {} failed of which {} compensated){}",
        report.completed,
        report.confirmed,
        report.failed,
        report.compensated,
        if report.not_ended > 0 {
            format!(", {} NOT ENDED", report.not_ended)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "  throughput    {:.1} sagas/s over {:.2} s ({:.1} accepted/s)",
        report.orders_per_second, report.duration_seconds, report.accepted_per_second
    );
    let _ = writeln!(
        out,
        "  latency (ms)  {:>10} {:>10} {:>10} {:>10} {:>10}",
        "p50", "p90", "p99", "max", "mean"
    );
    for (name, l) in [
        ("accept", &report.latency_ms.accept),
        ("completion", &report.latency_ms.completion),
        ("saga", &report.latency_ms.saga),
    ] {
        let _ = writeln!(
            out,
            "    {name:<11} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            l.p50, l.p90, l.p99, l.max, l.mean
        );
    }
    if report.invariants.ok {
        let _ = writeln!(out, "  invariants    ok");
    } else {
        let _ = writeln!(
            out,
            "  invariants    FAILED: {} violation(s)",
            report.invariants.violations.len()
        );
        for v in report.invariants.violations.iter().take(20) {
            let _ = writeln!(out, "    - {v}");
        }
        if report.invariants.violations.len() > 20 {
            let _ = writeln!(
                out,
                "    … and {} more (see the JSON report)",
                report.invariants.violations.len() - 20
            );
        }
    }
    for s in &report.invariants.skipped {
        let _ = writeln!(out, "  skipped       {s}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn at(d: Duration) -> DateTime<Utc> {
        start() + chrono::Duration::from_std(d).unwrap()
    }

    fn timing(sent_ms: u64, accepted_ms: u64, started_ms: u64, completed_ms: Option<u64>) -> Timing {
        let ms = Duration::from_millis;
        Timing {
            due: ms(sent_ms),
            sent: ms(sent_ms),
            accepted: ms(accepted_ms),
            saga_started_at: Some(at(ms(started_ms))),
            saga_completed_at: completed_ms.map(|c| at(ms(c))),
        }
    }

    #[test]
    fn same_clock_needs_no_correction() {
        let timings = [timing(0, 10, 5, Some(30)), timing(100, 120, 101, Some(150))];
        assert_eq!(clock_offset(start(), &timings), (0, true));
    }

    #[test]
    fn a_node_clock_ahead_is_corrected() {
        // The node is 1 s ahead: every startedAt is 1 s after the moment it must have happened.
        let timings = [
            timing(0, 10, 1_005, Some(1_030)),
            timing(100, 120, 1_101, Some(1_150)),
        ];
        let (offset, consistent) = clock_offset(start(), &timings);
        assert!(consistent);
        // The smallest correction that fits: startedAt − accepted of the tightest order.
        assert_eq!(offset, 995_000);
        let f = figures(start(), &timings, Duration::from_millis(120)).unwrap();
        // 1_030 − 995 − 10 = 25 ms, 1_150 − 995 − 120 = 35 ms (histograms keep 3 significant digits)
        let close = |value: f64, expected: f64| (value - expected).abs() <= expected * 0.001;
        assert!(
            close(f.latency.completion.max, 35.0),
            "{:?}",
            f.latency.completion
        );
        assert!(
            close(f.latency.completion.p50, 25.0),
            "{:?}",
            f.latency.completion
        );
        // The whole saga counts from the moment it was sent: 1_030 − 995 − 0 = 35 ms, 1_150 − 995 − 100 = 55 ms.
        assert!(close(f.latency.saga.p50, 35.0), "{:?}", f.latency.saga);
        assert!(close(f.latency.saga.max, 55.0), "{:?}", f.latency.saga);
    }

    #[test]
    fn figures_cover_the_whole_run() {
        let timings = [
            timing(0, 10, 5, Some(30)),
            timing(500, 520, 505, Some(1_700)),
            timing(900, 950, 905, None),
        ];
        let f = figures(start(), &timings, Duration::from_millis(950)).unwrap();
        assert_eq!(f.duration, Duration::from_millis(1_700));
        assert_eq!(f.latency.accept.count, 3);
        assert_eq!(f.latency.completion.count, 2);
        assert_eq!(f.latency.saga.count, 2);
        assert_eq!(f.timeline.len(), 2);
        assert_eq!((f.timeline[0].accepted, f.timeline[0].ended), (3, 1));
        assert_eq!((f.timeline[1].accepted, f.timeline[1].ended), (0, 1));
        assert_eq!(f.timeline[1].completion_p99_ms, Some(1_180.0));
    }

    fn sample_report() -> Report {
        let latency = |p50: f64| LatencySummary {
            p50,
            p90: p50 * 2.0,
            p99: p50 * 4.0,
            max: p50 * 8.0,
            mean: p50 * 1.5,
            count: 4_000,
        };
        Report {
            orders: 4_000,
            accepted: 4_000,
            completed: 4_000,
            confirmed: 1_340,
            failed: 2_660,
            duration_seconds: 2.5,
            orders_per_second: 1_600.0,
            latency_ms: Latencies {
                accept: latency(10.0),
                completion: latency(20.0),
                saga: latency(30.0),
            },
            invariants: InvariantReport {
                ok: true,
                violations: vec![],
                skipped: vec![],
            },
            run_id: "3f9a1c2e".to_owned(),
            url: "http://127.0.0.1:8080".to_owned(),
            load: LoadDescription::Closed { concurrency: 32 },
            skus: 20,
            stock: 100,
            seed: 7,
            started_at: start(),
            rejected: 0,
            rejections: BTreeMap::new(),
            compensated: 0,
            not_ended: 0,
            waited: true,
            accepted_per_second: 1_700.0,
            clock_offset_ms: 0.0,
            timeline: vec![],
        }
    }

    #[test]
    fn the_summary_shows_the_figures_of_the_contract() {
        let text = render_summary(&sample_report());
        assert!(text.contains("4000 sent, 4000 accepted, 0 rejected"), "{text}");
        assert!(text.contains("1600.0 sagas/s over 2.50 s"), "{text}");
        assert!(text.contains("completion") && text.contains("80.0"), "{text}");
        assert!(text.contains("invariants    ok"), "{text}");

        let mut failed = sample_report();
        failed.invariants.ok = false;
        failed.invariants.violations = vec![Violation {
            kind: super::super::invariants::ViolationKind::LostOrder,
            order_id: Some("o-1".to_owned()),
            sku_id: None,
            message: "order o-1 was accepted but the node does not know it (lost)".to_owned(),
        }];
        let text = render_summary(&failed);
        assert!(
            text.contains("FAILED: 1 violation(s)") && text.contains("o-1"),
            "{text}"
        );

        let mut placed_only = sample_report();
        placed_only.waited = false;
        let text = render_summary(&placed_only);
        assert!(
            text.contains("not waited for") && !text.contains("invariants"),
            "{text}"
        );
    }

    #[test]
    fn empty_histograms_summarize_to_zero() {
        assert_eq!(summarize(&histogram().unwrap()), LatencySummary::default());
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(per_second(10, Duration::from_secs(4)), 2.5);
    }
}
