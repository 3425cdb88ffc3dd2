//! A `tower::Layer` that retries requests (feature `tower`).

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::{RetryError, RetryPolicy};

type Predicate<E> = dyn Fn(&E) -> bool + Send + Sync;
type Hint<E> = dyn Fn(&E) -> Option<Duration> + Send + Sync;

/// Wraps a service in [`Retry`]: each request is retried under a [`RetryPolicy`]. The layer is
/// typed by the service's error `E`, for its optional [`retry_if`](Self::retry_if) and
/// [`retry_after`](Self::retry_after) (every error is transient without them).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use seawall_retry::{RetryLayer, RetryPolicy};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = RetryPolicy::builder().constant(Duration::ZERO).build()?;
/// let svc = RetryLayer::new(policy).layer(service_fn(|n: u32| async move {
///     if n > 0 { Ok(n * 2) } else { Err(String::from("zero")) }
/// }));
/// assert_eq!(svc.clone().oneshot(21).await, Ok(42));
/// assert_eq!(svc.oneshot(0).await.unwrap_err().attempts(), 3);
/// # Ok(()) }
/// ```
pub struct RetryLayer<E> {
    policy: RetryPolicy,
    retry_if: Option<Arc<Predicate<E>>>,
    retry_after: Option<Arc<Hint<E>>>,
}

impl<E> RetryLayer<E> {
    /// A layer retrying under `policy`, every error transient.
    ///
    /// # Examples
    /// ```
    /// let layer = seawall_retry::RetryLayer::<std::io::Error>::new(Default::default());
    /// ```
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer {
            policy,
            retry_if: None,
            retry_after: None,
        }
    }

    /// Classifies the service's errors: `true` means transient (see
    /// [`Retrying::retry_if`](crate::Retrying::retry_if)).
    ///
    /// # Examples
    /// ```
    /// use seawall_retry::{RetryLayer, RetryPolicy};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let svc = RetryLayer::new(RetryPolicy::default())
    ///     .retry_if(|status: &u16| *status >= 500)
    ///     .layer(service_fn(|_: ()| async { Err::<(), u16>(404) }));
    /// assert_eq!(svc.oneshot(()).await.unwrap_err().attempts(), 1);
    /// # }
    /// ```
    pub fn retry_if(mut self, is_transient: impl Fn(&E) -> bool + Send + Sync + 'static) -> Self {
        self.retry_if = Some(Arc::new(is_transient));
        self
    }

    /// Extracts a server's hint from the service's errors (see
    /// [`Retrying::retry_after`](crate::Retrying::retry_after)).
    pub fn retry_after(
        mut self,
        hint: impl Fn(&E) -> Option<Duration> + Send + Sync + 'static,
    ) -> Self {
        self.retry_after = Some(Arc::new(hint));
        self
    }
}

impl<E> Clone for RetryLayer<E> {
    fn clone(&self) -> Self {
        RetryLayer {
            policy: self.policy.clone(),
            retry_if: self.retry_if.clone(),
            retry_after: self.retry_after.clone(),
        }
    }
}

impl<E> fmt::Debug for RetryLayer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .field("retry_if", &self.retry_if.is_some())
            .field("retry_after", &self.retry_after.is_some())
            .finish()
    }
}

impl<S, E> Layer<S> for RetryLayer<E> {
    type Service = Retry<S, E>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            layer: self.clone(),
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
    layer: RetryLayer<E>,
}

impl<S: Clone, E> Clone for Retry<S, E> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, E> fmt::Debug for Retry<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
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
        let layer = self.layer.clone();
        let svc = self.inner.clone();
        Box::pin(async move {
            let RetryLayer {
                policy,
                retry_if,
                retry_after,
            } = layer;
            policy
                .retry(move || {
                    let mut svc = svc.clone();
                    let req = req.clone();
                    async move {
                        poll_fn(|cx| svc.poll_ready(cx)).await?;
                        svc.call(req).await
                    }
                })
                .retry_if(|e: &E| retry_if.as_ref().is_none_or(|p| p(e)))
                .retry_after(|e: &E| retry_after.as_ref().and_then(|h| h(e)))
                .await
        })
    }
}
