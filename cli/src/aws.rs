//! `mdops aws setup` / `teardown`: the AWS resources `infra/template.yaml` deploys (queues with
//! their dead-letter queues, the table with its indexes), created or checked without SAM, e.g. for
//! the CLI and a worker on a machine of their own, or for a test. Safe to run again.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use mdops_aws::provision::{self, ResourceReport};
use mdops_core::queue::{QueueName, QueueSettings};

use crate::context::GlobalArgs;

/// `mdops aws`
#[derive(Args, Debug)]
pub struct AwsArgs {
    #[command(subcommand)]
    pub command: AwsCommand,
}

#[derive(Subcommand, Debug)]
pub enum AwsCommand {
    /// Create the queues, dead-letter queues and table of a prefix, or check them if present.
    Setup {
        /// Resource prefix (default: --aws-prefix).
        #[arg(long)]
        prefix: Option<String>,
        /// Also print the environment a function run by hand needs (MDOPS_TABLE, queue URLs).
        #[arg(long)]
        env: bool,
    },
    /// Delete the queues and table of a prefix (their messages and state with them).
    Teardown {
        /// Resource prefix (default: --aws-prefix).
        #[arg(long)]
        prefix: Option<String>,
        /// Confirm: everything under the prefix is deleted.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `mdops aws ...`.
pub async fn run(args: AwsArgs, global: &GlobalArgs) -> Result<()> {
    let sdk = mdops_aws::load_sdk_config().await;
    let names = |prefix: Option<String>| {
        let prefix = prefix.unwrap_or_else(|| global.aws_prefix.clone());
        mdops_aws::ResourceNames::new(prefix).context("--prefix")
    };
    match args.command {
        AwsCommand::Setup { prefix, env } => {
            let names = names(prefix)?;
            let settings = QueueSettings {
                default_visibility: mdops_aws::DEPLOYED_VISIBILITY,
                ..QueueSettings::default()
            };
            let report = provision::setup(&sdk, &names, settings)
                .await
                .context("setting up the AWS resources (check the AWS credentials and region)")?;
            print_report(&report.resources);
            if env {
                println!("{}={}", mdops_aws::TABLE_ENV, report.table);
                for queue in QueueName::ALL {
                    let urls = &report.urls[&queue];
                    println!("{}={}", mdops_aws::queue_url_env(queue), urls.source);
                    println!("{}={}", mdops_aws::dead_letter_url_env(queue), urls.dead_letter);
                }
            }
            Ok(())
        }
        AwsCommand::Teardown { prefix, yes } => {
            let names = names(prefix)?;
            if !yes {
                bail!(
                    "teardown deletes every queue and the table under prefix {:?}, with their messages and state: add --yes",
                    names.table().trim_end_matches("-state")
                );
            }
            let report = provision::teardown(&sdk, &names)
                .await
                .context("tearing down the AWS resources")?;
            print_report(&report);
            Ok(())
        }
    }
}

fn print_report(resources: &[ResourceReport]) {
    for r in resources {
        println!("{:<6} {:<8} {}", r.kind, r.state.as_str(), r.name);
    }
}
