//! Every submitted item is answered exactly once, with its own result, under random arrivals,
//! sizes, failures and cancellations; cancelled work never reaches the model.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use armorm_batcher::{BatchError, BatchPolicy, Batcher, CostModel, NoObserver, Scorer};
use proptest::prelude::*;

/// Item = (id, tokens); output = a function of the id, so a mixed-up reply is visible.
struct Fake {
    seen: Arc<Mutex<Vec<u64>>>,
    /// Batches containing one of these ids fail (odd) or panic (even).
    poison: HashSet<u64>,
    /// Blocks before each batch until released, to let a queue build up.
    gate: Option<mpsc::Receiver<()>>,
    /// Batches that have reached the scorer (counted before the gate).
    entered: Arc<AtomicUsize>,
}

fn answer(id: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xABCD
}

impl Scorer for Fake {
    type Item = (u64, usize);
    type Output = u64;

    fn tokens(item: &(u64, usize)) -> usize {
        item.1
    }

    fn score(&mut self, batch: &[&(u64, usize)]) -> Result<Vec<u64>, String> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            let _ = gate.recv();
        }
        self.seen.lock().unwrap().extend(batch.iter().map(|i| i.0));
        if let Some(bad) = batch.iter().find(|i| self.poison.contains(&i.0)) {
            if bad.0 % 2 == 0 {
                panic!("poisoned item {}", bad.0);
            }
            return Err(format!("poisoned item {}", bad.0));
        }
        Ok(batch.iter().map(|i| answer(i.0)).collect())
    }
}

fn policy(max_queue_items: usize) -> BatchPolicy {
    BatchPolicy {
        max_batch_tokens: 64,
        max_batch_size: 6,
        max_batch_wait: Duration::from_millis(2),
        max_queue_tokens: 10_000,
        max_queue_items,
        cost: CostModel::Packed,
    }
}

#[derive(Debug, Clone)]
struct Arrival {
    tokens: usize,
    delay_us: u64,
    cancel_after_us: Option<u64>,
    poison: bool,
}

fn arrival() -> impl Strategy<Value = Arrival> {
    (1usize..40, 0u64..300, prop::option::weighted(0.25, 0u64..2000), prop::bool::weighted(0.05))
        .prop_map(|(tokens, delay_us, cancel_after_us, poison)| Arrival { tokens, delay_us, cancel_after_us, poison })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_item_answered_once_with_its_own_result(arrivals in prop::collection::vec(arrival(), 1..80), queue in 4usize..200) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let poison: HashSet<u64> = arrivals.iter().enumerate().filter(|(_, a)| a.poison).map(|(i, _)| i as u64).collect();
        let fake = Fake { seen: seen.clone(), poison: poison.clone(), gate: None, entered: Arc::default() };
        let batcher = Batcher::start(fake, policy(queue), Arc::new(NoObserver)).unwrap();
        let results = rt.block_on(async {
            let batcher = &batcher;
            let tasks = arrivals.iter().enumerate().map(|(i, a)| {
                let a = a.clone();
                async move {
                    tokio::time::sleep(Duration::from_micros(a.delay_us)).await;
                    let fut = batcher.submit((i as u64, a.tokens));
                    match a.cancel_after_us {
                        Some(us) => tokio::time::timeout(Duration::from_micros(us), fut).await.ok(),
                        None => Some(fut.await),
                    }
                }
            });
            futures_join_all(tasks).await
        });
        batcher.shutdown();
        let seen = seen.lock().unwrap().clone();
        let unique: HashSet<u64> = seen.iter().copied().collect();
        prop_assert_eq!(unique.len(), seen.len(), "an item reached the model twice");
        for (i, result) in results.into_iter().enumerate() {
            let id = i as u64;
            match result {
                None => {} // cancelled by its caller
                Some(Ok(scored)) => {
                    prop_assert_eq!(scored.output, answer(id));
                    prop_assert!(unique.contains(&id));
                }
                Some(Err(BatchError::Forward(msg))) => prop_assert!(msg.contains("poisoned"), "{}", msg),
                Some(Err(BatchError::Overloaded { .. })) => prop_assert!(!unique.contains(&id)),
                Some(Err(other)) => prop_assert!(false, "unexpected error {:?}", other),
            }
        }
    }
}

/// Runs futures concurrently on the current task and collects their outputs in order.
async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let set: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    let mut set: Vec<_> = set.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in set.iter_mut().zip(outputs.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future completed")).collect()
}

