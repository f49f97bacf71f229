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
    // No coconut-lens.json: the default of 6 thoughts, so counts 0..=6 in every mode; token
    // mode only where the model writes steps.
    assert_eq!(r["thoughts"], 6);
    let modes = if r["writes_steps"].as_bool().unwrap() {
        4
    } else {
        3
    };
    assert_eq!(r["accuracy"].as_array().unwrap().len(), 7 * modes);
    for mode in ["coconut", "pause", "soft"] {
        assert!(
            r["accuracy"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["mode"] == mode),
            "{mode}"
        );
    }
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
        modes,
        "every other mode and 0 thoughts"
    );
    // The value analysis after 1..=5 thoughts, each curve sorted and within [0, 1].
    let value = r["value"].as_array().unwrap();
    assert_eq!(value.len(), 5);
    for v in value {
        let n = v["n"].as_u64().unwrap() as usize;
        let curves = v["cumulative"].as_array().unwrap();
        assert_eq!(curves.len(), 3);
        let c: Vec<Vec<f64>> = curves
            .iter()
            .map(|c| {
                c.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect();
        for curve in &c {
            assert_eq!(curve.len(), n);
            assert!(curve.windows(2).all(|w| w[0] <= w[1]), "{v}");
            assert!(curve.iter().all(|&x| (0.0..=1.0 + 1e-6).contains(&x)));
        }
        // Top-3 never below top-1 at the same percentile... of sorted curves, the medians.
        if n > 0 {
            assert!(c[2][n / 2] + 1e-9 >= c[0][n / 2]);
        }
        let source = v["source"].as_str().unwrap();
        let wrote = v["wrote_step"].as_u64().unwrap() as usize;
        assert_eq!(source == "language", 2 * wrote >= 4, "{v}");
    }
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
    let page = std::fs::read_to_string(out.join("report.md")).unwrap();
    for (figure, title) in [
        ("accuracy", "Accuracy against"),
        ("frontier", "decoded mass"),
        ("value", "Value of the frontier"),
        ("superposition", "Superposition"),
        ("norms", "Thought norms"),
        ("causal", "Interventions"),
    ] {
        let png = std::fs::read(out.join(format!("{figure}.png"))).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
        let svg = std::fs::read_to_string(out.join(format!("{figure}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains(title), "{figure}");
        assert!(page.contains(&format!("({figure}.png)")), "{figure}");
    }
    for heading in [
        "## Accuracy",
        "## The frontier",
        "### The value of frontier nodes",
        "## Superposition",
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

/// Ctrl-C in the middle of a report stops it with one line and leaves nothing behind: no
/// report folder, no hidden partial folder.
#[cfg(unix)]
#[test]
fn an_interrupted_report_leaves_nothing() {
    use std::time::{Duration, Instant};
    let dir = scratch("report-interrupted");
    let d = tiny_problems(&dir, 400, 3);
    let model = model_dir("gpt2-tiny").display().to_string();
    let out = dir.join("out");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_coconut-lens"))
        .args(["report", "--data", &d, "--model", &model])
        .args(["--out", &out.display().to_string()])
        .env("HF_HUB_OFFLINE", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Well inside the run (400 problems take tens of seconds), after the handler is set.
    std::thread::sleep(Duration::from_millis(1500));
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the run stops at the next problem"
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.trim_end().ends_with("interrupted"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "tiny.json")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
