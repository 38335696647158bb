//! `mdops status`: every run, its steps, attempts, durations and last errors; failed steps first.

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;
use mdops_core::onboarding::runs::{RunSettings, RunStatus, RunView, Runs, StepStatus};
use mdops_core::tenant::TenantId;

use crate::context::GlobalArgs;

/// Most runs printed.
const RUN_LIMIT: usize = 1_000;

/// `mdops status`
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only this tenant's runs.
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Print every step, not only the runs' summary lines and their unfinished steps.
    #[arg(long)]
    pub steps: bool,
}

/// Runs `mdops status`.
pub async fn run(args: StatusArgs, global: &GlobalArgs) -> Result<()> {
    let ports = global.ports().await?;
    let tenant: Option<TenantId> = args.tenant_id.as_deref().map(str::parse).transpose()?;
    let views = Runs::new(ports.store.as_ref(), RunSettings::default())
        .list(tenant.as_ref(), RUN_LIMIT)
        .await?;
    if args.json {
        let out: Vec<serde_json::Value> = views
            .iter()
            .map(|v| serde_json::json!({ "status": v.status(), "finished_at": v.finished_at(), "run": v.run, "steps": v.steps }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if views.is_empty() {
        println!("no onboarding runs yet (start one with `mdops onboard --tenant-id ...`)");
    }
    for view in &views {
        print!("{}", render(view, args.steps));
    }
    Ok(())
}

fn seconds(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!("{:.1}s", (b - a).num_milliseconds() as f64 / 1000.0),
        _ => "-".into(),
    }
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Blocked => "blocked",
        StepStatus::Ready => "ready",
        StepStatus::Running => "running",
        StepStatus::Done => "done",
        StepStatus::Failed => "FAILED",
    }
}

/// A run as text: a summary line, then its steps (failed first), each with attempts, retries,
/// duration, whether it wrote, and the last error.
pub fn render(view: &RunView, all_steps: bool) -> String {
    let done = view.steps.iter().filter(|s| s.status == StepStatus::Done).count();
    let status = match view.status() {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "FAILED",
    };
    let writes = view
        .steps
        .iter()
        .filter(|s| {
            s.output
                .as_ref()
                .and_then(|o| o.get("created"))
                .and_then(|c| c.as_bool())
                == Some(true)
        })
        .count();
    let mut out = format!(
        "run {}  tenant {}  {status}  {done}/{} steps  {writes} steps wrote  started {}  took {}\n",
        view.run.run_id,
        view.run.tenant_id,
        view.steps.len(),
        view.run.created_at.format("%Y-%m-%d %H:%M:%S"),
        seconds(Some(view.run.created_at), view.finished_at()),
    );
    let mut steps: Vec<_> = view
        .steps
        .iter()
        .filter(|s| all_steps || s.status != StepStatus::Done)
        .collect();
    steps.sort_by_key(|s| {
        (
            s.status != StepStatus::Failed,
            s.status == StepStatus::Done,
            s.name.clone(),
        )
    });
    if !steps.is_empty() {
        out.push_str(&format!(
            "  {:<44} {:<8} {:>8} {:>7} {:>8} {:<6} last error\n",
            "step", "status", "attempts", "retries", "took", "wrote"
        ));
    }
    for s in steps {
        let wrote = match s
            .output
            .as_ref()
            .and_then(|o| o.get("created"))
            .and_then(|c| c.as_bool())
        {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        out.push_str(&format!(
            "  {:<44} {:<8} {:>8} {:>7} {:>8} {:<6} {}\n",
            s.name,
            status_word(s.status),
            s.attempts,
            s.retries,
            seconds(s.started_at, s.finished_at),
            wrote,
            s.last_error.as_deref().unwrap_or(""),
        ));
    }
    out
}
