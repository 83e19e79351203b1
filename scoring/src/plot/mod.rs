//! Figures, as SVG and PNG (plotters; text in PNGs uses DejaVu Sans, embedded, so they render on
//! machines without fonts):
//!
//! 1. `horizon_fits`: per agent, success against human minutes on a log axis: each task's
//!    success rate (grey), weighted success rates in bins of 4x (blue), the fitted logistic curve
//!    (red) and the p50 (dashed), like METR's figures.
//! 2. `score_vs_budget`: normalized score of the best allocation against total time budget per
//!    agent, with bootstrap interval bands, like RE-Bench's figures.
//! 3. `horizon_p50`: p50 horizon per agent with interval whiskers, on a log axis.
//!
//! Every figure's title is sized to fit its canvas, time axes tick at round durations (at least
//! three), and labels sit a fixed number of pixels from their points, whatever the number of
//! agents; `tests.rs` renders each figure at the size it is written and checks the pixels.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Result, ScoringError};
use crate::horizon::{AgentHorizon, FitStatus};
use crate::report::{format_duration, format_horizon, Report};

mod glyphs;
#[cfg(test)]
mod tests;

use glyphs::Glyphs;

/// Image formats to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotFormat {
    Svg,
    Png,
}

impl PlotFormat {
    fn extension(self) -> &'static str {
        match self {
            PlotFormat::Svg => "svg",
            PlotFormat::Png => "png",
        }
    }
}

const FONT: &str = "sans-serif";

fn register_font() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // The embedded font parses; failure here would be a packaging bug.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

type DrawResult = std::result::Result<(), String>;

fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

fn color(i: usize) -> RGBColor {
    // Tableau 10, readable on white.
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// "30s", "4m", "2h", "1d", "2w" tick labels for minute axes (exact for the ticks of
/// [`time_ticks`]; other values are rounded).
fn minute_label(m: f64) -> String {
    const DAY: f64 = 1440.0;
    if m < 1.0 {
        format!("{:.0}s", m * 60.0)
    } else if m < 60.0 {
        format!("{m:.0}m")
    } else if m < DAY {
        format!("{:.0}h", m / 60.0)
    } else if m < 7.0 * DAY {
        format!("{:.0}d", m / DAY)
    } else {
        format!("{:.0}w", m / (7.0 * DAY))
    }
}

/// Ticks for a log axis of minutes from `lo` to `hi`: round durations (seconds, minutes,
/// hours, days, weeks) inside the range, at least 3 of them whenever the range spans a factor
/// of 10 (each step of the ladder is at most 2.5x), thinned to at most 8.
fn time_ticks(lo: f64, hi: f64) -> Vec<f64> {
    const S: f64 = 1.0 / 60.0;
    const H: f64 = 60.0;
    const D: f64 = 1440.0;
    const W: f64 = 7.0 * D;
    const LADDER: [f64; 31] = [
        S,
        2.0 * S,
        5.0 * S,
        10.0 * S,
        15.0 * S,
        30.0 * S, // seconds
        1.0,
        2.0,
        5.0,
        10.0,
        15.0,
        30.0, // minutes
        H,
        2.0 * H,
        4.0 * H,
        8.0 * H,
        16.0 * H, // hours
        D,
        2.0 * D,
        4.0 * D, // days
        W,
        2.0 * W,
        4.0 * W,
        8.0 * W,
        16.0 * W,
        32.0 * W,
        64.0 * W,
        128.0 * W,
        256.0 * W,
        512.0 * W,
        1024.0 * W,
    ];
    let inside: Vec<f64> = LADDER
        .iter()
        .copied()
        .filter(|m| *m >= lo * (1.0 - 1e-9) && *m <= hi * (1.0 + 1e-9))
        .collect();
    let step = inside.len().div_ceil(8).max(1);
    inside.into_iter().step_by(step).collect()
}

/// The largest font of at most `max` pixels (and at least 10) in which `text` fits `width`
/// pixels of `area`, so a title is never cut at the canvas's edges.
fn fitted_font<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    width: u32,
    max: u32,
) -> TextStyle<'a> {
    let mut size = max;
    while size > 10 {
        let fits = area
            .estimate_text_size(text, &(FONT, size).into_text_style(area))
            .map(|(w, _)| w <= width)
            .unwrap_or(true);
        if fits {
            break;
        }
        size -= 1;
    }
    (FONT, size).into_text_style(area)
}

