//! The long page header at the start of every WAL segment (`XLogLongPageHeaderData` in
//! PostgreSQL's `src/include/access/xlog_internal.h`), in the byte order of the machine that
//! wrote it (little-endian on x86_64 and arm64):
//!
//! ```text
//! offset  size  field
//!      0     2  xlp_magic        XLOG_PAGE_MAGIC, changes with each major version's WAL format
//!      2     2  xlp_info         flags; XLP_LONG_HEADER (0x0002) on a segment's first page
//!      4     4  xlp_tli          timeline of the page's first record
//!      8     8  xlp_pageaddr     LSN of the page: the segment's first byte
//!     16     4  xlp_rem_len      bytes of a record continued from the previous page
//!     20     4  (padding to MAXALIGN)
//!     24     8  xlp_sysid        the cluster's system identifier
//!     32     4  xlp_seg_size     wal_segment_size
//!     36     4  xlp_xlog_blcksz  XLOG_BLCKSZ
//! ```
//!
//! A segment's name says its timeline and its start LSN; the header must agree. Its timeline
//! may be *older* than the name's: the first segment of a new timeline is a copy of the old
//! timeline's segment up to the switch point, headers included.

use super::names::{Lsn, Segment, WalFile};

/// The flag of a long page header, in `xlp_info`.
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// Bytes of a long page header.
pub const LONG_HEADER_SIZE: usize = 40;

/// The long page header of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageHeader {
    /// `xlp_magic`: the WAL format version of the server that wrote it.
    pub magic: u16,
    /// `xlp_info` flags.
    pub info: u16,
    /// `xlp_tli`.
    pub timeline: u32,
    /// `xlp_pageaddr`.
    pub page_address: Lsn,
    /// `xlp_rem_len`.
    pub remaining_length: u32,
    /// `xlp_sysid`.
    pub system_identifier: u64,
    /// `xlp_seg_size`.
    pub segment_size: u32,
    /// `xlp_xlog_blcksz`.
    pub block_size: u32,
}

impl PageHeader {
    /// Reads the header from a segment's first bytes. The error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<PageHeader, String> {
        let Some(bytes) = bytes.get(..LONG_HEADER_SIZE) else {
            return Err(format!(
                "it is {} bytes long, shorter than a WAL page header ({LONG_HEADER_SIZE})",
                bytes.len()
            ));
        };
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at =
            |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes in range"));
        let u64_at =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes in range"));
        let header = PageHeader {
            magic: u16_at(0),
            info: u16_at(2),
            timeline: u32_at(4),
            page_address: Lsn(u64_at(8)),
            remaining_length: u32_at(16),
            system_identifier: u64_at(24),
            segment_size: u32_at(32),
            block_size: u32_at(36),
        };
        if header.info & XLP_LONG_HEADER == 0 {
            return Err(format!(
                "its first page has no long header (xlp_info {:#06x}): not the start of a WAL segment",
                header.info
            ));
        }
        let segment_size = u64::from(header.segment_size);
        if !segment_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&segment_size) {
            return Err(format!(
                "its header gives a segment size of {segment_size} bytes, which PostgreSQL never uses (a power of two from 1 MiB to 1 GiB)"
            ));
        }
        if !header.block_size.is_power_of_two() || !(1024..=65536).contains(&header.block_size) {
            return Err(format!(
                "its header gives a WAL block size of {} bytes, which PostgreSQL never uses",
                header.block_size
            ));
        }
        Ok(header)
    }

    /// Checks the header against the segment's name: its page address is the segment's first
    /// LSN and its timeline is the name's or an older one.
    pub fn check_name(&self, file: &WalFile) -> Result<(), String> {
        let segment =
            Segment::parse(&file.name(), u64::from(self.segment_size)).ok_or_else(|| {
                format!(
                    "{file} is not a segment name for {} byte segments",
                    self.segment_size
                )
            })?;
        let start = segment.start_lsn(u64::from(self.segment_size));
        if self.page_address != start {
            return Err(format!(
                "its header says it starts at {}, its name says {start}: the file was renamed or is not this segment",
                self.page_address
            ));
        }
        if self.timeline == 0 || self.timeline > segment.timeline {
            return Err(format!(
                "its header is of timeline {}, its name of timeline {}",
                self.timeline, segment.timeline
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long page header with these fields (PostgreSQL 15's magic, flags 0x0006).
    fn sample(sysid: u64, tli: u32, address: u64, seg_size: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xD110u16.to_le_bytes());
        bytes.extend_from_slice(&(XLP_LONG_HEADER | 0x0004).to_le_bytes());
        bytes.extend_from_slice(&tli.to_le_bytes());
        bytes.extend_from_slice(&address.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&sysid.to_le_bytes());
        bytes.extend_from_slice(&seg_size.to_le_bytes());
        bytes.extend_from_slice(&8192u32.to_le_bytes());
        bytes
    }

    #[test]
    fn a_segment_header_reads_and_matches_its_name() {
        let header = PageHeader::parse(&sample(7311, 1, 0x300_0000, 16 << 20)).unwrap();
        assert_eq!(header.system_identifier, 7311);
        assert_eq!(header.page_address, Lsn(0x300_0000));
        assert_eq!(header.block_size, 8192);
        let name = WalFile::parse("000000010000000000000003").unwrap();
        header.check_name(&name).unwrap();
        // A later timeline's first segment holds the older timeline's pages.
        header
            .check_name(&WalFile::parse("000000020000000000000003").unwrap())
            .unwrap();
        let err = header
            .check_name(&WalFile::parse("000000010000000000000004").unwrap())
            .unwrap_err();
        assert!(
            err.contains("starts at 0/3000000, its name says 0/4000000"),
            "{err}"
        );
        let newer = PageHeader::parse(&sample(7311, 3, 0x300_0000, 16 << 20)).unwrap();
        assert!(newer.check_name(&name).unwrap_err().contains("timeline 3"));
    }

    #[test]
    fn the_header_of_a_real_postgresql_15_segment() {
        // The first 40 bytes of 000000010000000000000002 of a fresh PostgreSQL 15 cluster
        // (fuzz/seeds/wal_header/pg15-segment-2-page holds its whole first page).
        let bytes = hex::decode(
            "10d106000100000000000002000000000000000000000000e77f7eb28f47046b0000000100200000",
        )
        .unwrap();
        let header = PageHeader::parse(&bytes).unwrap();
        assert_eq!(header.magic, 0xD110);
        assert_eq!(header.timeline, 1);
        assert_eq!(header.page_address, Lsn(0x200_0000));
        assert_eq!(header.system_identifier, 0x6B04_478F_B27E_7FE7);
        assert_eq!(header.segment_size, 16 << 20);
        assert_eq!(header.block_size, 8192);
        header
            .check_name(&WalFile::parse("000000010000000000000002").unwrap())
            .unwrap();
    }

    #[test]
    fn what_is_not_a_segment_header_is_refused() {
        assert!(PageHeader::parse(&[0; 39]).unwrap_err().contains("shorter"));
        let mut short_header = sample(1, 1, 0, 16 << 20);
        short_header[2] = 0;
        assert!(PageHeader::parse(&short_header)
            .unwrap_err()
            .contains("no long header"));
        assert!(PageHeader::parse(&sample(1, 1, 0, 3 << 20))
            .unwrap_err()
            .contains("segment size"));
        let mut block = sample(1, 1, 0, 16 << 20);
        block[36..40].copy_from_slice(&100u32.to_le_bytes());
        assert!(PageHeader::parse(&block)
            .unwrap_err()
            .contains("block size"));
    }
}
