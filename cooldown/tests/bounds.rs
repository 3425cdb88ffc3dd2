//! Public types are `Send + Sync + 'static` (for owned type arguments).

use seawall_cooldown::{
    ConfigError, Cooldown, CooldownBuilder, Decision, Digest, Fire, Metrics, Reservation,
    Suppressed,
};

fn is_send_sync_static<T: Send + Sync + 'static>() {}

#[test]
fn bounds() {
    is_send_sync_static::<Cooldown<String>>();
    is_send_sync_static::<Cooldown<String, String>>();
    is_send_sync_static::<CooldownBuilder<String, String>>();
    is_send_sync_static::<Reservation<String>>();
    is_send_sync_static::<Reservation<String, String>>();
    is_send_sync_static::<Decision<String>>();
    is_send_sync_static::<Fire<String>>();
    is_send_sync_static::<Digest<String>>();
    is_send_sync_static::<Suppressed>();
    is_send_sync_static::<ConfigError>();
    is_send_sync_static::<Metrics>();
}

#[tokio::test]
async fn reservation_can_be_held_across_await_in_a_spawned_task() {
    let c: Cooldown<String> = Cooldown::builder().build().unwrap();
    let task = tokio::spawn({
        let c = c.clone();
        async move {
            let r = c.reserve(&"k".to_owned()).unwrap();
            tokio::task::yield_now().await;
            r.commit();
        }
    });
    task.await.unwrap();
    assert!(c.check(&"k".to_owned()).is_suppressed());
}

#[cfg(feature = "redis")]
mod redis {
    use std::future::Future;

    use seawall_cooldown::{
        RedisCooldown, RedisCooldownBuilder, RedisCooldownError, RedisReservation,
        UnreachablePolicy,
    };

    use super::is_send_sync_static;

    fn is_send<T: Send>(_: &T) {}

    #[test]
    fn redis_types_are_send_sync_static() {
        is_send_sync_static::<RedisCooldown<String>>();
        is_send_sync_static::<RedisCooldown<u64>>();
        is_send_sync_static::<RedisCooldownBuilder<String>>();
        is_send_sync_static::<RedisReservation<String>>();
        is_send_sync_static::<RedisCooldownError>();
        is_send_sync_static::<UnreachablePolicy>();
    }

    fn futures_are_send(c: &RedisCooldown<String>, key: &String) {
        is_send(&c.check(key));
        is_send(&c.try_check(key));
        is_send(&c.check_critical(key));
        is_send(&c.reserve(key));
        is_send(&c.drain_digests());
    }

    fn reservation_futures_are_send(r: RedisReservation<String>, s: RedisReservation<String>) {
        fn send_static<F: Future + Send + 'static>(_: &F) {}
        send_static(&r.commit());
        send_static(&s.rollback());
    }

    #[tokio::test]
    async fn futures_of_async_fns_are_send() {
        // Type checks only; never called with a live reservation.
        let c: RedisCooldown<String> = RedisCooldown::builder("redis://127.0.0.1:1/")
            .build()
            .unwrap();
        let _ = (futures_are_send, reservation_futures_are_send);
        // A spawned task can own a cooldown and await every call.
        let task = tokio::spawn(async move {
            let key = "k".to_owned();
            let _ = c.try_check(&key).await;
            let _ = c.drain_digests().await;
        });
        task.abort();
    }
}
