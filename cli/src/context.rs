//! What every subcommand that touches state or Graph needs: the backend, the Graph client, the
//! handlers' ports. Built once per process from the global flags.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use mdops_core::budget::RequestBudget;
use mdops_core::onboarding::runs::RunSettings;
use mdops_core::queue::{Queue, QueueSettings};
use mdops_core::secrets::SecretSource;
use mdops_core::store::Store;
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::deps::DEFAULT_LAG_WINDOW;
use mdops_handlers::reach::TenantReach;
use mdops_local::SqliteBackend;
use url::Url;

/// Where queue and state live.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file (`--db`): the default, for one machine.
    Embedded,
    /// Amazon SQS + DynamoDB, named by `--aws-prefix`, from the usual AWS configuration.
    Aws,
}

/// Flags shared by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Where queue and state live.
    #[arg(long, global = true, env = "MDOPS_BACKEND", value_enum, default_value = "embedded")]
    pub backend: Backend,
    /// The embedded database (queue and state). Several processes may share it.
    #[arg(long, global = true, env = "MDOPS_DB", default_value = "mdops.db")]
    pub db: PathBuf,
    /// Prefix of the AWS resources (queues `{prefix}-onboarding`, ..., table `{prefix}-state`).
    #[arg(long, global = true, env = "MDOPS_AWS_PREFIX", default_value = "mdops")]
    pub aws_prefix: String,
    /// Talk to a simulated tenant at this URL instead of Microsoft (identity and Graph).
    #[arg(long, global = true, env = "MDOPS_SIM_URL")]
    pub sim_url: Option<Url>,
    /// Microsoft Graph base URL (sovereign clouds).
    #[arg(long, global = true, env = "MDOPS_GRAPH_BASE")]
    pub graph_base: Option<Url>,
    /// Identity platform host (sovereign clouds).
    #[arg(long, global = true, env = "MDOPS_AUTHORITY_HOST")]
    pub authority_host: Option<Url>,
    /// Seconds a started step is presumed alive before another delivery may take it over.
    #[arg(long, global = true, env = "MDOPS_STEP_LEASE_SECS", default_value_t = RunSettings::default().lease.as_secs())]
    pub step_lease_secs: u64,
    /// Seconds a released step may wait for its message before the message is sent again.
    #[arg(long, global = true, env = "MDOPS_STEP_GRACE_SECS", default_value_t = RunSettings::default().grace.as_secs())]
    pub step_grace_secs: u64,
    /// Seconds a created object may stay unreadable (replication lag) before a create is retried.
    #[arg(long, global = true, env = "MDOPS_LAG_WINDOW_SECS", default_value_t = DEFAULT_LAG_WINDOW.as_secs())]
    pub lag_window_secs: u64,
}

impl GlobalArgs {
    /// The Graph configuration the flags describe.
    pub fn graph_config(&self) -> Result<GraphConfig> {
        let mut config = match &self.sim_url {
            Some(url) => GraphConfig::for_base(url).context("--sim-url")?,
            None => GraphConfig::default(),
        };
        if let Some(base) = &self.graph_base {
            config.graph_base = base.clone();
        }
        if let Some(host) = &self.authority_host {
            config.authority_host = host.clone();
        }
        config.validate().context("Graph configuration")?;
        Ok(config)
    }

    /// Opens the embedded backend.
    pub fn embedded(&self) -> Result<SqliteBackend> {
        if let Some(dir) = self.db.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("--db: cannot create {}", dir.display()))?;
        }
        SqliteBackend::open(&self.db).with_context(|| format!("--db: cannot open {}", self.db.display()))
    }

    /// The store and queue of the chosen backend.
    pub async fn ports(&self) -> Result<Ports> {
        match self.backend {
            Backend::Embedded => {
                let backend = self.embedded()?;
                Ok(Ports {
                    store: Arc::new(backend.store().clone()),
                    budget: Arc::new(backend.store().clone()),
                    queue: Arc::new(backend.queue().clone()),
                    secrets: None,
                })
            }
            Backend::Aws => {
                let sdk = mdops_aws::load_sdk_config().await;
                let names = mdops_aws::ResourceNames::new(self.aws_prefix.clone()).context("--aws-prefix")?;
                let backend = mdops_aws::AwsBackend::connect(&sdk, &names, QueueSettings::default())
                    .await
                    .with_context(|| {
                        format!(
                            "connecting to the AWS resources named {p}-* (create them with `mdops aws setup --prefix {p}` \
                             or deploy infra/template.yaml; check the AWS credentials and region)",
                            p = self.aws_prefix
                        )
                    })?;
                Ok(Ports {
                    store: Arc::new(backend.store().clone()),
                    budget: Arc::new(backend.store().clone()),
                    queue: Arc::new(backend.queue().clone()),
                    secrets: Some(Arc::new(mdops_aws::SecretsManager::new(&sdk))),
                })
            }
        }
    }
}

