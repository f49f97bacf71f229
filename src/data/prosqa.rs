//! ProsQA-style problems (Hao et al. 2024, "Training Large Language Models to Reason in a
//! Continuous Latent Space", §4.1): the JSON schema, a generator whose graphs match the real
//! validation set's statistics, and a validator.
//!
//! A problem is a DAG over people and made-up concepts, told as sentences ("Every wumpus is a
//! yumpus.", "Alex is a wumpus."), and a question "Is Alex a A or B?" where exactly one of A,
//! B is reachable from Alex. The chain of thought (`steps`) is a shortest path from the root
//! to the answer. The generator is described, with its measured statistics, in `docs/data.md`.

use std::collections::{HashSet, VecDeque};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::rng::Rng;

/// The 17 people of the real ProsQA validation set.
pub const PEOPLE: [&str; 17] = [
    "Alex", "Bob", "Carol", "Davis", "Eva", "Fae", "Gabriel", "Jack", "Max", "Oliver", "Polly",
    "Rex", "Sally", "Sam", "Stella", "Tom", "Wren",
];

/// The 38 concept words of the real ProsQA validation set.
pub const CONCEPTS: [&str; 38] = [
    "bompus", "boompus", "brimpus", "chorpus", "dumpus", "felpus", "fompus", "gerpus", "gorpus",
    "grimpus", "gwompus", "hilpus", "impus", "jelpus", "jompus", "kerpus", "lempus", "lorpus",
    "numpus", "quimpus", "rempus", "rompus", "rorpus", "scrompus", "shumpus", "sterpus", "storpus",
    "terpus", "timpus", "tumpus", "vumpus", "worpus", "wumpus", "yerpus", "yimpus", "yumpus",
    "zhorpus", "zumpus",
];

/// The words of the sentence templates.
pub const TEMPLATE_WORDS: [&str; 5] = ["Every", "is", "a", "Is", "or"];

/// Shortest and longest chain of thought (number of steps) of a valid problem.
pub const MIN_DEPTH: usize = 3;
pub const MAX_DEPTH: usize = 6;

/// One problem, fields in the order of the real files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProsQaProblem {
    pub question: String,
    pub answer: String,
    pub steps: Vec<String>,
    pub idx_to_symbol: Vec<String>,
    pub edges: Vec<[usize; 2]>,
    pub root: usize,
    pub target: usize,
    pub neg_target: usize,
}

/// People are capitalised, concepts are not (true of the whole real inventory).
pub fn is_person(symbol: &str) -> bool {
    symbol.chars().next().is_some_and(char::is_uppercase)
}

/// The sentence stating the edge `from -> to`.
pub fn edge_sentence(from: &str, to: &str) -> String {
    if is_person(from) {
        format!("{from} is a {to}.")
    } else {
        format!("Every {from} is a {to}.")
    }
}

/// The question's last sentence.
pub fn query_sentence(root: &str, first: &str, second: &str) -> String {
    format!("Is {root} a {first} or {second}?")
}

/// The answer: `"{root} is a {target}."`.
pub fn answer_sentence(root: &str, target: &str) -> String {
    format!("{root} is a {target}.")
}

/// Adjacency of a problem, indices checked.
#[derive(Debug, Clone)]
pub struct Graph {
    pub children: Vec<Vec<usize>>,
    pub parents: Vec<Vec<usize>>,
}

impl Graph {
    pub fn new(n: usize, edges: &[[usize; 2]]) -> Result<Self> {
        let mut children = vec![Vec::new(); n];
        let mut parents = vec![Vec::new(); n];
        for &[a, b] in edges {
            ensure!(
                a < n && b < n,
                "edge [{a}, {b}] names a node past {}",
                n.saturating_sub(1)
            );
            children[a].push(b);
            parents[b].push(a);
        }
        Ok(Self { children, parents })
    }

