//! A `tower` middleware: [`KeyedCircuitBreakerLayer`] wraps a service in a
//! [`KeyedCircuitBreaker`], one breaker per key of the request (e.g. the URI's host).
//!
//! # Readiness contract: fail fast, per key
//!
//! The key is known only when `call` sees the request, so readiness cannot depend on it:
//!
//! - [`KeyedCircuitBreakerService::poll_ready`] is **always ready at once**, without polling
//!   the inner service. Never `Poll::Pending` and never an error because of the breaker (as
//!   the [single layer](crate::layer)).
//! - `call` computes the key and asks its breaker. **If it rejects** (open, forced open,
//!   half-open with every probe slot taken), the response future resolves at once to
//!   [`Error::Open { retry_after }`](crate::Error::Open) and the inner service is never
//!   touched: a request for a dead host never waits on a pool saturated by others.
//! - **If it admits**, the response future drives a clone of the inner service to readiness
//!   (errors from its `poll_ready` are passed through as [`Error::Inner`] and not counted:
//!   the permit is abandoned), then calls it and records the outcome. So the inner service's
//!   backpressure is felt in the response future, not in `poll_ready` (as with tower's
//!   `Buffer`), and the inner service must be `Clone`.
//!
//! Dropping the response future counts the call as abandoned (a half-open probe slot is
//! freed), as with the single layer.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::layer::{Classify, DefaultClassifier};
use crate::{Error, KeyedCircuitBreaker, Permit};

/// A `tower::Layer` wrapping services in a [`KeyedCircuitBreaker`]: `key_of` maps each
/// request to its key (e.g. the URI's host), and each key has its own breaker. See the
/// [module docs](self) for the readiness contract.
///
/// # Examples
///
/// ```
/// use seawall_circuit_breaker::{CircuitBreaker, Error};
/// use seawall_circuit_breaker::keyed_layer::KeyedCircuitBreakerLayer;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Requests are (host, path); a host answering "down" fails.
/// let hosts = CircuitBreaker::builder().consecutive_failures(1).keyed::<String>().build().unwrap();
/// let svc = ServiceBuilder::new()
///     .layer(KeyedCircuitBreakerLayer::new(hosts, |req: &(&'static str, &'static str)| req.0.to_owned()))
///     .service(service_fn(|(host, _path): (&'static str, &'static str)| async move {
///         if host == "down.example" { Err("refused") } else { Ok(host.len()) }
///     }));
///
/// assert_eq!(svc.clone().oneshot(("down.example", "/")).await, Err(Error::Inner("refused")));
/// assert!(svc.clone().oneshot(("down.example", "/")).await.unwrap_err().is_open());
/// assert_eq!(svc.oneshot(("up.example", "/")).await, Ok(10));
/// # }
/// ```
pub struct KeyedCircuitBreakerLayer<K, F, C = DefaultClassifier> {
    keyed: KeyedCircuitBreaker<K>,
    key_of: F,
    classify: C,
}

impl<K, F: Clone, C: Clone> Clone for KeyedCircuitBreakerLayer<K, F, C> {
    fn clone(&self) -> Self {
        KeyedCircuitBreakerLayer {
            keyed: self.keyed.clone(),
            key_of: self.key_of.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<K: fmt::Debug, F, C> fmt::Debug for KeyedCircuitBreakerLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("keyed", &self.keyed)
            .finish_non_exhaustive()
    }
}

impl<K, F> KeyedCircuitBreakerLayer<K, F> {
    /// A layer using `keyed`, keying each request by `key_of`, with the default
    /// classification (`Ok` a success, `Err` a failure).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::KeyedCircuitBreaker;
    /// use seawall_circuit_breaker::keyed_layer::KeyedCircuitBreakerLayer;
    ///
    /// let hosts = KeyedCircuitBreaker::<String>::builder().build().unwrap();
    /// let layer = KeyedCircuitBreakerLayer::new(hosts, |url: &String| url.clone());
    /// assert_eq!(layer.keyed().name(), "default");
    /// ```
    pub fn new(keyed: KeyedCircuitBreaker<K>, key_of: F) -> Self {
        KeyedCircuitBreakerLayer {
            keyed,
            key_of,
            classify: DefaultClassifier,
        }
    }
}

impl<K, F, C> KeyedCircuitBreakerLayer<K, F, C> {
    /// Classifies the inner service's results with `classify`, as
    /// [`CircuitBreakerLayer::with_classifier`](crate::layer::CircuitBreakerLayer::with_classifier).
    ///
    /// # Examples
    ///
    /// ```
    /// use seawall_circuit_breaker::{KeyedCircuitBreaker, Outcome};
    /// use seawall_circuit_breaker::keyed_layer::KeyedCircuitBreakerLayer;
    ///
    /// let hosts = KeyedCircuitBreaker::<String>::builder().build().unwrap();
    /// let layer = KeyedCircuitBreakerLayer::new(hosts, |url: &String| url.clone())
    ///     .with_classifier(|r: &Result<u16, u16>| match r {
    ///         Err(404) => Outcome::Ignored,
    ///         r => Outcome::of(r),
    ///     });
    /// # drop(layer);
    /// ```
    pub fn with_classifier<C2>(self, classify: C2) -> KeyedCircuitBreakerLayer<K, F, C2> {
        KeyedCircuitBreakerLayer {
            keyed: self.keyed,
            key_of: self.key_of,
            classify,
        }
    }

