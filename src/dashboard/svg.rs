//! Charts drawn on the server as inline SVG: columns (stacked), lines, horizontal bars and a step
//! waterfall. No script and no external resource; colours come from the dashboard's stylesheet through
//! class names (`.bar.completed`, `.line.p95`, …), every label is XML-escaped here, and every mark has
//! a `<title>` so that hovering shows its value.

use std::fmt::Write as _;

/// Width in SVG units of a chart in a half-width panel; the drawing scales to its box, so this is
/// about its width in pixels on a desktop screen and keeps the text at its intended size.
pub const NARROW: f64 = 640.0;
/// Width of a chart that spans the page.
pub const WIDE: f64 = 1240.0;
const COLUMN_HEIGHT: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 30.0;
/// Widest column, so that a few columns do not turn into slabs.
const MAX_BAR: f64 = 56.0;
/// Most labels written under the x axis; the others are left out (their marks keep a tooltip).
const MAX_X_LABELS: usize = 8;

/// One named series of values, drawn with the CSS class `class`. `None` is a gap (no data).
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub class: String,
    pub values: Vec<Option<f64>>,
}

impl Series {
    pub fn new(name: &str, class: &str, values: Vec<Option<f64>>) -> Self {
        Series {
            name: name.to_owned(),
            class: class.to_owned(),
            values,
        }
    }
}

/// Escapes text for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A tick step of 1, 2 or 5 times a power of ten, so that about `ticks` steps reach `max`.
pub fn nice_step(max: f64, ticks: usize) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let raw = max / ticks.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let normalized = raw / magnitude;
    let step = if normalized <= 1.0 {
        1.0
    } else if normalized <= 2.0 {
        2.0
    } else if normalized <= 5.0 {
        5.0
    } else {
        10.0
    };
    step * magnitude
}

/// The top of the y axis and its step: a multiple of the step at or above `max`; whole numbers only
/// when `whole` (counts).
fn y_scale(max: f64, whole: bool) -> (f64, f64) {
    let mut step = nice_step(max, 4);
    if whole {
        step = step.max(1.0).round();
    }
    let top = (max / step).ceil().max(1.0) * step;
    (top, step)
}

fn open(out: &mut String, width: f64, height: f64, label: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        escape(label)
    );
    let _ = write!(out, "<title>{}</title>", escape(label));
}

fn empty(out: &mut String, width: f64, height: f64, message: &str) {
    let _ = write!(
        out,
        r#"<text class="empty" x="{}" y="{}" text-anchor="middle">{}</text></svg>"#,
        width / 2.0,
        height / 2.0,
        escape(message)
    );
}

fn legend(out: &mut String, series: &[Series]) {
    let mut x = LEFT;
    for s in series {
        let _ = write!(
            out,
            r#"<g class="legend"><rect class="swatch {}" x="{x:.1}" y="8" width="10" height="10" rx="2"/><text x="{:.1}" y="17">{}</text></g>"#,
            escape(&s.class),
            x + 14.0,
            escape(&s.name)
        );
        x += 24.0 + 7.0 * s.name.chars().count() as f64;
    }
}

/// Horizontal grid lines with their values on the left.
fn y_axis(
    out: &mut String,
    width: f64,
    top: f64,
    step: f64,
    plot_bottom: f64,
    plot_height: f64,
    format: &dyn Fn(f64) -> String,
) {
    let mut value = 0.0;
    while value <= top + step / 2.0 {
        let y = plot_bottom - value / top * plot_height;
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            width - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&format(value))
        );
        value += step;
    }
}

fn x_labels(out: &mut String, labels: &[String], x_of: &dyn Fn(usize) -> f64, y: f64) {
    let every = labels.len().div_ceil(MAX_X_LABELS).max(1);
    for (i, label) in labels.iter().enumerate() {
        if i % every == 0 || i + 1 == labels.len() && labels.len() <= MAX_X_LABELS {
            let _ = write!(
                out,
                r#"<text class="axis" x="{:.1}" y="{y:.1}" text-anchor="middle">{}</text>"#,
                x_of(i),
                escape(label)
            );
        }
    }
}

