//! `rdbench aggregate`: many attempts in, RE-Bench's score at time budgets and METR's time
//! horizon out, as tables (or JSON/CSV) on stdout and report.json, CSV files and plots in --out.
//! An input may be a results folder of `score-job` (its `<index>.json` files): there a broken
//! file is one line on stderr naming it, the others are aggregated, and the exit code is 2.

use std::io::Write;
use std::path::PathBuf;

use rdbench_scoring::budget::BudgetConfig;
use rdbench_scoring::horizon::{HorizonConfig, Outcome};
use rdbench_scoring::plot::{write_plots, PlotFormat};
use rdbench_scoring::report::parse_duration;
use rdbench_scoring::{aggregate, load_file, with_threads, AggregateConfig, Run};

/// What to print on stdout.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Both tables, for a person.
    Table,
    /// One JSON document (the same as report.json).
    Json,
    /// budgets.csv, a blank line, then horizons.csv.
    Csv,
}

/// Image formats for the plots.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotKind {
    Svg,
    Png,
    /// No plots.
    None,
}

/// Aggregate attempt results: score at time budgets (RE-Bench) and time horizons (METR).
#[derive(clap::Args, Debug)]
pub struct AggregateArgs {
    /// Attempt summaries written by `rdbench finish` or METR runs (all_runs.jsonl): one JSON
    /// object, a JSON array, or JSON lines per file; the format is detected per record. A
    /// folder is a `score-job` results folder: every `<index>.json` in it
    #[arg(required = true, value_name = "FILE|DIR")]
    pub inputs: Vec<PathBuf>,
    /// Folder for report.json, budgets.csv, horizons.csv, horizon_bootstrap.csv and the plots
    #[arg(long, value_name = "DIR", default_value = "rdbench-aggregate")]
    pub out: PathBuf,
    /// Write no files; print only
    #[arg(long)]
    pub no_files: bool,
    /// Total time budgets (e.g. 30m,2h,8h,32h; a bare number is minutes)
    #[arg(long, value_delimiter = ',', value_parser = parse_duration, default_value = "30m,2h,8h,32h")]
    pub budgets: Vec<f64>,
    /// Success means score > THRESHOLD (default 0.9, METR's; without this flag a recorded
    /// score_binarized is used where present)
    #[arg(long, conflicts_with = "soft")]
    pub threshold: Option<f64>,
    /// Use the score in [0, 1] as a soft label instead of binarizing it
    #[arg(long)]
    pub soft: bool,
    /// Success probabilities, in percent, at which to report horizons
    #[arg(long, value_delimiter = ',', default_value = "50,80")]
    pub horizon_at: Vec<f64>,
    /// Hierarchical bootstrap samples for the time-horizon intervals
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub bootstrap: usize,
    /// Bootstrap samples for the budget-table intervals
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub budget_bootstrap: usize,
    /// Seed of both bootstraps (results are reproducible for any thread count)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// L2 strength on the slope of the logistic fit (METR: 0.1)
    #[arg(long, default_value_t = 0.1)]
    pub regularization: f64,
    /// What to print on stdout (the global --json flag means json)
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Plot formats
    #[arg(long, value_enum, value_delimiter = ',', default_value = "svg,png")]
    pub plots: Vec<PlotKind>,
    /// Only task families starting with PREFIX enter the budget table (repeatable; by default
    /// every time-limited run, or only ai_rd_* for METR-format input; '' means every family)
    #[arg(long = "budget-family", value_name = "PREFIX")]
    pub budget_families: Vec<String>,
    /// A task or family whose score is hidden from the agent: score@k takes the mean
    /// (repeatable; rdbench summaries carry this flag themselves)
    #[arg(long = "hidden-score", value_name = "TASK_OR_FAMILY")]
    pub hidden_score: Vec<String>,
    /// Leave an agent out (repeatable), e.g. --exclude-agent human
    #[arg(long = "exclude-agent", value_name = "AGENT")]
    pub exclude_agents: Vec<String>,
    /// Worker threads (default: one per core)
    #[arg(long)]
    pub threads: Option<usize>,
}

