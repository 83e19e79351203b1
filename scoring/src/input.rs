//! Reading attempt results: rdbench attempt summaries and METR's published runs.
//!
//! A file may hold one JSON object (what `rdbench finish` writes, pretty-printed), a JSON array
//! of objects, or JSON lines. Each record's format is detected from its fields:
//!
//! - **rdbench** attempt summaries carry `schema: "rdbench.attempt-summary/1"` (or, without a
//!   schema, an `attempt_id`). Fields used: `attempt_id`, `agent`, `task`, `task_family`,
//!   `time_limit_minutes`, `score` (normalized; `null`, meaning no valid entry, counts as 0, the
//!   starting solution's score), `score_hidden`, `human_minutes`.
//! - **METR** runs (`all_runs.jsonl` of METR's eval-analysis-public) carry `task_id` and `alias`.
//!   Fields used: `run_id`, `task_id`, `task_family`, `alias` (the agent), `score`,
//!   `score_binarized`, `human_minutes`, `time_limit` (seconds; 0 means none). METR's format has
//!   no hidden-score flag: tasks of the families in [`METR_HIDDEN_SCORE_FAMILIES`] (RE-Bench's
//!   scaling-law task) are marked hidden.
//!
//! Every error names the file, the line the record starts on and the field.

use std::path::{Path, PathBuf};

use rdbench_core::summary::{AttemptSummary, SUMMARY_SCHEMA};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Location, Result, ScoringError};

/// Families whose score RE-Bench hides from the agent, for METR-format records.
pub const METR_HIDDEN_SCORE_FAMILIES: &[&str] = &["ai_rd_small_scaling_law"];

/// The format a record was read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `rdbench.attempt-summary/1`.
    Rdbench,
    /// METR's published runs.
    Metr,
}

impl Format {
    fn describe(self) -> &'static str {
        match self {
            Format::Rdbench => "rdbench attempt summary",
            Format::Metr => "METR run",
        }
    }
}

/// One attempt (a "run" in METR's words), normalized across input formats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub run_id: String,
    pub agent: String,
    pub task: String,
    pub family: String,
    /// Per-attempt time limit in minutes; `None` where the run had none.
    pub time_limit_minutes: Option<f64>,
    /// Final normalized score.
    pub score: f64,
    /// Success as recorded in the input (METR's `score_binarized`), when present.
    pub score_binarized: Option<f64>,
    /// Human time for the task in minutes (the time-horizon x axis), when known.
    pub human_minutes: Option<f64>,
    /// The task hides its score from the agent: score@k takes the mean, not the best.
    pub score_hidden: bool,
    pub format: Format,
    /// Where the record starts.
    pub at: Location,
}

impl Run {
    /// Converts an in-memory attempt summary, with the same checks as reading one from a file.
    pub fn from_summary(s: &AttemptSummary, at: Location) -> Result<Run> {
        if s.schema != SUMMARY_SCHEMA {
            return Err(ScoringError::BadField {
                at,
                field: "schema",
                message: format!("expected {SUMMARY_SCHEMA:?}, got {:?}", s.schema),
            });
        }
        let time_limit_minutes = positive(s.time_limit_minutes, "time_limit_minutes", &at)?;
        let human_minutes = positive(s.human_minutes, "human_minutes", &at)?;
        let score = finite(s.score.unwrap_or(0.0), "score", &at)?;
        Ok(Run {
            run_id: s.attempt_id.clone(),
            agent: s.agent.clone(),
            task: s.task.clone(),
            family: s.task_family.clone(),
            time_limit_minutes,
            score,
            score_binarized: None,
            human_minutes,
            score_hidden: s.score_hidden,
            format: Format::Rdbench,
            at,
        })
    }
}

fn positive(v: Option<f64>, field: &'static str, at: &Location) -> Result<Option<f64>> {
    match v {
        Some(x) if !(x > 0.0 && x.is_finite()) => Err(ScoringError::BadField {
            at: at.clone(),
            field,
            message: format!("must be a positive number of minutes, got {x}"),
        }),
        other => Ok(other),
    }
}

fn finite(x: f64, field: &'static str, at: &Location) -> Result<f64> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(ScoringError::BadField {
            at: at.clone(),
            field,
            message: format!("must be a finite number, got {x}"),
        })
    }
}

/// Reads every file and concatenates their runs, in file order.
pub fn load_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for p in paths {
        runs.extend(load_file(p.as_ref())?);
    }
    Ok(runs)
}

