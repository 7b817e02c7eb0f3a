//! One stream into several sinks: a backup written to more than one repository at once.
//!
//! Every branch gets the same chunks (clones of a [`Bytes`] share its memory) through its own
//! bounded channel, so memory stays at [`BRANCH_DEPTH`] chunks per branch whatever the size, and
//! the stream moves at the pace of the slowest live branch. A branch whose sink fails drops
//! out; the others go on while at least `required` are live. When fewer are, or the input
//! fails, every live branch gets an error instead of the end of its stream, so none commits.
//! (A branch can still fail in its very last step, after the others committed: then the tee
//! fails and its caller removes what was committed, as after any failed backup.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ByteStream, Sink, SinkReceipt};
use crate::error::{Error, Result};

/// Chunks queued per branch: a slow branch holds back the others after this many.
pub const BRANCH_DEPTH: usize = 4;

/// How long a branch may take no data before it is stopped as hung (a hung mount, a store
/// that accepts connections and never answers): as long as one S3 request may take.
pub const BRANCH_STALL: Duration = Duration::from_secs(300);

/// A [`Sink`] that writes one stream into every branch.
pub struct Tee {
    branches: Vec<Branch>,
    required: usize,
    stall: Duration,
    what: String,
    outcome: TeeOutcome,
}

struct Branch {
    label: String,
    sink: Box<dyn Sink>,
}

/// What became of each branch of a [`Tee`], readable once its pipeline has run.
#[derive(Clone, Default)]
pub struct TeeOutcome(Arc<Mutex<Vec<BranchOutcome>>>);

/// One branch's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchOutcome {
    /// The label the branch was added with.
    pub label: String,
    /// How it ended.
    pub end: BranchEnd,
}

/// How a branch ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BranchEnd {
    /// Its sink committed.
    Committed,
    /// Its sink failed, or took no data for too long; why.
    Failed(String),
    /// It was healthy, and stopped uncommitted because the tee failed.
    Stopped,
}

