//! Finding dependency cycles and showing them as chains (`a -> b -> c -> a`).

use std::collections::BTreeSet;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::source::Span;

/// One cycle: the names along it (first repeated at the end) and the span of the edge
/// that closes it.
pub(crate) struct Cycle {
    pub(crate) chain: Vec<String>,
    pub(crate) closing: Span,
}

/// Every strongly connected component with a cycle, reported once as its chain starting
/// from the alphabetically first member. Edge weights are the spans where the
/// dependency was written.
pub(crate) fn find<N>(graph: &DiGraph<N, Span>, name: impl Fn(&N) -> String) -> Vec<Cycle> {
    let mut out = Vec::new();
    for scc in petgraph::algo::tarjan_scc(graph) {
        let cyclic = scc.len() > 1 || graph.find_edge(scc[0], scc[0]).is_some();
        if !cyclic {
            continue;
        }
        let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
        let start = *members
            .iter()
            .min_by_key(|n| name(&graph[**n]))
            .expect("a component is not empty");
        let mut chain = vec![start];
        let closing = loop {
            let here = *chain.last().expect("the chain is not empty");
            let (next, span) = graph
                .edges(here)
                .filter(|e| members.contains(&e.target()))
                .map(|e| (e.target(), *e.weight()))
                .min_by_key(|(n, _)| name(&graph[*n]))
                .expect("every member of a cyclic component has an edge inside it");
            if let Some(pos) = chain.iter().position(|c| *c == next) {
                chain.drain(..pos);
                chain.push(next);
                break span;
            }
            chain.push(next);
        };
        out.push(Cycle {
            chain: chain.iter().map(|n| name(&graph[*n])).collect(),
            closing,
        });
    }
    out.sort_by(|a, b| a.chain.cmp(&b.chain));
    out
}
