//! A rig for the access tests: the simulated provider tenant (engineers, the service mailbox) and
//! customer tenant (role groups), both registered in a store (SQLite, or DynamoDB + SQS on the
//! emulator), the API served on 127.0.0.1 with real token validation, a clock tests move forward,
//! and a way to work the access queue.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mdops_access_api::{ApiState, AuthSettings, JwtValidator};
use mdops_core::access::{AccessRequest, AccessRequests, AccessSettings, save_settings};
use mdops_core::onboarding::RoleGroup;
use mdops_core::onboarding::role_groups::RoleGroupIds;
use mdops_core::queue::{Queue, QueueName, QueueSettings};
use mdops_core::store::{AuditEntry, Store};
use mdops_core::tenant::{CredentialRef, Tenant, TenantRegistry, TenantSettings};
use mdops_graph::{GraphClient, GraphConfig};
use mdops_handlers::Deps;
use mdops_handlers::access::AccessService;
use secrecy::SecretString;
use serde_json::Value;
use tenant_sim::control::types::UserTokenRequest;
use tenant_sim::seeds::{AppSeed, GroupSeed, PRODUCT_PERMISSIONS, TenantSeed, UserSeed};
use tenant_sim::{RunningSim, SimClient};

/// `aud` of our API's tokens.
pub const AUDIENCE: &str = "api://mdops-access";
/// Role groups of the customer tenant.
pub const SOC: &str = "Modern Workplace Roles-SOC";
/// The team alias and service mailbox in the provider tenant.
pub const TEAM_ALIAS: &str = "mmd-team@provider.onmicrosoft.com";
pub const MAILBOX: &str = "mdops-access@provider.onmicrosoft.com";
/// Engineers.
pub const ALICE: &str = "alice@provider.onmicrosoft.com";
pub const BOB: &str = "bob@provider.onmicrosoft.com";
pub const CAROL: &str = "carol@provider.onmicrosoft.com";
pub const EVE: &str = "eve@provider.onmicrosoft.com";
/// The team role every engineer but Eve holds.
pub const TEAM_ROLE: &str = "Access.SOC";
/// Bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// The removal took the guest out (and may still be re-checking the membership).
pub fn removed(r: &AccessRequest) -> bool {
    r.removal.as_ref().is_some_and(|e| {
        matches!(
            e.status,
            mdops_core::access::EffectStatus::Verifying | mdops_core::access::EffectStatus::Done
        )
    })
}

/// Which store and queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Aws,
}

/// A clock the test moves.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

