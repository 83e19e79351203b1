//! `rdbench-client`: what an agent runs in a protected deployment. It holds no task code, no
//! reference solution and no secret; every command goes to `rdbench serve` over its socket.

use std::path::PathBuf;

use clap::Parser;
use rdbench_client::AttemptCommand;

#[derive(Debug, Parser)]
#[command(
    name = "rdbench-client",
    version,
    about = "Start, score and finish rdbench attempts through the protected scoring service",
    after_help = "Exit codes: 0 scored (or done), 1 submission invalid, 2 usage or input error, 3 environment error (service unreachable, no GPU, no calibration)."
)]
struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// The scoring service's socket.
    #[arg(
        long,
        global = true,
        env = "RDBENCH_SOCKET",
        default_value = "/run/rdbench/score.sock"
    )]
    socket: PathBuf,
    #[command(subcommand)]
    command: AttemptCommand,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let code = rdbench_client::run(&cli.socket, cli.json, &cli.command);
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
