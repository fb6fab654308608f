//! Storage targets: where a copy of each archive goes besides (or instead of) the local
//! `backup.directory`: an S3-compatible bucket (`s3://bucket/prefix`) or another filesystem
//! (`file:///path`). Plain Rust below the SQL boundary: the stores never call into PostgreSQL
//! and are used from helper threads.
//!
//! An archive in a store is the same set of files as on disk, as objects under
//! `<prefix>/<backup_id>/`. `manifest.json` is written last: an archive whose manifest is
//! missing is incomplete, whatever else is there.

pub mod archive_files;
pub mod file;
pub mod listing;
pub mod locate;
pub mod s3;
pub mod sigv4;
pub mod store;
pub mod targets;
pub mod threads;
pub mod upload;
pub mod xml;

pub use locate::{locate, precheck};
pub use store::{Failure, Object, ObjectWriter, Store, StoreError, StoreResult};
