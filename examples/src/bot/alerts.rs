//! Operator alerts through a cooldown, and the breaker transitions the report lists.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use parking_lot::Mutex;
use seawall_circuit_breaker::Transition;
use seawall_cooldown::{Cooldown, Decision};

use super::report::TransitionLine;

/// Sends alerts (a line in the alerts file, and on stdout), at most one per key per cooldown
/// window; each alert says how many like it were held back since the last one.
#[derive(Debug)]
pub(crate) struct Alerter {
    cooldown: Cooldown<String>,
    state: Mutex<AlertState>,
}

#[derive(Debug)]
struct AlertState {
    file: File,
    lines: Vec<String>,
    transitions: HashMap<String, Vec<TransitionLine>>,
}

impl Alerter {
    pub(crate) fn new(path: &Path, cooldown: Cooldown<String>) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Alerter {
            cooldown,
            state: Mutex::new(AlertState {
                file,
                lines: Vec::new(),
                transitions: HashMap::new(),
            }),
        })
    }

    fn send(&self, line: String) {
        let mut st = self.state.lock();
        println!("ALERT {line}");
        let _ = writeln!(st.file, "{line}");
        st.lines.push(line);
    }

    /// Raises alert `key`; the cooldown decides whether it reaches a person now.
    pub(crate) fn alert(&self, key: &str, message: &str, at_secs: f64) {
        match self.cooldown.check(&key.to_string()) {
            Decision::Fire(fire) => {
                let suppressed_since_last = fire.suppressed_since_last;
                let more = if suppressed_since_last > 0 {
                    format!(" ({suppressed_since_last} more like this were suppressed)")
                } else {
                    String::new()
                };
                self.send(format!("[{at_secs:>6.2} s] {key}: {message}{more}"));
            }
            // Counted by the cooldown's metrics, which the report reads.
            Decision::Suppressed { .. } => {}
        }
    }

    /// Sends a digest for every key whose window ended with alerts held back and no new alert
    /// to carry the count.
    pub(crate) fn flush_digests(&self) {
        for (key, d) in self.cooldown.drain_digests() {
            let span = d
                .last_suppressed
                .saturating_duration_since(d.first_suppressed);
            self.send(format!(
                "digest {key}: {} more like this were suppressed over {:.2} s",
                d.count,
                span.as_secs_f64()
            ));
        }
    }

    /// Records a transition for the report, under its breaker's name; `key` is the key of a
    /// keyed breaker's transition.
    pub(crate) fn record_transition(&self, t: &Transition, key: Option<&str>, at_secs: f64) {
        self.state
            .lock()
            .transitions
            .entry(t.breaker.to_string())
            .or_default()
            .push(TransitionLine {
                at_secs,
                key: key.map(str::to_string),
                from: t.from.to_string(),
                to: t.to.to_string(),
                reason: t.reason.to_string(),
            });
    }

    pub(crate) fn transitions(&self, breaker: &str) -> Vec<TransitionLine> {
        self.state
            .lock()
            .transitions
            .get(breaker)
            .cloned()
            .unwrap_or_default()
    }

    /// The alert lines sent so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.state.lock().lines.clone()
    }
}
