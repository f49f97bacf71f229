//! The report as a Markdown page: each table with one sentence on how to read it.

use std::fmt::Write;

use super::{ErrorKind, Report};
use crate::eval::EvalMode;

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn mode_name(m: EvalMode) -> &'static str {
    match m {
        EvalMode::Coconut => "coconut",
        EvalMode::Pause => "pause",
        EvalMode::Cot => "cot",
        EvalMode::NoCot => "no-cot",
    }
}

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# coconut-lens report\n");
    let _ = writeln!(
        w,
        "Model `{}` on `{}` ({} problems; the model's own count: {} thoughts), computed in {:.0} s.\n",
        r.model, r.data, r.n, r.thoughts, r.compute_s
    );

    let _ = writeln!(w, "## Accuracy against the number of thoughts\n");
    let _ = writeln!(
        w,
        "Greedy answers scored by the official rule (the text after the last `#` equals the gold answer); pause fills the same slots with the `<|latent|>` embedding and feeds nothing back, the control for whether thoughts carry information. Intervals are Wilson's 95%.\n"
    );
    let counts: Vec<usize> = {
        let mut c: Vec<usize> = r.accuracy.iter().map(|a| a.thoughts).collect();
        c.dedup();
        c.sort();
        c.dedup();
        c
    };
    let _ = writeln!(w, "| thoughts | coconut | pause |");
    let _ = writeln!(w, "|---|---|---|");
    for k in counts {
        let cell = |m: EvalMode| {
            r.accuracy
                .iter()
                .find(|a| a.mode == m && a.thoughts == k)
                .map_or("–".to_string(), |a| {
                    format!("{} ({}–{})", pct(a.accuracy), pct(a.ci95.0), pct(a.ci95.1))
                })
        };
        let own = if k == r.thoughts { " (own)" } else { "" };
        let _ = writeln!(
            w,
            "| {k}{own} | {} | {} |",
            cell(EvalMode::Coconut),
            cell(EvalMode::Pause)
        );
    }
    let _ = writeln!(w, "\n![accuracy against thoughts](accuracy.png)");
    let _ = writeln!(
        w,
        "\nMcNemar's exact test of coconut at {} thoughts against each control on the same problems (problems only one of the two answers right; a small p says the difference is not chance):\n",
        r.thoughts
    );
    let _ = writeln!(w, "| against | coconut only | other only | p |");
    let _ = writeln!(w, "|---|---|---|---|");
    for p in &r.paired {
        let _ = writeln!(
            w,
            "| {} with {} thoughts | {} | {} | {:.3e} |",
            mode_name(p.mode),
            p.thoughts,
            p.coconut_only,
            p.other_only,
            p.p_value
        );
    }

    let _ = writeln!(w, "\n## The frontier\n");
    let _ = writeln!(
        w,
        "Mean probability mass of each thought's decoded distribution on graph nodes by breadth-first depth from the person asked about (Hao et al. §5): a thought that searches breadth-first puts its mass on the frontier.\n"
    );
    let depths = r
        .frontier
        .iter()
        .map(|f| f.mass_by_depth.len())
        .max()
        .unwrap_or(0);
    let head: Vec<String> = (0..depths).map(|d| format!("depth {d}")).collect();
    let _ = writeln!(
        w,
        "| thought | {} | unreachable | other |",
        head.join(" | ")
    );
    let _ = writeln!(w, "|---|{}---|---|", "---|".repeat(depths));
    for f in &r.frontier {
        let cells: Vec<String> = (0..depths)
            .map(|d| format!("{:.3}", f.mass_by_depth.get(d).copied().unwrap_or(0.0)))
            .collect();
        let _ = writeln!(
            w,
            "| {} | {} | {:.3} | {:.3} |",
            f.thought,
            cells.join(" | "),
            f.unreachable,
            f.other
        );
    }

    let _ = writeln!(w, "\n## Superposition\n");
    let _ = writeln!(
        w,
        "The inner product of each thought with the input embeddings of the graph's nodes (Zhu et al. 2025): thought k has taken k − 1 hops; a thought that holds the frontier in superposition scores its frontier and reachable nodes above the unreachable ones. Mean ± sd over every (problem, node) pair of the group.\n"
    );
    let _ = writeln!(
        w,
        "| thought | frontier (exactly k − 1 hops) | reachable (within k − 1) | unreachable | answer path |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|");
    for s in &r.superposition {
        let c = |x: &super::Spread| format!("{:.2} ± {:.2}", x.mean, x.sd);
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} |",
            s.thought,
            c(&s.frontier),
            c(&s.reachable),
            c(&s.unreachable),
            c(&s.answer_path)
        );
    }

    let _ = writeln!(w, "\n## Norms\n");
    let _ = writeln!(
        w,
        "The L2 norm of each thought as fed back against the norms of the token embeddings: a thought far larger than any token enters the residual stream as a much louder input.\n"
    );
    let _ = writeln!(w, "| | mean | sd | min | max |");
    let _ = writeln!(w, "|---|---|---|---|---|");
    let t = &r.norms.token_embeddings;
    let _ = writeln!(
        w,
        "| token embeddings | {:.2} | {:.2} | {:.2} | {:.2} |",
        t.mean, t.sd, t.min, t.max
    );
    for (k, s) in r.norms.thoughts.iter().enumerate() {
        let _ = writeln!(
            w,
            "| thought {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            k + 1,
            s.mean,
            s.sd,
            s.min,
            s.max
        );
    }

    let _ = writeln!(w, "\n## Causal: interventions on each thought\n");
    let _ = writeln!(
        w,
        "Each thought's slot in turn receives a zero vector, the mean of that thought over the problems ({}), or the thought plus noise as large as itself; accuracy falling to chance means the answer needs what that thought carries (un-intervened: {}).\n",
        r.causal.means_from,
        pct(r.causal.base_accuracy)
    );
    let _ = writeln!(w, "| thought | operation | accuracy | answers changed |");
    let _ = writeln!(w, "|---|---|---|---|");
    for row in &r.causal.rows {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            row.thought,
            row.op,
            pct(row.accuracy),
            pct(row.flip_rate)
        );
    }

    let _ = writeln!(w, "\n## Errors\n");
    let _ = writeln!(
        w,
        "Wrong answers of coconut at {} thoughts: the other candidate (the reasoning chose wrong), a concept that is neither (it lost the question), or not an answer at all.\n",
        r.thoughts
    );
    for g in &r.errors {
        let name = match g.kind {
            ErrorKind::WrongCandidate => "the other candidate",
            ErrorKind::NeitherCandidate => "neither candidate",
            ErrorKind::Malformed => "malformed",
        };
        let _ = writeln!(w, "- **{name}**: {}", g.count);
        for e in &g.examples {
            let q: String = e
                .question
                .chars()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let _ = writeln!(
                w,
                "  - problem {}: …{q} gold `{}`, answered `{}`",
                e.problem, e.gold, e.answer
            );
        }
    }
    s
}
