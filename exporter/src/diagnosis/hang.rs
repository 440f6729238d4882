//! Hangs and deadlocks among stalled processes: each stalled process waits on something (its
//! [`Wait`]); where that is another traced process — the other end of a pipe, the holder of a
//! lock, a child — the wait is an edge. A process is hung when what it waits on does not move:
//! a stalled process, a peer outside the trace, the disk, a lock inside itself. Only the end of
//! each chain is a hang (its waiters are listed with it, not reported again); a cycle of
//! stalled processes is a deadlock. Waiting on a progressing process is not a hang, nor is a
//! timed sleep, nor an event loop while anything else in the trace still works.

use std::collections::{HashMap, HashSet};

use super::waits::{Held, Probe, Wait};

/// What the decision needs to know of the traced processes at one moment.
#[derive(Debug, Default)]
pub struct World {
    /// Stalled for `hang_after`, and what each waits on.
    pub stalled: HashMap<u32, Probe>,
    /// Every live traced process.
    pub traced: HashSet<u32>,
    /// Pipe inode → its traced holders `(tgid, reads, writes)`.
    pub pipes: HashMap<u64, Vec<(u32, bool, bool)>>,
    pub locks: Vec<Held>,
    /// Traced live children of each traced process.
    pub children: HashMap<u32, Vec<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `tgid` is hung on `probe.wait`; `waiters` (stalled) wait on it, directly or not.
    Hang { tgid: u32, waiters: Vec<u32> },
    /// These processes wait on each other, in order: each one's wait names the next.
    Deadlock { cycle: Vec<u32> },
}

