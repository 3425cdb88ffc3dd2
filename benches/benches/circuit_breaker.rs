//! Closed-state overhead of a circuit breaker around a call that succeeds: seawall beside
//! failsafe (its consecutive-failure policy and its default), recloser and tower-resilience,
//! with a bare call as the floor.
//!
//! Every contender is driven the way its users call it: failsafe and recloser are sync and are
//! called synchronously (`breaker.call(f)`); seawall's `call` and tower-resilience's service are
//! async and are awaited, the future polled in place on this thread (the call is ready at
//! once, so no runtime is involved and none is charged to anyone). Seawall's permit API is sync
//! and called sync: `seawall_permit` is `try_acquire_ref` + `success` (the borrowed permit),
//! `seawall_permit_owned` is `try_acquire` + `success` (the `'static` permit, one reference
//! count increment and decrement per call).
//!
//! `*/1thread`: one thread. `*/2threads`: the measured thread shares the breaker with a
//! second thread hammering it with the same calls for the whole measurement.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use tower::{Service, ServiceExt as _, service_fn};

/// The protected call: succeeds at once.
#[inline]
fn dependency() -> Result<u64, ()> {
    Ok(black_box(1))
}

/// Polls `f` until it is ready (it always is at once here, unless a peer's lock is contended,
/// in which case this spins like a busy thread would).
#[inline(always)]
fn spin_on<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

/// Times `iters` calls of `op` on this thread; with `contended`, a second thread runs
/// `make_op()` in a loop on the same breaker meanwhile.
fn measure<O, M>(iters: u64, contended: bool, make_op: M) -> Duration
where
    M: Fn() -> O + Sync,
    O: FnMut(),
{
    let stop = AtomicBool::new(false);
    let started = Barrier::new(2);
    std::thread::scope(|s| {
        if contended {
            s.spawn(|| {
                let mut op = make_op();
                started.wait();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        op();
                    }
                }
            });
            started.wait();
        }
        let mut op = make_op();
        let t0 = Instant::now();
        for _ in 0..iters {
            op();
        }
        let elapsed = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        elapsed
    })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker");

    let seawall = seawall_circuit_breaker::CircuitBreaker::builder()
        .name("bench")
        .consecutive_failures(5)
        .build()
        .unwrap();
    let failsafe_consecutive = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            5,
            failsafe::backoff::constant(Duration::from_secs(30)),
        ))
        .build();
    let failsafe_default = failsafe::Config::new().build();
    let recloser = recloser::Recloser::default();
    let tower_resilience = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .consecutive_failures(5)
        .build()
        .unwrap()
        .layer_fn(service_fn(|()| async { dependency() }));

    for (suffix, contended) in [("1thread", false), ("2threads", true)] {
        group.bench_function(format!("bare/{suffix}"), |b| {
            b.iter_custom(|iters| {
                measure(iters, contended, || {
                    || {
                        black_box(dependency()).unwrap();
                    }
                })
            })
        });
        group.bench_function(format!("seawall_call/{suffix}"), |b| {
            b.iter_custom(|iters| {
                measure(iters, contended, || {
                    || {
                        let r = spin_on(seawall.call(|| async { dependency() }));
                        black_box(r).unwrap();
                    }
                })
            })
        });
        group.bench_function(format!("seawall_permit/{suffix}"), |b| {
            b.iter_custom(|iters| {
                measure(iters, contended, || {
                    || {
                        let permit = seawall.try_acquire_ref().unwrap();
                        black_box(dependency()).unwrap();
                        permit.success();
                    }
                })
            })
        });
        group.bench_function(format!("seawall_permit_owned/{suffix}"), |b| {
            b.iter_custom(|iters| {
                measure(iters, contended, || {
                    || {
                        let permit = seawall.try_acquire().unwrap();
                        black_box(dependency()).unwrap();
                        permit.success();
                    }
                })
            })
        });
        group.bench_function(format!("failsafe_consecutive/{suffix}"), |b| {
            b.iter_custom(|iters| {
                measure(iters, contended, || {
                    || {
                        black_box(failsafe_consecutive.call(dependency)).unwrap();
                    }
                })
            })
        });
        group.bench_function(format!("failsafe_default/{suffix}"), |b| {
            b.iter_custom(|iters| {
                measure(iters, contended, || {
                    || {
                        black_box(failsafe_default.call(dependency)).unwrap();
                    }
                })
            })
        });
        group.bench_function(format!("recloser/{suffix}"), |b| {
            b.iter_custom(|iters| {
                measure(iters, contended, || {
                    || {
                        black_box(recloser.call(dependency)).unwrap();
                    }
                })
            })
        });
        group.bench_function(format!("tower_resilience/{suffix}"), |b| {
            b.iter_custom(|iters| {
                measure(iters, contended, || {
                    let mut svc = tower_resilience.clone();
                    move || {
                        let r = spin_on(async {
                            svc.ready().await.unwrap();
                            svc.call(()).await
                        });
                        black_box(r).unwrap();
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
