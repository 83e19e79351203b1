//! Parsing `launch.toml` into a [`LaunchPlan`]: the serde structs that mirror the file (unknown
//! keys are errors), then every check that needs nothing from the task: identifiers, duplicate
//! names, type names, expression syntax, and at least one launch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::types::{ArgSpec, ElemType, LaunchPlan, LaunchSpec, PlanError, ScalarType, ScratchSpec};
use super::{launch_location, quote_list, AXES};
use crate::expr::{Expr, FUNCTIONS};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    #[serde(default)]
    constants: BTreeMap<String, toml::Value>,
    #[serde(default)]
    scratch: Vec<RawScratch>,
    #[serde(default)]
    launch: Vec<RawLaunch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScratch {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    len: toml::Value,
    #[serde(default)]
    init: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLaunch {
    kernel: String,
    grid: toml::Value,
    block: toml::Value,
    #[serde(default)]
    shared_mem: Option<toml::Value>,
    #[serde(default)]
    args: Vec<String>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn toml_type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

impl LaunchPlan {
    /// Reads and parses the plan at `path`. A missing or unreadable file is
    /// [`PlanError::Io`] naming the path.
    pub fn from_file(path: impl AsRef<Path>) -> Result<LaunchPlan, PlanError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        LaunchPlan::parse(&text, path)
    }

    /// Parses plan text; `path` is used in error messages (and kept in the plan).
    ///
    /// Checks everything that does not depend on the task: TOML syntax, unknown keys, value
    /// types, identifiers, duplicate names, element and scalar type names, expression syntax,
    /// and that there is at least one launch.
    pub fn parse(text: &str, path: &Path) -> Result<LaunchPlan, PlanError> {
        let path_buf = path.to_path_buf();
        let invalid = |location: String, message: String| PlanError::Invalid {
            path: path_buf.clone(),
            location,
            message,
        };
        let raw: RawPlan = toml::from_str(text).map_err(|e| PlanError::Toml {
            path: path_buf.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;

        let constants = parse_constants(&raw.constants, &invalid)?;
        let scratch = parse_scratch(&raw.scratch, &constants, &invalid)?;
        let launches = parse_launches(&raw.launch, &invalid)?;
        Ok(LaunchPlan {
            path: path_buf,
            constants,
            scratch,
            launches,
        })
    }
}

/// How a check words a refusal: the location in the plan and the message.
type Invalid<'a> = dyn Fn(String, String) -> PlanError + 'a;

/// `[constants]`: integers with identifier names that are not function names.
fn parse_constants(
    raw: &BTreeMap<String, toml::Value>,
    invalid: &Invalid,
) -> Result<BTreeMap<String, i64>, PlanError> {
    let mut constants = BTreeMap::new();
    for (name, value) in raw {
        let loc = format!("constants.{name}");
        if !is_identifier(name) {
            return Err(invalid(
                loc,
                "a constant's name must be an identifier (letters, digits, `_`, not starting with a digit)".into(),
            ));
        }
        if FUNCTIONS.contains(&name.as_str()) {
            return Err(invalid(
                loc,
                format!("`{name}` is the name of a function; choose another name"),
            ));
        }
        match value {
            toml::Value::Integer(v) => {
                constants.insert(name.clone(), *v);
            }
            other => {
                let hint = match other {
                    toml::Value::String(_) => {
                        "; constants are plain integers, not expressions (write `BLOCK = 256`, not `BLOCK = \"256\"`)"
                    }
                    toml::Value::Float(_) => "; constants must be whole numbers",
                    _ => "",
                };
                return Err(invalid(
                    loc,
                    format!("expected an integer, found {}{hint}", toml_type_name(other)),
                ));
            }
        }
    }
    Ok(constants)
}

/// `[[scratch]]`: uniquely named buffers (no constant's name) of a known type and length.
fn parse_scratch(
    raw: &[RawScratch],
    constants: &BTreeMap<String, i64>,
    invalid: &Invalid,
) -> Result<Vec<ScratchSpec>, PlanError> {
    let mut scratch = Vec::new();
    let mut scratch_names = BTreeSet::new();
    for (i, s) in raw.iter().enumerate() {
        let loc = if is_identifier(&s.name) {
            format!("scratch {:?}", s.name)
        } else {
            format!("scratch[{i}]")
        };
        if !is_identifier(&s.name) {
            return Err(invalid(
                format!("{loc}: name"),
                format!(
                    "{:?} is not an identifier (letters, digits, `_`, not starting with a digit)",
                    s.name
                ),
            ));
        }
        if !scratch_names.insert(s.name.clone()) {
            return Err(invalid(
                loc,
                format!("duplicate scratch buffer name `{}`", s.name),
            ));
        }
        if constants.contains_key(&s.name) {
            return Err(invalid(
                loc,
                format!(
                    "scratch buffer `{}` has the name of a constant; rename one of them",
                    s.name
                ),
            ));
        }
        let elem = ElemType::from_name(&s.ty).ok_or_else(|| {
            invalid(
                format!("{loc}: type"),
                format!(
                    "unknown element type {:?}; expected one of {}",
                    s.ty,
                    quote_list(ElemType::ALL.iter().map(|t| t.name()))
                ),
            )
        })?;
        let len = value_to_expr(&s.len).map_err(|m| invalid(format!("{loc}: len"), m))?;
        let zero_init = match s.init.as_deref() {
            None | Some("zero") => true,
            Some("none") => false,
            Some(other) => {
                return Err(invalid(
                    format!("{loc}: init"),
                    format!("unknown init {other:?}; expected \"zero\" or \"none\""),
                ))
            }
        };
        scratch.push(ScratchSpec {
            name: s.name.clone(),
            elem,
            len,
            zero_init,
        });
    }
    Ok(scratch)
}

/// `[[launch]]`: at least one, each a kernel name, grid, block, shared memory and arguments.
fn parse_launches(raw: &[RawLaunch], invalid: &Invalid) -> Result<Vec<LaunchSpec>, PlanError> {
    if raw.is_empty() {
        return Err(invalid(
            "launch".into(),
            "the plan has no launches; add at least one [[launch]] table with kernel, grid, block and args".into(),
        ));
    }
    let mut launches = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let loc = launch_location(i, &l.kernel);
        if !is_identifier(&l.kernel) {
            return Err(invalid(
                format!("{loc}: kernel"),
                "the kernel name must be a C identifier (the name of an extern \"C\" __global__ function)".into(),
            ));
        }
        let grid =
            value_to_dims(&l.grid).map_err(|(sub, m)| invalid(format!("{loc}: grid{sub}"), m))?;
        let block =
            value_to_dims(&l.block).map_err(|(sub, m)| invalid(format!("{loc}: block{sub}"), m))?;
        let shared_mem = match &l.shared_mem {
            None => Expr::constant(0),
            Some(v) => value_to_expr(v).map_err(|m| invalid(format!("{loc}: shared_mem"), m))?,
        };
        let mut args = Vec::new();
        for (j, a) in l.args.iter().enumerate() {
            let arg = parse_arg(a).map_err(|m| invalid(format!("{loc}: args[{j}]"), m))?;
            args.push(arg);
        }
        launches.push(LaunchSpec {
            kernel: l.kernel.clone(),
            grid,
            block,
            shared_mem,
            args,
        });
    }
    Ok(launches)
}

/// A TOML value that is an integer or an expression string.
fn value_to_expr(v: &toml::Value) -> Result<Expr, String> {
    match v {
        toml::Value::Integer(i) => Ok(Expr::constant(*i)),
        toml::Value::String(s) => Expr::parse(s).map_err(|e| e.to_string()),
        other => Err(format!(
            "expected an integer or an expression string, found {}",
            toml_type_name(other)
        )),
    }
}

/// A grid/block value: one integer/expression, or an array of 1 to 3 of them.
/// On error returns the sub-location (`""` or `.y`) and the message.
fn value_to_dims(v: &toml::Value) -> Result<Vec<Expr>, (String, String)> {
    match v {
        toml::Value::Array(items) => {
            if items.is_empty() || items.len() > 3 {
                return Err((
                    String::new(),
                    format!("expected 1 to 3 dimensions [x, y, z], found {}", items.len()),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(axis, item)| value_to_expr(item).map_err(|m| (format!(".{}", AXES[axis]), m)))
                .collect()
        }
        toml::Value::Integer(_) | toml::Value::String(_) => {
            value_to_expr(v).map(|e| vec![e]).map_err(|m| (String::new(), m))
        }
        other => Err((
            String::new(),
            format!(
                "expected an integer, an expression string, or an array of 1 to 3 of them, found {}",
                toml_type_name(other)
            ),
        )),
    }
}

/// `"input"` or `"i32: n"`.
fn parse_arg(a: &str) -> Result<ArgSpec, String> {
    let trimmed = a.trim();
    if let Some((ty, expr)) = trimmed.split_once(':') {
        let ty = ty.trim();
        let Some(st) = ScalarType::from_name(ty) else {
            let hint = if ElemType::from_name(ty).is_some() {
                " (scalar arguments must be integers of 32 or 64 bits)"
            } else {
                ""
            };
            return Err(format!(
                "unknown scalar type {ty:?} in {a:?}; expected one of {}{hint}",
                quote_list(ScalarType::ALL.iter().map(|t| t.name()))
            ));
        };
        let value = Expr::parse(expr.trim()).map_err(|e| format!("in {a:?}: {e}"))?;
        return Ok(ArgSpec::Scalar { ty: st, value });
    }
    if is_identifier(trimmed) {
        return Ok(ArgSpec::Buffer(trimmed.to_string()));
    }
    Err(format!(
        "{a:?} is neither a buffer name nor \"TYPE: EXPR\" (e.g. \"i32: n\", TYPE one of i32, u32, i64, u64)"
    ))
}
