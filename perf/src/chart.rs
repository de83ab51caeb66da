//! Hand-written SVG chart of a run: throughput over time, latency percentiles over time, and the
//! latency CDF of the measured phase. No plotting dependency: three panels of polylines.

use std::fmt::Write;

use crate::result::{RunResult, PHASE_MEASURE};

const WIDTH: f64 = 960.0;
const PANEL_H: f64 = 220.0;
const MARGIN_L: f64 = 70.0;
const MARGIN_R: f64 = 150.0;
const GAP: f64 = 60.0;
const TOP: f64 = 40.0;

/// One series: legend name, colour, points in data space.
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    points: Vec<(f64, f64)>,
}

/// Axis transform for a panel.
struct Panel {
    y0: f64,
    x_max: f64,
    y_max: f64,
    x_label: String,
    y_label: String,
}

impl Panel {
    fn px(&self, x: f64) -> f64 {
        MARGIN_L + (x / self.x_max.max(1e-9)).clamp(0.0, 1.0) * (WIDTH - MARGIN_L - MARGIN_R)
    }
    fn py(&self, y: f64) -> f64 {
        self.y0 + PANEL_H - (y / self.y_max.max(1e-9)).clamp(0.0, 1.0) * PANEL_H
    }
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn draw_panel(
    out: &mut String,
    title: &str,
    p: &Panel,
    series: &[Series<'_>],
    x_ticks: &[(f64, String)],
) {
    let x1 = WIDTH - MARGIN_R;
    let _ = writeln!(
        out,
        r#"<text x="{MARGIN_L}" y="{:.1}" class="title">{}</text>"#,
        p.y0 - 10.0,
        escape(title)
    );
    let _ = writeln!(
        out,
        r#"<rect x="{MARGIN_L}" y="{:.1}" width="{:.1}" height="{PANEL_H}" class="frame"/>"#,
        p.y0,
        x1 - MARGIN_L
    );
    for i in 0..=4 {
        let v = p.y_max * f64::from(i) / 4.0;
        let y = p.py(v);
        let _ = writeln!(
            out,
            r#"<line x1="{MARGIN_L}" y1="{y:.1}" x2="{x1:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            MARGIN_L - 6.0,
            y + 4.0,
            fmt_tick(v)
        );
    }
    for (x, label) in x_ticks {
        let px = p.px(*x);
        let _ = writeln!(
            out,
            r#"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" class="grid"/><text x="{px:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
            p.y0,
            p.y0 + PANEL_H,
            p.y0 + PANEL_H + 16.0,
            escape(label)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">{}</text>"#,
        (MARGIN_L + x1) / 2.0,
        p.y0 + PANEL_H + 34.0,
        escape(&p.x_label)
    );
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" class="label" transform="rotate(-90 16 {:.1})" text-anchor="middle">{}</text>"#,
        p.y0 + PANEL_H / 2.0,
        p.y0 + PANEL_H / 2.0,
        escape(&p.y_label)
    );
    for (i, s) in series.iter().enumerate() {
        // A non-finite y is "no data" (no message completed that second): break the line there
        // rather than drawing a reassuring drop to zero.
        for run in s.points.split(|(_, y)| !y.is_finite()) {
            if run.is_empty() {
                continue;
            }
            let pts: Vec<String> = run
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", p.px(*x), p.py(*y)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
                pts.join(" "),
                s.colour
            );
        }
        let ly = p.y0 + 14.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}" class="tick">{}</text>"#,
            x1 + 10.0,
            x1 + 30.0,
            s.colour,
            x1 + 36.0,
            ly + 4.0,
            escape(s.name)
        );
    }
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 || v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// "Nines" x-position for percentile `p`: 90 → 1, 99 → 2, 99.9 → 3 … (capped at 5).
fn nines(p: f64) -> f64 {
    let tail = (100.0 - p).max(1e-5) / 100.0;
    (-tail.log10()).clamp(0.0, 5.0)
}

