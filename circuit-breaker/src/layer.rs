//! A `tower` middleware: [`CircuitBreakerLayer`] wraps a service in a [`CircuitBreaker`].
//!
//! # `poll_ready` semantics
//!
//! [`CircuitBreakerService::poll_ready`] only forwards to the inner service's `poll_ready`; it
//! never consults the breaker. The breaker is asked in `call`: when it rejects, the inner
//! service is not called and the response future resolves at once to
//! [`Error::Open { retry_after }`](crate::Error::Open). Two reasons:
//!
//! - An open breaker is not backpressure. Returning `Poll::Pending` from `poll_ready` would
//!   park callers with no wakeup (the breaker has no timer; it half-opens lazily), and callers
//!   want to fall back now, not wait 30 s.
//! - Returning an error from `poll_ready` tells tower that the service has failed for good:
//!   `Buffer` and the balancers drop such a service.
//!
//! The readiness reserved by a rejected request is released unused, which tower services
//! must tolerate. Errors of `poll_ready` itself are passed through as
//! [`Error::Inner`] and are not counted by the breaker.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{CircuitBreaker, Error, Outcome, Permit};

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
        }
    }
}

/// A service whose calls go through a [`CircuitBreaker`]; made by [`CircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S, C = DefaultClassifier> {
    inner: S,
    breaker: CircuitBreaker,
    classify: C,
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

    /// Forwards to the inner service; the breaker is consulted in `call`.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
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
