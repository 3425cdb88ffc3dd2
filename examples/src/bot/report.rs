//! The end-of-run report: what each component did, and the end-to-end checks.

use std::fmt::Write as _;

use serde::Serialize;

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
    /// Every transition, in order.
    pub transitions: Vec<TransitionLine>,
    /// Calls the breaker turned away while open.
    pub rejected: u64,
    /// The state at the end of the run.
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
            let _ = writeln!(
                s,
                "\nbreaker {name}: {} transitions, {} calls rejected while open, ends {}",
                b.transitions.len(),
                b.rejected,
                b.final_state
            );
            for t in &b.transitions {
                let _ = writeln!(
                    s,
                    "  [{:>6.2} s] {:>9} -> {:<9} {}",
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
}
