//! Each figure drawn at the size `write_plots` gives it, from synthetic reports of 1 to 12
//! agents, and checked where it used to go wrong: in its pixels (as the PNG is drawn) or in
//! its elements (the SVG).

use super::*;
use crate::synth::{metr_like, SynthConfig};
use crate::{aggregate, AggregateConfig};

fn report(agents: usize) -> Report {
    let runs = metr_like(&SynthConfig {
        agents,
        tasks: 40,
        seed: 3,
        ..Default::default()
    });
    let mut cfg = AggregateConfig::default();
    cfg.horizon.bootstrap_samples = 20;
    cfg.budget.bootstrap_samples = 20;
    aggregate(&runs, &cfg).unwrap()
}

/// The figure as RGB rows, drawn as its PNG is.
fn pixels(name: &str, report: &Report) -> (usize, usize, Vec<u8>) {
    register_font();
    let (w, h) = figure_size(name, report).expect("the figure has something to show");
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    {
        let backend = Glyphs::new(BitMapBackend::with_buffer(&mut buf, (w, h)));
        draw(name, report, backend.into_drawing_area()).unwrap();
    }
    (w as usize, h as usize, buf)
}

fn svg(name: &str, report: &Report) -> String {
    register_font();
    let size = figure_size(name, report).expect("the figure has something to show");
    let mut out = String::new();
    draw(
        name,
        report,
        SVGBackend::with_string(&mut out, size).into_drawing_area(),
    )
    .unwrap();
    out
}

/// A dark pixel: text and lines, not the white background or the light grid.
fn ink(px: &[u8], w: usize, x: usize, y: usize) -> bool {
    let i = (y * w + x) * 3;
    px[i..i + 3].iter().any(|&c| c < 160)
}

#[test]
fn every_title_fits_its_canvas() {
    for agents in [1, 2, 5, 12] {
        let rep = report(agents);
        for name in FIGURES {
            let (w, h, px) = pixels(name, &rep);
            let row_has_ink = |y: usize| (0..w).any(|x| ink(&px, w, x, y));
            // The title is the first band of rows with ink.
            let top = (0..h).find(|&y| row_has_ink(y)).expect("a title");
            let bottom = (top..h).find(|&y| !row_has_ink(y)).unwrap_or(h);
            assert!(bottom - top >= 8, "{name}, {agents} agents: no title");
            for y in top..bottom {
                for x in (0..6).chain(w - 6..w) {
                    assert!(
                        !ink(&px, w, x, y),
                        "{name}, {agents} agents ({w} px wide): the title reaches the edge at x = {x}"
                    );
                }
            }
        }
    }
}

/// Tick labels are whole durations ("15m", "2h"); horizon labels have a decimal ("1.4h").
fn tick_labels(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = t.split_once('>')?.1.split_once("</text>")?.0.trim();
            let (digits, unit) = body.split_at(body.len().checked_sub(1)?);
            (!digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_digit())
                && "smhdw".contains(unit))
            .then(|| body.to_string())
        })
        .collect()
}

#[test]
fn time_axes_have_at_least_three_ticks() {
    for agents in [1, 2, 5] {
        let rep = report(agents);
        let p50 = tick_labels(&svg("horizon_p50", &rep));
        assert!(p50.len() >= 3, "{agents} agents: p50 axis ticks {p50:?}");
        let fits = tick_labels(&svg("horizon_fits", &rep));
        assert!(
            fits.len() >= 3 * agents,
            "{agents} agents: fits' axes ticks {fits:?}"
        );
    }
}

#[test]
fn time_ticks_are_round_durations_three_to_eight_per_range() {
    let mut lo = 0.05;
    while lo < 1e5 {
        for decades in [1.0, 2.0, 3.5, 6.0] {
            let hi = lo * 10f64.powf(decades);
            let ticks = time_ticks(lo, hi);
            assert!((3..=8).contains(&ticks.len()), "{lo}..{hi}: {ticks:?}");
            assert!(ticks.windows(2).all(|p| p[0] < p[1]), "{ticks:?}");
            assert!(ticks.iter().all(|t| *t >= lo * 0.999 && *t <= hi * 1.001));
            let labels: Vec<String> = ticks.iter().map(|t| minute_label(*t)).collect();
            let mut distinct = labels.clone();
            distinct.dedup();
            assert_eq!(distinct, labels, "labels are distinct: {lo}..{hi}");
        }
        lo *= 1.7;
    }
}

