//! Taking a backup: options, selection, and the create() core.

pub mod create;
pub mod json_check;
pub mod manage;
pub mod options;
pub mod parallel;
pub mod select;
pub mod task;
