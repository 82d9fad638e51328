//! The console's one chart module: time series as inline SVG drawn here
//! on the server (no script, so the strict CSP holds), rendered by
//! `templates/chart.html`. Geometry is pure and integer: every number in
//! the SVG is made here, every text (a mount point an agent reported, a
//! tenant's name) goes through askama's escaping in the template and is
//! never part of an attribute built here.

use std::fmt::Write as _;

/// The drawing area in SVG user units (about the card's width in pixels).
const W: i64 = 1080;
const LEFT: i64 = 44;
const TOP: i64 = 8;
const BOTTOM: i64 = 22;

/// One line of a chart: `points` is the polyline's `x,y` list.
pub struct Line {
    /// A class of the stylesheet's, from a fixed set (`chart-avg`, `chart-max`).
    pub class: &'static str,
    pub points: String,
    /// The legend's words (escaped by the template).
    pub label: String,
}

/// One bar (bar charts).
pub struct Bar {
    pub class: &'static str,
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    /// The tooltip (escaped by the template).
    pub label: String,
}

/// A drawn chart.
pub struct Chart {
    /// The card's heading (escaped by the template).
    pub title: String,
    pub width: i64,
    pub height: i64,
    pub left: i64,
    pub plot_bottom: i64,
    pub lines: Vec<Line>,
    pub bars: Vec<Bar>,
    /// Horizontal grid lines: (y, label).
    pub grid: Vec<(i64, String)>,
    /// Time labels: (x, text).
    pub ticks: Vec<(i64, String)>,
    /// What a screen reader reads, and what a test looks for.
    pub summary: String,
    /// No point in range: the template says so instead of an empty frame.
    pub empty: bool,
}

/// A series to draw: (time in ms, value) in time order.
pub struct Series {
    pub class: &'static str,
    pub label: String,
    pub points: Vec<(i64, i64)>,
}

/// A line chart of `series` over `[from, to]` (ms), y from 0 to the
/// larger of `y_max` and the data (a percent chart passes 100). `unit`
/// follows each grid label. Values are clamped into the frame; time
/// labels are UTC `HH:MM` for ranges up to two days, `MM-DD` beyond.
pub fn line_chart(
    title: String,
    unit: &str,
    series: Vec<Series>,
    from: i64,
    to: i64,
    y_max: i64,
    height: i64,
) -> Chart {
    let plot_h = (height - TOP - BOTTOM).max(10);
    let plot_w = W - LEFT;
    let to = to.max(from.saturating_add(1));
    let span = to - from;
    let top_value = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .max()
        .unwrap_or(0)
        .max(y_max)
        .max(1);
    let x_of =
        |t: i64| LEFT + ((t.clamp(from, to) - from) as i128 * plot_w as i128 / span as i128) as i64;
    let y_of = |v: i64| {
        TOP + plot_h - (v.clamp(0, top_value) as i128 * plot_h as i128 / top_value as i128) as i64
    };
    let mut points_drawn = 0usize;
    let lines = series
        .into_iter()
        .map(|s| {
            let mut points = String::new();
            for (t, v) in s.points.iter().filter(|(t, _)| (from..=to).contains(t)) {
                let _ = write!(points, "{},{} ", x_of(*t), y_of(*v));
                points_drawn += 1;
            }
            Line {
                class: s.class,
                points: points.trim_end().to_owned(),
                label: s.label,
            }
        })
        .collect();
    let grid = [top_value, top_value / 2, 0]
        .into_iter()
        .map(|v| (y_of(v), format!("{v}{unit}")))
        .collect();
    let ticks = (0..=4)
        .map(|i| {
            let t = from + span * i / 4;
            let x = (LEFT + plot_w * i / 4).min(W - 30);
            (x, time_label(t, span))
        })
        .collect();
    Chart {
        summary: format!("{title}: {points_drawn} points"),
        title,
        width: W,
        height,
        left: LEFT,
        plot_bottom: TOP + plot_h,
        lines,
        bars: Vec::new(),
        grid,
        ticks,
        empty: points_drawn == 0,
    }
}