/// Polls `ready` every 2 ms for up to a second: tests wait on observable state, not on sleeps.
async fn wait_for(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..500 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A one-item-per-batch batcher whose scorer blocks until `release` lets each batch through.
struct Gated {
    batcher: Arc<Batcher<Fake>>,
    release: mpsc::Sender<()>,
    seen: Arc<Mutex<Vec<u64>>>,
    entered: Arc<AtomicUsize>,
}

fn gated(max_queue_items: usize) -> Gated {
    let (release, gate) = mpsc::channel();
    let (seen, entered): (Arc<Mutex<Vec<u64>>>, Arc<AtomicUsize>) = Default::default();
    let fake = Fake { seen: seen.clone(), poison: HashSet::new(), gate: Some(gate), entered: entered.clone() };
    let mut one_at_a_time = policy(max_queue_items);
    one_at_a_time.max_batch_size = 1;
    let batcher = Arc::new(Batcher::start(fake, one_at_a_time, Arc::new(NoObserver)).unwrap());
    Gated { batcher, release, seen, entered }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn cancelled_items_never_reach_the_model() {
    let Gated { batcher, release, seen, entered } = gated(100);
    runtime().block_on(async {
        let submit = |id: u64| {
            let b = batcher.clone();
            tokio::spawn(async move { b.submit((id, 1)).await })
        };
        // Item 0 occupies the worker (inside the scorer, blocked on the gate); 1..=5 then wait.
        let mut handles = vec![submit(0)];
        wait_for("item 0 in the scorer", || entered.load(Ordering::SeqCst) == 1).await;
        handles.extend((1..6u64).map(submit));
        wait_for("five queued items", || batcher.queue_depth().0 == 5).await;
        // Clients of 2 and 4 go away while queued.
        handles[2].abort();
        handles[4].abort();
        tokio::time::sleep(Duration::from_millis(20)).await;
        for _ in 0..6 {
            let _ = release.send(());
        }
        for (id, h) in handles.into_iter().enumerate() {
            if id == 2 || id == 4 {
                continue;
            }
            assert_eq!(h.await.unwrap().unwrap().output, answer(id as u64));
        }
    });
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.contains(&2) && !seen.contains(&4), "cancelled items were scored: {seen:?}");
    assert_eq!(seen.len(), 4);
}

#[test]
fn overload_is_refused_at_once_and_a_stopped_worker_takes_no_work() {
    let Gated { batcher, release, entered, .. } = gated(2);
    let rt = runtime();
    rt.block_on(async {
        let too_big = batcher.submit((9, 65)).await;
        assert!(matches!(too_big, Err(BatchError::TooLarge { tokens: 65, budget: 64 })));
        let submit = |id: u64| {
            let b = batcher.clone();
            tokio::spawn(async move { b.submit((id, 1)).await })
        };
        // 0 runs (blocked on the gate), 1 and 2 fill the queue, so 3 is refused at once.
        let first = submit(0);
        wait_for("item 0 in the scorer", || entered.load(Ordering::SeqCst) == 1).await;
        let second = submit(1);
        wait_for("one queued item", || batcher.queue_depth().0 == 1).await;
        // A request of two items with room for one is refused whole: nothing of it is queued.
        let pair = batcher.submit_all(vec![(10, 1), (11, 1)]).await;
        assert!(matches!(pair, Err(BatchError::Overloaded { queued_items: 1, .. })), "{pair:?}");
        assert_eq!(batcher.queue_depth(), (1, 1));
        // More items than the queue can ever hold is a different error: retrying cannot help.
        let never = batcher.submit_all(vec![(12, 1), (13, 1), (14, 1)]).await;
        assert!(matches!(never, Err(BatchError::ExceedsQueue { items: 3, max_items: 2, .. })), "{never:?}");
        let third = submit(2);
        wait_for("two queued items", || batcher.queue_depth().0 == 2).await;
        let fourth = batcher.submit((3, 1)).await;
        assert!(matches!(fourth, Err(BatchError::Overloaded { queued_items: 2, .. })), "{fourth:?}");
        for _ in 0..3 {
            let _ = release.send(());
        }
        for (id, h) in [first, second, third].into_iter().enumerate() {
            assert_eq!(h.await.unwrap().unwrap().output, answer(id as u64));
        }
    });
    batcher.shutdown();
    assert!(!batcher.is_alive());
    let after = rt.block_on(batcher.submit((5, 1)));
    assert!(matches!(after, Err(BatchError::ShuttingDown)), "{after:?}");
}
