//! Redis-only behaviour of the [`RedisCooldown`]: replicas sharing one
//! server, losing the script cache, keys that expire on their own, and a
//! replica that dies mid-send. Every test is `#[ignore = "needs redis-server"]`
//! and finds the server through `SEAWALL_REDIS_URL`.
//!
//! Like `conformance_redis.rs`, these run on real time: a Redis cooldown's
//! windows run on the server's clock, which a paused tokio clock cannot move.
//! Each test uses its own cooldown name; nothing is flushed.

#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt;
use redis::AsyncCommands;
use seawall_cooldown::{Decision, RedisCooldown};
use tokio::time::Instant;

mod redis_support;

use redis_support::{builder, unique_name, url};

async fn conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("SEAWALL_REDIS_URL answers")
}

/// Two replicas (two cooldowns, two connections, one name) on one server.
fn replicas(window: Duration) -> (RedisCooldown<String>, RedisCooldown<String>) {
    let name = unique_name();
    let make = || builder(window).name(name.clone()).build().unwrap();
    (make(), make())
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn replicas_share_windows_reservations_and_digests() {
    let (a, b) = replicas(Duration::from_millis(300));
    let key = "db-down".to_owned();
    assert!(a.check(&key).await.is_fire());
    assert_eq!(b.check(&key).await.suppressed().unwrap().suppressed, 1);
    assert_eq!(a.check(&key).await.suppressed().unwrap().suppressed, 2);
    let other = "cpu".to_owned();
    let r = b.reserve(&other).await.expect("free");
    assert!(a.reserve(&other).await.is_err(), "b's send is in flight");
    r.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The digests written through both replicas are drained once, by either;
    // a's lost reservation counted as a suppressed event of cpu.
    let mut drained: Vec<(String, u64)> = b
        .drain_digests()
        .await
        .into_iter()
        .map(|(k, d)| (k, d.count))
        .collect();
    drained.sort();
    assert_eq!(drained, [("cpu".to_owned(), 1), ("db-down".to_owned(), 2)]);
    assert!(a.drain_digests().await.is_empty());
    let Decision::Fire(f) = a.check(&other).await else {
        panic!("cpu's window is over")
    };
    assert_eq!((f.suppressed_since_last, f.digest), (0, None));
}

/// Many tasks on two replicas hammer one key for several windows: exactly
/// one fire per window, and every event is either the fire or counted, and
/// every counted event is reported exactly once (by a later fire or a drain).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server"]
async fn stress_two_replicas_one_key_one_fire_per_window_nothing_lost() {
    const TASKS: usize = 8;
    const WINDOW: Duration = Duration::from_millis(150);
    const RUN: Duration = Duration::from_millis(900);
    let (a, b) = replicas(WINDOW);
    let key = "hot".to_owned();
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            tokio::spawn(async move {
                let (mut events, mut fires, mut suppressed, mut reported) =
                    (0u64, Vec::new(), 0u64, 0u64);
                while start.elapsed() < RUN {
                    events += 1;
                    let sent = Instant::now();
                    match c.try_check(&key).await.expect("redis answers") {
                        Decision::Fire(f) => {
                            reported += f.suppressed_since_last;
                            fires.push((sent, Instant::now()));
                        }
                        Decision::Suppressed(_) => suppressed += 1,
                    }
                }
                (events, fires, suppressed, reported)
            })
        })
        .collect();
    let (mut events, mut fires, mut suppressed, mut reported) = (0, Vec::new(), 0, 0);
    for t in tasks {
        let (e, f, s, r) = t.await.unwrap();
        events += e;
        fires.extend(f);
        suppressed += s;
        reported += r;
    }
    tokio::time::sleep(WINDOW).await;
    for (_, d) in a.drain_digests().await {
        reported += d.count;
    }
    assert_eq!(fires.len() as u64 + suppressed, events);
    assert_eq!(
        reported, suppressed,
        "every suppressed event reported exactly once"
    );
    assert!(
        events > 100 * fires.len() as u64 / 10,
        "the key was hammered: {events} events"
    );
    // One fire per window: RUN / WINDOW = 6 windows, give or take the edges.
    fires.sort();
    assert!((4..=7).contains(&fires.len()), "{} fires", fires.len());
    for pair in fires.windows(2) {
        // The server decided each fire between its call's send and reply, so
        // two fires were at most (second's reply - first's send) apart: if
        // that is under a window, two fires shared a window. (Scheduling
        // noise can only make this bound larger, never fail it falsely.)
        let ((first_sent, _), (_, second_replied)) = (pair[0], pair[1]);
        assert!(
            second_replied - first_sent >= WINDOW,
            "two fires at most {:?} apart",
            second_replied - first_sent
        );
    }
}