    pub fn of(p: &ProsQaProblem) -> Result<Self> {
        let n = p.idx_to_symbol.len();
        for (name, i) in [
            ("root", p.root),
            ("target", p.target),
            ("neg_target", p.neg_target),
        ] {
            ensure!(i < n, "{name} {i} is not a node (there are {n})");
        }
        Self::new(n, &p.edges)
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Breadth-first distances from `start` (`None`: unreachable).
    pub fn distances(&self, start: usize) -> Vec<Option<usize>> {
        let mut dist = vec![None; self.len()];
        dist[start] = Some(0);
        let mut queue = VecDeque::from([start]);
        while let Some(u) = queue.pop_front() {
            let d = dist[u].unwrap_or(0);
            for &v in &self.children[u] {
                if dist[v].is_none() {
                    dist[v] = Some(d + 1);
                    queue.push_back(v);
                }
            }
        }
        dist
    }

    /// Number of shortest paths from the node whose distances are `dist` to every node.
    pub fn shortest_path_counts(&self, dist: &[Option<usize>]) -> Vec<u64> {
        let mut order: Vec<usize> = (0..self.len()).filter(|&i| dist[i].is_some()).collect();
        order.sort_by_key(|&i| dist[i]);
        let mut count = vec![0u64; self.len()];
        if let Some(&start) = order.first() {
            count[start] = 1;
        }
        for &u in &order {
            for &v in &self.children[u] {
                if dist[v] == dist[u].map(|d| d + 1) {
                    count[v] = count[v].saturating_add(count[u]);
                }
            }
        }
        count
    }

    /// Whether the graph has no directed cycle.
    pub fn is_acyclic(&self) -> bool {
        let mut indegree: Vec<usize> = self.parents.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..self.len()).filter(|&i| indegree[i] == 0).collect();
        let mut seen = 0;
        while let Some(u) = ready.pop() {
            seen += 1;
            for &v in &self.children[u] {
                indegree[v] -= 1;
                if indegree[v] == 0 {
                    ready.push(v);
                }
            }
        }
        seen == self.len()
    }
}

/// Splits a question into its fact sentences and its final query.
fn split_question(question: &str) -> Result<(Vec<&str>, &str)> {
    let q = question.trim_end();
    ensure!(q.ends_with('?'), "the question does not end with '?'");
    let start = q
        .rfind("Is ")
        .filter(|&i| i == 0 || q[..i].ends_with(' '))
        .context("the question has no final \"Is ... ?\" sentence")?;
    let facts = q[..start].trim_end();
    let mut sentences = Vec::new();
    let mut rest = facts;
    while !rest.is_empty() {
        let end = rest
            .find('.')
            .context("a fact sentence does not end with '.'")?;
        sentences.push(&rest[..=end]);
        rest = rest[end + 1..].trim_start();
    }
    Ok((sentences, &q[start..]))
}

