//! Watching a tar stream go by: which members passed, and the contents of a few small ones.
//!
//! A base backup streams as one tar archive from `pg_basebackup -Ft -D -`. ecobackup stores the
//! bytes as they are, but needs three members on the way: `backup_label` (start LSN, timeline,
//! start time), `global/pg_control` (the system identifier; the server sends it last, just
//! before it waits for the WAL archive) and `backup_manifest` (WAL range, checksums; pg_basebackup
//! appends it when writing to stdout). [`TarWatch`] follows the 512-byte headers of the stream
//! without copying it, and keeps the wanted members (up to a size limit).
//!
//! The stream comes from a program, not from us: every header is checked (checksum, octal
//! fields), sizes are bounded, and anything malformed is an error, never a panic (fuzzed).

use std::collections::BTreeMap;

/// A tar block.
const BLOCK: usize = 512;

/// What is wrong with a tar stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TarError {
    /// A header's checksum does not match its bytes.
    #[error("tar header {index} is damaged (checksum mismatch)")]
    Checksum {
        /// The header's number in the stream (0: the first).
        index: u64,
    },
    /// A numeric field is not octal (or base-256).
    #[error("tar header {index} has an unreadable {field} field")]
    Field {
        /// The header's number.
        index: u64,
        /// The field's name.
        field: &'static str,
    },
    /// A member we keep is larger than the limit.
    #[error(
        "tar member {name:?} is {size} bytes, more than the {limit} ecobackup keeps in memory"
    )]
    TooLarge {
        /// The member's name.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Data after the end-of-archive marker.
    #[error("data after the end of the tar archive")]
    TrailingData,
}

/// Where the watcher is in the stream.
#[derive(Clone, Debug)]
enum State {
    /// Collecting a 512-byte header.
    Header,
    /// Inside a member: `remaining` bytes of content, then `padding` bytes up to the next block.
    Content {
        name: String,
        kind: Kind,
        remaining: u64,
        padding: u64,
        keep: bool,
    },
    /// Two zero blocks were seen: only zero padding may follow.
    Ended,
}

/// What a member's content means to the watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A file, directory, link: passed over, kept when wanted.
    Member,
    /// A GNU long name (`L`): the content is the next member's name.
    LongName,
    /// A pax extended header (`x`): its `path` record is the next member's name.
    Pax,
}

/// Follows a tar stream fed in chunks of any size; keeps the contents of wanted members.
#[derive(Debug)]
pub struct TarWatch {
    wanted: Vec<String>,
    limit: u64,
    state: State,
    header: Vec<u8>,
    headers: u64,
    zero_blocks: u32,
    long_name: Option<String>,
    content: Vec<u8>,
    kept: BTreeMap<String, Vec<u8>>,
    finished: Vec<String>,
    members: u64,
    bytes: u64,
}

impl TarWatch {
    /// Watches for the members named `wanted` (paths as in the archive, e.g. `global/pg_control`),
    /// keeping each one's content when it is at most `limit` bytes.
    pub fn new(wanted: &[&str], limit: u64) -> TarWatch {
        TarWatch {
            wanted: wanted.iter().map(|s| (*s).to_owned()).collect(),
            limit,
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            headers: 0,
            zero_blocks: 0,
            long_name: None,
            content: Vec::new(),
            kept: BTreeMap::new(),
            finished: Vec::new(),
            members: 0,
            bytes: 0,
        }
    }

    /// The kept content of member `name`, once it passed whole.
    pub fn member(&self, name: &str) -> Option<&[u8]> {
        self.kept.get(name).map(Vec::as_slice)
    }

    /// Takes the kept content of member `name` out of the watcher.
    pub fn take_member(&mut self, name: &str) -> Option<Vec<u8>> {
        self.kept.remove(name)
    }

    /// Whether a wanted member `name` has passed whole.
    pub fn has_passed(&self, name: &str) -> bool {
        self.finished.iter().any(|n| n == name)
    }

    /// How many members (files, directories, links) have started.
    pub fn members(&self) -> u64 {
        self.members
    }

