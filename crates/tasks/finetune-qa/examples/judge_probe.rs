//! Is a model usable as `full`'s judge? Asks the endpoint at BASE_URL (any OpenAI-compatible
//! server: `rdbench serve-llm`, vLLM, ...) full's exact judge question on pairs where one answer
//! is right and the other plainly wrong, each pair in both orders, through the same proxy the
//! scorer uses, and prints how often the judge picks the right answer, how often it answers
//! `m` (the first output) whatever the pair, and how many replies named neither.
//!
//! ```text
//! cargo run --release -p rdbench-task-finetune-qa --example judge_probe -- BASE_URL MODEL
//! ```

use rdbench_task_finetune_qa::full::judge::{LlmJudge, Question};
use rdbench_task_finetune_qa::full::operator::OperatorConfig;

/// (instruction, right answer, wrong answer)
const PAIRS: [(&str, &str, &str); 16] = [
    (
        "What is the capital of France?",
        "The capital of France is Paris.",
        "The capital of France is Berlin.",
    ),
    ("Add 2 and 3.", "2 + 3 = 5.", "2 + 3 = 7."),
    ("Name a fruit.", "An apple.", "A hammer."),
    (
        "What color is the sky on a clear day?",
        "Blue.",
        "Green with purple stripes.",
    ),
    ("Translate 'hello' into French.", "Bonjour.", "Danke."),
    (
        "How many legs does a spider have?",
        "A spider has eight legs.",
        "A spider has three legs.",
    ),
    ("Give the opposite of 'hot'.", "Cold.", "Hot."),
    ("Write a word that rhymes with 'cat'.", "Hat.", "Dog."),
    ("What is 10 divided by 2?", "5.", "20."),
    (
        "Name the largest planet in the solar system.",
        "Jupiter.",
        "The Moon.",
    ),
    ("Which animal says 'moo'?", "A cow.", "A snake."),
    ("Spell the word 'cat' backwards.", "tac", "cta"),
    ("What do bees make?", "Honey.", "Steel."),
    ("Is water wet or dry?", "Water is wet.", "I like trains."),
    (
        "List three primary colors.",
        "Red, blue and yellow.",
        "Table, chair, lamp.",
    ),
    (
        "Who wrote 'Romeo and Juliet'?",
        "William Shakespeare.",
        "Isaac Newton.",
    ),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (base_url, model) = match (args.next(), args.next()) {
        (Some(u), Some(m)) => (u, m),
        _ => return Err("usage: judge_probe BASE_URL MODEL".into()),
    };
    // Only the judge's fields are read by LlmJudge::start; the files are never opened.
    let none = "{ path = \"/nonexistent\", sha256 = \"00\" }";
    let config = format!(
        "model_config = {none}\ntokenizer = {none}\nbase_model = {none}\nsft_model = {none}\n\
         train_prompts = {none}\nheldout_prompts = {none}\nbase_url = {base_url:?}\n\
         model = {model:?}\nattempt_budget_tokens = 1\nconcurrency = 1\n"
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("probe.toml");
    std::fs::write(&path, config)?;
    let judge = LlmJudge::start(&OperatorConfig::load(&path)?, None)?;
    let questions: Vec<Question> = PAIRS
        .iter()
        .flat_map(|(prompt, right, wrong)| {
            [
                Question {
                    prompt,
                    first: right,
                    second: wrong,
                },
                Question {
                    prompt,
                    first: wrong,
                    second: right,
                },
            ]
        })
        .collect();
    let started = std::time::Instant::now();
    let verdicts = judge
        .verdicts(&questions)
        .map_err(|f| format!("the endpoint refused: {f:?}"))?;
    let right = verdicts
        .iter()
        .enumerate()
        .filter(|(i, v)| **v == Some(i % 2 == 0))
        .count();
    let firsts = verdicts.iter().filter(|v| **v == Some(true)).count();
    let unparsed = verdicts.iter().filter(|v| v.is_none()).count();
    let consistent = verdicts
        .chunks_exact(2)
        .filter(|p| p[0].is_some() && p[1].is_some() && p[0] != p[1])
        .count();
    println!(
        "{}",
        serde_json::json!({
            "model": model, "questions": verdicts.len(), "right": right,
            "answered_first": firsts, "unparsed": unparsed,
            "pairs_consistent_over_both_orders": consistent, "pairs": PAIRS.len(),
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
