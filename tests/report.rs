//! `coconut-lens report` on a fixture: every section in the JSON, the page written, and bad
//! input refused in one line with nothing left behind.

mod common;

use std::process::Output;

use common::{assert_one_line_error, coconut_lens, model_dir, scratch, tiny_problems};

fn report(args: &[&str]) -> Output {
    coconut_lens(&["report"], args)
}

#[test]
fn a_fixture_report_has_every_section() {
    let dir = scratch("report-fixture");
    let d = tiny_problems(&dir, 4, 2);
    let model = model_dir("gpt2-tiny").display().to_string();
    let out = dir.join("out");
    let o = out.display().to_string();
    let run = report(&[
        "--data",
        &d,
        "--model",
        &model,
        "--out",
        &o,
        "--max-thoughts",
        "2",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["schema"], "coconut-lens.report.v1");
    assert_eq!(r["n"], 4);
    // No coconut-lens.json: the default of 6 thoughts, so counts 0..=6 in both modes.
    assert_eq!(r["thoughts"], 6);
    assert_eq!(r["accuracy"].as_array().unwrap().len(), 14);
    for row in r["accuracy"].as_array().unwrap() {
        let (lo, hi) = (
            row["ci95"][0].as_f64().unwrap(),
            row["ci95"][1].as_f64().unwrap(),
        );
        let acc = row["accuracy"].as_f64().unwrap();
        assert!(lo <= acc && acc <= hi, "{row}");
    }
    assert_eq!(
        r["paired"].as_array().unwrap().len(),
        2,
        "pause and 0 thoughts"
    );
    assert_eq!(r["frontier"].as_array().unwrap().len(), 6);
    let sup = r["superposition"].as_array().unwrap();
    assert_eq!(sup.len(), 6);
    assert_eq!(sup[2]["hops"], 2);
    assert_eq!(r["norms"]["thoughts"].as_array().unwrap().len(), 6);
    assert!(r["norms"]["token_embeddings"]["mean"].as_f64().unwrap() > 0.0);
    assert_eq!(r["causal"]["rows"].as_array().unwrap().len(), 18);
    let wrong: u64 = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    let own = r["accuracy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["mode"] == "coconut" && a["thoughts"] == 6)
        .unwrap();
    assert_eq!(wrong, 4 - own["correct"].as_u64().unwrap());
    let png = std::fs::read(out.join("accuracy.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    let svg = std::fs::read_to_string(out.join("accuracy.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("Accuracy against"));
    let page = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(page.contains("(accuracy.png)"));
    for heading in [
        "## Accuracy",
        "## The frontier",
        "## Norms",
        "## Causal",
        "## Errors",
    ] {
        assert!(page.contains(heading), "{heading} missing");
    }

    // The folder is not overwritten; a model without Coconut tokens and a file of another
    // schema are refused; no partial folder stays behind.
    assert_one_line_error(
        &report(&["--data", &d, "--model", &model, "--out", &o]),
        "already exists",
    );
    let other = dir.join("other");
    let oo = other.display().to_string();
    let base = model_dir("gpt2-tiny-base").display().to_string();
    assert_one_line_error(
        &report(&["--data", &d, "--model", &base, "--out", &oo]),
        "Coconut",
    );
    let pronto = dir.join("prontoqa.json");
    std::fs::write(
        &pronto,
        r#"[{"question": "Every wumpus is hot. Max is a wumpus. True or false: Max is hot.", "steps": [], "answer": "True"}]"#,
    )
    .unwrap();
    let p = pronto.display().to_string();
    let failed = report(&["--data", &p, "--model", &model, "--out", &oo]);
    assert!(!failed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&failed.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
    assert!(!other.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
}
