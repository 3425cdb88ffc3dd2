//! The Seawall reference bot: every crate composed in one service, driven through a scripted
//! outage, ending with a report and end-to-end checks. `bot --help` lists the flags.

use std::process::ExitCode;

use clap::Parser as _;
use seawall_examples::bot::{self, Args};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if args.postgres.is_some() {
        return match seawall_examples::fleet::replica::run(&args).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
                ExitCode::from(2)
            }
        };
    }
    match bot::run(args).await {
        Ok(report) if report.passed() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            // One line, saying what to do.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}
