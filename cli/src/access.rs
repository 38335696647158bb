//! `mdops access`: temporary engineer access with two-key approval.
//!
//! - `configure`: the access settings (provider tenant, team roles, alias, mailbox, approvals,
//!   window), kept in the state store so the API, the worker and the functions share them.
//! - `serve`: the HTTP API on this machine (the same router as the `access-api` Lambda function),
//!   plain HTTP: on loopback, or behind a TLS-terminating proxy (`--behind-tls-proxy`).
//! - `request`, `approve`, `deny`, `cancel`, `revoke`: decisions, through the API with the person's
//!   own Entra ID token (`--token-file`, `MDOPS_ACCESS_TOKEN`, or `--token`, which other local users
//!   can read from the process list), so the terminal gets exactly the checks the API makes.
//! - `list`, `show`, `audit`: read the store directly (operators with access to the backend).
//! - `adopt-guest`: take over an existing guest account for an engineer (audited).
//!
//! The timers run on the worker's tick (`mdops worker`) or with `mdops access tick`; the membership
//! sweep with them (paced), or now with `mdops access sweep`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use mdops_access_api::client::AccessClient;
use mdops_access_api::{ApiState, AuthSettings, JwtValidator};
use mdops_core::access::{
    AccessRequest, AccessRequests, AccessSettings, AccessState, ListFilter, NewAccessRequest, load_settings,
    refusals_subject, save_settings,
};
use mdops_handlers::access::adopt::adopt_guest;
use mdops_handlers::access::{AccessService, expiry_pass, sweep};
use secrecy::SecretString;

use crate::context::{Context, GlobalArgs};

/// Most requests `list` prints.
const LIST_LIMIT: usize = 200;
/// Most audit entries `show`/`audit` print.
const AUDIT_LIMIT: usize = 500;

/// `mdops access`
#[derive(Args, Debug)]
pub struct AccessArgs {
    #[command(subcommand)]
    command: AccessCommand,
}

#[derive(Subcommand, Debug)]
enum AccessCommand {
    /// Show or change the access settings.
    Configure(ConfigureArgs),
    /// Serve the access API until Ctrl-C.
    Serve(ServeArgs),
    /// Run the timer pass once (expire, end, re-send removals).
    Tick,
    /// Remove every guest in a role group that holds no live grant, now (the worker does it
    /// every few minutes).
    Sweep,
    /// Take over an existing guest account as the engineer's for a request (audited).
    AdoptGuest(AdoptArgs),
    /// List requests.
    List(ListArgs),
    /// Show one request with its audit trail.
    Show(IdArgs),
    /// Print one request's audit trail.
    Audit(IdArgs),
    /// Ask for access (as the person whose token is given).
    Request(RequestArgs),
    /// Approve a request (a team member other than the requester).
    Approve(DecideArgs),
    /// Deny a request, with a reason.
    Deny(DecideArgs),
    /// Cancel your own pending request.
    Cancel(DecideArgs),
    /// End granted access early.
    Revoke(DecideArgs),
}

#[derive(Args, Debug)]
struct ConfigureArgs {
    /// The provider's tenant id (engineers sign in there; the service mailbox lives there).
    #[arg(long)]
    provider_tenant: Option<String>,
    /// App roles that make a caller a team member (comma-separated).
    #[arg(long, value_delimiter = ',')]
    team_roles: Option<Vec<String>>,
    /// Group object ids that make a caller a team member (comma-separated).
    #[arg(long, value_delimiter = ',')]
    team_groups: Option<Vec<String>>,
    /// App roles that may approve (comma-separated; empty: any team member).
    #[arg(long, value_delimiter = ',')]
    approver_roles: Option<Vec<String>>,
    /// The team alias new requests are announced to.
    #[arg(long)]
    team_alias: Option<String>,
    /// The mailbox mail is sent from.
    #[arg(long)]
    service_mailbox: Option<String>,
    /// Approvals by distinct other team members needed.
    #[arg(long)]
    approvals_required: Option<u32>,
    /// Minutes a request may stay pending.
    #[arg(long)]
    approval_window_minutes: Option<u32>,
}

