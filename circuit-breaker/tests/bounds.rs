//! Public types and futures are `Send + Sync + 'static` where they should be.

use seawall_circuit_breaker::{
    CircuitBreaker, CircuitBreakerBuilder, ConfigError, Error, Metrics, Outcome, Permit, Reason,
    Rejected, SlowCalls, State, Transition, TripPolicy, Window,
};

fn send_sync_static<T: Send + Sync + 'static>() {}
fn send<T: Send>(_: &T) {}

#[test]
fn public_types_are_send_sync_static() {
    send_sync_static::<CircuitBreaker>();
    send_sync_static::<CircuitBreakerBuilder>();
    send_sync_static::<Permit>();
    send_sync_static::<Rejected>();
    send_sync_static::<Error<std::io::Error>>();
    send_sync_static::<ConfigError>();
    send_sync_static::<Metrics>();
    send_sync_static::<State>();
    send_sync_static::<Transition>();
    send_sync_static::<Reason>();
    send_sync_static::<Outcome>();
    send_sync_static::<TripPolicy>();
    send_sync_static::<Window>();
    send_sync_static::<SlowCalls>();
    send_sync_static::<tokio::sync::broadcast::Receiver<Transition>>();
}

#[test]
fn call_futures_are_send() {
    let breaker = CircuitBreaker::builder().build().unwrap();
    let fut = breaker.call(|| async { Ok::<_, std::io::Error>(1) });
    send(&fut);
    drop(fut);
    let fut = breaker.call_with(Outcome::of, || async { Err::<(), _>("x") });
    send(&fut);
    drop(fut);
    // A future owning its breaker can be spawned.
    let owned = async move { breaker.call(|| async { Ok::<_, ()>(()) }).await };
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async { tokio::spawn(owned).await.unwrap().unwrap() });
}

#[cfg(feature = "tower")]
#[test]
fn tower_types_are_send_sync() {
    use seawall_circuit_breaker::layer::{
        CircuitBreakerLayer, CircuitBreakerService, DefaultClassifier, ResponseFuture,
    };
    use std::future::Ready;
    send_sync_static::<CircuitBreakerLayer>();
    send_sync_static::<CircuitBreakerService<(), DefaultClassifier>>();
    send_sync_static::<ResponseFuture<Ready<Result<(), ()>>, DefaultClassifier>>();
}
