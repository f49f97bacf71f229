//! View tests: snapshots of every tab (ratatui's TestBackend + insta), and the colours of
//! heatmap cells read back from the buffer.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyModifiers};
use ratatui::style::{Color, Modifier};

use super::*;
use crate::analysis::importance::ImportanceMethod;
use crate::tui::app::{ImportanceState, Status};
use crate::tui::keymap::BINDINGS;
use crate::tui::widgets::{ABLATED, SCALE, heat};

const S: SampleShape = SampleShape::SMALL;

/// An app on a tab, with a sweep's result where the tab shows one.
fn on_tab(c: char) -> App {
    let mut app = ready(S);
    app.importance = ImportanceState::Cancelled;
    press(&mut app, key(c));
    app.importance = ImportanceState::Idle;
    app.importance_result = Some((
        app.generation,
        sample::importance(S, ImportanceMethod::Ablation),
    ));
    app
}

/// The same, with head L1.H2 ablated and layer L3 skipped, and their run shown.
fn ablated_on_tab(c: char) -> App {
    let mut app = ready(S);
    app.importance = ImportanceState::Cancelled;
    press(&mut app, key('3'));
    app.head = (1, 2);
    press(&mut app, key(' '));
    app.head = (3, 0);
    let g = match press(&mut app, key('L')) {
        Some(Job::Run { generation, .. }) => generation,
        other => panic!("{other:?}"),
    };
    app.importance = ImportanceState::Cancelled;
    deliver(&mut app, g, S);
    app.head = (1, 2);
    press(&mut app, key(c));
    app.importance = ImportanceState::Idle;
    app.importance_result = Some((
        app.generation,
        sample::importance(S, ImportanceMethod::Ablation),
    ));
    app
}

#[test]
fn snapshot_lens() {
    insta::assert_snapshot!(screen(&on_tab('1'), 120, 40).backend());
}

#[test]
fn snapshot_layers() {
    insta::assert_snapshot!(screen(&on_tab('2'), 120, 40).backend());
}

#[test]
fn snapshot_heads() {
    insta::assert_snapshot!(screen(&ablated_on_tab('3'), 120, 40).backend());
}

#[test]
fn snapshot_attention() {
    insta::assert_snapshot!(screen(&on_tab('4'), 120, 40).backend());
}

#[test]
fn snapshot_compare() {
    insta::assert_snapshot!(screen(&ablated_on_tab('5'), 120, 40).backend());
}

#[test]
fn snapshot_compare_with_a_patching_sweep() {
    use crate::analysis::effect::PatchSweep;
    let mut app = ablated_on_tab('5');
    app.params.thought_edits.patch_prompt = Some("Is Alex a rompus or gerpus?".into());
    let restored = vec![
        vec![0.0, 0.1, 0.2, 0.4, 0.9],
        vec![0.0, 0.05, 0.6, 0.8, 1.0],
        vec![f32::NAN, 0.0, -0.1, 0.3, 0.5],
    ];
    app.patch_result = Some((
        app.generation,
        std::sync::Arc::new(PatchSweep {
            source_prompt: "Is Alex a rompus or gerpus?".into(),
            candidates: ["gerpus".into(), "rompus".into()],
            scored_step: 1,
            clean: 3.0,
            corrupted: -2.5,
            logit_diff: restored.clone(),
            restored,
        }),
    ));
    insta::assert_snapshot!(screen(&app, 120, 40).backend());
}

#[test]
fn snapshot_help() {
    let mut app = on_tab('1');
    press(&mut app, key('?'));
    insta::assert_snapshot!(screen(&app, 120, 40).backend());
}

#[test]
fn snapshot_prompt_line_and_sweep_progress() {
    let mut app = on_tab('3');
    app.importance = ImportanceState::Running {
        generation: app.generation,
        request: 1,
        method: ImportanceMethod::Ablation,
        done: 7,
        total: 20,
    };
    app.importance_result = None;
    press(&mut app, key('p'));
    insta::assert_snapshot!(screen(&app, 120, 40).backend());
}

#[test]
fn snapshot_small_terminal_and_loading() {
    let app = on_tab('1');
    insta::assert_snapshot!("too_small", screen(&app, 70, 20).backend());
    let mut loading = App::new("assets/coconut-prosqa".into(), sample::params(S), (80, 24));
    loading.ticks = 12;
    insta::assert_snapshot!("loading", screen(&loading, 80, 24).backend());
}

#[test]
fn the_minimum_size_draws_every_tab() {
    for c in ['1', '2', '3', '4', '5', '6'] {
        let t = screen(&ablated_on_tab(c), 80, 24);
        assert!(!row_text(&t, 0).contains("too small"));
        assert!(row_text(&t, 23).contains("quit") || row_text(&t, 23).contains("help"));
    }
    // A big model in a big terminal, and in a small one.
    let big = SampleShape::GPT2_124M;
    let mut app = App::new("m".into(), sample::params(big), (200, 60));
    let job = update(
        &mut app,
        Action::Worker(WorkerMsg::Loaded(sample::model_summary(big))),
    );
    let Some(Job::Run { generation, .. }) = job else {
        panic!()
    };
    deliver(&mut app, generation, big);
    for c in ['1', '2', '3', '4', '5', '6'] {
        app.importance = ImportanceState::Cancelled;
        press(&mut app, key(c));
        screen(&app, 200, 60);
        screen(&app, 80, 24);
    }
}

