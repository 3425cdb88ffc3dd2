//! The end-of-run report: what each component did, and the end-to-end checks.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde::Serialize;

use super::counters::Readings;
use super::scenario::{Bot, Outcome};

/// One end-to-end check and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// The figures behind the verdict.
    pub detail: String,
}

/// A breaker state change, as the report lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TransitionLine {
    /// Seconds since the start of the run.
    pub at_secs: f64,
    /// The key whose breaker changed, for a keyed breaker (the upstream's model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
    /// Why.
    pub reason: String,
}

/// What one circuit breaker did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BreakerReport {
    /// Every transition, in order (of every key's breaker, for a keyed breaker).
    pub transitions: Vec<TransitionLine>,
    /// Calls the breaker turned away while open.
    pub rejected: u64,
    /// The state at the end of the run; for a keyed breaker, `closed` when every key's
    /// breaker is closed, else each key whose breaker is not, with its state.
    pub final_state: String,
}

/// How the messages fared.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MessageReport {
    /// Messages scheduled.
    pub total: u64,
    /// Answered by the upstream.
    pub answered: u64,
    /// Failed, each with a stated reason.
    pub failed: u64,
    /// Cancelled by a shutdown.
    pub cancelled: u64,
    /// Failure reasons with their counts, most frequent first.
    pub failure_reasons: Vec<(String, u64)>,
}

/// What the upstream calls did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpstreamReport {
    /// Attempts that reached the upstream.
    pub attempts: u64,
    /// Retries scheduled by the retry policy.
    pub retries: u64,
    /// Retries whose delay was set by the upstream's `Retry-After` hint.
    pub hinted_retries: u64,
    /// Calls that stopped because the retry budget was spent.
    pub budget_exhausted: u64,
    /// Attempts that ran past the per-attempt timeout.
    pub timeouts: u64,
}

/// What the fallback sink did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SinkReport {
    /// Records delivered straight to SQLite.
    pub primary: u64,
    /// Records written to the spool.
    pub spooled: u64,
    /// Spooled records later replayed into SQLite.
    pub replayed: u64,
    /// Records spooled by an earlier run and replayed by this one.
    pub inherited: u64,
    /// Lines of an earlier spool moved to quarantine.
    pub quarantined: u64,
    /// Writes that failed on both paths.
    pub failed: u64,
    /// The most records waiting in the spool at once.
    pub peak_backlog: u64,
}

/// What the keyed lock did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LockReport {
    /// Grants.
    pub acquired: u64,
    /// Grants that had to wait behind another holder.
    pub contended: u64,
    /// Leases lost to the TTL.
    pub expired: u64,
}

/// What the alerting did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertReport {
    /// Alerts sent to the operators.
    pub fired: u64,
    /// Alerts held back by the cooldown.
    pub suppressed: u64,
    /// The alert lines as sent.
    pub lines: Vec<String>,
}

