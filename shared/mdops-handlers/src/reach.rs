//! From a tenant id to a ready Graph handle: the registry entry, its credential resolved from its
//! reference, registered once with the process's shared [`GraphClient`].
//!
//! The registry stores only *where* a secret is (an environment variable, a file, ...); the secret
//! is read here, at run time, wrapped at once, and handed to the Graph client. Errors name the
//! reference and what is wrong with it, never the value.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdops_core::secrets::SecretSource;
use mdops_core::store::{Store, StoreError};
use mdops_core::tenant::{CredentialRef, RegistryError, Tenant, TenantId, TenantRegistry};
use mdops_graph::{
    BucketSettings, CertificateSource, CredentialSource, GraphClient, GraphError, LimiterSettings, TenantGraph,
};
use secrecy::{SecretBox, SecretString};

/// Why a tenant could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// The tenant is not in the registry: permanent until an operator adds it.
    #[error("tenant {0} is not registered (add it with `mdops tenants add`)")]
    NotRegistered(String),
    /// The credential reference does not resolve: permanent until an operator fixes it.
    #[error("credential of tenant {tenant} ({reference}) does not resolve: {problem}")]
    Credential {
        tenant: String,
        reference: String,
        problem: String,
    },
    /// The registry could not be read: our infrastructure, retry.
    #[error("tenant registry unavailable: {0}")]
    Store(#[from] StoreError),
    /// The Graph client refused the credential.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl ReachError {
    /// True when retrying without a person's help cannot succeed.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, ReachError::Store(_))
    }
}

/// Reads a credential reference into the secret material the Graph client needs.
pub fn resolve_credential(tenant: &Tenant) -> Result<CredentialSource, ReachError> {
    let fail = |problem: String| ReachError::Credential {
        tenant: tenant.tenant_id.to_string(),
        reference: tenant.credential.to_string(),
        problem,
    };
    let client_id = tenant.client_id.clone();
    Ok(match &tenant.credential {
        CredentialRef::Env { var } => {
            let value = std::env::var(var).map_err(|_| fail(format!("environment variable {var} is not set")))?;
            if value.trim().is_empty() {
                return Err(fail(format!("environment variable {var} is empty")));
            }
            CredentialSource::ClientSecret {
                client_id,
                secret: SecretString::from(value.trim().to_string()),
            }
        }
        CredentialRef::File { path } => {
            let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read {path}: {}", e.kind())))?;
            let first = text.lines().next().unwrap_or("").trim().to_string();
            if first.is_empty() {
                return Err(fail(format!("{path} is empty")));
            }
            CredentialSource::ClientSecret {
                client_id,
                secret: SecretString::from(first),
            }
        }
        CredentialRef::Certificate { path, password_env } => {
            let password = match password_env {
                Some(var) => Some(SecretString::from(
                    std::env::var(var).map_err(|_| fail(format!("password variable {var} is not set")))?,
                )),
                None => None,
            };
            let lower = path.to_ascii_lowercase();
            let certificate = if lower.ends_with(".pem") || lower.ends_with(".crt") {
                if !std::path::Path::new(path).is_file() {
                    return Err(fail(format!("{path} is not a file")));
                }
                CertificateSource::PemFile(PathBuf::from(path))
            } else {
                let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read {path}: {}", e.kind())))?;
                CertificateSource::Pkcs12(SecretBox::new(Box::new(bytes)))
            };
            CredentialSource::ClientCertificate {
                client_id,
                certificate,
                password,
            }
        }
        CredentialRef::WorkloadIdentity { token_file } => {
            if !std::path::Path::new(token_file).is_file() {
                return Err(fail(format!("token file {token_file} does not exist")));
            }
            CredentialSource::WorkloadIdentity {
                client_id,
                token_file: PathBuf::from(token_file),
            }
        }
        CredentialRef::ManagedIdentity => CredentialSource::ManagedIdentity {
            client_id: Some(client_id),
        },
        CredentialRef::AwsSecret { .. } => {
            return Err(fail(
                "Secrets Manager references are read by the AWS functions; this process has no Secrets Manager client"
                    .into(),
            ));
        }
    })
}

