//! Many tasks on one breaker on a multi-thread runtime, with a dependency that fails and then
//! recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use seawall_circuit_breaker::{CircuitBreaker, Metrics, State};
use tokio::sync::broadcast;

const PROBES: u32 = 2;
const FAILING_CALLS: u64 = 3_000;
const TOTAL_CALLS: u64 = 12_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probes_never_exceed_the_limit_and_the_breaker_recovers() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    // A zero open duration makes the breaker cycle open -> half-open -> open as fast as the
    // tasks can drive it, which is where a probe-slot race would show.
    let breaker = CircuitBreaker::builder()
        .name("stress")
        .consecutive_failures(3)
        .open_duration(Duration::ZERO)
        .probes(PROBES)
        .successes_to_close(3)
        .metrics(metrics)
        .build()
        .unwrap();
    let mut events = breaker.subscribe();

    let calls = Arc::new(AtomicU64::new(0));
    let probes_now = Arc::new(AtomicU32::new(0));
    let probes_max = Arc::new(AtomicU32::new(0));
    let probes_total = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let mut tasks = vec![];
    for task in 0..32u64 {
        let (breaker, calls, probes_now, probes_max, probes_total, done) = (
            breaker.clone(),
            calls.clone(),
            probes_now.clone(),
            probes_max.clone(),
            probes_total.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) && i < 2_000_000 {
                i += 1;
                let Ok(permit) = breaker.try_acquire() else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let probe = permit.is_probe();
                if probe {
                    let now = probes_now.fetch_add(1, Ordering::SeqCst) + 1;
                    probes_max.fetch_max(now, Ordering::SeqCst);
                    probes_total.fetch_add(1, Ordering::Relaxed);
                }
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let healthy = n >= FAILING_CALLS;
                // Hold the permit across an await, as a real call would.
                tokio::task::yield_now().await;
                if probe {
                    probes_now.fetch_sub(1, Ordering::SeqCst);
                }
                match (task + i) % 11 {
                    // Some calls are abandoned: their task "cancels" them.
                    0 => drop(permit),
                    _ if healthy => permit.success(),
                    _ => permit.failure(),
                }
                if n >= TOTAL_CALLS {
                    done.store(true, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    assert!(
        done.load(Ordering::Relaxed),
        "the tasks ran out of iterations"
    );
    let max = probes_max.load(Ordering::SeqCst);
    assert!(max <= PROBES, "{max} concurrent probes, limit {PROBES}");
    assert!(
        probes_total.load(Ordering::Relaxed) > 0,
        "no probe ever ran"
    );
    assert_eq!(breaker.state(), State::Closed);

    // The channel keeps the last 64 transitions; the last one closed the breaker.
    let mut last = None;
    loop {
        match events.try_recv() {
            Ok(t) => last = Some(t.to),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    assert_eq!(last, Some(State::Closed));

    // Every permitted call got exactly one verdict (abandoned included).
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let count = |outcome: &str| -> u64 {
        let prefix = format!(
            "seawall_circuit_breaker_calls_total{{breaker=\"stress\",outcome=\"{outcome}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap()
            .parse()
            .unwrap()
    };
    let verdicts = count("success") + count("failure") + count("abandoned");
    assert_eq!(verdicts, calls.load(Ordering::SeqCst));
    let opened: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("seawall_circuit_breaker_transitions_total{") && l.contains("to=\"open\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(
        opened > 0,
        "the failing dependency never tripped the breaker"
    );
}
