//! The prompt parser against the problems' own graphs: on generated ProsQA problems here,
//! and on the real validation files (`cargo test --test facts -- --ignored`, with
//! `../shared/data` beside the repository; never needed to pass).

use std::collections::BTreeSet;
use std::path::Path;

use coconut_lens::data::facts::{self, ProblemGraph};
use coconut_lens::data::prosqa::{self, GenConfig, Graph, ProsQaProblem};

/// The parsed graph has the problem's named edges, root, candidates and BFS depths.
fn check(p: &ProsQaProblem) {
    let g: ProblemGraph = facts::parse(&p.question).expect("a ProsQA prompt has a graph");
    let sym = &p.idx_to_symbol;
    let named = |edges: &mut dyn Iterator<Item = (String, String)>| -> BTreeSet<(String, String)> {
        edges.collect()
    };
    let want = named(
        &mut p
            .edges
            .iter()
            .map(|&[a, b]| (sym[a].clone(), sym[b].clone())),
    );
    let got = named(
        &mut g
            .edges
            .iter()
            .map(|&[a, b]| (g.nodes[a].clone(), g.nodes[b].clone())),
    );
    assert_eq!(got, want, "{}", p.question);
    assert_eq!(g.nodes[g.root], sym[p.root]);
    let cands: BTreeSet<&String> = g.candidates.iter().map(|&i| &g.nodes[i]).collect();
    assert_eq!(cands, BTreeSet::from([&sym[p.target], &sym[p.neg_target]]));
    let want_depth = Graph::of(p).unwrap().distances(p.root);
    let depth = g.depths();
    for (i, name) in sym.iter().enumerate() {
        // Nodes no fact names (none in practice) are not in the parsed graph.
        if let Some(j) = g.node(name) {
            assert_eq!(depth[j], want_depth[i], "depth of {name}");
        }
    }
}

#[test]
fn generated_prosqa_prompts_parse_to_their_graphs() {
    let problems = prosqa::generate(&GenConfig::default(), 300, 3, "facts").unwrap();
    problems.iter().for_each(check);
}

fn shared(rel: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    std::fs::read_to_string(path).ok()
}

#[test]
#[ignore = "needs ../shared/data/prosqa/prosqa_valid.json"]
fn real_prosqa_validation_parses_to_its_graphs() {
    let text = shared("prosqa/prosqa_valid.json").expect("../shared/data beside the repository");
    let problems: Vec<ProsQaProblem> = serde_json::from_str(&text).unwrap();
    assert_eq!(problems.len(), 300);
    problems.iter().for_each(check);
}

#[test]
#[ignore = "needs ../shared/data/prontoqa/prontoqa_valid.json"]
fn real_prontoqa_validation_has_its_entity_as_root() {
    let text =
        shared("prontoqa/prontoqa_valid.json").expect("../shared/data beside the repository");
    let problems: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    for p in &problems {
        let q = p["question"].as_str().unwrap();
        let g = facts::parse(q).unwrap_or_else(|| panic!("no graph: {q}"));
        let asked = q.rsplit("True or false: ").next().unwrap();
        let entity = asked.split_whitespace().next().unwrap();
        assert_eq!(g.nodes[g.root], entity, "{q}");
        assert!(!g.candidates.is_empty(), "no candidate node: {q}");
        // The chain's last conclusion is reachable from the root.
        let depth = g.depths();
        assert!(g.candidates.iter().any(|&c| depth[c].is_some()), "{q}");
    }
}
