//! The whole aggregation ([`aggregate`]) and its outputs: terminal tables, JSON and CSV.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::budget::{budget_scores, BudgetConfig, BudgetReport};
use crate::error::{Result, ScoringError};
use crate::horizon::{time_horizons, FitStatus, HorizonConfig, HorizonReport};
use crate::input::{files_of, Format, Run};

/// Schema tag of the JSON report.
pub const REPORT_SCHEMA: &str = "rdbench.aggregate/1";

/// Family prefix of RE-Bench's tasks in METR's data.
pub const METR_REBENCH_PREFIX: &str = "ai_rd_";

/// Settings of a full aggregation.
#[derive(Debug, Clone)]
pub struct AggregateConfig {
    pub budget: BudgetConfig,
    pub horizon: HorizonConfig,
    /// Agents left out of both parts.
    pub exclude_agents: Vec<String>,
    /// When `budget.family_prefixes` is `None` and the input holds METR-format runs, restrict
    /// the budget table to RE-Bench's families (`ai_rd_*`): METR's other runs have time limits
    /// too, but are not RE-Bench attempts.
    pub auto_rebench_families: bool,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            budget: BudgetConfig::default(),
            horizon: HorizonConfig::default(),
            exclude_agents: Vec::new(),
            auto_rebench_families: true,
        }
    }
}

/// What was read.
#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    pub files: Vec<PathBuf>,
    pub runs: usize,
    pub agents: usize,
    pub tasks: usize,
    pub families: usize,
    pub rdbench_records: usize,
    pub metr_records: usize,
    pub excluded_runs: usize,
}

/// Everything `rdbench aggregate` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub inputs: InputSummary,
    pub budgets: BudgetReport,
    pub horizon: HorizonReport,
    /// Things a reader should know (data left out, degenerate fits).
    pub notes: Vec<String>,
}

/// Runs both aggregations over `runs`.
pub fn aggregate(runs: &[Run], cfg: &AggregateConfig) -> Result<Report> {
    if runs.is_empty() {
        return Err(ScoringError::NoData("no runs were given".into()));
    }
    let kept: Vec<Run> = runs
        .iter()
        .filter(|r| !cfg.exclude_agents.contains(&r.agent))
        .cloned()
        .collect();
    if kept.is_empty() {
        return Err(ScoringError::NoData("every agent was excluded".into()));
    }
    let set = |f: fn(&Run) -> &str| kept.iter().map(f).collect::<BTreeSet<_>>().len();
    let metr_records = kept.iter().filter(|r| r.format == Format::Metr).count();
    let inputs = InputSummary {
        files: files_of(runs),
        runs: kept.len(),
        agents: set(|r| &r.agent),
        tasks: set(|r| &r.task),
        families: set(|r| &r.family),
        rdbench_records: kept.len() - metr_records,
        metr_records,
        excluded_runs: runs.len() - kept.len(),
    };
    let mut budget_cfg = cfg.budget.clone();
    let mut notes = Vec::new();
    if budget_cfg.family_prefixes.is_none() && cfg.auto_rebench_families && metr_records > 0 {
        budget_cfg.family_prefixes = Some(vec![METR_REBENCH_PREFIX.to_string()]);
        notes.push(format!(
            "budget table: METR-format input, so only RE-Bench families ({METR_REBENCH_PREFIX}*) are used"
        ));
    }
    let budgets = budget_scores(&kept, &budget_cfg)?;
    let horizon = time_horizons(&kept, &cfg.horizon)?;
    if budgets.agents.is_empty() && horizon.agents.is_empty() {
        return Err(ScoringError::NoData(
            "no run has a time limit (for the budget table) or human minutes (for the time horizon)"
                .into(),
        ));
    }
    if budgets.agents.is_empty() {
        notes.push("budget table: no run has a time limit".into());
    }
    if horizon.runs_without_human_minutes > 0 {
        notes.push(format!(
            "time horizon: {} run(s) without human minutes left out",
            horizon.runs_without_human_minutes
        ));
    }
    for a in &horizon.agents {
        match a.status {
            FitStatus::AllFailure => notes.push(format!(
                "time horizon: {} failed every run; its horizons are 0",
                a.agent
            )),
            FitStatus::AllSuccess => notes.push(format!(
                "time horizon: {} succeeded at every run; its horizons are unbounded",
                a.agent
            )),
            FitStatus::Fitted => {
                if let Some(f) = a.fit {
                    if f.slope >= 0.0 {
                        notes.push(format!(
                            "time horizon: {} has a non-negative slope ({:.4}); its horizons are not meaningful",
                            a.agent, f.slope
                        ));
                    }
                    if !f.converged {
                        notes.push(format!(
                            "time horizon: the fit for {} did not converge",
                            a.agent
                        ));
                    }
                }
            }
        }
    }
    Ok(Report {
        schema: REPORT_SCHEMA,
        inputs,
        budgets,
        horizon,
        notes,
    })
}