/// A new chart: the opening of its `<svg>`.
fn chart(width: f64, height: f64, label: &str) -> String {
    let mut out = String::with_capacity(4096);
    open(&mut out, width, height, label);
    out
}

/// The plot area of a chart of `COLUMN_HEIGHT` over `labels`.
struct Plot {
    /// The value at the top of the y axis.
    top: f64,
    plot_bottom: f64,
    plot_height: f64,
    /// The width given to one label.
    slot: f64,
}

/// Draws the y axis of a chart over `labels` whose values reach `max` (in whole steps with `whole`) and
/// answers its plot area; with nothing to plot, draws the notice that says so and answers `None`.
fn plot(
    out: &mut String,
    width: f64,
    labels: &[String],
    max: f64,
    whole: bool,
    format: &dyn Fn(f64) -> String,
) -> Option<Plot> {
    let height = COLUMN_HEIGHT;
    if labels.is_empty() || max <= 0.0 {
        empty(out, width, height, "nothing in this range");
        return None;
    }
    let (top, step) = y_scale(max, whole);
    let plot_bottom = height - BOTTOM;
    let plot_height = plot_bottom - TOP;
    y_axis(out, width, top, step, plot_bottom, plot_height, format);
    Some(Plot {
        top,
        plot_bottom,
        plot_height,
        slot: (width - LEFT - RIGHT) / labels.len() as f64,
    })
}

/// Columns, one per label, with the series stacked bottom-up.
pub fn columns(
    width: f64,
    label: &str,
    labels: &[String],
    series: &[Series],
    format: &dyn Fn(f64) -> String,
) -> String {
    let height = COLUMN_HEIGHT;
    let mut out = chart(width, height, label);
    let totals: Vec<f64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .filter_map(|s| s.values.get(i).copied().flatten())
                .sum()
        })
        .collect();
    let max = totals.iter().copied().fold(0.0, f64::max);
    let Some(Plot {
        top,
        plot_bottom,
        plot_height,
        slot,
    }) = plot(&mut out, width, labels, max, true, format)
    else {
        return out;
    };
    if series.len() > 1 {
        legend(&mut out, series);
    }
    let bar = (slot * 0.72).clamp(1.0, MAX_BAR);
    for (i, name) in labels.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut base = plot_bottom;
        for s in series {
            let value = s.values.get(i).copied().flatten().unwrap_or(0.0);
            if value <= 0.0 {
                continue;
            }
            let h = value / top * plot_height;
            base -= h;
            let _ = write!(
                out,
                r#"<rect class="bar {}" x="{x:.1}" y="{base:.1}" width="{bar:.1}" height="{h:.1}"><title>{} · {}: {}</title></rect>"#,
                escape(&s.class),
                escape(name),
                escape(&s.name),
                escape(&format(value))
            );
        }
    }
    x_labels(
        &mut out,
        labels,
        &|i| LEFT + slot * (i as f64 + 0.5),
        height - 10.0,
    );
    out.push_str("</svg>");
    out
}

