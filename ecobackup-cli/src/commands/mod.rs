//! One module per user-facing command; each maps flags to library calls and prints the result.

pub mod filter;
pub mod key;
pub mod repo;
