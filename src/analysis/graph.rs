//! The search under the lens: the prompt's problem graph ([`crate::data::facts`]) with, for
//! every thought and answer step and every lens layer, the probability of each node.
//!
//! A node's probability is that of the first token of its name as written after a space
//! (` wumpus`): the whole name when it is one token, as in the bundled model's vocabulary;
//! for a name of several tokens, the probability that the name starts there. Names that share
//! a first token share the probability; masses by depth count each token once, at the
//! shallowest of its nodes, so they sum to at most 1.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::data::facts::{self, ProblemGraph};
use crate::model::Tokenizer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphNode {
    pub name: String,
    /// Breadth-first depth from the root; `None`: unreachable.
    pub depth: Option<usize>,
    /// The token whose probability stands for the node.
    pub token: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphStep {
    /// The step's label (`T1`, `A1`, ...).
    pub label: String,
    /// `[layer][node]`: the lens probability of each node at each layer (the last row is the
    /// step's own output).
    #[serde(with = "finite_rows")]
    pub probs: Vec<Vec<f32>>,
}

/// The problem graph of a run with each step's probabilities on its nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphAnalysis {
    pub root: usize,
    pub candidates: Vec<usize>,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<[usize; 2]>,
    pub steps: Vec<GraphStep>,
}

/// A step's mass at one layer, by breadth-first depth.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthMass {
    /// Index d: the nodes at depth d (0: the root).
    pub by_depth: Vec<f32>,
    pub unreachable: f32,
}

impl DepthMass {
    /// Mass on the graph's nodes in all.
    pub fn total(&self) -> f32 {
        self.by_depth.iter().sum::<f32>() + self.unreachable
    }
}

impl GraphAnalysis {
    /// The deepest reachable depth.
    pub fn max_depth(&self) -> usize {
        self.nodes.iter().filter_map(|n| n.depth).max().unwrap_or(0)
    }

    /// Node `node`'s probability at step `step`, lens layer `layer`; 0 where not recorded or
    /// not finite.
    pub fn probability(&self, step: usize, layer: usize, node: usize) -> f32 {
        self.steps
            .get(step)
            .and_then(|s| s.probs.get(layer))
            .and_then(|r| r.get(node))
            .copied()
            .filter(|p| p.is_finite())
            .unwrap_or(0.0)
    }

    /// The mass of step `step` at lens layer `layer` by depth (each token counted once).
    pub fn mass_by_depth(&self, step: usize, layer: usize) -> DepthMass {
        let mut mass = DepthMass {
            by_depth: vec![0.0; self.max_depth() + 1],
            unreachable: 0.0,
        };
        if self
            .steps
            .get(step)
            .and_then(|s| s.probs.get(layer))
            .is_none()
        {
            return mass;
        }
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.sort_by_key(|&i| self.nodes[i].depth.unwrap_or(usize::MAX));
        let mut seen = std::collections::HashSet::new();
        for i in order {
            let node = &self.nodes[i];
            if !seen.insert(node.token) {
                continue;
            }
            let p = self.probability(step, layer, i);
            match node.depth {
                Some(d) => mass.by_depth[d] += p,
                None => mass.unreachable += p,
            }
        }
        mass
    }
}

/// The graph of `prompt` and the token standing for each node, or `None` when the prompt has
/// no recognisable problem.
pub fn problem_nodes(prompt: &str, tok: &Tokenizer) -> Result<Option<(ProblemGraph, Vec<u32>)>> {
    let Some(graph) = facts::parse(prompt) else {
        return Ok(None);
    };
    let mut tokens = Vec::with_capacity(graph.nodes.len());
    for name in &graph.nodes {
        let ids = tok.encode_plain(&format!(" {name}"))?;
        match ids.first() {
            Some(&id) => tokens.push(id),
            None => return Ok(None),
        }
    }
    Ok(Some((graph, tokens)))
}

/// Assembles the analysis from the graph, its node tokens and, per labelled step, the node
/// probabilities at every layer.
pub fn graph_analysis(graph: ProblemGraph, tokens: &[u32], steps: Vec<GraphStep>) -> GraphAnalysis {
    let depth = graph.depths();
    GraphAnalysis {
        root: graph.root,
        candidates: graph.candidates,
        nodes: graph
            .nodes
            .into_iter()
            .zip(tokens)
            .zip(depth)
            .map(|((name, &token), depth)| GraphNode { name, depth, token })
            .collect(),
        edges: graph.edges,
        steps,
    }
}

/// Rows of probabilities that may be NaN (unknown): written as `null`, read back NaN.
pub mod finite_rows {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<f32>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|row| {
            row.iter()
                .map(|x| x.is_finite().then_some(*x))
                .collect::<Vec<_>>()
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f32>>, D::Error> {
        let v = Vec::<Vec<Option<f32>>>::deserialize(d)?;
        Ok(v.into_iter()
            .map(|row| row.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> GraphAnalysis {
        let graph = facts::parse(
            "Tom is a wumpus. Every wumpus is a yumpus. Every bompus is a rempus. \
             Is Tom a yumpus or bompus?",
        )
        .unwrap();
        // Nodes in mention order: Tom, wumpus, yumpus, bompus, rempus; yumpus and rempus share
        // a token.
        let tokens = [10, 11, 12, 13, 12];
        let probs = vec![vec![0.05, 0.5, 0.2, 0.1, 0.2]];
        graph_analysis(
            graph,
            &tokens,
            vec![GraphStep {
                label: "T1".into(),
                probs,
            }],
        )
    }

    #[test]
    fn unknown_probabilities_are_null_in_json_and_nan_after() {
        let mut g = toy();
        g.steps[0].probs[0][1] = f32::NAN;
        let json = serde_json::to_string(&g).unwrap();
        assert!(json.contains("[0.05,null,0.2"), "{json}");
        let back: GraphAnalysis = serde_json::from_str(&json).unwrap();
        assert!(back.steps[0].probs[0][1].is_nan());
        assert_eq!(back.nodes, g.nodes);
        // A NaN is no mass.
        assert_eq!(g.mass_by_depth(0, 0).by_depth[1], 0.0);
    }

    #[test]
    fn depth_masses_count_each_token_once_at_its_shallowest_node() {
        let g = toy();
        assert_eq!(g.nodes[2].depth, Some(2));
        assert_eq!(g.nodes[4].depth, None);
        let m = g.mass_by_depth(0, 0);
        assert_eq!(m.by_depth, vec![0.05, 0.5, 0.2]);
        assert!((m.unreachable - 0.1).abs() < 1e-6);
        assert!(m.total() <= 1.0);
        // Past the recorded steps or layers: no mass.
        assert_eq!(g.mass_by_depth(3, 0).total(), 0.0);
    }
}