/// A group of bars under one label (a tenant, a week).
pub struct Group {
    pub label: String,
    /// (class, value, tooltip); the legend names the classes. `None`: no
    /// value (an SLA week with nothing decided), drawn as a mark on the
    /// axis in `chart-gap`, so "nothing" never reads as zero.
    pub bars: Vec<(&'static str, Option<i64>, String)>,
}

/// Groups of bars side by side, y from 0 to the largest value (at least
/// `y_max`; a percent chart passes 100); `unit` follows each grid label.
/// Group labels below, thinned to about ten. `legend` names the classes in
/// order: (class, words).
pub fn bar_chart(
    title: String,
    unit: &str,
    groups: Vec<Group>,
    legend: Vec<(&'static str, String)>,
    y_max: i64,
    height: i64,
) -> Chart {
    let plot_h = (height - TOP - BOTTOM).max(10);
    let plot_w = W - LEFT;
    let top_value = groups
        .iter()
        .flat_map(|g| g.bars.iter().filter_map(|b| b.1))
        .max()
        .unwrap_or(0)
        .max(y_max)
        .max(1);
    let y_of =
        |v: i64| TOP + plot_h - (i128::from(v) * i128::from(plot_h) / i128::from(top_value)) as i64;
    let count = i64::try_from(groups.len().max(1)).unwrap_or(1);
    let slot = plot_w / count;
    let every = usize::try_from((count / 10).max(1)).unwrap_or(1);
    let per = groups
        .iter()
        .map(|g| g.bars.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let bar_w = (slot / (i64::try_from(per).unwrap_or(1) + 1)).clamp(1, 40);
    let mut bars = Vec::new();
    let mut ticks = Vec::new();
    let mut values = 0usize;
    for (i, g) in groups.iter().enumerate() {
        let x0 = LEFT + slot * i64::try_from(i).unwrap_or(0) + bar_w / 2;
        if i % every == 0 {
            ticks.push((x0, g.label.clone()));
        }
        for (j, (class, value, label)) in g.bars.iter().enumerate() {
            let x = x0 + bar_w * i64::try_from(j).unwrap_or(0);
            let (class, y, h) = match value {
                Some(v) => {
                    values += 1;
                    // A zero still shows, as a sliver of its colour.
                    let y = y_of((*v).clamp(0, top_value)).min(TOP + plot_h - 2);
                    (*class, y, TOP + plot_h - y)
                }
                None => ("chart-gap", TOP + plot_h - 2, 2),
            };
            bars.push(Bar {
                class,
                x,
                y,
                width: bar_w,
                height: h,
                label: label.clone(),
            });
        }
    }
    let grid = [top_value, top_value / 2, 0]
        .into_iter()
        .map(|v| (y_of(v), format!("{v}{unit}")))
        .collect();
    Chart {
        summary: format!("{title}: {} groups, {values} values", groups.len()),
        title,
        width: W,
        height,
        left: LEFT,
        plot_bottom: TOP + plot_h,
        lines: legend
            .into_iter()
            .map(|(class, label)| Line {
                class,
                points: String::new(),
                label,
            })
            .collect(),
        bars,
        grid,
        ticks,
        empty: groups.is_empty(),
    }
}

/// `HH:MM` (UTC) for spans up to two days, `MM-DD` beyond.
fn time_label(ms: i64, span: i64) -> String {
    let secs = ms.div_euclid(1000);
    let day_secs = secs.rem_euclid(86_400);
    if span <= 2 * 86_400_000 {
        format!("{:02}:{:02}", day_secs / 3600, day_secs % 3600 / 60)
    } else {
        let (_, m, d) = civil_from_days(secs.div_euclid(86_400));
        format!("{m:02}-{d:02}")
    }
}

/// Days since 1970-01-01 as (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use askama::Template;

    #[derive(Template)]
    #[template(path = "chart.html")]
    struct One {
        chart: Chart,
    }

    fn series(label: &str, points: Vec<(i64, i64)>) -> Series {
        Series {
            class: "chart-avg",
            label: label.to_owned(),
            points,
        }
    }

    #[test]
    fn bars_scale_to_percent_and_missing_values_are_marks_not_zero() {
        let c = bar_chart(
            "SLA".into(),
            " %",
            vec![
                Group {
                    label: "03-02".into(),
                    bars: vec![
                        ("sla-critical", Some(100), "all met".into()),
                        ("sla-info", Some(0), "none met".into()),
                    ],
                },
                Group {
                    label: "03-09".into(),
                    bars: vec![("sla-critical", None, "nothing decided".into())],
                },
            ],
            vec![("sla-critical", "critical".into())],
            100,
            200,
        );
        let plot_bottom = 200 - BOTTOM;
        assert_eq!(c.bars[0].y, TOP, "100 % reaches the top");
        assert_eq!(c.bars[1].height, 2, "0 % is a sliver of its colour");
        assert_eq!(c.bars[1].class, "sla-info");
        assert_eq!(
            (c.bars[2].class, c.bars[2].y),
            ("chart-gap", plot_bottom - 2)
        );
        let labels: Vec<&str> = c.grid.iter().map(|g| g.1.as_str()).collect();
        assert_eq!(labels, ["100 %", "50 %", "0 %"]);
        assert_eq!(c.summary, "SLA: 2 groups, 2 values");
        // Many groups: about ten labels, not one per group.
        let many = (0..52)
            .map(|i| Group {
                label: format!("w{i}"),
                bars: vec![("sla-info", Some(i), String::new())],
            })
            .collect();
        let c = bar_chart("x".into(), "", many, vec![], 0, 200);
        assert!((9..=13).contains(&c.ticks.len()), "{}", c.ticks.len());
        assert!(c.bars.iter().all(|b| b.x + b.width <= W));
    }

    #[test]
    fn points_land_in_the_frame_and_out_of_range_ones_are_left_out() {
        let c = line_chart(
            "CPU".into(),
            " %",
            vec![series(
                "avg",
                vec![(0, 0), (500, 50), (1000, 100), (2000, 100)],
            )],
            0,
            1000,
            100,
            200,
        );
        assert_eq!(
            c.lines[0].points,
            format!("{LEFT},178 {},93 {W},8", LEFT + (W - LEFT) / 2)
        );
        assert_eq!(c.summary, "CPU: 3 points");
        assert!(!c.empty);
        assert_eq!(c.grid[0].1, "100 %");
        // Absurd values stay inside the frame.
        let c = line_chart(
            "x".into(),
            "",
            vec![series("a", vec![(5, i64::MAX), (6, i64::MIN)])],
            0,
            10,
            1,
            100,
        );
        for pair in c.lines[0].points.split(' ') {
            let (x, y) = pair.split_once(',').expect("test value");
            let (x, y): (i64, i64) = (
                x.parse().expect("test value"),
                y.parse().expect("test value"),
            );
            assert!(
                (LEFT..=W).contains(&x) && (TOP..=100).contains(&y),
                "{pair}"
            );
        }
        let empty = line_chart("x".into(), "", vec![], 0, 10, 1, 100);
        assert!(empty.empty);
    }

    #[test]
    fn labels_from_agents_are_escaped_in_the_svg() {
        let hostile = "/mnt/</text><script>alert(1)</script><text x=\"";
        let chart = line_chart(
            format!("Disk {hostile}"),
            " %",
            vec![series(hostile, vec![(1, 1)])],
            0,
            10,
            100,
            120,
        );
        let html = One { chart }.render().expect("test value");
        assert!(
            !html.contains("<script>") && !html.contains("</text><"),
            "{html}"
        );
        assert!(html.contains("&#60;/text&#62;&#60;script&#62;"), "{html}");
    }

    #[test]
    fn time_labels_read_as_utc() {
        assert_eq!(time_label(1_800_000_000_000, 3_600_000), "08:00");
        assert_eq!(time_label(1_800_000_000_000, 30 * 86_400_000), "01-15");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}