    /// How many bytes were fed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the end-of-archive marker (two zero blocks) was seen.
    pub fn ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), TarError> {
        self.bytes += chunk.len() as u64;
        while !chunk.is_empty() {
            match &mut self.state {
                State::Ended => {
                    if chunk.iter().any(|&b| b != 0) {
                        return Err(TarError::TrailingData);
                    }
                    return Ok(());
                }
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(chunk.len());
                    self.header.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    if self.header.len() == BLOCK {
                        let header = std::mem::take(&mut self.header);
                        self.on_header(&header)?;
                        self.header = header;
                        self.header.clear();
                    }
                }
                State::Content {
                    remaining,
                    padding,
                    keep,
                    ..
                } => {
                    if *remaining > 0 {
                        let take = (*remaining).min(chunk.len() as u64) as usize;
                        if *keep {
                            self.content.extend_from_slice(&chunk[..take]);
                        }
                        *remaining -= take as u64;
                        chunk = &chunk[take..];
                        if *remaining == 0 {
                            self.on_content_end()?;
                        }
                    } else {
                        let take = (*padding).min(chunk.len() as u64) as usize;
                        *padding -= take as u64;
                        chunk = &chunk[take..];
                    }
                    if let State::Content {
                        remaining: 0,
                        padding: 0,
                        ..
                    } = self.state
                    {
                        self.state = State::Header;
                    }
                }
            }
        }
        Ok(())
    }

    fn on_header(&mut self, header: &[u8]) -> Result<(), TarError> {
        let index = self.headers;
        self.headers += 1;
        if header.iter().all(|&b| b == 0) {
            self.zero_blocks += 1;
            if self.zero_blocks >= 2 {
                self.state = State::Ended;
            }
            return Ok(());
        }
        self.zero_blocks = 0;
        let stored = octal(&header[148..156]).ok_or(TarError::Field {
            index,
            field: "checksum",
        })?;
        let actual: u64 = header[..148]
            .iter()
            .chain([b' '; 8].iter())
            .chain(header[156..].iter())
            .map(|&b| u64::from(b))
            .sum();
        if stored != actual {
            return Err(TarError::Checksum { index });
        }
        let size = number(&header[124..136]).ok_or(TarError::Field {
            index,
            field: "size",
        })?;
        let kind = match header[156] {
            b'L' => Kind::LongName,
            b'x' => Kind::Pax,
            _ => Kind::Member,
        };
        let name = match kind {
            Kind::Member => {
                self.members += 1;
                self.long_name.take().unwrap_or_else(|| header_name(header))
            }
            Kind::LongName | Kind::Pax => String::new(),
        };
        let keep = match kind {
            Kind::Member => self.wanted.contains(&name),
            Kind::LongName | Kind::Pax => true,
        };
        let limit = match kind {
            Kind::Member => self.limit,
            // A name or a pax header longer than this is not something PostgreSQL writes.
            Kind::LongName | Kind::Pax => 64 * 1024,
        };
        if keep && size > limit {
            return Err(TarError::TooLarge { name, size, limit });
        }
        self.content.clear();
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.state = State::Content {
            name,
            kind,
            remaining: size,
            padding,
            keep,
        };
        if size == 0 {
            self.on_content_end()?;
            self.state = State::Header;
        }
        Ok(())
    }

    fn on_content_end(&mut self) -> Result<(), TarError> {
        let State::Content {
            name, kind, keep, ..
        } = &self.state
        else {
            return Ok(());
        };
        let content = std::mem::take(&mut self.content);
        match kind {
            Kind::LongName => {
                let end = content
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(content.len());
                self.long_name = Some(String::from_utf8_lossy(&content[..end]).into_owned());
            }
            Kind::Pax => self.long_name = pax_path(&content),
            Kind::Member if *keep => {
                self.finished.push(name.clone());
                self.kept.insert(name.clone(), content);
            }
            Kind::Member => {}
        }
        Ok(())
    }
}

/// The name of a ustar header: `prefix/name`, each NUL-terminated.
fn header_name(header: &[u8]) -> String {
    let field = |bytes: &[u8]| {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let name = field(&header[..100]);
    let prefix = if &header[257..262] == b"ustar" {
        field(&header[345..500])
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// The `path` record of a pax extended header (`<len> path=<value>\n` records).
fn pax_path(mut content: &[u8]) -> Option<String> {
    let mut path = None;
    while !content.is_empty() {
        let space = content.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&content[..space]).ok()?.parse().ok()?;
        if len <= space + 1 || len > content.len() {
            return path;
        }
        let record = &content[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"path=") {
            path = Some(String::from_utf8_lossy(value).into_owned());
        }
        content = &content[len..];
    }
    path
}

/// An octal field: digits, optionally surrounded by spaces and ended by NULs.
fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// A numeric field: octal, or GNU base-256 (high bit of the first byte set) for large sizes.
fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7F);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    octal(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar archive made by the `tar` crate (long names, pax headers, empty files).
    fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, content) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o600);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn wanted_members_are_kept_whatever_the_chunking() {
        let long = format!("base/{}/pg_control", "x".repeat(150));
        let data = archive(&[
            ("backup_label", b"START WAL LOCATION: 0/2000028\n"),
            ("base/1/1259", &[7u8; 9000]),
            ("empty", b""),
            (&long, b"not the one"),
            ("global/pg_control", &[1u8; 8192]),
        ]);
        for chunk in [1, 7, 511, 512, 513, 4096, data.len()] {
            let mut watch = TarWatch::new(&["backup_label", "global/pg_control", "empty"], 8192);
            for piece in data.chunks(chunk) {
                watch.feed(piece).unwrap();
            }
            assert!(watch.ended(), "chunk {chunk}");
            assert_eq!(watch.members(), 5);
            assert_eq!(
                watch.member("backup_label").unwrap(),
                b"START WAL LOCATION: 0/2000028\n"
            );
            assert_eq!(watch.member("global/pg_control").unwrap(), &[1u8; 8192][..]);
            assert!(watch.has_passed("empty"));
            assert_eq!(watch.member(&long), None);
        }
    }

    #[test]
    fn a_damaged_header_or_an_oversized_member_is_an_error() {
        let mut data = archive(&[("backup_label", b"x")]);
        data[10] ^= 1;
        let err = TarWatch::new(&[], 10).feed(&data).unwrap_err();
        assert_eq!(err, TarError::Checksum { index: 0 });
        let data = archive(&[("backup_manifest", &[0u8; 100])]);
        let err = TarWatch::new(&["backup_manifest"], 99)
            .feed(&data)
            .unwrap_err();
        assert!(matches!(err, TarError::TooLarge { size: 100, .. }), "{err}");
        let mut data = archive(&[("a", b"x")]);
        data.extend_from_slice(b"garbage");
        assert_eq!(
            TarWatch::new(&[], 10).feed(&data).unwrap_err(),
            TarError::TrailingData
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200 {
            let mut data = archive(&[("backup_label", b"label"), ("b", &[3u8; 700])]);
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % data.len();
                data[at] = (seed >> 32) as u8;
            }
            let _ = TarWatch::new(&["backup_label"], 1 << 20).feed(&data);
        }
    }
}
