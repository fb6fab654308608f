//! Storage targets: where a copy of each archive goes besides (or instead of) the local
//! `backup.directory`: an S3-compatible bucket (`s3://bucket/prefix`), a Google Cloud Storage
//! bucket (`gs://bucket/prefix`), an Azure Blob container (`az://container/prefix`), all three
//! through the `object_store` crate, or another filesystem (`file:///path`). Plain Rust below the SQL boundary: the stores never call into PostgreSQL
//! and are used from helper threads.
//!
//! An archive in a store is the same set of files as on disk, as objects under
//! `<prefix>/<backup_id>/`. `manifest.json` is written last: an archive whose manifest is
//! missing is incomplete, whatever else is there.

pub mod archive_files;
pub mod cloud;
pub mod file;
pub mod listing;
pub mod locate;
pub mod store;
pub mod targets;
pub mod threads;
pub mod upload;

pub use locate::{locate, precheck};
pub use store::{Failure, Object, ObjectWriter, Store, StoreError, StoreResult};