/// Reads one file of attempt summaries or METR runs.
pub fn load_file(path: &Path) -> Result<Vec<Run>> {
    let text = std::fs::read_to_string(path).map_err(|source| ScoringError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, path)
}

/// Parses the text of a file; `path` is only used to name locations in errors.
pub fn parse_str(text: &str, path: &Path) -> Result<Vec<Run>> {
    let lines = LineIndex::new(text);
    let records = split_records(text, path, &lines)?;
    if records.is_empty() {
        return Err(ScoringError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    records
        .into_iter()
        .map(|(line, value)| {
            let at = Location {
                path: path.to_path_buf(),
                line,
            };
            parse_record(value, at)
        })
        .collect()
}

/// Byte offsets of line starts, to turn offsets into 1-based line numbers.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex(starts)
    }
    fn line_of(&self, offset: usize) -> usize {
        match self.0.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

fn skip_ws(text: &str, mut pos: usize) -> usize {
    let b = text.as_bytes();
    while pos < b.len() && b[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

/// A syntax error in the record starting at `record_line`; serde's position (`e_line` is
/// absolute) is kept in the message.
fn syntax(path: &Path, record_line: usize, e_line: usize, e: &serde_json::Error) -> ScoringError {
    let text = e.to_string();
    let what = text
        .rfind(" at line ")
        .map_or(text.as_str(), |i| &text[..i]);
    ScoringError::Syntax {
        at: Location {
            path: path.to_path_buf(),
            line: record_line,
        },
        message: format!("{what} (line {e_line}, column {})", e.column()),
    }
}

/// Splits a file into (line, value) records: one object, an array, or a stream of values.
fn split_records(text: &str, path: &Path, lines: &LineIndex) -> Result<Vec<(usize, Value)>> {
    let mut out = Vec::new();
    let start = skip_ws(text, 0);
    if text[start..].starts_with('[') {
        let mut pos = skip_ws(text, start + 1);
        if text[pos..].starts_with(']') {
            return Ok(out);
        }
        loop {
            let base_line = lines.line_of(pos);
            let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
            match stream.next() {
                Some(Ok(v)) => out.push((base_line, v)),
                Some(Err(e)) => return Err(syntax(path, base_line, base_line + e.line() - 1, &e)),
                None => {
                    return Err(ScoringError::Syntax {
                        at: Location {
                            path: path.to_path_buf(),
                            line: base_line,
                        },
                        message: "unterminated JSON array".into(),
                    })
                }
            }
            pos = skip_ws(text, pos + stream.byte_offset());
            match text.as_bytes().get(pos) {
                Some(b',') => pos = skip_ws(text, pos + 1),
                Some(b']') => {
                    let rest = skip_ws(text, pos + 1);
                    if rest < text.len() {
                        return Err(ScoringError::Syntax {
                            at: Location {
                                path: path.to_path_buf(),
                                line: lines.line_of(rest),
                            },
                            message: "trailing characters after the JSON array".into(),
                        });
                    }
                    return Ok(out);
                }
                _ => {
                    return Err(ScoringError::Syntax {
                        at: Location {
                            path: path.to_path_buf(),
                            line: lines.line_of(pos.min(text.len())),
                        },
                        message: "expected `,` or `]` in the JSON array".into(),
                    })
                }
            }
        }
    }
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut end = 0;
    loop {
        let value_start = skip_ws(text, end);
        match stream.next() {
            None => break,
            Some(Ok(v)) => out.push((lines.line_of(value_start), v)),
            Some(Err(e)) => return Err(syntax(path, lines.line_of(value_start), e.line(), &e)),
        }
        end = stream.byte_offset();
    }
    Ok(out)
}

fn detect(obj: &Map<String, Value>, at: &Location) -> Result<Format> {
    if let Some(schema) = obj.get("schema") {
        return match schema.as_str() {
            Some(SUMMARY_SCHEMA) => Ok(Format::Rdbench),
            _ => Err(ScoringError::BadField {
                at: at.clone(),
                field: "schema",
                message: format!("expected {SUMMARY_SCHEMA:?}, got {schema}"),
            }),
        };
    }
    if obj.contains_key("alias") || obj.contains_key("task_id") {
        return Ok(Format::Metr);
    }
    if obj.contains_key("attempt_id") {
        return Ok(Format::Rdbench);
    }
    Err(ScoringError::UnknownFormat {
        at: at.clone(),
        message: format!(
            "expected an rdbench attempt summary (schema {SUMMARY_SCHEMA:?}) or a METR run \
             (task_id, alias, score, human_minutes, ...)"
        ),
    })
}

/// Field access with errors that name the location and field.
struct Rec<'a> {
    obj: &'a Map<String, Value>,
    at: &'a Location,
    format: Format,
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

impl Rec<'_> {
    fn missing(&self, field: &'static str) -> ScoringError {
        ScoringError::MissingField {
            at: self.at.clone(),
            field,
            format: self.format.describe(),
        }
    }
    fn bad(&self, field: &'static str, message: String) -> ScoringError {
        ScoringError::BadField {
            at: self.at.clone(),
            field,
            message,
        }
    }
    fn string(&self, field: &'static str) -> Result<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Err(self.missing(field)),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(self.bad(field, "must not be empty".into())),
            Some(v) => Err(self.bad(field, format!("expected a string, got {}", kind(v)))),
        }
    }
    /// A string or integer identifier, if present.
    fn id(&self, field: &'static str) -> Result<Option<String>> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(v) => Err(self.bad(
                field,
                format!("expected a string or number, got {}", kind(v)),
            )),
        }
    }
    /// A number, `None` when absent or null.
    fn number(&self, field: &'static str) -> Result<Option<f64>> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| self.bad(field, format!("not a finite number: {n}"))),
            Some(v) => Err(self.bad(field, format!("expected a number, got {}", kind(v)))),
        }
    }
    fn required_number(&self, field: &'static str) -> Result<f64> {
        self.number(field)?.ok_or_else(|| self.missing(field))
    }
    fn boolean(&self, field: &'static str) -> Result<Option<bool>> {
        match self.obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(field, format!("expected true or false, got {}", kind(v)))),
        }
    }
}

