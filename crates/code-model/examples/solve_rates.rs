//! Solve rates of the tiny code model on held-out problems, through the real
//! `rdbench_llm::generate` and the scorer's real evaluator (sandboxed rustc; needs bwrap):
//!
//! - greedy: temperature 0, one sample, the fenced block extracted;
//! - start-like: one sample at temperature 1, the raw text as the program (the starting
//!   scaffold);
//! - reference-like: rounds of `n` samples at temperature 1, the fenced block extracted (else
//!   the whole text), the first that passes the public tests returned, up to `rounds` rounds,
//!   else the first candidate (METR's recipe).
//!
//! `cargo run -p rdbench-code-model --example solve_rates -- [seeds=1,2,3] [problems=32]
//! [threads=2] [n=8] [rounds=4] [steps=..] [docs=..] [d_model=..] [n_layer=..] [p_reference=..]
//! [p_bare=..] [lr=..] [save=DIR]`. Each model seed `s` is scored on `held_out(1000 + s, problems)`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::time::Instant;

use rdbench_code_model::{train, CodeModel, Settings};
use rdbench_contests::evaluate::{EvalLimits, Evaluator, Toolchain};
use rdbench_contests::problems::{Problem, Tests};
use rdbench_llm::sampling::SamplingParams;
use rdbench_llm::{generate, ChatMessage, GenerateParams};
use rdbench_runner::sandbox::{use_shim, Shim};

const SHIM_FLAG: &str = "--sandbox-shim";

/// The program in a completion: the body of the first ```` ```rust ```` block, else of the first
/// ```` ``` ```` block with something in it, else the text before a stray fence, else the
/// whole text.
fn extract(text: &str) -> String {
    let body_after = |i: usize, fence: &str| {
        let body = &text[i + fence.len()..];
        body[..body.find("```").unwrap_or(body.len())].to_string()
    };
    if let Some(i) = text.find("```rust\n") {
        return body_after(i, "```rust\n");
    }
    if let Some(i) = text.find("```\n") {
        let body = body_after(i, "```\n");
        if !body.trim().is_empty() {
            return body;
        }
    }
    match text.find("```") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

fn prompt(p: &Problem) -> Vec<ChatMessage> {
    // The starting and reference scaffolds' prompt.
    vec![ChatMessage {
        role: "user".into(),
        content: format!("Solve this problem in Rust:\n\n{}", p.description),
    }]
}

fn params(n: usize, temperature: f64, seed: u64) -> GenerateParams {
    GenerateParams {
        sampling: SamplingParams {
            temperature,
            top_p: 1.0,
        },
        max_tokens: Some(400),
        n,
        seed,
        stop: vec![],
    }
}

#[derive(Default, Clone)]
struct Outcome {
    greedy: bool,
    start: bool,
    reference: bool,
    tokens: usize,
    gen_seconds: f64,
}

struct Checker<'a> {
    evaluator: &'a Evaluator,
    problem: &'a Problem,
    public_only: Problem,
    public: HashMap<String, bool>,
    full: HashMap<String, bool>,
}

impl Checker<'_> {
    fn passes_public(&mut self, src: &str) -> bool {
        if let Some(&v) = self.public.get(src) {
            return v;
        }
        let v = self
            .evaluator
            .evaluate(src, &self.public_only)
            .map(|e| e.succeeded)
            .unwrap_or(false);
        self.public.insert(src.to_string(), v);
        v
    }
    fn solves(&mut self, src: &str) -> bool {
        if let Some(&v) = self.full.get(src) {
            return v;
        }
        let e = self
            .evaluator
            .evaluate(src, self.problem)
            .expect("the evaluator runs");
        self.full.insert(src.to_string(), e.succeeded);
        e.succeeded
    }
}

