//! `mdops onboard`: enroll a tenant and work the queue in this process until its run finishes,
//! with a progress display; then print the run's status.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mdops_core::onboarding::runs::{RunStatus, RunView, Runs, StepStatus};
use mdops_core::queue::QueueName;
use mdops_core::tenant::TenantId;

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
    /// Take over this existing object (an object id the account step refused because mdops did
    /// not create it): recorded with who and when in the audit log, then the refused account
    /// steps of the tenant's run are replayed. Repeat for several.
    #[arg(long = "adopt", value_name = "OBJECT_ID")]
    pub adopt: Vec<String>,
    /// Who adopts, for the audit log (default: $USER).
    #[arg(long, env = "MDOPS_ACTOR")]
    pub actor: Option<String>,
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
    replayed: &[(String, u32)],
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
        // A replayed step still reads failed until a worker takes it again.
        let replay_pending = replayed.iter().any(|(name, before)| {
            view.step(name)
                .is_some_and(|s| s.status == StepStatus::Failed && s.attempts <= *before)
        });
        if view.status() != RunStatus::Running && !replay_pending {
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
    let mut replayed = Vec::new();
    if !args.adopt.is_empty() {
        let tenant: TenantId = args
            .tenant_id
            .parse()
            .map_err(|e| anyhow::anyhow!("--tenant-id {:?}: {e}", args.tenant_id))?;
        let mut ids = Vec::new();
        for value in &args.adopt {
            ids.push(mdops_core::onboarding::adoption::parse_object_id(value)?);
        }
        let actor = format!("operator:{}", crate::context::operator_actor(args.actor.clone()));
        let runs = Runs::new(ctx.deps.store.as_ref(), ctx.deps.runs);
        let report = mdops_handlers::operators::adopt(
            ctx.deps.queue.as_ref(),
            ctx.deps.store.as_ref(),
            &runs,
            &tenant,
            &ids,
            &actor,
            ctx.deps.now(),
        )
        .await?;
        eprintln!(
            "adoption of {} recorded in the audit log as {actor}; {} refused account step(s) sent again",
            report.allowed.join(", "),
            report.replayed.len()
        );
        replayed = report.replayed;
    }
    let view = onboard_and_wait(
        &ctx,
        &args.tenant_id,
        &args.worker,
        Duration::from_secs(args.timeout_secs),
        "cli:onboard",
        &replayed,
    )
    .await?;
    print!("{}", crate::status::render(&view, true));
    if view.status() == RunStatus::Failed {
        bail!("onboarding failed; the failed steps are in the dead-letter queue with their reasons");
    }
    Ok(())
}
