//! `mdops-graph`: the only way mdops talks to Microsoft Graph and the Microsoft identity platform.
//!
//! Build one [`GraphClient`] per process from a [`GraphConfig`] and share it with every handler.
//! Register each customer tenant's credential ([`CredentialSource`]: client secret, certificate,
//! workload identity or managed identity, through `azure_identity`, whose per-credential cache
//! keeps and refreshes tokens), then call Graph through [`GraphClient::tenant`]'s [`TenantGraph`].
//!
//! Layout, in the order a call flows through it:
//! - [`config`]: endpoints, timeouts, the in-process retry budget, limiter settings.
//! - [`limiter`]: per-tenant token buckets sized from Graph's published quotas.
//! - [`fleet`]: the fleet's shared budget: a permit from counters in the state store before each
//!   request, so every process together stays within a tenant's quota.
//! - [`metric`]: the counters every crate emits (as `tracing` events; EMF on Lambda).
//! - [`credentials`]: credential per tenant, the token transport (loopback rewrite for the
//!   simulated tenant), AADSTS-aware token errors, the `roles` claim for preflight.
//! - [`client`]: the request loop (limiter -> token -> send with `client-request-id` -> decode ->
//!   classify -> bounded retry), typed `get/post/patch/delete`, paged `list` streams.
//! - [`batch`]: JSON `$batch`, re-sending only the throttled or failed items.
//! - [`error`]: [`GraphError`] decoded from OData bodies and classified once ([`ErrorClass`]) so
//!   handlers map it straight to `Retry(after)` or `Failed(reason)`.
//! - [`resources`]: typed requests and answers for what mdops touches, `$select`-ing only the
//!   fields it reads.
//!
//! Every attempt runs in a `graph` tracing span with tenant, method, path (never the query),
//! client-request-id, attempt, status and Graph's request-id. Secrets and tokens are never logged.

#![warn(missing_docs)]

mod assertion;
pub mod batch;
pub mod client;
pub mod config;
pub mod credentials;
pub mod error;
pub mod fleet;
pub mod limiter;
pub mod metric;
pub mod resources;

pub use batch::{BatchItem, BatchResult, MAX_BATCH_ITEMS};
pub use client::{DEFAULT_MAX_PAGES, GraphClient, GraphResponse, Query, TenantGraph, is_idempotent, odata_string};
pub use config::{GraphConfig, RetryPolicy, Timeouts};
pub use credentials::{CertificateSource, CredentialSource, TokenError};
pub use error::{ApiError, ErrorClass, ErrorDetail, GraphError, Result};
pub use limiter::{BucketSettings, LimiterSettings};
