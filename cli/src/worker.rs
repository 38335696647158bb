//! `mdops worker`: works the queues of the embedded backend until Ctrl-C.

use anyhow::Result;
use clap::Args;
use mdops_core::queue::QueueName;
use mdops_handlers::worker::{Worker, WorkerSettings};

use crate::context::{Context, GlobalArgs};

/// `mdops worker`
#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Messages handled at once.
    #[arg(long, default_value_t = WorkerSettings::default().concurrency)]
    pub concurrency: usize,
    /// Messages handled at once for one tenant.
    #[arg(long, default_value_t = WorkerSettings::default().per_tenant)]
    pub per_tenant: usize,
    /// Seconds a received message stays invisible to other workers.
    #[arg(long, default_value_t = WorkerSettings::default().visibility.as_secs())]
    pub visibility_secs: u64,
    /// Rehearsal: send every message twice (SQS's at-least-once delivery at its worst).
    #[arg(long)]
    pub duplicate_deliveries: bool,
}

impl WorkerArgs {
    /// The worker settings these flags describe.
    pub fn settings(&self) -> WorkerSettings {
        WorkerSettings {
            concurrency: self.concurrency.max(1),
            per_tenant: self.per_tenant.max(1),
            visibility: std::time::Duration::from_secs(self.visibility_secs.max(1)),
            ..WorkerSettings::default()
        }
    }
}

impl WorkerArgs {
    /// A worker over `deps` as these flags describe it.
    pub fn worker(&self, mut deps: mdops_handlers::Deps) -> std::sync::Arc<Worker> {
        if self.duplicate_deliveries {
            deps.queue = std::sync::Arc::new(mdops_handlers::duplicating::DuplicatingQueue(deps.queue));
        }
        Worker::new(deps, self.settings())
    }
}

/// Runs `mdops worker`.
pub async fn run(args: WorkerArgs, global: &GlobalArgs) -> Result<()> {
    let ctx = Context::open(global).await?;
    let worker = args.worker(ctx.deps.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        eprintln!("stopping: finishing the messages in hand");
        let _ = stop_tx.send(true);
    });
    eprintln!("worker running on {} (Ctrl-C to stop)", global.db.display());
    worker
        .run(
            &[QueueName::Onboarding, QueueName::Licences, QueueName::Access],
            stop_rx,
        )
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    #[test]
    fn every_worker_flag_reaches_the_worker_settings() {
        let cli = Cli::parse_from([
            "mdops",
            "--concurrency",
            "3",
            "--per-tenant",
            "2",
            "--visibility-secs",
            "7",
        ]);
        let s = cli.worker.settings();
        assert_eq!(s.concurrency, 3);
        assert_eq!(s.per_tenant, 2);
        assert_eq!(
            s.visibility,
            Duration::from_secs(7),
            "--visibility-secs is used, not dropped"
        );
        let defaults = Cli::parse_from(["mdops"]).worker.settings();
        assert_eq!(defaults, WorkerSettings::default());
    }
}
