//! Licences: hands each interactive service account to the licence queue (one message per user,
//! so one throttled user never holds up another). Sending twice is harmless: the licence handler
//! finds an already-licensed user and does nothing.

use mdops_core::licences::LicenceMessage;
use mdops_core::onboarding::{Account, StepKind};
use mdops_core::outcome::StepOutcome;
use mdops_core::queue::{OutgoingMessage, QueueName};
use mdops_graph::GraphError;

use super::StepContext;

pub async fn run(ctx: &StepContext<'_>) -> Result<StepOutcome, GraphError> {
    let skus = &ctx.tenant.settings.service_account_skus;
    if skus.is_empty() {
        return Ok(StepOutcome::done(serde_json::json!({ "sent": 0, "created": false })));
    }
    let mut messages = Vec::new();
    let mut users = Vec::new();
    for account in Account::ALL.into_iter().filter(|a| a.interactive()) {
        let user = match ctx.dep_id(&StepKind::Account(account).name()) {
            Ok(id) => id,
            Err(outcome) => return Ok(outcome),
        };
        let message = LicenceMessage::add(&ctx.tenant.tenant_id, &user, skus, &format!("run:{}", ctx.run.run_id));
        messages.push(OutgoingMessage::now(message.to_body()));
        users.push(user);
    }
    if let Err(e) = ctx.queue.send_batch(QueueName::Licences, messages).await {
        return Ok(StepOutcome::retry(
            crate::disposition::REDELIVER_AFTER,
            format!("licence queue unavailable: {e}"),
        ));
    }
    Ok(StepOutcome::done(
        serde_json::json!({ "sent": users.len(), "users": users, "skus": skus, "created": false }),
    ))
}
