//! Group commit: writes that the records of one batch request while an earlier write is in flight go out
//! together in the next call.
//!
//! The records of an SQS batch are handled concurrently and each ends with the same bookkeeping (settle its
//! ledger entry, mark its violation). One call per record is the largest share of an enforcement's calls, and
//! DynamoDB's batch calls take 25 writes or 100 reads. Each caller still waits for its own write and gets its own
//! result, so a record reports success only once its bookkeeping is stored, exactly as with a call of its own.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error::{AwsError, Class};

/// A background task that hands every item submitted meanwhile, up to `max`, to one `flush`.
pub struct Coalescer<T, R> {
    tx: mpsc::UnboundedSender<(T, oneshot::Sender<R>)>,
}

/// The flush task is gone (it panicked): the caller's item was not written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the group writer stopped before answering")]
pub struct Stopped;

/// How long the first item of a group waits for the others. The records of a batch reach their bookkeeping
/// within a few milliseconds of each other when the service answers evenly; a longer wait only adds latency,
/// since whatever arrives during a flush goes out in the next one anyway.
pub const LINGER: Duration = Duration::from_millis(3);

impl<T: Send + 'static, R: Send + 'static> Coalescer<T, R> {
    /// Starts the task on the current Tokio runtime. `flush` returns one result per item, in order.
    pub fn spawn<F, Fut>(max: usize, flush: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(T, oneshot::Sender<R>)>();
        let max = max.max(1);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                if max > 1 {
                    tokio::time::sleep(LINGER).await;
                }
                while group.len() < max {
                    match rx.try_recv() {
                        Ok(x) => group.push(x),
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = group.into_iter().unzip();
                // A flush that answers fewer items than it got leaves the rest to see `Stopped`: never a false Ok.
                for (reply, result) in replies.into_iter().zip(flush(items).await) {
                    let _ = reply.send(result);
                }
            }
        });
        Self { tx }
    }

    /// Submits one item and waits for its result.
    pub async fn submit(&self, item: T) -> Result<R, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

impl<T: Send + 'static, R: Send + 'static, E: From<AwsError> + Send + 'static> Coalescer<T, Result<R, E>> {
    /// Submits one item of a group of `op` calls. A stopped group is a transient failure of `op`, so the
    /// caller's record is retried rather than taken for done.
    pub async fn call(&self, item: T, op: &'static str) -> Result<R, E> {
        self.submit(item).await.unwrap_or_else(|e| {
            Err(AwsError { op, class: Class::Transient, code: "GroupStopped".into(), detail: e.to_string() }.into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn concurrent_items_share_calls_and_each_gets_its_own_result() {
        let calls = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let seen = calls.clone();
        let c = Coalescer::spawn(4, move |items: Vec<u32>| {
            seen.lock().unwrap_or_else(|p| p.into_inner()).push(items.clone());
            async move { items.into_iter().map(|i| if i % 5 == 0 { Err(i) } else { Ok(i * 10) }).collect() }
        });
        // GIVEN ten items submitted at once
        let results = futures::future::join_all((1..=10).map(|i| c.submit(i))).await;
        // THEN each gets the answer for its own item, the failures included
        let want: Vec<Result<Result<u32, u32>, Stopped>> =
            (1..=10).map(|i| Ok(if i % 5 == 0 { Err(i) } else { Ok(i * 10) })).collect();
        assert_eq!(results, want);
        // AND they went out in calls of at most four, every item exactly once
        let calls = calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(calls.len() >= 3 && calls.len() < 10, "{calls:?}");
        assert!(calls.iter().all(|c| c.len() <= 4), "{calls:?}");
        let mut all: Vec<u32> = calls.concat();
        all.sort_unstable();
        assert_eq!(all, (1..=10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_flush_that_answers_too_few_items_fails_the_rest_instead_of_succeeding() {
        let c = Coalescer::spawn(8, |items: Vec<u32>| async move { items.into_iter().take(1).collect::<Vec<_>>() });
        let results = futures::future::join_all((0..3).map(|i| c.submit(i))).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        assert_eq!(results.iter().filter(|r| **r == Err(Stopped)).count(), 2, "{results:?}");
    }

    #[tokio::test]
    async fn a_call_the_group_cannot_answer_is_a_transient_failure_of_its_operation() {
        let c = Coalescer::spawn(8, |items: Vec<u32>| async move {
            items.into_iter().take(1).map(Ok::<u32, AwsError>).collect::<Vec<_>>()
        });
        let results = futures::future::join_all((0..2).map(|i| c.call(i, "ec2:DescribeInstances"))).await;
        let failed: Vec<&AwsError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(failed.len(), 1, "{results:?}");
        assert_eq!(
            (failed[0].op, failed[0].class, failed[0].code.as_str()),
            ("ec2:DescribeInstances", Class::Transient, "GroupStopped")
        );
    }
}
