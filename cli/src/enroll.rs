//! `mdops enroll`: submit an enrollment (what a `TenantEnrolled` event does on AWS).

use anyhow::Result;
use clap::Args;
use mdops_core::onboarding::runs::Enrollment;

use crate::context::{Context, GlobalArgs};

/// `mdops enroll`
#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// The registered tenant to onboard.
    #[arg(long)]
    pub tenant_id: String,
}

/// Runs `mdops enroll`.
pub async fn run(args: EnrollArgs, global: &GlobalArgs) -> Result<()> {
    let ctx = Context::open(global).await?;
    match mdops_handlers::onboarding::enroll(&ctx.deps, &args.tenant_id, "cli:enroll").await? {
        Enrollment::Created { run_id, messages } => {
            println!(
                "created run {run_id}; queued {} first step(s); run `mdops worker` to work it",
                messages.len()
            )
        }
        Enrollment::Joined { run_id } => println!("tenant already has run {run_id} in progress; joined it"),
    }
    Ok(())
}