/// Reservations on two replicas never overlap, even held across a send of a
/// few ms while every other task keeps trying, and a rollback after every
/// third send loses no count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs redis-server"]
async fn stress_two_replicas_reservations_never_overlap() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 60;
    const HOLD: Duration = Duration::from_millis(3);
    let (a, b) = replicas(Duration::from_millis(1));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let tried_while_held = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (in_flight, overlaps, tried_while_held) = (
                in_flight.clone(),
                overlaps.clone(),
                tried_while_held.clone(),
            );
            tokio::spawn(async move {
                let (mut won, mut lost) = (0u64, 0u64);
                for n in 0..PER_TASK {
                    match c.reserve(&"hot".to_owned()).await {
                        Ok(r) => {
                            assert!(!r.fire().degraded);
                            // Hold the reservation across a real send (a few
                            // ms, far longer than a script round trip) while
                            // the other tasks, on both replicas, keep trying.
                            if in_flight.fetch_add(1, Ordering::SeqCst) != 0 {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                            tokio::time::sleep(HOLD).await;
                            if in_flight.fetch_sub(1, Ordering::SeqCst) != 1 {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                            won += 1;
                            if n % 3 == 0 {
                                r.rollback().await.unwrap();
                            } else {
                                r.commit().await.unwrap();
                            }
                        }
                        Err(s) => {
                            assert!(!s.degraded);
                            lost += 1;
                            if in_flight.load(Ordering::SeqCst) > 0 {
                                tried_while_held.fetch_add(1, Ordering::SeqCst);
                            }
                            // Try again soon, so attempts spread over many holds.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
                (won, lost)
            })
        })
        .collect();
    let (won, lost) = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .fold((0, 0), |(won, lost), (w, l)| (won + w, lost + l));
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    assert_eq!(won + lost, (TASKS * PER_TASK) as u64);
    assert!(won >= 10 && lost > 0, "won {won}, lost {lost}");
    // The holds were contended: the check above had something to catch.
    assert!(tried_while_held.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
#[ignore = "needs redis-server"]
async fn script_cache_flush_is_survived_with_evalsha_fallback() {
    let c = builder(Duration::from_secs(60)).build().unwrap();
    let key = "db-down".to_owned();
    assert!(c.try_check(&key).await.unwrap().is_fire());
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn().await)
        .await
        .unwrap();
    // EVALSHA fails with NOSCRIPT; the call loads the script and retries.
    let s = c.try_check(&key).await.unwrap().suppressed().unwrap();
    assert_eq!((s.suppressed, s.degraded), (1, false));
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn().await)
        .await
        .unwrap();
    let r = c.reserve(&"other".to_owned()).await.unwrap();
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn().await)
        .await
        .unwrap();
    r.commit().await.unwrap();
    assert!(
        c.try_check(&"other".to_owned())
            .await
            .unwrap()
            .is_suppressed()
    );
}

/// Every key the cooldown writes carries an expiry: nothing piles up when no
/// one drains.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn every_key_expires_on_its_own() {
    let window = Duration::from_millis(500);
    let name = unique_name();
    let c: RedisCooldown<String> = builder(window)
        .name(name.clone())
        .retention(Duration::from_secs(1))
        .build()
        .unwrap();
    for k in ["a", "b", "c"] {
        c.check(&k.to_owned()).await;
        c.check(&k.to_owned()).await; // a pending digest, so all three kinds of key exist
    }
    let r = c.reserve(&"d".to_owned()).await.unwrap();
    let mut con = conn().await;
    let pattern = format!("seawall:cooldown:{{{name}}}:*");
    let mut keys: Vec<String> = con.keys(&pattern).await.unwrap();
    keys.sort();
    let expected: Vec<String> = [
        "idx", "s:a", "s:b", "s:c", "s:d", "w:a", "w:b", "w:c", "w:d",
    ]
    .iter()
    .map(|k| format!("seawall:cooldown:{{{name}}}:{k}"))
    .collect();
    assert_eq!(keys, expected);
    for k in &keys {
        let ttl: i64 = con.pttl(k).await.unwrap();
        // window keys: the window (or the 60 s reservation timeout);
        // state (the reservation's too: it keeps the call's reply) and
        // index: window end + retention.
        let max = if k.ends_with("w:d") { 60_000 } else { 1_500 };
        assert!(ttl > 0 && ttl <= max, "{k} has PTTL {ttl}");
    }
    r.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let left: Vec<String> = con.keys(&pattern).await.unwrap();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "undrained digests expire after the retention"
    );
}

