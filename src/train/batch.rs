//! Training batches: new generated problems for every optimizer step, told with a growing
//! share of their facts (the context curriculum), laid out in the Coconut format, and the
//! targets of the frontier loss.
//!
//! Every row of a batch keeps the same number of facts. Names and markers are one token each,
//! so the prompts then have the same length in tokens and the continuous thoughts sit at the
//! same positions in every row: the batch runs without padding or attention masks, and only the
//! language part after `<|end-latent|>` (whose length depends on the remaining steps) is padded
//! on the right and left out of the loss.

use anyhow::{Context, Result, ensure};

use super::{FrontierSets, Recipe, TrainConfig};
use crate::data::prosqa::{self, Graph, MAX_DEPTH, ProsQaProblem};
use crate::data::rng::Rng;
use crate::data::tokenizer::{EOS, verbatim_ids};
use crate::model::Tokenizer;

/// Fewest facts a training problem is told with: the longest chain of thought plus one, so
/// that every problem can keep its whole chain.
pub const MIN_FACTS: usize = MAX_DEPTH + 1;

/// One training sequence: `prefix`, then `latents` continuous thoughts, then `suffix`. The
/// language loss covers `suffix[loss_from..]`; `frontier[k]` lists the token ids the frontier
/// loss spreads the output at `<|start-latent|>` (k = 0) and after thought k over.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub prefix: Vec<u32>,
    pub latents: usize,
    pub suffix: Vec<u32>,
    pub loss_from: usize,
    pub frontier: Vec<Vec<u32>>,
}

/// Token ids of a problem in the layout of the recipe at curriculum `stage` (the Coconut
/// code's format: `question\n`, steps each followed by `\n`, `### answer`, end of text).
pub fn encode_sample(
    tok: &Tokenizer,
    p: &ProsQaProblem,
    cfg: &TrainConfig,
    stage: usize,
) -> Result<Sample> {
    let question = tok.encode_prompt(&p.question)?;
    let eos = tok
        .token_id(EOS)
        .context("the tokenizer has no end-of-text token")?;
    // Built word by word so that it decodes to the official answer whatever the normalizer.
    let mut answer = verbatim_ids(tok.inner(), &format!("### {}", p.answer))?;
    answer.push(eos);
    let steps = |skip: usize| -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for s in p.steps.iter().skip(skip) {
            ids.extend(tok.encode_plain(&format!("{s}\n"))?);
        }
        Ok(ids)
    };
    Ok(match cfg.recipe {
        Recipe::Coconut => {
            let m = tok.coconut.context("the tokenizer has no Coconut tokens")?;
            let latents = cfg.thoughts_at(stage);
            let mut prefix = question;
            prefix.push(m.start);
            let mut suffix = vec![m.end];
            suffix.extend(steps(stage.min(p.steps.len()))?);
            suffix.extend(answer);
            let frontier = if cfg.frontier > 0.0 {
                frontier_ids(tok, p, latents + 1, cfg.frontier_from, cfg.frontier_sets)?
            } else {
                Vec::new()
            };
            Sample {
                prefix,
                latents,
                suffix,
                loss_from: 1,
                frontier,
            }
        }
        Recipe::Cot => {
            let mut suffix = steps(0)?;
            suffix.extend(answer);
            Sample {
                prefix: question,
                latents: 0,
                suffix,
                loss_from: 0,
                frontier: Vec::new(),
            }
        }
        Recipe::NoCot => Sample {
            prefix: question,
            latents: 0,
            suffix: answer,
            loss_from: 0,
            frontier: Vec::new(),
        },
    })
}

/// The nodes within (or, for [`FrontierSets::Layer`], exactly) `k + from` hops of the root,
/// for k = 0..outputs (node indices, in index order): the breadth-first sets the frontier loss
/// targets at `<|start-latent|>` (k = 0) and after each thought.
pub fn frontier_sets(
    p: &ProsQaProblem,
    outputs: usize,
    from: usize,
    sets: FrontierSets,
) -> Result<Vec<Vec<usize>>> {
    let dist = Graph::of(p)?.distances(p.root);
    Ok((0..outputs)
        .map(|k| {
            (0..dist.len())
                .filter(|&i| {
                    dist[i].is_some_and(|d| match sets {
                        FrontierSets::Within => d <= k + from,
                        FrontierSets::Layer => d == k + from,
                    })
                })
                .collect()
        })
        .collect())
}

fn frontier_ids(
    tok: &Tokenizer,
    p: &ProsQaProblem,
    outputs: usize,
    from: usize,
    sets: FrontierSets,
) -> Result<Vec<Vec<u32>>> {
    let id = |i: usize| {
        let name = &p.idx_to_symbol[i];
        tok.token_id(name)
            .with_context(|| format!("the node \"{name}\" is not one token"))
    };
    frontier_sets(p, outputs, from, sets)?
        .into_iter()
        .map(|set| set.into_iter().map(id).collect())
        .collect()
}

