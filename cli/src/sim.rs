//! `mdops sim`: runs the simulated tenant (Entra ID + Microsoft Graph) until interrupted. The bound
//! URL is the first line of standard output, so scripts can start it on port 0 and read the port.

use anyhow::{Context, Result};
use clap::Args;

/// Arguments of `mdops sim`.
#[derive(Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port. The bound URL is the first line printed.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// JSON file of tenant seeds (format: tests/tenant-sim/examples/tenants.json). Without it,
    /// the demo tenant "contoso" is seeded.
    #[arg(long, conflicts_with = "empty")]
    pub tenants: Option<std::path::PathBuf>,
    /// Start without any tenant (create them through the control API).
    #[arg(long)]
    pub empty: bool,
}

/// Starts the simulator and waits for Ctrl-C or SIGTERM.
pub async fn run(args: SimArgs) -> Result<()> {
    let seeds = match (&args.tenants, args.empty) {
        (Some(path), _) => tenant_sim::read_seed_file(path)?,
        (None, true) => Vec::new(),
        (None, false) => tenant_sim::seeds::demo(),
    };
    tenant_sim::run_until_signal(args.listen, seeds)
        .await
        .with_context(|| format!("running the simulated tenant on {}", args.listen))
}
