//! Names from PostgreSQL and from listings anyone with write access may have filled: WAL file
//! names, LSNs and timeline history files never panic their parsers, and an accepted file name
//! round-trips through its name and its object key.
//!
//! The first byte picks the parser: 0 a file name, 1 an LSN, 2 a history file. Seeds in
//! `fuzz/seeds/wal_names`.
//!
//! Run (from fuzz/): cargo +nightly fuzz run wal_names corpus/wal_names seeds/wal_names
#![no_main]

use ecobackup_core::wal::archive::parse_object_key;
use ecobackup_core::wal::timeline::parse_history;
use ecobackup_core::wal::{Lsn, WalFile};
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
            if let Some(file) = WalFile::parse(text) {
                assert_eq!(file.name(), text);
                assert!(!text.contains('/') && !text.contains(".."));
                for suffix in [".zst.age", ".zst"] {
                    let key = file.key(suffix);
                    assert_eq!(parse_object_key(&key), Some(file.clone()), "{key}");
                }
            }
        }
        1 => {
            if let Ok(lsn) = text.parse::<Lsn>() {
                assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
            }
        }
        _ => {
            if let Ok(entries) = parse_history(text) {
                assert!(entries.windows(2).all(|w| w[0].parent < w[1].parent));
            }
        }
    }
});
