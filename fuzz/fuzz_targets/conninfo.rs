//! Connection strings, password files and service files never panic the parsers, and no
//! accepted connection string shows its password in `redacted()` or `Debug`.
//!
//! The first byte picks the parser: 0 a connection string (resolved with an empty
//! environment), 1 a password file line set, 2 a service file. The seed corpus in
//! `fuzz/seeds/conninfo` holds libpq's documented forms.
//!
//! Run (from fuzz/): cargo +nightly fuzz run conninfo corpus/conninfo seeds/conninfo
#![no_main]

use std::path::Path;

use ecobackup_core::postgres::{conninfo, passfile, service, DbUrl, PgEnv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match selector % 3 {
        0 => {
            let _ = conninfo::parse(text);
            if let Ok(url) = DbUrl::parse_with(text, &PgEnv::default().with_var("PGUSER", "fuzz")) {
                let password = conninfo::parse(text)
                    .ok()
                    .and_then(|s| s.into_iter().rev().find(|(k, _)| k == "password"))
                    .map(|(_, v)| v)
                    .filter(|p| p.len() >= 4);
                if let Some(password) = password {
                    let shown = format!("{} {url:?}", url.redacted());
                    assert!(!shown.contains(&password), "{shown}");
                }
                let _ = url.with_database("other").redacted();
            }
        }
        1 => {
            let wanted = passfile::Wanted {
                host: "localhost",
                port: "5432",
                database: "shop",
                user: "backup",
            };
            let _ = passfile::find(text, &wanted, Path::new("/var/run/postgresql"));
        }
        _ => {
            let _ = service::section(text, "shop");
        }
    }
});
