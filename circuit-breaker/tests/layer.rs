//! The tower layer: rejections in `call`, classification, cancellation.
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use seawall_circuit_breaker::layer::CircuitBreakerLayer;
use seawall_circuit_breaker::{CircuitBreaker, Error, Outcome, State};
use tower::{Layer, Service, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn rejects_in_call_without_reaching_the_inner_service() {
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(move |ok: bool| {
        h.fetch_add(1, Ordering::SeqCst);
        async move { if ok { Ok("pong") } else { Err("down") } }
    }));

    assert_eq!(svc.ready().await.unwrap().call(true).await, Ok("pong"));
    for _ in 0..2 {
        assert_eq!(
            svc.ready().await.unwrap().call(false).await,
            Err(Error::Inner("down"))
        );
    }
    assert_eq!(breaker.state(), State::Open);
    // poll_ready still succeeds: an open breaker is not backpressure.
    let ready = svc.ready().await.unwrap();
    assert_eq!(
        ready.call(true).await,
        Err(Error::Open {
            retry_after: Duration::from_secs(30)
        })
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(svc.ready().await.unwrap().call(true).await, Ok("pong"));
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn classifier_and_dropped_response_futures() {
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let layer =
        CircuitBreakerLayer::new(breaker.clone()).with_classifier(|r: &Result<u16, u16>| match r {
            Err(404) => Outcome::Ignored,
            r => Outcome::of(r),
        });
    let svc = layer.layer(service_fn(|code: u16| async move {
        if code == 200 {
            Ok(code)
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err(code)
        }
    }));
    assert_eq!(svc.clone().oneshot(404).await, Err(Error::Inner(404)));
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(svc.clone().oneshot(503).await, Err(Error::Inner(503)));
    assert_eq!(breaker.state(), State::Open);

    tokio::time::advance(Duration::from_secs(30)).await;
    // A probe whose response future is dropped frees its slot.
    let probe = svc.clone().oneshot(503);
    assert!(
        tokio::time::timeout(Duration::from_millis(1), probe)
            .await
            .is_err()
    );
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(svc.oneshot(200).await, Ok(200));
    assert_eq!(breaker.state(), State::Closed);
}

/// An inner service that is never ready: what a saturated pool looks like.
#[derive(Clone)]
struct NeverReady {
    calls: Arc<AtomicU32>,
}

impl Service<u32> for NeverReady {
    type Response = u32;
    type Error = &'static str;
    type Future = std::future::Ready<Result<u32, &'static str>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Pending
    }

    fn call(&mut self, n: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(n))
    }
}

/// Fail-fast: while the breaker is open, `poll_ready` is ready at once even though the
/// inner service never is, and `call` rejects without touching it (tower-resilience does
/// the same). Once probes may pass, readiness is the inner service's again.
#[tokio::test(start_paused = true)]
async fn open_breaker_is_ready_at_once_over_a_never_ready_service() {
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = CircuitBreakerLayer::new(breaker.clone()).layer(NeverReady {
        calls: calls.clone(),
    });
    // Closed: readiness is the inner service's.
    assert!(futures::poll!(std::pin::pin!(svc.ready())).is_pending());

    breaker.try_acquire().unwrap().failure();
    assert_eq!(breaker.state(), State::Open);
    let ready = tokio::time::timeout(Duration::from_millis(1), svc.ready())
        .await
        .expect("an open breaker must be ready at once")
        .unwrap();
    assert_eq!(
        ready.call(1).await,
        Err(Error::Open {
            retry_after: Duration::from_secs(30)
        })
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Forced open too.
    breaker.force_open();
    let r = svc.ready().await.unwrap().call(2).await;
    assert!(matches!(r, Err(Error::Open { .. })), "{r:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Half-open: the probe waits for the inner service like any call.
    breaker.reset();
    breaker.try_acquire().unwrap().failure();
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(futures::poll!(std::pin::pin!(svc.ready())).is_pending());
}
