//! The `rdbench` binary: parse flags, run the command, map the result to an exit code.

// `say!` and `warn!`: a line into a command's output (the terminal, or the service's reply).
#[macro_use]
extern crate rdbench_attempts;

mod aggregate;
mod cli;
mod commands;
mod exploits;
mod fanout;
mod job;
mod output;
mod registry;

use clap::Parser;

/// The hidden first argument under which this binary is the sandbox's shim (see
/// `commands::use_self_as_sandbox_shim`): bwrap runs it as pid 1 of a sandbox, where it must do
/// nothing of rdbench's own set-up, so it is recognised before anything else.
pub const SANDBOX_SHIM_ARG: &str = "__sandbox-shim";

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).as_deref() == Some(std::ffi::OsStr::new(SANDBOX_SHIM_ARG)) {
        rdbench_runner::sandbox::shim::main(args.collect());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RDBENCH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    // Everything rdbench makes is private to its user by construction (the home, its caches,
    // every attempt's samples and timelines, the workers' files), whatever the caller's umask;
    // a file meant for others gets its mode explicitly (the service's socket). `aggregate`
    // writes reports and `export` task families for people, and keeps the caller's umask.
    if !matches!(
        cli.command,
        cli::Command::Aggregate(_) | cli::Command::Export(_)
    ) {
        // SAFETY: umask only sets this process's file-creation mask.
        unsafe { libc::umask(0o077) };
    }
    let json = cli.json;
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "rdbench: {}",
                rdbench_core::template::printable(&e.to_string())
            );
            let code = e.exit_code() as i32;
            // A platform reading --json output gets the error there too, as JSON.
            if json {
                output::json(&serde_json::json!({ "error": e.to_string(), "exit_code": code }));
            }
            code
        }
    };
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
