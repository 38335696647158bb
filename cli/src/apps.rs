//! `mdops apps`: the app catalogue of a tenant. `catalogue` shows or sets the tenant's catalogue
//! (its own, from a file, or the built-in default); `sync` sends one message per app not in
//! place on the onboarding queue (`mdops worker` or the onboarding-step function applies them);
//! `show` reports each catalogue app against the tenant: missing, present, assigned or drifted.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use mdops_core::apps::Catalogue;
use mdops_core::tenant::TenantId;
use mdops_handlers::apps::catalogue::{clear, effective, set};
use mdops_handlers::apps::sync::{AppsReport, show, sync};

use crate::context::{Context, GlobalArgs};

/// `mdops apps`
#[derive(Args, Debug)]
pub struct AppsArgs {
    #[command(subcommand)]
    command: AppsCommand,
}

#[derive(Subcommand, Debug)]
enum AppsCommand {
    /// Ensure every catalogue app exists in Intune and is assigned to its rings.
    Sync {
        /// The registered tenant.
        #[arg(long)]
        tenant: String,
        /// Show what would be sent; send nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Each catalogue app against the tenant: missing, present, assigned, drifted.
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Print the tenant's catalogue, or set it from a file (`--file`), or return it to the default.
    Catalogue {
        #[arg(long)]
        tenant: String,
        /// A catalogue file (JSON; docs/management.md): checked, then stored for the tenant.
        #[arg(long, conflicts_with = "default")]
        file: Option<std::path::PathBuf>,
        /// Return the tenant to the built-in catalogue.
        #[arg(long)]
        default: bool,
    },
}

fn print_report(report: &AppsReport) {
    println!(
        "tenant {}: {} catalogue apps ({} catalogue)",
        report.tenant_id,
        report.apps.len(),
        match report.catalogue {
            mdops_handlers::apps::catalogue::Source::Tenant => "its own",
            mdops_handlers::apps::catalogue::Source::Default => "the default",
        }
    );
    println!("{:<24} {:<7} {:<10} {:<40} rings", "app", "kind", "status", "intune id");
    for a in &report.apps {
        let rings: Vec<String> = a
            .wanted
            .iter()
            .map(|(r, i)| format!("{} {}", r.as_str(), i.as_str()))
            .collect();
        let status = serde_json::to_value(a.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let kind = serde_json::to_value(a.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!(
            "{:<24} {:<7} {:<10} {:<40} {}",
            a.key,
            kind,
            status,
            a.app_ids.join(","),
            rings.join(", ")
        );
    }
}

/// Runs `mdops apps`.
pub async fn run(args: AppsArgs, global: &GlobalArgs) -> Result<()> {
    let ctx = Context::open(global).await?;
    let who = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into()));
    let reach = |tenant: &str| {
        let ctx = &ctx;
        let tenant = tenant.to_string();
        async move {
            let id: TenantId = tenant.parse().context("--tenant")?;
            ctx.deps.reach.tenant(&id).await.with_context(|| format!("tenant {id}"))
        }
    };
    match args.command {
        AppsCommand::Sync { tenant, dry_run, json } => {
            let (tenant, graph) = reach(&tenant).await?;
            let out = sync(&ctx.deps, &tenant, &graph, &who, dry_run).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            print_report(&out.report);
            if out.queued.is_empty() {
                println!("nothing to do: every catalogue app is in place");
            } else if dry_run {
                println!("dry run: would queue {} ({})", out.queued.len(), out.queued.join(", "));
            } else {
                println!(
                    "queued {} app messages ({}); `mdops worker` (or the onboarding-step function) applies them",
                    out.messages,
                    out.queued.join(", ")
                );
            }
        }
        AppsCommand::Show { tenant, json } => {
            let (tenant, graph) = reach(&tenant).await?;
            let report = show(&ctx.deps, &tenant, &graph).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            print_report(&report);
        }
        AppsCommand::Catalogue { tenant, file, default } => {
            let id: TenantId = tenant.parse().context("--tenant")?;
            if mdops_core::tenant::TenantRegistry::new(ctx.deps.store.as_ref())
                .get(&id)
                .await?
                .is_none()
            {
                bail!("tenant {id} is not registered (add it with `mdops tenants add`)");
            }
            if let Some(path) = file {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("--file {}: cannot read it", path.display()))?;
                let catalogue = Catalogue::parse(&text).with_context(|| format!("--file {}", path.display()))?;
                set(&ctx.deps, &id, &catalogue, &who).await?;
                println!(
                    "tenant {id}: catalogue of {} apps stored (audited); `mdops apps sync --tenant {id}` applies it",
                    catalogue.apps.len()
                );
            } else if default {
                clear(&ctx.deps, &id, &who).await?;
                println!("tenant {id}: back to the default catalogue (apps already made stay in Intune)");
            } else {
                let (catalogue, _) = effective(&ctx.deps, &id).await?;
                println!("{}", serde_json::to_string_pretty(&catalogue)?);
            }
        }
    }
    Ok(())
}
