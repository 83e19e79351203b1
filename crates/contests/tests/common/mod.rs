//! What the evaluator's tests share: the sandbox's shim, the toolchain staged once per
//! machine and user, and an evaluator with the default limits.

use std::sync::OnceLock;

use rdbench_contests::evaluate::{EvalLimits, Evaluator, Toolchain};
use rdbench_runner::sandbox::{use_shim, Shim};

/// The evaluator, or `None` (the test prints why and passes) where no sandbox can run.
pub fn evaluator() -> Option<Evaluator> {
    use_shim(Shim {
        program: env!("CARGO_BIN_EXE_contests-test-shim").into(),
        args: Vec::new(),
    });
    if let Some(why) = rdbench_runner::sandbox::capabilities().why_not {
        println!("skipped: no sandbox here: {why}");
        return None;
    }
    static TOOLCHAIN: OnceLock<Toolchain> = OnceLock::new();
    let toolchain = TOOLCHAIN.get_or_init(|| {
        let cache = std::env::temp_dir().join(format!(
            "rdbench-contests-rust-{}",
            rdbench_core::fsutil::effective_uid()
        ));
        Toolchain::locate()
            .and_then(|t| t.for_sandbox(&cache))
            .unwrap_or_else(|e| panic!("the toolchain: {e}"))
    });
    Some(Evaluator::new(toolchain.clone(), EvalLimits::default()))
}