/// Writes every figure in every format into `dir`; returns the paths written.
pub fn write_plots(report: &Report, dir: &Path, formats: &[PlotFormat]) -> Result<Vec<PathBuf>> {
    register_font();
    std::fs::create_dir_all(dir).map_err(|err| ScoringError::Output {
        path: dir.to_path_buf(),
        message: err.to_string(),
    })?;
    let mut written = Vec::new();
    for name in FIGURES {
        let Some(size) = figure_size(name, report) else {
            continue;
        };
        for &fmt in formats {
            let path = dir.join(format!("{name}.{}", fmt.extension()));
            let result = match fmt {
                PlotFormat::Svg => draw(
                    name,
                    report,
                    SVGBackend::new(&path, size).into_drawing_area(),
                ),
                PlotFormat::Png => draw(
                    name,
                    report,
                    Glyphs::new(BitMapBackend::new(&path, size)).into_drawing_area(),
                ),
            };
            result.map_err(|message| ScoringError::Output {
                path: path.clone(),
                message,
            })?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The figures, in the order they are written.
const FIGURES: [&str; 3] = ["horizon_fits", "score_vs_budget", "horizon_p50"];

/// A figure's size in pixels for this report; `None` where it has nothing to show.
fn figure_size(name: &str, report: &Report) -> Option<(u32, u32)> {
    match name {
        "horizon_fits" => fits_size(report),
        "score_vs_budget" => (!report.budgets.agents.is_empty()).then_some((960, 600)),
        _ => p50_size(report, 960),
    }
}

fn draw<DB: DrawingBackend>(
    name: &str,
    report: &Report,
    root: DrawingArea<DB, Shift>,
) -> DrawResult {
    root.fill(&WHITE).map_err(e)?;
    match name {
        "horizon_fits" => draw_fits(report, &root)?,
        "score_vs_budget" => draw_budgets(report, &root)?,
        _ => draw_p50(report, &root)?,
    }
    root.present().map_err(e)
}

fn grid(n: usize) -> (usize, usize) {
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let cols = cols.clamp(1, 4);
    (n.div_ceil(cols), cols)
}

fn fits_size(r: &Report) -> Option<(u32, u32)> {
    let n = r.horizon.agents.len();
    if n == 0 {
        return None;
    }
    let (rows, cols) = grid(n);
    // One panel alone is wider, so the figure's title stays legible.
    Some(((cols as u32 * 420).max(560), rows as u32 * 320 + 40))
}

/// A row per agent, at most 900 pixels tall: a few agents get a short figure, so their
/// whiskers and labels stay compact.
fn p50_size(r: &Report, width: u32) -> Option<(u32, u32)> {
    let n = r.horizon.agents.len() as u32;
    (n > 0).then(|| (width, (140 + 40 * n).clamp(300, 900)))
}

fn draw_fits<DB: DrawingBackend>(report: &Report, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let agents = &report.horizon.agents;
    let (rows, cols) = grid(agents.len());
    let title = "Success against human time, with the fitted logistic curve (METR time horizon)";
    let style = fitted_font(root, title, root.dim_in_pixel().0.saturating_sub(24), 20);
    let root = root.titled(title, style).map_err(e)?;
    let (lo, hi) = agents
        .iter()
        .flat_map(|a| a.task_rates.iter().map(|t| t.human_minutes))
        .fold((f64::INFINITY, 0f64), |(l, h), m| (l.min(m), h.max(m)));
    let (lo, hi) = (lo / 2.0, hi * 2.0);
    let panels = root.split_evenly((rows, cols));
    for (a, panel) in agents.iter().zip(panels.iter()) {
        draw_fit_panel(a, panel, lo, hi)?;
    }
    Ok(())
}

fn draw_fit_panel<DB: DrawingBackend>(
    a: &AgentHorizon,
    area: &DrawingArea<DB, Shift>,
    lo: f64,
    hi: f64,
) -> DrawResult {
    let p50 = a
        .horizons
        .iter()
        .find(|h| (h.probability - 0.5).abs() < 1e-9);
    let title = match p50 {
        Some(h) => format!("{}  (p50 {})", a.agent, format_horizon(h.minutes)),
        None => a.agent.clone(),
    };
    let style = fitted_font(area, &title, area.dim_in_pixel().0.saturating_sub(16), 15);
    let mut chart = ChartBuilder::on(area)
        .caption(title, style)
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(38)
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(time_ticks(lo, hi)),
            -0.02f64..1.02f64,
        )
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("human time")
        .y_desc("success")
        .y_labels(6)
        .x_label_formatter(&|v| minute_label(*v))
        .light_line_style(WHITE.mix(0.0))
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 12))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(a.task_rates.iter().map(|t| {
            Circle::new(
                (t.human_minutes, t.success_rate),
                2,
                RGBColor(150, 150, 150).filled(),
            )
        }))
        .map_err(e)?;
    let blue = RGBColor(31, 119, 180);
    chart
        .draw_series(a.bins.iter().map(|b| {
            let mid = (b.minutes_low * b.minutes_high).sqrt();
            Circle::new((mid, b.success_rate), 5, blue.filled())
        }))
        .map_err(e)?;
    chart
        .draw_series(a.bins.iter().map(|b| {
            PathElement::new(
                vec![
                    (b.minutes_low, b.success_rate),
                    (b.minutes_high, b.success_rate),
                ],
                blue.stroke_width(2),
            )
        }))
        .map_err(e)?;
    let red = RGBColor(214, 39, 40);
    let curve: Vec<(f64, f64)> = (0..=200)
        .map(|i| {
            let x = lo.log2() + (hi.log2() - lo.log2()) * i as f64 / 200.0;
            let y = match (a.status, a.fit) {
                (FitStatus::Fitted, Some(f)) => f.probability(x),
                (FitStatus::AllSuccess, _) => 1.0,
                _ => 0.0,
            };
            (x.exp2(), y)
        })
        .collect();
    chart
        .draw_series(LineSeries::new(curve, red.stroke_width(2)))
        .map_err(e)?;
    if let Some(m) = p50.and_then(|h| h.minutes).filter(|m| *m > lo && *m < hi) {
        let dashes: Vec<PathElement<(f64, f64)>> = (0..20)
            .map(|i| {
                let y0 = i as f64 / 20.0;
                PathElement::new(vec![(m, y0), (m, y0 + 0.025)], BLACK.stroke_width(1))
            })
            .collect();
        chart.draw_series(dashes).map_err(e)?;
    }
    Ok(())
}

