//! The no-subcommand launch path: argument checks and one-line errors before the terminal is
//! touched (these tests have no terminal, which is itself the last check).

mod common;

use common::scratch;

use std::path::PathBuf;
use std::process::{Command, Output};

const PROMPT: &str = "Every wumpus is a yumpus. Alex is a wumpus. Is Alex a yumpus?";

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("binary runs")
}

fn model() -> String {
    common::model_dir("gpt2-tiny").display().to_string()
}

/// A clean failure that never took the terminal over: one line on stderr, nothing on stdout
/// (no escape sequences).
fn assert_one_line_error(out: &Output, needle: &str) {
    common::assert_one_line_error(out, needle);
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
}

fn model_copy(name: &str, meta: Option<&str>) -> PathBuf {
    let dir = scratch(name);
    for e in std::fs::read_dir(common::model_dir("gpt2-tiny")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    if let Some(meta) = meta {
        std::fs::write(dir.join("coconut-lens.json"), meta).unwrap();
    }
    dir
}

#[test]
fn without_a_terminal_it_says_so_after_checking_everything_else() {
    let out = run(&["--model", &model(), "--prompt", PROMPT, "--thoughts", "2"]);
    assert_one_line_error(&out, "needs a terminal");
}

#[test]
fn the_prompt_comes_from_the_model_folder_or_the_arguments() {
    let demo = model_copy(
        "tui-demo",
        Some(r#"{"thoughts": 4, "demo_prompt": "Is Alex a yumpus?"}"#),
    );
    let out = run(&["--model", demo.to_str().unwrap()]);
    assert_one_line_error(&out, "needs a terminal");

    let bare = model_copy("tui-no-demo", Some(r#"{"thoughts": 4}"#));
    let out = run(&["--model", bare.to_str().unwrap()]);
    assert_one_line_error(&out, "no prompt");
    assert_one_line_error(&out, "--prompt");

    let file = scratch("tui-prompt").join("prompt.txt");
    std::fs::write(&file, PROMPT).unwrap();
    let out = run(&["--model", &model(), "--prompt-file", file.to_str().unwrap()]);
    assert_one_line_error(&out, "needs a terminal");
    let out = run(&[
        "--model",
        &model(),
        "--prompt-file",
        "/nonexistent/prompt.txt",
    ]);
    assert_one_line_error(&out, "cannot read prompt file");
    let out = run(&["--model", &model(), "--prompt", "   "]);
    assert_one_line_error(&out, "the prompt is empty");
}

#[test]
fn bad_options_are_one_line_errors() {
    let m = model();
    for (args, needle) in [
        (vec!["--mode", "dream"], "unknown mode"),
        (vec!["--thoughts", "many"], "--thoughts"),
        (vec!["--ablate-heads", "1-2"], "malformed head"),
        (vec!["--device", "tpu"], "unknown device"),
        (vec!["--dtype", "f8"], "unknown dtype"),
        (vec!["--top-k", "0"], "--top-k"),
    ] {
        let mut all = vec!["--model", m.as_str(), "--prompt", PROMPT];
        all.extend(args);
        assert_one_line_error(&run(&all), needle);
    }
    let out = run(&["--model", "/nonexistent/folder", "--prompt", PROMPT]);
    assert_one_line_error(&out, "/nonexistent/folder");
    // The explorer's options do not mix with a subcommand.
    let out = run(&["--model", &m, "analyze", "--prompt", PROMPT]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn no_arguments_opens_the_bundled_model() {
    // Everything is checked and the bundled model found; only the terminal is missing here.
    assert!(coconut_lens::cli::args::bundled_model_path().is_dir());
    let out = run(&[]);
    assert_one_line_error(&out, "needs a terminal");
}

#[test]
fn a_damaged_or_unknown_session_is_a_one_line_error_before_the_terminal() {
    let dir = scratch("tui-cli-session");
    let damaged = dir.join("damaged.json");
    std::fs::write(
        &damaged,
        b"{\"schema\": \"coconut-lens.session.v1\", \"inputs\": ",
    )
    .unwrap();
    let out = run(&["--session", damaged.to_str().unwrap()]);
    assert_one_line_error(&out, "damaged JSON");
    let future = dir.join("future.json");
    std::fs::write(&future, br#"{"schema": "coconut-lens.session.v9"}"#).unwrap();
    let out = run(&["--session", future.to_str().unwrap()]);
    assert_one_line_error(
        &out,
        "session schema coconut-lens.session.v9 is not supported",
    );
    let missing = dir.join("missing.json");
    let out = run(&["--session", missing.to_str().unwrap()]);
    assert_one_line_error(&out, "cannot read");
    let out = run(&["--session", future.to_str().unwrap(), "--prompt", "hi"]);
    assert_one_line_error(&out, "--session restores the model and the prompt");
    let out = run(&[
        "--session",
        future.to_str().unwrap(),
        "--ablate-heads",
        "0.1",
    ]);
    assert_one_line_error(&out, "--session restores the thoughts and ablations");
}

/// The explorer takes analyze's sampling options and checks them before the terminal.
#[test]
fn the_explorer_checks_its_sampling_options() {
    let base = ["--model", &model(), "--prompt", PROMPT];
    let out = run(&[&base[..], &["--temperature", "-0.5"]].concat());
    assert_one_line_error(&out, "--temperature must be a number >= 0");
    let out = run(&[&base[..], &["--temperature", "0.8", "--top-p", "2"]].concat());
    assert_one_line_error(&out, "--top-p must be in (0, 1]");
    let out = run(&[
        &base[..],
        &["--temperature", "0.8", "--top-p", "0.9", "--seed", "3"],
    ]
    .concat());
    assert_one_line_error(&out, "needs a terminal");
}
