//! Tab 5, Compare: the baseline (no interventions) beside the current run, the effect of the
//! interventions, and the activation-patching sweep.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::panel;
use crate::analysis::TokenProb;
use crate::analysis::run::RunAnalysis;
use crate::thought::StepKind;
use crate::thought::ThoughtEdits;
use crate::tui::app::{App, PatchState};
use crate::tui::widgets::{ABLATED, ANSWER, THOUGHT, fit, heat_style, num, pct};

fn tops(t: &[TokenProb], width: usize) -> String {
    let s = t
        .iter()
        .map(|t| format!("{} {}", fit(&t.text, 12), pct(t.prob)))
        .collect::<Vec<_>>()
        .join(" · ");
    fit(&s, width)
}

/// A probability that may be tiny (a product over many tokens).
fn prob_text(p: f32) -> String {
    if !p.is_finite() {
        // Not known (a v1 session file keeps only the first answer token's probability).
        "n/a".to_string()
    } else if p > 0.0 && p < 1e-3 {
        format!("{p:.2e}")
    } else {
        format!("{p:.4}")
    }
}

pub fn render(app: &App, run: &RunAnalysis, body: Rect, frame: &mut Frame) {
    let iv = &run.params.interventions;
    let cmp = &run.comparison;
    let base = &cmp.baseline;
    let cur = &run.summary;
    let table_h = (base.thoughts.len().max(cur.thoughts.len()) + 6) as u16;
    let [top, edits_line, table_area, bottom, sweep_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Max(table_h),
        Constraint::Length(match &run.effect {
            None => 5,
            Some(e) if e.candidates.is_none() => 6,
            Some(_) => 7,
        }),
        Constraint::Min(0),
    ])
    .areas(body);
    frame.render_widget(
        // The settings asked for: a second prompt alone changes no run, so the run shown may
        // be the baseline's.
        Paragraph::new(edits_text(&app.params.thought_edits)),
        edits_line,
    );

    let ivs = if iv.is_empty() && !run.params.intervened() {
        Line::from(
            " no interventions: the current run is the baseline (toggle heads and layers in tab 3)"
                .dark_gray(),
        )
    } else if iv.is_empty() {
        Line::from(" no head or layer ablations (toggle them in tab 3)".dark_gray())
    } else {
        let heads: Vec<String> = iv
            .ablated_heads
            .iter()
            .map(|(l, h)| format!("L{l}.H{h}"))
            .collect();
        let layers: Vec<String> = iv.skipped_layers.iter().map(|l| format!("L{l}")).collect();
        Line::from(vec![
            Span::raw(" ablated heads ").dark_gray(),
            Span::styled(
                if heads.is_empty() {
                    "none".into()
                } else {
                    heads.join(", ")
                },
                Style::default().fg(ABLATED).bold(),
            ),
            Span::raw(" · skipped layers ").dark_gray(),
            Span::styled(
                if layers.is_empty() {
                    "none".into()
                } else {
                    layers.join(", ")
                },
                Style::default().fg(ABLATED).bold(),
            ),
        ])
    };
    frame.render_widget(Paragraph::new(ivs), top);

    let inner = panel(
        frame,
        table_area,
        Line::from(vec![
            Span::raw(" Baseline and current ").bold(),
            Span::raw("· changed top tokens in yellow ").dark_gray(),
        ]),
    );
    let col_w = (inner.width.saturating_sub(12) / 2) as usize;
    let selected = run.steps.get(app.step).map(|s| s.kind);
    let changed = Style::default().fg(Color::Yellow).bold();
    let mut rows = Vec::new();
    let n = base.thoughts.len().max(cur.thoughts.len());
    for k in 0..n {
        let b = base.thoughts.get(k).map_or(&[][..], |v| v.as_slice());
        let c = cur.thoughts.get(k).map_or(&[][..], |v| v.as_slice());
        let differs = b.first().map(|t| t.id) != c.first().map(|t| t.id);
        let mut row = Row::new(vec![
            Cell::from(format!("T{}", k + 1)).style(Style::default().fg(THOUGHT)),
            Cell::from(tops(b, col_w)),
            Cell::from(tops(c, col_w)).style(if differs { changed } else { Style::default() }),
        ]);
        if selected == Some(StepKind::Thought(k + 1)) {
            row = row.style(Style::default().add_modifier(Modifier::REVERSED));
        }
        rows.push(row);
    }
    let answer_differs = base.answer_text != cur.answer_text;
    let mut answer_row = Row::new(vec![
        Cell::from("answer").style(Style::default().fg(ANSWER)),
        Cell::from(fit(&base.answer_text.replace('\n', "⏎"), col_w)),
        Cell::from(fit(&cur.answer_text.replace('\n', "⏎"), col_w)).style(if answer_differs {
            Style::default().fg(ABLATED).bold()
        } else {
            Style::default()
        }),
    ]);
    if matches!(selected, Some(StepKind::Answer(_))) {
        answer_row = answer_row.style(Style::default().add_modifier(Modifier::REVERSED));
    }
    rows.push(answer_row);
    rows.push(Row::new(vec![
        Cell::from("p(answer)").dark_gray(),
        Cell::from(prob_text(base.answer_prob())),
        Cell::from(prob_text(cur.answer_prob())),
    ]));
    rows.push(Row::new(vec![
        Cell::from("p(first)").dark_gray(),
        Cell::from(pct(base.first_prob())),
        Cell::from(pct(cur.first_prob())),
    ]));
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(col_w as u16),
            Constraint::Length(col_w as u16),
        ],
    )
    .header(
        Row::new(vec!["", "baseline (no interventions)", "current"])
            .style(Style::default().bold().underlined()),
    );
    frame.render_widget(table, inner);

    let inner = panel(frame, bottom, Line::from(" Effect on the answer ").bold());
    let mut lines = vec![Line::from(vec![
        Span::raw("KL(baseline ‖ current) of the first answer token ").dark_gray(),
        Span::raw(if cmp.kl_first.is_finite() {
            format!("{} nats", num(cmp.kl_first, 8))
        } else {
            "n/a (not in the v1 session file)".to_string()
        })
        .bold(),
    ])];
    let mut kl = vec![Span::raw("KL at each answer position while the answers agree ").dark_gray()];
    for (i, v) in cmp.kl_aligned.iter().enumerate() {
        kl.push(Span::raw(format!("A{} ", i + 1)).fg(ANSWER));
        kl.push(Span::raw(format!("{}  ", num(*v, 6))));
    }
    if cmp.kl_aligned.is_empty() && !cmp.kl_first.is_finite() {
        kl.push(Span::raw("n/a"));
    }
    lines.push(Line::from(kl));
    if let Some(e) = &run.effect {
        let step = e
            .scored_step
            .map_or("–".to_string(), |i| format!("A{}", i + 1));
        lines.push(Line::from(vec![
            Span::raw(format!("KL at the scored step {step} ")).dark_gray(),
            Span::raw(format!("{} nats", num(e.kl_scored, 8))).bold(),
            Span::raw(" · Δ log p(baseline answer), teacher-forced ").dark_gray(),
            Span::raw(num(e.delta_logprob, 8)).bold(),
        ]));
        if let Some(c) = &e.candidates {
            lines.push(Line::from(vec![
                Span::raw(format!(
                    "logit({}) − logit({}) at {step} ",
                    c.names[0], c.names[1]
                ))
                .dark_gray(),
                Span::raw(format!("{} → {}", num(c.base, 7), num(c.intervened, 7))).bold(),
            ]));
        }
    }
    lines.push(match cmp.divergence {
        None => Line::from("the two answers are identical".dark_gray()),
        Some(i) => {
            let b = base
                .answer
                .get(i)
                .map_or("(end)".to_string(), |t| t.text.clone());
            let c = cur
                .answer
                .get(i)
                .map_or("(end)".to_string(), |t| t.text.clone());
            Line::from(vec![
                Span::raw("answers diverge at ").dark_gray(),
                Span::raw(format!("A{}", i + 1)).fg(ANSWER).bold(),
                Span::raw(format!(": {b} → {c}")).bold(),
            ])
        }
    });
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
    render_sweep(app, sweep_area, frame);
}

