//! The `veer-loadtester` command: flags, logging, signals; everything else is in
//! `veer::loadtester`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use veer::loadtester::auth::KubeTokenReviewer;
use veer::loadtester::{Args, ConfigError, normalize_go_flags, router, router_with_reviewer, serve};

fn main() -> ExitCode {
    let args = Args::parse_from(normalize_go_flags(std::env::args_os()));
    let filter = match EnvFilter::try_new(&args.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "error: --log-level {:?} is not a log filter ({e}); use error, warn, info, debug or trace",
                args.log_level
            );
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in collected pod logs.
        .with_ansi(std::io::stderr().is_terminal());
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    veer::http::install_crypto_provider();
    let config = args.config()?;
    let store_spec = args.gate_store_spec();
    let gates = store_spec.open().await?;
    let open = gates.open_keys().await?;
    info!(store = %gates.describe(), open = ?open, "gate store ready");

    if config.shell.shell_allowed() {
        warn!(patterns = ?args.allow_commands, "shell tasks enabled for commands matching --allow-command");
    } else {
        info!("shell tasks disabled: only the built-in hey runs");
    }
    let reviewer = match &config.token_review {
        None => None,
        Some(policy) => {
            let client =
                kube::Client::try_default().await.map_err(|e| ConfigError::TokenReviewClient(Box::new(e)))?;
            let allowed: Vec<&str> = policy.allowed.iter().map(|a| a.as_str()).collect();
            info!(audience = %policy.audience, ?allowed, "ServiceAccount tokens are checked with TokenReviews");
            Some(Arc::new(KubeTokenReviewer::new(client)))
        }
    };
    if config.token.is_none() && reviewer.is_none() {
        warn!(
            "no --token-file and no --allowed-service-account: anyone who can reach this service can open \
             gates and start load runs"
        );
    }
    if let Some(ns) = &config.namespaces {
        info!(pattern = ns.pattern(), "payload namespaces limited by --namespace-regexp");
    }

    let addr = (args.address, args.port);
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {}:{}: {e}; choose another --port or --address", addr.0, addr.1)
    })?;
    info!(address = %listener.local_addr()?, "veer-loadtester listening");
    let app = match reviewer {
        Some(reviewer) => router_with_reviewer(config, gates, reviewer),
        None => router(config, gates),
    };
    serve(listener, app, veer::signal::Shutdown::on_signals().wait()).await?;
    info!("veer-loadtester stopped");
    Ok(())
}
