//! Group commit: writes that the records of one batch request while an earlier write is in flight go out
//! together in the next call.
//!
//! The records of an SQS batch are handled concurrently and each ends with the same bookkeeping (settle its
//! ledger entry, mark its violation). One call per record is the largest share of an enforcement's calls, and
//! DynamoDB's batch calls take 25 writes or 100 reads. Each caller still waits for its own write and gets its own
//! result, so a record reports success only once its bookkeeping is stored, exactly as with a call of its own.
//!
//! How long a group waits for more items: inside a batch (the runner runs each batch in a [`Crew`]), until every
//! record still being handled is waiting on some group, since only then can no sibling arrive any more; so a
//! batch's records that all claim, then all close, do so in one call each, however unevenly the service answers.
//! A fixed linger would split them whenever one record's call is a little slower than its siblings'. Outside a
//! crew, and as a cap, a fixed time.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{AwsError, Class};

tokio::task_local! {
    static CREW: Arc<Crew>;
}

/// The records of one batch: how many are still being handled, and how many of those wait on a group.
#[derive(Debug, Default)]
pub struct Crew {
    live: AtomicIsize,
    // may dip below zero for an instant: see `Coalescer::submit`
    waiting: AtomicIsize,
    changed: Notify,
}

/// One record's place in its [`Crew`], held while the record is handled.
#[derive(Debug)]
pub struct Member(Arc<Crew>);

impl Crew {
    /// A crew for one batch.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts a record in until the returned member is dropped.
    pub fn join(self: &Arc<Self>) -> Member {
        self.live.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        Member(self.clone())
    }

    /// Runs `fut` (a batch) with this crew, so the groups its records submit to can see it.
    pub async fn scope<F: Future>(self: Arc<Self>, fut: F) -> F::Output {
        CREW.scope(self, fut).await
    }

    fn count_waiting(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Every record still being handled waits on a group: nobody else can join one now.
    fn all_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) >= self.live.load(Ordering::SeqCst)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Uncounts a submitter once its answer is sent. Not once it reads it: a sibling answered but not yet running
/// again is about to submit elsewhere, and a group that counted it as waiting would leave without it.
struct Waiting(Arc<Crew>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

type Submitted<T, R> = (T, oneshot::Sender<R>, Option<Waiting>);

/// A background task that hands every item submitted meanwhile, up to `max`, to one `flush`.
pub struct Coalescer<T, R> {
    tx: mpsc::UnboundedSender<Submitted<T, R>>,
}

/// The flush task is gone (it panicked): the caller's item was not written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the group writer stopped before answering")]
pub struct Stopped;

/// Outside a crew, how long the first item of a group waits for the others: whatever arrives during a flush goes
/// out in the next one anyway, so a longer wait only adds latency.
pub const LINGER: Duration = Duration::from_millis(3);

/// Inside a crew, the longest a group waits for siblings still busy elsewhere (a slow call, a retry with
/// backoff): past it, they go in the next group.
pub const MAX_LINGER: Duration = Duration::from_secs(1);

impl<T: Send + 'static, R: Send + 'static> Coalescer<T, R> {
    /// Starts the task on the current Tokio runtime. `flush` returns one result per item, in order.
    pub fn spawn<F, Fut>(max: usize, flush: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Submitted<T, R>>();
        let max = max.max(1);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let crew = first.2.as_ref().map(|w| w.0.clone());
                let mut group = vec![first];
                if max > 1 {
                    gather(&mut rx, &mut group, max, crew.as_deref()).await;
                }
                let mut items = Vec::with_capacity(group.len());
                let mut replies = Vec::with_capacity(group.len());
                for (item, reply, waiting) in group {
                    items.push(item);
                    replies.push((reply, waiting));
                }
                // A flush that answers fewer items than it got leaves the rest to see `Stopped`: never a false Ok.
                let mut results = flush(items).await.into_iter();
                for (reply, waiting) in replies {
                    if let Some(result) = results.next() {
                        let _ = reply.send(result);
                    }
                    drop(waiting);
                }
            }
        });
        Self { tx }
    }

    /// Submits one item and waits for its result.
    pub async fn submit(&self, item: T) -> Result<R, Stopped> {
        // Counted in only once sent: a group woken by the count then finds the item in the channel (counted before,
        // on another worker thread the group could decide in between and leave without it). The group may answer
        // and uncount it before it is counted in; the count dips below zero for that instant, which only delays.
        let crew = CREW.try_with(Arc::clone).ok();
        let (reply, answer) = oneshot::channel();
        let guard = crew.as_ref().map(|c| Waiting(c.clone()));
        if let Err(mpsc::error::SendError(lost)) = self.tx.send((item, reply, guard)) {
            if let Some(w) = &lost.2 {
                w.0.count_waiting(); // balances the guard's drop
            }
            return Err(Stopped);
        }
        if let Some(c) = &crew {
            c.count_waiting();
        }
        answer.await.map_err(|_| Stopped)
    }
}