/// "30m", "2h", "1.5h", "32h".
pub fn format_duration(minutes: f64) -> String {
    if minutes >= 60.0 && (minutes / 60.0 * 10.0).fract().abs() < 1e-9 {
        let h = minutes / 60.0;
        if h.fract() == 0.0 {
            format!("{h}h")
        } else {
            format!("{h:.1}h")
        }
    } else if minutes.fract() == 0.0 {
        format!("{minutes}m")
    } else {
        format!("{minutes:.1}m")
    }
}

/// Parses a duration into minutes: `30m`, `30min`, `2h`, `1.5h`, `45s`, `1d`, or a bare number
/// of minutes.
pub fn parse_duration(text: &str) -> std::result::Result<f64, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 30m, 2h, 90)"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "min" | "mins" | "minute" | "minutes" => 1.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 60.0,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0 / 60.0,
        "d" | "day" | "days" => 1440.0,
        other => {
            return Err(format!(
                "unknown time unit {other:?} in {text:?} (use s, m, h or d)"
            ))
        }
    };
    let minutes = value * factor;
    if minutes > 0.0 && minutes.is_finite() {
        Ok(minutes)
    } else {
        Err(format!("a duration must be positive, got {text:?}"))
    }
}

/// Human-friendly horizon: minutes below an hour, hours above.
pub fn format_horizon(minutes: Option<f64>) -> String {
    match minutes {
        None => "unbounded".into(),
        Some(0.0) => "0".into(),
        Some(m) if m * 60.0 < 0.1 => "<0.1s".into(),
        Some(m) if m < 1.0 => format!("{:.1}s", m * 60.0),
        Some(m) if m < 60.0 => format!("{m:.1}m"),
        Some(m) => format!("{:.1}h", m / 60.0),
    }
}

fn interval(lo: Option<f64>, hi: Option<f64>, f: impl Fn(Option<f64>) -> String) -> String {
    match (lo, hi) {
        (None, None) => String::new(),
        _ => format!("[{}, {}]", f(lo), f(hi)),
    }
}