    /// The keyed breaker.
    pub fn keyed(&self) -> &KeyedCircuitBreaker<K> {
        &self.keyed
    }
}

impl<S, K, F: Clone, C: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, F, C> {
    type Service = KeyedCircuitBreakerService<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreakerService {
            inner,
            keyed: self.keyed.clone(),
            key_of: self.key_of.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// A service whose calls go through the breaker of their key; made by
/// [`KeyedCircuitBreakerLayer`]. See the [module docs](self) for its readiness contract.
pub struct KeyedCircuitBreakerService<S, K, F, C = DefaultClassifier> {
    inner: S,
    keyed: KeyedCircuitBreaker<K>,
    key_of: F,
    classify: C,
}

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedCircuitBreakerService<S, K, F, C> {
    fn clone(&self) -> Self {
        KeyedCircuitBreakerService {
            inner: self.inner.clone(),
            keyed: self.keyed.clone(),
            key_of: self.key_of.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug, F, C> fmt::Debug for KeyedCircuitBreakerService<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerService")
            .field("inner", &self.inner)
            .field("keyed", &self.keyed)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C> KeyedCircuitBreakerService<S, K, F, C> {
    /// The keyed breaker.
    pub fn keyed(&self) -> &KeyedCircuitBreaker<K> {
        &self.keyed
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedCircuitBreakerService<S, K, F, C>
where
    S: Service<Req> + Clone,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    F: Fn(&Req) -> K,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = KeyedResponseFuture<S, Req, C>;

    /// Always ready at once: the breaker of the request's key decides in `call`.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key_of)(&req);
        let classify = self.classify.clone();
        match self.keyed.try_acquire::<K>(&key) {
            Ok(permit) => {
                // The clone that was driven to readiness is not this one: take this one
                // (tower's recommended pattern) and leave the clone behind.
                let clone = self.inner.clone();
                let svc = std::mem::replace(&mut self.inner, clone);
                KeyedResponseFuture {
                    future: None,
                    waiting: Some((svc, req)),
                    permit: Some(permit),
                    classify,
                    retry_after: Duration::ZERO,
                }
            }
            Err(rejected) => KeyedResponseFuture {
                future: None,
                waiting: None,
                permit: None,
                classify,
                retry_after: rejected.retry_after,
            },
        }
    }
}

pin_project! {
    /// The response future of [`KeyedCircuitBreakerService`]: rejected at once, or waiting
    /// for the inner service's readiness, then its response. Dropping it before it
    /// completes counts the call as abandoned.
    pub struct KeyedResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        future: Option<S::Future>,
        waiting: Option<(S, Req)>,
        permit: Option<Permit>,
        classify: C,
        retry_after: Duration,
    }
}

impl<S: Service<Req>, Req, C> fmt::Debug for KeyedResponseFuture<S, Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedResponseFuture")
            .field("rejected", &self.permit.is_none())
            .field("permit", &self.permit)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C> Future for KeyedResponseFuture<S, Req, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, Error<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some((svc, _)) = this.waiting.as_mut() {
            if let Err(e) = ready!(svc.poll_ready(cx)) {
                // Not the dependency's answer to a call: abandoned, not counted.
                this.permit.take();
                this.waiting.take();
                return Poll::Ready(Err(Error::Inner(e)));
            }
            if let Some((mut svc, req)) = this.waiting.take() {
                this.future.set(Some(svc.call(req)));
            }
        }
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            return Poll::Ready(Err(Error::Open {
                retry_after: *this.retry_after,
            }));
        };
        let result = ready!(future.poll(cx));
        this.future.set(None);
        if let Some(permit) = this.permit.take() {
            permit.record(this.classify.classify(&result));
        }
        Poll::Ready(result.map_err(Error::Inner))
    }
}
