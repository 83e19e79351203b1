//! The agent's tool, `rdbench-vliw`, as a user runs it.

use std::process::Command;

fn tool(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rdbench-vliw"))
        .args(args)
        .output()
        .expect("the tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_tool_checks_a_program_on_inputs_of_the_users_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (code, baseline) = tool(&["baseline", "--profile", "tiny"]);
    assert_eq!(code, 0);
    let program = dir.path().join("program.json");
    std::fs::write(&program, baseline).unwrap();
    let (code, text) = tool(&[
        "run",
        program.to_str().unwrap(),
        "--profile",
        "tiny",
        "--inputs",
        "3",
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("6966 cycles, correct") && text.contains("correct on 3 inputs"),
        "{text}"
    );
    // With the attempt's params.json instead of a profile name.
    let (code, params) = tool(&["params", "--profile", "tiny"]);
    assert_eq!(code, 0);
    let params_file = dir.path().join("params.json");
    std::fs::write(&params_file, params).unwrap();
    let (code, _) = tool(&[
        "run",
        program.to_str().unwrap(),
        "--params",
        params_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    // A wrong program: exit 1, the first wrong walker named.
    std::fs::write(&program, r#"{"format": "rdbench-vliw/1", "bundles": []}"#).unwrap();
    let (code, text) = tool(&["run", program.to_str().unwrap(), "--profile", "tiny"]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("WRONG") && text.contains("walker 0"),
        "{text}"
    );
    // A malformed one: exit 2, the file and the bundle named.
    std::fs::write(
        &program,
        r#"{"format": "rdbench-vliw/1", "bundles": [{"alu": [["sqrt", 0, 0, 0]]}]}"#,
    )
    .unwrap();
    let (code, text) = tool(&["run", program.to_str().unwrap(), "--profile", "tiny"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("program.json") && text.contains("bundle 0"),
        "{text}"
    );
}
