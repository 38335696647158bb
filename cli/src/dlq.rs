//! `mdops dlq`: dead letters for operators: list (filtered), show one, replay to the source queue
//! (dry run, cap, pacing, progress bar, audited), purge (filters and `--yes` required, audited).
//! The logic is `mdops_handlers::operators`; this module parses, asks for confirmation and prints.

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mdops_core::queue::{DeadLetter, QueueName};
use mdops_handlers::operators::{self, DeadLetterFilter, DeadLetterSummary, ReplayOptions};

use crate::context::GlobalArgs;

/// Replays of at least this many dead letters get a progress bar (on a terminal).
const PROGRESS_FROM: usize = 20;

/// `mdops dlq ...`
#[derive(Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// List dead letters with their tenant, step, attempts, first and last failure and reason.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter: the whole message and its failure history.
    Show {
        /// The dead letter's id (from `mdops dlq list`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move matching dead letters back to their source queue with a fresh attempt count.
    Replay(ReplayArgs),
    /// Delete matching dead letters for good (needs a filter and --yes).
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        /// Really purge.
        #[arg(long)]
        yes: bool,
        /// Who is purging, for the audit log (default: $USER).
        #[arg(long, env = "MDOPS_ACTOR")]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Which dead letters: every flag narrows; none means all of them.
#[derive(Args, Debug, Clone)]
struct FilterArgs {
    /// Only this queue's dead letters.
    #[arg(long)]
    queue: Option<QueueName>,
    /// Only this tenant's.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this step (onboarding: `preflight`, `group:test`, ...) or kind (`licence.change`).
    #[arg(long)]
    step: Option<String>,
    /// Only those whose failure reason contains this text (case-insensitive).
    #[arg(long)]
    error: Option<String>,
    /// Only those dead-lettered since: a duration back from now (`90s`, `15m`, `2h`, `3d`) or a
    /// time (RFC 3339).
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// Only these dead-letter ids (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    ids: Vec<String>,
}

impl FilterArgs {
    fn filter(&self) -> DeadLetterFilter {
        DeadLetterFilter {
            queues: self.queue.into_iter().collect(),
            tenant: self.tenant.clone(),
            step: self.step.clone(),
            error: self.error.clone(),
            since: self.since,
            ids: self.ids.clone(),
        }
    }
}

#[derive(Args, Debug)]
struct ReplayArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// List exactly what would move, and move nothing.
    #[arg(long)]
    dry_run: bool,
    /// Move at most this many (oldest first).
    #[arg(long)]
    max: Option<usize>,
    /// Move at most this many per second (`5` or `5/s`).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u32>,
    /// Really replay more than one message.
    #[arg(long)]
    yes: bool,
    /// Who is replaying, for the audit log (default: $USER).
    #[arg(long, env = "MDOPS_ACTOR")]
    actor: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("--since {text:?}: give a duration like 90s, 15m, 2h, 3d, or an RFC 3339 time"))?;
    let back = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        _ => None,
    }
    .ok_or_else(|| format!("--since {text:?}: the unit must be s, m, h or d"))?;
    Ok(Utc::now() - back)
}

fn parse_rate(text: &str) -> Result<u32, String> {
    let n = text.strip_suffix("/s").unwrap_or(text);
    match n.parse::<u32>() {
        Ok(r) if (1..=operators::MAX_RATE_PER_SECOND).contains(&r) => Ok(r),
        _ => Err(format!(
            "--rate {text:?}: give messages per second, 1 to {}, e.g. 5/s",
            operators::MAX_RATE_PER_SECOND
        )),
    }
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// Dead letters as a table, one row each.
fn table(rows: &[DeadLetterSummary]) -> String {
    let mut out = format!(
        "{:<10} {:<36} {:<36} {:<28} {:>8} {:<19} {:<19} reason\n",
        "queue", "id", "tenant", "step", "attempts", "first failure", "last failure"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<10} {:<36} {:<36} {:<28} {:>8} {:<19} {:<19} {}\n",
            r.queue.as_str(),
            r.id,
            r.tenant.as_deref().unwrap_or("-"),
            r.step.as_deref().unwrap_or("-"),
            r.attempts,
            time(r.first_failure),
            time(r.last_failure),
            r.reason.replace('\n', " "),
        ));
    }
    out
}

