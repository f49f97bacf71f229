//! Sessions (save, reopen, atomic writes, a loader that never panics) and plot export
//! (PNG decodes with the expected size and real content; SVG parses with its labels).

mod common;

use std::path::Path;
use std::process::Command;

use std::sync::atomic::AtomicBool;

use coconut_lens::analysis::document::analyze_prompt;
use coconut_lens::analysis::importance::{Importance, ImportanceMethod};
use coconut_lens::analysis::run::{RunParams, compare, run_and_analyze};
use coconut_lens::data::rng::Rng;
use coconut_lens::files::write_atomic_with;
use coconut_lens::model::Interventions;
use coconut_lens::plot::{Format, PlotKind, export, plot_size};
use coconut_lens::session::{Session, SessionInputs, ViewState, v1};
use coconut_lens::thought::{ThoughtCount, ThoughtMode};
use common::*;

const PROMPT: &str = "Every wumpus is a yumpus. Alex is a wumpus. Is Alex a yumpus?";

fn params(interventions: Interventions) -> RunParams {
    RunParams {
        prompt: PROMPT.into(),
        thoughts: ThoughtCount::Fixed { n: 3 },
        mode: ThoughtMode::Coconut,
        max_new_tokens: 4,
        top_k: 5,
        context_tokens: 0,
        interventions,
        thought_edits: Default::default(),
        sampling: Default::default(),
    }
}

/// A session of the GPT-2 fixture: 3 thoughts, head 1.0 ablated.
fn fixture_session() -> Session {
    let loaded = load_dir("gpt2-tiny");
    let (m, tok) = (&loaded.model, &loaded.tokenizer);
    let ablations = Interventions {
        ablated_heads: [(1, 0)].into(),
        skipped_layers: Default::default(),
    };
    let never = AtomicBool::new(false);
    let base = run_and_analyze(
        m,
        tok,
        &params(Interventions::default()),
        None,
        false,
        &never,
    )
    .unwrap();
    let mut cur = run_and_analyze(m, tok, &params(ablations), None, false, &never).unwrap();
    cur.analysis.comparison = compare(&base, &cur);
    let importance = Importance {
        method: ImportanceMethod::Ablation,
        step: 2,
        target: "x".into(),
        target_id: 7,
        heads: (0..m.info.layers)
            .map(|l| {
                (0..m.info.heads)
                    .map(|h| (l * 10 + h) as f32 * 1e-3)
                    .collect()
            })
            .collect(),
        layers: vec![0.5; m.info.layers],
        compute_ms: 1.0,
    };
    Session::new(
        SessionInputs {
            model: model_dir("gpt2-tiny").display().to_string(),
            base: None,
            revision: None,
            device: "cpu".into(),
            dtype: "f32".into(),
            importance_method: Some(ImportanceMethod::Ablation),
        },
        ViewState {
            tab: "heads".into(),
            step: 2,
            layer: 1,
            head: 0,
        },
        base.analysis,
        cur.analysis,
        Some(importance),
    )
}

/// A `coconut-lens.session.v1` file of the same run, as the previous version wrote it: the
/// two analysis documents of `analyze`.
fn v1_session_json() -> Vec<u8> {
    let loaded = load_dir("gpt2-tiny");
    let (m, tok) = (&loaded.model, &loaded.tokenizer);
    let p = params(Interventions::default());
    let spec = p.spec(false);
    let ablations = Interventions {
        ablated_heads: [(1, 0)].into(),
        skipped_layers: Default::default(),
    };
    let (_, baseline) = analyze_prompt(
        m,
        tok,
        PROMPT,
        &spec,
        &m.hooks(&p.interventions).unwrap(),
        5,
    )
    .unwrap();
    let (_, current) =
        analyze_prompt(m, tok, PROMPT, &spec, &m.hooks(&ablations).unwrap(), 5).unwrap();
    let old = v1::Session {
        schema: v1::SCHEMA.into(),
        saved_at: 0,
        inputs: v1::SessionInputs {
            model: model_dir("gpt2-tiny").display().to_string(),
            base: None,
            revision: None,
            device: "cpu".into(),
            dtype: "f32".into(),
            prompt: PROMPT.into(),
            mode: "coconut".into(),
            thoughts: "3".into(),
            entropy_stop: None,
            ablations,
            importance_method: None,
            settings: Some(v1::RunSettings {
                max_new_tokens: Some(4),
                top_k: Some(5),
                context_tokens: None,
                soft_top_k: None,
                soft_top_p: None,
            }),
        },
        view: ViewState::default(),
        baseline,
        current,
    };
    serde_json::to_vec(&old).unwrap()
}

