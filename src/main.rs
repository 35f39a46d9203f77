//! The `veer` command.

use std::{fmt::Display, future::Future, process::ExitCode, time::Duration};

use clap::{CommandFactory, Parser, Subcommand};
use veer::{actions::Operation, analysis::request::Action};

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
    /// Skip the remaining steps and gates: the next step runs now and promotes if its checks pass.
    Promote(veer::actions::PromoteArgs),
    /// Roll the running analysis back now.
    Abort(veer::actions::RequestArgs),
    /// Analyse a failed revision again, without touching its pod template.
    Retry(veer::actions::RequestArgs),
    /// Hold a Canary where it is (its weight, or a new revision) until `veer resume`.
    Pause(veer::actions::CanaryRef),
    /// Let a paused Canary go on.
    Resume(veer::actions::CanaryRef),
    /// Serve a web dashboard on this machine: every Canary, its run, and buttons for the requests above.
    Dashboard(veer::dashboard::DashboardArgs),
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
        Command::Promote(args) => {
            let action = if args.full { Action::PromoteFull } else { Action::Promote };
            let r = args.request;
            block_on("promote", veer::actions::run(r.canary, Operation::Request(action), r.timeout))
        }
        Command::Abort(r) => {
            block_on("abort", veer::actions::run(r.canary, Operation::Request(Action::Abort), r.timeout))
        }
        Command::Retry(r) => {
            block_on("retry", veer::actions::run(r.canary, Operation::Request(Action::Retry), r.timeout))
        }
        Command::Pause(c) => block_on("pause", veer::actions::run(c, Operation::Pause, Duration::ZERO)),
        Command::Resume(c) => block_on("resume", veer::actions::run(c, Operation::Resume, Duration::ZERO)),
        Command::Dashboard(args) => block_on("dashboard", veer::dashboard::run(args)),
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
            for word in [
                "controller",
                "status",
                "wait",
                "promote",
                "full",
                "abort",
                "retry",
                "pause",
                "resume",
                "dashboard",
                "convert",
                "image",
                "all-namespaces",
            ] {
                assert!(script.contains(word), "{shell}: {word} missing");
            }
        }
    }
}