/// Agent `i` of `n`'s horizontal offset within a budget's slot, so that agents with equal
/// scores (all starting solutions, all references) show side by side instead of one over the
/// other: 0.04 slots apart, at most 0.3 of a slot in all.
fn dodge(i: usize, n: usize) -> f64 {
    let step = if n > 1 {
        (0.3 / (n - 1) as f64).min(0.04)
    } else {
        0.0
    };
    (i as f64 - (n as f64 - 1.0) / 2.0) * step
}

fn draw_budgets<DB: DrawingBackend>(report: &Report, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let b = &report.budgets;
    let budgets = &b.budgets_minutes;
    let ymax = b
        .agents
        .iter()
        .flat_map(|a| a.budgets.iter())
        .filter_map(|br| br.best_allocation())
        .map(|al| al.ci_high.unwrap_or(al.score).max(al.score))
        .fold(0.0f64, f64::max)
        .max(0.1)
        * 1.1;
    // Budgets are usually a geometric series (30m, 2h, 8h, 32h): one evenly spaced slot each.
    let slot = |m: f64| {
        budgets
            .iter()
            .position(|&b| (b - m).abs() < 1e-9)
            .unwrap_or(0) as f64
    };
    let n = budgets.len();
    let title = format!(
        "Normalized score at total time budget (best allocation, {:.0}% CI)",
        b.ci_level * 100.0
    );
    let style = fitted_font(root, &title, root.dim_in_pixel().0.saturating_sub(24), 20);
    let mut chart = ChartBuilder::on(root)
        .caption(title, style)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        // A little room below 0, so a line of zeros is not hidden in the axis.
        .build_cartesian_2d(-0.3f64..(n as f64 - 0.7), -0.02 * ymax..ymax)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("total time budget")
        .y_desc("normalized score (0 = start, 1 = reference)")
        .x_labels(n.max(1))
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                budgets
                    .get(i as usize)
                    .map(|m| format_duration(*m))
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(e)?;
    for (i, a) in b.agents.iter().enumerate() {
        let col = color(i);
        let pts: Vec<(f64, f64, Option<f64>, Option<f64>)> = a
            .budgets
            .iter()
            .filter_map(|br| {
                br.best_allocation().map(|al| {
                    let x = slot(br.budget_minutes) + dodge(i, b.agents.len());
                    (x, al.score, al.ci_low, al.ci_high)
                })
            })
            .collect();
        if pts.iter().all(|p| p.2.is_some() && p.3.is_some()) && pts.len() > 1 {
            let mut band: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.3.unwrap_or(p.1))).collect();
            band.extend(pts.iter().rev().map(|p| (p.0, p.2.unwrap_or(p.1))));
            chart
                .draw_series(std::iter::once(Polygon::new(band, col.mix(0.15).filled())))
                .map_err(e)?;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1)),
                col.stroke_width(2),
            ))
            .map_err(e)?
            .label(a.agent.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(3)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 3, col.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()
        .map_err(e)?;
    Ok(())
}

