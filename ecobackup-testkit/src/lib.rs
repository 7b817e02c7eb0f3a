//! Test helpers for ecobackup and for the services that link it: in-memory and counting sinks,
//! sources with chosen chunking or failures, generators of realistic data, and the demo shop
//! ([`fixture`]) that `ecobackup demo`, the tests and the benches back up.
//!
//! Nothing here is a mock of PostgreSQL or S3; those are real servers (later modules).

#![warn(missing_docs)]

pub mod catalog;
#[cfg(feature = "servers")]
pub mod closed_port;
pub mod crash;
pub mod data;
pub mod fixture;
#[cfg(feature = "servers")]
pub mod http_recorder;
pub mod majors;
pub mod pg;
#[cfg(feature = "servers")]
pub mod s3;
#[cfg(feature = "servers")]
pub mod secure_pg;
pub mod server_user;
pub mod sinks;
pub mod sources;

#[cfg(feature = "servers")]
pub use closed_port::ClosedPort;
pub use crash::ClusterHooks;
pub use data::RowGenerator;
pub use majors::{default_major, TESTED_MAJORS};
pub use pg::TestPg;
#[cfg(feature = "servers")]
pub use s3::{Fault, FaultRule, RecordedRequest, S3TestServer};
#[cfg(feature = "servers")]
pub use secure_pg::{SecureOptions, SecurePg};
pub use sinks::{CountingSink, MemorySink, SinkState};
pub use sources::{ChunkedSource, FailingSource, GeneratedSource};