/// Checks a problem is a well-formed ProsQA problem: the question's facts are exactly the
/// edges (with the right templates), the query names the root and the two candidates, the
/// answer names the target, the target is reachable from the root and the negative target is
/// not, and the steps are a shortest path root -> target of 3 to 6 edges.
pub fn validate(p: &ProsQaProblem) -> Result<()> {
    let g = Graph::of(p)?;
    let sym = &p.idx_to_symbol;
    let n = sym.len();
    let distinct: HashSet<&str> = sym.iter().map(String::as_str).collect();
    ensure!(distinct.len() == n, "idx_to_symbol repeats a name");
    ensure!(
        sym.iter()
            .all(|s| !s.is_empty() && s.chars().all(char::is_alphanumeric)),
        "idx_to_symbol has a name that is not one word"
    );
    ensure!(
        p.root != p.target && p.root != p.neg_target && p.target != p.neg_target,
        "root, target and neg_target must be three different nodes"
    );
    ensure!(
        is_person(&sym[p.root]),
        "the root {} is not a person",
        sym[p.root]
    );
    let mut edge_set = HashSet::new();
    for &[a, b] in &p.edges {
        ensure!(a != b, "edge [{a}, {b}] is a self-loop");
        ensure!(edge_set.insert((a, b)), "edge [{a}, {b}] appears twice");
        ensure!(
            !is_person(&sym[b]),
            "edge [{a}, {b}] points at the person {}",
            sym[b]
        );
    }
    ensure!(g.is_acyclic(), "the graph has a cycle");

    // Facts <-> edges, as multisets (each edge once, so as sets of distinct sentences).
    let (facts, query) = split_question(&p.question)?;
    let mut expected: Vec<String> = p
        .edges
        .iter()
        .map(|&[a, b]| edge_sentence(&sym[a], &sym[b]))
        .collect();
    let mut got: Vec<String> = facts.iter().map(|s| s.to_string()).collect();
    expected.sort();
    got.sort();
    if expected != got {
        let missing = expected.iter().find(|s| !got.contains(s));
        let extra = got.iter().find(|s| !expected.contains(s));
        match (missing, extra) {
            (Some(m), _) => bail!("the question lacks the edge sentence \"{m}\""),
            (None, Some(e)) => bail!("the question states \"{e}\", which is not an edge"),
            _ => bail!("the question repeats an edge sentence"),
        }
    }
    let (root, target, neg) = (&sym[p.root], &sym[p.target], &sym[p.neg_target]);
    ensure!(
        query == query_sentence(root, target, neg) || query == query_sentence(root, neg, target),
        "the query \"{query}\" does not ask about {root}, {target} and {neg}"
    );
    let answer = answer_sentence(root, target);
    ensure!(
        p.answer == answer,
        "the answer \"{}\" is not \"{answer}\"",
        p.answer
    );

    // Reachability.
    let dist = g.distances(p.root);
    let depth = dist[p.target].context("the target is not reachable from the root")?;
    ensure!(
        dist[p.neg_target].is_none(),
        "the negative target is reachable from the root"
    );

    // Steps: a shortest path root -> target, one edge sentence per step.
    let k = p.steps.len();
    ensure!(
        (MIN_DEPTH..=MAX_DEPTH).contains(&k),
        "{k} steps (expected {MIN_DEPTH} to {MAX_DEPTH})"
    );
    ensure!(
        k == depth,
        "{k} steps, but the shortest path to the target has {depth}"
    );
    let index_of = |name: &str| sym.iter().position(|s| s == name);
    let mut at = p.root;
    for (i, step) in p.steps.iter().enumerate() {
        let next = step
            .strip_suffix('.')
            .and_then(|s| s.rsplit_once(" is a "))
            .and_then(|(_, to)| index_of(to))
            .with_context(|| format!("step {} \"{step}\" is not \"... is a X.\"", i + 1))?;
        ensure!(
            *step == edge_sentence(&sym[at], &sym[next]),
            "step {} \"{step}\" does not continue from {}",
            i + 1,
            sym[at]
        );
        ensure!(
            edge_set.contains(&(at, next)),
            "step {} \"{step}\" is not an edge",
            i + 1
        );
        at = next;
    }
    ensure!(
        at == p.target,
        "the steps end at {}, not at the target",
        sym[at]
    );
    Ok(())
}

/// Shape of the generated graphs. [`GenConfig::default`] matches the real validation set.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Histogram of the number of nodes (people included): `(nodes, weight)`.
    pub nodes: Vec<(usize, u32)>,
    /// Histogram of the reasoning depth (number of steps): `(depth, weight)`, depths 3 to 6.
    pub depths: Vec<(usize, u32)>,
    /// Probability that the root is node 1 rather than node 0.
    pub root_second: f64,
    /// Probability that a later node is an extra person (no parents).
    pub extra_person: f64,
    /// Weights of a concept's number of parents, 1, 2, ...
    pub parents: Vec<u32>,
    /// Probability that a concept grows on the root's side (else on the other person's).
    pub root_side: f64,
    /// Probability that each parent after the first is taken from the other side.
    pub cross: f64,
    /// Weight, relative to 1, of a node reachable from both starts as a parent.
    pub shared_weight: f64,
    /// Graphs with more edges are redrawn.
    pub max_edges: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            // Measured on the real validation set (300 problems).
            nodes: vec![
                (17, 2),
                (18, 5),
                (19, 14),
                (20, 18),
                (21, 37),
                (22, 48),
                (23, 58),
                (24, 52),
                (25, 40),
                (26, 22),
                (27, 3),
                (28, 1),
            ],
            depths: vec![(3, 124), (4, 133), (5, 36), (6, 7)],
            root_second: 0.65,
            // Fitted by simulation to the real statistics (docs/data.md).
            extra_person: 0.028,
            parents: vec![90, 66, 33, 12, 4, 1],
            root_side: 0.58,
            cross: 0.065,
            shared_weight: 0.03,
            max_edges: 56,
        }
    }
}

