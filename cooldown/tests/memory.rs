//! Memory stays bounded by itself: a million one-off keys are forgotten once
//! their window is over, and `max_keys` is never exceeded.

use std::time::Duration;

use seawall_cooldown::Cooldown;

const WINDOW: Duration = Duration::from_secs(1800);

#[tokio::test(start_paused = true)]
async fn a_million_one_off_keys_are_forgotten_after_the_window() {
    let c: Cooldown<u64> = Cooldown::builder()
        .window(WINDOW)
        .max_keys(2_000_000)
        .build()
        .unwrap();
    for k in 0..1_000_000u64 {
        assert!(c.check(&k).is_fire());
    }
    assert_eq!(c.len(), 1_000_000);
    assert!(c.check(&7).is_suppressed());

    tokio::time::advance(WINDOW + Duration::from_secs(1)).await;
    // No background task and no explicit call: the next checks sweep.
    for k in 2_000_000..2_000_003u64 {
        assert!(c.check(&k).is_fire());
    }
    // The three new keys, and 7: it has a suppressed event to report.
    assert_eq!(c.len(), 4);
    let digests = c.drain_digests();
    assert_eq!(digests.len(), 1);
    assert_eq!((digests[0].0, digests[0].1.count), (7, 1));
    assert_eq!(c.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn max_keys_is_never_exceeded_within_one_window() {
    let c: Cooldown<u64> = Cooldown::builder()
        .window(WINDOW)
        .max_keys(10_000)
        .build()
        .unwrap();
    let mut fires = 0u64;
    for k in 0..200_000u64 {
        fires += u64::from(c.check(&k).is_fire());
        if k % 1000 == 0 {
            assert!(c.len() <= 10_000, "len {} at {k}", c.len());
        }
    }
    assert_eq!(fires, 200_000);
    assert!(c.len() <= 10_000);
    // The most recent keys are still cooling down.
    assert!(c.check(&199_999).is_suppressed());
}