/// `serve` speaks plain HTTP; bearer tokens must never cross a network in clear.
#[derive(Args, Debug)]
#[command(
    after_help = "The API speaks plain HTTP. Serve it on a loopback address, or behind a reverse proxy that \
terminates TLS (and pass --behind-tls-proxy to listen on another address): the bearer tokens it \
receives must never cross a network unencrypted. On AWS, API Gateway terminates TLS."
)]
struct ServeArgs {
    /// Address to listen on (loopback unless --behind-tls-proxy).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Listen on a non-loopback address: a TLS-terminating proxy stands in front.
    #[arg(long)]
    behind_tls_proxy: bool,
    /// The API's audience (`aud` of accepted tokens).
    #[arg(long, env = "MDOPS_ACCESS_AUDIENCE")]
    audience: String,
    /// Tenants whose users may call (default: the configured provider tenant).
    #[arg(long, value_delimiter = ',')]
    tenants: Vec<String>,
    /// Identity platform host serving the JWKS (default: the simulator with --sim-url, else Entra ID).
    #[arg(long, env = "MDOPS_AUTHORITY")]
    authority: Option<url::Url>,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Only this state.
    #[arg(long)]
    state: Option<String>,
    /// Only this customer tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this requester.
    #[arg(long)]
    requester: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct IdArgs {
    /// The request id.
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Also print refused decisions by team members (kept apart from the trail).
    #[arg(long)]
    refusals: bool,
}

#[derive(Args, Debug)]
struct AdoptArgs {
    /// The request whose engineer the guest belongs to.
    id: String,
    /// The guest's object id in the request's customer tenant.
    #[arg(long)]
    guest: String,
    /// Who is adopting, for the audit log (default: $USER).
    #[arg(long, env = "MDOPS_ACTOR")]
    actor: Option<String>,
}

#[derive(Args, Debug)]
struct ApiArgs {
    /// The access API's address.
    #[arg(long, env = "MDOPS_ACCESS_API", default_value = "http://127.0.0.1:8443")]
    api: String,
    /// A file holding your Entra ID access token for the API (`-` reads standard input).
    #[arg(long, env = "MDOPS_ACCESS_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Your Entra ID access token. Prefer MDOPS_ACCESS_TOKEN or --token-file: a command line is
    /// visible to every user of this machine.
    #[arg(long, env = "MDOPS_ACCESS_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args, Debug)]
struct RequestArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Customer tenant id.
    #[arg(long)]
    tenant: String,
    /// Role group in the customer tenant.
    #[arg(long)]
    role_group: String,
    /// Why access is needed.
    #[arg(long)]
    justification: String,
    /// Ticket reference.
    #[arg(long)]
    ticket: String,
    /// Minutes of access.
    #[arg(long, default_value_t = 60)]
    minutes: u32,
    /// Sent as `Idempotency-Key`: running the same command again with the same key answers the
    /// request already filed instead of filing (and mailing) a second one.
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(Args, Debug)]
struct DecideArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The request id.
    id: String,
    /// Reason (deny, revoke).
    #[arg(long, default_value = "")]
    reason: String,
}

