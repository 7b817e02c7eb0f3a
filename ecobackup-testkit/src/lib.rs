//! Test helpers for ecobackup and for the services that link it: in-memory and counting sinks,
//! sources with chosen chunking or failures, and generators of realistic data.
//!
//! Nothing here is a mock of PostgreSQL or S3; those are real servers (later modules).

#![warn(missing_docs)]

pub mod catalog;
pub mod crash;
pub mod data;
pub mod http_recorder;
pub mod majors;
pub mod pg;
pub mod s3;
pub mod secure_pg;
pub mod server_user;
pub mod sinks;
pub mod sources;

pub use crash::ClusterHooks;
pub use data::RowGenerator;
pub use majors::{default_major, TESTED_MAJORS};
pub use pg::TestPg;
pub use s3::{Fault, FaultRule, RecordedRequest, S3TestServer};
pub use secure_pg::{SecureOptions, SecurePg};
pub use sinks::{CountingSink, MemorySink, SinkState};
pub use sources::{ChunkedSource, FailingSource, GeneratedSource};
