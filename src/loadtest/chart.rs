//! The throughput-and-latency-over-time chart of a run, as a self-contained SVG.
//!
//! Top: sagas ended per second (bars) and orders accepted per second (line). Bottom: completion latency
//! p50 and p99 of the sagas that ended in each second.

use std::fmt::Write as _;

use super::report::{Report, Second};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 600.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP_PANEL: (f64, f64) = (70.0, 300.0);
const BOTTOM_PANEL: (f64, f64) = (360.0, 550.0);

const ENDED_COLOR: &str = "#4c78a8";
const ACCEPTED_COLOR: &str = "#f58518";
const P50_COLOR: &str = "#54a24b";
const P99_COLOR: &str = "#e45756";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step for about `ticks` ticks up to `max`: 1, 2 or 5 times a power of ten.
fn nice_step(max: f64, ticks: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / ticks;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    // Whole units when the values are counts or milliseconds above one.
    if max >= 1.0 { step.max(1.0) } else { step }
}

fn label(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

struct Panel {
    top: f64,
    bottom: f64,
    y_max: f64,
    seconds: usize,
}

impl Panel {
    fn new((top, bottom): (f64, f64), max: f64, seconds: usize) -> Panel {
        let step = nice_step(max, 5.0);
        let y_max = ((max / step).ceil() * step).max(step);
        Panel {
            top,
            bottom,
            y_max,
            seconds: seconds.max(1),
        }
    }

    fn slot(&self) -> f64 {
        (WIDTH - LEFT - RIGHT) / self.seconds as f64
    }

    /// The x of the middle of second `i`.
    fn x(&self, i: usize) -> f64 {
        LEFT + (i as f64 + 0.5) * self.slot()
    }

    fn y(&self, value: f64) -> f64 {
        self.bottom - (value / self.y_max).clamp(0.0, 1.0) * (self.bottom - self.top)
    }

    fn axes(&self, out: &mut String, y_title: &str) {
        let step = nice_step(self.y_max, 5.0);
        let mut value = 0.0;
        while value <= self.y_max + step / 1e6 {
            let y = self.y(value);
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                label(value)
            );
            value += step;
        }
        let x_step = nice_step(self.seconds as f64, 10.0) as usize;
        for i in (0..=self.seconds).step_by(x_step.max(1)) {
            let x = LEFT + i as f64 * self.slot();
            let _ = writeln!(
                out,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11">{i}</text>"#,
                self.bottom + 15.0
            );
        }
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{b:.1}" x2="{:.1}" y2="{b:.1}" stroke="#333"/><line x1="{LEFT}" y1="{:.1}" x2="{LEFT}" y2="{b:.1}" stroke="#333"/>"##,
            WIDTH - RIGHT,
            self.top,
            b = self.bottom
        );
        let middle = (self.top + self.bottom) / 2.0;
        let _ = writeln!(
            out,
            r#"<text x="18" y="{middle:.1}" transform="rotate(-90 18 {middle:.1})" text-anchor="middle" font-size="12">{}</text>"#,
            escape(y_title)
        );
    }

    /// A line through the seconds that have a value, broken where one has none (a lone value is a dot).
    fn line(&self, out: &mut String, values: impl Iterator<Item = Option<f64>>, color: &str) {
        fn flush(segment: &mut Vec<(f64, f64)>, out: &mut String, color: &str) {
            match segment[..] {
                [] => {}
                [(x, y)] => {
                    let _ = writeln!(out, r#"<circle cx="{x:.1}" cy="{y:.1}" r="2" fill="{color}"/>"#);
                }
                _ => {
                    let points: Vec<String> = segment.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                    let _ = writeln!(
                        out,
                        r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#,
                        points.join(" ")
                    );
                }
            }
            segment.clear();
        }
        let mut segment = Vec::new();
        for (i, value) in values.enumerate() {
            match value {
                Some(v) => segment.push((self.x(i), self.y(v))),
                None => flush(&mut segment, out, color),
            }
        }
        flush(&mut segment, out, color);
    }
}

