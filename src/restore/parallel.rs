//! `restore(..., jobs => N, atomic => false)`: the rows and the post-data entries (indexes,
//! constraints, triggers ...) spread over N background workers, as pg_restore -j does.
//!
//! The restore worker of atomic => false (`background`) is the leader: it restores the
//! pre-data entries, truncates what `existing => 'truncate'` replaces, reads the sql
//! format's script (one file, read in order) and loads the large objects itself, commits,
//! and then hands out the rest item by item: each table's rows (the biggest first) and each
//! post-data entry, an item once every item it depends on is done (an entry on a table
//! waits for the table's rows, as pg_restore repoints such dependencies) and never beside a
//! running item it would wait for on a lock (`schedule`). The leader decides about each
//! entry just before handing it out (as the serial walk would: skipped with its failed
//! table, kept ...), so the job workers only run what they get. Then it restores the grants
//! and everything after them itself.
//!
//! Each job worker acts as the caller exactly as the leader does (`session`: user, security
//! context, settings; `security::enter_for`; restore's own settings), runs the statements of
//! an entry through the same `Walk::run_entry` (code-running entries as the table's owner),
//! commits each item on its own and reports its result rows. The leader adds them to the
//! result and to the history row's `progress` (what stays restored if the restore fails).
//!
//! An error of an item under on_error => 'abort' ends the restore: the leader cancels the
//! other workers (their current items roll back), records which items were committed and
//! raises the error, which names the entry. A cancel of the calling session reaches the
//! leader, which cancels every worker the same way. A worker that cannot start is done
//! without; with none, the leader restores everything itself.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use pgrx::prelude::*;
use serde::{Deserialize, Serialize};

use super::batch::{self, begin_transaction, Batches};
use super::context::failure_of;
use super::data::{self, DataUnit};
use super::decide::{preexisting_extensions, Decider};
use super::entry::Executor;
use super::job::{Archive, Job};
use super::options::Request;
use super::plan::{Plan, PlannedTable};
use super::policy::{Outcome, Tolerate};
use super::result::{Action, Row};
use super::schedule::{Item, Lock, Scheduler};
use super::scope::quoted;
use crate::archive::toc::{EntryKind, TocEntry};
use crate::catalog::history;
use crate::error::{BackupError, Result};
use crate::security::{self, privileges::Restorer};
use crate::workers::{Event, Failure, Kind, Life, Pool, Worker};

/// What each job worker is given: the restore worker's request and the plan it made.
#[derive(Serialize, Deserialize)]
struct JobRequest {
    base: Request,
    tables: Vec<PlannedTable>,
    /// The history row each worker adds its committed items to.
    restore_id: i64,
}

/// Leader -> job worker.
#[derive(Serialize, Deserialize)]
enum Task {
    /// The rows of `data_units()[unit]`, its `piece`th file (a split table's part).
    Data { unit: usize, piece: usize },
    /// TOC entry `id`, as decided by the leader.
    Entry {
        id: u32,
        action: Action,
        tolerate: Tolerate,
    },
    /// ANALYZE of a table that received rows (quoted name).
    Analyze { table: String },
}

/// Job worker -> leader: the task is committed; its result rows and (for an entry) its
/// outcome. (A worker's error travels as the pool's `Failure`.)
#[derive(Serialize, Deserialize)]
struct Report {
    rows: Vec<Row>,
    outcome: Option<Outcome>,
}

/// A job worker: given the `JobRequest`, sent `Task`s, reports each one's `Report`.
const JOB_WORKER: Kind<JobRequest, Task, Report> = Kind::new(
    "pg_backup restore job worker",
    true,
    "pg_backup_restore_job_main",
    0x7062_726a,
    64 << 10,
    64 << 10,
);

/// One item of the parallel part.
#[derive(Clone, Copy)]
enum Work<'a> {
    /// A unit's piece (see `DataUnit::piece`).
    Data(usize, usize),
    Entry(&'a TocEntry),
    /// ANALYZE of `plan.tables[i]`, once its rows and post-data entries are in.
    Analyze(usize),
}

