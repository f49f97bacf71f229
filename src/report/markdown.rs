//! The report as a Markdown page: each table with one sentence on how to read it.

use std::fmt::Write;

use super::{ErrorKind, MODES, Report, ValueSource};
use crate::eval::EvalMode;

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn mode_name(m: EvalMode) -> &'static str {
    match m {
        EvalMode::Coconut => "coconut",
        EvalMode::Pause => "pause",
        EvalMode::Soft => "soft",
        EvalMode::Token => "token",
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
        "Greedy answers scored by the official rule (the text after the last `#` equals the gold answer). Every mode uses the same layout (question, `<|start-latent|>`, the slots, `<|end-latent|>`); what the slots receive differs: coconut the last hidden state, pause the `<|latent|>` embedding with nothing fed back (the control for whether thoughts carry information), soft Soft Thinking's mix of the top-5 token embeddings (top-p 0.95), token the greedy token's embedding (a chain of thought inside the markers{}). Intervals are Wilson's 95%.\n",
        if r.writes_steps {
            ""
        } else {
            "; not run: this model writes no steps"
        }
    );
    let counts: Vec<usize> = {
        let mut c: Vec<usize> = r.accuracy.iter().map(|a| a.thoughts).collect();
        c.dedup();
        c.sort();
        c.dedup();
        c
    };
    let modes: Vec<EvalMode> = MODES
        .into_iter()
        .filter(|m| r.accuracy.iter().any(|a| a.mode == *m))
        .collect();
    let names: Vec<&str> = modes.iter().map(|&m| mode_name(m)).collect();
    let _ = writeln!(w, "| thoughts | {} |", names.join(" | "));
    let _ = writeln!(w, "|---|{}", "---|".repeat(modes.len()));
    for k in counts {
        let cells: Vec<String> = modes
            .iter()
            .map(|&m| {
                r.accuracy
                    .iter()
                    .find(|a| a.mode == m && a.thoughts == k)
                    .map_or("–".to_string(), |a| {
                        format!("{} ({}–{})", pct(a.accuracy), pct(a.ci95.0), pct(a.ci95.1))
                    })
            })
            .collect();
        let own = if k == r.thoughts { " (own)" } else { "" };
        let _ = writeln!(w, "| {k}{own} | {} |", cells.join(" | "));
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

    let _ = writeln!(w, "\n![frontier mass by depth](frontier.png)");

    let _ = writeln!(w, "\n### The value of frontier nodes\n");
    let _ = writeln!(
        w,
        "Hao et al.'s probe (§5, Fig. 9): after k thoughts the model switches to language (`<|end-latent|>`) and writes its next step greedily; the *value* of a frontier node (exactly k hops from the person) is the probability of its token at the step's first node slot. Where the model writes no step after k thoughts (fewer than half the problems name a node before the answer's `#`), the value is read instead from the state that would feed thought k + 1, decoded through the unembedding. Per problem the top-1, top-2 and top-3 frontier values are summed; the curves sort the problems by that sum: a curve near 1 over most of the percentiles means the step's mass sits on a few frontier nodes, a curve between the top-1 and top-3 lines means it is spread over several (a search that keeps alternatives open).\n"
    );
    let _ = writeln!(
        w,
        "| thoughts | read from | wrote a step | problems | frontier nodes (mean) | top-1 (median) | top-3 (median) |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for v in &r.value {
        let median = |c: &Vec<f64>| c.get(c.len() / 2).map_or("–".into(), |x| format!("{x:.3}"));
        let _ = writeln!(
            w,
            "| {} | {} | {}/{} | {} | {:.2} | {} | {} |",
            v.thoughts,
            match v.source {
                ValueSource::Language => "the next step",
                ValueSource::Decoded => "the decoded state",
            },
            v.wrote_step,
            r.n,
            v.n,
            v.frontier_nodes,
            median(&v.cumulative[0]),
            median(&v.cumulative[2])
        );
    }
    if !r.value.is_empty() {
        let _ = writeln!(w, "\n![value of frontier nodes](value.png)");
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

    let _ = writeln!(w, "\n![superposition inner products](superposition.png)");

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

    let _ = writeln!(w, "\n![thought norms](norms.png)");

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

    let _ = writeln!(w, "\n![interventions](causal.png)");

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
