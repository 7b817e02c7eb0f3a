//! What a repository holds right now, as monitoring sees it: the last good backup of each kind
//! and database, the newest archived WAL of each timeline, the last drills, the size.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::archiver::{ArchiverState, Waiting};
use crate::drill::{drill_history, DrillHistory};
use crate::error::Result;
use crate::repository::{BackupKind, BadBackup, Manifest, Repository};
use crate::retention::Candidate;
use crate::wal::archive::{archived, newest_segments};

/// The state of a repository at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct RepositoryStatus {
    /// The repository's URL.
    pub repository: String,
    /// The moment the ages below are measured from.
    pub at: DateTime<Utc>,
    /// How many objects it holds (backups, WAL, drills, locks, signatures).
    pub objects: u64,
    /// Their total stored size.
    pub bytes: u64,
    /// Per kind and group (database), the newest good backup; sorted by kind, then group.
    pub backups: Vec<BackupGroup>,
    /// Backup folders whose manifest cannot be used (unreadable, or failing the signature
    /// check): never counted as a good backup.
    pub unusable: Vec<BadBackup>,
    /// Per timeline, the newest archived segment; sorted by timeline.
    pub wal: Vec<TimelineWal>,
    /// The drill reports stored in the repository.
    pub drills: DrillHistory,
    /// The server's archiver, when one was asked (`check --db`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerArchive>,
}

/// The good backups of one kind and group.
#[derive(Clone, Debug, Serialize)]
pub struct BackupGroup {
    /// The kind.
    pub kind: BackupKind,
    /// The group, as retention forms it ([`Candidate::from_manifest`]): the databases of a
    /// logical backup joined by `,` (`shop`, `shop,crm`), a physical backup's cluster system
    /// identifier, a files backup's set name.
    pub group: String,
    /// How many good backups it has.
    pub count: usize,
    /// The newest of them, by `finished_at`.
    pub last: LastBackup,
}

/// The newest good backup of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastBackup {
    /// Its id.
    pub id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished: its age is measured from here.
    pub finished_at: DateTime<Utc>,
    /// Its age at [`RepositoryStatus::at`], in whole seconds (negative when its clock was
    /// ahead).
    pub age_seconds: i64,
    /// Its stored size: the sum of its artifacts' stored sizes.
    pub stored_bytes: u64,
    /// `finished_at - started_at`, in whole seconds.
    pub duration_seconds: i64,
}

impl LastBackup {
    fn of(manifest: &Manifest, at: DateTime<Utc>) -> LastBackup {
        LastBackup {
            id: manifest.id.clone(),
            started_at: manifest.started_at,
            finished_at: manifest.finished_at,
            age_seconds: (at - manifest.finished_at).num_seconds(),
            stored_bytes: manifest.artifacts.iter().map(|a| a.stored_size).sum(),
            duration_seconds: (manifest.finished_at - manifest.started_at).num_seconds(),
        }
    }
}

/// The newest archived segment of one timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineWal {
    /// The timeline.
    pub timeline: u32,
    /// The newest segment's name.
    pub newest: String,
    /// When its object was written (the store's clock).
    pub archived_at: DateTime<Utc>,
    /// Its age at [`RepositoryStatus::at`], in whole seconds: the archive lag as the
    /// repository alone can tell it (see the module docs of [`super`]).
    pub age_seconds: i64,
    /// How many segments of the timeline are archived.
    pub segments: usize,
}

/// The server's archiver, read for `check --db`.
#[derive(Clone, Debug, Serialize)]
pub struct ServerArchive {
    /// What it said, when it could be read.
    pub state: Option<ArchiverState>,
    /// Whether completed WAL waits (when it could be read).
    pub waiting: Option<Waiting>,
    /// Why it could not be read.
    pub error: Option<String>,
}

impl ServerArchive {
    /// The archiver as read, or why it could not be.
    pub fn from_read(read: Result<ArchiverState>) -> ServerArchive {
        match read {
            Ok(state) => ServerArchive {
                waiting: Some(state.waiting()),
                state: Some(state),
                error: None,
            },
            Err(e) => ServerArchive {
                state: None,
                waiting: None,
                error: Some(e.to_string()),
            },
        }
    }
}

impl RepositoryStatus {
    /// The newest timeline with archived segments: the one WAL is archived on now (older
    /// timelines ended at a promotion and stay as they are).
    pub fn current_timeline(&self) -> Option<&TimelineWal> {
        self.wal.last()
    }
}

/// Reads the state of `repo`, ages measured at `now`: one listing of the whole repository (size,
/// objects, WAL), the manifests (as `list` reads them, signatures checked when signers are
/// trusted), and the newest drill summaries. Fails when the store cannot be listed or read.
pub async fn status(repo: &Repository, now: DateTime<Utc>) -> Result<RepositoryStatus> {
    let objects = repo.storage().list("").await?;
    let listing = repo.manifests().await?;
    let drills = drill_history(repo.storage()).await?;

    let mut groups: BTreeMap<(&str, String), Vec<&Manifest>> = BTreeMap::new();
    for manifest in &listing.backups {
        let group = Candidate::from_manifest(manifest).group;
        groups
            .entry((manifest.kind.as_str(), group))
            .or_default()
            .push(manifest);
    }
    let backups = groups
        .into_iter()
        .filter_map(|((_, group), manifests)| {
            // Oldest first by finished_at, as the listing is.
            let newest = manifests.last()?;
            Some(BackupGroup {
                kind: newest.kind,
                group,
                count: manifests.len(),
                last: LastBackup::of(newest, now),
            })
        })
        .collect();

    let archived = archived(&objects);
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for a in archived.iter().filter(|a| a.file.is_segment()) {
        *counts.entry(a.file.timeline()).or_default() += 1;
    }
    let wal = newest_segments(&archived)
        .into_iter()
        .map(|(timeline, newest)| TimelineWal {
            timeline,
            newest: newest.file.name(),
            archived_at: newest.modified,
            age_seconds: (now - newest.modified).num_seconds(),
            segments: counts.get(&timeline).copied().unwrap_or(0),
        })
        .collect();

    Ok(RepositoryStatus {
        repository: repo.storage().url().to_owned(),
        at: now,
        objects: objects.len() as u64,
        bytes: objects.iter().map(|o| o.size).sum(),
        backups,
        unusable: listing.bad,
        wal,
        drills,
        server: None,
    })
}
