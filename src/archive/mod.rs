//! The archive on disk: ids, manifest, writer, verification, retention. No PostgreSQL here.

pub mod acl;
pub mod compression;
pub mod facts;
pub mod hashing;
pub mod id;
pub mod kind;
pub mod manifest;
pub mod open;
pub mod retention;
pub mod rows;
pub mod shapes;
pub mod signature;
pub mod statistics;
pub mod toc;
pub mod verify;
pub mod writer;
