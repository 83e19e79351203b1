//! An operator's inputs for a `full` profile: one TOML file, named by an environment variable
//! in the scorer's environment, that names the operator's files (each read through
//! [`crate::fsutil::read_recorded`], checked against the hash recorded there) and endpoints.
//! Every failure is an environment error naming the file: the agent's submission is never at
//! fault for the operator's setup.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// The file `$var` names; without it, an environment error saying which profile `needs` it
/// and where `doc` describes the file ("The full profile").
pub fn config_path(var: &str, needs: &str, doc: &str) -> Result<PathBuf> {
    std::env::var_os(var).map(PathBuf::from).ok_or_else(|| {
        Error::Environment(format!(
            "{needs}: set {var} to their TOML file ({doc}, \"The full profile\")"
        ))
    })
}

/// The TOML file at `path`, parsed (unknown fields are the type's to refuse).
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bad = |m: String| Error::Environment(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    toml::from_str(&text).map_err(|e| bad(e.to_string()))
}
