//! `mdops tenants`: the customer tenants this provider manages: add, list, show, remove,
//! consent-url, check (`--readiness`: the readiness check, `mdops_handlers::readiness`).
//! Credentials are stored by reference and never printed.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use mdops_core::permissions::{MANAGEMENT, ONBOARDING, PROVIDER, Requirement, excess_in_customer};
use mdops_core::readiness::Verdict;
use mdops_core::tenant::{
    CredentialRef, Domain, Tenant, TenantId, TenantRegistry, TenantSettings, parse_client_id, parse_usage_location,
};
use mdops_graph::GraphClient;
use mdops_handlers::reach::resolve;

use crate::context::GlobalArgs;

/// Most tenants `list` prints; a provider with more pages through `--json` and a filter.
const LIST_LIMIT: usize = 10_000;

/// `mdops tenants ...`
#[derive(Args, Debug)]
pub struct TenantsArgs {
    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Subcommand, Debug)]
enum TenantsCommand {
    /// Register a customer tenant.
    Add(AddArgs),
    /// List registered tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant with its settings (never its secret).
    Show {
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant from the registry (nothing in the tenant changes).
    Remove {
        #[arg(long)]
        tenant_id: String,
    },
    /// Print the admin-consent URL for the customer's Global Administrator.
    ConsentUrl {
        #[arg(long)]
        tenant_id: String,
        /// Where the identity platform sends the admin after consenting (registered on the app).
        #[arg(long, default_value = "https://localhost/mdops/consented")]
        redirect_uri: String,
    },
    /// Get a token and compare the granted application permissions with what mdops needs; with
    /// `--readiness`, the whole readiness check (GETs only; exit code 1 on any fail).
    Check {
        #[arg(long)]
        tenant_id: String,
        /// Everything a provider must know before onboarding writes anything: licences, MDM
        /// authority, conditional access, existing update rings, security defaults, guest invites.
        #[arg(long)]
        readiness: bool,
        /// Print the readiness report as JSON.
        #[arg(long, requires = "readiness")]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct AddArgs {
    /// The customer's tenant id (a GUID).
    #[arg(long)]
    tenant_id: String,
    /// The customer's initial or verified domain, e.g. contoso.onmicrosoft.com.
    #[arg(long)]
    domain: String,
    /// A name for people; the domain when omitted.
    #[arg(long)]
    name: Option<String>,
    /// Application (client) id of our app registration.
    #[arg(long)]
    client_id: String,
    /// Where the app's secret is: env:VAR, file:PATH, certificate:PATH[:PASSWORD_ENV],
    /// workload-identity:TOKEN_FILE, managed-identity, aws-secret:ARN.
    #[arg(long)]
    credential: String,
    /// Usage location given to users without one before licensing (ISO 3166 alpha-2).
    #[arg(long)]
    usage_location: Option<String>,
    /// Any other setting, NAME=VALUE (repeatable); see docs/tenant-settings.md.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    settings: Vec<String>,
}

/// Builds a tenant from the flags, validating every field.
fn tenant_from(args: &AddArgs) -> Result<Tenant> {
    let tenant_id: TenantId = args.tenant_id.parse()?;
    let domain = Domain::parse_field("domain", &args.domain)?;
    let client_id = parse_client_id(&args.client_id)?;
    let credential = CredentialRef::parse(&args.credential)?;
    let mut settings = TenantSettings::default();
    if let Some(location) = &args.usage_location {
        settings.usage_location = Some(parse_usage_location(location)?);
    }
    for pair in &args.settings {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--set: {pair:?} is not NAME=VALUE");
        };
        settings.set(name.trim(), value)?;
    }
    Ok(Tenant {
        name: args.name.clone().unwrap_or_else(|| domain.to_string()),
        tenant_id,
        domain,
        client_id,
        credential,
        settings,
        added_at: chrono::Utc::now(),
    })
}

/// Runs `mdops tenants`.
pub async fn run(args: TenantsArgs, global: &GlobalArgs) -> Result<()> {
    let ports = global.ports().await?;
    let registry = TenantRegistry::new(ports.store.as_ref());
    match args.command {
        TenantsCommand::Add(add) => {
            let tenant = tenant_from(&add)?;
            // A reference that does not resolve is refused now, not at 3 a.m. in a worker.
            resolve(&tenant, ports.secrets.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("credential: {e}"))?;
            registry.add(&tenant).await?;
            println!(
                "added tenant {} ({}), credential {}",
                tenant.tenant_id, tenant.domain, tenant.credential
            );
            println!(
                "next: `mdops tenants consent-url --tenant-id {}` for the customer's admin, then `mdops tenants check`",
                tenant.tenant_id
            );
        }
        TenantsCommand::List { json } => {
            let tenants = registry.list(LIST_LIMIT).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else if tenants.is_empty() {
                println!("no tenants registered (add one with `mdops tenants add`)");
            } else {
                println!("{:<38} {:<36} {:<24} credential", "tenant id", "domain", "name");
                for t in &tenants {
                    println!("{:<38} {:<36} {:<24} {}", t.tenant_id, t.domain, t.name, t.credential);
                }
            }
        }
        TenantsCommand::Show { tenant_id, json } => {
            let tenant = registry.require(&tenant_id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenant)?);
            } else {
                print_tenant(&tenant);
            }
        }
        TenantsCommand::Remove { tenant_id } => {
            let id: TenantId = tenant_id.parse()?;
            if registry.remove(&id).await? {
                println!("removed tenant {id} from the registry (nothing in the tenant was changed)");
            } else {
                bail!("tenant {id} is not registered");
            }
        }
        TenantsCommand::ConsentUrl {
            tenant_id,
            redirect_uri,
        } => {
            let tenant = registry.require(&tenant_id).await?;
            let host = global.graph_config()?.authority_host;
            let mut url = host
                .join(&format!("{}/adminconsent", tenant.tenant_id))
                .context("authority host")?;
            url.query_pairs_mut()
                .append_pair("client_id", &tenant.client_id)
                .append_pair("redirect_uri", &redirect_uri);
            println!("{url}");
            println!();
            let provider = is_provider(ports.store.as_ref(), &tenant).await?;
            println!(
                "The customer's Global Administrator opens this URL and consents to these application permissions:"
            );
            for r in requirements(provider) {
                println!("  {:<48} {}", r.permission, r.purpose);
            }
        }
        TenantsCommand::Check {
            tenant_id,
            readiness,
            json,
        } => {
            let tenant = registry.require(&tenant_id).await?;
            let graph = GraphClient::new(global.graph_config()?)?;
            let source = resolve(&tenant, ports.secrets.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            graph.register_tenant(tenant.tenant_id.as_str(), source)?;
            if readiness {
                return check_readiness(&graph, ports.store.as_ref(), &tenant, json).await;
            }
            let granted = graph
                .granted_roles(tenant.tenant_id.as_str())
                .await
                .with_context(|| format!("tenant {} is not reachable or has not consented", tenant.tenant_id))?;
            let onboarding_missing = report("onboarding", ONBOARDING, &granted);
            let mut management_missing = report("management", MANAGEMENT, &granted);
            if is_provider(ports.store.as_ref(), &tenant).await? {
                management_missing += report("provider tenant (access mails)", PROVIDER, &granted);
            } else {
                for p in excess_in_customer(&granted) {
                    println!(
                        "  EXCESS  {p:<48} not needed in a customer tenant (access mails leave from the provider's tenant); revoke it"
                    );
                }
            }
            if onboarding_missing + management_missing > 0 {
                bail!(
                    "tenant {} lacks {} permission(s) for onboarding and {} for management; have the admin consent again (`mdops tenants consent-url`)",
                    tenant.tenant_id,
                    onboarding_missing,
                    management_missing
                );
            }
            println!(
                "tenant {} is ready: every permission mdops needs is granted",
                tenant.tenant_id
            );
        }
    }
    Ok(())
}

