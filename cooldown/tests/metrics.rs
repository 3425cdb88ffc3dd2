//! The metric families appear in an encoded registry with the right values.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use seawall_cooldown::{Cooldown, Metrics};

#[tokio::test(start_paused = true)]
async fn families_count_every_decision() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let c: Cooldown<u32> = Cooldown::builder()
        .name("alerts")
        .window(Duration::from_secs(60))
        .max_keys(2)
        .metrics(metrics.clone())
        .build()
        .unwrap();
    let other: Cooldown<u32> = Cooldown::builder()
        .name("pages")
        .metrics(metrics)
        .build()
        .unwrap();

    c.check(&1); // fire
    c.check(&1); // suppressed
    c.check(&1); // suppressed
    c.check_critical(&1); // bypass
    c.check_critical(&2); // fire (nothing to bypass)
    drop(c.reserve(&1)); // suppressed (window open)
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(c.drain_digests().len(), 1); // key 1's digest
    assert_eq!(c.len(), 0, "both keys are done and forgotten");
    drop(c.reserve(&2).unwrap()); // rolled back
    c.reserve(&2).unwrap().commit(); // fire
    c.check(&3); // fire
    c.check(&4); // fire; full of live keys: evicts one
    other.check(&1);

    let mut text = String::new();
    encode(&mut text, &registry).unwrap();
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            r#"seawall_cooldown_decisions_total{cooldown="alerts",decision="bypass"} 1"#,
            r#"seawall_cooldown_decisions_total{cooldown="alerts",decision="fire"} 5"#,
            r#"seawall_cooldown_decisions_total{cooldown="alerts",decision="rolled_back"} 1"#,
            r#"seawall_cooldown_decisions_total{cooldown="alerts",decision="suppressed"} 3"#,
            r#"seawall_cooldown_decisions_total{cooldown="pages",decision="bypass"} 0"#,
            r#"seawall_cooldown_decisions_total{cooldown="pages",decision="fire"} 1"#,
            r#"seawall_cooldown_decisions_total{cooldown="pages",decision="rolled_back"} 0"#,
            r#"seawall_cooldown_decisions_total{cooldown="pages",decision="suppressed"} 0"#,
            r#"seawall_cooldown_evictions_total{cooldown="alerts"} 1"#,
            r#"seawall_cooldown_evictions_total{cooldown="pages"} 0"#,
            r#"seawall_cooldown_keys{cooldown="alerts"} 2"#,
            r#"seawall_cooldown_keys{cooldown="pages"} 1"#,
        ]
    );
    assert_eq!(c.len(), 2);
    assert!(text.contains("# TYPE seawall_cooldown_decisions counter"));
    assert!(text.contains("# TYPE seawall_cooldown_keys gauge"));
    assert!(text.contains("# TYPE seawall_cooldown_evictions counter"));
}