impl GenConfig {
    fn check(&self) -> Result<()> {
        ensure!(
            !self.nodes.is_empty() && self.nodes.iter().any(|&(_, w)| w > 0),
            "no node counts"
        );
        ensure!(
            self.nodes
                .iter()
                .all(|&(n, _)| (6..=PEOPLE.len() + CONCEPTS.len()).contains(&n)),
            "node counts must be between 6 and {}",
            PEOPLE.len() + CONCEPTS.len()
        );
        ensure!(
            self.depths.iter().any(|&(_, w)| w > 0)
                && self
                    .depths
                    .iter()
                    .all(|&(d, _)| (MIN_DEPTH..=MAX_DEPTH).contains(&d)),
            "depths must be between {MIN_DEPTH} and {MAX_DEPTH}"
        );
        ensure!(self.parents.iter().any(|&w| w > 0), "no parent counts");
        Ok(())
    }
}

/// A bit set of the two starting people that reach a node.
const ROOT_SIDE: u8 = 1;
const OTHER_SIDE: u8 = 2;

struct RawGraph {
    person: Vec<bool>,
    parents: Vec<Vec<usize>>,
    root: usize,
}

/// Grows one random DAG (see docs/data.md): two people, then nodes one at a time, each a
/// concept with parents drawn mostly from one side, or rarely an extra person.
fn grow_graph(rng: &mut Rng, cfg: &GenConfig) -> Option<RawGraph> {
    let node_weights: Vec<f64> = cfg.nodes.iter().map(|&(_, w)| f64::from(w)).collect();
    let n = cfg.nodes[rng.weighted(&node_weights)].0;
    let root = usize::from(rng.chance(cfg.root_second));
    let parent_weights: Vec<f64> = cfg.parents.iter().map(|&w| f64::from(w)).collect();

    let mut side = vec![0u8; n];
    side[root] = ROOT_SIDE;
    side[1 - root] = OTHER_SIDE;
    let mut person = vec![false; n];
    person[0] = true;
    person[1] = true;
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut outdeg = vec![0usize; n];

    let mut cands = Vec::new();
    let mut weights = Vec::new();
    for i in 2..n {
        if i + 1 < n && rng.chance(cfg.extra_person) {
            person[i] = true;
            continue;
        }
        let k = 1 + rng.weighted(&parent_weights);
        let home = if rng.chance(cfg.root_side) {
            ROOT_SIDE
        } else {
            OTHER_SIDE
        };
        for j in 0..k {
            let want = if j > 0 && rng.chance(cfg.cross) {
                ROOT_SIDE + OTHER_SIDE - home
            } else {
                home
            };
            cands.clear();
            weights.clear();
            for x in 0..i {
                if parents[i].contains(&x) {
                    continue;
                }
                let base = match side[x] {
                    s if s == want || s == 0 => 1.0,
                    s if s == ROOT_SIDE | OTHER_SIDE => cfg.shared_weight,
                    _ => continue,
                };
                // Prefer recent nodes and, mildly, nodes that already have children: this
                // gives the real graphs' depth and out-degree spread.
                cands.push(x);
                weights.push(base * (1.0 + outdeg[x] as f64).sqrt() * (1 + x) as f64);
            }
            if cands.is_empty() {
                break;
            }
            let x = cands[rng.weighted(&weights)];
            parents[i].push(x);
            outdeg[x] += 1;
            side[i] |= side[x];
        }
    }
    // An extra person left without children gets one, among the later concepts.
    for i in 2..n {
        if person[i] && outdeg[i] == 0 {
            let later: Vec<usize> = (i + 1..n).filter(|&c| !person[c]).collect();
            if later.is_empty() {
                return None;
            }
            let c = *rng.pick(&later);
            parents[c].push(i);
            outdeg[i] += 1;
        }
    }
    let people = person.iter().filter(|&&p| p).count();
    if people > PEOPLE.len() || n - people > CONCEPTS.len() {
        return None;
    }
    Some(RawGraph {
        person,
        parents,
        root,
    })
}