fn parse_record(value: Value, at: Location) -> Result<Run> {
    let Value::Object(obj) = value else {
        return Err(ScoringError::UnknownFormat {
            message: format!("expected a JSON object, got {}", kind(&value)),
            at,
        });
    };
    let format = detect(&obj, &at)?;
    let r = Rec {
        obj: &obj,
        at: &at,
        format,
    };
    // Fields both formats have, under their own names.
    let (agent_field, task_field, id_field) = match format {
        Format::Rdbench => ("agent", "task", "attempt_id"),
        Format::Metr => ("alias", "task_id", "run_id"),
    };
    let agent = r.string(agent_field)?;
    let task = r.string(task_field)?;
    let family = r.string("task_family")?;
    let run_id = r.id(id_field)?.unwrap_or_else(|| at.to_string());
    let mut run = Run {
        run_id,
        agent,
        task,
        family,
        time_limit_minutes: None,
        score: 0.0,
        score_binarized: None,
        human_minutes: None,
        score_hidden: false,
        format,
        at: at.clone(),
    };
    match format {
        Format::Rdbench => {
            run.time_limit_minutes =
                positive(r.number("time_limit_minutes")?, "time_limit_minutes", &at)?;
            run.human_minutes = positive(r.number("human_minutes")?, "human_minutes", &at)?;
            // No valid entry: the attempt scores what the starting solution does, 0.
            run.score = r.number("score")?.unwrap_or(0.0);
            run.score_hidden = match r.boolean("score_hidden")? {
                Some(b) => b,
                None => r.obj.get("selection").and_then(Value::as_str) == Some("last"),
            };
        }
        Format::Metr => {
            run.score = r.required_number("score")?;
            let minutes = Some(r.required_number("human_minutes")?);
            run.human_minutes = positive(minutes, "human_minutes", &at)?;
            run.time_limit_minutes = match r.number("time_limit")? {
                None | Some(0.0) => None,
                Some(s) if s > 0.0 => Some(s / 60.0),
                Some(s) => {
                    return Err(r.bad("time_limit", format!("must be seconds >= 0, got {s}")));
                }
            };
            run.score_binarized = match r.number("score_binarized")? {
                None => None,
                Some(b) if b == 0.0 || b == 1.0 => Some(b),
                Some(b) => {
                    return Err(r.bad("score_binarized", format!("must be 0 or 1, got {b}")));
                }
            };
            run.score_hidden = METR_HIDDEN_SCORE_FAMILIES.contains(&run.family.as_str());
        }
    }
    Ok(run)
}

/// The distinct files runs came from, in first-seen order.
pub fn files_of(runs: &[Run]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for r in runs {
        if out.last() != Some(&r.at.path) && !out.contains(&r.at.path) {
            out.push(r.at.path.clone());
        }
    }
    out
}
