//! The catalog tables (`backup.backups`, `backup.restores`), how rows reach them, and the runs
//! in flight (shared memory) that tell live runs from dead ones.

pub mod autonomous;
pub mod drills;
pub mod history;
pub mod runs;
pub mod sweep;
pub mod version;
