//! The `veer` command.

use std::{fmt::Display, future::Future, process::ExitCode};

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Show Canaries: phase, weight, failed checks, metric values and the last decision.
    Status(veer::inspect::StatusArgs),
    /// Wait until a revision is promoted (exit 0), or fails (exit 1 with the reason): for CI.
    Wait(veer::wait::WaitArgs),
    /// Print the CustomResourceDefinitions (Canary, MetricTemplate, AlertProvider) as YAML.
    Crds,
    /// Convert Argo Rollouts objects to a Deployment, a Canary and MetricTemplates, with a report
    /// of what does not map (exit status 2 when something did not).
    Convert(veer::convert::ConvertArgs),
    /// Print a shell completion script: `source <(veer completion bash)`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs an async command to completion and turns its error into a message and exit status.
fn block_on<E: Display>(what: &str, f: impl Future<Output = Result<(), E>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("veer {what}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("veer {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Controller(args) => {
            veer::telemetry::init_logging(&args.log_level, args.log_format);
            block_on("controller", veer::app::run(args))
        }
        Command::Status(args) => block_on("status", veer::inspect::run(args)),
        Command::Wait(args) => block_on("wait", veer::wait::run(args)),
        Command::Convert(args) => veer::convert::run(args),
        Command::Crds => {
            print!("{}", veer::api::schema::crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "veer", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_scripts_know_every_command_and_flag() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "veer", &mut out);
            let script = String::from_utf8(out).unwrap();
            for word in ["controller", "status", "wait", "crds", "image", "all-namespaces"] {
                assert!(script.contains(word), "{shell}: {word} missing");
            }
        }
    }
}
