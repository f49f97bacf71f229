//! The problem behind a prompt: its facts as a directed graph, the entity asked about (the
//! root) and the candidates, read from the ProsQA and ProntoQA sentence templates.
//!
//! - ProsQA: `Every X is a Y.`, `Tom is a X.`, and the question `Is Tom a X or Y?`.
//! - ProntoQA: `Every X is a Y.`, `Each X is a Y.`, `Xs are Ys.`, `Alex is a X.`, properties
//!   (`Xs are hot.`, `Each X is small.`) and their negations (`Every X is not happy.`, a node
//!   `not happy`), and the question `True or false: Alex is happy.` (candidates: the property
//!   and its negation, when they are nodes).
//!
//! Concepts are singular nodes (`wumpuses` is read as `wumpus`); the root is a node even when
//! no fact names it. A prompt with no recognisable fact or no question has no graph.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// The facts of a prompt as a graph over named nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemGraph {
    /// Node names, in order of first mention.
    pub nodes: Vec<String>,
    /// `[from, to]`: every `from` is a `to` (or has the property `to`).
    pub edges: Vec<[usize; 2]>,
    /// The entity the question asks about.
    pub root: usize,
    /// The answers the question names (ProsQA: its two concepts).
    pub candidates: Vec<usize>,
}

impl ProblemGraph {
    /// Breadth-first depth of every node from the root (`None`: unreachable).
    pub fn depths(&self) -> Vec<Option<usize>> {
        let mut children = vec![Vec::new(); self.nodes.len()];
        for &[a, b] in &self.edges {
            children[a].push(b);
        }
        let mut depth = vec![None; self.nodes.len()];
        depth[self.root] = Some(0);
        let mut queue = VecDeque::from([self.root]);
        while let Some(u) = queue.pop_front() {
            let d = depth[u].unwrap_or(0);
            for &v in &children[u] {
                if depth[v].is_none() {
                    depth[v] = Some(d + 1);
                    queue.push_back(v);
                }
            }
        }
        depth
    }

    /// Index of the node called `name`.
    pub fn node(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n == name)
    }
}

/// Nodes by name, in order of first mention.
#[derive(Default)]
struct Nodes {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Nodes {
    fn id(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }
}

/// The subject of `Xs are ...`, a plural noun, as its singular (`wumpuses`, `cats`).
fn singular(word: &str) -> &str {
    match word.strip_suffix("es") {
        Some(stem) if stem.ends_with('s') => stem,
        _ => word.strip_suffix('s').unwrap_or(word),
    }
}

/// The complement of `Xs are ...`: a plural concept (`wumpuses`) as its singular; anything
/// else (an adjective such as `nervous`) unchanged.
fn singular_complement(word: &str) -> &str {
    match word.strip_suffix("es") {
        Some(stem) if stem.ends_with('s') => stem,
        _ => word,
    }
}

fn is_word(w: &str) -> bool {
    !w.is_empty()
        && w.chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '\'')
}

/// One fact sentence (without its full stop) as `(from, to)`, or `None`.
fn fact(sentence: &str) -> Option<(String, String)> {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    if !words.iter().all(|w| is_word(w)) {
        return None;
    }
    let negated = |rest: &[&str]| -> Option<String> {
        match rest {
            ["not", p] => Some(format!("not {p}")),
            [p] => Some((*p).to_string()),
            _ => None,
        }
    };
    match words.as_slice() {
        // Every X is a Y / Each X is a Y / Tom is a Y
        ["Every" | "Each", x, "is", "a" | "an", y] => Some((x.to_string(), y.to_string())),
        [x, "is", "a" | "an", y] => Some((x.to_string(), y.to_string())),
        // Every X is (not) hot / Tom is (not) hot
        ["Every" | "Each", x, "is", rest @ ..] => Some((x.to_string(), negated(rest)?)),
        // Xs are (not) Ys / hot
        [xs, "are", rest @ ..] => {
            let rest: Vec<&str> = rest.iter().map(|w| singular_complement(w)).collect();
            // A plural subject is a concept, capitalised only as the sentence's first word.
            Some((singular(xs).to_lowercase(), negated(&rest)?))
        }
        [x, "is", rest @ ..] => Some((x.to_string(), negated(rest)?)),
        _ => None,
    }
}

