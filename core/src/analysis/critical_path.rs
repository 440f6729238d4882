//! The critical path of a process tree: the chain of processes whose time made up the root's
//! wall time. The algorithm of Jaeger's UI for spans: walk back from the end of a process; the
//! child that ended last before the cursor is critical — the parent's time after it is the
//! parent's own — recurse into it, move the cursor to its start, and go on until no child ended
//! before the cursor; the rest back to the process's start is its own time.
//!
//! One difference, because process clocks are exact where span clocks may be skewed: a child
//! that ended after its parent (a background job) did not hold the parent up, so it is not a
//! candidate; Jaeger instead truncates such a child to its parent's end.

/// A process of the tree: its lifetime and its parent's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub start_ns: i64,
    pub end_ns: i64,
    pub parent: Option<usize>,
}

/// The nodes of processes given as `(span id, parent span id, start, end)`: parents found by
/// span id (one outside the list makes a root), an end before its start taken as the start.
pub fn nodes_by_span<'a>(
    spans: impl Iterator<Item = (&'a str, Option<&'a str>, i64, i64)> + Clone,
) -> Vec<Node> {
    let index: std::collections::HashMap<&str, usize> = spans
        .clone()
        .enumerate()
        .map(|(i, (span, ..))| (span, i))
        .collect();
    spans
        .map(|(_, parent, start_ns, end_ns)| Node {
            start_ns,
            end_ns: end_ns.max(start_ns),
            parent: parent.and_then(|p| index.get(p).copied()),
        })
        .collect()
}

/// A stretch of the root's wall time spent in process `node` (its own time, not a child's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub node: usize,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// The critical path of every root (a node without a parent), roots in start order, each
/// root's segments in time order, together covering the root's lifetime without overlap.
pub fn critical_path(nodes: &[Node]) -> Vec<Segment> {
    // Children sorted by end, latest first: the next candidate is found by moving forward.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut roots = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match n.parent.filter(|&p| p < nodes.len() && p != i) {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    for list in &mut children {
        list.sort_by_key(|&c| (std::cmp::Reverse(nodes[c].end_ns), std::cmp::Reverse(c)));
    }
    roots.sort_by_key(|&r| (nodes[r].start_ns, r));
    // How far each node's children list has been passed over: the cursor only moves back in
    // time, so a child passed over once is never a candidate again.
    let mut next = vec![0usize; nodes.len()];
    let mut out = Vec::new();
    for root in roots {
        let mut path = Vec::new();
        let (mut node, mut cursor) = (root, nodes[root].end_ns);
        // Each step enters a child once or leaves a node once: at most 2 × nodes steps.
        for _ in 0..=2 * nodes.len() {
            let here = nodes[node];
            let list = &children[node];
            while next[node] < list.len() && nodes[list[next[node]]].end_ns > cursor {
                next[node] += 1;
            }
            match list.get(next[node]).copied() {
                Some(child) if nodes[child].end_ns > here.start_ns => {
                    next[node] += 1;
                    let child_end = nodes[child].end_ns;
                    push(&mut path, node, child_end, cursor);
                    node = child;
                    cursor = child_end;
                }
                _ => {
                    push(&mut path, node, here.start_ns.min(cursor), cursor);
                    if node == root {
                        break;
                    }
                    cursor = here.start_ns.min(cursor);
                    // Checked when the tree was built: every non-root has a parent.
                    node = here.parent.unwrap_or(root);
                }
            }
        }
        path.reverse();
        out.extend(path);
    }
    out
}

