//! `mdops quickstart`: the whole product on one machine with nothing to configure. Starts the
//! simulated tenant with the demo customer, registers it (credential by reference: a file holding
//! the demo secret), onboards it on the embedded queue and store, and prints the finished run and
//! what now exists in the tenant.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use mdops_core::onboarding::runs::RunStatus;
use mdops_core::tenant::{CredentialRef, Domain, Tenant, TenantRegistry, TenantSettings};
use mdops_graph::{GraphClient, GraphConfig};
use mdops_local::SqliteBackend;
use tenant_sim::SimClient;
use tenant_sim::seeds::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID};

use crate::context::Context;
use crate::worker::WorkerArgs;

/// `mdops quickstart`
#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Directory for the quickstart's database and demo credential (a fresh temporary one if
    /// omitted). Reusing one shows a second onboarding converging with zero writes.
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Simulated Graph latency per call, in milliseconds (the real service: 50-200 ms).
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
}

/// Runs `mdops quickstart`.
pub async fn run(args: QuickstartArgs) -> Result<()> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("mdops-quickstart-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    println!("1. starting the simulated tenant (Entra ID + Microsoft Graph) with the demo customer");
    let mut seeds = tenant_sim::seeds::demo();
    for seed in &mut seeds {
        seed.knobs.latency_ms = args.latency_ms;
    }
    let sim = tenant_sim::start("127.0.0.1:0", seeds).await?;
    let control = SimClient::new(sim.url());
    let info = control
        .tenant(DEMO_TENANT_ID)
        .await
        .context("reading the demo tenant")?;
    println!(
        "   {} on {} ({})",
        info.name,
        sim.url(),
        info.domains.first().map(String::as_str).unwrap_or("-")
    );

    println!("2. registering tenant {DEMO_TENANT_ID} (credential kept by reference: a file)");
    let secret_file = dir.join("demo-client-secret");
    write_private(&secret_file, DEMO_CLIENT_SECRET)?;
    let backend = SqliteBackend::open(dir.join("mdops.db")).context("opening the quickstart database")?;
    let registry = TenantRegistry::new(backend.store());
    let tenant_id = DEMO_TENANT_ID.parse()?;
    if registry.get(&tenant_id).await?.is_none() {
        let domain = info
            .domains
            .first()
            .cloned()
            .unwrap_or_else(|| "contoso.onmicrosoft.com".into());
        let tenant = Tenant {
            tenant_id,
            domain: Domain::parse_field("domain", &domain)?,
            name: info.name.clone(),
            client_id: DEMO_CLIENT_ID.into(),
            credential: CredentialRef::File {
                path: secret_file.display().to_string(),
            },
            settings: TenantSettings {
                usage_location: Some("US".into()),
                ..TenantSettings::default()
            },
            added_at: chrono::Utc::now(),
        };
        registry.add(&tenant).await?;
    }
    let base = url::Url::parse(&format!("{}/", sim.url()))?;
    let budget: Arc<dyn mdops_core::budget::RequestBudget> = Arc::new(backend.store().clone());
    let graph = GraphClient::with_shared_budget(GraphConfig::for_base(&base)?, budget.clone())?;
    let ports = crate::context::Ports {
        store: Arc::new(backend.store().clone()),
        budget,
        queue: Arc::new(backend.queue().clone()),
        secrets: None,
    };
    let ctx = Context::with(ports, graph);

    println!("3. onboarding: enrollment -> queue -> one Graph action per step (worker in this process)");
    let started = std::time::Instant::now();
    let worker = WorkerArgs {
        duplicate_deliveries: false,
        concurrency: 16,
        per_tenant: 8,
        visibility_secs: 120,
    };
    let view = crate::onboard::onboard_and_wait(
        &ctx,
        DEMO_TENANT_ID,
        &worker,
        Duration::from_secs(600),
        "cli:quickstart",
        &[],
    )
    .await?;
    let took = started.elapsed();
    let licensed = work_licences(&ctx, &view, &worker).await?;

    println!("4. the finished run:\n");
    print!("{}", crate::status::render(&view, true));
    let counts = control
        .counts(DEMO_TENANT_ID)
        .await
        .context("reading the tenant's object counts")?;
    let requests = control
        .requests(&Default::default())
        .await
        .map(|r| r.len())
        .unwrap_or(0);
    println!();
    println!(
        "tenant now holds: {}",
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("licences: {licensed}");
    println!(
        "{requests} requests to the simulated tenant; run took {:.1}s",
        took.as_secs_f64()
    );
    println!(
        "state: {} (try `mdops --db {} status --steps`)",
        dir.display(),
        dir.join("mdops.db").display()
    );
    println!("\n5. enrolling the same tenant again: a new run that finds everything in place");
    let mark = control
        .requests(&Default::default())
        .await
        .map(|r| r.len())
        .unwrap_or(0);
    let again = crate::onboard::onboard_and_wait(
        &ctx,
        DEMO_TENANT_ID,
        &worker,
        Duration::from_secs(600),
        "cli:quickstart",
        &[],
    )
    .await?;
    let log = control
        .requests(&Default::default())
        .await
        .context("reading the request log")?;
    let writes = log
        .iter()
        .skip(mark)
        .filter(|r| r.path.starts_with("/v1.0") && r.method != "GET")
        .count();
    println!(
        "   run {} {:?}: {} Graph writes (the first run made {})",
        again.run.run_id,
        again.status(),
        writes,
        view.steps
            .iter()
            .filter(|s| s
                .output
                .as_ref()
                .and_then(|o| o.get("created"))
                .and_then(|c| c.as_bool())
                == Some(true))
            .count()
    );
    sim.shutdown().await;
    if view.status() != RunStatus::Succeeded {
        bail!("the quickstart onboarding did not succeed; see the failed steps above");
    }
    println!("\nquickstart succeeded");
    Ok(())
}

/// Writes a file only the current user can read.
fn write_private(path: &std::path::Path, content: &str) -> Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(content.as_bytes())?;
    }
    #[cfg(not(unix))]
    std::fs::write(path, content)?;
    Ok(())
}

/// Longest the quickstart waits for the licence queue after the run.
const LICENCES_WITHIN: Duration = Duration::from_secs(60);

/// Works the licence queue until every account the run handed to it has its licence change
/// recorded (done or failed); returns a summary.
async fn work_licences(
    ctx: &Context,
    view: &mdops_core::onboarding::runs::RunView,
    worker: &WorkerArgs,
) -> Result<String> {
    let users: Vec<String> = view
        .step("licences")
        .and_then(|s| s.output.as_ref())
        .and_then(|o| o.get("users"))
        .and_then(|u| u.as_array())
        .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let workers = mdops_handlers::worker::Worker::new(ctx.deps.clone(), worker.settings());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let working = tokio::spawn(async move { workers.run(&[mdops_core::queue::QueueName::Licences], stop_rx).await });
    let deadline = tokio::time::Instant::now() + LICENCES_WITHIN;
    let (mut done, mut failed);
    loop {
        (done, failed) = (0, 0);
        for user in &users {
            let subject = mdops_handlers::licences::audit_subject(view.run.tenant_id.as_str(), user);
            let entries = ctx.deps.store.audit(&subject, 100).await?;
            match entries.last().map(|e| e.action.as_str()) {
                Some("licence.done") => done += 1,
                Some("licence.failed") => failed += 1,
                _ => {}
            }
        }
        if done + failed == users.len() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    let _ = working.await;
    Ok(format!(
        "{done} of {} service accounts licensed, {failed} failed (see `mdops dlq list --queue licences`)",
        users.len()
    ))
}