#[test]
fn a_v1_session_opens_with_what_its_documents_hold() {
    let s = Session::from_json(&v1_session_json()).unwrap();
    assert_eq!(s.schema, coconut_lens::session::SCHEMA);
    let want = fixture_session();
    // The settings, the answers and the thoughts' lens are those of the same run today.
    assert_eq!(s.params().interventions, want.params().interventions);
    assert_eq!(s.params().thoughts, want.params().thoughts);
    assert_eq!(s.params().max_new_tokens, 4);
    assert_eq!(
        s.current.summary.answer_text,
        want.current.summary.answer_text
    );
    assert_eq!(s.current.blocks, want.current.blocks);
    let thought = |a: &coconut_lens::analysis::run::RunAnalysis| {
        a.steps
            .iter()
            .find(|st| st.kind == coconut_lens::thought::StepKind::Thought(1))
            .unwrap()
            .lens
            .iter()
            .map(|c| c.top.iter().map(|t| t.id).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    assert_eq!(thought(&s.current), thought(&want.current));
    // What v1 documents do not hold stays unknown: later answer steps, KL.
    assert!(
        s.current
            .steps
            .iter()
            .all(|st| st.kind != coconut_lens::thought::StepKind::Answer(1))
    );
    assert!(s.current.comparison.kl_first.is_nan());
    assert_eq!(
        s.current.comparison.divergence,
        want.current.comparison.divergence
    );
    // Upgraded, it saves as the current schema and reopens the same.
    let again = Session::from_json(&s.to_json().unwrap()).unwrap();
    assert_eq!(again.to_json().unwrap(), s.to_json().unwrap());
}

#[test]
fn a_saved_session_reopens_identically() {
    let dir = scratch("session-roundtrip");
    let s = fixture_session();
    let path = dir.join(s.default_file_name());
    assert!(
        path.file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with("-every-wumpus-is-a-yumpus-alex.json"),
        "{}",
        path.display()
    );
    s.save(&path, false).unwrap();
    // Equal as saved (ModelInfo's context and eos ids are not part of the analysis schema).
    let back = Session::load(&path).unwrap();
    assert_eq!(back.to_json().unwrap(), s.to_json().unwrap());
    assert_eq!((&back.inputs, &back.view), (&s.inputs, &s.view));
    // Never replaced without asking; replaced when asked.
    let err = s.save(&path, false).unwrap_err();
    assert!(format!("{err:#}").contains("already exists"));
    let mut changed = s.clone();
    changed.view.step = 0;
    changed.save(&path, true).unwrap();
    assert_eq!(Session::load(&path).unwrap().view.step, 0);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_write_that_fails_midway_leaves_the_old_file_intact() {
    let dir = scratch("session-interrupted");
    let path = dir.join("s.json");
    let old = fixture_session();
    old.save(&path, false).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut new = old.clone();
    new.current.params.prompt = "something else entirely".into();
    let bytes = new.to_json().unwrap();
    // The disk fills up after half the bytes.
    let mut failing = |f: &mut std::fs::File, b: &[u8]| -> std::io::Result<()> {
        use std::io::Write;
        f.write_all(&b[..b.len() / 2])?;
        Err(std::io::Error::other("no space left on device"))
    };
    let err = write_atomic_with(&path, &bytes, true, &mut failing).unwrap_err();
    assert!(format!("{err:#}").contains("no space left"), "{err:#}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "old file changed");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "temporary file left"
    );
    assert_eq!(
        Session::load(&path).unwrap().to_json().unwrap(),
        old.to_json().unwrap()
    );
}

/// Asserts that loading `bytes` returns (Ok or Err) without panicking.
fn loads_without_panic(bytes: &[u8]) -> bool {
    std::panic::catch_unwind(|| Session::from_json(bytes).is_ok()).expect("the loader panicked")
}

#[test]
fn damaged_files_never_panic_the_loader() {
    let good = fixture_session().to_json().unwrap();
    // Every truncation (in steps, to keep the test fast) and the full file.
    for len in (0..good.len()).step_by(97) {
        assert!(
            !loads_without_panic(&good[..len]),
            "a truncated file loaded"
        );
    }
    assert!(loads_without_panic(&good));
    // Random bytes, random printable JSON-ish text, and random byte flips of a good file.
    let mut rng = Rng::new(42);
    for case in 0..3000 {
        let len = rng.below(400);
        let bytes: Vec<u8> = match case % 3 {
            0 => (0..len).map(|_| rng.next_u64() as u8).collect(),
            1 => (0..len)
                .map(|_| b"{}[]\":,0123456789.eE+-truefalsnschema "[rng.below(38)])
                .collect(),
            _ => {
                let mut b = good.clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] = rng.next_u64() as u8;
                }
                b
            }
        };
        loads_without_panic(&bytes);
    }
    // Clear errors for other versions and other files.
    let text = String::from_utf8(good).unwrap();
    let v9 = text.replace("coconut-lens.session.v2", "coconut-lens.session.v9");
    let err = Session::from_json(v9.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("not supported"), "{err}");
    let err = Session::from_json(br#"{"schema": "coconut-lens.analysis.v1"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a session file"), "{err}");
    let err = Session::from_json(b"[1, 2").unwrap_err().to_string();
    assert!(err.contains("damaged JSON"), "{err}");
}

fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// The texts of an SVG file.
fn svg_texts(path: &Path) -> Vec<String> {
    let svg = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    doc.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text().map(str::to_string))
        .collect()
}

#[test]
fn a_long_model_path_is_shortened_so_the_caption_keeps_the_prompt() {
    let mut s = fixture_session();
    let long = format!(
        "/{}/gpt2-tiny",
        "deeply-nested-checkpoint-folder/".repeat(6)
    );
    s.inputs.model = long.trim_end_matches('/').replace("//", "/");
    let dir = scratch("session-plots-long-path");
    export(&s, &dir, &[Format::Svg]).unwrap();
    for kind in PlotKind::ALL.into_iter().filter(|k| k.applies(&s)) {
        let path = dir.join(format!("{}.svg", kind.file_stem()));
        let texts = svg_texts(&path);
        let caption = texts
            .iter()
            .find(|t| t.contains("prompt: Every wumpus"))
            .unwrap_or_else(|| panic!("{}: no caption with the prompt", path.display()));
        assert!(caption.contains("gpt2-tiny"), "{caption}");
        assert!(!caption.contains(&s.inputs.model), "{caption}");
    }
}

#[test]
fn plots_export_as_png_and_svg_with_labels() {
    let s = fixture_session();
    let dir = scratch("session-plots");
    let files = export(&s, &dir, &[Format::Png, Format::Svg]).unwrap();
    assert!(
        s.current.graph.is_none(),
        "the fixture prompt states no problem"
    );
    let kinds: Vec<PlotKind> = PlotKind::ALL
        .into_iter()
        .filter(|k| k.applies(&s))
        .collect();
    assert_eq!(files.len(), 2 * kinds.len());
    assert!(!dir.join("graph-frontier.png").exists());
    for kind in kinds {
        let png = dir.join(format!("{}.png", kind.file_stem()));
        let (w, h, pixels) = decode_png(&png);
        assert_eq!((w, h), plot_size(&s, kind), "{}", png.display());
        // Real content: many colours, and a good share of the canvas drawn on.
        let mut colours = std::collections::HashSet::new();
        let mut inked = 0usize;
        for px in pixels.chunks(3) {
            colours.insert((px[0], px[1], px[2]));
            if px != [255, 255, 255] {
                inked += 1;
            }
        }
        assert!(
            colours.len() > 50,
            "{}: {} colours",
            png.display(),
            colours.len()
        );
        let share = inked as f64 / (w * h) as f64;
        assert!(
            share > 0.03,
            "{}: {share:.3} of the pixels drawn",
            png.display()
        );

        let svg_path = dir.join(format!("{}.svg", kind.file_stem()));
        let texts = svg_texts(&svg_path);
        let has = |needle: &str| texts.iter().any(|t| t.contains(needle));
        let (title, axis) = match kind {
            PlotKind::Lens => ("Logit lens", "layer l"),
            PlotKind::Angular => ("Angular distance", "block size n"),
            PlotKind::Heads => ("Head importance", "head"),
            PlotKind::Trajectories => ("Thought trajectories", "probability"),
            PlotKind::Compare => ("Baseline vs ablated", "step"),
            PlotKind::GraphFrontier => unreachable!("no graph"),
        };
        assert!(has(title), "{}: no title {title:?}", svg_path.display());
        assert!(has(axis), "{}: no axis label {axis:?}", svg_path.display());
        assert!(
            has("prompt: Every wumpus"),
            "{}: no caption",
            svg_path.display()
        );
    }
    // A token the lens decodes appears in the lens heatmap's cells.
    let top = &s.current.steps[0].lens[0].top[0].text;
    let svg = std::fs::read_to_string(dir.join("logit-lens.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let head: String = top.chars().take(4).collect();
    assert!(
        doc.descendants()
            .any(|n| n.text().is_some_and(|t| t.trim_start().starts_with(&head))),
        "{top:?} not in the lens plot"
    );
}

#[test]
fn a_run_with_a_problem_graph_exports_its_frontier() {
    let loaded = load_dir("gpt2-tiny");
    let (m, tok) = (&loaded.model, &loaded.tokenizer);
    let p = RunParams {
        prompt: "Alex is a wumpus. Every wumpus is a yumpus. Every yumpus is a gorpus. \
                 Every bompus is a rempus. Is Alex a gorpus or bompus?"
            .into(),
        ..params(Interventions::default())
    };
    let never = AtomicBool::new(false);
    let run = run_and_analyze(m, tok, &p, None, false, &never).unwrap();
    let mut s = fixture_session();
    s.baseline = run.analysis.clone();
    s.current = run.analysis;
    s.importance = None;
    let g = s.current.graph.clone().expect("a ProsQA problem");
    let dir = scratch("session-plots-graph");
    let files = export(&s, &dir, &[Format::Png, Format::Svg]).unwrap();
    let png = dir.join("graph-frontier.png");
    let svg = dir.join("graph-frontier.svg");
    assert!(files.contains(&png) && files.contains(&svg), "{files:?}");
    let (w, h, pixels) = decode_png(&png);
    assert_eq!((w, h), plot_size(&s, PlotKind::GraphFrontier));
    let colours: std::collections::HashSet<&[u8]> = pixels.chunks(3).collect();
    assert!(colours.len() > 50, "{} colours", colours.len());
    let texts = svg_texts(&svg);
    let has = |needle: &str| texts.iter().any(|t| t.contains(needle));
    assert!(has("Graph frontier"));
    assert!(has("prompt: Alex is a wumpus"), "caption");
    assert!(has("Alex (root)"));
    for &c in &g.candidates {
        assert!(
            has(&format!("◆ {}", g.nodes[c].name)),
            "candidate {}",
            g.nodes[c].name
        );
    }
    assert!(has("yumpus") && has("rempus") && has("unreachable"));
    // The colour bar is logarithmic, 0.001 to 1.
    assert!(has("log scale"));
    for tick in ["0.001", "0.01", "0.1"] {
        assert!(texts.iter().any(|x| x.trim() == tick), "tick {tick}");
    }
    for t in ["T1", "T2", "T3"] {
        assert!(texts.iter().any(|x| x.trim() == t), "panel {t}");
    }
}

#[test]
fn analyze_saves_a_session_that_export_plots() {
    let dir = scratch("session-cli");
    let session = dir.join("run.json");
    let bin = env!("CARGO_BIN_EXE_coconut-lens");
    let model = model_dir("gpt2-tiny").display().to_string();
    let s = session.display().to_string();
    let out = Command::new(bin)
        .args([
            "analyze",
            "--model",
            &model,
            "--prompt",
            PROMPT,
            "--thoughts",
            "2",
        ])
        .args(["--ablate-layers", "1", "--save-session", &s])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = Session::load(&session).unwrap();
    assert_eq!(saved.params().interventions.skipped_layers, [1].into());
    assert_ne!(
        saved.baseline, saved.current,
        "the baseline has no ablation"
    );
    // Not overwritten by a second run.
    let again = Command::new(bin)
        .args([
            "analyze",
            "--model",
            &model,
            "--prompt",
            PROMPT,
            "--save-session",
            &s,
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let out = Command::new(bin)
        .args(["export", &s, "--format", "svg"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plots = dir.join("run");
    assert!(plots.join("logit-lens.svg").is_file());
    assert!(!plots.join("logit-lens.png").exists());
    assert!(
        !plots.join("head-importance.svg").exists(),
        "no importance was computed"
    );

    let bad = dir.join("bad.json");
    std::fs::write(&bad, b"{\"schema\": \"coconut-lens.session.v9\"}").unwrap();
    let out = Command::new(bin)
        .args(["export", &bad.display().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not supported") && !err.contains("panicked"),
        "{err}"
    );
    let out = Command::new(bin)
        .args(["export", &s, "--format", "gif"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown plot format"));
}
