//! The keyed tower layer: per-key breakers, and the fail-fast readiness contract — a request
//! whose key's breaker rejects never waits on, nor touches, the inner service.
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use seawall_circuit_breaker::keyed_layer::KeyedCircuitBreakerLayer;
use seawall_circuit_breaker::{CircuitBreaker, Error, KeyedCircuitBreaker, Outcome, State};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A service that is never ready (a saturated pool), or fails readiness, counting polls and
/// calls.
#[derive(Clone)]
struct Stuck {
    polls: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    fail_ready: bool,
}

impl Service<(&'static str, u32)> for Stuck {
    type Response = u32;
    type Error = &'static str;
    type Future = std::future::Ready<Result<u32, &'static str>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.fail_ready {
            Poll::Ready(Err("pool closed"))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, req: (&'static str, u32)) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(req.1))
    }
}

fn hosts() -> KeyedCircuitBreaker<String> {
    CircuitBreaker::builder()
        .name("hosts")
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(10))
        .keyed()
        .build()
        .unwrap()
}

fn host(req: &(&'static str, u32)) -> String {
    req.0.to_owned()
}

#[tokio::test(start_paused = true)]
async fn each_host_has_its_own_breaker() {
    let svc =
        KeyedCircuitBreakerLayer::new(hosts(), host).layer(service_fn(
            |(h, n): (&'static str, u32)| async move {
                if h == "down" { Err("refused") } else { Ok(n) }
            },
        ));
    assert_eq!(
        svc.clone().oneshot(("down", 1)).await,
        Err(Error::Inner("refused"))
    );
    let r = svc.clone().oneshot(("down", 1)).await;
    assert_eq!(
        r,
        Err(Error::Open {
            retry_after: Duration::from_secs(10)
        })
    );
    assert_eq!(svc.clone().oneshot(("up", 2)).await, Ok(2));
    assert_eq!(svc.keyed().state("down"), State::Open);
    tokio::time::advance(Duration::from_secs(10)).await;
    // The probe goes to the inner service, which fails again: reopened.
    assert_eq!(
        svc.clone().oneshot(("down", 3)).await,
        Err(Error::Inner("refused"))
    );
    assert_eq!(svc.keyed().state("down"), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_key_never_waits_on_nor_touches_a_saturated_inner_service() {
    let polls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let stuck = Stuck {
        polls: Arc::clone(&polls),
        calls: Arc::clone(&calls),
        fail_ready: false,
    };
    let keyed = hosts();
    keyed.get_or_create("down").unwrap().force_open();
    let mut svc = KeyedCircuitBreakerLayer::new(keyed, host).layer(stuck);
    // Ready at once, without polling the inner service.
    let ready = futures::poll!(std::future::poll_fn(|cx| svc.poll_ready(cx)));
    assert_eq!(ready, Poll::Ready(Ok(())));
    let r = svc.call(("down", 1)).await;
    assert!(matches!(r, Err(Error::Open { .. })), "{r:?}");
    assert_eq!(
        (polls.load(Ordering::SeqCst), calls.load(Ordering::SeqCst)),
        (0, 0)
    );
    // An admitted key waits for the saturated service, in the response future.
    let fut = svc.call(("up", 2));
    let mut fut = std::pin::pin!(fut);
    assert!(futures::poll!(fut.as_mut()).is_pending());
    assert_eq!(
        (polls.load(Ordering::SeqCst), calls.load(Ordering::SeqCst)),
        (1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_readiness_error_passes_through_uncounted() {
    let stuck = Stuck {
        polls: Arc::default(),
        calls: Arc::default(),
        fail_ready: true,
    };
    let svc = KeyedCircuitBreakerLayer::new(hosts(), host).layer(stuck);
    let r = svc.clone().oneshot(("up", 1)).await;
    assert_eq!(r, Err(Error::Inner("pool closed")));
    // Threshold 1, yet not tripped: the permit was abandoned, not failed.
    assert_eq!(svc.keyed().state("up"), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_classifier_decides_what_counts() {
    let svc = KeyedCircuitBreakerLayer::new(hosts(), host)
        .with_classifier(|r: &Result<u32, &str>| match r {
            Err("not found") => Outcome::Ignored,
            r => Outcome::of(r),
        })
        .layer(service_fn(|_: (&'static str, u32)| async {
            Err::<u32, _>("not found")
        }));
    assert_eq!(
        svc.clone().oneshot(("a", 1)).await,
        Err(Error::Inner("not found"))
    );
    assert_eq!(svc.keyed().state("a"), State::Closed);
}