/// One attempt at a problem of the given depth; `None` when this graph does not fit.
fn attempt(rng: &mut Rng, cfg: &GenConfig, depth: usize) -> Option<ProsQaProblem> {
    let raw = grow_graph(rng, cfg)?;
    let n = raw.person.len();
    let edges: Vec<[usize; 2]> = (0..n)
        .flat_map(|c| raw.parents[c].iter().map(move |&p| [p, c]))
        .collect();
    if edges.len() > cfg.max_edges {
        return None;
    }
    let g = Graph::new(n, &edges).ok()?;
    let root = raw.root;
    let from_root = g.distances(root);
    let from_other = g.distances(1 - root);
    let leaf = |i: usize| !raw.person[i] && g.children[i].is_empty();

    // The target: a concept leaf only the root reaches, as deep as any such leaf.
    let root_only: Vec<usize> = (0..n)
        .filter(|&i| leaf(i) && from_root[i].is_some() && from_other[i].is_none())
        .collect();
    let deepest = root_only.iter().filter_map(|&i| from_root[i]).max()?;
    if deepest != depth {
        return None;
    }
    let targets: Vec<usize> = root_only
        .iter()
        .copied()
        .filter(|&i| from_root[i] == Some(depth))
        .collect();
    let target = *rng.pick(&targets);
    // The negative: a concept leaf only the other person reaches, no deeper than the target.
    let negs: Vec<usize> = (0..n)
        .filter(|&i| leaf(i) && from_root[i].is_none() && from_other[i].is_some_and(|d| d <= depth))
        .collect();
    if negs.is_empty() {
        return None;
    }
    let neg_target = *rng.pick(&negs);

    // Names.
    let mut people: Vec<&str> = PEOPLE.to_vec();
    let mut concepts: Vec<&str> = CONCEPTS.to_vec();
    rng.shuffle(&mut people);
    rng.shuffle(&mut concepts);
    let (mut pi, mut ci) = (0, 0);
    let symbols: Vec<String> = raw
        .person
        .iter()
        .map(|&is_p| {
            let s = if is_p {
                pi += 1;
                people[pi - 1]
            } else {
                ci += 1;
                concepts[ci - 1]
            };
            s.to_string()
        })
        .collect();

    // The chain of thought: a shortest path, uniformly among all of them.
    let counts = g.shortest_path_counts(&from_root);
    let mut path = vec![target];
    let mut at = target;
    while at != root {
        let d = from_root[at]?;
        let preds: Vec<usize> = g.parents[at]
            .iter()
            .copied()
            .filter(|&p| from_root[p] == Some(d - 1))
            .collect();
        let w: Vec<f64> = preds.iter().map(|&p| counts[p] as f64).collect();
        at = preds[rng.weighted(&w)];
        path.push(at);
    }
    path.reverse();
    let steps: Vec<String> = path
        .windows(2)
        .map(|w| edge_sentence(&symbols[w[0]], &symbols[w[1]]))
        .collect();

    let mut facts: Vec<String> = edges
        .iter()
        .map(|&[a, b]| edge_sentence(&symbols[a], &symbols[b]))
        .collect();
    rng.shuffle(&mut facts);
    let (t, ng) = (&symbols[target], &symbols[neg_target]);
    let query = if rng.chance(0.5) {
        query_sentence(&symbols[root], t, ng)
    } else {
        query_sentence(&symbols[root], ng, t)
    };
    facts.push(query);
    Some(ProsQaProblem {
        question: facts.join(" "),
        answer: answer_sentence(&symbols[root], t),
        steps,
        idx_to_symbol: symbols,
        edges,
        root,
        target,
        neg_target,
    })
}

