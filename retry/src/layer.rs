//! A `tower::Layer` that retries requests (feature `tower`).

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::{RetryError, RetryPolicy};

/// Wraps a service in [`Retry`]: each request is retried under a [`RetryPolicy`] whose error
/// type is the service's error type.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use seawall_retry::{RetryLayer, RetryPolicy};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = RetryPolicy::<String>::builder().constant(Duration::ZERO).build()?;
/// let svc = RetryLayer::new(policy).layer(service_fn(|n: u32| async move {
///     if n > 0 { Ok(n * 2) } else { Err(String::from("zero")) }
/// }));
/// assert_eq!(svc.clone().oneshot(21).await, Ok(42));
/// assert_eq!(svc.oneshot(0).await.unwrap_err().attempts(), 3);
/// # Ok(()) }
/// ```
pub struct RetryLayer<E> {
    policy: RetryPolicy<E>,
}

impl<E> RetryLayer<E> {
    /// A layer retrying under `policy`.
    pub fn new(policy: RetryPolicy<E>) -> Self {
        RetryLayer { policy }
    }
}

impl<E> Clone for RetryLayer<E> {
    fn clone(&self) -> Self {
        RetryLayer {
            policy: self.policy.clone(),
        }
    }
}

impl<E> fmt::Debug for RetryLayer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, E> Layer<S> for RetryLayer<E> {
    type Service = Retry<S, E>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// A service that retries each request under a [`RetryPolicy`].
///
/// Each attempt clones the request and the inner service, waits for that clone to be ready and
/// calls it, so the inner service must be `Clone` (wrap it in `tower::buffer::Buffer` if it is
/// not) and the request must be `Clone`. [`poll_ready`](Service::poll_ready) is always ready:
/// readiness is awaited per attempt, inside the retry loop, and a readiness error is an
/// attempt failure like any other. The response future is boxed (one allocation per request).
///
/// Dropping the response future cancels the retry loop (see
/// [`RetryPolicy::retry`]'s cancel safety).
pub struct Retry<S, E> {
    inner: S,
    policy: RetryPolicy<E>,
}

impl<S: Clone, E> Clone for Retry<S, E> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S: fmt::Debug, E> fmt::Debug for Retry<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The response future of [`Retry`].
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, RetryError<E>>> + Send>>;

impl<S, Req, E> Service<Req> for Retry<S, E>
where
    S: Service<Req, Error = E> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    E: Send + 'static,
    Req: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = RetryError<E>;
    type Future = ResponseFuture<S::Response, E>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let policy = self.policy.clone();
        let svc = self.inner.clone();
        Box::pin(async move {
            policy
                .retry(move || {
                    let mut svc = svc.clone();
                    let req = req.clone();
                    async move {
                        poll_fn(|cx| svc.poll_ready(cx)).await?;
                        svc.call(req).await
                    }
                })
                .await
        })
    }
}