fn run_problem(
    model: &mut CodeModel,
    evaluator: &Evaluator,
    p: &Problem,
    seed: u64,
    n: usize,
    rounds: usize,
) -> Outcome {
    let mut c = Checker {
        evaluator,
        problem: p,
        public_only: Problem {
            private_tests: Tests::default(),
            generated_tests: Tests::default(),
            ..p.clone()
        },
        public: HashMap::new(),
        full: HashMap::new(),
    };
    let msgs = prompt(p);
    let mut out = Outcome::default();
    let mut gen = |model: &mut CodeModel, params: &GenerateParams| {
        let t = Instant::now();
        let g = generate(model, &msgs, params).expect("generation");
        out.gen_seconds += t.elapsed().as_secs_f64();
        out.tokens += g.choices.iter().map(|c| c.completion_tokens).sum::<usize>();
        g.choices.into_iter().map(|c| c.text).collect::<Vec<_>>()
    };
    let greedy = gen(model, &params(1, 0.0, seed));
    let start = gen(model, &params(1, 1.0, seed ^ 0x5354));
    let mut first = None;
    let mut chosen = None;
    for round in 0..rounds {
        let texts = gen(model, &params(n, 1.0, seed ^ (0x5245_0000 + round as u64)));
        for t in texts {
            let src = extract(&t);
            first.get_or_insert_with(|| src.clone());
            if c.passes_public(&src) {
                chosen = Some(src);
                break;
            }
        }
        if chosen.is_some() {
            break;
        }
    }
    let chosen = chosen.or(first).unwrap_or_default();
    if std::env::var_os("SOLVE_RATES_VERBOSE").is_some() {
        println!(
            "--- {:?} {} greedy:\n{}\n--- start:\n{}",
            p.template, p.parameter, greedy[0], start[0]
        );
    }
    out.greedy = c.solves(&extract(&greedy[0]));
    out.start = c.solves(&start[0]);
    out.reference = c.solves(&chosen);
    out
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

/// The model's settings: the defaults, each overridden by a `key=value` argument of its name.
fn settings(get: &dyn Fn(&str) -> Option<String>) -> Settings {
    let mut s = Settings::default();
    macro_rules! set {
        ($field:ident) => {
            if let Some(v) = get(stringify!($field)) {
                s.$field = v.parse().unwrap();
            }
        };
        ($field:ident . $sub:ident) => {
            if let Some(v) = get(stringify!($sub)) {
                s.$field.$sub = v.parse().unwrap();
            }
        };
    }
    set!(steps);
    set!(documents);
    set!(d_model);
    set!(n_layer);
    set!(n_head);
    set!(d_ff);
    set!(ctx);
    set!(batch_size);
    set!(lr);
    set!(warmup_steps);
    set!(threads);
    set!(attempts);
    set!(mixture.p_reference);
    set!(mixture.p_bare);
    set!(mixture.p_outro);
    set!(mixture.p_system);
    s
}

/// Each problem's outcome with `model` (`(n, rounds)` for the reference-like mode), the
/// problems dealt round-robin over `threads` threads, each with its own copy of the model.
fn outcomes_in_parallel(
    model: &CodeModel,
    evaluator: &Evaluator,
    problems: &[Problem],
    seed: u64,
    threads: usize,
    (n, rounds): (usize, usize),
) -> Vec<(usize, Outcome)> {
    let chunks: Vec<Vec<(usize, &Problem)>> = (0..threads)
        .map(|k| {
            problems
                .iter()
                .enumerate()
                .skip(k)
                .step_by(threads)
                .collect()
        })
        .collect();
    std::thread::scope(|sc| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let mut m = model.clone();
                let ev = evaluator;
                sc.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(i, p)| {
                            (
                                i,
                                run_problem(&mut m, ev, p, seed * 7919 + i as u64, n, rounds),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Each mode's mean and spread over the seeds, the reference-start gap, the solves per
/// template and the decode speed.
fn print_summary(
    rates: &[[f64; 3]],
    per_template: &BTreeMap<String, (usize, usize, usize)>,
    tokens: usize,
    gen_seconds: f64,
) {
    for (j, name) in ["greedy", "start-like", "reference-like"]
        .iter()
        .enumerate()
    {
        let v: Vec<f64> = rates.iter().map(|r| r[j]).collect();
        let (m, sd) = mean_sd(&v);
        println!("{name}: mean {m:.3}, sd over seeds {sd:.3}, per seed {v:?}");
    }
    let gaps: Vec<f64> = rates.iter().map(|r| r[2] - r[1]).collect();
    let (m, sd) = mean_sd(&gaps);
    println!("gap (reference - start): mean {m:.3}, sd {sd:.3}");
    println!("per template (problems, start solved, reference solved):");
    for (t, (a, b, c)) in per_template {
        println!("  {t}: {a} {b} {c}");
    }
    println!(
        "decode: {tokens} tokens in {gen_seconds:.1} s of generation ({:.0} tokens/s per thread, prefill included)",
        tokens as f64 / gen_seconds
    );
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == SHIM_FLAG) {
        rdbench_runner::sandbox::shim::main(args[1..].to_vec());
    }
    use_shim(Shim {
        program: std::env::current_exe().expect("own path"),
        args: vec![SHIM_FLAG.into()],
    });
    let mut kv: BTreeMap<String, String> = BTreeMap::new();
    for a in std::env::args().skip(1) {
        let (k, v) = a.split_once('=').expect("arguments are key=value");
        kv.insert(k.to_string(), v.to_string());
    }
    let get = |k: &str| kv.get(k).cloned();
    let seeds: Vec<u64> = get("seeds")
        .unwrap_or("1,2,3".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let n_problems: usize = get("problems").map_or(32, |v| v.parse().unwrap());
    let threads: usize = get("threads").map_or(2, |v| v.parse().unwrap());
    let n: usize = get("n").map_or(8, |v| v.parse().unwrap());
    let rounds: usize = get("rounds").map_or(4, |v| v.parse().unwrap());
    let s = settings(&get);
    println!("settings: {}", serde_json::to_string(&s).unwrap());

    if let Some(why) = rdbench_runner::sandbox::capabilities().why_not {
        panic!("no sandbox here: {why}");
    }
    let cache = std::env::temp_dir().join(format!(
        "rdbench-contests-rust-{}",
        rdbench_core::fsutil::effective_uid()
    ));
    let evaluator = Evaluator::new(
        Toolchain::locate()
            .and_then(|t| t.for_sandbox(&cache))
            .expect("toolchain"),
        EvalLimits::default(),
    );

    let mut rates: Vec<[f64; 3]> = Vec::new();
    let mut per_template: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let (mut tokens, mut gen_seconds) = (0usize, 0f64);
    for &seed in &seeds {
        let t = Instant::now();
        let model = train(seed, &s).expect("training");
        let train_s = t.elapsed().as_secs_f64();
        if let Some(dir) = get("save") {
            model
                .save(&std::path::Path::new(&dir).join(format!("seed-{seed}")))
                .unwrap();
        }
        let problems = rdbench_contests::held_out(1000 + seed, n_problems).unwrap();
        let t = Instant::now();
        let outcomes =
            outcomes_in_parallel(&model, &evaluator, &problems, seed, threads, (n, rounds));
        let k = outcomes.len() as f64;
        let count =
            |f: fn(&Outcome) -> bool| outcomes.iter().filter(|(_, o)| f(o)).count() as f64 / k;
        let r = [
            count(|o| o.greedy),
            count(|o| o.start),
            count(|o| o.reference),
        ];
        for (i, o) in &outcomes {
            let e = per_template
                .entry(format!("{:?}", problems[*i].template))
                .or_default();
            e.0 += 1;
            e.1 += o.start as usize;
            e.2 += o.reference as usize;
            tokens += o.tokens;
            gen_seconds += o.gen_seconds;
        }
        println!(
            "seed {seed}: train {train_s:.0} s ({} attempts, final loss {:.3}), eval {:.0} s: greedy {:.3} start {:.3} reference {:.3}",
            model.meta().attempts,
            model.meta().final_loss,
            t.elapsed().as_secs_f64(),
            r[0],
            r[1],
            r[2]
        );
        rates.push(r);
    }
    print_summary(&rates, &per_template, tokens, gen_seconds);
}
