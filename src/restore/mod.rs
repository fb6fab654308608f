//! restore(): replay a backup into the current database by walking its TOC once (`walk`), in
//! pg_restore's order: pre-data, data through COPY FROM, post-data, grants, then event
//! triggers and materialized view refreshes, sequence values last. `scope` picks the entries
//! (subsets take what they need), `plan` what `existing` means for each table.
//!
//! The files, top to bottom (each imports only from the ones below it):
//! - `call` (the SQL function's entry), `background` (the restore worker of atomic => false),
//!   `run` (one restore: history row, archive, checks, the walk);
//! - `walk` (the one walk of the TOC), `parallel` (restore(jobs => N): job workers),
//!   `decide` (the decision about each entry), `entry` (one entry's execution: owner,
//!   tablespace, grantor switching), `data` and `sequences` (rows per archive format);
//! - `step` (one step: subtransaction, result row, batch commit), `job` (what a restore works
//!   from), `batch` (commits as it goes), `preflight`, `plan`, `scope`, `statements`,
//!   `tablespaces`, `tuning`, `version` (which server versions an archive restores on), `adapt` (an older
//!   server's SQL adapted for this one);
//! - `policy` (pure rules), `result` (typed result rows), `context` (the entry an error
//!   names), `options`, `names`, `retarget`, `schedule`.
//!
//! `on_error => 'abort'` (default): everything runs in the caller's transaction, all or
//! nothing; an error names the entry it stopped at. `'continue'`: every entry in its own
//! subtransaction; failures become result rows.

pub mod adapt;
pub mod background;
pub mod batch;
pub mod call;
pub mod context;
pub mod data;
pub mod decide;
pub mod entry;
pub mod job;
pub mod names;
pub mod options;
pub mod parallel;
pub mod plan;
pub mod policy;
mod preflight;
pub mod result;
pub mod retarget;
pub mod run;
pub mod schedule;
pub mod scope;
pub mod sequences;
pub mod statements;
pub mod statistics;
pub mod step;
pub mod tablespaces;
pub mod tuning;
pub mod version;
pub mod walk;

pub use call::restore;
pub use options::RestoreOptions;
pub use result::Row;
