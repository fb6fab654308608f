//! The catalog tables (`backup.backups`, `backup.restores`) and how rows reach them.

pub mod autonomous;
pub mod history;
pub mod version;
