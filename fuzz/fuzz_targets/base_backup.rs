//! What a base backup says about itself, as pg_basebackup streams it: the tar stream watched on
//! its way to the repository (fed in pieces of any size), `backup_label` and `backup_manifest`
//! never panic their parsers, and the watcher finds the same members whatever the chunking.
//!
//! The first byte picks the parser: 0 the tar stream (the second byte sets the chunk size),
//! 1 a backup_label, 2 a backup_manifest. Seeds in `fuzz/seeds/base_backup`.
//!
//! Run (from fuzz/): cargo +nightly fuzz run base_backup corpus/base_backup seeds/base_backup
#![no_main]

use ecobackup_core::physical::label::{BackupLabel, BackupManifestFacts};
use ecobackup_core::physical::tar_watch::TarWatch;
use libfuzzer_sys::fuzz_target;

const WANTED: [&str; 3] = ["backup_label", "global/pg_control", "backup_manifest"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let Some((&chunk, stream)) = rest.split_first() else {
                return;
            };
            let mut whole = TarWatch::new(&WANTED, 1 << 16);
            let whole_result = whole.feed(stream);
            let mut pieces = TarWatch::new(&WANTED, 1 << 16);
            let mut pieces_result = Ok(());
            for piece in stream.chunks(usize::from(chunk).max(1)) {
                pieces_result = pieces.feed(piece);
                if pieces_result.is_err() {
                    break;
                }
            }
            assert_eq!(whole_result.is_ok(), pieces_result.is_ok());
            if whole_result.is_ok() {
                for name in WANTED {
                    assert_eq!(whole.member(name), pieces.member(name), "{name}");
                }
                assert_eq!(whole.members(), pieces.members());
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = BackupLabel::parse(text);
            }
        }
        _ => {
            if let Ok(facts) = BackupManifestFacts::parse(rest) {
                assert!(facts.start_lsn <= facts.end_lsn);
            }
        }
    }
});
