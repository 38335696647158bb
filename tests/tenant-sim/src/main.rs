//! The `tenant-sim` binary: the same as `mdops sim`. Prints the bound URL as the first line of
//! standard output, then serves until Ctrl-C/SIGTERM.

use anyhow::Result;
use clap::Parser;

/// Run the simulated Entra ID + Microsoft Graph tenant.
#[derive(Parser)]
#[command(name = "tenant-sim", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// JSON file of tenant seeds (see examples/tenants.json); without it, the demo tenant.
    #[arg(long, conflicts_with = "empty")]
    tenants: Option<std::path::PathBuf>,
    /// Start without any tenant (create them through the control API).
    #[arg(long)]
    empty: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MDOPS_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let seeds = match (&args.tenants, args.empty) {
        (Some(path), _) => tenant_sim::read_seed_file(path)?,
        (None, true) => Vec::new(),
        (None, false) => tenant_sim::seeds::demo(),
    };
    tenant_sim::run_until_signal(args.listen, seeds).await?;
    Ok(())
}