/// One problem drawn with `rng`: a depth from `cfg.depths`, then graphs until one fits.
pub fn sample(cfg: &GenConfig, rng: &mut Rng) -> Result<ProsQaProblem> {
    let depth_weights: Vec<f64> = cfg.depths.iter().map(|&(_, w)| f64::from(w)).collect();
    let depth = cfg.depths[rng.weighted(&depth_weights)].0;
    const MAX_ATTEMPTS: usize = 100_000;
    for _ in 0..MAX_ATTEMPTS {
        if let Some(p) = attempt(rng, cfg, depth) {
            return Ok(p);
        }
    }
    bail!("no graph of depth {depth} in {MAX_ATTEMPTS} attempts: the configuration is too tight")
}

/// `n` distinct problems, deterministic in `(seed, split)`: different split names give
/// independent streams from the same seed.
pub fn generate(cfg: &GenConfig, n: usize, seed: u64, split: &str) -> Result<Vec<ProsQaProblem>> {
    cfg.check()?;
    let mut rng = Rng::with_label(seed, split);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let problem = sample(cfg, &mut rng)?;
        if seen.insert(problem.question.clone()) {
            out.push(problem);
        }
    }
    Ok(out)
}

/// The edges of the chain of thought, root to target, read from `steps`.
pub fn gold_path(p: &ProsQaProblem) -> Result<Vec<[usize; 2]>> {
    let index_of = |name: &str| p.idx_to_symbol.iter().position(|s| s == name);
    let mut at = p.root;
    p.steps
        .iter()
        .map(|step| {
            let next = step
                .strip_suffix('.')
                .and_then(|s| s.rsplit_once(" is a "))
                .and_then(|(_, to)| index_of(to))
                .with_context(|| format!("step \"{step}\" is not \"... is a X.\""))?;
            let edge = [at, next];
            at = next;
            Ok(edge)
        })
        .collect()
}

/// The problem told with `keep` of its facts: every edge of the chain of thought and
/// `keep` minus its length others at random, in a new random order (the question's query,
/// the answer and the steps unchanged). Dropping edges never makes the negative target
/// reachable or a path shorter, so the result is still a valid problem. `keep` is clamped to
/// the chain's length and the number of facts.
pub fn thin(p: &ProsQaProblem, keep: usize, rng: &mut Rng) -> Result<ProsQaProblem> {
    let path = gold_path(p)?;
    let mut others: Vec<[usize; 2]> = p
        .edges
        .iter()
        .copied()
        .filter(|e| !path.contains(e))
        .collect();
    rng.shuffle(&mut others);
    others.truncate(keep.saturating_sub(path.len()));
    let mut edges = path;
    edges.extend(others);
    rng.shuffle(&mut edges);
    let sym = &p.idx_to_symbol;
    let (_, query) = split_question(&p.question)?;
    let mut sentences: Vec<String> = edges
        .iter()
        .map(|&[a, b]| edge_sentence(&sym[a], &sym[b]))
        .collect();
    sentences.push(query.to_string());
    Ok(ProsQaProblem {
        question: sentences.join(" "),
        edges,
        ..p.clone()
    })
}

/// Reads a ProsQA-schema file (a JSON array of problems).
pub fn read_problems(path: &Path) -> Result<Vec<ProsQaProblem>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a ProsQA-schema JSON array", path.display()))
}

/// Serialises problems the way Python's `json.dump` writes the real files
/// (`", "` and `": "` separators, one line).
pub fn to_json(problems: &[ProsQaProblem]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, super::PythonFormatter);
    problems.serialize(&mut ser)?;
    Ok(out)
}

