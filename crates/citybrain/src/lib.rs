//! The `citybrain` command: run the hub, generate data, apply the catalog, mint tokens and call a
//! running hub. `main.rs` only calls [`main`]; tests drive the same functions ([`hub::start`],
//! [`hub::prepare_demo`]) to run the real server in-process.

mod audit_cmd;
mod bench_cmd;
mod bench_sql;
pub mod cli;
mod commands;
mod error;
pub mod hub;
mod sharing_cmd;

pub use commands::parse_ttl;
pub use error::{Error, Result};

use clap::Parser;
use std::process::ExitCode;

/// Parses the command line, runs the command, and turns its outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logs(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            cli::Command::Serve(a) => commands::serve(a).await,
            cli::Command::Datagen(a) => commands::datagen(a),
            cli::Command::Catalog(c) => commands::catalog(c).await,
            cli::Command::Token(a) => commands::token(a),
            cli::Command::Whoami(c) => commands::whoami(c).await,
            cli::Command::Audit(c) => audit_cmd::run(c).await,
            cli::Command::Sharing(c) => sharing_cmd::sharing(c).await,
            cli::Command::Data(c) => sharing_cmd::data(c).await,
            cli::Command::Bench(a) => bench_cmd::bench(a).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(args: &cli::LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