fn show(dead: &DeadLetter) -> String {
    let s = DeadLetterSummary::of(dead);
    let body = serde_json::from_str::<serde_json::Value>(&dead.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| dead.body.clone());
    let mut out = format!(
        "dead letter {}\n  queue            {}\n  cause            {:?}\n  tenant           {}\n  step             {}\n  run              {}\n  received         {} times\n  dead-lettered at {}\n  reason           {}\nbody\n{body}\nfailure history (oldest first)\n",
        dead.id,
        dead.source,
        dead.cause,
        s.tenant.as_deref().unwrap_or("-"),
        s.step.as_deref().unwrap_or("-"),
        s.run_id.as_deref().unwrap_or("-"),
        dead.receive_count,
        time(Some(dead.dead_lettered_at)),
        s.reason,
    );
    if dead.history.is_empty() {
        out.push_str("  (none recorded)\n");
    }
    for f in &dead.history {
        out.push_str(&format!(
            "  {}  attempt {}  {}\n",
            time(Some(f.at)),
            f.attempts,
            f.reason
        ));
    }
    out
}

/// Runs `mdops dlq ...`.
pub async fn run(args: DlqArgs, global: &GlobalArgs) -> Result<()> {
    let ports = global.ports().await?;
    let (queue, store) = (ports.queue.as_ref(), ports.store.as_ref());
    match args.command {
        DlqCommand::List { filter, json } => {
            let dead = operators::list(queue, &filter.filter()).await?;
            let rows: Vec<DeadLetterSummary> = dead.iter().map(DeadLetterSummary::of).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no dead letters match");
            } else {
                print!("{}", table(&rows));
                println!("{} dead letter(s)", rows.len());
            }
        }
        DlqCommand::Show { id, json } => {
            let dead = operators::find(queue, &id)
                .await?
                .with_context(|| format!("no dead letter with id {id:?} in any queue (see `mdops dlq list`)"))?;
            if json {
                let out = serde_json::json!({ "summary": DeadLetterSummary::of(&dead), "dead_letter": dead });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", show(&dead));
            }
        }
        DlqCommand::Replay(args) => replay(args, queue, store).await?,
        DlqCommand::Purge {
            filter,
            yes,
            actor: who,
            json,
        } => {
            let filter = filter.filter();
            if !filter.narrows() {
                bail!("purge needs at least one filter (--tenant, --step, --error, --since or --ids)");
            }
            if !yes {
                let n = operators::list(queue, &filter).await?.len();
                bail!("purge would delete {n} dead letter(s) for good: add --yes to do it");
            }
            let report = operators::purge(queue, store, &filter, &crate::context::operator_actor(who)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("purged {} dead letter(s)", report.purged.len());
            }
        }
    }
    Ok(())
}

async fn replay(
    args: ReplayArgs,
    queue: &dyn mdops_core::queue::Queue,
    store: &dyn mdops_core::store::Store,
) -> Result<()> {
    let filter = args.filter.filter();
    let mut options = ReplayOptions {
        dry_run: true,
        max: args.max,
        rate: args.rate,
        actor: crate::context::operator_actor(args.actor),
    };
    let mut quiet = |_: usize, _: usize| {};
    let plan = operators::replay(queue, store, &filter, &options, &mut quiet).await?;
    if args.dry_run {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", table(&plan.selected));
            println!("dry run: {} dead letter(s) would be replayed", plan.selected.len());
        }
        return Ok(());
    }
    if plan.selected.len() > 1 && !args.yes {
        bail!(
            "replay would move {} dead letters: add --yes to do it (or --dry-run to list them)",
            plan.selected.len()
        );
    }
    options.dry_run = false;
    // Replay exactly what was listed, even if more dead letters arrive meanwhile.
    let exact = DeadLetterFilter {
        ids: plan.selected.iter().map(|s| s.id.clone()).collect(),
        ..filter
    };
    let bar = if plan.selected.len() >= PROGRESS_FROM {
        let bar = ProgressBar::new(plan.selected.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} replayed  {elapsed} elapsed, {eta} left")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let mut progress = |done: usize, _total: usize| {
        if let Some(bar) = &bar {
            bar.set_position(done as u64);
        }
    };
    let report = if exact.ids.is_empty() {
        operators::ReplayReport { dry_run: false, ..plan }
    } else {
        operators::replay(queue, store, &exact, &options, &mut progress).await?
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for id in &report.moved {
            println!("replayed {id}");
        }
        for id in &report.gone {
            println!("gone     {id} (replayed or purged meanwhile)");
        }
        println!(
            "replayed {} dead letter(s){}",
            report.moved.len(),
            if report.gone.is_empty() {
                String::new()
            } else {
                format!(", {} no longer there", report.gone.len())
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now = Utc::now();
        let two_hours = parse_since("2h").unwrap();
        assert!((now - two_hours - chrono::Duration::hours(2)).num_seconds().abs() <= 1);
        assert_eq!(
            parse_since("2026-01-02T03:04:05Z").unwrap().to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
        for bad in ["", "2", "2w", "h", "yesterday"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_is_per_second_and_bounded() {
        assert_eq!(parse_rate("5/s"), Ok(5));
        assert_eq!(parse_rate("5"), Ok(5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("5/m").is_err());
        assert!(parse_rate("100000").is_err());
    }
}
