//! The sandbox's shim for this crate's tests (a binary of this package, so that cargo builds it
//! for them); rdbench's own binary finds `rdbench-sandbox-shim` beside itself.

fn main() {
    rdbench_runner::sandbox::shim::main(std::env::args_os().skip(1).collect())
}
