//! `mdops`: the operator CLI. Each subcommand is one module with the same shape: parse, apply,
//! print. All logic lives in the library crates under `shared/`; this binary only wires them up.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod access;
mod apps;
mod aws;
mod context;
mod dlq;
mod enroll;
mod licences;
mod onboard;
mod quickstart;
mod rings;
mod sim;
mod status;
mod tenants;
mod worker;

#[derive(Parser)]
#[command(
    name = "mdops",
    version,
    about = "Onboard and operate Microsoft 365 tenants for a managed-desktop service"
)]
struct Cli {
    #[command(flatten)]
    global: context::GlobalArgs,
    /// On failure, print the whole error chain and a backtrace (also with RUST_BACKTRACE set).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rehearse everything end to end: a simulated tenant, an enrollment, the worker, the status.
    Quickstart(quickstart::QuickstartArgs),
    /// Manage the customer tenants: add, list, show, remove, consent-url, check.
    Tenants(tenants::TenantsArgs),
    /// Submit an enrollment for a registered tenant.
    Enroll(enroll::EnrollArgs),
    /// Work the queues until Ctrl-C.
    Worker(worker::WorkerArgs),
    /// Enroll a tenant and work until its onboarding finishes.
    Onboard(onboard::OnboardArgs),
    /// Show onboarding runs, their steps, attempts and last errors.
    Status(status::StatusArgs),
    /// Dead letters: list, show, replay, purge.
    Dlq(dlq::DlqArgs),
    /// Run the simulated Entra ID + Microsoft Graph tenant (for rehearsal and tests).
    Sim(sim::SimArgs),
    /// Queue licence changes: one message per user (a user, or every member of a group).
    Licences(licences::LicencesArgs),
    /// Device update rings: sync (place devices in no ring), show, move.
    Rings(rings::RingsArgs),
    /// The app catalogue: sync (ensure and assign each app), show, catalogue (per tenant or default).
    Apps(apps::AppsArgs),
    /// Temporary engineer access with two-key approval: configure, serve, request, approve, list, ...
    Access(access::AccessArgs),
    /// The AWS resources without SAM: setup (create or check), teardown.
    Aws(aws::AwsArgs),
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MDOPS_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match run(cli.command, cli.global).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: what failed and why. The whole chain (and a backtrace) only when asked for.
            if verbose || std::env::var_os("RUST_BACKTRACE").is_some() {
                eprintln!("error: {error:?}");
            } else {
                eprintln!("error: {}", mdops_core::errors::one_line(error.as_ref()));
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, global: context::GlobalArgs) -> Result<()> {
    match command {
        Command::Quickstart(args) => quickstart::run(args).await,
        Command::Tenants(args) => tenants::run(args, &global).await,
        Command::Enroll(args) => enroll::run(args, &global).await,
        Command::Worker(args) => worker::run(args, &global).await,
        Command::Onboard(args) => onboard::run(args, &global).await,
        Command::Status(args) => status::run(args, &global).await,
        Command::Dlq(args) => dlq::run(args, &global).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Licences(args) => licences::run(args, &global).await,
        Command::Access(args) => access::run(args, &global).await,
        Command::Rings(args) => rings::run(args, &global).await,
        Command::Apps(args) => apps::run(args, &global).await,
        Command::Aws(args) => aws::run(args, &global).await,
    }
}
