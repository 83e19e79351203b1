//! # The timing model of every kernel task, on one page
//!
//! A kernel submission is device code (`solution.cu`) and a declarative launch plan
//! (`launch.toml`); the scorer owns all host code. Scoring one submission, in order
//! ([`routine::score`]):
//!
//! 1. **Load and check** without a device: both files bounded and UTF-8, the plan parsed and
//!    checked against the kernels' parsed signatures, and resolved at every size the run will
//!    use, so a size or limit error is invalid before any device work.
//! 2. **Build**: the kit's harness (`kernels/harness/kit.cu`) and the task's harness first (a
//!    failure there is the machine's, exit 3), then the submission (a failure is invalid, with
//!    the compiler's log). NVRTC compiles a CUBIN for the device's exact architecture.
//! 3. **Correctness matrix**: every correctness size x every input distribution of the task,
//!    each on buffers of exactly that size (an overrun leaves the allocation), each run
//!    checked as in 5. Small sizes also get the task's CPU oracle.
//! 4. **Warm-up by time**, at each timed size in turn (steps 4-6 run once per size): at least
//!    [`StoppingRule::warmup_s`] and two runs, each validated.
//! 5. **Samples**, until the stopping rule holds. Each sample:
//!    fresh inputs from a secret per-sample seed (trusted harness kernels); every output
//!    filled with a seed-derived poison word; L2 persisting lines reset and the L2 flushed
//!    (a buffer twice its size, read-modify-written); a *blocking kernel* holds the stream
//!    while the start event, the whole plan and the stop event are enqueued, then is released,
//!    so host launch latency is outside the window ([`crate::backend::cuda`]); SM clock and
//!    throttle reasons read right after the window; then validation: the inputs regenerated
//!    into pristine copies (written only now) and compared bit for bit, the expected outputs
//!    computed by the harness and compared (exact, or the task's tolerance; NaN never
//!    matches) by kit kernels whose verdict carries a per-comparison nonce and an element
//!    count the host checks, and the CPU oracle on samples 0 and 3.
//! 6. **Analysis** ([`analysis`]): each sample is raised to the task's *speed-of-light floor*
//!    (its declared bytes and operations over the device's DRAM bandwidth and peak
//!    throughput: a bound no correct plan can beat, so no size's time collapses toward zero);
//!    samples with thermal or hardware slowdowns are discarded (power-capped ones are kept and
//!    counted); stop once there are >= 10 kept samples, >= 0.5 s of sampling and the median's
//!    95 % CI half-width is <= 0.5 %, or at 15 s. The raw score is the task's function of the
//!    sizes' medians (by default ln of their geometric mean, so every size weighs the same;
//!    ln(ms) for one size); each size's share of speed of light is reported beside it, and
//!    the details' aggregates are geometric means over the sizes (the worst noise).
//! 7. **Saved samples** ([`samples`]): per size, every sample, raw and floored, with clocks
//!    and flags.
//!
//! Failures are typed: a fault or rejected launch in the submission's plan is an invalid entry
//! of [`InvalidKind`](rdbench_core::outcome::InvalidKind) `kernel_fault` or `launch`; a wrong
//! or changed buffer is `wrong_output` or `modified_input`, naming the first wrong index, the
//! expected and the actual value; anything else failing in trusted work is the machine's.
//!
//! The same routine runs on the CPU emulator ([`crate::backend::emu`]), which cannot time: steps
//! 1-3 and three untimed runs of 5 at emulator sizes, and the outcome is "correct (emulated,
//! not timed)", never a score.

pub mod analysis;
pub mod plan_runner;
pub mod routine;
pub mod samples;

pub use analysis::{stats, Stats, StopReason, StoppingRule, Work};
pub use plan_runner::PlanRunner;
pub use routine::{score, BenchRequest};
