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