/// Samples stacked: prompts `[rows, prefix_len]`, suffixes right-padded to `[rows,
/// suffix_len]` with `loss_mask` 0 on padding and before `loss_from`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub prefix_len: usize,
    pub prefix: Vec<u32>,
    pub latents: usize,
    pub suffix_len: usize,
    pub suffix: Vec<u32>,
    /// Per suffix position: 1 where the token is predicted and scored.
    pub loss_mask: Vec<f32>,
    /// Per row, per output (`<|start-latent|>`, then each thought): the frontier's token ids;
    /// empty without the frontier loss.
    pub frontier: Vec<Vec<Vec<u32>>>,
}

impl Batch {
    /// Stacks samples whose prompts have one length and whose thought counts agree.
    pub fn stack(samples: &[Sample], pad: u32) -> Result<Self> {
        let first = samples
            .first()
            .context("a batch needs at least one sample")?;
        let (prefix_len, latents) = (first.prefix.len(), first.latents);
        ensure!(
            samples
                .iter()
                .all(|s| s.prefix.len() == prefix_len && s.latents == latents),
            "the samples of a batch must have prompts of one length and one thought count"
        );
        let suffix_len = samples.iter().map(|s| s.suffix.len()).max().unwrap_or(0);
        ensure!(suffix_len > 0, "a sample has nothing to predict");
        let mut b = Self {
            rows: samples.len(),
            prefix_len,
            prefix: Vec::with_capacity(samples.len() * prefix_len),
            latents,
            suffix_len,
            suffix: Vec::with_capacity(samples.len() * suffix_len),
            loss_mask: Vec::with_capacity(samples.len() * suffix_len),
            frontier: Vec::new(),
        };
        for s in samples {
            b.prefix.extend(&s.prefix);
            b.suffix.extend(&s.suffix);
            b.suffix
                .extend(std::iter::repeat_n(pad, suffix_len - s.suffix.len()));
            b.loss_mask.extend((0..suffix_len).map(|i| {
                if i >= s.loss_from && i < s.suffix.len() {
                    1.0
                } else {
                    0.0
                }
            }));
            if !s.frontier.is_empty() {
                b.frontier.push(s.frontier.clone());
            }
        }
        ensure!(
            b.frontier.is_empty() || b.frontier.len() == b.rows,
            "frontier targets for some samples only"
        );
        Ok(b)
    }

    /// The rows split into at most `parts` consecutive batches of (nearly) equal size.
    pub fn split(&self, parts: usize) -> Vec<Batch> {
        let per = self.rows.div_ceil(parts.max(1));
        (0..self.rows)
            .step_by(per.max(1))
            .map(|lo| {
                let hi = (lo + per).min(self.rows);
                let rows = |v: &[u32], w: usize| v[lo * w..hi * w].to_vec();
                Batch {
                    rows: hi - lo,
                    prefix_len: self.prefix_len,
                    prefix: rows(&self.prefix, self.prefix_len),
                    latents: self.latents,
                    suffix_len: self.suffix_len,
                    suffix: rows(&self.suffix, self.suffix_len),
                    loss_mask: self.loss_mask[lo * self.suffix_len..hi * self.suffix_len].to_vec(),
                    frontier: if self.frontier.is_empty() {
                        Vec::new()
                    } else {
                        self.frontier[lo..hi].to_vec()
                    },
                }
            })
            .collect()
    }

    /// Number of scored language tokens.
    pub fn scored(&self) -> usize {
        self.loss_mask.iter().filter(|&&m| m > 0.0).count()
    }
}

/// How the batch of one optimizer step was drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub stage: usize,
    /// Facts each problem of the batch is told with.
    pub facts: usize,
}

/// The problems of optimizer step `step`: a function of the seed and the step alone, so a
/// resumed run sees the same data. A reference problem drawn from the generator sets the
/// number of facts (its own count times the batch's share of the curriculum, at least
/// [`MIN_FACTS`]);
/// every row is a new problem with at least that many facts, thinned to exactly that many.
pub fn draw_problems(cfg: &TrainConfig, step: u64) -> Result<(Vec<ProsQaProblem>, Draw)> {
    let mut rng = Rng::with_label(cfg.seed, &format!("batch-{step}"));
    let gen_cfg = cfg.gen_config();
    let stage = cfg.stage_of_batch(step, &mut rng);
    let reference = prosqa::sample(&gen_cfg, &mut rng)?;
    let share = cfg.fact_share_of_batch(step, &mut rng);
    let facts = ((share * reference.edges.len() as f64).round() as usize).max(MIN_FACTS);
    let mut rows = Vec::with_capacity(cfg.batch_size);
    const MAX_DRAWS: usize = 100_000;
    for _ in 0..MAX_DRAWS {
        if rows.len() == cfg.batch_size {
            break;
        }
        let p = prosqa::sample(&gen_cfg, &mut rng)?;
        if p.edges.len() >= facts {
            rows.push(prosqa::thin(&p, facts, &mut rng)?);
        }
    }
    ensure!(
        rows.len() == cfg.batch_size,
        "the generator gave too few problems with {facts} facts"
    );
    Ok((rows, Draw { stage, facts }))
}

