//! Streaming table data through PostgreSQL's own COPY machinery.

pub mod copy_from;
pub mod copy_to;
