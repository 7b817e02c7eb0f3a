//! PostgreSQL: connecting, learning about the server, finding its programs, and throwaway
//! clusters for demos, drills and tests.

pub mod binaries;
pub mod cluster;
pub mod conn;
pub mod database_props;
pub mod fixture;
mod server_log;

pub use conn::{
    connect, database_facts, describe_pg_error, quote_ident, redact_url, DatabaseFacts, DbUrl,
};
pub use database_props::{database_properties, DatabaseProperties};