impl TeeOutcome {
    /// The branches in the order they were added; empty before the tee ran.
    pub fn branches(&self) -> Vec<BranchOutcome> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Tee {
    /// A tee of `what` (an artifact's name, for messages) that succeeds when at least
    /// `required` of its branches commit.
    pub fn new(what: impl Into<String>, required: usize) -> Tee {
        Tee {
            branches: Vec::new(),
            required,
            stall: BRANCH_STALL,
            what: what.into(),
            outcome: TeeOutcome::default(),
        }
    }

    /// Adds a branch writing into `sink`, named `label` in errors and the outcome.
    pub fn branch(mut self, label: impl Into<String>, sink: impl Sink + 'static) -> Tee {
        self.branches.push(Branch {
            label: label.into(),
            sink: Box::new(sink),
        });
        self
    }

    /// Stops a branch that takes no data for `stall` ([`BRANCH_STALL`] by default).
    pub fn stall_after(mut self, stall: Duration) -> Tee {
        self.stall = stall;
        self
    }

    /// The handle to read each branch's end from after the run.
    pub fn outcome(&self) -> TeeOutcome {
        self.outcome.clone()
    }
}

/// The stream a branch's sink reads: the chunks sent, or an error once `stop` is cancelled
/// (never an end: a stopped branch must not commit).
fn branch_stream(receiver: mpsc::Receiver<Result<Bytes>>, stop: CancellationToken) -> ByteStream {
    Box::pin(futures::stream::unfold(
        Some((receiver, stop)),
        |state| async move {
            let (mut receiver, stop) = state?;
            tokio::select! {
                biased;
                () = stop.cancelled() => Some((
                    Err(Error::Cancelled("this backup target was stopped".to_owned())),
                    None,
                )),
                item = receiver.recv() => item.map(|item| (item, Some((receiver, stop)))),
            }
        },
    ))
}

/// One branch as the feeder sees it.
struct Feed {
    sender: Option<mpsc::Sender<Result<Bytes>>>,
    stop: CancellationToken,
    /// Why the feeder gave up on it (it stalled).
    stalled: Option<String>,
}

impl Feed {
    fn is_live(&self) -> bool {
        self.sender.as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Ends the branch with an error.
    fn stop(&mut self) {
        self.sender = None;
        self.stop.cancel();
    }
}

/// Feeds `input` to every branch until it ends, fails, or fewer than `required` branches are
/// left. Returns the input's error, if any; a stop for lack of branches shows in the outcomes.
async fn feed(
    mut input: ByteStream,
    branches: &mut [Feed],
    required: usize,
    stall: Duration,
) -> Option<Error> {
    let live = |branches: &[Feed]| branches.iter().filter(|b| b.is_live()).count();
    let failure = loop {
        match input.next().await {
            Some(Ok(chunk)) => {
                for branch in branches.iter_mut() {
                    let Some(sender) = &branch.sender else {
                        continue;
                    };
                    match tokio::time::timeout(stall, sender.send(Ok(chunk.clone()))).await {
                        Ok(Ok(())) => {}
                        // Its sink returned (with an error).
                        Ok(Err(_)) => branch.sender = None,
                        Err(_) => {
                            branch.stalled =
                                Some(format!("it took no data for {} s", stall.as_secs()));
                            branch.stop();
                        }
                    }
                }
                if live(branches) < required {
                    break None;
                }
            }
            Some(Err(e)) => break Some(e),
            None if live(branches) >= required => {
                // Dropping the senders ends each live branch's stream: it commits.
                for branch in branches.iter_mut() {
                    branch.sender = None;
                }
                return None;
            }
            None => break None,
        }
    };
    // Stop every live branch with an error, never an end: none may commit.
    for branch in branches.iter_mut() {
        branch.stop();
    }
    failure
}

#[async_trait]
impl Sink for Tee {
    async fn write(&mut self, input: ByteStream) -> Result<SinkReceipt> {
        let mut feeds = Vec::with_capacity(self.branches.len());
        let mut writes = Vec::with_capacity(self.branches.len());
        let stall = self.stall;
        for branch in &mut self.branches {
            let (sender, receiver) = mpsc::channel(BRANCH_DEPTH);
            let stop = CancellationToken::new();
            let write = branch.sink.write(branch_stream(receiver, stop.clone()));
            let stopped = stop.clone();
            // A stopped branch gets an error in its stream and `stall` to act on it (abort its
            // upload); one that is stuck in its own I/O is then dropped, which aborts what it
            // can in the background, so that a hung target never holds up the others' end.
            writes.push(async move {
                // With whether it had been stopped when it ended: a failure of its own, else
                // the tee's doing.
                tokio::select! {
                    result = write => (result, stopped.is_cancelled()),
                    () = async {
                        stopped.cancelled().await;
                        tokio::time::sleep(stall).await;
                    } => (Err(Error::Cancelled(format!(
                        "this backup target did not stop within {} s",
                        stall.as_secs()
                    ))), true),
                }
            });
            feeds.push(Feed {
                sender: Some(sender),
                stop,
                stalled: None,
            });
        }
        let required = self.required;
        let (input_failure, results) = tokio::join!(
            feed(input, &mut feeds, required, stall),
            futures::future::join_all(writes)
        );

        let mut receipt = None;
        let mut outcomes = Vec::with_capacity(results.len());
        for ((branch, result), feed) in self.branches.iter().zip(results).zip(&feeds) {
            let (result, stopped) = result;
            let end = match (result, &feed.stalled) {
                (Ok(r), _) => {
                    receipt.get_or_insert(r);
                    BranchEnd::Committed
                }
                (Err(_), Some(stalled)) => BranchEnd::Failed(stalled.clone()),
                // A healthy branch the feeder stopped because the tee failed.
                (Err(_), None) if stopped => BranchEnd::Stopped,
                (Err(e), None) => BranchEnd::Failed(e.to_string()),
            };
            outcomes.push(BranchOutcome {
                label: branch.label.clone(),
                end,
            });
        }
        let committed = outcomes
            .iter()
            .filter(|o| o.end == BranchEnd::Committed)
            .count();
        let failures: Vec<String> = outcomes
            .iter()
            .filter_map(|o| match &o.end {
                BranchEnd::Failed(why) => Some(format!("{}: {why}", o.label)),
                _ => None,
            })
            .collect();
        *self.outcome.0.lock().unwrap_or_else(|e| e.into_inner()) = outcomes;
        if let Some(e) = input_failure {
            return Err(e);
        }
        match receipt {
            Some(receipt) if committed >= required => Ok(receipt),
            _ => Err(Error::TooFewTargets {
                what: self.what.clone(),
                held: committed,
                total: self.branches.len(),
                required,
                detail: failures.join("; "),
            }),
        }
    }

