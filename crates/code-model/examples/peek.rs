//! Prints a saved model's completions for held-out problems next to the reference solution
//! (tuning aid): `cargo run -p rdbench-code-model --example peek -- MODEL_DIR [PROBLEMS] [N]`.

use rdbench_code_model::CodeModel;
use rdbench_contests::problems::solutions::reference;
use rdbench_llm::sampling::SamplingParams;
use rdbench_llm::{generate, ChatMessage, GenerateParams};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let mut model = CodeModel::load(std::path::Path::new(&a[0])).expect("a model folder");
    let problems: usize = a.get(1).map_or(4, |v| v.parse().unwrap());
    let n: usize = a.get(2).map_or(4, |v| v.parse().unwrap());
    for p in rdbench_contests::held_out(1001, problems).unwrap() {
        println!(
            "=== {:?} {} phrasing {}",
            p.template, p.parameter, p.phrasing
        );
        println!("--- reference\n{}", reference(p.template, p.parameter));
        let messages = vec![ChatMessage {
            role: "user".into(),
            content: format!("Solve this problem in Rust:\n\n{}", p.description),
        }];
        let params = GenerateParams {
            sampling: SamplingParams {
                temperature: 1.0,
                top_p: 1.0,
            },
            max_tokens: Some(400),
            n,
            seed: 7,
            stop: vec![],
        };
        let g = generate(&mut model, &messages, &params).expect("generation");
        for (i, c) in g.choices.iter().enumerate() {
            println!("--- sample {i}\n{}", c.text);
        }
    }
}
