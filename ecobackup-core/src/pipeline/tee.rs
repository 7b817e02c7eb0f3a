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

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{ByteStream, Sink, SinkReceipt};
use crate::error::{Error, Result};

/// Chunks queued per branch: a slow branch holds back the others after this many.
pub const BRANCH_DEPTH: usize = 4;

/// A [`Sink`] that writes one stream into every branch.
pub struct Tee {
    branches: Vec<Branch>,
    required: usize,
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
    /// `None`: the sink committed; otherwise why it failed (or was stopped).
    pub failure: Option<String>,
}

impl TeeOutcome {
    /// The branches in the order they were added; empty before the tee ran.
    pub fn branches(&self) -> Vec<BranchOutcome> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Tee {
    /// A tee that succeeds when at least `required` of its branches commit.
    pub fn new(required: usize) -> Tee {
        Tee {
            branches: Vec::new(),
            required,
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

    /// The handle to read each branch's end from after the run.
    pub fn outcome(&self) -> TeeOutcome {
        self.outcome.clone()
    }

    fn record(&self, outcomes: Vec<BranchOutcome>) {
        *self.outcome.0.lock().unwrap_or_else(|e| e.into_inner()) = outcomes;
    }
}

/// The stream a branch's sink reads.
fn branch_stream(receiver: mpsc::Receiver<Result<Bytes>>) -> ByteStream {
    Box::pin(futures::stream::unfold(receiver, |mut receiver| async {
        receiver.recv().await.map(|item| (item, receiver))
    }))
}

/// Feeds `input` to every sender until it ends, fails, or fewer than `required` branches are
/// left. Returns the input's error, if any; a stop for lack of branches is seen in the count.
async fn feed(
    mut input: ByteStream,
    senders: &mut [Option<mpsc::Sender<Result<Bytes>>>],
    required: usize,
) -> Option<Error> {
    // A closed channel: that branch's sink returned (with an error).
    let live = |senders: &mut [Option<mpsc::Sender<Result<Bytes>>>]| {
        for slot in senders.iter_mut() {
            if slot.as_ref().is_some_and(|s| s.is_closed()) {
                *slot = None;
            }
        }
        senders.iter().flatten().count()
    };
    let failure = loop {
        match input.next().await {
            Some(Ok(chunk)) => {
                for slot in senders.iter_mut() {
                    if let Some(sender) = slot {
                        if sender.send(Ok(chunk.clone())).await.is_err() {
                            *slot = None;
                        }
                    }
                }
                if live(senders) < required {
                    break None;
                }
            }
            Some(Err(e)) => break Some(e),
            None => {
                if live(senders) >= required {
                    return None;
                }
                break None;
            }
        }
    };
    // Stop every live branch with an error, never an end: none may commit.
    for sender in senders.iter_mut().flatten() {
        let _ = sender
            .send(Err(Error::Cancelled(
                "another branch of the stream failed".to_owned(),
            )))
            .await;
    }
    failure
}

#[async_trait]
impl Sink for Tee {
    async fn write(&mut self, input: ByteStream) -> Result<SinkReceipt> {
        let mut senders = Vec::with_capacity(self.branches.len());
        let mut writes = Vec::with_capacity(self.branches.len());
        for branch in &mut self.branches {
            let (sender, receiver) = mpsc::channel(BRANCH_DEPTH);
            senders.push(Some(sender));
            writes.push(branch.sink.write(branch_stream(receiver)));
        }
        let required = self.required;
        let feeding = async {
            let failure = feed(input, &mut senders, required).await;
            // Dropping the senders ends each live branch's stream: it commits.
            senders.clear();
            failure
        };
        let (input_failure, results) = tokio::join!(feeding, futures::future::join_all(writes));

        let mut receipt = None;
        let mut outcomes = Vec::with_capacity(results.len());
        for (branch, result) in self.branches.iter().zip(results) {
            let failure = match result {
                Ok(r) => {
                    receipt.get_or_insert(r);
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            outcomes.push(BranchOutcome {
                label: branch.label.clone(),
                failure,
            });
        }
        let committed = outcomes.iter().filter(|o| o.failure.is_none()).count();
        let failures: Vec<String> = outcomes
            .iter()
            .filter_map(|o| o.failure.as_ref().map(|f| format!("{}: {f}", o.label)))
            .collect();
        self.record(outcomes);
        if let Some(e) = input_failure {
            return Err(e);
        }
        match receipt {
            Some(receipt) if committed >= required => Ok(receipt),
            _ => Err(Error::Refused {
                context: format!(
                    "only {committed} of {} targets could be written, {required} required",
                    self.branches.len()
                ),
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
        let tee = Tee::new(2)
            .branch("a", a.sink("x", None))
            .branch("b", b.sink("x", None));
        let outcome = tee.outcome();
        Pipeline::new(Chunks(10)).into(tee).run().await.unwrap();
        let (x, y) = (a.get("x").await.unwrap(), b.get("x").await.unwrap());
        assert_eq!(x.as_ref().map(|b| b.len()), Some(TOTAL));
        assert_eq!(x, y);
        assert!(outcome.branches().iter().all(|o| o.failure.is_none()));
    }

    #[tokio::test]
    async fn a_failed_branch_drops_out_when_enough_are_left() {
        let a = memory();
        let tee = Tee::new(1)
            .branch("a", a.sink("x", None))
            .branch("b", Failing { after: 2 });
        let outcome = tee.outcome();
        Pipeline::new(Chunks(10)).into(tee).run().await.unwrap();
        assert_eq!(a.get("x").await.unwrap().map(|b| b.len()), Some(TOTAL));
        let branches = outcome.branches();
        assert_eq!(branches[0].failure, None);
        assert!(branches[1]
            .failure
            .as_deref()
            .unwrap()
            .contains("disk is full"));
    }

    #[tokio::test]
    async fn too_few_branches_commit_nothing() {
        let a = memory();
        let tee = Tee::new(2)
            .branch("a", a.sink("x", None))
            .branch("b", Failing { after: 2 });
        let error = Pipeline::new(Chunks(10))
            .into(tee)
            .run()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("only 0 of 2 targets") && error.contains("b: "),
            "{error}"
        );
        assert_eq!(
            a.get("x").await.unwrap(),
            None,
            "the live branch must not commit"
        );
    }
}
