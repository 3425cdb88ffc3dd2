//! A `tower` middleware: [`CircuitBreakerLayer`] wraps a service in a [`CircuitBreaker`].
//!
//! # Readiness contract: fail fast
//!
//! [`CircuitBreakerService::poll_ready`] asks the breaker first:
//!
//! - **The breaker would reject** (open, forced open, or half-open with every probe slot
//!   taken): `poll_ready` returns `Ready(Ok(()))` at once, *without polling the inner
//!   service*, and remembers the rejection. The next `call` consumes it: it resolves at once
//!   to [`Error::Open { retry_after }`](crate::Error::Open) and never touches the inner
//!   service. A dead dependency usually also means a saturated connection pool; rejecting
//!   must not wait for it. (tower-resilience's breaker does the same.)
//! - **The breaker would let the call through** (closed, disabled, half-open with a free
//!   slot): `poll_ready` is the inner service's `poll_ready`. Errors it returns are passed
//!   through as [`Error::Inner`] and are not counted by the breaker. `call` then takes the
//!   permit; if the breaker changed in between (another task took the last probe slot, a
//!   trip), `call` rejects as above.
//!
//! A rejection decided by `poll_ready` stands until `call` consumes it, even if the open
//! duration ends in between (a readiness grant is for one call). The readiness reserved
//! from the inner service for a rejected call is released unused, which tower services must
//! tolerate. Never `Poll::Pending` because of the breaker (it has no timer to wake the
//! task), never an error from `poll_ready` because of it (tower's `Buffer` and balancers
//! drop a service whose `poll_ready` fails). A `poll_ready` that is already waiting on the
//! inner service when the breaker opens keeps waiting until the inner service wakes it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{CircuitBreaker, Error, Outcome, Permit, Rejected};

/// Decides how a service's result counts for the breaker; see
/// [`CircuitBreakerLayer::with_classifier`]. Implemented by every
/// `Fn(&Result<T, E>) -> Outcome`.
pub trait Classify<T, E> {
    /// Classifies one result.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// The default classification: `Ok` is a success, `Err` a failure ([`Outcome::of`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl<T, E> Classify<T, E> for DefaultClassifier {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        Outcome::of(result)
    }
}

/// A `tower::Layer` wrapping services in a [`CircuitBreaker`]. The services it makes share
/// the breaker. See the [module docs](self) for the `poll_ready` semantics.
///
/// # Examples
///
/// ```
/// use seawall_circuit_breaker::{CircuitBreaker, Error};
/// use seawall_circuit_breaker::layer::CircuitBreakerLayer;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = CircuitBreaker::builder().name("llm").consecutive_failures(1).build().unwrap();
/// let svc = ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::new(breaker))
///     .service(service_fn(|n: u32| async move { if n > 0 { Ok(n) } else { Err("zero") } }));
///
/// assert_eq!(svc.clone().oneshot(7).await, Ok(7));
/// assert_eq!(svc.clone().oneshot(0).await, Err(Error::Inner("zero")));
/// assert!(matches!(svc.oneshot(7).await, Err(Error::Open { .. })));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    breaker: CircuitBreaker,
    classify: C,
}

impl CircuitBreakerLayer {
    /// A layer using `breaker`, with the default classification.
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::CircuitBreaker;
    /// use seawall_circuit_breaker::layer::CircuitBreakerLayer;
    ///
    /// let layer = CircuitBreakerLayer::new(CircuitBreaker::builder().build().unwrap());
    /// assert_eq!(layer.breaker().name(), "default");
    /// ```
    pub fn new(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classify: DefaultClassifier,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Classifies the inner service's results with `classify` (e.g. a closure
    /// `|r: &Result<Response, Error>| -> Outcome`).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{CircuitBreaker, Outcome};
    /// use seawall_circuit_breaker::layer::CircuitBreakerLayer;
    ///
    /// let breaker = CircuitBreaker::builder().build().unwrap();
    /// let layer = CircuitBreakerLayer::new(breaker).with_classifier(|r: &Result<u16, u16>| match r {
    ///     Err(404) => Outcome::Ignored,
    ///     r => Outcome::of(r),
    /// });
    /// # drop(layer);
    /// ```
    pub fn with_classifier<C2>(self, classify: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classify,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
            rejected: None,
        }
    }
}

/// A service whose calls go through a [`CircuitBreaker`]; made by [`CircuitBreakerLayer`].
/// See the [module docs](self) for its readiness contract.
#[derive(Debug)]
pub struct CircuitBreakerService<S, C = DefaultClassifier> {
    inner: S,
    breaker: CircuitBreaker,
    classify: C,
    /// A rejection granted by `poll_ready`, consumed by the next `call`.
    rejected: Option<Rejected>,
}

impl<S: Clone, C: Clone> Clone for CircuitBreakerService<S, C> {
    /// A clone has not been polled ready: a pending rejection stays with the original.
    fn clone(&self) -> Self {
        CircuitBreakerService {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classify: self.classify.clone(),
            rejected: None,
        }
    }
}

impl<S, C> CircuitBreakerService<S, C> {
    /// The breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    /// Ready at once when the breaker would reject; otherwise the inner service's readiness.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.rejected.is_some() {
            return Poll::Ready(Ok(()));
        }
        if let Err(rejected) = self.breaker.inner.admits() {
            self.rejected = Some(rejected);
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(rejected) = self.rejected.take() {
            self.breaker.inner.count_rejected();
            return ResponseFuture {
                future: None,
                permit: None,
                classify: self.classify.clone(),
                retry_after: rejected.retry_after,
            };
        }
        match self.breaker.try_acquire() {
            Ok(permit) => ResponseFuture {
                future: Some(self.inner.call(req)),
                permit: Some(permit),
                classify: self.classify.clone(),
                retry_after: Duration::ZERO,
            },
            Err(rejected) => ResponseFuture {
                future: None,
                permit: None,
                classify: self.classify.clone(),
                retry_after: rejected.retry_after,
            },
        }
    }
}

pin_project! {
    /// The response future of [`CircuitBreakerService`]. Dropping it before it completes
    /// counts the call as abandoned (a half-open probe slot is freed).
    pub struct ResponseFuture<F, C> {
        #[pin]
        future: Option<F>,
        permit: Option<Permit>,
        classify: C,
        retry_after: Duration,
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("rejected", &self.future.is_none())
            .field("permit", &self.permit)
            .finish()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(future) = this.future.as_pin_mut() else {
            return Poll::Ready(Err(Error::Open {
                retry_after: *this.retry_after,
            }));
        };
        let result = ready!(future.poll(cx));
        if let Some(permit) = this.permit.take() {
            permit.record(this.classify.classify(&result));
        }
        Poll::Ready(result.map_err(Error::Inner))
    }
}