impl World {
    /// The traced processes `tgid`'s wait is on (itself included: a reader holding its own
    /// pipe's write end waits on itself).
    pub fn targets(&self, tgid: u32) -> Vec<u32> {
        let Some(probe) = self.stalled.get(&tgid) else {
            return Vec::new();
        };
        let mut out: Vec<u32> = match &probe.wait {
            // An event loop with children (`timeout`, a build tool polling its jobs) waits on
            // them as much as on anything.
            Wait::Children | Wait::EventLoop(_) => {
                self.children.get(&tgid).cloned().unwrap_or_default()
            }
            Wait::Pipe { inode, writing } => self
                .pipes
                .get(inode)
                .into_iter()
                .flatten()
                .filter(|(_, reads, writes)| if *writing { *reads } else { *writes })
                .map(|(pid, ..)| *pid)
                .collect(),
            Wait::Lock { device, inode, .. } => self
                .locks
                .iter()
                .filter(|h| h.device == *device && h.inode == *inode)
                .map(|h| h.pid)
                .filter(|pid| self.traced.contains(pid))
                .collect(),
            _ => Vec::new(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether `tgid` waits on traced processes only, every one of them stalled.
    fn blocked_by_stalled(&self, tgid: u32) -> bool {
        let targets = self.targets(tgid);
        !targets.is_empty() && targets.iter().all(|t| self.stalled.contains_key(t))
    }

    /// Whether `tgid` itself is what does not move (the end of a chain).
    fn is_end(&self, tgid: u32, everything_stalled: bool) -> bool {
        let Some(probe) = self.stalled.get(&tgid) else {
            return false;
        };
        match &probe.wait {
            Wait::Running | Wait::Sleep | Wait::Children => false,
            Wait::EventLoop(_) => everything_stalled && self.targets(tgid).is_empty(),
            // No traced partner: the other end is outside the trace, or nobody.
            Wait::Pipe { .. } | Wait::Lock { .. } => self.targets(tgid).is_empty(),
            Wait::Socket { .. }
            | Wait::Futex
            | Wait::Stopped
            | Wait::Uninterruptible(_)
            | Wait::Other(_) => true,
        }
    }

    pub fn decide(&self) -> Vec<Verdict> {
        let everything_stalled = self.traced.iter().all(|t| self.stalled.contains_key(t));
        let mut verdicts = Vec::new();
        // Edges between stalled processes whose every target is stalled: a cycle of those
        // cannot move.
        let blocked: Vec<u32> = {
            let mut v: Vec<u32> = self
                .stalled
                .keys()
                .copied()
                .filter(|&t| self.blocked_by_stalled(t))
                .collect();
            v.sort_unstable();
            v
        };
        let blocked_set: HashSet<u32> = blocked.iter().copied().collect();
        let edges = |t: u32| -> Vec<u32> {
            self.targets(t)
                .into_iter()
                .filter(|x| blocked_set.contains(x))
                .collect()
        };
        let mut in_cycle = HashSet::new();
        for component in strongly_connected(&blocked, edges) {
            let self_loop = component.len() == 1 && edges(component[0]).contains(&component[0]);
            // A cycle of waits on children alone is not possible; one with a lock or a pipe is
            // a deadlock.
            let concrete = component
                .iter()
                .any(|t| !matches!(self.stalled.get(t).map(|p| &p.wait), Some(Wait::Children)));
            if (component.len() > 1 || self_loop) && concrete {
                in_cycle.extend(component.iter().copied());
                verdicts.push(Verdict::Deadlock {
                    cycle: cycle_order(&component, edges, &self.stalled),
                });
            }
        }
        let mut ends: Vec<u32> = self
            .stalled
            .keys()
            .copied()
            .filter(|&t| self.is_end(t, everything_stalled) && !in_cycle.contains(&t))
            .collect();
        ends.sort_unstable();
        for end in ends {
            verdicts.push(Verdict::Hang {
                tgid: end,
                waiters: self.waiters_of(end, &blocked_set),
            });
        }
        verdicts
    }

    /// The stalled processes that wait on `end`, directly or through others.
    fn waiters_of(&self, end: u32, blocked: &HashSet<u32>) -> Vec<u32> {
        let mut found: Vec<u32> = Vec::new();
        let mut frontier = vec![end];
        while let Some(node) = frontier.pop() {
            for &w in blocked {
                if w != end && !found.contains(&w) && self.targets(w).contains(&node) {
                    found.push(w);
                    frontier.push(w);
                }
            }
        }
        found.sort_unstable();
        found
    }
}

/// The component as a walk along its edges from its lowest member that is not waiting on
/// children (the one whose lock or pipe shows the cycle best).
fn cycle_order(
    component: &[u32],
    edges: impl Fn(u32) -> Vec<u32>,
    stalled: &HashMap<u32, Probe>,
) -> Vec<u32> {
    let members: HashSet<u32> = component.iter().copied().collect();
    let start = component
        .iter()
        .copied()
        .filter(|t| !matches!(stalled.get(t).map(|p| &p.wait), Some(Wait::Children)))
        .min()
        .unwrap_or(component[0]);
    let mut order = vec![start];
    let mut node = start;
    while order.len() < component.len() {
        let Some(next) = edges(node)
            .into_iter()
            .find(|n| members.contains(n) && !order.contains(n))
        else {
            break;
        };
        order.push(next);
        node = next;
    }
    // Members the walk did not reach (a component with branches), after it.
    let mut rest: Vec<u32> = component
        .iter()
        .copied()
        .filter(|t| !order.contains(t))
        .collect();
    rest.sort_unstable();
    order.extend(rest);
    order
}

/// Tarjan's strongly connected components over `nodes`; each component sorted.
fn strongly_connected(nodes: &[u32], edges: impl Fn(u32) -> Vec<u32>) -> Vec<Vec<u32>> {
    struct State {
        index: HashMap<u32, usize>,
        low: HashMap<u32, usize>,
        stack: Vec<u32>,
        on_stack: HashSet<u32>,
        next: usize,
        out: Vec<Vec<u32>>,
    }
    fn visit(v: u32, edges: &dyn Fn(u32) -> Vec<u32>, s: &mut State) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in edges(v) {
            if !s.index.contains_key(&w) {
                visit(w, edges, s);
                let lw = s.low[&w];
                let lv = s.low.get_mut(&v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(&w) {
                let iw = s.index[&w];
                let lv = s.low.get_mut(&v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[&v] == s.index[&v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            component.sort_unstable();
            s.out.push(component);
        }
    }
    let mut s = State {
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: HashSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in nodes {
        if !s.index.contains_key(&v) {
            visit(v, &edges, &mut s);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(wait: Wait) -> Probe {
        Probe {
            wait,
            state: 'S',
            wchan: String::new(),
            syscall: String::new(),
        }
    }

    fn lock(inode: u64) -> Wait {
        Wait::Lock {
            device: (8, 1),
            inode,
            path: format!("/tmp/{inode}"),
        }
    }

    fn held(pid: u32, inode: u64) -> Held {
        Held {
            pid,
            device: (8, 1),
            inode,
        }
    }

    fn world(stalled: &[(u32, Wait)], traced: &[u32]) -> World {
        World {
            stalled: stalled
                .iter()
                .map(|(t, w)| (*t, probe(w.clone())))
                .collect(),
            traced: traced.iter().copied().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn two_processes_each_waiting_for_the_others_lock_are_a_deadlock() {
        // flock a -c 'flock b' (10 holds a, its child 11 waits for b) against the reverse.
        let mut w = world(
            &[
                (10, Wait::Children),
                (11, lock(2)),
                (20, Wait::Children),
                (21, lock(1)),
            ],
            &[1, 10, 11, 20, 21],
        );
        w.locks = vec![held(10, 1), held(20, 2)];
        w.children = HashMap::from([(1, vec![10, 20]), (10, vec![11]), (20, vec![21])]);
        assert_eq!(
            w.decide(),
            vec![Verdict::Deadlock {
                cycle: vec![11, 20, 21, 10]
            }]
        );
    }

    #[test]
    fn a_pipe_cycle_is_a_deadlock() {
        // 30 writes into pipe 7 that 31 reads; 31 writes into pipe 8 that 30 reads.
        let mut w = world(
            &[
                (
                    30,
                    Wait::Pipe {
                        inode: 7,
                        writing: true,
                    },
                ),
                (
                    31,
                    Wait::Pipe {
                        inode: 8,
                        writing: true,
                    },
                ),
            ],
            &[30, 31],
        );
        w.pipes = HashMap::from([
            (7, vec![(30, false, true), (31, true, false)]),
            (8, vec![(31, false, true), (30, true, false)]),
        ]);
        assert_eq!(
            w.decide(),
            vec![Verdict::Deadlock {
                cycle: vec![30, 31]
            }]
        );
    }

    #[test]
    fn waiting_on_a_working_partner_or_sleeping_is_not_a_hang() {
        // 40 reads a pipe that 41 (working: not stalled) writes; 42 sleeps; 43 waits for its
        // working child 44.
        let mut w = world(
            &[
                (
                    40,
                    Wait::Pipe {
                        inode: 9,
                        writing: false,
                    },
                ),
                (42, Wait::Sleep),
                (43, Wait::Children),
            ],
            &[40, 41, 42, 43, 44],
        );
        w.pipes = HashMap::from([(9, vec![(40, true, false), (41, false, true)])]);
        w.children = HashMap::from([(43, vec![44])]);
        assert_eq!(w.decide(), vec![]);
    }

    #[test]
    fn the_end_of_a_chain_is_the_hang_and_its_waiters_are_named() {
        // 50 waits for its child 51, which reads from a socket whose peer never answers; 52
        // reads 50's output pipe.
        let mut w = world(
            &[
                (50, Wait::Children),
                (
                    51,
                    Wait::Socket {
                        call: "read",
                        peer: Some("127.0.0.1:9".into()),
                    },
                ),
                (
                    52,
                    Wait::Pipe {
                        inode: 3,
                        writing: false,
                    },
                ),
            ],
            &[50, 51, 52, 60],
        );
        w.children = HashMap::from([(50, vec![51])]);
        w.pipes = HashMap::from([(3, vec![(50, false, true), (52, true, false)])]);
        assert_eq!(
            w.decide(),
            vec![Verdict::Hang {
                tgid: 51,
                waiters: vec![50, 52]
            }]
        );
    }

    #[test]
    fn an_event_loop_hangs_only_when_the_whole_trace_is_stalled() {
        let w = world(&[(70, Wait::EventLoop("epoll_wait"))], &[70, 71]);
        assert_eq!(w.decide(), vec![]);
        let w = world(&[(70, Wait::EventLoop("epoll_wait"))], &[70]);
        assert_eq!(
            w.decide(),
            vec![Verdict::Hang {
                tgid: 70,
                waiters: vec![]
            }]
        );
    }

    #[test]
    fn a_timeout_around_a_deadlock_is_one_of_its_waiters_not_a_hang() {
        // 90 (timeout, in sigsuspend) runs 91, which reads its own pipe 5 written by nobody
        // but 92, which waits for 91's lock.
        let mut w = world(
            &[
                (90, Wait::EventLoop("rt_sigsuspend")),
                (
                    91,
                    Wait::Pipe {
                        inode: 5,
                        writing: false,
                    },
                ),
                (92, lock(6)),
            ],
            &[90, 91, 92],
        );
        w.children = HashMap::from([(90, vec![91])]);
        w.pipes = HashMap::from([(5, vec![(91, true, false), (92, false, true)])]);
        w.locks = vec![held(91, 6)];
        assert_eq!(
            w.decide(),
            vec![Verdict::Deadlock {
                cycle: vec![91, 92]
            }]
        );
    }

    #[test]
    fn a_reader_holding_its_own_pipes_write_end_waits_on_itself() {
        let mut w = world(
            &[(
                80,
                Wait::Pipe {
                    inode: 4,
                    writing: false,
                },
            )],
            &[80, 81],
        );
        w.pipes = HashMap::from([(4, vec![(80, true, true)])]);
        assert_eq!(w.decide(), vec![Verdict::Deadlock { cycle: vec![80] }]);
    }
}
