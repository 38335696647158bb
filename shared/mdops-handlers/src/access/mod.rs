//! Temporary engineer access: the decisions people make ([`service`]), the Graph side effects they
//! cause ([`effects`]: mail, elevation, removal; one access-queue message each), the timer pass
//! ([`expiry`]) that expires undecided requests, ends elapsed access and re-sends outstanding work,
//! and the reconciliation [`sweep`] that removes any guest in a role group holding no live grant,
//! whatever the records say.
//!
//! A decision is one conditional write of the request *and* its side effects (an outbox in the same
//! transaction); the messages are queued right after, and relayed by the expiry pass if that fails.
//! So a mail or Graph failure never blocks or loses a decision, and a decision never loses its
//! side effects. The rules themselves live in `mdops_core::access`.

pub mod adopt;
pub mod effects;
pub mod expiry;
pub mod mail;
pub mod service;
pub mod sweep;

pub use effects::handle;
pub use expiry::{ExpiryReport, expiry_pass};
pub use service::{AccessError, AccessService, Filed};
pub use sweep::{SweepReport, sweep, sweep_if_due};

use mdops_core::access::{AccessRequests, OutboxEntry};
use mdops_core::queue::{OutgoingMessage, QueueName};

use crate::deps::Deps;

/// Queues outbox entries and clears each one queued. Failures are left for the expiry pass.
pub(crate) async fn flush_outbox(deps: &Deps, entries: &[OutboxEntry]) -> usize {
    let repo = AccessRequests::new(deps.store.as_ref());
    let mut sent = 0;
    for entry in entries {
        match deps
            .queue
            .send(QueueName::Access, OutgoingMessage::now(entry.message.to_body()))
            .await
        {
            Ok(_) => {
                sent += 1;
                if let Err(e) = repo.outbox_done(&entry.key).await {
                    // Relayed again later; the handlers are idempotent.
                    tracing::warn!(key = %entry.key, error = %e, "could not clear an outbox entry");
                }
            }
            Err(e) => {
                tracing::warn!(request = %entry.message.request_id, work = %entry.message.work_name(), error = %e,
                    "could not queue access work; the expiry pass relays it");
            }
        }
    }
    sent
}