/// Width of the finding column of the readiness table before it wraps.
const FINDING_WIDTH: usize = 90;

/// `mdops tenants check --readiness`: the report as a table (or JSON); an error, so exit code 1,
/// when any check fails.
async fn check_readiness(
    graph: &GraphClient,
    store: &dyn mdops_core::store::Store,
    tenant: &Tenant,
    json: bool,
) -> Result<()> {
    let tenant_graph = graph.tenant(tenant.tenant_id.as_str());
    // Which existing accounts onboarding would adopt (the tenant's marker is made on first use).
    let adoption = mdops_handlers::onboarding::steps::Adoption::load(store, &tenant.tenant_id)
        .await
        .context("reading the tenant's adoption marker from the state store")?;
    let report = mdops_handlers::readiness::check(&tenant_graph, tenant, &adoption)
        .await
        .with_context(|| format!("reading tenant {} for the readiness check", tenant.tenant_id))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("readiness of tenant {} ({}):", tenant.tenant_id, tenant.domain);
        println!("  {:<20} {:<8} finding", "check", "result");
        for f in &report.findings {
            let verdict = match f.verdict {
                Verdict::Pass => "pass",
                Verdict::Warning => "WARNING",
                Verdict::Fail => "FAIL",
            };
            let mut lines = wrap(&f.summary, FINDING_WIDTH);
            if let Some(action) = &f.action {
                lines.extend(wrap(&format!("to do: {action}"), FINDING_WIDTH));
            }
            for (i, line) in lines.iter().enumerate() {
                if i == 0 {
                    println!("  {:<20} {:<8} {line}", f.check.as_str(), verdict);
                } else {
                    println!("  {:<20} {:<8} {line}", "", "");
                }
            }
        }
        println!(
            "{} fail(s), {} warning(s), {} pass(es)",
            report.with(Verdict::Fail).len(),
            report.with(Verdict::Warning).len(),
            report.with(Verdict::Pass).len()
        );
    }
    let fails = report.with(Verdict::Fail);
    if !fails.is_empty() {
        let names: Vec<&str> = fails.iter().map(|f| f.check.as_str()).collect();
        bail!(
            "tenant {} is not ready for onboarding: {} check(s) failed ({}); do what each says, then check again",
            tenant.tenant_id,
            fails.len(),
            names.join(", ")
        );
    }
    Ok(())
}