/// Everything the run did, and whether it did it right.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// This run's id, as stored with each audit event.
    pub run: String,
    /// Wall-clock length of the run, in seconds.
    pub elapsed_secs: f64,
    /// Messages.
    pub messages: MessageReport,
    /// Upstream calls.
    pub upstream: UpstreamReport,
    /// The two breakers, `upstream` and `audit`.
    pub breakers: std::collections::BTreeMap<String, BreakerReport>,
    /// The audit sink.
    pub sink: SinkReport,
    /// The per-user lock.
    pub locks: LockReport,
    /// The operator alerts.
    pub alerts: AlertReport,
    /// The end-to-end checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every end-to-end check passed.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.passed)
    }

    /// The report as a person reads it.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let m = &self.messages;
        let u = &self.upstream;
        let k = &self.sink;
        let _ = writeln!(
            s,
            "\n=== Seawall bot report (run {}, {:.1} s) ===\n",
            self.run, self.elapsed_secs
        );
        let rows: Vec<(&str, String, String)> = vec![
            (
                "messages",
                "answered / failed / cancelled".into(),
                format!(
                    "{} / {} / {} of {}",
                    m.answered, m.failed, m.cancelled, m.total
                ),
            ),
            (
                "upstream",
                "attempts / retries".into(),
                format!("{} / {}", u.attempts, u.retries),
            ),
            (
                "",
                "retries after a Retry-After hint".into(),
                u.hinted_retries.to_string(),
            ),
            ("", "attempt timeouts".into(), u.timeouts.to_string()),
            (
                "",
                "stopped by the retry budget".into(),
                u.budget_exhausted.to_string(),
            ),
            (
                "keyed lock",
                "acquired / contended / expired".into(),
                format!(
                    "{} / {} / {}",
                    self.locks.acquired, self.locks.contended, self.locks.expired
                ),
            ),
            (
                "audit sink",
                "to SQLite directly".into(),
                k.primary.to_string(),
            ),
            (
                "",
                "spooled / replayed".into(),
                format!("{} / {}", k.spooled, k.replayed),
            ),
            (
                "",
                "inherited from an earlier run".into(),
                k.inherited.to_string(),
            ),
            (
                "",
                "quarantined / failed".into(),
                format!("{} / {}", k.quarantined, k.failed),
            ),
            ("", "peak backlog".into(), k.peak_backlog.to_string()),
            (
                "alerts",
                "fired / suppressed".into(),
                format!("{} / {}", self.alerts.fired, self.alerts.suppressed),
            ),
        ];
        let _ = writeln!(s, "{:<12} {:<34} value", "component", "measure");
        let _ = writeln!(s, "{:-<12} {:-<34} {:-<16}", "", "", "");
        for (c, what, v) in rows {
            let _ = writeln!(s, "{c:<12} {what:<34} {v}");
        }
        for (name, b) in &self.breakers {
            // A keyed breaker's transitions, counted per key.
            let mut per_key = std::collections::BTreeMap::<&str, usize>::new();
            for key in b.transitions.iter().filter_map(|t| t.key.as_deref()) {
                *per_key.entry(key).or_default() += 1;
            }
            let per_key = if per_key.is_empty() {
                String::new()
            } else {
                let keys: Vec<_> = per_key.iter().map(|(k, n)| format!("{k} {n}")).collect();
                format!(" ({})", keys.join(", "))
            };
            let _ = writeln!(
                s,
                "\nbreaker {name}: {} transitions{per_key}, {} calls rejected while open, ends {}",
                b.transitions.len(),
                b.rejected,
                b.final_state
            );
            for t in &b.transitions {
                let key = t
                    .key
                    .as_deref()
                    .map(|k| format!("{k} "))
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  [{:>6.2} s] {key}{:>9} -> {:<9} {}",
                    t.at_secs, t.from, t.to, t.reason
                );
            }
        }
        if !m.failure_reasons.is_empty() {
            let _ = writeln!(s, "\nfailure reasons:");
            for (reason, n) in &m.failure_reasons {
                let _ = writeln!(s, "  {n:>5}  {reason}");
            }
        }
        if !self.alerts.lines.is_empty() {
            let _ = writeln!(s, "\nalerts sent:");
            for l in &self.alerts.lines {
                let _ = writeln!(s, "  {l}");
            }
        }
        let _ = writeln!(s, "\nend-to-end checks:");
        for c in &self.checks {
            let _ = writeln!(
                s,
                "  {}  {} ({})",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        s
    }
}