/// Lines, one point per label; a `None` value breaks the line.
pub fn lines(
    width: f64,
    label: &str,
    labels: &[String],
    series: &[Series],
    format: &dyn Fn(f64) -> String,
) -> String {
    let height = COLUMN_HEIGHT;
    let mut out = chart(width, height, label);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied().flatten())
        .fold(0.0, f64::max);
    let Some(Plot {
        top,
        plot_bottom,
        plot_height,
        slot,
    }) = plot(&mut out, width, labels, max, false, format)
    else {
        return out;
    };
    legend(&mut out, series);
    let x_of = |i: usize| LEFT + slot * (i as f64 + 0.5);
    for s in series {
        let mut path = String::new();
        let mut pen_down = false;
        for (i, value) in s.values.iter().enumerate() {
            match value {
                Some(v) => {
                    let y = plot_bottom - v / top * plot_height;
                    let _ = write!(path, "{}{:.1},{y:.1} ", if pen_down { "L" } else { "M" }, x_of(i));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            out,
            r#"<path class="line {}" d="{}"/>"#,
            escape(&s.class),
            path.trim_end()
        );
        for (i, value) in s.values.iter().enumerate() {
            if let Some(v) = value {
                let y = plot_bottom - v / top * plot_height;
                let _ = write!(
                    out,
                    r#"<circle class="dot {}" cx="{:.1}" cy="{y:.1}" r="2.5"><title>{} · {}: {}</title></circle>"#,
                    escape(&s.class),
                    x_of(i),
                    escape(labels.get(i).map(String::as_str).unwrap_or_default()),
                    escape(&s.name),
                    escape(&format(*v))
                );
            }
        }
    }
    x_labels(&mut out, labels, &x_of, height - 10.0);
    out.push_str("</svg>");
    out
}

/// Horizontal bars, one row per `(name, value)`, largest first as given.
pub fn bars(
    width: f64,
    label: &str,
    rows: &[(String, f64)],
    class: &str,
    format: &dyn Fn(f64) -> String,
) -> String {
    const ROW: f64 = 26.0;
    const NAME: f64 = 170.0;
    let height = (rows.len().max(3) as f64) * ROW + 12.0;
    let mut out = String::with_capacity(2048);
    open(&mut out, width, height, label);
    let max = rows.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    if rows.is_empty() || max <= 0.0 {
        empty(&mut out, width, height, "nothing in this range");
        return out;
    }
    let span = width - NAME - 70.0;
    for (i, (name, value)) in rows.iter().enumerate() {
        let y = 6.0 + i as f64 * ROW;
        let w = (value / max * span).max(2.0);
        let shown: String = if name.chars().count() > 24 {
            name.chars().take(23).chain(std::iter::once('…')).collect()
        } else {
            name.clone()
        };
        let _ = write!(
            out,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect class="bar {}" x="{NAME}" y="{y:.1}" width="{w:.1}" height="{:.1}" rx="3"><title>{}: {}</title></rect><text class="value" x="{:.1}" y="{:.1}">{}</text>"#,
            NAME - 8.0,
            y + 15.0,
            escape(&shown),
            escape(class),
            ROW - 8.0,
            escape(name),
            escape(&format(*value)),
            NAME + w + 6.0,
            y + 15.0,
            escape(&format(*value))
        );
    }
    out.push_str("</svg>");
    out
}

/// One step of a saga for [`waterfall`]: when it happened, in milliseconds from the start.
#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    pub class: String,
    pub at_ms: f64,
}

