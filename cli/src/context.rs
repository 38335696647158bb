//! What every subcommand that touches state or Graph needs: the backend, the Graph client, the
//! handlers' ports. Built once per process from the global flags.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use mdops_core::onboarding::runs::RunSettings;
use mdops_core::queue::Queue;
use mdops_core::store::Store;
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::deps::{DEFAULT_LAG_WINDOW, system_clock};
use mdops_handlers::reach::TenantReach;
use mdops_local::SqliteBackend;
use url::Url;

/// Flags shared by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// The embedded database (queue and state). Several processes may share it.
    #[arg(long, global = true, env = "MDOPS_DB", default_value = "mdops.db")]
    pub db: PathBuf,
    /// Talk to a simulated tenant at this URL instead of Microsoft (identity and Graph).
    #[arg(long, global = true, env = "MDOPS_SIM_URL")]
    pub sim_url: Option<Url>,
    /// Microsoft Graph base URL (sovereign clouds).
    #[arg(long, global = true, env = "MDOPS_GRAPH_BASE")]
    pub graph_base: Option<Url>,
    /// Identity platform host (sovereign clouds).
    #[arg(long, global = true, env = "MDOPS_AUTHORITY_HOST")]
    pub authority_host: Option<Url>,
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
    pub fn backend(&self) -> Result<SqliteBackend> {
        if let Some(dir) = self.db.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("--db: cannot create {}", dir.display()))?;
        }
        SqliteBackend::open(&self.db).with_context(|| format!("--db: cannot open {}", self.db.display()))
    }
}

/// Everything the handlers run with, over the embedded backend.
pub struct Context {
    pub deps: Deps,
}

impl Context {
    /// Opens the backend and builds the Graph client, once.
    pub fn open(args: &GlobalArgs) -> Result<Context> {
        let backend = args.backend()?;
        let graph = GraphClient::new(args.graph_config()?).context("building the Graph client")?;
        Ok(Context::with(backend, graph))
    }

    /// A context over an already open backend and client.
    pub fn with(backend: SqliteBackend, graph: GraphClient) -> Context {
        let store: Arc<dyn Store> = Arc::new(backend.store().clone());
        let queue: Arc<dyn Queue> = Arc::new(backend.queue().clone());
        let deps = Deps {
            reach: Arc::new(TenantReach::new(graph, store.clone())),
            store,
            queue,
            runs: RunSettings::default(),
            clock: system_clock(),
            lag_window: DEFAULT_LAG_WINDOW,
        };
        Context { deps }
    }
}