/// Adds to `group` what arrives until it is full, every record of `crew` waits on some group, or the wait is over.
async fn gather<T, R>(
    rx: &mut mpsc::UnboundedReceiver<Submitted<T, R>>,
    group: &mut Vec<Submitted<T, R>>,
    max: usize,
    crew: Option<&Crew>,
) {
    let drain = |rx: &mut mpsc::UnboundedReceiver<Submitted<T, R>>, group: &mut Vec<Submitted<T, R>>| {
        while group.len() < max {
            match rx.try_recv() {
                Ok(x) => group.push(x),
                Err(_) => break,
            }
        }
    };
    let Some(crew) = crew else {
        tokio::time::sleep(LINGER).await;
        drain(rx, group);
        return;
    };
    let deadline = Instant::now() + MAX_LINGER;
    loop {
        let changed = crew.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        drain(rx, group);
        if group.len() >= max || crew.all_waiting() {
            return;
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {
                drain(rx, group);
                return;
            }
        }
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

    /// The groups a coalescer flushed, in order.
    type Flushed = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A coalescer that records each group it flushes and answers every item with itself.
    fn recording(max: usize) -> (Coalescer<u32, u32>, Flushed) {
        let calls = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let seen = calls.clone();
        let c = Coalescer::spawn(max, move |items: Vec<u32>| {
            seen.lock().unwrap_or_else(|p| p.into_inner()).push(items.clone());
            async move { items }
        });
        (c, calls)
    }

    fn groups(calls: &Flushed) -> Vec<Vec<u32>> {
        let mut g = calls.lock().unwrap_or_else(|p| p.into_inner()).clone();
        g.iter_mut().for_each(|x| x.sort_unstable());
        g
    }

    #[tokio::test(start_paused = true)]
    async fn a_crew_waits_for_siblings_that_arrive_late_where_a_fixed_linger_would_split_them() {
        // GIVEN four records whose items arrive 20 ms apart, far beyond LINGER
        let staggered = |c: Arc<Coalescer<u32, u32>>, crew: Option<Arc<Crew>>| async move {
            let jobs = (0..4u32).map(|i| {
                let (c, member) = (c.clone(), crew.as_ref().map(|k| k.join()));
                async move {
                    let _member = member;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(i))).await;
                    c.submit(i).await
                }
            });
            futures::future::join_all(jobs).await
        };
        let (alone, alone_calls) = recording(10);
        let answers = staggered(Arc::new(alone), None).await;
        assert_eq!(answers, (0..4).map(Ok).collect::<Vec<_>>());
        assert_eq!(groups(&alone_calls).len(), 4, "without a crew each goes alone: {:?}", groups(&alone_calls));
        // WHEN they are one batch's crew
        let (together, calls) = recording(10);
        let crew = Crew::new();
        let started = Instant::now();
        let answers = crew.clone().scope(staggered(Arc::new(together), Some(crew))).await;
        // THEN one call carries all four as soon as the last arrives (not at the cap), each getting its own answer
        assert_eq!(answers, (0..4).map(Ok).collect::<Vec<_>>());
        assert_eq!(groups(&calls), vec![vec![0, 1, 2, 3]]);
        assert!(started.elapsed() < Duration::from_millis(70), "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_sibling_that_finishes_without_submitting_releases_the_group_at_once() {
        let (c, calls) = recording(10);
        let crew = Crew::new();
        let started = Instant::now();
        let (waiting, leaving) = (crew.join(), crew.join());
        let flushed_after = crew
            .clone()
            .scope(async {
                let submit = async {
                    let _m = waiting;
                    let answer = c.submit(7).await;
                    (answer, started.elapsed())
                };
                // the sibling fails early (say, a bad message) and never reaches the group
                let leave = async {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    drop(leaving);
                };
                let ((answer, at), ()) = tokio::join!(submit, leave);
                assert_eq!(answer, Ok(7));
                at
            })
            .await;
        assert_eq!(groups(&calls), vec![vec![7]]);
        assert!(flushed_after >= Duration::from_millis(30) && flushed_after < MAX_LINGER, "{flushed_after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sibling_busy_elsewhere_holds_the_group_no_longer_than_the_cap() {
        let (c, calls) = recording(10);
        let crew = Crew::new();
        let started = Instant::now();
        let (waiting, busy) = (crew.join(), crew.join());
        let at = crew
            .clone()
            .scope(async {
                let _busy = busy; // a record stuck in a slow call of its own for the whole test
                let _m = waiting;
                let answer = c.submit(1).await;
                assert_eq!(answer, Ok(1));
                started.elapsed()
            })
            .await;
        assert_eq!(groups(&calls), vec![vec![1]]);
        assert!(at >= MAX_LINGER && at < MAX_LINGER + Duration::from_millis(50), "{at:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn records_that_claim_then_close_make_one_call_for_each_step() {
        // GIVEN two grouped steps, the second reached only after the first answers and some uneven work
        let (claims, claim_calls) = recording(25);
        let (closings, close_calls) = recording(25);
        let crew = Crew::new();
        let jobs: Vec<_> = (0..10u32)
            .map(|i| {
                let member = crew.join();
                let (claims, closings) = (&claims, &closings);
                async move {
                    let _member = member;
                    tokio::time::sleep(Duration::from_millis(u64::from(i % 3) * 7)).await;
                    let a = claims.submit(i).await;
                    tokio::time::sleep(Duration::from_millis(u64::from(i) * 11)).await;
                    let b = closings.submit(i + 100).await;
                    (a, b)
                }
            })
            .collect();
        let answers = crew.clone().scope(futures::future::join_all(jobs)).await;
        assert_eq!(answers, (0..10).map(|i| (Ok(i), Ok(i + 100))).collect::<Vec<_>>());
        // THEN one call for the claims and one for the closings
        assert_eq!(groups(&claim_calls), vec![(0..10).collect::<Vec<_>>()]);
        assert_eq!(groups(&close_calls), vec![(100..110).collect::<Vec<_>>()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_multi_threaded_runtime_a_group_never_leaves_without_a_sibling_already_counted() {
        // The group runs on another worker thread than the records: were a record counted as waiting before its
        // item is in the channel, the group could wake in between, find everyone waiting and leave without it.
        for round in 0..300u32 {
            let (c, calls) = recording(10);
            let crew = Crew::new();
            let jobs: Vec<_> = (0..4u32)
                .map(|i| {
                    let member = crew.join();
                    let c = &c;
                    async move {
                        let _member = member;
                        c.submit(i).await
                    }
                })
                .collect();
            let answers = crew.clone().scope(futures::future::join_all(jobs)).await;
            assert_eq!(answers, (0..4).map(Ok).collect::<Vec<_>>());
            assert_eq!(groups(&calls), vec![vec![0, 1, 2, 3]], "round {round}");
        }
    }
}
