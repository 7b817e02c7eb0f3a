//! The stages between a source and a sink: zstd, age, SHA-256 (computed, or checked).
//!
//! Each runs on a blocking thread through [`blocking_stage`](crate::pipeline::blocking_stage),
//! so a pipeline `source → Compress → Encrypt → sink` keeps both cores busy while the source
//! and the sink do I/O.

mod age;
mod digest;
mod digest_check;
mod zstd;

pub use self::age::{decrypt_reader, Decrypt, Encrypt};
pub use self::digest::{Digest, DigestHandle, DigestResult};
pub use self::digest_check::DigestCheck;
pub use self::zstd::{is_zstd_frame, Compress, Decompress, DEFAULT_LEVEL};