pub struct Rig {
    pub sim: RunningSim,
    pub control: SimClient,
    pub provider: String,
    pub customer: String,
    pub deps: Deps,
    pub clock: ManualClock,
    pub validator: Arc<JwtValidator>,
    pub api: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn app(secret: &str, permissions: Vec<String>) -> (AppSeed, uuid::Uuid) {
    let client_id = uuid::Uuid::new_v4();
    (
        AppSeed {
            client_id,
            display_name: Some("mdops".into()),
            secret: Some(SecretString::from(secret.to_string())),
            certificates: Vec::new(),
            permissions,
        },
        client_id,
    )
}

fn user(upn: &str) -> UserSeed {
    UserSeed {
        user_principal_name: upn.into(),
        display_name: None,
        id: None,
        usage_location: None,
        user_type: None,
        account_enabled: None,
        directory_roles: Vec::new(),
    }
}

impl Rig {
    pub async fn start(backend: Backend) -> Rig {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, customise: impl FnOnce(&mut AccessSettings)) -> Rig {
        let secret = format!("secret-{}", uuid::Uuid::new_v4());
        let provider_id = uuid::Uuid::new_v4();
        let customer_id = uuid::Uuid::new_v4();
        let mut provider = TenantSeed::new("provider");
        provider.id = Some(provider_id);
        let (provider_app, provider_client) = app(&secret, tenant_sim::seeds::provider_permissions());
        provider.apps.push(provider_app);
        for upn in [MAILBOX, ALICE, BOB, CAROL, EVE] {
            provider.objects.users.push(user(upn));
        }
        let mut customer = TenantSeed::new("fabrikam");
        customer.id = Some(customer_id);
        let (customer_app, customer_client) = app(&secret, PRODUCT_PERMISSIONS.iter().map(|p| p.to_string()).collect());
        customer.apps.push(customer_app);
        // The role groups as onboarding makes them (role-assignable), with known ids recorded
        // below the way the role-group step records them.
        let role_groups: Vec<(RoleGroup, uuid::Uuid)> =
            RoleGroup::ALL.into_iter().map(|g| (g, uuid::Uuid::new_v4())).collect();
        for (group, id) in &role_groups {
            customer.objects.groups.push(GroupSeed {
                display_name: group.display_name().into(),
                id: Some(*id),
                members: Vec::new(),
                is_assignable_to_role: true,
            });
        }
        let sim = tenant_sim::start("127.0.0.1:0", vec![provider, customer])
            .await
            .expect("simulator starts");
        let control = SimClient::new(sim.url());

        let dir = tempfile::tempdir().expect("temp dir");
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, &secret).expect("write secret");
        let (store, queue): (Arc<dyn Store>, Arc<dyn Queue>) = match backend {
            Backend::Sqlite => {
                let b = mdops_local::SqliteBackend::open(dir.path().join("mdops.db")).expect("open SQLite");
                (Arc::new(b.store().clone()), Arc::new(b.queue().clone()))
            }
            Backend::Aws => {
                let sdk = mdops_aws::emulator::sdk_config().await;
                let names = mdops_aws::ResourceNames::new(mdops_aws::emulator::unique_prefix()).expect("names");
                let b = mdops_aws::AwsBackend::ensure(&sdk, &names, QueueSettings::default())
                    .await
                    .expect("AWS resources on the emulator");
                (Arc::new(b.store().clone()), Arc::new(b.queue().clone()))
            }
        };
        let customer_tid = customer_id.to_string().parse().unwrap();
        for (group, id) in &role_groups {
            RoleGroupIds::new(store.as_ref())
                .record(&customer_tid, *group, &id.to_string(), "test-onboarding", Utc::now())
                .await
                .expect("record role group");
        }
        let registry = TenantRegistry::new(store.as_ref());
        for (id, name, client) in [
            (provider_id, "provider", provider_client),
            (customer_id, "fabrikam", customer_client),
        ] {
            registry
                .add(&Tenant {
                    tenant_id: id.to_string().parse().unwrap(),
                    domain: format!("{name}.onmicrosoft.com").parse().unwrap(),
                    name: name.into(),
                    client_id: client.to_string(),
                    credential: CredentialRef::File {
                        path: secret_file.display().to_string(),
                    },
                    settings: TenantSettings::default(),
                    added_at: Utc::now(),
                })
                .await
                .expect("register tenant");
        }
        let mut settings = AccessSettings {
            provider_tenant_id: Some(provider_id.to_string().parse().unwrap()),
            team_roles: vec![TEAM_ROLE.into(), "Access.ServiceEngineering".into()],
            team_alias: TEAM_ALIAS.into(),
            service_mailbox: MAILBOX.into(),
            ..AccessSettings::default()
        };
        customise(&mut settings);
        save_settings(store.as_ref(), &settings).await.expect("save settings");

