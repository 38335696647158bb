//! `mdops rings`: the device update rings of a tenant. `sync` places every Windows device that is
//! in no ring (one chunk message of at most 20 devices per Graph request, on the onboarding queue;
//! `mdops worker` or the onboarding-step function applies them); `show` reports counts, shares,
//! devices in no ring and devices in two; `move` puts one device into a ring (audited).

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use mdops_core::tenant::{Ring, TenantId};
use mdops_handlers::rings::{move_device::move_device, show::show, sync::sync};

use crate::context::{Context, GlobalArgs};

/// Devices listed by `show` (in no ring, in two) before it summarises the rest.
const LISTED: usize = 20;

/// `mdops rings`
#[derive(Args, Debug)]
pub struct RingsArgs {
    #[command(subcommand)]
    command: RingsCommand,
}

#[derive(Subcommand, Debug)]
enum RingsCommand {
    /// Place every Windows device that is in no ring, by the tenant's ring shares.
    Sync {
        /// The registered tenant.
        #[arg(long)]
        tenant: String,
        /// Show what would be placed; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Counts and shares per ring, devices in no ring, devices in two.
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Put one device into a ring and take it out of the others (audited).
    Move {
        #[arg(long)]
        tenant: String,
        /// The device's object id.
        #[arg(long)]
        device: String,
        /// test, first, fast or broad.
        #[arg(long, value_parser = parse_ring)]
        ring: Ring,
        #[arg(long)]
        json: bool,
    },
}

fn parse_ring(s: &str) -> Result<Ring, String> {
    Ring::ALL
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
        .ok_or_else(|| format!("unknown ring {s:?}: expected test, first, fast or broad"))
}

/// Runs `mdops rings`.
pub async fn run(args: RingsArgs, global: &GlobalArgs) -> Result<()> {
    let ctx = Context::open(global).await?;
    let reach = |tenant: &str| {
        let ctx = &ctx;
        let tenant = tenant.to_string();
        async move {
            let id: TenantId = tenant.parse().context("--tenant")?;
            ctx.deps.reach.tenant(&id).await.with_context(|| format!("tenant {id}"))
        }
    };
    let who = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into()));
    match args.command {
        RingsCommand::Sync { tenant, dry_run, json } => {
            let (tenant, graph) = reach(&tenant).await?;
            let started = std::time::Instant::now();
            let report = sync(&ctx.deps, &tenant, &graph, &who, dry_run).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            let placed: usize = report.placed.values().sum();
            let per_ring: Vec<String> = report
                .placed
                .iter()
                .map(|(r, n)| format!("{} {n}", r.as_str()))
                .collect();
            println!(
                "tenant {}: {} Windows devices, {placed} in no ring{}",
                report.tenant_id,
                report.windows_devices,
                if placed > 0 {
                    format!(" ({})", per_ring.join(", "))
                } else {
                    String::new()
                }
            );
            if dry_run {
                println!("dry run: nothing sent");
            } else if report.messages > 0 {
                println!(
                    "queued {} ring chunks (at most 20 devices each) in {:.1}s; `mdops worker` (or the onboarding-step function) applies them",
                    report.messages,
                    started.elapsed().as_secs_f64()
                );
            } else {
                println!("nothing to do: every Windows device is in a ring");
            }
            if report.in_several > 0 {
                println!(
                    "{} devices are in more than one ring: see `mdops rings show --tenant {}`",
                    report.in_several, report.tenant_id
                );
            }
        }
        RingsCommand::Show { tenant, json } => {
            let (tenant, graph) = reach(&tenant).await?;
            let report = show(&graph, &tenant.settings.ring_shares).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            println!(
                "tenant {}: {} Windows devices",
                report.tenant_id, report.windows_devices
            );
            println!(
                "{:<6} {:>8} {:>8} {:>10}  group",
                "ring", "devices", "share", "configured"
            );
            for line in &report.rings {
                println!(
                    "{:<6} {:>8} {:>7.2}% {:>9.2}%  {}",
                    line.ring.as_str(),
                    line.devices,
                    line.share,
                    line.configured,
                    line.group_id
                );
            }
            println!("in no ring: {}", report.unplaced.len());
            for id in report.unplaced.iter().take(LISTED) {
                println!("  {id}");
            }
            if report.unplaced.len() > LISTED {
                println!(
                    "  ... and {} more (`mdops rings sync` places them)",
                    report.unplaced.len() - LISTED
                );
            }
            println!("in more than one ring: {}", report.in_several.len());
            for d in report.in_several.iter().take(LISTED) {
                let rings: Vec<&str> = d.rings.iter().map(|r| r.as_str()).collect();
                println!(
                    "  {} {} ({}); `mdops rings move --tenant {} --device {} --ring <one>` fixes it",
                    d.device_id,
                    d.display_name.as_deref().unwrap_or(""),
                    rings.join(", "),
                    report.tenant_id,
                    d.device_id
                );
            }
        }
        RingsCommand::Move {
            tenant,
            device,
            ring,
            json,
        } => {
            let (_, graph) = reach(&tenant).await?;
            let report = move_device(&ctx.deps, &graph, &device, ring, &who).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            let from: Vec<&str> = report.from.iter().map(|r| r.as_str()).collect();
            if report.changed {
                println!(
                    "device {} moved from [{}] to {} (audited)",
                    report.device_id,
                    from.join(", "),
                    report.to.as_str()
                );
            } else {
                println!(
                    "device {} is already in {} alone; nothing changed",
                    report.device_id,
                    report.to.as_str()
                );
            }
        }
    }
    Ok(())
}
