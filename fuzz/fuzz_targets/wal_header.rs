//! A WAL segment's page header: any bytes are parsed without a panic, and a header that parses
//! agrees with the segment name it describes (and with no other segment's).
//!
//! Seeds in `fuzz/seeds/wal_header`: the first page of real PostgreSQL 15 segments.
//!
//! Run (from fuzz/): cargo +nightly fuzz run wal_header corpus/wal_header seeds/wal_header
#![no_main]

use ecobackup_core::wal::header::PageHeader;
use ecobackup_core::wal::{Segment, WalFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = PageHeader::parse(data) else {
        return;
    };
    let size = u64::from(header.segment_size);
    if header.page_address.0 % size != 0 || header.timeline == 0 {
        return;
    }
    let segment = Segment::containing(header.timeline, header.page_address, size);
    let Some(name) = WalFile::parse(&segment.file_name(size)) else {
        return;
    };
    assert!(header.check_name(&name).is_ok(), "{header:?} against {name}");
    let next = WalFile::parse(&segment.next().file_name(size));
    if let Some(next) = next {
        assert!(header.check_name(&next).is_err(), "{header:?} against {next}");
    }
});
