//! `mdops status`: every run, its steps, attempts, durations and last errors; failed steps first;
//! the dead letters that belong to each run; `--watch` redraws it every second.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Args;
use mdops_core::onboarding::runs::{RunSettings, RunStatus, RunView, Runs, StepStatus};
use mdops_core::queue::QueueName;
use mdops_core::tenant::TenantId;
use mdops_handlers::operators::{DeadLetterSummary, MAX_DEAD_LETTERS};

use crate::context::{GlobalArgs, Ports};

/// Most runs printed.
const RUN_LIMIT: usize = 1_000;
/// Most quarantined records printed.
const MAX_QUARANTINED_SHOWN: usize = 100;

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
    /// Redraw every second until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: stop after this many seconds.
    #[arg(long, requires = "watch")]
    pub watch_for: Option<u64>,
}

/// How often `--watch` redraws.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Runs `mdops status`.
pub async fn run(args: StatusArgs, global: &GlobalArgs) -> Result<()> {
    let ports = global.ports().await?;
    let tenant: Option<TenantId> = args.tenant_id.as_deref().map(str::parse).transpose()?;
    if !args.watch {
        print!("{}", snapshot(&args, &ports, tenant.as_ref()).await?);
        return Ok(());
    }
    let until = args
        .watch_for
        .map(|secs| tokio::time::Instant::now() + Duration::from_secs(secs));
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        if until.is_some_and(|u| tokio::time::Instant::now() >= u) {
            break;
        }
        let text = snapshot(&args, &ports, tenant.as_ref()).await?;
        // Clear the screen and home the cursor, then draw.
        print!(
            "\x1b[2J\x1b[H{}  (every {}s, Ctrl-C to stop)\n{text}",
            Utc::now().format("%H:%M:%S"),
            WATCH_EVERY.as_secs()
        );
        use std::io::Write as _;
        std::io::stdout().flush()?;
    }
    Ok(())
}

/// One rendering of the status, as text or JSON.
async fn snapshot(args: &StatusArgs, ports: &Ports, tenant: Option<&TenantId>) -> Result<String> {
    let views = Runs::new(ports.store.as_ref(), RunSettings::default())
        .list(tenant, RUN_LIMIT)
        .await?;
    let mut dead: BTreeMap<String, Vec<DeadLetterSummary>> = BTreeMap::new();
    for d in ports
        .queue
        .dead_letters(QueueName::Onboarding, MAX_DEAD_LETTERS)
        .await?
    {
        let s = DeadLetterSummary::of(&d);
        if let Some(run) = s.run_id.clone() {
            dead.entry(run).or_default().push(s);
        }
    }
    if args.json {
        let out: Vec<serde_json::Value> = views
            .iter()
            .map(|v| {
                serde_json::json!({
                    "status": v.status(),
                    "finished_at": v.finished_at(),
                    "run": v.run,
                    "steps": v.steps,
                    "dead_letters": dead.get(&v.run.run_id).cloned().unwrap_or_default(),
                })
            })
            .collect();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&out)?));
    }
    let quarantined = mdops_core::quarantine::list(ports.store.as_ref(), MAX_QUARANTINED_SHOWN).await?;
    if views.is_empty() {
        return Ok(format!(
            "no onboarding runs yet (start one with `mdops onboard --tenant-id ...`)\n{}",
            render_quarantined(&quarantined)
        ));
    }
    let mut out = render_quarantined(&quarantined);
    for view in &views {
        out.push_str(&render(view, args.steps));
        out.push_str(&render_dead_letters(
            dead.get(&view.run.run_id).map_or(&[], Vec::as_slice),
        ));
    }
    Ok(out)
}

/// Records the timer passes set aside because they do not decode, one line each.
pub fn render_quarantined(quarantined: &[mdops_core::quarantine::Quarantined]) -> String {
    if quarantined.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "quarantined records ({}): the timers skip them until they are repaired (rewrite the record with a valid body)\n",
        quarantined.len()
    );
    for q in quarantined {
        out.push_str(&format!(
            "  {}  {:<16} {}  {}\n",
            q.key,
            q.due_kind,
            q.quarantined_at.format("%Y-%m-%d %H:%M:%S"),
            q.reason.replace('\n', " "),
        ));
    }
    out
}

/// The dead letters of one run, one line each (nothing when there are none).
pub fn render_dead_letters(dead: &[DeadLetterSummary]) -> String {
    if dead.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "  dead letters ({}; `mdops dlq show ID`, `mdops dlq replay --ids ID`)\n",
        dead.len()
    );
    for d in dead {
        out.push_str(&format!(
            "    {}  {:<28} {}  {}\n",
            d.id,
            d.step.as_deref().unwrap_or("-"),
            d.dead_lettered_at.format("%Y-%m-%d %H:%M:%S"),
            d.reason.replace('\n', " "),
        ));
    }
    out
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
