//! `mdops sim`: runs the simulated tenant until interrupted.

use anyhow::Result;
use clap::Args;

/// Arguments of `mdops sim`.
#[derive(Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port. The bound URL is the first line printed.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
}

/// Starts the simulator and waits for Ctrl-C.
pub async fn run(args: SimArgs) -> Result<()> {
    let _ = args;
    anyhow::bail!("the simulated tenant is not built yet")
}