fn score_text(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

/// Lays out rows as a plain-text table with a header rule.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

/// A CSV document being built in memory; errors name the file.
struct CsvOut {
    name: &'static str,
    w: csv::Writer<Vec<u8>>,
}

impl CsvOut {
    fn new(name: &'static str) -> Self {
        CsvOut {
            name,
            w: csv::Writer::from_writer(Vec::new()),
        }
    }
    fn row<I: IntoIterator<Item = T>, T: AsRef<[u8]>>(&mut self, cells: I) -> Result<()> {
        self.w
            .write_record(cells)
            .map_err(|e| ScoringError::Output {
                path: self.name.into(),
                message: e.to_string(),
            })
    }
    fn finish(self) -> Result<String> {
        let bytes = self.w.into_inner().map_err(|e| ScoringError::Output {
            path: self.name.into(),
            message: e.to_string(),
        })?;
        Ok(String::from_utf8(bytes).expect("CSV of UTF-8 strings"))
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

impl Report {
    /// The success probabilities horizons are reported at (0.5, 0.8 by default).
    fn probabilities(&self) -> Vec<f64> {
        self.horizon
            .agents
            .first()
            .map(|a| a.horizons.iter().map(|x| x.probability).collect())
            .unwrap_or_default()
    }

    /// Both tables and the notes, for a terminal.
    pub fn render_tables(&self) -> String {
        let mut out = String::new();
        let i = &self.inputs;
        out.push_str(&format!(
            "{} runs, {} agents, {} tasks, {} families from {} file(s)\n\n",
            i.runs,
            i.agents,
            i.tasks,
            i.families,
            i.files.len()
        ));
        let b = &self.budgets;
        out.push_str(&format!(
            "Normalized score at total time budget (RE-Bench): mean over tasks of score@k, \
             {:.0}% bootstrap CI ({} samples)\n",
            b.ci_level * 100.0,
            b.bootstrap_samples
        ));
        if b.agents.is_empty() {
            out.push_str("  (no time-limited runs)\n");
        } else {
            let mut rows = Vec::new();
            for a in &b.agents {
                for br in &a.budgets {
                    let best = br.best_allocation();
                    let most_tasks = br.allocations.iter().map(|al| al.n_tasks).max();
                    let all = br
                        .allocations
                        .iter()
                        .map(|al| {
                            let mark = if al.tasks_with_replacement > 0 {
                                "*"
                            } else {
                                ""
                            };
                            let fewer = if Some(al.n_tasks) < most_tasks {
                                format!(" ({} tasks)", al.n_tasks)
                            } else {
                                String::new()
                            };
                            format!(
                                "{}x{} {:.3}{mark}{fewer}",
                                al.k,
                                format_duration(al.time_limit_minutes),
                                al.score
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("  ");
                    rows.push(vec![
                        a.agent.clone(),
                        format_duration(br.budget_minutes),
                        best.map(|al| {
                            format!("{}x{}", al.k, format_duration(al.time_limit_minutes))
                        })
                        .unwrap_or_else(|| "-".into()),
                        best.map(|al| format!("{:.3}", al.score))
                            .unwrap_or_else(|| "-".into()),
                        best.map(|al| interval(al.ci_low, al.ci_high, score_text))
                            .unwrap_or_default(),
                        best.map(|al| al.n_tasks.to_string()).unwrap_or_default(),
                        all,
                    ]);
                }
            }
            out.push_str(&table(
                &[
                    "agent",
                    "budget",
                    "best",
                    "score",
                    "95% CI",
                    "tasks",
                    "every allocation",
                ],
                &rows,
            ));
            out.push_str(
                "  kxL = k attempts of time limit L; * = some task has fewer than k attempts, \
                 so k are drawn with replacement; (n tasks) = an allocation with data on fewer \
                 tasks than the others, so its mean is over a different task set\n",
            );
        }
        out.push('\n');
        let h = &self.horizon;
        out.push_str(&format!(
            "Time horizon (METR): weighted logistic fit of success on log2 human minutes, \
             {:.0}% hierarchical bootstrap CI ({} samples)\n",
            h.ci_level * 100.0,
            h.bootstrap_samples
        ));
        if h.agents.is_empty() {
            out.push_str("  (no runs with human minutes)\n");
        } else {
            let mut header: Vec<String> = vec!["agent".into(), "runs".into(), "tasks".into()];
            for q in &self.probabilities() {
                let name = format!("p{}", (q * 100.0).round());
                header.push(name.clone());
                header.push(format!("{name} CI"));
            }
            header.extend(["slope".into(), "success".into()]);
            let mut agents: Vec<_> = h.agents.iter().collect();
            agents.sort_by(|x, y| {
                let key = |a: &&crate::horizon::AgentHorizon| {
                    a.horizons
                        .first()
                        .map(|h| h.minutes.unwrap_or(f64::INFINITY))
                        .unwrap_or(0.0)
                };
                key(y).total_cmp(&key(x))
            });
            let rows: Vec<Vec<String>> = agents
                .iter()
                .map(|a| {
                    let mut row = vec![a.agent.clone(), a.runs.to_string(), a.tasks.to_string()];
                    for hz in &a.horizons {
                        row.push(format_horizon(hz.minutes));
                        row.push(interval(hz.ci_low, hz.ci_high, format_horizon));
                    }
                    row.push(
                        a.fit
                            .map(|f| format!("{:.3}", f.slope))
                            .unwrap_or_else(|| "-".into()),
                    );
                    row.push(format!("{:.3}", a.average_success));
                    row
                })
                .collect();
            let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
            out.push_str(&table(&header_refs, &rows));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&format!("note: {n}\n"));
            }
        }
        out
    }

    /// `budgets.csv`: one row per agent, budget and allocation.
    pub fn budgets_csv(&self) -> Result<String> {
        let mut w = CsvOut::new("budgets.csv");
        w.row([
            "agent",
            "budget_minutes",
            "time_limit_minutes",
            "k",
            "score",
            "ci_low",
            "ci_high",
            "best",
            "n_tasks",
            "n_attempts",
            "tasks_without_replacement",
            "tasks_with_replacement",
            "tasks_mean",
        ])?;
        for a in &self.budgets.agents {
            for b in &a.budgets {
                for (i, al) in b.allocations.iter().enumerate() {
                    w.row([
                        a.agent.clone(),
                        b.budget_minutes.to_string(),
                        al.time_limit_minutes.to_string(),
                        al.k.to_string(),
                        al.score.to_string(),
                        opt(al.ci_low),
                        opt(al.ci_high),
                        (b.best == Some(i)).to_string(),
                        al.n_tasks.to_string(),
                        al.n_attempts.to_string(),
                        al.tasks_without_replacement.to_string(),
                        al.tasks_with_replacement.to_string(),
                        al.tasks_mean.to_string(),
                    ])?;
                }
            }
        }
        w.finish()
    }

    /// `horizons.csv`: one row per agent. Unbounded horizons are written as `inf`.
    pub fn horizons_csv(&self) -> Result<String> {
        let mut w = CsvOut::new("horizons.csv");
        let qs = self.probabilities();
        let mut header: Vec<String> = [
            "agent",
            "runs",
            "tasks",
            "families",
            "status",
            "intercept",
            "slope",
            "average_success",
            "bce_loss",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for q in &qs {
            let p = format!("p{}", (q * 100.0).round());
            header.extend([
                format!("{p}_minutes"),
                format!("{p}_ci_low"),
                format!("{p}_ci_high"),
                format!("{p}_valid_samples"),
            ]);
        }
        w.row(&header)?;
        for a in &self.horizon.agents {
            let mut row = vec![
                a.agent.clone(),
                a.runs.to_string(),
                a.tasks.to_string(),
                a.families.to_string(),
                serde_json::to_value(a.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                opt(a.fit.map(|f| f.intercept)),
                opt(a.fit.map(|f| f.slope)),
                a.average_success.to_string(),
                opt(a.bce_loss),
            ];
            for hz in &a.horizons {
                row.push(
                    hz.minutes
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "inf".into()),
                );
                row.push(opt(hz.ci_low));
                row.push(opt(hz.ci_high));
                row.push(hz.valid_samples.to_string());
            }
            w.row(&row)?;
        }
        w.finish()
    }

    /// `horizon_bootstrap.csv`: every bootstrap sample's horizons (empty where skipped).
    pub fn horizon_bootstrap_csv(&self) -> Result<String> {
        let mut w = CsvOut::new("horizon_bootstrap.csv");
        let qs = self.probabilities();
        let mut header = vec!["sample".to_string(), "agent".to_string()];
        header.extend(
            qs.iter()
                .map(|q| format!("p{}_minutes", (q * 100.0).round())),
        );
        w.row(&header)?;
        for (i, sample) in self.horizon.samples.iter().enumerate() {
            for (a, values) in self.horizon.agents.iter().zip(sample) {
                let mut row = vec![i.to_string(), a.agent.clone()];
                row.extend(values.iter().map(|v| {
                    if v.is_nan() {
                        String::new()
                    } else {
                        v.to_string()
                    }
                }));
                w.row(&row)?;
            }
        }
        w.finish()
    }

    /// The report as one JSON document (infinite or missing values are `null`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the report serializes")
    }

    /// Writes `report.json`, `budgets.csv`, `horizons.csv` and `horizon_bootstrap.csv` into
    /// `dir` (created if needed); returns the paths written.
    pub fn write_files(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| ScoringError::Output {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let json = serde_json::to_string_pretty(self).expect("the report serializes");
        let files: BTreeMap<&str, String> = [
            ("report.json", json + "\n"),
            ("budgets.csv", self.budgets_csv()?),
            ("horizons.csv", self.horizons_csv()?),
            ("horizon_bootstrap.csv", self.horizon_bootstrap_csv()?),
        ]
        .into_iter()
        .collect();
        let mut written = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| ScoringError::Output {
                path: path.clone(),
                message: e.to_string(),
            })?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(30.0), "30m");
        assert_eq!(format_duration(120.0), "2h");
        assert_eq!(format_duration(90.0), "1.5h");
        assert_eq!(format_duration(1920.0), "32h");
        assert_eq!(format_horizon(None), "unbounded");
        assert_eq!(format_horizon(Some(0.0)), "0");
        assert_eq!(format_horizon(Some(90.0)), "1.5h");
        assert_eq!(format_horizon(Some(12.34)), "12.3m");
        assert_eq!(parse_duration("30m"), Ok(30.0));
        assert_eq!(parse_duration("2h"), Ok(120.0));
        assert_eq!(parse_duration("1.5 h"), Ok(90.0));
        assert_eq!(parse_duration("90"), Ok(90.0));
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("2 weeks").is_err());
    }
}