        let clock = ManualClock(Arc::new(Mutex::new(Utc::now())));
        let c = clock.clone();
        let base = url::Url::parse(&format!("{}/", sim.url())).unwrap();
        let graph = GraphClient::new(GraphConfig::for_base(&base).unwrap()).unwrap();
        let deps = Deps {
            clock: Arc::new(move || c.now()),
            lag_window: Duration::from_secs(2),
            ..Deps::new(store, queue, graph)
        };
        let validator = Arc::new(JwtValidator::new(Self::auth_settings(&base, &provider_id.to_string())).unwrap());
        let state = ApiState {
            service: AccessService::new(deps.clone()),
            auth: validator.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(mdops_access_api::serve(listener, state, std::future::pending()));
        Rig {
            sim,
            control,
            provider: provider_id.to_string(),
            customer: customer_id.to_string(),
            deps,
            clock,
            validator,
            api,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn auth_settings(base: &url::Url, provider: &str) -> AuthSettings {
        AuthSettings {
            jwks_base: base.clone(),
            ..AuthSettings::entra(provider, AUDIENCE)
        }
    }

    /// A token of `upn` in the provider tenant with these roles.
    pub async fn token(&self, upn: &str, roles: &[&str]) -> String {
        self.token_with(&self.provider, upn, roles, AUDIENCE, None).await
    }

    pub async fn token_with(
        &self,
        tenant: &str,
        upn: &str,
        roles: &[&str],
        audience: &str,
        lifetime: Option<i64>,
    ) -> String {
        self.control
            .issue_user_token(
                tenant,
                &UserTokenRequest {
                    audience: audience.into(),
                    upn: upn.into(),
                    name: Some(upn.split('@').next().unwrap_or(upn).into()),
                    oid: None,
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    groups: Vec::new(),
                    lifetime_secs: lifetime,
                    ..Default::default()
                },
            )
            .await
            .expect("user token")
            .access_token
    }

    /// A team member's token.
    pub async fn member(&self, upn: &str) -> String {
        self.token(upn, &[TEAM_ROLE]).await
    }

    /// Calls the API; returns the status and the JSON body (Null when none).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.api));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("API answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Files a request as Alice for `minutes` in the SOC group; returns its id.
    pub async fn request(&self, minutes: u32) -> String {
        let alice = self.member(ALICE).await;
        let (status, body) = self
            .call(
                "POST",
                "/requests",
                Some(&alice),
                Some(serde_json::json!({
                    "tenant": self.customer, "role_group": SOC, "justification": "investigate alert 42",
                    "ticket": "INC0042", "duration_minutes": minutes,
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["state"], "pending");
        body["id"].as_str().unwrap().to_string()
    }

    /// The stored request.
    pub async fn stored(&self, id: &str) -> AccessRequest {
        AccessRequests::new(self.deps.store.as_ref())
            .get(id)
            .await
            .unwrap()
            .expect("request exists")
            .request
    }

    /// The request's trail, oldest first.
    pub async fn trail(&self, id: &str) -> Vec<AuditEntry> {
        self.deps
            .store
            .audit(&mdops_core::access::audit_subject(id), 1000)
            .await
            .unwrap()
    }

    /// Lets the removal of `id` finish: moves the clock past the window in which a late add could
    /// still land, runs the timer pass, and works the queue until the removal is done.
    pub async fn settle_removal(&self, id: &str) {
        self.drain_until(removed, id).await;
        self.clock.advance(
            chrono::Duration::from_std(mdops_core::access::ADD_IN_FLIGHT_BOUND).unwrap() + chrono::Duration::minutes(1),
        );
        mdops_handlers::access::expiry_pass(&self.deps, 100)
            .await
            .expect("timer pass");
        self.drain_until(|r| !r.removal_outstanding(), id).await;
    }

    /// Works the access queue until it stays empty for one receive.
    pub async fn drain(&self) -> usize {
        self.drain_until(|_| true, "").await
    }

    /// Works the access queue until `done(request)` holds for request `id` and the queue is empty
    /// (or, with an empty id, until the queue is empty); bounded by [`WAIT`].
    pub async fn drain_until(&self, done: impl Fn(&AccessRequest) -> bool, id: &str) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut handled = 0;
        loop {
            let messages = self
                .deps
                .queue
                .receive(QueueName::Access, 10, Duration::from_secs(1), Duration::from_secs(60))
                .await
                .expect("receive");
            let empty = messages.is_empty();
            for m in messages {
                let d = mdops_handlers::worker::dispatch(QueueName::Access, &m, &self.deps).await;
                mdops_handlers::worker::apply(QueueName::Access, &m, d, &self.deps).await;
                handled += 1;
            }
            let satisfied = id.is_empty() || done(&self.stored(id).await);
            if empty && satisfied {
                return handled;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "access queue not settled within {WAIT:?}"
            );
        }
    }

    /// Mail delivered in the provider tenant.
    pub async fn mail(&self) -> Vec<tenant_sim::store::SentMail> {
        self.control.mail(&self.provider).await.expect("mail log")
    }

    /// The SOC group's object id, as onboarding recorded it.
    pub async fn soc_id(&self) -> String {
        RoleGroupIds::new(self.deps.store.as_ref())
            .get(&self.customer.parse().unwrap(), RoleGroup::Soc)
            .await
            .unwrap()
            .expect("SOC group recorded")
            .id
    }

    /// Object ids of the members of the customer's SOC group.
    pub async fn soc_members(&self) -> Vec<String> {
        let (_, graph) = self.deps.reach.tenant(&self.customer.parse().unwrap()).await.unwrap();
        graph
            .list_group_members(&self.soc_id().await)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect()
    }
}