/// The leader's part: rows, then post-data, over the job workers.
/// Returns the tables whose ANALYZE the job workers ran (quoted names).
pub fn data_and_post_data<'a>(
    decider: &mut Decider<'_, 'a>,
    exec: &mut Executor<'_, 'a>,
    post: &[&'a TocEntry],
) -> Result<HashSet<String>> {
    let job = exec.job;
    let b = job
        .batches
        .expect("restore(jobs => N) runs in the restore worker");
    let units = data::data_units(job.manifest, job);
    let mut loads: Vec<usize> = Vec::new();
    if !job.opts.schema_only {
        if job.manifest.files.iter().any(|f| f.is_script()) {
            // One script, read in order: its rows load here.
            data::load_data(job, &mut exec.runner, &decider.preexisting)?;
        } else {
            data::truncate_replaced(job, &mut exec.runner)?;
            for (i, u) in units.iter().enumerate() {
                // Large objects and extensions' configuration rows load here.
                if u.large_objects || u.extension || !data::unit_wanted(job, u) {
                    data::load_unit(job, &mut exec.runner, u, None, &decider.preexisting)?;
                } else {
                    loads.push(i);
                }
            }
        }
    }
    // Each part of a split table is an item of its own (loaded beside the others), unless
    // its triggers are switched off for the load (ALTER TABLE, one job at a time).
    let mut pieces: Vec<(usize, usize, u64)> = loads
        .iter()
        .flat_map(|&i| {
            let u = &units[i];
            let whole = job.opts.disable_triggers && u.piece_count() > 1;
            let n = if whole { 1 } else { u.piece_count() };
            (0..n).map(move |k| {
                let bytes = if whole {
                    u.pieces().map(|p| p.bytes).sum()
                } else {
                    u.pieces().nth(k).map_or(0, |p| p.bytes)
                };
                (i, if whole { usize::MAX } else { k }, bytes)
            })
        })
        .collect();
    // Largest first: the longest load must not start last.
    pieces.sort_by_key(|&(_, _, bytes)| std::cmp::Reverse(bytes));
    let mut work: Vec<Work> = pieces.iter().map(|&(i, k, _)| Work::Data(i, k)).collect();
    work.extend(post.iter().map(|e| Work::Entry(e)));
    // The final ANALYZE too (the walk analyzes what they did not).
    let analyze = job.opts.analyze && !job.opts.schema_only;
    if analyze {
        // Tables whose statistics the archive carries are left to the walk (issue 19).
        let stats = super::statistics::Statistics::new(job)?;
        work.extend(
            job.plan
                .tables
                .iter()
                .enumerate()
                .filter(|(_, t)| {
                    t.action.loads_data() && !stats.covers(job, &quoted(&t.schema, &t.name))
                })
                .map(|(i, _)| Work::Analyze(i)),
        );
    }
    let items = plan_items(job, &units, &work);
    // Tables whose rows loaded (their ANALYZE runs), as restore_steps' loaded_tables() says.
    let mut loaded: HashSet<String> = HashSet::new();
    note_loaded(&mut loaded, &exec.runner.out);
    // Everything so far is committed: the workers see it, and the leader holds no lock.
    b.commit(&exec.runner.out)?;
    let mut pool = start_pool(b, job.plan, (job.opts.jobs as usize).min(work.len()));
    if pool.is_empty() {
        // No worker could start: the leader restores the rest itself, in order.
        log!("pg_backup: no background worker could start for restore(jobs => {}); the restore goes on in one worker", job.opts.jobs);
        for &u in &loads {
            data::load_unit(job, &mut exec.runner, &units[u], None, &decider.preexisting)?;
        }
        decider.run_entries(exec, post)?;
        // The walk analyzes.
        return Ok(HashSet::new());
    }
    let mut analyzed: HashSet<String> = HashSet::new();
    let mut sched = Scheduler::new(items);
    let mut last_progress = Instant::now();
    while !sched.all_done() {
        refresh_snapshot();
        while let Some(w) = pool.idle() {
            let Some(i) = sched.start_next() else { break };
            let task = match work[i] {
                Work::Data(u, piece) => Task::Data { unit: u, piece },
                Work::Entry(e) => match decider.settle(e, &mut exec.runner)? {
                    None => {
                        sched.finish(i);
                        continue;
                    }
                    Some((action, tolerate)) => Task::Entry {
                        id: e.id,
                        action,
                        tolerate,
                    },
                },
                Work::Analyze(t) => {
                    let t = &job.plan.tables[t];
                    if !loaded.contains(&t.object()) {
                        sched.finish(i);
                        continue;
                    }
                    Task::Analyze {
                        table: quoted(&t.schema, &t.name),
                    }
                }
            };
            pool.send(w, i, &task).map_err(|_| worker_gone())?;
        }
        if sched.all_done() {
            break;
        }
        if sched.running() == 0 {
            // Everything left was settled by the leader in this round; go on.
            continue;
        }
        match wait(&mut pool, &mut exec.runner.out, b) {
            Ok((item, Report { rows, outcome })) => {
                if let (Work::Entry(e), Some(o)) = (work[item], outcome) {
                    decider.record(e.id, o);
                }
                if let Work::Analyze(t) = work[item] {
                    let t = &job.plan.tables[t];
                    analyzed.insert(quoted(&t.schema, &t.name));
                }
                note_loaded(&mut loaded, &rows);
                // The leader's own rows so far (skips it noted) go with its next commit;
                // the worker's item is committed and recorded already.
                b.note_local(&exec.runner.out);
                exec.runner.out.extend(rows);
                b.note_recorded(&exec.runner.out);
                sched.finish(item);
                if last_progress.elapsed() > Duration::from_secs(1) {
                    b.commit(&exec.runner.out)?;
                    last_progress = Instant::now();
                }
            }
            Err(e) => {
                stop(&mut pool, &mut exec.runner.out, b, true);
                return Err(e);
            }
        }
    }
    stop(&mut pool, &mut exec.runner.out, b, false);
    b.commit(&exec.runner.out)?;
    Ok(analyzed)
}

