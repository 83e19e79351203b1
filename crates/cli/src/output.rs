//! Printing: one JSON document with `--json`, aligned text otherwise; on the terminal, or
//! captured for the scoring service to send to its client. [`Out`] and the table helpers are
//! the attempt library's, shared with every command here, as are its `say!` and `warn!`
//! (imported in `main.rs`).

use serde::Serialize;

pub use rdbench_attempts::output::{num, one_line, Out, Table};

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("rdbench: cannot serialize output: {e}"),
    }
}