/// The thought interventions in one line.
fn edits_text(e: &ThoughtEdits) -> Line<'static> {
    let mut spans = vec![Span::raw(" thoughts ").dark_gray()];
    if e.ops.is_empty() && e.resid.is_empty() {
        spans.push(Span::raw("fed back as computed (x on a thought intervenes)").dark_gray());
    } else {
        let ops: Vec<String> = e.ops.iter().map(|(k, op)| format!("T{k}={op}")).collect();
        let resid: Vec<String> = e
            .resid
            .iter()
            .map(|p| format!("{}@T{}", p.layer, p.thought))
            .collect();
        spans.push(Span::styled(
            ops.into_iter().chain(resid).collect::<Vec<_>>().join(", "),
            Style::default().fg(ABLATED).bold(),
        ));
    }
    spans.push(Span::raw(" · second prompt ").dark_gray());
    spans.push(match &e.patch_prompt {
        Some(p) => Span::raw(fit(p, 60)),
        None => Span::raw("none (P sets it)").dark_gray(),
    });
    Line::from(spans)
}

/// The patching sweep: thoughts by layers, coloured by the share of the candidates' logit
/// difference the patch restores.
fn render_sweep(app: &App, area: Rect, frame: &mut Frame) {
    if area.height < 3 {
        return;
    }
    let title = Line::from(vec![
        Span::raw(" Activation patching ").bold(),
        Span::raw("· residual stream after block L at thought k, from the second prompt ")
            .dark_gray(),
    ]);
    let inner = panel(frame, area, title);
    let status = match &app.patch {
        PatchState::Running { done, total, .. } => {
            Some(format!("computing… {done}/{total} (Esc cancels)"))
        }
        PatchState::Cancelled => Some("cancelled; S starts it again".into()),
        PatchState::Failed(e) => Some(e.clone()),
        PatchState::Idle => None,
    };
    let Some(sweep) = app.current_patch() else {
        let text = status.unwrap_or_else(|| {
            if app.params.thought_edits.patch_prompt.is_some() {
                "S runs the sweep".into()
            } else {
                "P sets the second prompt (the clean run), then S runs the sweep".into()
            }
        });
        frame.render_widget(Paragraph::new(text.dark_gray()), inner);
        return;
    };
    let mut lines = vec![Line::from(vec![
        Span::raw(format!(
            "logit({}) − logit({}) at A{}: clean {} · corrupted {} · cell = share restored ",
            sweep.candidates[0],
            sweep.candidates[1],
            sweep.scored_step + 1,
            num(sweep.clean, 6),
            num(sweep.corrupted, 6)
        ))
        .dark_gray(),
    ])];
    let layers = sweep.logit_diff.first().map_or(0, Vec::len);
    let mut header = vec![Span::raw("      ")];
    for l in 0..layers {
        header.push(Span::raw(format!("{:^7}", format!("L{l}"))).dark_gray());
    }
    lines.push(Line::from(header));
    for (k, row) in sweep.restored.iter().enumerate() {
        let mut spans = vec![Span::styled(
            format!(" T{:<4}", k + 1),
            Style::default().fg(THOUGHT),
        )];
        for &r in row {
            let text = if r.is_finite() {
                format!("{r:^7.2}")
            } else {
                format!("{:^7}", "–")
            };
            spans.push(Span::styled(text, heat_style(r)));
        }
        lines.push(Line::from(spans));
    }
    if let Some(s) = status {
        lines.push(Line::from(s.dark_gray()));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
