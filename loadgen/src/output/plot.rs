//! SVG plots with plotters' SVG backend (no system fonts needed): latency by percentile
//! (delivery, broadcast completion, connect; percentiles on a log scale so the tail gets
//! room) and latency over time (p50, p99 and max of each second).

use plotters::prelude::*;

use crate::report::TimelinePoint;
use crate::stats::Hist;

/// Latency by percentile of each named histogram, as an SVG document.
///
/// # Errors
/// A plotters drawing error, as text.
pub fn percentiles(title: &str, series: &[(&str, &Hist)]) -> Result<String, String> {
    let curves: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| {
            let points = (0..=STEPS)
                .map(|i| {
                    let x = 10f64.powf(TAIL_DECADES * f64::from(i) / f64::from(STEPS));
                    (x, h.value_at_quantile(1.0 - 1.0 / x) as f64 / 1000.0)
                })
                .collect();
            (*name, points)
        })
        .collect();
    let y_max = curves
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d((1f64..10f64.powf(TAIL_DECADES)).log_scale(), 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_label_formatter(&|x| percentile_label(*x))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, points)) in curves.into_iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// p50, p99 and max of delivery latency per second, as an SVG document.
///
/// # Errors
/// A plotters drawing error, as text.
pub fn over_time(title: &str, timeline: &[TimelinePoint]) -> Result<String, String> {
    let pick: [(&str, Pick); 3] = [
        ("p50", |p| p.latency.p50_us),
        ("p99", |p| p.latency.p99_us),
        ("max", |p| p.latency.max_us),
    ];
    let x_max = timeline.last().map_or(1.0, |p| p.t_s + 1.0).max(1.0);
    let y_max = timeline
        .iter()
        .map(|p| p.latency.max_us as f64 / 1000.0)
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since publishing began")
            .y_desc("latency (ms)")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, value)) in pick.into_iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points = timeline
                .iter()
                .filter(|p| p.latency.count > 0)
                .map(|p| (p.t_s, value(p) as f64 / 1000.0));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// `x = 1/(1-q)` as a percentile label: 1 → 0%, 10 → 90%, 1000 → 99.9%.
fn percentile_label(x: f64) -> String {
    let q = (1.0 - 1.0 / x.max(1.0)) * 100.0;
    let decimals = (x.log10().round() as i32 - 2).clamp(0, 6) as usize;
    format!("{q:.decimals$}%")
}

/// Reads one percentile out of a timeline point.
type Pick = fn(&TimelinePoint) -> u64;

const SIZE: (u32, u32) = (960, 540);
/// The percentile axis reaches 99.999%.
const TAIL_DECADES: f64 = 5.0;
const STEPS: u32 = 200;
const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::hist::Percentiles;
    use crate::stats::{new_hist, record};

    #[test]
    fn percentile_plot_is_svg_with_labels() {
        let mut h = new_hist();
        for v in 1..5000 {
            record(&mut h, v);
        }
        let svg = percentiles("delivery", &[("delivery", &h), ("empty", &new_hist())]).expect("draws");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        assert!(svg.contains("99.9%"), "percentile labels");
        assert!(svg.contains("latency (ms)"));
    }

    #[test]
    fn time_plot_draws_even_when_empty() {
        assert!(over_time("t", &[]).is_ok_and(|s| s.contains("<svg")));
        let p = TimelinePoint {
            t_s: 0.0,
            latency: Percentiles {
                count: 1,
                p50_us: 10,
                p99_us: 20,
                max_us: 30,
                ..Percentiles::default()
            },
            ..TimelinePoint::default()
        };
        assert!(over_time("t", &[p, TimelinePoint { t_s: 1.0, ..p }]).is_ok_and(|s| s.contains("p99")));
    }

    #[test]
    fn labels() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1000.0), "99.9%");
    }
}
