//! `mdops-core`: the domain of mdops and the ports its adapters implement. No I/O lives here.
//!
//! Layout:
//! - [`queue`]: the [`queue::Queue`] port: SQS semantics (delay, visibility timeout, receive count,
//!   dead letters with their reason). Implemented by `mdops-local` (SQLite) and `mdops-aws` (SQS).
//! - [`store`]: the [`store::Store`] port: versioned records with conditional writes and small
//!   transactions, collections and a due-time index, and the append-only audit log. Implemented by
//!   `mdops-local` (SQLite) and `mdops-aws` (DynamoDB).
//! - [`budget`]: the [`budget::RequestBudget`] port: per-tenant, per-slot counters with limits,
//!   shared by every process, so the fleet spends one Graph quota per tenant. Implemented by
//!   `mdops-local` (SQLite) and `mdops-aws` (DynamoDB).
//! - [`tenant`]: the tenant registry: tenant ids, domains, credential references, settings.
//! - [`onboarding`]: the onboarding DAG ([`onboarding::plan()`]), its step message, and the run
//!   repository whose conditional transitions make the run resumable ([`onboarding::runs`]).
//! - [`licences`]: the licence queue's message (one user's change in one tenant).
//! - [`rings`]: device update rings: configured shares, deterministic placement, the chunk message.
//! - [`apps`]: the app catalogue (apps, their rings and intent; the built-in default) and the
//!   message that ensures one app in one tenant.
//! - [`access`]: temporary engineer access: settings, the two-key rules and states, the request
//!   repository whose decisions write their side effects to an outbox in the same transaction.
//! - [`permissions`]: the application permissions each phase needs, by name.
//! - [`readiness`]: the readiness check's rules: findings (pass / warning / fail, what to do) from
//!   what the handlers read of a tenant before onboarding writes anything.
//! - [`secrets`]: the secret-store port (`aws-secret:ARN` credential references).
//! - [`json`]: decoding outside JSON with errors that name the field at fault.
//! - [`message`]: versioned, validated decoding of queue messages; [`outcome`]: what a handler returns.
//! - `contract` (feature `contract`): the one generic test suite both adapters must pass.
//!
//! Handlers take a typed message and these ports and return an outcome; they never know whether
//! they run in the embedded worker or in a Lambda function.

pub mod access;
pub mod apps;
pub mod budget;
#[cfg(feature = "contract")]
pub mod contract;
pub mod crash_point;
pub mod errors;
pub mod json;
pub mod licences;
pub mod message;
pub mod onboarding;
pub mod outcome;
pub mod permissions;
pub mod quarantine;
pub mod queue;
pub mod readiness;
pub mod rings;
pub mod secrets;
pub mod store;
pub mod tenant;
