//! A line plot as SVG text, written by hand: log-scaled axes with 1-2-5 ticks, one
//! polyline with dots per series, a legend, and an optional dashed objective line. Small
//! enough to read, and no plotting crate or font on the machine that writes it.

use std::fmt::Write as _;

/// One series: its name in the legend and its points (x, y), both above zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Legend text.
    pub name: String,
    /// Points in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// The plot of `lines` with log x and y axes; `objective` draws a dashed horizontal line
/// at that y with its label.
pub fn line_plot(title: &str, x_label: &str, y_label: &str, lines: &[Line], objective: Option<(f64, &str)>) -> String {
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let ys = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(objective.map(|(y, _)| y));
    let (x0, x1) = decades(xs);
    let (y0, y1) = decades(ys);
    let sx = |x: f64| LEFT + (x.max(x0).log10() - x0.log10()) / (x1.log10() - x0.log10()) * PLOT_W;
    let sy = |y: f64| TOP + PLOT_H - (y.max(y0).log10() - y0.log10()) / (y1.log10() - y0.log10()) * PLOT_H;
    let mut svg = String::with_capacity(8 * 1024);
    let w = &mut svg;
    let _ = writeln!(
        w,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(w, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        w,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for x in ticks(x0, x1) {
        let px = sx(x);
        let _ = writeln!(
            w,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + PLOT_H,
            TOP + PLOT_H + 16.0,
            number(x)
        );
    }
    for y in ticks(y0, y1) {
        let py = sy(y);
        let _ = writeln!(
            w,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            py + 4.0,
            number(y)
        );
    }
    let _ = writeln!(
        w,
        r#"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        w,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + PLOT_W / 2.0,
        HEIGHT - 8.0,
        escape(x_label)
    );
    let _ = writeln!(
        w,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0,
        escape(y_label)
    );
    if let Some((y, label)) = objective {
        let py = sy(y);
        let _ = writeln!(
            w,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#c00000" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#c00000">{}</text>"##,
            LEFT + PLOT_W,
            LEFT + PLOT_W - 4.0,
            py - 4.0,
            escape(label)
        );
    }
    for (i, line) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            w,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            points.join(" ")
        );
        for &(x, y) in &line.points {
            let _ = writeln!(
                w,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                sx(x),
                sy(y)
            );
        }
        let ly = TOP + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            w,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 10.0,
            ly - 4.0,
            LEFT + 30.0,
            ly - 4.0,
            LEFT + 36.0,
            ly,
            escape(&line.name)
        );
    }
    let _ = writeln!(w, "</svg>");
    svg
}

/// The powers of ten around `values` (1..10 when there is none).
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return (1.0, 10.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    (lo, hi)
}

/// 1, 2 and 5 times each power of ten from `lo` to `hi`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = lo;
    while decade <= hi * 1.000_001 {
        for m in [1.0, 2.0, 5.0] {
            let t = decade * m;
            if t <= hi * 1.000_001 {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// A tick label: whole numbers plainly, fractions with what they need.
fn number(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').to_string()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 36.0;
const PLOT_W: f64 = 620.0;
const PLOT_H: f64 = 330.0;
const COLORS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_cover_the_data_in_decades() {
        assert_eq!(decades([3.0, 40.0].into_iter()), (1.0, 100.0));
        assert_eq!(decades([0.2, 0.7].into_iter()), (0.1, 1.0));
        assert_eq!(decades([10.0].into_iter()), (10.0, 100.0));
        assert_eq!(decades(std::iter::empty()), (1.0, 10.0));
        assert_eq!(ticks(1.0, 100.0), vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(200.0), "200");
    }

    #[test]
    fn a_plot_has_every_series_and_the_objective() {
        let lines = [
            Line {
                name: "1 node".into(),
                points: vec![(6.0, 2.0), (12.0, 3.0), (24.0, 80.0)],
            },
            Line {
                name: "2 nodes <&>".into(),
                points: vec![(6.0, 3.0), (12.0, 4.0)],
            },
        ];
        let svg = line_plot("p99", "msgs/user/min", "ms", &lines, Some((50.0, "p99 objective")));
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("p99 objective"));
        assert!(svg.contains("2 nodes &lt;&amp;&gt;"));
        assert!(!svg.contains("NaN"));
    }
}
