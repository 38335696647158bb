//! Shared setup of the integration tests: a simulated tenant on 127.0.0.1 and a client for it.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::PathBuf;
use std::time::Duration;

use mdops_graph::{CredentialSource, GraphClient, GraphConfig};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::{X509, X509NameBuilder};
use secrecy::SecretString;
use serde_json::json;
use tenant_sim::RunningSim;
use tenant_sim::seeds::TenantSeed;
use tenant_sim::store::{RequestLogEntry, RequestLogQuery};
use url::Url;

/// Every permission the product asks for, granted to the test apps.
pub const PERMISSIONS: &[&str] = &[
    "User.ReadWrite.All",
    "Group.ReadWrite.All",
    "Directory.ReadWrite.All",
    "RoleManagement.ReadWrite.Directory",
    "Organization.ReadWrite.All",
    "DeviceManagementConfiguration.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementServiceConfig.ReadWrite.All",
    "User.Invite.All",
];

/// A tenant whose app signs in with a client secret.
pub struct SecretTenant {
    pub id: String,
    pub client_id: String,
    pub secret: String,
}

/// A tenant seed with one app; `secret` and/or a certificate PEM as its credentials.
pub fn seed(
    name: &str,
    tenant_id: &str,
    client_id: &str,
    secret: Option<&str>,
    cert_pem: Option<&str>,
    permissions: &[&str],
    extra: serde_json::Value,
) -> TenantSeed {
    let mut app = json!({"client_id": client_id, "permissions": permissions});
    if let Some(s) = secret {
        app["secret"] = json!(s);
    }
    if let Some(pem) = cert_pem {
        // azure_identity 1.0 sends `x5t` as standard base64 (Entra ID accepts it); the simulator
        // only knows the base64url thumbprint unless told the key id, so register that form too.
        use base64::Engine;
        let cert = X509::from_pem(pem.as_bytes()).expect("certificate PEM");
        let thumb = cert.digest(MessageDigest::sha1()).expect("thumbprint");
        let key_id = base64::engine::general_purpose::STANDARD.encode(thumb);
        app["certificates"] = json!([{"pem": pem, "key_id": key_id}]);
    }
    let mut v = json!({"name": name, "id": tenant_id, "apps": [app]});
    if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            obj.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).expect("test seed is valid")
}

/// Starts a simulator on 127.0.0.1 with these tenants.
pub async fn start_sim(seeds: Vec<TenantSeed>) -> RunningSim {
    tenant_sim::start("127.0.0.1:0", seeds).await.expect("simulator starts")
}

/// A configuration for the simulator with quick retries, so tests run in seconds.
pub fn fast_config(sim: &RunningSim) -> GraphConfig {
    let mut c = GraphConfig::for_base(&Url::parse(sim.url()).expect("sim url")).expect("config");
    c.retry.base_backoff = Duration::from_millis(50);
    c.retry.max_backoff = Duration::from_millis(400);
    c.retry.max_in_process_wait = Duration::from_secs(3);
    c.timeouts.request = Duration::from_secs(5);
    c
}

/// A client with one secret tenant registered.
pub fn client_for(config: GraphConfig, t: &SecretTenant) -> GraphClient {
    let client = GraphClient::new(config).expect("client");
    client
        .register_tenant(
            &t.id,
            CredentialSource::ClientSecret {
                client_id: t.client_id.clone(),
                secret: SecretString::from(t.secret.clone()),
            },
        )
        .expect("register");
    client
}

/// A simulator with one secret tenant (named `name`), its client, and the tenant.
pub async fn one_tenant(name: &str, extra: serde_json::Value) -> (RunningSim, SecretTenant) {
    let t = SecretTenant {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: uuid::Uuid::new_v4().to_string(),
        secret: format!("{name}-secret-{}", uuid::Uuid::new_v4().simple()),
    };
    let sim = start_sim(vec![seed(
        name,
        &t.id,
        &t.client_id,
        Some(&t.secret),
        None,
        PERMISSIONS,
        extra,
    )])
    .await;
    (sim, t)
}

/// The simulator's request log for a tenant, optionally only paths starting with `prefix`.
pub async fn requests(sim: &RunningSim, tenant: &str, prefix: Option<&str>) -> Vec<RequestLogEntry> {
    let q = RequestLogQuery {
        tenant: Some(tenant.to_string()),
        path_prefix: prefix.map(str::to_string),
        ..RequestLogQuery::default()
    };
    sim.client().requests(&q).await.expect("request log")
}

/// A self-signed RSA certificate: (certificate PEM, key + certificate PEM, key, SHA-1 thumbprint).
pub fn make_certificate() -> (String, String, PKey<Private>, Vec<u8>) {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "mdops-graph-test").expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("time")).expect("na");
    let serial = BigNum::from_u32(7).and_then(|n| n.to_asn1_integer()).expect("serial");
    b.set_serial_number(&serial).expect("serial");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    let cert = b.build();
    let cert_pem = String::from_utf8(cert.to_pem().expect("pem")).expect("utf8");
    let key_pem = String::from_utf8(key.private_key_to_pem_pkcs8().expect("key pem")).expect("utf8");
    let thumb = cert.digest(MessageDigest::sha1()).expect("digest").to_vec();
    (cert_pem.clone(), format!("{key_pem}{cert_pem}"), key, thumb)
}

/// A client assertion (as a federated token file would hold) signed by `key`, for the public authority.
pub fn signed_assertion(key: &PKey<Private>, thumbprint: &[u8], tenant: &str, client_id: &str) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = chrono::Utc::now().timestamp();
    let header = json!({"alg": "RS256", "typ": "JWT", "x5t": b64(thumbprint)});
    let claims = json!({
        "aud": format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
        "iss": client_id, "sub": client_id, "jti": uuid::Uuid::new_v4().to_string(),
        "nbf": now - 10, "exp": now + 600,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut signer = Signer::new(MessageDigest::sha256(), key).expect("signer");
    signer.update(signing_input.as_bytes()).expect("update");
    let sig = signer.sign_to_vec().expect("sign");
    format!("{signing_input}.{}", b64(&sig))
}

/// A file in the temp dir, removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("mdops-graph-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