/// The longest durations the builder accepts work in Redis: every `PX` and
/// `PEXPIRE` the scripts compute is accepted (a reserve that Redis rejected
/// would come back as a degraded fire, and a check as an error).
#[tokio::test]
#[ignore = "needs redis-server"]
async fn the_longest_accepted_durations_work_in_redis() {
    use seawall_cooldown::MAX_REDIS_DURATION;
    let name = unique_name();
    let c = builder(MAX_REDIS_DURATION)
        .name(name.clone())
        .reservation_timeout(MAX_REDIS_DURATION)
        .retention(MAX_REDIS_DURATION)
        .build()
        .unwrap();
    let key = "db-down".to_owned();
    let r = c.reserve(&key).await.expect("free");
    assert!(!r.fire().degraded, "Redis rejected the reserve");
    let s = c.try_check(&key).await.unwrap().suppressed().unwrap();
    assert_eq!((s.suppressed, s.remaining), (1, MAX_REDIS_DURATION));
    r.rollback().await.unwrap();
    let Decision::Fire(f) = c.try_check(&key).await.unwrap() else {
        panic!("rolled back: the key fires")
    };
    assert_eq!(f.suppressed_since_last, 1);
    let s = c.try_check(&key).await.unwrap().suppressed().unwrap();
    assert_eq!(s.suppressed, 1);
    assert!(s.remaining > MAX_REDIS_DURATION - Duration::from_secs(60));
    assert!(c.check_critical(&key).await.bypassed);
    // Nothing flushes this shared server: remove the 20-year keys.
    let mut con = conn().await;
    let keys: Vec<String> = con
        .keys(format!("seawall:cooldown:{{{name}}}:*"))
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let () = con.del(keys).await.unwrap();
}

