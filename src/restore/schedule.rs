//! Which item of a parallel restore (`restore(jobs => N)`) may start next: plain Rust.
//!
//! As pg_restore -j does: an item starts once every item it depends on is done, and never
//! beside a running item it would wait for on a lock. Each item names the tables it locks
//! (the root of a partition or inheritance tree stands for the whole tree) and how:
//! loading rows (ROW EXCLUSIVE: loads of different partitions of one tree run side by side),
//! building an index (SHARE: several indexes of one table build side by side), or anything
//! else (ALTER TABLE, CREATE TRIGGER, COMMENT ...: alone on its tables). An item that names
//! no table runs alone.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Rows are loaded (COPY / INSERT).
    Load,
    /// An index is built (CREATE INDEX).
    Share,
    /// Anything else: alone on the table.
    Exclusive,
}

impl Lock {
    fn compatible(self, other: Lock) -> bool {
        matches!(
            (self, other),
            (Lock::Load, Lock::Load) | (Lock::Share, Lock::Share)
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct Item {
    /// Items (by index) that must be done before this one starts.
    pub deps: Vec<usize>,
    /// Tables it locks; empty: it runs alone.
    pub locks: Vec<(String, Lock)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done,
}

pub struct Scheduler {
    items: Vec<Item>,
    state: Vec<State>,
    /// Deps of each item not done yet.
    missing: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    /// Waiting items whose deps are all done, in order.
    ready: BTreeSet<usize>,
    /// Locks held by running items: table -> (mode, how many).
    held: HashMap<String, (Lock, usize)>,
    running: usize,
    /// A running item that runs alone.
    alone: bool,
    done: usize,
}

impl Scheduler {
    pub fn new(items: Vec<Item>) -> Scheduler {
        let n = items.len();
        let mut missing = vec![0; n];
        let mut dependents = vec![Vec::new(); n];
        for (i, item) in items.iter().enumerate() {
            let mut deps: Vec<usize> = item
                .deps
                .iter()
                .copied()
                .filter(|&d| d < n && d != i)
                .collect();
            deps.sort_unstable();
            deps.dedup();
            missing[i] = deps.len();
            for d in deps {
                dependents[d].push(i);
            }
        }
        let ready = (0..n).filter(|&i| missing[i] == 0).collect();
        Scheduler {
            items,
            state: vec![State::Waiting; n],
            missing,
            dependents,
            ready,
            held: HashMap::new(),
            running: 0,
            alone: false,
            done: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn all_done(&self) -> bool {
        self.done == self.items.len()
    }

    pub fn running(&self) -> usize {
        self.running
    }

    fn conflicts(&self, i: usize) -> bool {
        let item = &self.items[i];
        if self.alone || (item.locks.is_empty() && self.running > 0) {
            return true;
        }
        item.locks.iter().any(|(table, mode)| {
            self.held
                .get(table)
                .is_some_and(|(held, n)| *n > 0 && !mode.compatible(*held))
        })
    }

    /// The first item that may start now, marked running; None if none may.
    pub fn start_next(&mut self) -> Option<usize> {
        let i = self.ready.iter().copied().find(|&i| !self.conflicts(i));
        let i = match i {
            Some(i) => i,
            // Nothing runs and nothing is ready, yet items wait: their dependencies form a
            // loop (or point at each other in a way no order satisfies). Take them in order,
            // as the serial restore would.
            None if self.running == 0 && !self.all_done() && self.ready.is_empty() => {
                (0..self.items.len()).find(|&i| self.state[i] == State::Waiting)?
            }
            None => return None,
        };
        self.start(i);
        Some(i)
    }

    fn start(&mut self, i: usize) {
        self.ready.remove(&i);
        self.state[i] = State::Running;
        self.running += 1;
        if self.items[i].locks.is_empty() {
            self.alone = true;
        }
        for (table, mode) in &self.items[i].locks {
            let e = self.held.entry(table.clone()).or_insert((*mode, 0));
            if e.1 == 0 {
                e.0 = *mode;
            }
            e.1 += 1;
        }
    }

    /// Item `i` (running) is done, whatever its outcome.
    pub fn finish(&mut self, i: usize) {
        if self.state[i] != State::Running {
            return;
        }
        self.state[i] = State::Done;
        self.running -= 1;
        self.done += 1;
        if self.items[i].locks.is_empty() {
            self.alone = false;
        }
        for (table, _) in &self.items[i].locks {
            if let Some(e) = self.held.get_mut(table) {
                e.1 = e.1.saturating_sub(1);
                if e.1 == 0 {
                    self.held.remove(table);
                }
            }
        }
        for d in std::mem::take(&mut self.dependents[i]) {
            if self.state[d] == State::Waiting {
                self.missing[d] = self.missing[d].saturating_sub(1);
                if self.missing[d] == 0 {
                    self.ready.insert(d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(deps: &[usize], locks: &[(&str, Lock)]) -> Item {
        Item {
            deps: deps.to_vec(),
            locks: locks.iter().map(|(t, m)| (t.to_string(), *m)).collect(),
        }
    }

    #[test]
    fn items_wait_for_their_dependencies() {
        // 0: load a, 1: load b, 2: index on a (after 0), 3: fk a -> b (after 2 and 1)
        let mut s = Scheduler::new(vec![
            item(&[], &[("a", Lock::Load)]),
            item(&[], &[("b", Lock::Load)]),
            item(&[0], &[("a", Lock::Share)]),
            item(&[2, 1], &[("a", Lock::Exclusive), ("b", Lock::Exclusive)]),
        ]);
        assert_eq!(s.start_next(), Some(0));
        assert_eq!(s.start_next(), Some(1));
        assert_eq!(s.start_next(), None);
        s.finish(0);
        assert_eq!(s.start_next(), Some(2));
        s.finish(2);
        assert_eq!(s.start_next(), None, "the fk waits for b's rows");
        s.finish(1);
        assert_eq!(s.start_next(), Some(3));
        s.finish(3);
        assert!(s.all_done());
    }

    #[test]
    fn two_items_that_lock_one_table_exclusively_never_run_together() {
        let mut s = Scheduler::new(vec![
            item(&[], &[("t", Lock::Exclusive)]),
            item(&[], &[("t", Lock::Exclusive)]),
            item(&[], &[("u", Lock::Exclusive)]),
        ]);
        assert_eq!(s.start_next(), Some(0));
        assert_eq!(s.start_next(), Some(2), "another table's item goes ahead");
        assert_eq!(s.start_next(), None);
        s.finish(0);
        assert_eq!(s.start_next(), Some(1));
    }

    #[test]
    fn index_builds_of_one_table_share_it_but_exclude_alter_table() {
        let mut s = Scheduler::new(vec![
            item(&[], &[("t", Lock::Share)]),
            item(&[], &[("t", Lock::Share)]),
            item(&[], &[("t", Lock::Exclusive)]),
            item(&[], &[("t", Lock::Load)]),
        ]);
        assert_eq!(s.start_next(), Some(0));
        assert_eq!(s.start_next(), Some(1));
        assert_eq!(s.start_next(), None);
        s.finish(0);
        assert_eq!(s.start_next(), None);
        s.finish(1);
        assert_eq!(s.start_next(), Some(2));
        assert_eq!(s.start_next(), None);
        s.finish(2);
        assert_eq!(s.start_next(), Some(3));
    }

    #[test]
    fn an_item_without_tables_runs_alone() {
        let mut s = Scheduler::new(vec![
            item(&[], &[("t", Lock::Load)]),
            item(&[], &[]),
            item(&[], &[("u", Lock::Load)]),
        ]);
        assert_eq!(s.start_next(), Some(0));
        assert_eq!(
            s.start_next(),
            Some(2),
            "the lone item waits; the next one need not"
        );
        s.finish(0);
        assert_eq!(s.start_next(), None);
        s.finish(2);
        assert_eq!(s.start_next(), Some(1));
        assert_eq!(s.start_next(), None, "nothing beside it");
        s.finish(1);
        assert!(s.all_done());
    }

    #[test]
    fn a_dependency_loop_is_taken_in_order_instead_of_hanging() {
        let mut s = Scheduler::new(vec![
            item(&[1], &[("a", Lock::Exclusive)]),
            item(&[0], &[("b", Lock::Exclusive)]),
        ]);
        assert_eq!(s.start_next(), Some(0));
        assert_eq!(s.start_next(), None);
        s.finish(0);
        assert_eq!(s.start_next(), Some(1));
        s.finish(1);
        assert!(s.all_done());
    }

    #[test]
    fn dependencies_outside_the_items_or_on_itself_are_ignored() {
        let mut s = Scheduler::new(vec![item(&[0, 7], &[("a", Lock::Load)])]);
        assert_eq!(s.start_next(), Some(0));
        s.finish(0);
        assert!(s.all_done());
    }
}