fn note_loaded(loaded: &mut HashSet<String>, rows: &[Row]) {
    for r in rows {
        if r.loaded_rows() {
            loaded.insert(r.object.clone());
        }
    }
}

/// A new snapshot for the leader's decisions: what the workers committed counts.
fn refresh_snapshot() {
    // SAFETY: in the leader's transaction (between its batches' commits a transaction is
    // always open); the snapshot popped, if any, is the one this function or
    // begin_transaction pushed.
    unsafe {
        if pg_sys::ActiveSnapshotSet() {
            pg_sys::PopActiveSnapshot();
        }
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
}

/// Dependencies and locks of each item (see `schedule`).
fn plan_items(job: &Job, units: &[DataUnit], work: &[Work]) -> Vec<Item> {
    let toc = &job.manifest.toc;
    let relations: HashMap<(String, String), &TocEntry> = toc
        .iter()
        .filter(|e| e.kind.is_relation())
        .filter_map(|e| e.relation().map(|r| (r, e)))
        .collect();
    // The table standing for a partition or inheritance tree: its topmost parent.
    let root = |rel: (String, String)| -> String {
        let mut at = rel;
        for _ in 0..64 {
            let parent = relations
                .get(&at)
                .filter(|e| matches!(e.kind, EntryKind::Table | EntryKind::ForeignTable))
                .and_then(|e| e.belongs_to)
                .and_then(|p| job.entry(p))
                .filter(|p| matches!(p.kind, EntryKind::Table | EntryKind::ForeignTable))
                .and_then(|p| p.relation());
            match parent {
                Some(p) => at = p,
                None => break,
            }
        }
        quoted(&at.0, &at.1)
    };
    // The relation an entry works on: its own, or that of what it belongs to.
    let relation_of = |e: &TocEntry| -> Option<(String, String)> {
        let mut at = e;
        for _ in 0..8 {
            if let Some(r) = at.relation() {
                return Some(r);
            }
            at = job.entry(at.belongs_to?)?;
        }
        None
    };
    // The load items of each table (a split table's parts are several).
    let mut load_of: HashMap<(String, String), Vec<usize>> = HashMap::new();
    let mut item_of: HashMap<u32, usize> = HashMap::new();
    // Post-data items on each table (by its name in the backup).
    let mut on_table: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (i, &w) in work.iter().enumerate() {
        match w {
            Work::Data(u, _) => {
                load_of
                    .entry((units[u].schema.clone(), units[u].table.clone()))
                    .or_default()
                    .push(i);
            }
            Work::Entry(e) => {
                item_of.insert(e.id, i);
                if let Some(r) = relation_of(e) {
                    on_table.entry(r).or_default().push(i);
                }
            }
            Work::Analyze(_) => {}
        }
    }
    // The backup's name of each planned table.
    let backup_names: Vec<(String, String)> = job.scope.tables(job.manifest);
    work.iter()
        .map(|&w| match w {
            Work::Data(u, _) => Item {
                deps: Vec::new(),
                locks: vec![(
                    root((units[u].schema.clone(), units[u].table.clone())),
                    Lock::Load,
                )],
            },
            Work::Entry(e) => {
                let mut deps = Vec::new();
                let mut tables: Vec<(String, String)> = Vec::new();
                if let Some(r) = relation_of(e) {
                    tables.push(r);
                }
                for d in e.deps.iter().chain(e.belongs_to.iter()) {
                    if let Some(&i) = item_of.get(d) {
                        deps.push(i);
                    }
                    // An entry on a table (or naming one: a foreign key's other table) waits
                    // for the table's rows.
                    if let Some(rel) = job
                        .entry(*d)
                        .filter(|x| x.kind.is_relation() || x.kind == EntryKind::TableData)
                        .and_then(|x| x.relation())
                    {
                        if e.kind == EntryKind::ForeignKey && !tables.contains(&rel) {
                            tables.push(rel.clone());
                        }
                        if let Some(loads) = load_of.get(&rel) {
                            deps.extend(loads);
                        }
                    }
                }
                if let Some(loads) = tables.first().and_then(|r| load_of.get(r)) {
                    deps.extend(loads);
                }
                let mode = match e.kind {
                    EntryKind::Index => Lock::Share,
                    _ => Lock::Exclusive,
                };
                let mut locks: Vec<(String, Lock)> =
                    tables.into_iter().map(|r| (root(r), mode)).collect();
                locks.sort_by(|a, b| a.0.cmp(&b.0));
                locks.dedup_by(|a, b| a.0 == b.0);
                Item { deps, locks }
            }
            // After the table's rows and everything on it (expression indexes have
            // statistics of their own).
            Work::Analyze(t) => match backup_names.get(t) {
                Some(name) => {
                    let mut deps: Vec<usize> = on_table.get(name).cloned().unwrap_or_default();
                    deps.extend(load_of.get(name).into_iter().flatten());
                    Item {
                        deps,
                        locks: vec![(root(name.clone()), Lock::Exclusive)],
                    }
                }
                None => Item::default(),
            },
        })
        .collect()
}

/// Start up to `wanted` job workers; the leader commits while they run.
fn start_pool(b: &Batches, plan: &Plan, wanted: usize) -> Pool<Task, Report> {
    let request = JobRequest {
        base: b.request.clone(),
        tables: plan.for_workers(),
        restore_id: b.restore_id.get(),
    };
    let mut pool = Pool::start(&JOB_WORKER, &request, wanted, Life::AcrossCommits);
    if pool.len() < wanted && pool.len() > 1 {
        // The worker slots ran out: give one back, so that pg_backup's history writer,
        // parallel queries and whoever else needs a worker still find one.
        pool.give_back_one();
    }
    if pool.len() < wanted {
        let max = crate::session::current_setting("max_worker_processes");
        log!(
            "pg_backup: only {} of {wanted} restore workers could start (max_worker_processes = {max}); the restore goes on with {}",
            pool.len(),
            pool.len()
        );
    }
    pool
}

/// The next report of a job worker: (its item, the report). A failure, a worker gone and a
/// cancel of the leader are errors (the caller stops the pool).
fn wait(pool: &mut Pool<Task, Report>, out: &mut Vec<Row>, b: &Batches) -> Result<(usize, Report)> {
    loop {
        match pool.wait() {
            Event::Report {
                task: Some(item),
                report,
                ..
            } => return Ok((item, report)),
            Event::Report { task: None, .. } | Event::Quiet => {}
            Event::Failed { failure, .. } => return Err(failure.into_error()),
            Event::Gone { .. } => return Err(worker_gone()),
            Event::Interrupted => {
                // A cancel: every worker rolls its item back; what they committed before is
                // recorded, then the cancel is raised here.
                stop(pool, out, b, true);
                pgrx::check_for_interrupts!();
                return Err(BackupError::from_worker(
                    "57014",
                    "canceling statement due to user request".into(),
                    None,
                ));
            }
        }
    }
}

/// End the workers: at once (`cancel`: their current items roll back) or once they are
/// idle. Items they committed and reported meanwhile are added to the result.
fn stop(pool: &mut Pool<Task, Report>, out: &mut Vec<Row>, b: &Batches, cancel: bool) {
    if cancel {
        pool.cancel();
        // Reports already on their way: committed (and recorded) items.
        b.note_local(out);
        pool.drain(Duration::from_secs(30), |r| out.extend(r.rows));
        b.note_recorded(out);
    }
    pool.finish();
}

fn worker_gone() -> BackupError {
    BackupError::from_worker(
        "57P01",
        "a pg_backup restore job worker exited before its item was done (terminated or crashed); what was committed stays, see backup.restores".into(),
        Some("See the server log and SELECT * FROM backup.restores ORDER BY id DESC LIMIT 1;".into()),
    )
}

// ---------------------------------------------------------------------------------------------
// The job worker.
// ---------------------------------------------------------------------------------------------

#[pg_guard]
#[no_mangle]
#[allow(clippy::result_large_err)]
pub extern "C-unwind" fn pg_backup_restore_job_main(arg: pg_sys::Datum) {
    let Some(worker) = Worker::attach(&JOB_WORKER, arg) else {
        return;
    };
    worker.request.base.session.connect();
    security::call_is_session();
    let outcome = PgTryBuilder::new(std::panic::AssertUnwindSafe(|| Ok(work(&worker))))
        .catch_others(Err)
        .execute();
    let (sqlstate, message, hint) = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => failure_of(Ok(e)),
        Err(caught) => failure_of(Err(caught)),
    };
    // SAFETY: the error was caught above; aborting whatever transaction is open is what a
    // worker's error recovery does.
    unsafe { pg_sys::AbortOutOfAnyTransaction() };
    worker.fail(Failure {
        sqlstate,
        message,
        hint,
    });
}

