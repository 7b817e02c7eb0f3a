//! PostgreSQL: connecting as libpq would, learning about the server, finding its programs, and
//! throwaway clusters for demos, drills and tests.

pub mod binaries;
pub mod cluster;
pub mod conn;
mod connect;
pub mod conninfo;
pub(crate) mod database_props;
mod env;
pub(crate) mod facts;
pub mod passfile;
mod redact;
mod server_log;
pub mod service;
pub(crate) mod tls;

pub use conn::{quote_ident, redact_url, DbUrl, Endpoint, PgEnv, APPLICATION_NAME};
pub use connect::{connect, describe_pg_error, pooler_hint};
pub use database_props::{database_properties, DatabaseProperties};
pub use facts::{database_facts, major_of, DatabaseFacts};