/// Like [`resolve_credential`], reading `aws-secret:ARN` references from `secrets`.
pub async fn resolve(tenant: &Tenant, secrets: Option<&dyn SecretSource>) -> Result<CredentialSource, ReachError> {
    match (&tenant.credential, secrets) {
        (CredentialRef::AwsSecret { arn }, Some(source)) => {
            let secret = source.secret(arn).await.map_err(|e| ReachError::Credential {
                tenant: tenant.tenant_id.to_string(),
                reference: tenant.credential.to_string(),
                problem: e.problem,
            })?;
            Ok(CredentialSource::ClientSecret {
                client_id: tenant.client_id.clone(),
                secret,
            })
        }
        _ => resolve_credential(tenant),
    }
}

/// The Graph limiter settings for a tenant: the client's defaults with the tenant's write budgets.
pub fn limits_for(tenant: &Tenant, defaults: LimiterSettings) -> LimiterSettings {
    let budget = tenant.settings.graph_budget;
    LimiterSettings {
        directory_writes: BucketSettings {
            permits: budget.identity_writes_per_150s,
            per: Duration::from_secs(150),
        },
        intune_writes: BucketSettings {
            permits: budget.intune_writes_per_20s,
            per: Duration::from_secs(20),
        },
        ..defaults
    }
}

/// Tenants reachable through one shared Graph client.
pub struct TenantReach {
    graph: GraphClient,
    store: Arc<dyn Store>,
    /// The credential reference each tenant was registered with, so a changed reference is
    /// registered again and an unchanged one is not re-read for every message.
    registered: Mutex<HashMap<String, String>>,
    /// Where `aws-secret:` references are read, when this process has such a store.
    secrets: Option<Arc<dyn SecretSource>>,
}

impl TenantReach {
    /// Tenants of the registry in `store`, reached through `graph`.
    pub fn new(graph: GraphClient, store: Arc<dyn Store>) -> Self {
        TenantReach {
            graph,
            store,
            registered: Mutex::new(HashMap::new()),
            secrets: None,
        }
    }

    /// Reads `aws-secret:` credential references from `secrets`.
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretSource>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The shared Graph client.
    pub fn graph(&self) -> &GraphClient {
        &self.graph
    }

    /// The registry entry of a tenant and a Graph handle for it.
    pub async fn tenant(&self, tenant_id: &TenantId) -> Result<(Tenant, TenantGraph), ReachError> {
        let tenant = TenantRegistry::new(self.store.as_ref())
            .get(tenant_id)
            .await
            .map_err(|e| match e {
                RegistryError::Store(s) => ReachError::Store(s),
                other => ReachError::NotRegistered(other.to_string()),
            })?;
        let tenant = tenant.ok_or_else(|| ReachError::NotRegistered(tenant_id.to_string()))?;
        let reference = format!("{}|{}", tenant.client_id, tenant.credential);
        let known = self
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant_id.as_str())
            == Some(&reference);
        if !known {
            let source = resolve(&tenant, self.secrets.as_deref()).await?;
            self.graph.register_tenant(tenant_id.as_str(), source)?;
            self.graph
                .set_tenant_limits(tenant_id.as_str(), limits_for(&tenant, self.graph.config().limiter))?;
            self.registered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(tenant_id.to_string(), reference);
        }
        Ok((tenant.clone(), self.graph.tenant(tenant_id.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdops_core::tenant::{CredentialRef, TenantSettings};

    #[test]
    fn a_tenants_budget_sets_its_write_limits() {
        let mut settings = TenantSettings::default();
        settings.set("graph_budget.identity_writes_per_150s", "300").unwrap();
        settings.set("graph_budget.intune_writes_per_20s", "10").unwrap();
        let tenant = Tenant {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".parse().unwrap(),
            domain: "contoso.com".parse().unwrap(),
            name: "c".into(),
            client_id: "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f".into(),
            credential: CredentialRef::ManagedIdentity,
            settings,
            added_at: chrono::Utc::now(),
        };
        let defaults = LimiterSettings::default();
        let limits = limits_for(&tenant, defaults);
        assert_eq!(
            limits.directory_writes,
            BucketSettings {
                permits: 300,
                per: Duration::from_secs(150)
            }
        );
        assert_eq!(
            limits.intune_writes,
            BucketSettings {
                permits: 10,
                per: Duration::from_secs(20)
            }
        );
        assert_eq!(limits.all, defaults.all);
    }
}
