//! The `data` command end to end: generation, statistics, tokenizer, one-line errors.

mod common;

use common::{assert_one_line_error, scratch};

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .args(args)
        .output()
        .expect("binary runs")
}

#[test]
fn cli_generates_and_reports_statistics() {
    let dir = scratch("data-cli");
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    for path in [&a, &b] {
        let out = run(&[
            "data",
            "prosqa",
            "--n",
            "40",
            "--seed",
            "3",
            "--out",
            path.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
    let out = run(&["data", "stats", a.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["problems"], 40);
    assert_eq!(s["valid"], 40);
    assert_eq!(s["target_reachable_neg_unreachable"], 1.0);
    // No temporary file left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let tok = dir.join("tokenizer.json");
    let out = run(&["data", "tokenizer", "--out", tok.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokenizers::Tokenizer::from_file(&tok).unwrap();
}

#[test]
fn cli_bad_input_gives_one_line_errors() {
    let dir = scratch("data-cli-errors");
    let unwritable = dir.join("no/such/folder/out.json");
    let out = run(&[
        "data",
        "prosqa",
        "--n",
        "3",
        "--out",
        unwritable.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "cannot write");
    let out = run(&["data", "tokenizer", "--out", unwritable.to_str().unwrap()]);
    assert_one_line_error(&out, "cannot write");
    let out = run(&["data", "prosqa", "--n", "0", "--out", "x.json"]);
    assert_one_line_error(&out, "--n");

    let missing = dir.join("missing.json");
    assert_one_line_error(
        &run(&["data", "stats", missing.to_str().unwrap()]),
        "cannot read",
    );

    let cases = [
        ("garbage.json", "not json at all", "not a ProsQA-schema"),
        (
            "schema.json",
            r#"[{"question": "q", "answer": "a"}]"#,
            "missing field",
        ),
        ("object.json", r#"{"question": "q"}"#, "not a ProsQA-schema"),
        (
            "range.json",
            r#"[{"question": "Is A a b or c?", "answer": "A is a b.", "steps": [],
                 "idx_to_symbol": ["A", "b", "c"], "edges": [[0, 7]],
                 "root": 0, "target": 1, "neg_target": 2}]"#,
            "problem 0",
        ),
    ];
    for (name, text, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        assert_one_line_error(&run(&["data", "stats", path.to_str().unwrap()]), needle);
    }
}
