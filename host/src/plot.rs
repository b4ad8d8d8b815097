//! The train/validation loss curve of a run, as SVG.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// Draws the per-step training loss (averaged over windows, so that the curve is
/// readable) and the validation points, and writes them atomically to `path`.
pub fn loss_curve(path: &Path, train: &[(usize, f64)], val: &[(usize, f64)]) -> Result<()> {
    let window = (train.len() / 200).max(1);
    let smooth: Vec<(f64, f64)> = train
        .chunks(window)
        .map(|c| {
            (
                c[c.len() - 1].0 as f64,
                c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64,
            )
        })
        .collect();
    let val: Vec<(f64, f64)> = val.iter().map(|&(s, l)| (s as f64, l)).collect();
    let points = || smooth.iter().chain(&val);
    let (x0, x1) = points().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = points().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if !(x0 <= x1 && y0 <= y1 && y1.is_finite()) {
        return Err(anyhow!("no finite losses to plot"));
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("cannot draw the plot: {e:?}");
        root.fill(&WHITE).map_err(err)?;
        let pad = ((y1 - y0) * 0.05).max(1e-3);
        let mut chart = ChartBuilder::on(&root)
            .caption("microgpt: loss per token (nats)", ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(smooth.iter().copied(), &BLUE))
            .map_err(err)?
            .label("train")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
        if !val.is_empty() {
            let red = RED.stroke_width(2);
            chart
                .draw_series(LineSeries::new(val.iter().copied(), red))
                .map_err(err)?
                .label("validation")
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], red));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    crate::safe_write::write_atomic(path, svg.as_bytes())
}
