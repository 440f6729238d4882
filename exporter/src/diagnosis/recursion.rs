//! Fork explosion: a process that starts itself again and again — the same program with the
//! same first argument, each one the parent of the next — a recursion that does not end or a
//! fork bomb. A chain `fork_depth` long is a finding (legitimate recursion — `make -C sub`,
//! a script calling a helper — is a few levels deep).
//!
//! A child is created with its parent's image, so a process's own image is known once it
//! starts a child of its own: that child's inherited image is it. The chain's length is kept
//! per process that started a child, for live and recently ended ones (a fork bomb's parents
//! exit as their children start), bounded.

use std::collections::{HashMap, VecDeque};

use crate::{
    event::{Finding, FindingKind, Severity},
    process::model::{Process, ProcessKey},
};

/// Processes remembered at most (their parent and their chain).
const REMEMBERED: usize = 65_536;

/// What makes two processes "the same program" here: its executable's name and its first
/// argument (`bash rec.sh`, `sh -c`).
fn image_of(p: &Process) -> String {
    let first = p
        .exec
        .as_ref()
        .and_then(|e| e.argv.get(1).cloned())
        .unwrap_or_default();
    format!("{}\0{first}", p.executable_name())
}

#[derive(Debug, Clone)]
struct Link {
    image: String,
    /// Consecutive ancestors with the same image, itself included.
    depth: u32,
    /// The first process of that run of ancestors.
    root: ProcessKey,
}

#[derive(Debug, Default)]
pub struct Recursion {
    parents: HashMap<ProcessKey, ProcessKey>,
    links: HashMap<ProcessKey, Link>,
    order: VecDeque<ProcessKey>,
    /// Chains already reported, by their first process.
    reported: Vec<ProcessKey>,
}

impl Recursion {
    fn remember(&mut self, key: ProcessKey) {
        self.order.push_back(key);
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.parents.remove(&old);
                self.links.remove(&old);
            }
        }
    }

    /// Process `child` started: its parent's image is now known. A finding when the parent
    /// closes a chain of `fork_depth`.
    pub fn started(&mut self, child: &Process, fork_depth: u32) -> Option<Finding> {
        let parent = child.parent?;
        self.parents.insert(child.key, parent);
        self.remember(child.key);
        if self.links.contains_key(&parent) {
            return None;
        }
        let image = image_of(child);
        let above = self
            .parents
            .get(&parent)
            .and_then(|g| self.links.get(g).map(|l| (*g, l)))
            .filter(|(_, l)| l.image == image);
        let link = match above {
            Some((_, l)) => Link {
                image,
                depth: l.depth + 1,
                root: l.root,
            },
            None => Link {
                image,
                depth: 1,
                root: parent,
            },
        };
        let (depth, root) = (link.depth, link.root);
        self.links.insert(parent, link);
        if depth < fork_depth || self.reported.contains(&root) {
            return None;
        }
        self.reported.push(root);
        let name = child.executable_name().to_owned();
        Some(Finding {
            kind: FindingKind::ForkExplosion,
            severity: Severity::Critical,
            summary: format!(
                "{name} started itself {depth} levels deep, one inside the other from pid {}: a recursion that does not end, or a fork bomb",
                root.tgid
            ),
            value: f64::from(depth),
            unit: "levels",
            evidence: vec![
                ("depth", depth.into()),
                ("root_pid", root.tgid.into()),
                ("executable", name.into()),
                ("command", child.command_line().into()),
            ],
            involved: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Body, Event, Exec};
    use crate::process::tracker::Tracker;

    fn exec(argv: &[&str]) -> Body {
        Body::Exec(Box::new(Exec {
            exe: Some(format!("/bin/{}", argv[0])),
            cwd: None,
            filename: argv[0].into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            argv_truncated: false,
            argv_total_bytes: 0,
            hidden: false,
        }))
    }

    /// A chain of `n` processes, each forked by the previous; those with `exec` set run it.
    fn chain(n: u32, argv: impl Fn(u32) -> Vec<String>) -> Option<Finding> {
        let mut t = Tracker::default();
        let mut r = Recursion::default();
        let mut found = None;
        for i in 0..n {
            let tgid = 100 + i;
            let mut ev = Event::sample(tgid, Body::Fork);
            ev.common.start_ns = 1_000 + u64::from(i);
            if i > 0 {
                ev.common.tree_ppid = tgid - 1;
                ev.common.ppid = tgid - 1;
                ev.common.parent_start_ns = 1_000 + u64::from(i - 1);
            }
            t.apply(ev);
            // Started with its parent's image, then it runs its own.
            if i > 0 {
                let p = t.process(tgid).unwrap().clone();
                found = found.or(r.started(&p, 20));
            }
            let args = argv(i);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut ev = Event::sample(tgid, exec(&args));
            ev.common.start_ns = 1_000 + u64::from(i);
            t.apply(ev);
        }
        found
    }

    #[test]
    fn a_program_starting_itself_deeper_and_deeper_is_found_once() {
        let f = chain(40, |_| vec!["sh".into(), "rec.sh".into()]).expect("a recursion");
        assert_eq!(f.kind, FindingKind::ForkExplosion);
        assert_eq!(f.value, 20.0);
        assert_eq!(f.number("root_pid"), Some(100.0));
    }

    #[test]
    fn a_few_levels_or_different_programs_are_not() {
        assert!(chain(10, |_| vec!["sh".into(), "rec.sh".into()]).is_none());
        assert!(chain(40, |i| vec![format!("tool{i}"), "x".into()]).is_none());
        // make -C a → make -C b: the same first argument, a few levels: fine.
        assert!(chain(5, |i| vec!["make".into(), "-C".into(), format!("d{i}")]).is_none());
    }
}
