//! Concurrency claims, checked on a multi-thread runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use seawall_cooldown::{Cooldown, Decision};

const TASKS: usize = 8;
const PER_TASK: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_on_one_key_fire_exactly_once_per_window() {
    let c: Cooldown<&'static str> = Cooldown::builder()
        .window(Duration::from_secs(3600))
        .build()
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (c, barrier) = (c.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut fires = 0;
                let mut counts = Vec::new();
                for i in 0..PER_TASK {
                    match c.check(&"hot") {
                        Decision::Fire(_) => fires += 1,
                        Decision::Suppressed(s) => counts.push(s.suppressed),
                    }
                    if i % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                (fires, counts)
            })
        })
        .collect();
    let mut fires = 0;
    let mut counts = Vec::new();
    for t in tasks {
        let (f, c) = t.await.unwrap();
        fires += f;
        counts.extend(c);
    }
    assert_eq!(fires, 1);
    // Check-and-count is atomic: every suppressed event got its own number.
    counts.sort_unstable();
    let expected: Vec<u64> = (1..(TASKS * PER_TASK) as u64).collect();
    assert_eq!(counts, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_never_overlap_and_lose_no_count() {
    let c: Cooldown<u32> = Cooldown::builder()
        .window(Duration::from_secs(3600))
        .build()
        .unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (c, in_flight, barrier) = (c.clone(), in_flight.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let (mut won, mut lost) = (0u64, 0u64);
                for _ in 0..500 {
                    match c.reserve(&1) {
                        Ok(r) => {
                            won += 1;
                            assert_eq!(
                                in_flight.fetch_add(1, Ordering::SeqCst),
                                0,
                                "two sends at once"
                            );
                            tokio::task::yield_now().await; // the "send"
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                            drop(r); // the send failed: roll back
                        }
                        Err(_) => lost += 1,
                    }
                }
                (won, lost)
            })
        })
        .collect();
    let (mut won, mut lost) = (0, 0);
    for t in tasks {
        let (w, l) = t.await.unwrap();
        won += w;
        lost += l;
    }
    assert_eq!(won + lost, (TASKS * 500) as u64);
    assert!(won >= 1);
    // Every losing attempt is still owed to someone: the rollbacks gave the
    // digests back, so the next fire reports all of them.
    let r = c.reserve(&1).expect("all reservations rolled back");
    assert_eq!(r.fire().suppressed_since_last, lost);
    r.commit();
    assert!(c.check(&1).is_suppressed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_keys_from_many_tasks_keep_exact_counts() {
    let c: Cooldown<u32> = Cooldown::builder()
        .window(Duration::from_secs(3600))
        .max_keys(1_000_000)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut fires = 0u32;
                for i in 0..PER_TASK as u32 {
                    fires += u32::from(c.check(&(i % 500)).is_fire());
                }
                fires
            })
        })
        .collect();
    let mut fires = 0;
    for t in tasks {
        fires += t.await.unwrap();
    }
    assert_eq!(fires, 500, "one fire per key");
    assert_eq!(c.len(), 500);
}
