//! No secret, password or token ever reaches a log line or an error. All logs of the client stack
//! (mdops_graph, azure_identity / azure_core, reqwest, hyper) are captured at TRACE into a buffer
//! while successful and failing token requests run with known secrets, then searched.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use mdops_graph::resources::users::{NewUser, PasswordProfile};
use mdops_graph::{CertificateSource, CredentialSource, GraphClient};
use secrecy::SecretString;
use serde_json::json;
use tenant_sim::faults::{FaultAction, FaultSpec};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn capture() -> &'static Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Buffer::default();
        // The simulator's own logs are not the client's: leave them out.
        let filter = tracing_subscriber::EnvFilter::new("trace,tenant_sim=off");
        // `try_init` also routes the `log` records of reqwest and hyper-util into the capture.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(buffer.clone())
            .with_ansi(false)
            .try_init()
            .expect("one global subscriber per test binary");
        buffer
    })
}

#[tokio::test]
async fn secrets_never_appear_in_logs_or_errors() {
    let logs = capture();
    let secret = "S3cr3t-Value-ContosoApp-4b1f";
    let wrong_secret = "Wr0ng-Value-Typo-93ac";
    let password = "Us3r-Initial-Passw0rd-77e2";
    let pfx_password = "Pfx-Passw0rd-5d20";
    let (cert_pem, key_and_cert_pem, _, _) = make_certificate();

    let contoso = SecretTenant {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: uuid::Uuid::new_v4().to_string(),
        secret: secret.into(),
    };
    let fabrikam = uuid::Uuid::new_v4().to_string();
    let fabrikam_app = uuid::Uuid::new_v4().to_string();
    let sim = start_sim(vec![
        seed(
            "contoso",
            &contoso.id,
            &contoso.client_id,
            Some(secret),
            None,
            PERMISSIONS,
            json!({}),
        ),
        seed(
            "fabrikam",
            &fabrikam,
            &fabrikam_app,
            None,
            Some(&cert_pem),
            PERMISSIONS,
            json!({}),
        ),
    ])
    .await;

    // Success with a client secret, including a user created with a password.
    let client = client_for(fast_config(&sim), &contoso);
    let graph = client.tenant(&contoso.id);
    graph.get_organization().await.expect("organization");
    let user = NewUser {
        account_enabled: true,
        display_name: "MMD Admin".into(),
        mail_nickname: "mmdadmin".into(),
        user_principal_name: "mmdadmin@contoso.onmicrosoft.com".into(),
        password_profile: PasswordProfile {
            force_change_password_next_sign_in: false,
            password: SecretString::from(password),
        },
        usage_location: None,
    };
    graph.create_user(&user).await.expect("create user");
    let duplicate = graph.create_user(&user).await.expect_err("duplicate");

    // Success with a password-protected certificate.
    let key = openssl::pkey::PKey::private_key_from_pem(key_and_cert_pem.as_bytes()).expect("key");
    let cert = openssl::x509::X509::from_pem(cert_pem.as_bytes()).expect("cert");
    let p12 = openssl::pkcs12::Pkcs12::builder()
        .name("t")
        .pkey(&key)
        .cert(&cert)
        .build2(pfx_password)
        .and_then(|p| p.to_der())
        .expect("p12");
    client
        .register_tenant(
            &fabrikam,
            CredentialSource::ClientCertificate {
                client_id: fabrikam_app.clone(),
                certificate: CertificateSource::Pkcs12(secrecy::SecretBox::new(Box::new(p12))),
                password: Some(SecretString::from(pfx_password)),
            },
        )
        .expect("certificate tenant");
    client
        .tenant(&fabrikam)
        .get_organization()
        .await
        .expect("certificate token");

    // Failure: a wrong secret, and a token endpoint outage that outlasts the budget.
    let bad = GraphClient::new(fast_config(&sim)).expect("client");
    bad.register_tenant(
        &contoso.id,
        CredentialSource::ClientSecret {
            client_id: contoso.client_id.clone(),
            secret: SecretString::from(wrong_secret),
        },
    )
    .expect("register");
    let refused = bad
        .tenant(&contoso.id)
        .get_organization()
        .await
        .expect_err("wrong secret");
    assert_eq!(refused.code(), "AADSTS7000215");
    let other = GraphClient::new(fast_config(&sim)).expect("client");
    other
        .register_tenant(
            &contoso.id,
            CredentialSource::ClientSecret {
                client_id: contoso.client_id.clone(),
                secret: SecretString::from(secret),
            },
        )
        .expect("register");
    sim.client()
        .add_fault(
            &contoso.id,
            &FaultSpec {
                method: Some("POST".into()),
                path_prefix: format!("/{}/oauth2", contoso.id),
                count: 5,
                action: FaultAction::Status {
                    status: 503,
                    retry_after: None,
                    code: None,
                },
            },
        )
        .await
        .expect("fault");
    let outage = other
        .tenant(&contoso.id)
        .get_organization()
        .await
        .expect_err("token outage");

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        logs.lines().count() > 20,
        "the capture works: {} lines",
        logs.lines().count()
    );
    assert!(logs.contains("client_request_id"), "spans carry the client-request-id");
    assert!(logs.contains("request_id"), "spans carry Graph's request-id");
    assert!(
        logs.contains("AADSTS7000215"),
        "the failing token request is logged with its code"
    );
    assert!(
        logs.contains("reqwest") || logs.contains("hyper"),
        "the HTTP stack's own logs are captured"
    );
    if std::env::var_os("MDOPS_SHOW_CAPTURED_LOGS").is_some() {
        eprintln!("{logs}");
    }
    let errors = [&duplicate, &refused, &outage];
    for needle in [secret, wrong_secret, password, pfx_password] {
        for line in logs.lines() {
            assert!(!line.contains(needle), "secret {needle:?} in log line: {line}");
        }
        for e in errors {
            assert!(!e.to_string().contains(needle), "secret in error Display: {e}");
            assert!(!format!("{e:?}").contains(needle), "secret in error Debug: {e:?}");
        }
    }
    // No bearer token either (every JWT starts with the base64 of `{"`: `eyJ`).
    for line in logs.lines() {
        assert!(!line.contains("eyJ"), "a token in a log line: {line}");
    }
    assert!(!format!("{client:?}").contains(secret));
}
