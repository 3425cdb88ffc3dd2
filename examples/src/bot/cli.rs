//! The bot's command line.

use std::path::PathBuf;

use clap::Parser;

/// A chat bot service that composes every Seawall crate, driven through a scripted outage.
///
/// Synthetic users send messages in bursts. Each user's messages are serialized by a keyed lock
/// and answered in arrival order; each answer calls one model of a flaky upstream through a
/// per-attempt timeout, a retry policy with a shared budget and a keyed circuit breaker (one per
/// model); every event is written to a SQLite audit store through a fallback sink that spools to disk while the store is down;
/// operators are alerted through a cooldown. The run ends with a report and end-to-end checks,
/// and exits non-zero if any check fails.
#[derive(Debug, Clone, Parser)]
#[command(name = "bot", version, about, long_about)]
pub struct Args {
    /// Number of synthetic users.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: u32,

    /// Messages each user sends.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub messages: u32,

    /// Seed for the message schedule and the upstream's behaviour.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Multiplies every duration of the scenario (0.1 runs it ten times faster).
    #[arg(long, default_value_t = 1.0, value_parser = parse_scale)]
    pub time_scale: f64,

    /// Port for /metrics, /healthz and /readyz on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// Directory for the SQLite audit database, the spool and the alerts file.
    #[arg(long, default_value = "bot-data")]
    pub data_dir: PathBuf,

    /// Keep serving the HTTP endpoints after the scenario, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,

    /// Run as one replica of the fleet, with its locks and alert cooldown on this Redis
    /// (with --postgres and --replica; see `bash .ci/fleet`).
    #[arg(long, value_name = "URL", requires_all = ["postgres", "replica"])]
    pub redis: Option<String>,

    /// The fleet's PostgreSQL: inbox, conversations and audit (with --redis and --replica).
    #[arg(long, value_name = "URL", requires_all = ["redis", "replica"])]
    pub postgres: Option<String>,

    /// This replica's id, as written in the tables (with --redis and --postgres).
    #[arg(long, value_name = "ID", requires_all = ["redis", "postgres"])]
    pub replica: Option<String>,

    /// The fleet's PostgreSQL schema (one per run).
    #[arg(long, default_value = "fleet")]
    pub schema: String,

    /// Messages a replica handles at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,

    /// A replica's lease on a user, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub lease_ms: u64,

    /// Append each acknowledged audit event to DATA_DIR/acks.log (used by the crash test).
    #[arg(long, hide = true)]
    pub ack_log: bool,
}

fn parse_scale(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && (0.001..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("time scale must be between 0.001 and 100, got {s}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_docs() {
        let a = Args::try_parse_from(["bot"]).unwrap();
        assert_eq!((a.users, a.messages, a.seed, a.port), (50, 20, 42, 0));
        assert_eq!(a.time_scale, 1.0);
        assert!(!a.serve);
    }

    #[test]
    fn bad_input_is_rejected_with_a_reason() {
        for bad in [
            &["bot", "--time-scale", "0"][..],
            &["bot", "--time-scale", "NaN"],
            &["bot", "--users", "0"],
            &["bot", "--port", "70000"],
            &["bot", "--workers", "0"],
        ] {
            let err = Args::try_parse_from(bad).unwrap_err().to_string();
            assert!(err.contains("invalid value"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_replica_needs_redis_postgres_and_an_id_together() {
        let ok = Args::try_parse_from([
            "bot",
            "--redis",
            "redis://r/",
            "--postgres",
            "postgres://p/",
            "--replica",
            "r1",
        ])
        .unwrap();
        assert_eq!(
            (ok.schema.as_str(), ok.workers, ok.lease_ms),
            ("fleet", 8, 2000)
        );
        for partial in [
            &["bot", "--redis", "redis://r/"][..],
            &["bot", "--postgres", "postgres://p/", "--replica", "r1"],
        ] {
            assert!(
                Args::try_parse_from(partial).is_err(),
                "{partial:?} accepted"
            );
        }
    }
}