/// The problem asked about one of its concepts that has children instead of its person (the
/// query's subject and the root replaced, the candidates kept): trained on the frontier from
/// that concept only, so that the first thought already looks up facts whose source is a
/// concept, as every later thought must. `None` when no concept has children.
pub fn reroot(p: &ProsQaProblem, rng: &mut Rng) -> Option<ProsQaProblem> {
    let sym = &p.idx_to_symbol;
    let mut sources: Vec<usize> = p
        .edges
        .iter()
        .map(|e| e[0])
        .filter(|&a| !prosqa::is_person(&sym[a]))
        .collect();
    sources.sort_unstable();
    sources.dedup();
    if sources.is_empty() {
        return None;
    }
    let subject = *rng.pick(&sources);
    let at = p.question.rfind("Is ")?;
    let rest = &p.question[at + 3..];
    let after = rest.find(' ')?;
    let question = format!("{}Is {}{}", &p.question[..at], sym[subject], &rest[after..]);
    Some(ProsQaProblem {
        question,
        root: subject,
        ..p.clone()
    })
}

/// The batch of optimizer step `step`, encoded. With probability `cfg.reroot` a row is
/// [`reroot`]ed, its language part left out of the loss.
pub fn draw_batch(cfg: &TrainConfig, tok: &Tokenizer, step: u64) -> Result<(Batch, Draw)> {
    let (problems, draw) = draw_problems(cfg, step)?;
    let mut rng = Rng::with_label(cfg.seed, &format!("reroot-{step}"));
    let samples = problems
        .iter()
        .map(|p| {
            let rerooted = (cfg.reroot > 0.0 && rng.chance(cfg.reroot))
                .then(|| reroot(p, &mut rng))
                .flatten();
            match rerooted {
                Some(q) => {
                    let mut s = encode_sample(tok, &q, cfg, draw.stage)?;
                    s.loss_from = s.suffix.len();
                    Ok(s)
                }
                None => encode_sample(tok, p, cfg, draw.stage),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let pad = tok
        .token_id(EOS)
        .context("the tokenizer has no end-of-text token")?;
    Ok((Batch::stack(&samples, pad)?, draw))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tom -> a -> {b, c}, c -> d; Ann -> e. Names as in the real inventory.
    fn hand_made() -> ProsQaProblem {
        let sym = [
            "Tom", "wumpus", "yumpus", "lempus", "rompus", "Fae", "zumpus",
        ];
        let edges = vec![[0, 1], [1, 2], [1, 3], [3, 4], [5, 6]];
        let facts: Vec<String> = edges
            .iter()
            .map(|&[a, b]| prosqa::edge_sentence(sym[a], sym[b]))
            .collect();
        ProsQaProblem {
            question: format!("{} Is Tom a rompus or zumpus?", facts.join(" ")),
            answer: "Tom is a rompus.".into(),
            steps: vec![
                "Tom is a wumpus.".into(),
                "Every wumpus is a lempus.".into(),
                "Every lempus is a rompus.".into(),
            ],
            idx_to_symbol: sym.iter().map(|s| s.to_string()).collect(),
            edges,
            root: 0,
            target: 4,
            neg_target: 6,
        }
    }

    #[test]
    fn frontier_sets_grow_one_hop_per_output() {
        let p = hand_made();
        assert_eq!(
            frontier_sets(&p, 5, 0, FrontierSets::Within).unwrap(),
            [
                vec![0],
                vec![0, 1],
                vec![0, 1, 2, 3],
                vec![0, 1, 2, 3, 4],
                vec![0, 1, 2, 3, 4],
            ]
        );
        // Starting one hop further (the output at <|start-latent|> already one hop out).
        assert_eq!(
            frontier_sets(&p, 2, 1, FrontierSets::Within).unwrap(),
            [vec![0, 1], vec![0, 1, 2, 3]]
        );
        // Breadth-first layers: each node once, at its depth; nothing past the deepest.
        assert_eq!(
            frontier_sets(&p, 5, 0, FrontierSets::Layer).unwrap(),
            [vec![0], vec![1], vec![2, 3], vec![4], vec![]]
        );
    }

    #[test]
    fn a_rerooted_problem_asks_about_a_concept_with_children() {
        let p = hand_made();
        let mut rng = Rng::new(1);
        for _ in 0..20 {
            let q = reroot(&p, &mut rng).unwrap();
            assert!([1, 3].contains(&q.root), "{}", q.root);
            let subject = &q.idx_to_symbol[q.root];
            assert!(
                q.question
                    .ends_with(&format!("Is {subject} a rompus or zumpus?"))
            );
            assert!(q.question.starts_with("Tom is a wumpus."));
            let sets = frontier_sets(&q, 2, 0, FrontierSets::Within).unwrap();
            assert_eq!(sets[0], [q.root]);
            assert!(sets[1].len() >= 2);
        }
        let no_concept_sources = ProsQaProblem {
            edges: vec![[0, 1], [5, 6]],
            ..p
        };
        assert!(reroot(&no_concept_sources, &mut rng).is_none());
    }
}
