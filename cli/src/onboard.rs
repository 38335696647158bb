//! `mdops onboard`: enroll a tenant and work the queue in this process until its run finishes,
//! with a progress display; then print the run's status.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mdops_core::onboarding::runs::{RunStatus, RunView, Runs, StepStatus};
use mdops_core::queue::QueueName;

use crate::context::{Context, GlobalArgs};
use crate::worker::WorkerArgs;

/// How often the progress display reads the run.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// `mdops onboard`
#[derive(Args, Debug)]
pub struct OnboardArgs {
    /// The registered tenant to onboard.
    #[arg(long)]
    pub tenant_id: String,
    /// Give up waiting after this many seconds (the run goes on with the next worker).
    #[arg(long, default_value_t = 1800)]
    pub timeout_secs: u64,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Enrolls and works until the run succeeds or fails, or `timeout` passes. Returns the run.
pub async fn onboard_and_wait(
    ctx: &Context,
    tenant_id: &str,
    worker: &WorkerArgs,
    timeout: Duration,
    requested_by: &str,
) -> Result<RunView> {
    let enrollment = mdops_handlers::onboarding::enroll(&ctx.deps, tenant_id, requested_by).await?;
    let run_id = enrollment.run_id().to_string();
    let runs = Runs::new(ctx.deps.store.as_ref(), ctx.deps.runs);
    let worker = worker.worker(ctx.deps.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let working = tokio::spawn(async move { worker.run(&[QueueName::Onboarding, QueueName::Licences], stop_rx).await });

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let outcome = loop {
        let Some(view) = runs.get(&run_id).await? else {
            bail!("run {run_id} disappeared from the store")
        };
        bar.set_length(view.steps.len() as u64);
        bar.set_position(view.steps.iter().filter(|s| s.status == StepStatus::Done).count() as u64);
        let running: Vec<&str> = view
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Running)
            .map(|s| s.name.as_str())
            .take(3)
            .collect();
        bar.set_message(running.join(", "));
        if view.status() != RunStatus::Running {
            break Ok(view);
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "run {run_id} still running after {}s; `mdops worker` carries on with it",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(PROGRESS_EVERY).await;
    };
    bar.finish_and_clear();
    let _ = stop_tx.send(true);
    let _ = working.await;
    outcome
}

/// Runs `mdops onboard`.
pub async fn run(args: OnboardArgs, global: &GlobalArgs) -> Result<()> {
    let ctx = Context::open(global).await?;
    let view = onboard_and_wait(
        &ctx,
        &args.tenant_id,
        &args.worker,
        Duration::from_secs(args.timeout_secs),
        "cli:onboard",
    )
    .await?;
    print!("{}", crate::status::render(&view, true));
    if view.status() == RunStatus::Failed {
        bail!("onboarding failed; the failed steps are in the dead-letter queue with their reasons");
    }
    Ok(())
}