/// `(x, y)` of every SVG element `tag` with attribute `marker` (e.g. `r="5"`).
fn positions(svg: &str, tag: &str, x: &str, y: &str) -> Vec<(f64, f64, String)> {
    let attr = |el: &str, name: &str| -> Option<f64> {
        el.split_once(&format!(" {name}=\""))?
            .1
            .split_once('"')?
            .0
            .parse()
            .ok()
    };
    svg.split(&format!("<{tag}"))
        .skip(1)
        .filter_map(|el| {
            let body = el
                .split_once('>')
                .and_then(|(_, rest)| rest.split_once('<'))
                .map(|(b, _)| b.trim().to_string())
                .unwrap_or_default();
            Some((attr(el, x)?, attr(el, y)?, body))
        })
        .collect()
}

#[test]
fn p50_labels_sit_beside_their_points() {
    for agents in [1, 2, 11] {
        let rep = report(agents);
        let svg = svg("horizon_p50", &rep);
        let points: Vec<(f64, f64)> = svg
            .split("<circle")
            .skip(1)
            .filter(|c| c.contains(" r=\"5\""))
            .filter_map(|c| {
                let (x, y, _) = positions(&format!("<circle{c}"), "circle", "cx", "cy")
                    .into_iter()
                    .next()?;
                Some((x, y))
            })
            .collect();
        assert_eq!(points.len(), agents, "one point per agent");
        let texts = positions(&svg, "text", "x", "y");
        for a in &rep.horizon.agents {
            let Some(h) = a
                .horizons
                .iter()
                .find(|h| (h.probability - 0.5).abs() < 1e-9)
            else {
                continue;
            };
            let label = format_horizon(h.minutes);
            let (tx, ty, _) = texts
                .iter()
                .find(|t| t.2 == label)
                .unwrap_or_else(|| panic!("{agents} agents: no label {label}"));
            let nearest = points
                .iter()
                .map(|(x, y)| ((x - tx).powi(2) + (y - ty).powi(2)).sqrt())
                .fold(f64::INFINITY, f64::min);
            assert!(
                nearest < 30.0,
                "{agents} agents: {label} is {nearest:.0} px from the nearest point"
            );
        }
    }
}

/// Glyphs keep their left side bearing: in "PT" at 40 px the gap between the two letters is
/// the font's (about 1.5 px), not the 5 px plotters' own renderer leaves.
#[test]
fn glyphs_keep_their_bearings() {
    let font = ab_glyph::FontRef::try_from_slice(dejavu::sans::regular()).unwrap();
    let mut columns = std::collections::BTreeSet::new();
    glyphs::draw_line_of_text(&font, 40.0, "PT", |x, _, coverage| {
        if coverage > 0.5 {
            columns.insert(x);
        }
    });
    let columns: Vec<i32> = columns.into_iter().collect();
    let widest_gap = columns.windows(2).map(|p| p[1] - p[0] - 1).max().unwrap();
    assert!(widest_gap <= 3, "a {widest_gap} px gap inside \"PT\"");
}

/// Agents with equal scores at a budget still show one point each: in a report whose agents
/// all score the same, the budget figure has as many distinct point positions per budget as
/// agents.
#[test]
fn equal_budget_scores_show_side_by_side() {
    let mut runs = metr_like(&SynthConfig {
        agents: 3,
        tasks: 20,
        seed: 4,
        ..Default::default()
    });
    for run in &mut runs {
        run.score = 1.0;
        run.score_binarized = Some(1.0);
    }
    let mut cfg = AggregateConfig::default();
    cfg.horizon.bootstrap_samples = 10;
    cfg.budget.bootstrap_samples = 10;
    let rep = aggregate(&runs, &cfg).unwrap();
    let svg = svg("score_vs_budget", &rep);
    let mut points: Vec<(i64, i64)> = svg
        .split("<circle")
        .skip(1)
        .filter_map(|c| {
            let (x, y, _) = positions(&format!("<circle{c}"), "circle", "cx", "cy")
                .into_iter()
                .next()?;
            Some((x.round() as i64, y.round() as i64))
        })
        .collect();
    let all = points.len();
    points.sort();
    points.dedup();
    assert!(all >= 3, "{all} points");
    assert_eq!(points.len(), all, "points drawn over each other");
}