impl AggregateArgs {
    fn config(&self) -> AggregateConfig {
        let outcome = if self.soft {
            Outcome::Soft
        } else {
            match self.threshold {
                Some(threshold) => Outcome::Binary {
                    threshold,
                    use_provided: false,
                },
                None => Outcome::default(),
            }
        };
        AggregateConfig {
            budget: BudgetConfig {
                budgets_minutes: self.budgets.clone(),
                bootstrap_samples: self.budget_bootstrap,
                seed: self.seed,
                family_prefixes: (!self.budget_families.is_empty())
                    .then(|| self.budget_families.clone()),
                hidden_score: self.hidden_score.clone(),
                ..BudgetConfig::default()
            },
            horizon: HorizonConfig {
                regularization: self.regularization,
                outcome,
                success_probabilities: self.horizon_at.iter().map(|p| p / 100.0).collect(),
                bootstrap_samples: self.bootstrap,
                seed: self.seed,
                ..HorizonConfig::default()
            },
            exclude_agents: self.exclude_agents.clone(),
            auto_rebench_families: true,
        }
    }
}

/// Runs `rdbench aggregate`: 0 on success; bad input or settings are a usage error (exit 2,
/// the message naming file, line and field), failing to write outputs an environment error
/// (exit 3), both reported as every command reports its errors (`rdbench: ...`, and JSON on
/// stdout with `--json`).
pub fn run(args: &AggregateArgs, json: bool) -> rdbench_core::Result<i32> {
    run_inner(args, json).map_err(|e| match e.downcast::<rdbench_scoring::ScoringError>() {
        Ok(e) if e.is_input_error() => rdbench_core::Error::Usage(e.to_string()),
        Ok(e) => rdbench_core::Error::Environment(e.to_string()),
        Err(e) => rdbench_core::Error::Environment(format!("{e:#}")),
    })
}

fn run_inner(args: &AggregateArgs, json: bool) -> anyhow::Result<i32> {
    let format = if json {
        OutputFormat::Json
    } else {
        args.format
    };
    let cfg = args.config();
    let mut broken = Vec::new();
    let result = with_threads(args.threads, || {
        let runs = load_inputs(&args.inputs, &mut broken)?;
        aggregate(&runs, &cfg)
    });
    for line in &broken {
        eprintln!("rdbench: skipped {line}");
    }
    let report = result?;
    let mut written = Vec::new();
    if !args.no_files {
        written.extend(report.write_files(&args.out)?);
        let formats: Vec<PlotFormat> = args
            .plots
            .iter()
            .filter_map(|p| match p {
                PlotKind::Svg => Some(PlotFormat::Svg),
                PlotKind::Png => Some(PlotFormat::Png),
                PlotKind::None => None,
            })
            .collect();
        if !args.plots.contains(&PlotKind::None) && !formats.is_empty() {
            written.extend(write_plots(&report, &args.out, &formats)?);
        }
    }
    let text = match format {
        OutputFormat::Json => serde_json::to_string_pretty(&report.to_json())? + "\n",
        OutputFormat::Csv => format!("{}\n{}", report.budgets_csv()?, report.horizons_csv()?),
        OutputFormat::Table => {
            let mut text = report.render_tables();
            if !written.is_empty() {
                text.push_str(&format!(
                    "\nwrote {} file(s) to {}:\n",
                    written.len(),
                    args.out.display()
                ));
                for p in &written {
                    text.push_str(&format!("  {}\n", p.display()));
                }
            }
            text
        }
    };
    // A reader that stops early (`| head`) is not an error.
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(if broken.is_empty() { 0 } else { 2 })
}

/// The runs of every input: a file whole (an error in it stops the command), a results folder
/// file by file (a broken one goes into `broken`, naming it, and the others count).
fn load_inputs(inputs: &[PathBuf], broken: &mut Vec<String>) -> rdbench_scoring::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            runs.extend(load_file(input)?);
            continue;
        }
        let results = result_files(input)?;
        if results.is_empty() {
            return Err(rdbench_scoring::ScoringError::EmptyFile {
                path: input.join("<index>.json"),
            });
        }
        for file in results {
            match load_file(&file) {
                Ok(found) => runs.extend(found),
                Err(e) => broken.push(e.to_string()),
            }
        }
    }
    Ok(runs)
}

/// The `<index>.json` files of a results folder, by index.
fn result_files(dir: &std::path::Path) -> rdbench_scoring::Result<Vec<PathBuf>> {
    let io = |source| rdbench_scoring::ScoringError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let index = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(index) = index {
            found.push((index, path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}