/// The state store and queue, whichever backend they are on.
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    /// The fleet's shared Graph request budget, on the same store: every worker on one database
    /// (or every process on one AWS table) spends one quota per tenant.
    pub budget: Arc<dyn RequestBudget>,
    pub queue: Arc<dyn Queue>,
    /// Where `aws-secret:` credential references are read (AWS Secrets Manager on `--backend aws`).
    pub secrets: Option<Arc<dyn SecretSource>>,
}

/// Everything the handlers run with, over the embedded backend.
pub struct Context {
    pub deps: Deps,
}

impl Context {
    /// Opens the backend and builds the Graph client, once.
    pub async fn open(args: &GlobalArgs) -> Result<Context> {
        let ports = args.ports().await?;
        let graph = GraphClient::with_shared_budget(args.graph_config()?, ports.budget.clone())
            .context("building the Graph client")?;
        let runs = RunSettings {
            lease: Duration::from_secs(args.step_lease_secs.max(1)),
            grace: Duration::from_secs(args.step_grace_secs.max(1)),
            ..RunSettings::default()
        };
        let mut ctx = Context::with(ports, graph);
        ctx.deps.runs = runs;
        ctx.deps.lag_window = Duration::from_secs(args.lag_window_secs);
        Ok(ctx)
    }

    /// A context over an already open backend and client, with default timing.
    pub fn with(ports: Ports, graph: GraphClient) -> Context {
        let Ports {
            store, queue, secrets, ..
        } = ports;
        let mut deps = Deps::new(store, queue, graph);
        if let Some(secrets) = secrets {
            let reach = TenantReach::new(deps.reach.graph().clone(), deps.store.clone()).with_secrets(secrets);
            deps.reach = Arc::new(reach);
        }
        Context { deps }
    }
}

/// Who an operator action is audited as: `--actor`/`MDOPS_ACTOR`, else the local account (`$USER`).
pub fn operator_actor(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "unknown-operator".into())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        global: GlobalArgs,
    }

    #[tokio::test]
    async fn every_global_flag_takes_effect() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub").join("flags.db");
        let cli = Cli::parse_from([
            "mdops",
            "--db",
            db.to_str().unwrap(),
            "--step-lease-secs",
            "33",
            "--step-grace-secs",
            "11",
            "--lag-window-secs",
            "7",
            "--graph-base",
            "https://graph.microsoft.us/v1.0/",
            "--authority-host",
            "https://login.microsoftonline.us",
        ]);
        let ctx = Context::open(&cli.global).await.unwrap();
        assert_eq!(ctx.deps.runs.lease, Duration::from_secs(33));
        assert_eq!(ctx.deps.runs.grace, Duration::from_secs(11));
        assert_eq!(ctx.deps.lag_window, Duration::from_secs(7));
        let graph = ctx.deps.reach.graph().config();
        assert_eq!(graph.graph_base.as_str(), "https://graph.microsoft.us/v1.0/");
        assert_eq!(graph.authority_host.as_str(), "https://login.microsoftonline.us/");
        assert!(db.exists(), "--db is the file opened");

        let sim = Cli::parse_from([
            "mdops",
            "--db",
            db.to_str().unwrap(),
            "--sim-url",
            "http://127.0.0.1:9/",
        ]);
        let config = sim.global.graph_config().unwrap();
        assert_eq!(config.graph_base.as_str(), "http://127.0.0.1:9/v1.0/");
        assert_eq!(config.authority_host.as_str(), "http://127.0.0.1:9/");
        let aws = Cli::parse_from(["mdops", "--backend", "aws", "--aws-prefix", "p1"]);
        assert_eq!(aws.global.backend, Backend::Aws);
        assert_eq!(aws.global.aws_prefix, "p1");
    }
}