/// Runs `mdops access`.
pub async fn run(args: AccessArgs, global: &GlobalArgs) -> Result<()> {
    match args.command {
        AccessCommand::Configure(a) => configure(a, global).await,
        AccessCommand::Serve(a) => serve(a, global).await,
        AccessCommand::Tick => {
            let ctx = Context::open(global).await?;
            let report = expiry_pass(&ctx.deps, LIST_LIMIT).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        AccessCommand::Sweep => {
            let ctx = Context::open(global).await?;
            let report = sweep(&ctx.deps).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        AccessCommand::AdoptGuest(a) => {
            let ctx = Context::open(global).await?;
            let actor = crate::context::operator_actor(a.actor);
            let elevating = adopt_guest(&ctx.deps, &a.id, &a.guest, &actor).await?;
            println!(
                "guest {} adopted for request {} by {actor}{}",
                a.guest,
                a.id,
                if elevating { "; elevating again" } else { "" }
            );
            Ok(())
        }
        AccessCommand::List(a) => list(a, global).await,
        AccessCommand::Show(a) => show(a, global, true).await,
        AccessCommand::Audit(a) => show(a, global, false).await,
        AccessCommand::Request(a) => {
            let input = NewAccessRequest {
                tenant: a.tenant,
                role_group: a.role_group,
                justification: a.justification,
                ticket: a.ticket,
                duration_minutes: a.minutes,
            };
            print_decision(client(&a.api)?.request(&input, a.idempotency_key.as_deref()).await)
        }
        AccessCommand::Approve(a) => print_decision(client(&a.api)?.approve(&a.id).await),
        AccessCommand::Deny(a) => {
            if a.reason.trim().is_empty() {
                bail!("--reason: a denial needs a reason");
            }
            print_decision(client(&a.api)?.deny(&a.id, &a.reason).await)
        }
        AccessCommand::Cancel(a) => print_decision(client(&a.api)?.cancel(&a.id).await),
        AccessCommand::Revoke(a) => print_decision(client(&a.api)?.revoke(&a.id, &a.reason).await),
    }
}

fn client(api: &ApiArgs) -> Result<AccessClient> {
    Ok(AccessClient::new(&api.api, read_token(api)?)?)
}

/// The token from `--token-file` (or `-` for standard input), else `MDOPS_ACCESS_TOKEN`/`--token`.
fn read_token(api: &ApiArgs) -> Result<SecretString> {
    let text = match (&api.token_file, &api.token) {
        (Some(path), _) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("--token-file -: reading standard input")?;
            text
        }
        (Some(path), _) => {
            std::fs::read_to_string(path).with_context(|| format!("--token-file {}: cannot read it", path.display()))?
        }
        (None, Some(token)) => token.clone(),
        (None, None) => bail!(
            "no access token: give --token-file PATH or set MDOPS_ACCESS_TOKEN (get one with `az account get-access-token --resource <API app id URI>`)"
        ),
    };
    let token = text.trim();
    if token.is_empty() {
        bail!("the access token is empty: check --token-file or MDOPS_ACCESS_TOKEN");
    }
    Ok(SecretString::from(token.to_string()))
}

fn print_decision(result: Result<serde_json::Value, mdops_access_api::client::ClientError>) -> Result<()> {
    let value = result?;
    match serde_json::from_value::<AccessRequest>(value.clone()) {
        Ok(r) => println!(
            "{} {} ({} in {}, {})",
            r.id, r.state, r.requester, r.tenant_id, r.role_group
        ),
        Err(_) => println!("{}", serde_json::to_string_pretty(&value)?),
    }
    Ok(())
}

async fn configure(a: ConfigureArgs, global: &GlobalArgs) -> Result<()> {
    let ports = global.ports().await?;
    let mut s: AccessSettings = load_settings(ports.store.as_ref()).await?;
    let mut changed = false;
    macro_rules! set {
        ($field:ident, $value:expr) => {
            if let Some(v) = $value {
                s.$field = v;
                changed = true;
            }
        };
    }
    if let Some(t) = a.provider_tenant {
        s.provider_tenant_id = Some(t.parse().context("--provider-tenant")?);
        changed = true;
    }
    set!(team_roles, a.team_roles);
    set!(team_groups, a.team_groups);
    set!(approver_roles, a.approver_roles);
    set!(team_alias, a.team_alias);
    set!(service_mailbox, a.service_mailbox);
    set!(approvals_required, a.approvals_required);
    set!(approval_window_minutes, a.approval_window_minutes);
    if changed {
        save_settings(ports.store.as_ref(), &s).await?;
    }
    println!("{}", serde_json::to_string_pretty(&s)?);
    Ok(())
}

async fn serve(a: ServeArgs, global: &GlobalArgs) -> Result<()> {
    let ctx = Context::open(global).await?;
    let settings = load_settings(ctx.deps.store.as_ref()).await?;
    let tenants: Vec<String> = if a.tenants.is_empty() {
        settings.provider_tenant_id.iter().map(|t| t.to_string()).collect()
    } else {
        a.tenants
    };
    let Some(first) = tenants.first() else {
        bail!("--tenants: no tenant may call; give --tenants or `mdops access configure --provider-tenant`");
    };
    let mut auth = AuthSettings::entra(first, &a.audience);
    auth.allowed_tenants = tenants.clone();
    if let Some(host) = a.authority.or_else(|| global.sim_url.clone()) {
        auth.jwks_base = host;
    }
    let state = ApiState {
        service: AccessService::new(ctx.deps.clone()),
        auth: Arc::new(JwtValidator::new(auth)?),
    };
    if !a.listen.ip().is_loopback() && !a.behind_tls_proxy {
        bail!(
            "--listen {}: not a loopback address; the API speaks plain HTTP, so put a TLS-terminating proxy in front and pass --behind-tls-proxy",
            a.listen
        );
    }
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {}", a.listen))?;
    // First line of stdout: the address, so scripts can find it.
    println!("http://{}", listener.local_addr()?);
    mdops_access_api::serve(listener, state, crate::shutdown_signal()).await?;
    Ok(())
}

async fn list(a: ListArgs, global: &GlobalArgs) -> Result<()> {
    let ports = global.ports().await?;
    let filter = ListFilter {
        state: a.state.as_deref().map(str::parse::<AccessState>).transpose()?,
        tenant: a.tenant,
        requester: a.requester,
        requester_id: None,
    };
    let requests = AccessRequests::new(ports.store.as_ref())
        .list(&filter, LIST_LIMIT)
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&requests)?);
        return Ok(());
    }
    println!(
        "{:<32}  {:<9}  {:<36}  {:<30}  {:<30}  ends",
        "id", "state", "tenant", "requester", "role group"
    );
    for r in requests {
        let ends = r.ends_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into());
        println!(
            "{:<32}  {:<9}  {:<36}  {:<30}  {:<30}  {ends}",
            r.id, r.state, r.tenant_id, r.requester, r.role_group
        );
    }
    Ok(())
}