/// A drain whose key type does not parse a member leaves that digest in
/// Redis for a replica that can (and does not loop on it).
#[tokio::test]
#[ignore = "needs redis-server"]
async fn a_member_the_key_type_cannot_parse_is_left_for_others() {
    let window = Duration::from_millis(200);
    let name = unique_name();
    let strings = builder(window).name(name.clone()).build().unwrap();
    let numbers: RedisCooldown<u64> = RedisCooldown::builder(url())
        .name(name)
        .window(window)
        .command_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for key in ["db-down", "7"] {
        assert!(strings.check(&key.to_owned()).await.is_fire());
        assert!(strings.check(&key.to_owned()).await.is_suppressed());
    }
    assert!(strings.check(&"db-down".to_owned()).await.is_suppressed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let drained: Vec<(u64, u64)> = numbers
        .drain_digests()
        .await
        .into_iter()
        .map(|(k, d)| (k, d.count))
        .collect();
    assert_eq!(drained, vec![(7, 1)]);
    assert!(numbers.drain_digests().await.is_empty());
    let drained: Vec<(String, u64)> = strings
        .drain_digests()
        .await
        .into_iter()
        .map(|(k, d)| (k, d.count))
        .collect();
    assert_eq!(drained, vec![("db-down".to_owned(), 2)]);
}

/// A replica that dies mid-send (its reservation is never committed nor
/// rolled back) silences the key only for the reservation timeout.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn a_crashed_reservation_expires_after_the_reservation_timeout() {
    let c = builder(Duration::from_secs(60))
        .reservation_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let key = "db-down".to_owned();
    std::mem::forget(c.reserve(&key).await.unwrap()); // the replica died
    let s = c.check(&key).await.suppressed().unwrap();
    assert_eq!((s.suppressed, s.remaining), (1, Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let Decision::Fire(f) = c.check(&key).await else {
        panic!("the reservation expired")
    };
    // The event suppressed while the dead send was in flight is reported.
    assert_eq!(f.suppressed_since_last, 1);
    assert!(!f.degraded);
}

/// Redis decisions are counted in the same families as in-memory ones.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn metrics_count_redis_decisions_by_outcome() {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    let mut registry = Registry::default();
    let metrics = seawall_cooldown::Metrics::register(&mut registry);
    let name = unique_name();
    let c = builder(Duration::from_secs(60))
        .name(name.clone())
        .metrics(metrics)
        .build()
        .unwrap();
    let (k1, k2) = ("1".to_owned(), "2".to_owned());
    c.check(&k1).await; // fire
    c.check(&k1).await; // suppressed
    c.check_critical(&k1).await; // bypass
    c.check_critical(&k2).await; // fire (nothing to bypass)
    assert!(c.reserve(&k2).await.is_err()); // suppressed
    c.reserve(&"3".to_owned())
        .await
        .unwrap()
        .rollback()
        .await
        .unwrap(); // rolled back
    c.reserve(&"3".to_owned())
        .await
        .unwrap()
        .commit()
        .await
        .unwrap(); // fire

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    lines.sort_unstable();
    let expected = [
        format!(r#"seawall_cooldown_decisions_total{{cooldown="{name}",decision="bypass"}} 1"#),
        format!(r#"seawall_cooldown_decisions_total{{cooldown="{name}",decision="fire"}} 3"#),
        format!(
            r#"seawall_cooldown_decisions_total{{cooldown="{name}",decision="rolled_back"}} 1"#
        ),
        format!(r#"seawall_cooldown_decisions_total{{cooldown="{name}",decision="suppressed"}} 2"#),
        format!(r#"seawall_cooldown_degraded_total{{cooldown="{name}"}} 0"#),
        format!(r#"seawall_cooldown_evictions_total{{cooldown="{name}"}} 0"#),
        format!(r#"seawall_cooldown_keys{{cooldown="{name}"}} 0"#),
    ];
    assert_eq!(lines, expected);
    assert!(text.contains("# TYPE seawall_cooldown_degraded counter"));
}

/// A reserve whose caller gives up mid-flight leaves nothing behind: the
/// reservation the script won is rolled back, the digest it took goes back.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn a_cancelled_reserve_rolls_back_what_it_won() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = seawall_cooldown::Metrics::register(&mut registry);
    let name = unique_name();
    let c = builder(Duration::from_millis(100))
        .name(name.clone())
        .metrics(metrics)
        .build()
        .unwrap();
    let key = "db-down".to_owned();
    assert!(c.check(&key).await.is_fire());
    assert!(c.check(&key).await.is_suppressed());
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Polled once (the script is handed to a task) and dropped before the
    // task even ran: on this current-thread runtime nothing else ran yet.
    let cancelled = c.reserve(&key).now_or_never();
    assert!(cancelled.is_none(), "cancelled before the reply");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let Decision::Fire(f) = c.check(&key).await else {
        panic!("the cancelled reservation was rolled back")
    };
    assert_eq!(f.suppressed_since_last, 1, "its digest was put back");
    // The task did win the reservation, and its drop rolled it back.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(&format!(
            r#"seawall_cooldown_decisions_total{{cooldown="{name}",decision="rolled_back"}} 1"#
        )),
        "{text}"
    );
}

/// A TCP proxy to the test server whose next reply from Redis can be lost
/// with its connection: the script ran, the client sees the connection break.
fn lossy_proxy() -> (u16, Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicBool;
    let target = url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let drop_next = Arc::new(AtomicBool::new(false));
    let flag = drop_next.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(&target).unwrap();
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut c_in, &mut s_out));
            let (mut s_in, mut c_out, flag) = (server, client, flag.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = s_in.read(&mut buf) {
                    if flag.swap(false, Ordering::SeqCst) {
                        // The reply is lost with the connection.
                        let _ = c_out.shutdown(std::net::Shutdown::Both);
                        let _ = s_in.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, drop_next)
}

/// A fire whose reply is lost after the script ran is not lost: the call is
/// retried once, with the same call id, within the timeout, and Redis answers
/// it with the same decision (the digest the fire took included), under
/// either policy.
#[tokio::test]
#[ignore = "needs redis-server"]
async fn a_lost_fire_reply_is_retried_with_the_same_answer() {
    use seawall_cooldown::UnreachablePolicy;
    for policy in [UnreachablePolicy::Fire, UnreachablePolicy::Suppress] {
        let (port, drop_next) = lossy_proxy();
        let c: RedisCooldown<String> = RedisCooldown::builder(format!("redis://127.0.0.1:{port}/"))
            .name(unique_name())
            .window(Duration::from_millis(300))
            .command_timeout(Duration::from_millis(900))
            .unreachable(policy)
            .build()
            .unwrap();
        let key = "db-down".to_owned();
        assert!(c.try_check(&key).await.unwrap().is_fire());
        for _ in 0..3 {
            assert!(c.try_check(&key).await.unwrap().is_suppressed());
        }
        tokio::time::sleep(Duration::from_millis(350)).await;
        drop_next.store(true, Ordering::SeqCst);
        let start = Instant::now();
        let Decision::Fire(fire) = c.check(&key).await else {
            panic!("{policy:?}: the fire ran in Redis: it must be reported")
        };
        assert!(start.elapsed() < Duration::from_millis(900));
        assert!(!drop_next.load(Ordering::SeqCst), "the reply was dropped");
        assert_eq!(
            (fire.degraded, fire.suppressed_since_last),
            (false, 3),
            "{policy:?}"
        );
        assert_eq!(fire.digest.map(|d| d.count), Some(3));
        // The window started once: the next event is suppressed, counted once.
        let s = c.try_check(&key).await.unwrap().suppressed().unwrap();
        assert_eq!(s.suppressed, 1);

        // The same for a reservation: the retry wins the same reservation.
        tokio::time::sleep(Duration::from_millis(350)).await;
        drop_next.store(true, Ordering::SeqCst);
        let r = c.reserve(&key).await.expect("the reservation won in Redis");
        assert!(!drop_next.load(Ordering::SeqCst), "the reply was dropped");
        assert_eq!(
            (r.fire().degraded, r.fire().suppressed_since_last),
            (false, 1)
        );
        assert!(c.try_check(&key).await.unwrap().is_suppressed());
        r.rollback().await.unwrap();
        let Decision::Fire(f) = c.try_check(&key).await.unwrap() else {
            panic!("rolled back")
        };
        assert_eq!(f.suppressed_since_last, 2);
    }
}