/// Renders the chart for a run.
pub fn render(r: &RunResult) -> String {
    let mut out = String::new();
    let height = TOP + 3.0 * (PANEL_H + GAP) + 20.0;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">"#
    );
    out.push_str(
        "<style>.title{font-size:14px;font-weight:bold}.tick{font-size:11px;fill:#333}.label{font-size:12px;fill:#333}.frame{fill:none;stroke:#888}.grid{stroke:#ddd}</style>\n",
    );
    let _ = writeln!(
        out,
        r#"<text x="{MARGIN_L}" y="20" class="title">chronik-perf: {} against {} ({} cores, kernel {})</text>"#,
        escape(&r.workload.name),
        escape(&r.bootstrap),
        r.machine.cores,
        escape(&r.machine.kernel)
    );

    let t_max = r.timeline.iter().map(|p| p.t_s).fold(1.0, f64::max);
    let warmup = r.workload.warmup_s as f64;
    let t_ticks: Vec<(f64, String)> = (0..=5)
        .map(|i| {
            let t = t_max * f64::from(i) / 5.0;
            (t, format!("{t:.0}"))
        })
        .collect();

    // Panel 1: throughput.
    let thr: Vec<(f64, f64)> = r.timeline.iter().map(|p| (p.t_s, p.msgs_per_s)).collect();
    let con: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .map(|p| (p.t_s, p.consumed_msgs_per_s))
        .collect();
    let y_max = nice_max(
        thr.iter()
            .chain(con.iter())
            .map(|(_, y)| *y)
            .fold(0.0, f64::max),
    );
    let p1 = Panel {
        y0: TOP + 20.0,
        x_max: t_max,
        y_max,
        x_label: format!("seconds (measured phase starts at {warmup:.0} s)"),
        y_label: "messages / s".into(),
    };
    draw_panel(
        &mut out,
        "Throughput",
        &p1,
        &[
            Series {
                name: "acked",
                colour: "#1f77b4",
                points: thr,
            },
            Series {
                name: "consumed",
                colour: "#2ca02c",
                points: con,
            },
        ],
        &t_ticks,
    );
    let wx = p1.px(warmup);
    let _ = writeln!(
        out,
        r##"<line x1="{wx:.1}" y1="{:.1}" x2="{wx:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 3"/>"##,
        p1.y0,
        p1.y0 + PANEL_H
    );

    // Panel 2: latency percentiles over time.
    // Latency of a second in which nothing completed is unknown, not zero.
    let pick = |f: fn(&crate::result::TimelinePoint) -> f64| -> Vec<(f64, f64)> {
        r.timeline
            .iter()
            .map(|p| (p.t_s, if p.msgs_per_s > 0.0 { f(p) } else { f64::NAN }))
            .collect()
    };
    let series2 = [
        Series {
            name: "produce p50",
            colour: "#2ca02c",
            points: pick(|p| p.p50_ms),
        },
        Series {
            name: "produce p99",
            colour: "#ff7f0e",
            points: pick(|p| p.p99_ms),
        },
        Series {
            name: "produce p99.9",
            colour: "#d62728",
            points: pick(|p| p.p999_ms),
        },
        Series {
            name: "e2e p99",
            colour: "#9467bd",
            points: r
                .timeline
                .iter()
                .map(|p| {
                    let y = if p.consumed_msgs_per_s > 0.0 {
                        p.e2e_p99_ms
                    } else {
                        f64::NAN
                    };
                    (p.t_s, y)
                })
                .collect(),
        },
    ];
    let y_max = nice_max(
        series2
            .iter()
            .flat_map(|s| s.points.iter().map(|(_, y)| *y))
            .filter(|y| y.is_finite())
            .fold(0.0, f64::max),
    );
    let p2 = Panel {
        y0: p1.y0 + PANEL_H + GAP,
        x_max: t_max,
        y_max,
        x_label: "seconds".into(),
        y_label: "latency ms".into(),
    };
    draw_panel(
        &mut out,
        "Latency percentiles per second",
        &p2,
        &series2,
        &t_ticks,
    );

    // Panel 3: CDF of the measured phase on a "nines" axis.
    let cdf = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
        pts.iter().map(|(p, ms)| (nines(*p), *ms)).collect()
    };
    let series3 = [
        Series {
            name: "produce",
            colour: "#1f77b4",
            points: cdf(&r.cdf.latency_ms),
        },
        Series {
            name: "end-to-end",
            colour: "#9467bd",
            points: cdf(&r.cdf.e2e_latency_ms),
        },
    ];
    let y_max = nice_max(
        series3
            .iter()
            .flat_map(|s| s.points.iter().map(|(_, y)| *y))
            .fold(0.0, f64::max),
    );
    let p3 = Panel {
        y0: p2.y0 + PANEL_H + GAP,
        x_max: 5.0,
        y_max,
        x_label: format!("percentile ({PHASE_MEASURE} phase)"),
        y_label: "latency ms".into(),
    };
    let ticks: Vec<(f64, String)> = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
        .iter()
        .map(|p| (nines(*p), format!("p{p}")))
        .collect();
    draw_panel(&mut out, "Latency CDF", &p3, &series3, &ticks);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::tests::sample_result;
    use crate::result::TimelinePoint;

    #[test]
    fn renders_well_formed_svg_with_all_panels() {
        let mut r = sample_result();
        r.timeline = (1..=10)
            .map(|i| TimelinePoint {
                t_s: f64::from(i),
                // Second 5 is a stall: nothing acknowledged or consumed.
                msgs_per_s: if i == 5 { 0.0 } else { 1000.0 * f64::from(i) },
                consumed_msgs_per_s: if i == 5 { 0.0 } else { 900.0 },
                p99_ms: 2.0,
                ..TimelinePoint::default()
            })
            .collect();
        r.cdf.latency_ms = vec![(50.0, 1.0), (99.0, 2.0), (100.0, 5.0)];
        r.cdf.e2e_latency_ms = vec![(50.0, 2.0), (100.0, 9.0)];
        r.workload.name = "a<b".into();
        let svg = render(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Throughput") && svg.contains("Latency CDF"));
        assert!(svg.contains("a&lt;b"), "text is escaped");
        // 2 throughput lines, 4 latency lines each broken in two by the stall, 2 CDFs.
        assert_eq!(svg.matches("<polyline").count(), 2 + 4 * 2 + 2);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn axes_helpers() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(1200.0), 2000.0);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(100.0), 5.0);
    }
}
