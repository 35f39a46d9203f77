//! `veer-trafficsim`: serves simulated Istio/Linkerd/NGINX request metrics for the end-to-end tests.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use veer::trafficsim::sim::{Shape, Sim};

/// Serves Prometheus metrics shaped like Istio's, Linkerd's and NGINX ingress's for workloads whose
/// request rate, error rate and latency are set at run time (see e2e/TRAFFICSIM.md).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:19091", env = "VEER_TRAFFICSIM_LISTEN")]
    listen: SocketAddr,
    /// Metric shapes exported for the Istio workloads (comma-separated; default all). The scale
    /// benchmark exports only `istio` for a thousand workloads.
    #[arg(long, value_enum, value_delimiter = ',', env = "VEER_TRAFFICSIM_SHAPES", default_values_t = Shape::ALL)]
    shapes: Vec<Shape>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("veer-trafficsim listening on {}", cli.listen);
    match veer::trafficsim::server::serve(
        listener,
        Sim::with_shapes(&cli.shapes),
        veer::signal::Shutdown::on_signals().wait(),
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
