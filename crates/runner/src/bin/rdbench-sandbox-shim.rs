//! The sandbox's shim: bwrap execs it inside the sandbox (see `rdbench_runner::sandbox::shim`).

fn main() {
    rdbench_runner::sandbox::shim::main(std::env::args_os().skip(1).collect())
}