    async fn abort(&mut self) {
        for branch in &mut self.branches {
            branch.sink.abort().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Pipeline;
    use crate::storage::Storage;

    /// `n` chunks of a full [`crate::pipeline::CHUNK_SIZE`] (smaller ones are coalesced).
    fn chunks(n: usize) -> ByteStream {
        Box::pin(futures::stream::iter((0..n).map(|i| {
            Ok(Bytes::from(vec![i as u8; crate::pipeline::CHUNK_SIZE]))
        })))
    }

    const TOTAL: usize = 10 * crate::pipeline::CHUNK_SIZE;

    /// A sink that fails after taking `after` chunks.
    struct Failing {
        after: usize,
    }

    #[async_trait]
    impl Sink for Failing {
        async fn write(&mut self, mut input: ByteStream) -> Result<SinkReceipt> {
            let mut seen = 0;
            while let Some(chunk) = input.next().await {
                chunk?;
                seen += 1;
                if seen > self.after {
                    return Err(Error::Cancelled("the disk is full".to_owned()));
                }
            }
            Ok(SinkReceipt::default())
        }
        async fn abort(&mut self) {}
    }

    struct Chunks(usize);

    #[async_trait]
    impl crate::pipeline::Source for Chunks {
        async fn open(&mut self) -> Result<ByteStream> {
            Ok(chunks(self.0))
        }
        fn describe(&self) -> crate::pipeline::SourceInfo {
            crate::pipeline::SourceInfo::default()
        }
    }

    fn memory() -> Storage {
        Storage::from_store(
            Arc::new(object_store::memory::InMemory::new()),
            "memory://test",
        )
    }

    #[tokio::test]
    async fn every_branch_gets_every_byte() {
        let (a, b) = (memory(), memory());
        let tee = Tee::new("x", 2)
            .branch("a", a.sink("x", None))
            .branch("b", b.sink("x", None));
        let outcome = tee.outcome();
        Pipeline::new(Chunks(10)).into(tee).run().await.unwrap();
        let (x, y) = (a.get("x").await.unwrap(), b.get("x").await.unwrap());
        assert_eq!(x.as_ref().map(|b| b.len()), Some(TOTAL));
        assert_eq!(x, y);
        assert!(outcome
            .branches()
            .iter()
            .all(|o| o.end == BranchEnd::Committed));
    }

    #[tokio::test]
    async fn a_failed_branch_drops_out_when_enough_are_left() {
        let a = memory();
        let tee = Tee::new("x", 1)
            .branch("a", a.sink("x", None))
            .branch("b", Failing { after: 2 });
        let outcome = tee.outcome();
        Pipeline::new(Chunks(10)).into(tee).run().await.unwrap();
        assert_eq!(a.get("x").await.unwrap().map(|b| b.len()), Some(TOTAL));
        let branches = outcome.branches();
        assert_eq!(branches[0].end, BranchEnd::Committed);
        assert!(
            matches!(&branches[1].end, BranchEnd::Failed(why) if why.contains("disk is full")),
            "{branches:?}"
        );
    }

    #[tokio::test]
    async fn too_few_branches_commit_nothing() {
        let a = memory();
        let tee = Tee::new("x", 2)
            .branch("a", a.sink("x", None))
            .branch("b", Failing { after: 2 });
        let error = Pipeline::new(Chunks(10))
            .into(tee)
            .run()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("only 0 of 2 backup targets could take x, 2 required: b: "),
            "{error}"
        );
        assert!(
            !error.contains("a: "),
            "the healthy branch did not fail: {error}"
        );
        assert_eq!(
            a.get("x").await.unwrap(),
            None,
            "the live branch must not commit"
        );
    }

    /// A sink that takes one chunk and then never another.
    struct Hung;

    #[async_trait]
    impl Sink for Hung {
        async fn write(&mut self, mut input: ByteStream) -> Result<SinkReceipt> {
            input.next().await.transpose()?;
            futures::future::pending::<()>().await;
            unreachable!()
        }
        async fn abort(&mut self) {}
    }

    #[tokio::test]
    async fn a_hung_branch_is_stopped_and_the_others_go_on() {
        let a = memory();
        let tee = Tee::new("x", 1)
            .branch("a", a.sink("x", None))
            .branch("hung", Hung)
            .stall_after(Duration::from_millis(200));
        let outcome = tee.outcome();
        Pipeline::new(Chunks(10)).into(tee).run().await.unwrap();
        assert_eq!(a.get("x").await.unwrap().map(|b| b.len()), Some(TOTAL));
        assert!(
            matches!(&outcome.branches()[1].end, BranchEnd::Failed(why) if why.contains("took no data")),
            "{:?}",
            outcome.branches()
        );
    }
}