/// Set up as the leader did, then run tasks until the leader closes the queue.
fn work(worker: &Worker<JobRequest, Task, Report>) -> Result<()> {
    let request = &worker.request;
    let base = &request.base;
    let opts = &base.opts;
    begin_transaction(&base.session);
    let caller = security::enter_for(
        base.caller_schemas.clone(),
        base.caller_role.clone(),
        pg_sys::Oid::from(base.caller_oid),
    );
    // The leader checked the signature of the manifest it read; this worker reads it again and
    // checks what it read (quietly: the leader said it).
    let archive = Archive::open(
        &base.backup_id,
        opts.storage.as_deref(),
        opts.identity.as_deref(),
        |_| Ok(()),
        |source, raw| {
            crate::security::signing::authenticate(source, raw, caller.oid, true).map(|_| ())
        },
    )?;
    let manifest = &archive.manifest;
    let scope = opts.scope(manifest)?;
    let plan = Plan::from_tables(manifest, &scope, request.tables.clone());
    let restorer = Restorer::of(&caller);
    let placement = super::tablespaces::Placement::new(opts.no_tablespaces)?;
    let job = Job::new(&archive, opts, &scope, &plan, &restorer, &placement, None);
    job.apply_settings()?;
    let mut exec = Executor::new(&job);
    let preexisting = preexisting_extensions()?;
    let units = data::data_units(manifest, &job);
    commit();
    while let Some(task) = worker.next_task()? {
        begin_transaction(&base.session);
        let outcome = match task {
            Task::Data { unit, piece } => {
                // usize::MAX: every piece, in this one item.
                let u = units
                    .get(unit)
                    .and_then(|u| {
                        if piece == usize::MAX {
                            Some(u.clone())
                        } else {
                            u.piece(piece)
                        }
                    })
                    .ok_or_else(|| {
                        BackupError::from_worker(
                            "XX000",
                            format!("no data unit {unit} piece {piece}"),
                            None,
                        )
                    })?;
                // Table rows only (the leader loads extensions' configuration rows).
                data::load_unit(&job, &mut exec.runner, &u, None, &preexisting)?;
                None
            }
            Task::Entry {
                id,
                action,
                tolerate,
            } => {
                let e = job.entry(id).ok_or_else(|| {
                    BackupError::from_worker("XX000", format!("no TOC entry {id}"), None)
                })?;
                Some(exec.run(e, action, tolerate)?)
            }
            Task::Analyze { table } => {
                super::tuning::analyze([table.as_str()])?;
                None
            }
        };
        // In the item's own transaction: the history row never says less (or more) than
        // what is committed, whatever happens next.
        history::record_committed(request.restore_id, &batch::committed(&exec.runner.out))?;
        commit();
        worker.report(&Report {
            rows: std::mem::take(&mut exec.runner.out),
            outcome,
        });
    }
    Ok(())
}

fn commit() {
    // SAFETY: a task's (or the setup's) transaction is open in this worker.
    unsafe {
        if pg_sys::ActiveSnapshotSet() {
            pg_sys::PopActiveSnapshot();
        }
        pg_sys::CommitTransactionCommand();
    }
}