/// Splits text into lines of at most `width` characters at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("one line at least");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// Whether the tenant is the provider's own (access settings' `provider_tenant_id`).
async fn is_provider(store: &dyn mdops_core::store::Store, tenant: &Tenant) -> Result<bool> {
    let settings = mdops_core::access::load_settings(store)
        .await
        .context("reading the access settings")?;
    Ok(settings.provider_tenant_id.is_some_and(|p| p == tenant.tenant_id))
}

/// What a tenant consents to: a customer tenant onboarding and management; the provider's tenant
/// also the mail permission (only there).
fn requirements(provider: bool) -> impl Iterator<Item = &'static Requirement> {
    let extra: &'static [Requirement] = if provider { PROVIDER } else { &[] };
    ONBOARDING.iter().chain(MANAGEMENT).chain(extra)
}

fn report(phase: &str, requirements: &[Requirement], granted: &[String]) -> usize {
    println!("{phase}:");
    let mut missing = 0;
    for r in requirements {
        let ok = r.met_by(granted);
        missing += usize::from(!ok);
        println!(
            "  {} {:<48} {}",
            if ok { "granted" } else { "MISSING" },
            r.permission,
            r.purpose
        );
    }
    missing
}

fn print_tenant(t: &Tenant) {
    println!("tenant id       {}", t.tenant_id);
    println!("domain          {}", t.domain);
    println!("name            {}", t.name);
    println!("client id       {}", t.client_id);
    println!(
        "credential      {} (reference only; the secret is read at run time)",
        t.credential
    );
    println!("added           {}", t.added_at.to_rfc3339());
    let s = &t.settings;
    println!("settings:");
    println!("  account_prefix         {}", s.account_prefix);
    println!("  account_domain         {}", t.account_domain());
    println!(
        "  usage_location         {}",
        s.usage_location.as_deref().unwrap_or("(none)")
    );
    println!("  service_account_skus   {}", s.service_account_skus.join(", "));
    for ring in mdops_core::tenant::Ring::ALL {
        let d = s.deferrals.get(ring);
        println!(
            "  deferral.{:<6}        quality {} days, feature {} days",
            ring.as_str(),
            d.quality_days,
            d.feature_days
        );
    }
    println!("  access_role_groups     {}", s.access_role_groups.join(", "));
    println!("  access_max_hours       {}", s.access_max_hours);
    println!(
        "  graph_budget           {} identity writes / 150 s, {} Intune writes / 20 s",
        s.graph_budget.identity_writes_per_150s, s.graph_budget.intune_writes_per_20s
    );
    println!(
        "  security_baseline      {} (template {})",
        s.security_baseline.as_str(),
        s.security_baseline_template_id
    );
}