/// Writes problems to `path` atomically.
pub fn write_problems(path: &Path, problems: &[ProsQaProblem]) -> Result<()> {
    crate::files::write_atomic(path, &to_json(problems)?, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ProsQaProblem {
        generate(&GenConfig::default(), 1, 3, "test")
            .unwrap()
            .remove(0)
    }

    #[test]
    fn a_generated_problem_validates() {
        let p = sample();
        validate(&p).unwrap();
        assert_eq!(p.question.matches('?').count(), 1);
    }

    #[test]
    fn validate_catches_broken_problems() {
        let p = sample();
        let sym = p.idx_to_symbol.clone();
        let mut cases: Vec<(&str, ProsQaProblem)> = Vec::new();

        let mut q = p.clone();
        q.answer = answer_sentence(&sym[p.root], &sym[p.neg_target]);
        cases.push(("answer", q));

        let mut q = p.clone();
        q.target = p.neg_target;
        q.neg_target = p.target;
        cases.push(("answer", q));

        // The negative made reachable: an edge from the target to it, stated in the question.
        let mut q = p.clone();
        q.edges.push([p.target, p.neg_target]);
        q.question = format!(
            "{} {}",
            edge_sentence(&sym[p.target], &sym[p.neg_target]),
            q.question
        );
        cases.push(("negative target is reachable", q));

        let mut q = p.clone();
        q.question = q.question.replacen(&p.steps[1], "", 1).replace("  ", " ");
        cases.push(("lacks the edge sentence", q));

        let mut q = p.clone();
        q.question = format!(
            "Every {} is a {}. {}",
            sym[p.target], sym[p.root], q.question
        );
        cases.push(("not an edge", q));

        let mut q = p.clone();
        q.steps.remove(1);
        cases.push(("steps", q));

        let mut q = p.clone();
        q.steps.swap(0, 1);
        cases.push(("step 1", q));

        let mut q = p.clone();
        q.edges.push([9999, 0]);
        cases.push(("names a node past", q));

        let mut q = p.clone();
        q.question = q
            .question
            .replace(&format!("Is {} a", sym[p.root]), "Is Nobody a");
        cases.push(("query", q));

        for (needle, q) in cases {
            let err = format!("{:#}", validate(&q).expect_err(needle));
            assert!(err.contains(needle), "expected {needle:?} in {err:?}");
        }
    }

    #[test]
    fn bad_config_is_an_error() {
        let cfg = GenConfig {
            depths: vec![(2, 1)],
            ..GenConfig::default()
        };
        assert!(generate(&cfg, 1, 0, "train").is_err());
    }

    #[test]
    fn json_matches_the_real_layout() {
        let p = sample();
        let text = String::from_utf8(to_json(std::slice::from_ref(&p)).unwrap()).unwrap();
        assert!(text.starts_with("[{\"question\": \""), "{text}");
        assert!(text.contains("\", \"answer\": \""));
        assert!(text.contains("\"edges\": [["));
        assert!(text.ends_with('}') || text.ends_with("}]"));
        let back: Vec<ProsQaProblem> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, vec![p]);
    }

    #[test]
    fn a_thinned_problem_keeps_the_chain_and_stays_valid() {
        let p = sample();
        let path = gold_path(&p).unwrap();
        assert_eq!(path.len(), p.steps.len());
        let mut rng = Rng::new(5);
        for keep in [
            0,
            path.len(),
            path.len() + 3,
            p.edges.len(),
            p.edges.len() + 10,
        ] {
            let t = thin(&p, keep, &mut rng).unwrap();
            validate(&t).unwrap();
            let want = keep.clamp(path.len(), p.edges.len());
            assert_eq!(t.edges.len(), want, "keep {keep}");
            assert!(path.iter().all(|e| t.edges.contains(e)));
            assert!(t.edges.iter().all(|e| p.edges.contains(e)));
            assert_eq!(t.answer, p.answer);
        }
        // All facts kept: the same edges in a new order.
        let all = thin(&p, p.edges.len(), &mut rng).unwrap();
        assert_ne!(all.question, p.question);
        let (mut a, mut b) = (all.edges.clone(), p.edges.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