fn draw_p50<DB: DrawingBackend>(report: &Report, root: &DrawingArea<DB, Shift>) -> DrawResult {
    let mut agents: Vec<&AgentHorizon> = report.horizon.agents.iter().collect();
    let p50 = |a: &AgentHorizon| {
        a.horizons
            .iter()
            .find(|h| (h.probability - 0.5).abs() < 1e-9)
            .cloned()
    };
    agents.sort_by(|x, y| {
        let k = |a: &AgentHorizon| {
            p50(a)
                .map(|h| h.minutes.unwrap_or(f64::INFINITY))
                .unwrap_or(0.0)
        };
        k(y).total_cmp(&k(x))
    });
    let finite: Vec<f64> = agents
        .iter()
        .filter_map(|a| p50(a))
        .flat_map(|h| [h.minutes, h.ci_low, h.ci_high])
        .flatten()
        .filter(|m| *m > 0.0 && m.is_finite())
        .collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(0.0, f64::max);
    // Keep the axis to a readable range: horizons under a few seconds sit on the floor, and a
    // range of many decades would make the log axis useless (and slow to label).
    const FLOOR: f64 = 0.05;
    const CEILING: f64 = 1e6;
    let (lo, hi) = if finite.is_empty() {
        (1.0, 100.0)
    } else {
        (
            (lo / 2.0).clamp(FLOOR, CEILING / 10.0),
            (hi * 2.0).clamp(FLOOR * 10.0, CEILING),
        )
    };
    let (lo, hi) = if hi / lo < 10.0 {
        (lo, lo * 10.0)
    } else {
        (lo, hi)
    };
    let n = agents.len();
    let names: Vec<String> = agents.iter().map(|a| a.agent.clone()).collect();
    let longest = names.iter().map(|s| s.chars().count()).max().unwrap_or(5) as u32;
    // Agents top (longest horizon) to bottom, horizon on a log x axis.
    let row = |i: usize| (n - 1 - i) as f64;
    let title = format!(
        "50% time horizon per agent ({:.0}% CI)",
        report.horizon.ci_level * 100.0
    );
    let style = fitted_font(root, &title, root.dim_in_pixel().0.saturating_sub(24), 20);
    let mut chart = ChartBuilder::on(root)
        .caption(title, style)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(20 + 7 * longest.min(40))
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(time_ticks(lo, hi)),
            -0.6f64..(n as f64 - 0.4),
        )
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("p50 horizon (human time for tasks the agent succeeds at half the time)")
        .y_labels(n.max(1))
        .y_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                names[n - 1 - i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_label_formatter(&|v| minute_label(*v))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 14))
        .light_line_style(WHITE.mix(0.0))
        .disable_y_mesh()
        .draw()
        .map_err(e)?;
    // Whisker caps and labels are placed in pixels from their point, so they stay beside it
    // however few rows (and so however tall each row) the figure has.
    let cap = |x: f64, y: f64, col: RGBColor| {
        EmptyElement::at((x, y)) + PathElement::new(vec![(0, -7), (0, 7)], col.stroke_width(2))
    };
    let right_quarter = |m: f64| (m / lo).ln() / (hi / lo).ln() > 0.75;
    for (i, a) in agents.iter().enumerate() {
        let Some(h) = p50(a) else { continue };
        let y = row(i);
        let col = color(i);
        if let (Some(l), Some(u)) = (h.ci_low, h.ci_high) {
            let (l, u) = (l.clamp(lo, hi), u.clamp(lo, hi));
            chart
                .draw_series([PathElement::new(vec![(l, y), (u, y)], col.stroke_width(2))])
                .map_err(e)?;
            chart
                .draw_series([cap(l, y, col), cap(u, y, col)])
                .map_err(e)?;
        }
        let (point, text) = match h.minutes {
            None => (hi, "unbounded".to_string()),
            Some(m) => (m.clamp(lo, hi), format_horizon(Some(m))),
        };
        // Above the point, on its right; on its left near the axis's right end.
        let (anchor, offset) = if right_quarter(point) {
            (Pos::new(HPos::Right, VPos::Bottom), (-4, -7))
        } else {
            (Pos::new(HPos::Left, VPos::Bottom), (4, -7))
        };
        let label = EmptyElement::at((point, y))
            + Circle::new((0, 0), 5, col.filled())
            + Text::new(
                text,
                offset,
                TextStyle::from((FONT, 12).into_font()).pos(anchor),
            );
        chart.draw_series(std::iter::once(label)).map_err(e)?;
    }
    Ok(())
}