/// The question: `(root, candidates)`.
fn question(sentence: &str) -> Option<(String, Vec<String>)> {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    match words.as_slice() {
        ["Is", who, "a" | "an", x, "or", y] => {
            Some((who.to_string(), vec![x.to_string(), y.to_string()]))
        }
        ["True", "or", "false:", rest @ ..] => {
            let (who, to) = fact(&rest.join(" "))?;
            Some((who, vec![to]))
        }
        _ => None,
    }
}

/// The graph of a ProsQA or ProntoQA prompt, or `None` when it has no fact or no question.
pub fn parse(prompt: &str) -> Option<ProblemGraph> {
    let mut nodes = Nodes::default();
    let mut edges = Vec::new();
    let mut asked = None;
    for raw in prompt.split_inclusive(['.', '?']) {
        let s = raw.trim();
        let Some(body) = s.strip_suffix('.').or_else(|| s.strip_suffix('?')) else {
            continue;
        };
        if let Some(q) = question(body) {
            asked = Some(q);
        } else if let Some((a, b)) = fact(body) {
            let e = [nodes.id(&a), nodes.id(&b)];
            if !edges.contains(&e) {
                edges.push(e);
            }
        }
    }
    let (root, named) = asked?;
    if edges.is_empty() {
        return None;
    }
    let root = nodes.id(&root);
    let mut candidates = Vec::new();
    for c in named {
        let negation = match c.strip_prefix("not ") {
            Some(p) => p.to_string(),
            None => format!("not {c}"),
        };
        for name in [c, negation] {
            if let Some(&i) = nodes.index.get(&name)
                && !candidates.contains(&i)
            {
                candidates.push(i);
            }
        }
    }
    Some(ProblemGraph {
        nodes: nodes.names,
        edges,
        root,
        candidates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(g: &ProblemGraph, ids: &[usize]) -> Vec<String> {
        ids.iter().map(|&i| g.nodes[i].clone()).collect()
    }

    #[test]
    fn prosqa_prompt() {
        let g = parse(
            "Every wumpus is a yumpus. Tom is a wumpus. Every yumpus is a gorpus. \
             Every bompus is a rempus. Is Tom a gorpus or bompus?",
        )
        .unwrap();
        assert_eq!(g.nodes[g.root], "Tom");
        assert_eq!(names(&g, &g.candidates), ["gorpus", "bompus"]);
        let named: Vec<(String, String)> = g
            .edges
            .iter()
            .map(|&[a, b]| (g.nodes[a].clone(), g.nodes[b].clone()))
            .collect();
        assert_eq!(named.len(), 4);
        assert!(named.contains(&("Tom".into(), "wumpus".into())));
        let depth = g.depths();
        assert_eq!(depth[g.node("gorpus").unwrap()], Some(3));
        assert_eq!(depth[g.node("bompus").unwrap()], None);
        assert_eq!(depth[g.root], Some(0));
    }

    #[test]
    fn prontoqa_forms_plurals_and_negations() {
        let g = parse(
            "Tumpuses are floral. Each jompus is not melodic. Tumpuses are numpuses. \
             Every lorpus is not happy. Numpuses are not metallic. Brimpuses are happy. \
             Numpuses are brimpuses. Brimpuses are luminous. Alex is a tumpus. \
             True or false: Alex is happy.",
        )
        .unwrap();
        assert_eq!(g.nodes[g.root], "Alex");
        assert_eq!(names(&g, &g.candidates), ["happy", "not happy"]);
        let has = |a: &str, b: &str| g.edges.contains(&[g.node(a).unwrap(), g.node(b).unwrap()]);
        assert!(has("tumpus", "numpus"));
        assert!(has("numpus", "not metallic"));
        assert!(has("jompus", "not melodic"));
        assert!(has("brimpus", "happy"));
        assert!(has("brimpus", "luminous"));
        assert_eq!(g.depths()[g.node("happy").unwrap()], Some(4));
    }

    #[test]
    fn no_facts_or_no_question_is_no_graph() {
        assert_eq!(parse("The quick brown fox. Is it a fox or a dog?"), None);
        assert_eq!(parse("Every wumpus is a yumpus."), None);
        assert_eq!(parse(""), None);
    }
}
