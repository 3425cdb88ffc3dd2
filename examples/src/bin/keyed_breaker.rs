//! A keyed circuit breaker in front of three hosts, one of which goes down for a while.
//!
//! Clients call `eu.api`, `us.api` and `ap.api` every 5 ms for 1.2 s. From 200 ms to 700 ms
//! `eu.api` fails every call. Its breaker (3 consecutive failures, open 100 ms) trips,
//! rejects calls to `eu.api` at once, probes, and closes once the host is back; the two
//! other hosts keep serving throughout, because each host has its own breaker. Each
//! transition is printed with its key; a per-host summary, the health snapshot and the
//! Prometheus metrics (no key in any label) follow. The demo checks what it claims and exits
//! non-zero if a check fails.
//!
//! Run it with `cargo run --release -p seawall-examples --bin keyed_breaker`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use seawall_circuit_breaker::{CircuitBreaker, Error, KeyedCircuitBreaker, Metrics, State};
use tokio::time::{Instant, sleep};

const HOSTS: [&str; 3] = ["eu.api", "us.api", "ap.api"];
const DOWN: &str = "eu.api";
const DOWN_FROM: Duration = Duration::from_millis(200);
const DOWN_UNTIL: Duration = Duration::from_millis(700);
const RUN_FOR: Duration = Duration::from_millis(1_200);

/// One host: 1 ms per call; `eu.api` fails while it is down.
async fn call_host(host: &str, start: Instant) -> Result<&'static str, &'static str> {
    sleep(Duration::from_millis(1)).await;
    let t = start.elapsed();
    if host == DOWN && (DOWN_FROM..DOWN_UNTIL).contains(&t) {
        Err("503 service unavailable")
    } else {
        Ok("200 ok")
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    ok: u64,
    failed: u64,
    rejected: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let hosts: KeyedCircuitBreaker<String> = CircuitBreaker::builder()
        .name("hosts")
        .consecutive_failures(3)
        .open_duration(Duration::from_millis(100))
        .metrics(Metrics::register(&mut registry))
        .keyed()
        .max_keys(100)
        .build()?;

    let start = Instant::now();
    let mut transitions = hosts.subscribe();
    let printer = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(t) = transitions.recv().await {
            let at = t.transition.at.saturating_duration_since(start).as_millis();
            println!("[{at:>5} ms] {:<7} {}", t.key, t.transition);
            seen.push((t.key, t.transition.to));
        }
        seen
    });
    println!(
        "{DOWN} down from {} ms to {} ms; every host called every 5 ms for {} ms\n",
        DOWN_FROM.as_millis(),
        DOWN_UNTIL.as_millis(),
        RUN_FOR.as_millis()
    );

    let counts = Arc::new(Mutex::new(BTreeMap::<&str, Counts>::new()));
    let clients: Vec<_> = HOSTS
        .into_iter()
        .map(|host| {
            let hosts = hosts.clone();
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                while start.elapsed() < RUN_FOR {
                    tick.tick().await;
                    let r = hosts.call(host, || call_host(host, start)).await;
                    let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
                    let c = counts.entry(host).or_default();
                    match r {
                        Ok(_) => c.ok += 1,
                        Err(Error::Inner(_)) => c.failed += 1,
                        Err(Error::Open { .. }) => c.rejected += 1,
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await?;
    }

    println!("\nper host:");
    let counts = counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (host, c) in &counts {
        println!(
            "  {host:<7} ok {:>4}  failed {:>3}  rejected at once {:>3}  state {}",
            c.ok,
            c.failed,
            c.rejected,
            hosts.state(*host)
        );
    }
    let open = hosts.open_keys();
    println!("\nopen keys (health snapshot): {open:?}");
    println!("keys tracked: {} (max {})", hosts.len(), hosts.max_keys());

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    println!("\nmetrics:");
    for line in text
        .lines()
        .filter(|l| l.starts_with("seawall_circuit_breaker_"))
    {
        println!("  {line}");
    }

    let seen = {
        // Closing the keyed breaker's last handle ends the subscription.
        let keyed = hosts;
        let no_key_label = !HOSTS.iter().any(|h| text.contains(h));
        let mut failures = Vec::new();
        let eu = counts.get(DOWN).copied().unwrap_or_default();
        if eu.rejected == 0 {
            failures.push(format!("{DOWN} was never rejected at once"));
        }
        if eu.failed > 20 {
            failures.push(format!(
                "{DOWN} failed {} calls: the breaker did not cut it off",
                eu.failed
            ));
        }
        for host in HOSTS.iter().filter(|h| **h != DOWN) {
            let c = counts.get(host).copied().unwrap_or_default();
            if c.failed + c.rejected != 0 || c.ok < 100 {
                failures.push(format!("{host} did not keep serving: {c:?}"));
            }
        }
        if keyed.state(DOWN) != State::Closed || !open.is_empty() {
            failures.push(format!("{DOWN} did not recover: {:?}", keyed.state(DOWN)));
        }
        if !no_key_label {
            failures.push("a host name appears in the metrics".to_owned());
        }
        drop(keyed);
        let seen = printer.await?;
        if !seen.iter().any(|(k, s)| k == DOWN && *s == State::Open)
            || seen.iter().any(|(k, _)| k != DOWN)
        {
            failures.push(format!("unexpected transitions: {seen:?}"));
        }
        if !failures.is_empty() {
            anyhow::bail!("demo checks failed:\n  {}", failures.join("\n  "));
        }
        seen
    };
    println!(
        "\nchecks passed: {DOWN} cut off and recovered ({} transitions), the other hosts kept serving, no host in a metric label",
        seen.len()
    );
    Ok(())
}