#[test]
fn lens_cells_are_coloured_by_probability() {
    let app = on_tab('1');
    let t = screen(&app, 120, 40);
    let buf = t.backend().buffer();
    let run = app.run.as_ref().unwrap();
    let (cx, _) = *find_all(&t, "T2 ").iter().find(|&&(_, y)| y > 6).unwrap();
    let t2 = run.steps.iter().position(|s| s.label == "T2").unwrap();
    for layer in 0..=S.layers {
        let label = crate::tui::view::lens_row_label(layer, S.layers);
        let (_, y) = find(&t, &format!("│{label} ")).unwrap();
        let top = run.steps[t2].lens[layer].top1().unwrap();
        let cell = &buf[(cx, y)];
        assert_eq!(cell.bg, heat(top.prob), "layer {layer}");
        assert_eq!(cell.symbol(), &top.text[..1]);
    }
    // The selected cell (first thought, output row) is reversed.
    let (x1, _) = *find_all(&t, "T1 ").iter().find(|&&(_, y)| y > 6).unwrap();
    let (_, y) = find(
        &t,
        &format!("│{} ", crate::tui::view::lens_row_label(S.layers, S.layers)),
    )
    .unwrap();
    assert!(buf[(x1, y)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn ablated_heads_and_skipped_layers_are_marked_in_red() {
    let app = ablated_on_tab('3');
    let t = screen(&app, 120, 40);
    let buf = t.backend().buffer();
    let (hx, _) = find(&t, "h2").unwrap();
    let (_, y1) = find(&t, "│L1 ").unwrap();
    let (_, y3) = find(&t, "│L3 ⊘").unwrap();
    assert_eq!(buf[(hx, y1)].symbol(), "×");
    assert_eq!(buf[(hx, y1)].bg, ABLATED);
    assert!(
        buf[(hx, y1)].modifier.contains(Modifier::REVERSED),
        "under the cursor"
    );
    let (h0, _) = find(&t, "h0").unwrap();
    for x in [h0, hx] {
        assert_eq!(buf[(x, y3)].bg, ABLATED, "skipped layer");
    }
    // Other heads carry their importance colour.
    let imp = app.current_importance().unwrap();
    let max = imp.heads.iter().flatten().copied().fold(0f32, f32::max);
    let (_, y0) = find(&t, "│L0 ").unwrap();
    assert_eq!(buf[(h0, y0)].bg, heat(imp.heads[0][0] / max));
}

#[test]
fn attention_rows_peak_at_the_top_of_the_scale() {
    let app = on_tab('4');
    let t = screen(&app, 120, 40);
    let buf = t.backend().buffer();
    let (_, y) = find(&t, "▶T1").unwrap();
    let top = Color::Indexed(crate::tui::widgets::SCALE[9]);
    let n = (0..buf.area.width)
        .filter(|&x| buf[(x, y)].bg == top)
        .count();
    assert!(n >= 1, "the row's largest bin is at the top of the scale");
}

#[test]
fn errors_are_red_in_the_status_bar() {
    let mut app = on_tab('1');
    app.status = Some(Status {
        text: "cannot tokenize".into(),
        error: true,
    });
    let t = screen(&app, 120, 40);
    let (x, y) = find(&t, "error: cannot tokenize").unwrap();
    assert_eq!(y, 38);
    assert_eq!(t.backend().buffer()[(x, y)].fg, Color::Red);
    assert!(row_text(&t, 7).contains("T1"), "the last result stays");
}

#[test]
fn the_help_lists_every_binding_and_hints_come_from_the_table() {
    let mut app = on_tab('3');
    let t = screen(&app, 120, 40);
    let hints = row_text(&t, 39);
    assert!(
        hints.contains("Space toggle head") && hints.contains("L toggle layer"),
        "{hints}"
    );
    press(&mut app, key('?'));
    let t = screen(&app, 120, 40);
    for b in BINDINGS {
        assert!(find(&t, b.help).is_some(), "help lists {:?}", b.help);
    }
}

#[test]
fn the_readme_key_table_matches_the_key_table() {
    let readme = include_str!("../../../README.md");
    let table = crate::tui::keymap::markdown_table();
    assert!(
        readme.contains(&table),
        "README's key table is out of date; it should contain:\n{table}"
    );
}

#[test]
fn snapshot_graph() {
    insta::assert_snapshot!("graph_80x24", screen(&on_tab('6'), 80, 24).backend());
    insta::assert_snapshot!("graph_160x48", screen(&on_tab('6'), 160, 48).backend());
}

/// The screen position of a graph node's label.
fn node_at(t: &Terminal<TestBackend>, name: &str) -> (u16, u16) {
    find_all(t, name)
        .into_iter()
        .find(|&(x, y)| y > 6 && t.backend().buffer()[(x, y)].bg != Color::Reset)
        .unwrap_or_else(|| panic!("{name} not drawn"))
}

#[test]
fn graph_nodes_are_coloured_by_probability() {
    let mut app = on_tab('6');
    // The second thought: the frontier is at depth 2.
    press(&mut app, code(KeyCode::Right));
    let run = app.run.clone().unwrap();
    assert_eq!(run.steps[app.step].label, "T2");
    assert_eq!(app.layer, S.layers, "the output layer by default");
    let g = run.graph.as_ref().unwrap();
    let t = screen(&app, 160, 48);
    let buf = t.backend().buffer();
    let step = g.steps.iter().position(|s| s.label == "T2").unwrap();
    let p = |name: &str| {
        let i = g.nodes.iter().position(|n| n.name == name).unwrap();
        g.steps[step].probs[S.layers][i]
    };
    let rank = |c: Color| SCALE.iter().position(|&s| Color::Indexed(s) == c).unwrap();
    let mut seen = Vec::new();
    for name in ["Alex", "wumpus", "yumpus", "gerpus", "impus"] {
        let (x, y) = node_at(&t, name);
        assert_eq!(buf[(x, y)].bg, heat(p(name)), "{name}");
        seen.push((p(name), rank(buf[(x, y)].bg)));
    }
    // A more probable node is never cooler, and the depth-2 frontier is hotter than the rest.
    for &(pa, ra) in &seen {
        for &(pb, rb) in &seen {
            if pa > pb {
                assert!(ra >= rb, "{pa} drawn cooler than {pb}");
            }
        }
    }
    let (x, y) = node_at(&t, "yumpus");
    let (ax, ay) = node_at(&t, "Alex");
    assert!(rank(buf[(x, y)].bg) > rank(buf[(ax, ay)].bg));
    // Candidates carry their mark and are underlined.
    let (cx, cy) = find(&t, &format!("{}lorpus", crate::tui::view::CANDIDATE_MARK)).unwrap();
    assert!(buf[(cx, cy)].modifier.contains(Modifier::UNDERLINED));
    // ↑ moves to a lower layer, and the colours follow it.
    press(&mut app, code(KeyCode::Up));
    assert_eq!(app.layer, S.layers - 1);
    let t = screen(&app, 160, 48);
    let i = g.nodes.iter().position(|n| n.name == "yumpus").unwrap();
    let (x, y) = node_at(&t, "yumpus");
    assert_eq!(
        t.backend().buffer()[(x, y)].bg,
        heat(g.steps[step].probs[S.layers - 1][i])
    );
}

#[test]
fn a_prompt_without_a_problem_says_so() {
    let mut app = on_tab('6');
    let mut run = (*app.run.clone().unwrap()).clone();
    run.graph = None;
    app.run = Some(std::sync::Arc::new(run));
    for (w, h) in [(80, 24), (160, 48)] {
        let t = screen(&app, w, h);
        assert!(
            find(&t, "The prompt states no recognisable problem").is_some(),
            "at {w}x{h}"
        );
    }
}

#[test]
fn clicking_a_node_shows_it_at_every_step_and_layer() {
    use ratatui::crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let mut app = on_tab('6');
    app.size = (80, 24);
    let t = screen(&app, 80, 24);
    let (x, y) = node_at(&t, "wumpus");
    let click = Event::Mouse(MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: x + 1,
        row: y,
        modifiers: KeyModifiers::NONE,
    });
    let g = app.run.as_ref().unwrap().graph.clone().unwrap();
    let wumpus = g.nodes.iter().position(|n| n.name == "wumpus").unwrap();
    assert_eq!(
        crate::tui::events::action_of(&app, &click),
        Some(Action::Click(crate::tui::app::Hit::Node(wumpus)))
    );
    press(&mut app, click.clone());
    assert_eq!(app.graph_node, Some(wumpus));
    let t = screen(&app, 80, 24);
    assert!(find(&t, "click again closes").is_some());
    assert!(find(&t, "depth 1 · p per step").is_some());
    // The output row of the first thought, as a percentage.
    let p = g.steps[0].probs[S.layers][wumpus];
    assert!(find(&t, &crate::tui::widgets::pct(p)).is_some());
    press(&mut app, click);
    assert_eq!(app.graph_node, None);
    assert!(find(&screen(&app, 80, 24), "Mass by depth").is_some());
}

#[test]
fn the_header_names_a_sampled_run_and_not_a_greedy_one() {
    let mut app = on_tab('1');
    assert!(!row_text(&screen(&app, 120, 40), 1).contains("sampled"));
    app.params.sampling = crate::thought::Sampling::new(0.8, 0.9, 3).unwrap();
    let line = row_text(&screen(&app, 120, 40), 1);
    assert!(line.contains("sampled T=0.8 p=0.9 seed 3"), "{line}");
}