/// A waterfall of steps: each row a bar from the step before to this one, so that the longest wait
/// stands out, on an axis from the saga's start to its last step.
pub fn waterfall(width: f64, label: &str, steps: &[Step], format: &dyn Fn(f64) -> String) -> String {
    const ROW: f64 = 26.0;
    const NAME: f64 = 190.0;
    let height = steps.len().max(1) as f64 * ROW + 40.0;
    let mut out = String::with_capacity(2048);
    open(&mut out, width, height, label);
    if steps.is_empty() {
        empty(&mut out, width, height, "no steps yet");
        return out;
    }
    let end = steps.iter().map(|s| s.at_ms).fold(0.0, f64::max).max(1.0);
    let span = width - NAME - 80.0;
    let x_of = |ms: f64| NAME + ms.max(0.0) / end * span;
    let axis_y = height - 22.0;
    let (_, step) = y_scale(end, false);
    let mut tick = 0.0;
    while tick <= end + step / 2.0 {
        let x = x_of(tick.min(end));
        let _ = write!(
            out,
            r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="4" y2="{axis_y:.1}"/><text class="axis" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            axis_y + 14.0,
            escape(&format(tick.min(end)))
        );
        tick += step;
    }
    let mut previous = 0.0;
    for (i, s) in steps.iter().enumerate() {
        let y = 6.0 + i as f64 * ROW;
        let x0 = x_of(previous);
        let x1 = x_of(s.at_ms);
        let wait = (s.at_ms - previous).max(0.0);
        let _ = write!(
            out,
            r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect class="bar {}" x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" rx="3"><title>{}: +{} (waited {})</title></rect><circle class="dot {}" cx="{x1:.1}" cy="{:.1}" r="4"/><text class="value" x="{:.1}" y="{:.1}">+{}</text>"#,
            NAME - 8.0,
            y + 15.0,
            escape(&s.name),
            escape(&s.class),
            (x1 - x0).max(2.0),
            ROW - 8.0,
            escape(&s.name),
            escape(&format(s.at_ms)),
            escape(&format(wait)),
            escape(&s.class),
            y + (ROW - 8.0) / 2.0,
            x1 + 8.0,
            y + 15.0,
            escape(&format(s.at_ms))
        );
        previous = s.at_ms;
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(v: f64) -> String {
        format!("{v}")
    }

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(10.0, 4), 5.0);
        assert_eq!(nice_step(7.0, 4), 2.0);
        assert_eq!(nice_step(1234.0, 4), 500.0);
        assert_eq!(nice_step(0.3, 4), 0.1);
        assert_eq!(nice_step(0.0, 4), 1.0);
        assert_eq!(y_scale(3.0, true), (3.0, 1.0));
        assert_eq!(y_scale(0.4, true), (1.0, 1.0));
        assert_eq!(y_scale(9.0, true), (10.0, 5.0));
    }

    #[test]
    fn labels_are_escaped() {
        let svg = bars(
            NARROW,
            "<b>",
            &[("<script>\"x\"&".to_owned(), 3.0)],
            "sku",
            &count,
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;&quot;x&quot;&amp;"));
        assert!(svg.contains("aria-label=\"&lt;b&gt;\""));
    }

    #[test]
    fn stacked_columns_have_a_mark_and_a_tooltip_per_value() {
        let labels = vec!["10:00".to_owned(), "10:01".to_owned()];
        let series = vec![
            Series::new("completed", "completed", vec![Some(2.0), Some(0.0)]),
            Series::new("failed", "failed", vec![Some(1.0), None]),
        ];
        let svg = columns(NARROW, "throughput", &labels, &series, &count);
        assert_eq!(svg.matches("<rect class=\"bar ").count(), 2);
        assert!(svg.contains("<title>10:00 · failed: 1</title>"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn no_data_says_so() {
        let svg = columns(NARROW, "x", &[], &[], &count);
        assert!(svg.contains("nothing in this range"));
        let svg = lines(
            NARROW,
            "x",
            &["a".to_owned()],
            &[Series::new("p50", "p50", vec![None])],
            &count,
        );
        assert!(svg.contains("nothing in this range"));
    }

    #[test]
    fn gaps_break_lines() {
        let labels: Vec<String> = (0..4).map(|i| i.to_string()).collect();
        let svg = lines(
            NARROW,
            "latency",
            &labels,
            &[Series::new(
                "p50",
                "p50",
                vec![Some(1.0), None, Some(2.0), Some(3.0)],
            )],
            &count,
        );
        let path = svg.split("d=\"").nth(1).unwrap_or_default();
        assert_eq!(path.split('"').next().unwrap_or_default().matches('M').count(), 2);
    }

    #[test]
    fn a_waterfall_has_a_row_per_step() {
        let steps = vec![
            Step {
                name: "OrderCreated".into(),
                class: "s-awaiting-inventory".into(),
                at_ms: 0.0,
            },
            Step {
                name: "PaymentFailed".into(),
                class: "s-compensating".into(),
                at_ms: 40.0,
            },
        ];
        let svg = waterfall(WIDE, "steps", &steps, &count);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("PaymentFailed: +40 (waited 40)"));
    }
}
