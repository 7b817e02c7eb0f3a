//! What a repository or a configuration file may hold, written by anyone with write access or by
//! a hand: backup manifests (JSON), `[retention]` tables (TOML) and the durations and sizes of
//! `[retention]` and `[check]`. No input panics a parser, and whatever parses plans: every
//! candidate ends in exactly one list of the retention plan.
//!
//! The first byte picks the parser: 0 a manifest, 1 a `[retention]` table, 2 a duration or a
//! size. Seeds in `fuzz/seeds/manifest_retention`.
//!
//! Run (from fuzz/): cargo +nightly fuzz run manifest_retention corpus/manifest_retention seeds/manifest_retention
#![no_main]

use chrono::{TimeZone, Utc};
use ecobackup_core::monitor::{ByteSize, Span};
use ecobackup_core::repository::Manifest;
use ecobackup_core::retention::{plan, Candidate, KeepWithin, RetentionPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
    match selector % 3 {
        0 => {
            let Ok(manifest) = serde_json::from_slice::<Manifest>(rest) else {
                return;
            };
            let candidate = Candidate::from_manifest(&manifest);
            let policy: RetentionPolicy =
                toml::from_str("keep_last = 1\nkeep_daily = 2\nkeep_within = \"1d\"\n").unwrap();
            let decided = plan(&policy.validate().unwrap(), &[candidate.clone(), candidate], now);
            assert_eq!(
                decided.keep.len() + decided.delete.len() + decided.invalid.len(),
                2
            );
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let Ok(policy) = toml::from_str::<RetentionPolicy>(text) else {
                return;
            };
            if let Ok(validated) = policy.validate() {
                let _ = validated.object_lock_at(now);
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(within) = text.parse::<KeepWithin>() {
                assert_eq!(within.to_string().parse::<KeepWithin>().unwrap(), within);
            }
            let _ = text.parse::<Span>();
            let _ = text.parse::<ByteSize>();
        }
    }
});