fn legend(out: &mut String, y: f64, entries: &[(&str, &str)]) {
    let mut x = LEFT;
    for (color, name) in entries {
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            y - 10.0,
            x + 16.0,
            y,
            escape(name)
        );
        x += 28.0 + 7.0 * name.len() as f64;
    }
}

/// The SVG of the report's timeline.
pub fn svg(report: &Report) -> String {
    render(
        &format!(
            "ordersaga loadtest {} — {} sagas in {:.2} s ({:.1}/s), completion p99 {:.1} ms",
            report.run_id,
            report.completed,
            report.duration_seconds,
            report.orders_per_second,
            report.latency_ms.completion.p99
        ),
        &report.timeline,
    )
}

/// The SVG of a timeline under `title`.
pub fn render(title: &str, timeline: &[Second]) -> String {
    let seconds = timeline.len();
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );

    let rate_max = timeline
        .iter()
        .map(|s| s.ended.max(s.accepted) as f64)
        .fold(0.0, f64::max);
    let top = Panel::new(TOP_PANEL, rate_max, seconds);
    legend(
        &mut out,
        TOP_PANEL.0 - 16.0,
        &[
            (ENDED_COLOR, "sagas ended / s"),
            (ACCEPTED_COLOR, "orders accepted / s"),
        ],
    );
    top.axes(&mut out, "per second");
    let bar = (top.slot() * 0.8).max(0.5);
    for (i, s) in timeline.iter().enumerate() {
        if s.ended == 0 {
            continue;
        }
        let y = top.y(s.ended as f64);
        let _ = writeln!(
            out,
            r#"<rect x="{:.1}" y="{y:.1}" width="{bar:.1}" height="{:.1}" fill="{ENDED_COLOR}"/>"#,
            top.x(i) - bar / 2.0,
            TOP_PANEL.1 - y
        );
    }
    top.line(
        &mut out,
        timeline.iter().map(|s| Some(s.accepted as f64)),
        ACCEPTED_COLOR,
    );

    let latency_max = timeline
        .iter()
        .filter_map(|s| s.completion_p99_ms)
        .fold(0.0, f64::max);
    let bottom = Panel::new(BOTTOM_PANEL, latency_max, seconds);
    legend(
        &mut out,
        BOTTOM_PANEL.0 - 16.0,
        &[(P50_COLOR, "completion p50"), (P99_COLOR, "completion p99")],
    );
    bottom.axes(&mut out, "milliseconds");
    bottom.line(&mut out, timeline.iter().map(|s| s.completion_p50_ms), P50_COLOR);
    bottom.line(&mut out, timeline.iter().map(|s| s.completion_p99_ms), P99_COLOR);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">seconds since the first order</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        HEIGHT - 14.0
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(i: u64, accepted: u64, ended: u64, p50: Option<f64>, p99: Option<f64>) -> Second {
        Second {
            second: i,
            accepted,
            ended,
            completion_p50_ms: p50,
            completion_p99_ms: p99,
        }
    }

    #[test]
    fn the_chart_is_well_formed_svg_with_both_panels() {
        let timeline = [
            second(0, 900, 850, Some(12.0), Some(40.0)),
            second(1, 1_100, 1_150, Some(15.5), Some(60.0)),
            second(2, 0, 0, None, None),
            second(3, 0, 3, Some(5.0), Some(5.0)),
        ];
        let svg = render("run <1> & co", &timeline);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("run &lt;1&gt; &amp; co"));
        assert_eq!(
            svg.matches(&format!(r#"fill="{ENDED_COLOR}"/>"#)).count(),
            3 + 1,
            "3 bars + legend"
        );
        // p50 and p99 are broken at the empty second: a polyline and a lone point each.
        assert_eq!(svg.matches(&format!(r#"stroke="{P99_COLOR}""#)).count(), 1);
        assert_eq!(svg.matches("<circle cx").count(), 2);
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    }

    #[test]
    fn an_empty_run_still_draws() {
        let svg = render("nothing", &[]);
        assert!(svg.contains("seconds since the first order"));
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(1_234.0, 5.0), 500.0);
        assert_eq!(nice_step(90.0, 5.0), 20.0);
        assert_eq!(nice_step(3.0, 10.0), 1.0);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
    }
}
