//! proptest state machine: try_lock / drop / extend / advance against a simple model of
//! leases (one holder per key, deadline, strictly increasing tokens).

use std::time::Duration;

use proptest::prelude::*;
use seawall_keyed_lock::{Guard, KeyedLock};
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum Op {
    TryLock { key: u8, ttl: u8 },
    Drop { guard: usize },
    Extend { guard: usize, ttl: u8 },
    Advance { secs: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3u8, 1..20u8).prop_map(|(key, ttl)| Op::TryLock { key, ttl }),
        2 => (0..8usize).prop_map(|guard| Op::Drop { guard }),
        2 => (0..8usize, 1..20u8).prop_map(|(guard, ttl)| Op::Extend { guard, ttl }),
        2 => (0..15u8).prop_map(|secs| Op::Advance { secs }),
    ]
}

#[derive(Debug, Clone, Copy)]
struct ModelLease {
    guard: usize,
    deadline: Instant,
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let locks = KeyedLock::<u8>::builder().shards(2).build().unwrap();
        // Real guards by creation index; model: current lease per key, last token per key.
        let mut guards: Vec<Option<(u8, Guard<u8>)>> = Vec::new();
        let mut model: [Option<ModelLease>; 3] = [None; 3];
        let mut last_token = [0u64; 3];
        for op in ops {
            let now = Instant::now();
            match op {
                Op::TryLock { key, ttl } => {
                    let k = key as usize;
                    let free = model[k].is_none_or(|l| l.deadline <= now);
                    let res = locks.try_lock_with_ttl(&key, Duration::from_secs(ttl.into()));
                    match res {
                        Ok(g) => {
                            prop_assert!(free, "granted while model says held");
                            prop_assert!(g.token().get() > last_token[k]);
                            last_token[k] = g.token().get();
                            prop_assert_eq!(g.deadline(), now + Duration::from_secs(ttl.into()));
                            model[k] = Some(ModelLease {
                                guard: guards.len(),
                                deadline: g.deadline(),
                            });
                            guards.push(Some((key, g)));
                        }
                        Err(busy) => {
                            prop_assert!(!free, "busy while model says free");
                            prop_assert_eq!(busy.expires_at, model[k].unwrap().deadline);
                        }
                    }
                }
                Op::Drop { guard } => {
                    if let Some(slot) = guards.get_mut(guard)
                        && let Some((key, g)) = slot.take()
                    {
                        let k = key as usize;
                        drop(g);
                        if model[k].is_some_and(|l| l.guard == guard) {
                            model[k] = None;
                        }
                    }
                }
                Op::Extend { guard, ttl } => {
                    if let Some(Some((key, g))) = guards.get_mut(guard) {
                        let k = *key as usize;
                        let live = model[k].is_some_and(|l| l.guard == guard && l.deadline > now);
                        let res = g.extend(Duration::from_secs(ttl.into())).await;
                        prop_assert_eq!(res.is_ok(), live);
                        if let Ok(deadline) = res {
                            prop_assert_eq!(deadline, now + Duration::from_secs(ttl.into()));
                            model[k].as_mut().unwrap().deadline = deadline;
                        }
                    }
                }
                Op::Advance { secs } => {
                    tokio::time::advance(Duration::from_secs(secs.into())).await;
                }
            }
            // is_expired agrees with the model for every guard still alive.
            let now = Instant::now();
            for (i, entry) in guards.iter().enumerate() {
                if let Some((key, g)) = entry {
                    let current = model[*key as usize].is_some_and(|l| l.guard == i);
                    if current {
                        prop_assert_eq!(
                            g.is_expired(),
                            model[*key as usize].unwrap().deadline <= now
                        );
                    } else {
                        prop_assert!(g.is_expired(), "a replaced lease must be expired");
                    }
                }
            }
            let held = model.iter().filter(|l| l.is_some()).count();
            prop_assert_eq!(locks.len(), held);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn leases_follow_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
