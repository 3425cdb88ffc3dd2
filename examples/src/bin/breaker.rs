//! A circuit breaker in front of a dependency that goes down for a while, then recovers.
//!
//! Four clients call an upstream every 10 ms for 2.4 s. From 300 ms to 1.5 s the upstream
//! fails every call. The breaker (3 consecutive failures, open 200 ms then 400 ms then 800 ms,
//! 2 successful probes to close) trips, rejects calls at once while open, probes, backs off
//! when a probe fails, and closes when the upstream is back. Each transition is printed with
//! its time since the start and how many calls were rejected since the previous one; a
//! summary and the breaker's Prometheus metrics follow.
//!
//! Run it with `cargo run --release -p seawall-examples --bin breaker`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use seawall_circuit_breaker::{CircuitBreaker, Error, Metrics, State};
use tokio::time::{Instant, sleep};

const DOWN_FROM: Duration = Duration::from_millis(300);
const DOWN_UNTIL: Duration = Duration::from_millis(1_500);
const RUN_FOR: Duration = Duration::from_millis(2_400);
const CLIENTS: usize = 4;

/// The upstream: 2 ms per call, failing while it is down.
async fn upstream(start: Instant) -> Result<&'static str, &'static str> {
    sleep(Duration::from_millis(2)).await;
    let t = start.elapsed();
    if (DOWN_FROM..DOWN_UNTIL).contains(&t) {
        Err("503 service unavailable")
    } else {
        Ok("200 ok")
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    rejected_since_transition: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let breaker = CircuitBreaker::builder()
        .name("upstream")
        .consecutive_failures(3)
        .open_durations([200, 400, 800].map(Duration::from_millis))
        .successes_to_close(2)
        .metrics(Metrics::register(&mut registry))
        .build()?;

    let start = Instant::now();
    let counts = Arc::new(Counts::default());
    println!(
        "upstream down from {} ms to {} ms; {CLIENTS} clients call it every 10 ms for {} ms\n",
        DOWN_FROM.as_millis(),
        DOWN_UNTIL.as_millis(),
        RUN_FOR.as_millis()
    );
    println!("{:>7}  transition", "time");

    let mut transitions = breaker.subscribe();
    let printer = {
        let counts = counts.clone();
        tokio::spawn(async move {
            while let Ok(t) = transitions.recv().await {
                let at = t.at.duration_since(start).as_millis();
                let rejected = counts.rejected_since_transition.swap(0, Ordering::Relaxed);
                let open_for = t
                    .open_for
                    .map(|d| format!(", open for {} ms", d.as_millis()))
                    .unwrap_or_default();
                let rejected = if rejected > 0 {
                    format!("  [rejected since the previous transition: {rejected}]")
                } else {
                    String::new()
                };
                println!(
                    "{at:>4} ms  {:<9} -> {:<9} {}{open_for}{rejected}",
                    t.from.as_str(),
                    t.to.as_str(),
                    t.reason
                );
            }
        })
    };

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (breaker, counts) = (breaker.clone(), counts.clone());
            tokio::spawn(async move {
                // Stagger the clients so their calls interleave.
                sleep(Duration::from_millis(2 * i as u64)).await;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while start.elapsed() < RUN_FOR {
                    tick.tick().await;
                    match breaker.call(|| upstream(start)).await {
                        Ok(_) => counts.ok.fetch_add(1, Ordering::Relaxed),
                        Err(Error::Inner(_)) => counts.failed.fetch_add(1, Ordering::Relaxed),
                        Err(Error::Open { .. }) => {
                            counts
                                .rejected_since_transition
                                .fetch_add(1, Ordering::Relaxed);
                            counts.rejected.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    for c in clients {
        c.await?;
    }
    // Let the printer catch up, then stop it.
    sleep(Duration::from_millis(20)).await;
    printer.abort();

    let (ok, failed, rejected) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.rejected.load(Ordering::Relaxed),
    );
    println!("\nafter {} ms:", start.elapsed().as_millis());
    println!("  calls succeeded           {ok:>5}");
    println!("  calls failed (reached it) {failed:>5}");
    println!("  calls rejected by breaker {rejected:>5}  (answered at once, upstream spared)");
    println!(
        "  final state               {:>5}",
        breaker.state().as_str()
    );
    if breaker.state() != State::Closed {
        anyhow::bail!("the breaker should have closed once the upstream recovered");
    }

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    println!("\nmetrics:");
    for line in text.lines().filter(|l| {
        !l.starts_with('#') && !l.ends_with(" 0") && l.starts_with("seawall_circuit_breaker")
    }) {
        println!("  {line}");
    }
    Ok(())
}