impl Bot {
    /// The report: counters from the metrics registry, checks from what the bot recorded and
    /// from SQL on the audit store.
    pub(crate) fn report(&self, inherited: u64, quarantined: u64) -> Report {
        let m = Readings::of(&self.registry);
        let retry = [("policy", "upstream")];
        let sink = [("sink", "audit")];
        let lock = [("lock", "users")];
        let outcomes = self.outcomes.lock().clone();
        let mut messages = MessageReport {
            total: outcomes.len() as u64,
            ..MessageReport::default()
        };
        let mut reasons: HashMap<String, u64> = HashMap::new();
        let mut unexplained = 0;
        for o in &outcomes {
            match o {
                Some(Outcome::Answered) => messages.answered += 1,
                Some(Outcome::Failed(r)) => {
                    messages.failed += 1;
                    *reasons.entry(r.clone()).or_default() += 1;
                }
                Some(Outcome::Cancelled(r)) => {
                    messages.cancelled += 1;
                    *reasons.entry(format!("cancelled: {r}")).or_default() += 1;
                }
                None => unexplained += 1,
            }
        }
        let mut reasons: Vec<_> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        messages.failure_reasons = reasons;

        let mut checks = Vec::new();
        let stated = outcomes.iter().all(|o| match o {
            Some(Outcome::Failed(r) | Outcome::Cancelled(r)) => !r.is_empty(),
            Some(Outcome::Answered) => true,
            None => false,
        });
        checks.push(Check {
            name: "every message answered or failed with a stated reason".into(),
            passed: stated && unexplained == 0,
            detail: format!(
                "{} answered, {} failed, {} cancelled, {unexplained} without outcome, of {}",
                messages.answered, messages.failed, messages.cancelled, messages.total
            ),
        });

        let order = self.order.lock();
        let mut out_of_order = 0;
        let mut token_regressions = 0;
        for grants in order.values() {
            out_of_order += grants.windows(2).filter(|w| w[1].0 <= w[0].0).count();
            token_regressions += grants.windows(2).filter(|w| w[1].1 <= w[0].1).count();
        }
        let handled: usize = order.values().map(Vec::len).sum();
        checks.push(Check {
            name: "per-user order kept".into(),
            passed: out_of_order == 0 && token_regressions == 0,
            detail: format!(
                "{} users, {handled} messages handled, {out_of_order} out of order, {token_regressions} fencing-token regressions",
                order.len()
            ),
        });
        drop(order);

        let events = self.events.lock().clone();
        let check = self.sink.primary().verify(&self.run, &events);
        checks.push(match check {
            Ok(c) => Check {
                name: "every audit event in SQLite exactly once".into(),
                passed: c.missing == 0 && c.duplicated == 0 && c.rows == events.len() as u64,
                detail: format!(
                    "{} events written, {} rows, {} distinct, {} duplicated, {} missing (SQL)",
                    events.len(),
                    c.rows,
                    c.distinct,
                    c.duplicated,
                    c.missing
                ),
            },
            Err(e) => Check {
                name: "every audit event in SQLite exactly once".into(),
                passed: false,
                detail: format!("query failed: {e}"),
            },
        });
        let left = self.sink.stats();
        checks.push(Check {
            name: "spool empty at the end".into(),
            passed: left.records == 0,
            detail: format!("{} records, {} bytes left", left.records, left.bytes),
        });

        let mut breakers = std::collections::BTreeMap::new();
        for (name, final_state, rejected) in [
            (
                "upstream",
                self.upstream_state(),
                // Summed over the models' breakers: metrics carry the name, never a key.
                m.sum(
                    "seawall_circuit_breaker_calls_total",
                    &[("breaker", "upstream"), ("outcome", "rejected")],
                ),
            ),
            ("audit", self.audit_breaker.state().to_string(), 0),
        ] {
            let mut transitions = self.alerter.transitions(name);
            // The keys' transitions arrive in no order across keys: list them by time.
            transitions.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
            breakers.insert(
                name.to_string(),
                BreakerReport {
                    transitions,
                    rejected,
                    final_state,
                },
            );
        }
        Report {
            run: self.run.clone(),
            elapsed_secs: self.elapsed(),
            messages,
            upstream: UpstreamReport {
                attempts: self.upstream.calls(),
                // Every attempt after a call's first is a retry.
                retries: m
                    .sum("seawall_retry_attempts_total", &retry)
                    .saturating_sub(m.sum("seawall_retry_calls_total", &retry)),
                hinted_retries: m.sum("bot_upstream_hinted_retries_total", &[]),
                budget_exhausted: m.sum(
                    "seawall_retry_calls_total",
                    &[("policy", "upstream"), ("result", "budget")],
                ),
                timeouts: m.sum("bot_upstream_attempt_timeouts_total", &[]),
            },
            breakers,
            sink: SinkReport {
                primary: m.sum(
                    "seawall_fallback_sink_writes_total",
                    &[("sink", "audit"), ("destination", "primary")],
                ),
                spooled: m.sum(
                    "seawall_fallback_sink_writes_total",
                    &[("sink", "audit"), ("destination", "spool")],
                ),
                replayed: m
                    .sum("seawall_fallback_sink_replayed_total", &sink)
                    .saturating_sub(inherited),
                inherited,
                quarantined,
                failed: m.sum("bot_audit_lost_total", &[]),
                peak_backlog: self.peak_backlog.load(Ordering::Relaxed),
            },
            locks: LockReport {
                acquired: m.sum("seawall_keyed_lock_acquired_total", &lock),
                contended: m.sum("seawall_keyed_lock_contended_total", &lock),
                expired: m.sum("seawall_keyed_lock_expired_total", &lock),
            },
            alerts: AlertReport {
                fired: m.sum(
                    "seawall_cooldown_decisions_total",
                    &[("cooldown", "alerts"), ("decision", "fire")],
                ),
                suppressed: m.sum(
                    "seawall_cooldown_decisions_total",
                    &[("cooldown", "alerts"), ("decision", "suppressed")],
                ),
                lines: self.alerter.lines(),
            },
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_without_checks_does_not_pass() {
        let mut r = Report::default();
        assert!(!r.passed());
        r.checks.push(Check {
            name: "a".into(),
            passed: true,
            detail: String::new(),
        });
        assert!(r.passed());
        r.checks.push(Check {
            name: "b".into(),
            passed: false,
            detail: "x".into(),
        });
        assert!(!r.passed());
        let text = r.render();
        assert!(
            text.contains("PASS  a") && text.contains("FAIL  b (x)"),
            "{text}"
        );
    }

    #[test]
    fn a_keyed_breaker_lists_its_transitions_per_key() {
        let line = |at_secs, key: Option<&str>, to: &str| TransitionLine {
            at_secs,
            key: key.map(str::to_string),
            from: "closed".into(),
            to: to.into(),
            reason: "5 consecutive failures".into(),
        };
        let mut r = Report::default();
        r.breakers.insert(
            "upstream".into(),
            BreakerReport {
                transitions: vec![
                    line(1.0, Some("model-a"), "open"),
                    line(2.0, Some("model-b"), "open"),
                    line(3.0, Some("model-a"), "half_open"),
                ],
                rejected: 7,
                final_state: "model-b open".into(),
            },
        );
        r.breakers.insert(
            "audit".into(),
            BreakerReport {
                transitions: vec![line(4.0, None, "open")],
                rejected: 0,
                final_state: "closed".into(),
            },
        );
        let text = r.render();
        assert!(
            text.contains(
                "breaker upstream: 3 transitions (model-a 2, model-b 1), 7 calls rejected while open, ends model-b open"
            ),
            "{text}"
        );
        assert!(
            text.contains("] model-a    closed -> open")
                && text.contains("breaker audit: 1 transitions, 0"),
            "{text}"
        );
    }
}
