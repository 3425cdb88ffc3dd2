//! The tower layer (feature `tower`).
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use seawall_retry::{AttemptError, RetryError, RetryLayer, RetryPolicy};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn layer_retries_cloned_requests_until_success() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let inner = service_fn(move |req: String| {
        let n = c.fetch_add(1, Ordering::Relaxed);
        async move {
            if n < 2 {
                Err(format!("{req}: busy"))
            } else {
                Ok(format!("{req}: ok"))
            }
        }
    });
    let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
    let start = tokio::time::Instant::now();
    let svc = RetryLayer::new(policy).layer(inner);
    assert_eq!(
        svc.clone().oneshot("hi".to_owned()).await,
        Ok("hi: ok".to_owned())
    );
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(3));

    // From the third call on the inner service succeeds: no retry, no time.
    assert_eq!(
        svc.oneshot("again".to_owned()).await,
        Ok("again: ok".to_owned())
    );
    assert_eq!(calls.load(Ordering::Relaxed), 4);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn layer_gives_back_the_services_error() {
    let inner = service_fn(|req: u32| async move { Err::<u32, _>(format!("{req}: down")) });
    let policy = RetryPolicy::builder()
        .constant(Duration::from_millis(5))
        .build()
        .unwrap();
    let err = RetryLayer::new(policy)
        .layer(inner)
        .oneshot(7)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RetryError::Exhausted {
            attempts: 3,
            last: AttemptError::Inner("7: down".to_owned())
        }
    );
}
