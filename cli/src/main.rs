//! `mdops`: the operator CLI. Each subcommand is one module with the same shape: parse, apply,
//! print. All logic lives in the library crates under `shared/`; this binary only wires them up.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod sim;

#[derive(Parser)]
#[command(
    name = "mdops",
    version,
    about = "Onboard and operate Microsoft 365 tenants for a managed-desktop service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the simulated Entra ID + Microsoft Graph tenant (for rehearsal and tests).
    Sim(sim::SimArgs),
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MDOPS_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim::run(args).await,
    }
}
