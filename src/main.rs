//! The `veer` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Veer: progressive delivery for Kubernetes, compatible with Flagger's API.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the controller.
    Controller(veer::cli::ControllerArgs),
    /// Print the CustomResourceDefinitions (Canary, MetricTemplate, AlertProvider) as YAML.
    Crds,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Controller(args) => {
            veer::telemetry::init_logging(&args.log_level, args.log_format);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(veer::controller::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("veer controller: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crds => {
            print!("{}", veer::api::schema::crds_yaml());
            ExitCode::SUCCESS
        }
    }
}
