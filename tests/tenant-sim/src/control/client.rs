//! [`SimClient`]: a typed reqwest client for the control API, one method per route.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::types::{
    AppTokenRequest, FaultAdded, IssuedToken, MdmAuthority, Permissions, SkuUnits, TenantInfo, UserTokenRequest,
};
use crate::chaos::ChaosSpec;
use crate::faults::{Fault, FaultSpec};
use crate::knobs::Knobs;
use crate::seeds::{AppSeed, ObjectsSeed, TenantSeed};
use crate::store::{IdentityPolicies, RequestLogEntry, RequestLogQuery, SentMail};

/// Errors of [`SimClient`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The simulator could not be reached or its answer not read.
    #[error("control API request to {url} failed: {source}")]
    Http {
        /// The URL called.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The simulator answered an error.
    #[error("control API {url} answered {status}: {message}")]
    Status {
        /// The URL called.
        url: String,
        /// HTTP status.
        status: u16,
        /// The `error` of the answer.
        message: String,
    },
}

/// Typed client of the control API of a simulator at `base_url`.
#[derive(Debug, Clone)]
pub struct SimClient {
    base: String,
    http: reqwest::Client,
}

fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl SimClient {
    /// A client for the simulator at `base_url` (e.g. `http://127.0.0.1:PORT`).
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// The simulator's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The token endpoint of a tenant (id, name or domain).
    pub fn token_endpoint(&self, tenant: &str) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base, seg(tenant))
    }

    /// The JWKS address of a tenant, where user and app token signing keys are published.
    pub fn jwks_uri(&self, tenant: &str) -> String {
        format!("{}/{}/discovery/v2.0/keys", self.base, seg(tenant))
    }

    /// The Graph v1.0 base address (`{url}/v1.0`).
    pub fn graph_base(&self) -> String {
        format!("{}/v1.0", self.base)
    }

    /// The `iss` of user tokens of a tenant id (what our API's validator must expect).
    pub fn user_token_issuer(tenant_id: &str) -> String {
        format!("https://login.microsoftonline.com/{tenant_id}/v2.0")
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, path, body).await?;
        let url = format!("{}/_sim{path}", self.base);
        resp.json::<T>()
            .await
            .map_err(|source| ClientError::Http { url, source })
    }

    async fn send<B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}/_sim{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|source| ClientError::Http {
            url: url.clone(),
            source,
        })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(text);
            return Err(ClientError::Status { url, status, message });
        }
        Ok(resp)
    }

    /// `GET /_sim/tenants`.
    pub async fn tenants(&self) -> Result<Vec<TenantInfo>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, "/tenants", None).await
    }

    /// `POST /_sim/tenants`: creates a tenant from a seed.
    pub async fn create_tenant(&self, seed: &TenantSeed) -> Result<TenantInfo, ClientError> {
        self.call(reqwest::Method::POST, "/tenants", Some(seed)).await
    }

    /// `GET /_sim/tenants/{t}` (id, name or domain).
    pub async fn tenant(&self, tenant: &str) -> Result<TenantInfo, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, &format!("/tenants/{}", seg(tenant)), None)
            .await
    }

    /// `GET /_sim/tenants/{t}/knobs`.
    pub async fn knobs(&self, tenant: &str) -> Result<Knobs, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, &format!("/tenants/{}/knobs", seg(tenant)), None)
            .await
    }

    /// `PUT /_sim/tenants/{t}/knobs`: replaces the knobs.
    pub async fn set_knobs(&self, tenant: &str, knobs: &Knobs) -> Result<Knobs, ClientError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/tenants/{}/knobs", seg(tenant)),
            Some(knobs),
        )
        .await
    }

    /// `POST /_sim/tenants/{t}/faults`: adds a fault; returns its id.
    pub async fn add_fault(&self, tenant: &str, fault: &FaultSpec) -> Result<u64, ClientError> {
        let added: FaultAdded = self
            .call(
                reqwest::Method::POST,
                &format!("/tenants/{}/faults", seg(tenant)),
                Some(fault),
            )
            .await?;
        Ok(added.id)
    }

    /// `GET /_sim/tenants/{t}/faults`: faults not used up yet.
    pub async fn faults(&self, tenant: &str) -> Result<Vec<Fault>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, &format!("/tenants/{}/faults", seg(tenant)), None)
            .await
    }

    /// `DELETE /_sim/tenants/{t}/faults`.
    pub async fn clear_faults(&self, tenant: &str) -> Result<(), ClientError> {
        self.send::<()>(
            reqwest::Method::DELETE,
            &format!("/tenants/{}/faults", seg(tenant)),
            None,
        )
        .await
        .map(|_| ())
    }

    /// `PUT /_sim/tenants/{t}/chaos`: random faults at these rates from now on.
    pub async fn set_chaos(&self, tenant: &str, spec: &ChaosSpec) -> Result<ChaosSpec, ClientError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/tenants/{}/chaos", seg(tenant)),
            Some(spec),
        )
        .await
    }

    /// `DELETE /_sim/tenants/{t}/chaos`: no more random faults.
    pub async fn clear_chaos(&self, tenant: &str) -> Result<(), ClientError> {
        self.send::<()>(
            reqwest::Method::DELETE,
            &format!("/tenants/{}/chaos", seg(tenant)),
            None,
        )
        .await
        .map(|_| ())
    }

    /// `POST /_sim/tenants/{t}/apps`: adds or replaces an app.
    pub async fn add_app(&self, tenant: &str, app: &AppSeed) -> Result<TenantInfo, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/tenants/{}/apps", seg(tenant)),
            Some(app),
        )
        .await
    }

    /// `PUT /_sim/tenants/{t}/apps/{client_id}/permissions`: changes granted permissions (tokens
    /// issued afterwards carry them; empty means not consented).
    pub async fn set_permissions(
        &self,
        tenant: &str,
        client_id: &str,
        permissions: &[&str],
    ) -> Result<(), ClientError> {
        let body = Permissions {
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
        };
        let path = format!("/tenants/{}/apps/{}/permissions", seg(tenant), seg(client_id));
        self.call::<_, Permissions>(reqwest::Method::PUT, &path, Some(&body))
            .await
            .map(|_| ())
    }

    /// `PUT /_sim/tenants/{t}/skus/{sku}/units`: sets `prepaidUnits.enabled` (sku = id or part number).
    pub async fn set_sku_units(&self, tenant: &str, sku: &str, enabled: u32) -> Result<Value, ClientError> {
        let path = format!("/tenants/{}/skus/{}/units", seg(tenant), seg(sku));
        self.call(reqwest::Method::PUT, &path, Some(&SkuUnits { enabled }))
            .await
    }

    /// `PUT /_sim/tenants/{t}/mdm-authority`.
    pub async fn set_mdm_authority(&self, tenant: &str, authority: &str) -> Result<TenantInfo, ClientError> {
        let body = MdmAuthority {
            mdm_authority: authority.to_string(),
        };
        self.call(
            reqwest::Method::PUT,
            &format!("/tenants/{}/mdm-authority", seg(tenant)),
            Some(&body),
        )
        .await
    }

    /// `POST /_sim/tenants/{t}/objects`: seeds more objects (visible at once); returns the counts.
    pub async fn add_objects(
        &self,
        tenant: &str,
        objects: &ObjectsSeed,
    ) -> Result<BTreeMap<String, usize>, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/tenants/{}/objects", seg(tenant)),
            Some(objects),
        )
        .await
    }

    /// `GET /_sim/tenants/{t}/objects/{kind}`: every object of a kind (`users`, `groups`,
    /// `directoryRoles`, `deviceConfigurations`, `detectedApps`, `mobileApps`, `devices`,
    /// `subscribedSkus`), replication lag ignored.
    pub async fn objects(&self, tenant: &str, kind: &str) -> Result<Vec<Value>, ClientError> {
        self.call::<(), _>(
            reqwest::Method::GET,
            &format!("/tenants/{}/objects/{}", seg(tenant), seg(kind)),
            None,
        )
        .await
    }

    /// `DELETE /_sim/tenants/{t}/objects/{kind}/{id}`: removes an object (e.g. a device deleted by
    /// the customer) and its memberships.
    pub async fn remove_object(&self, tenant: &str, kind: &str, id: &str) -> Result<(), ClientError> {
        self.send::<()>(
            reqwest::Method::DELETE,
            &format!("/tenants/{}/objects/{}/{}", seg(tenant), seg(kind), seg(id)),
            None,
        )
        .await
        .map(|_| ())
    }

    /// `PUT /_sim/tenants/{t}/policies`: security defaults and guest invitation settings.
    pub async fn set_identity_policies(
        &self,
        tenant: &str,
        policies: &IdentityPolicies,
    ) -> Result<IdentityPolicies, ClientError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/tenants/{}/policies", seg(tenant)),
            Some(policies),
        )
        .await
    }

    /// `GET /_sim/tenants/{t}/counts`: objects per kind.
    pub async fn counts(&self, tenant: &str) -> Result<BTreeMap<String, usize>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, &format!("/tenants/{}/counts", seg(tenant)), None)
            .await
    }

    /// `GET /_sim/tenants/{t}/mail`: mail delivered by `sendMail`.
    pub async fn mail(&self, tenant: &str) -> Result<Vec<SentMail>, ClientError> {
        self.call::<(), _>(reqwest::Method::GET, &format!("/tenants/{}/mail", seg(tenant)), None)
            .await
    }

    /// `POST /_sim/tenants/{t}/user-tokens`: a user token signed by the tenant's key.
    pub async fn issue_user_token(&self, tenant: &str, req: &UserTokenRequest) -> Result<IssuedToken, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/tenants/{}/user-tokens", seg(tenant)),
            Some(req),
        )
        .await
    }

    /// `POST /_sim/tenants/{t}/app-tokens`: an app access token without the token endpoint.
    pub async fn issue_app_token(&self, tenant: &str, req: &AppTokenRequest) -> Result<IssuedToken, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/tenants/{}/app-tokens", seg(tenant)),
            Some(req),
        )
        .await
    }

    /// `GET /_sim/requests`: the request log, filtered.
    pub async fn requests(&self, query: &RequestLogQuery) -> Result<Vec<RequestLogEntry>, ClientError> {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if let Some(t) = &query.tenant {
            s.append_pair("tenant", t);
        }
        if let Some(a) = query.after {
            s.append_pair("after", &a.to_string());
        }
        if let Some(m) = &query.method {
            s.append_pair("method", m);
        }
        if let Some(p) = &query.path_prefix {
            s.append_pair("path_prefix", p);
        }
        self.call::<(), _>(reqwest::Method::GET, &format!("/requests?{}", s.finish()), None)
            .await
    }

    /// `DELETE /_sim/requests`: empties the request log.
    pub async fn clear_requests(&self) -> Result<(), ClientError> {
        self.send::<()>(reqwest::Method::DELETE, "/requests", None)
            .await
            .map(|_| ())
    }
}