/// Adds `[start, end)` of `node` (the path is built backwards in time) unless it is empty;
/// joined to the segment after it when that one is the same node's and starts where it ends.
fn push(path: &mut Vec<Segment>, node: usize, start_ns: i64, end_ns: i64) {
    if end_ns <= start_ns {
        return;
    }
    match path.last_mut() {
        Some(later) if later.node == node && later.start_ns == end_ns => later.start_ns = start_ns,
        _ => path.push(Segment {
            node,
            start_ns,
            end_ns,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(start_ns: i64, end_ns: i64, parent: Option<usize>) -> Node {
        Node {
            start_ns,
            end_ns,
            parent,
        }
    }

    /// (node, start, end) of each segment.
    fn path(nodes: &[Node]) -> Vec<(usize, i64, i64)> {
        let segments = critical_path(nodes);
        segments
            .iter()
            .map(|s| (s.node, s.start_ns, s.end_ns))
            .collect()
    }

    fn covers(nodes: &[Node], root: usize) {
        let segments: Vec<Segment> = critical_path(nodes)
            .into_iter()
            .filter(|s| nodes[root].start_ns <= s.start_ns && s.end_ns <= nodes[root].end_ns)
            .collect();
        let mut at = nodes[root].start_ns;
        for s in &segments {
            assert_eq!(s.start_ns, at, "{segments:?}");
            at = s.end_ns;
        }
        assert_eq!(at, nodes[root].end_ns, "{segments:?}");
    }

    #[test]
    fn a_sequential_script_puts_every_step_on_the_path() {
        // sh: a [1, 11), b [12, 32), c [33, 43); sh [0, 44).
        let nodes = [
            node(0, 44, None),
            node(1, 11, Some(0)),
            node(12, 32, Some(0)),
            node(33, 43, Some(0)),
        ];
        assert_eq!(
            path(&nodes),
            [
                (0, 0, 1),
                (1, 1, 11),
                (0, 11, 12),
                (2, 12, 32),
                (0, 32, 33),
                (3, 33, 43),
                (0, 43, 44)
            ]
        );
        covers(&nodes, 0);
    }

    #[test]
    fn a_trap_cleanup_does_not_hide_the_step_that_took_the_time() {
        // sh: sleep [1, 201), then the trap's rm [202, 203); sh [0, 204).
        let nodes = [
            node(0, 204, None),
            node(1, 201, Some(0)),
            node(202, 203, Some(0)),
        ];
        let p = path(&nodes);
        assert!(p.contains(&(1, 1, 201)), "{p:?}");
        assert!(p.contains(&(2, 202, 203)), "{p:?}");
        covers(&nodes, 0);
    }

    #[test]
    fn parallel_jobs_follow_the_longest_chain() {
        // make [0, 100): cc1 [1, 40) then ld [41, 99) on one slot; cc2 [1, 60) on the other.
        let nodes = [
            node(0, 100, None),
            node(1, 40, Some(0)),
            node(1, 60, Some(0)),
            node(41, 99, Some(0)),
            node(2, 39, Some(1)),
        ];
        // ld ended last; before its start, cc1 (40) ended last before 41, not cc2 (60).
        assert_eq!(
            path(&nodes),
            [
                (0, 0, 1),
                (1, 1, 2),
                (4, 2, 39),
                (1, 39, 40),
                (0, 40, 41),
                (3, 41, 99),
                (0, 99, 100)
            ]
        );
        covers(&nodes, 0);
    }

    #[test]
    fn a_background_job_that_outlives_its_parent_is_not_on_its_path() {
        // sh [0, 100): `sleep 500 &` [1, 500), `sleep 90` [2, 92).
        let nodes = [
            node(0, 100, None),
            node(1, 500, Some(0)),
            node(2, 92, Some(0)),
        ];
        assert_eq!(path(&nodes), [(0, 0, 2), (2, 2, 92), (0, 92, 100)]);
        covers(&nodes, 0);
    }

    #[test]
    fn zero_length_children_and_several_roots_terminate() {
        let nodes = [
            node(0, 10, None),
            node(5, 5, Some(0)),
            node(5, 5, Some(0)),
            node(20, 30, None),
            node(20, 30, Some(3)),
        ];
        assert_eq!(path(&nodes), [(0, 0, 10), (4, 20, 30)]);
        // A parent index out of range is a root, not a panic.
        assert_eq!(path(&[node(0, 1, Some(7))]), [(0, 0, 1)]);
    }
}
