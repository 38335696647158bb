//! `mdops licences assign`: one licence-change message per user (a user, or every user member of a
//! group, paged through Graph) on the licence queue; the worker or the licence-assignment function
//! applies them, each user on its own.

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mdops_core::licences::LicenceMessage;
use mdops_core::tenant::TenantId;
use mdops_handlers::licences::{Target, fan_out};

use crate::context::{Context, GlobalArgs};

/// Users listed by a dry run before it summarises the rest.
const DRY_RUN_LISTED: usize = 20;

/// `mdops licences`
#[derive(Args, Debug)]
pub struct LicencesArgs {
    #[command(subcommand)]
    command: LicencesCommand,
}

#[derive(Subcommand, Debug)]
enum LicencesCommand {
    /// Queue a licence change for a user or for every user member of a group.
    Assign(AssignArgs),
}

/// `mdops licences assign`
#[derive(Args, Debug)]
struct AssignArgs {
    /// The registered tenant.
    #[arg(long)]
    tenant: String,
    /// One user: object id or userPrincipalName.
    #[arg(long, required_unless_present = "group", conflicts_with = "group")]
    user: Option<String>,
    /// Every direct user member of a group: object id or (unique) display name.
    #[arg(long)]
    group: Option<String>,
    /// SKU part number to add, e.g. SPE_E5 (repeatable).
    #[arg(long = "sku", value_name = "PART_NUMBER", required_unless_present = "remove_skus")]
    skus: Vec<String>,
    /// SKU part number to remove (repeatable).
    #[arg(long = "remove-sku", value_name = "PART_NUMBER")]
    remove_skus: Vec<String>,
    /// Service plan to leave off in the added SKUs, e.g. YAMMER_ENTERPRISE (repeatable).
    #[arg(long = "disable-plan", value_name = "PLAN")]
    disabled_plans: Vec<String>,
    /// Show whom messages would be sent for, and send nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `mdops licences`.
pub async fn run(args: LicencesArgs, global: &GlobalArgs) -> Result<()> {
    match args.command {
        LicencesCommand::Assign(args) => assign(args, global).await,
    }
}

async fn assign(args: AssignArgs, global: &GlobalArgs) -> Result<()> {
    let tenant_id: TenantId = args.tenant.parse().context("--tenant")?;
    let ctx = Context::open(global).await?;
    let (tenant, graph) = ctx
        .deps
        .reach
        .tenant(&tenant_id)
        .await
        .with_context(|| format!("tenant {tenant_id}"))?;
    let who = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let mut template = LicenceMessage::add(&tenant.tenant_id, "placeholder", &args.skus, &format!("cli:{who}"));
    template.remove = args.remove_skus.clone();
    template.disabled_plans = args.disabled_plans.clone();
    let target = match (&args.user, &args.group) {
        (Some(user), _) => Target::User(user.clone()),
        (None, Some(group)) => Target::Group(group.clone()),
        (None, None) => anyhow::bail!("give --user or --group"),
    };

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} messages")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = |sent: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(sent as u64);
    };
    let result = fan_out(
        ctx.deps.queue.as_ref(),
        Some(&graph),
        &tenant.tenant_id,
        &target,
        &template,
        args.dry_run,
        &progress,
    )
    .await;
    bar.finish_and_clear();
    let report = result?;

    if let Some(id) = &report.group_id {
        println!(
            "group {} ({id}): {} user members{}",
            args.group.as_deref().unwrap_or(""),
            report.users.len(),
            if report.skipped_non_users > 0 {
                format!(", {} other members (groups, devices) skipped", report.skipped_non_users)
            } else {
                String::new()
            }
        );
    }
    let change = format!(
        "add [{}] remove [{}] disabled plans [{}]",
        template.add.join(", "),
        template.remove.join(", "),
        template.disabled_plans.join(", ")
    );
    if args.dry_run {
        println!(
            "dry run: would queue {} licence changes ({change}) for:",
            report.users.len()
        );
        for user in report.users.iter().take(DRY_RUN_LISTED) {
            println!("  {user}");
        }
        if report.users.len() > DRY_RUN_LISTED {
            println!("  ... and {} more", report.users.len() - DRY_RUN_LISTED);
        }
    } else {
        println!(
            "queued {} licence changes ({change}) in tenant {}; `mdops worker` (or the licence-assignment \
             function) applies them, one user per message",
            report.sent, tenant.tenant_id
        );
    }
    Ok(())
}