async fn show(a: IdArgs, global: &GlobalArgs, with_request: bool) -> Result<()> {
    let ports = global.ports().await?;
    let repo = AccessRequests::new(ports.store.as_ref());
    let found = repo
        .get(&a.id)
        .await?
        .with_context(|| format!("no access request {}", a.id))?;
    // Newest first, as the API shows it.
    let trail = repo.trail(&a.id, None, AUDIT_LIMIT).await?.entries;
    let refusals = if a.refusals {
        ports
            .store
            .audit_page(&refusals_subject(&a.id), None, AUDIT_LIMIT)
            .await?
            .entries
    } else {
        Vec::new()
    };
    if a.json {
        let mut out = serde_json::json!({"audit": trail});
        if a.refusals {
            out["refusals"] = serde_json::to_value(&refusals)?;
        }
        if with_request {
            out["request"] = serde_json::to_value(&found.request)?;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if with_request {
        let r = &found.request;
        println!("{}  {}", r.id, r.state);
        println!("  requester      {} ({})", r.requester, r.requester_name);
        println!("  tenant         {}", r.tenant_id);
        println!("  role group     {}", r.role_group);
        println!("  justification  {}", r.justification);
        println!("  ticket         {}", r.ticket);
        println!("  duration       {} minutes", r.duration_minutes);
        println!(
            "  approvals      {}/{} {:?}",
            r.approvals.len(),
            r.approvals_required,
            r.approvals.iter().map(|a| a.by.as_str()).collect::<Vec<_>>()
        );
        if let Some(end) = r.ends_at {
            println!("  ends           {}", end.to_rfc3339());
        }
        for (name, effect) in [("elevation", &r.elevation), ("removal", &r.removal)] {
            if let Some(e) = effect {
                println!(
                    "  {name:<14} {:?} after {} attempts{}",
                    e.status,
                    e.attempts,
                    e.last_error
                        .as_deref()
                        .map(|x| format!(", last error: {x}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    for entry in trail {
        println!(
            "{}  {:<28}  {:<24}  {}",
            entry.at.to_rfc3339(),
            entry.actor,
            entry.action,
            entry.detail
        );
    }
    if a.refusals {
        println!("refused decisions:");
        for entry in refusals {
            println!(
                "{}  {:<28}  {:<24}  {}",
                entry.at.to_rfc3339(),
                entry.actor,
                entry.action,
                entry.detail
            );
        }
    }
    Ok(())
}
