//! Public types and futures are `Send + Sync + 'static` where they can be.

use std::time::Duration;

use seawall_retry::*;

fn send_sync_static<T: Send + Sync + 'static>() {}
fn send<T: Send>(_: &T) {}

/// An error type that is neither `Send` nor `Sync` must not make the policy so.
struct NotSend(#[allow(dead_code)] std::rc::Rc<()>);

#[test]
fn bounds() {
    send_sync_static::<RetryPolicy>();
    send_sync_static::<RetryPolicyBuilder>();
    send_sync_static::<RetryBudget>();
    send_sync_static::<RetryBudgetBuilder>();
    send_sync_static::<Metrics>();
    send_sync_static::<Backoff>();
    send_sync_static::<BackoffBuilder>();
    send_sync_static::<Jitter>();
    send_sync_static::<ConfigError>();
    send_sync_static::<RetryError<std::io::Error>>();
    send_sync_static::<AttemptError<std::io::Error>>();
    #[cfg(feature = "tower")]
    {
        send_sync_static::<RetryLayer<std::io::Error>>();
        send_sync_static::<RetryLayer<NotSend>>();
        send_sync_static::<Retry<(), std::io::Error>>();
    }
}

#[test]
fn retry_future_is_send() {
    let policy = RetryPolicy::builder()
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let fut = policy.retry(|| async { Ok::<_, std::io::Error>(1u8) });
    send(&fut);
    drop(fut);
    // And 'static when it owns its policy.
    let owned = async move {
        policy
            .retry(|| async { Ok::<_, std::io::Error>(1u8) })
            .await
    };
    fn is_static_send<F: std::future::Future + Send + 'static>(_: &F) {}
    is_static_send(&owned);
}

/// A per-call predicate over an error that is neither `Send` nor `Sync` does not stop the
/// future from being `Send` while no such error is held across an await.
#[test]
fn retry_future_with_hooks_is_send() {
    let policy = RetryPolicy::default();
    let fut = policy
        .retry(|| async { Ok::<_, std::io::Error>(1u8) })
        .retry_if(|e| e.kind() != std::io::ErrorKind::InvalidInput)
        .retry_after(|_| None)
        .notify(|_, _, _| {});
    send(&fut);
}
