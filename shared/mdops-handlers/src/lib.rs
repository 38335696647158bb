//! `mdops-handlers`: the handlers of mdops and the embedded worker that runs them.
//!
//! A handler takes one queue message and the ports ([`Deps`]) and returns a [`Disposition`]: what
//! the transport must do with the message (delete it, dead-letter it with a reason, or leave it to
//! come back). The embedded [`worker`] and the Lambda functions under `functions/` (their shared
//! glue is the `mdops-lambda` crate) are the two transports; neither contains domain logic. This
//! crate depends on the ports, never on an adapter.
//!
//! Layout:
//! - [`deps`]: the ports a handler gets (store, queue, Graph per tenant, clock).
//! - [`access`]: temporary access: the service behind the API (request, approve, deny, cancel,
//!   revoke), the side-effect handler (mail, guest elevation and removal), the expiry pass.
//! - [`reach`]: from a tenant id to a ready `TenantGraph`: registry lookup, credential resolution
//!   (by reference: env var, file, certificate, ...), registration with the shared Graph client.
//! - [`disposition`]: what to do with a message, and how a Graph error becomes a step outcome.
//! - [`licences`]: the licence-change handler (one user per message) and the fan-out behind
//!   `mdops licences assign`.
//! - [`onboarding`]: enrollment and the onboarding-step handler; one file per step in
//!   [`onboarding::steps`].
//! - [`apps`]: the app catalogue kept in Intune: the sync that compares catalogue and tenant, the
//!   per-app handler (find, create only if missing, assign to the rings), the tenant's catalogue.
//! - [`schedule`]: the store claim that runs a scheduled job once per interval across processes.
//! - [`readiness`]: the readiness check's reads (GETs only) behind `mdops tenants check --readiness`
//!   and the onboarding preflight; the rules are `mdops_core::readiness`.
//! - [`rings`]: device update rings: the sync that places devices, the chunk handler
//!   (`members@odata.bind`, 20 a request), show and move.
//! - [`operators`]: dead letters for operators: filter, show, replay (paced, audited), purge.
//! - [`worker`]: the embedded poll loop with bounded concurrency and the deadline ticker.

pub mod access;
pub mod apps;
pub mod deps;
pub mod disposition;
pub mod duplicating;
pub mod licences;
pub mod onboarding;
pub mod operators;
pub mod reach;
pub mod readiness;
pub mod rings;
pub mod schedule;
pub mod worker;

pub use deps::{Clock, Deps};
pub use disposition::Disposition;
