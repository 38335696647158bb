//! The Graph client against the simulated tenant, over HTTP on 127.0.0.1: credentials and token
//! caching, retries on throttling and faults, replication lag, permanent errors, paging, `$batch`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::TryStreamExt;
use mdops_graph::resources::groups::NewGroup;
use mdops_graph::resources::users::{Mail, NewUser, PasswordProfile};
use mdops_graph::{BatchItem, CertificateSource, CredentialSource, ErrorClass, GraphClient, GraphError, Query};
use secrecy::{SecretBox, SecretString};
use serde_json::json;
use tenant_sim::faults::{FaultAction, FaultSpec};

fn fault(method: &str, path_prefix: &str, count: u32, action: FaultAction) -> FaultSpec {
    FaultSpec {
        method: Some(method.to_string()),
        path_prefix: path_prefix.to_string(),
        count,
        action,
    }
}

fn status(status: u16, retry_after: Option<&str>) -> FaultAction {
    FaultAction::Status {
        status,
        retry_after: retry_after.map(str::to_string),
        code: None,
    }
}

fn new_user(upn: &str) -> NewUser {
    NewUser {
        account_enabled: true,
        display_name: upn.to_string(),
        mail_nickname: upn.split('@').next().unwrap_or(upn).to_string(),
        user_principal_name: upn.to_string(),
        password_profile: PasswordProfile {
            force_change_password_next_sign_in: false,
            password: SecretString::from("Initial-Passw0rd!"),
        },
        usage_location: Some("NL".into()),
    }
}

#[tokio::test]
async fn two_tenants_with_different_credentials_get_and_cache_their_tokens() {
    let (cert_pem, key_and_cert_pem, _, _) = make_certificate();
    let contoso = SecretTenant {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: uuid::Uuid::new_v4().to_string(),
        secret: "contoso-secret-1".into(),
    };
    let fabrikam_id = uuid::Uuid::new_v4().to_string();
    let fabrikam_app = uuid::Uuid::new_v4().to_string();
    let sim = start_sim(vec![
        seed(
            "contoso",
            &contoso.id,
            &contoso.client_id,
            Some(&contoso.secret),
            None,
            PERMISSIONS,
            json!({}),
        ),
        seed(
            "fabrikam",
            &fabrikam_id,
            &fabrikam_app,
            None,
            Some(&cert_pem),
            &["Organization.Read.All"],
            json!({}),
        ),
    ])
    .await;
    let client = client_for(fast_config(&sim), &contoso);
    let pem = TempFile::new(&key_and_cert_pem);
    client
        .register_tenant(
            &fabrikam_id,
            CredentialSource::ClientCertificate {
                client_id: fabrikam_app.clone(),
                certificate: CertificateSource::PemFile(pem.0.clone()),
                password: None,
            },
        )
        .expect("certificate credential");

    for _ in 0..3 {
        let org = client
            .tenant(&contoso.id)
            .get_organization()
            .await
            .expect("contoso organization");
        assert_eq!(org.id, contoso.id);
        let org = client
            .tenant(&fabrikam_id)
            .get_organization()
            .await
            .expect("fabrikam organization");
        assert_eq!(org.id, fabrikam_id);
    }
    // Each tenant's token was requested once and served from the cache afterwards.
    let contoso_tokens = requests(&sim, &contoso.id, Some(&format!("/{}/oauth2", contoso.id))).await;
    let fabrikam_tokens = requests(&sim, &fabrikam_id, Some(&format!("/{fabrikam_id}/oauth2"))).await;
    assert_eq!(contoso_tokens.len(), 1, "{contoso_tokens:?}");
    assert_eq!(fabrikam_tokens.len(), 1, "{fabrikam_tokens:?}");
    assert_eq!(contoso_tokens[0].client_id.as_deref(), Some(contoso.client_id.as_str()));
    assert_eq!(fabrikam_tokens[0].client_id.as_deref(), Some(fabrikam_app.as_str()));
    assert_eq!(requests(&sim, &contoso.id, Some("/v1.0/organization")).await.len(), 3);

    // Preflight: the roles claim of each tenant's token.
    let roles = client.granted_roles(&fabrikam_id).await.expect("roles");
    assert_eq!(roles, vec!["Organization.Read.All".to_string()]);
    let roles = client.granted_roles(&contoso.id).await.expect("roles");
    assert!(roles.contains(&"User.ReadWrite.All".to_string()), "{roles:?}");

    // Every Graph call carried a client-request-id, and the answer's request-id is distinct.
    for r in requests(&sim, &contoso.id, Some("/v1.0/")).await {
        let crid = r.client_request_id.expect("client-request-id sent");
        assert!(uuid::Uuid::parse_str(&crid).is_ok(), "{crid}");
    }
}

#[tokio::test]
async fn pkcs12_certificate_and_workload_identity_token_file_work() {
    let (cert_pem, key_and_cert_pem, key, thumb) = make_certificate();
    let t1 = uuid::Uuid::new_v4().to_string();
    let t2 = uuid::Uuid::new_v4().to_string();
    let app = uuid::Uuid::new_v4().to_string();
    let sim = start_sim(vec![
        seed("northwind", &t1, &app, None, Some(&cert_pem), PERMISSIONS, json!({})),
        seed("tailspin", &t2, &app, None, Some(&cert_pem), PERMISSIONS, json!({})),
    ])
    .await;
    let client = GraphClient::new(fast_config(&sim)).expect("client");
    // PKCS12 bytes built from the PEM, as a vault would hand them over.
    let key_only = openssl::pkey::PKey::private_key_from_pem(key_and_cert_pem.as_bytes()).expect("key");
    let cert = openssl::x509::X509::from_pem(cert_pem.as_bytes()).expect("cert");
    let p12 = openssl::pkcs12::Pkcs12::builder()
        .name("t")
        .pkey(&key_only)
        .cert(&cert)
        .build2("pfx-pass")
        .expect("p12")
        .to_der()
        .expect("der");
    client
        .register_tenant(
            &t1,
            CredentialSource::ClientCertificate {
                client_id: app.clone(),
                certificate: CertificateSource::Pkcs12(SecretBox::new(Box::new(p12))),
                password: Some(SecretString::from("pfx-pass")),
            },
        )
        .expect("pkcs12 credential");
    let token_file = TempFile::new(&signed_assertion(&key, &thumb, &t2, &app));
    client
        .register_tenant(
            &t2,
            CredentialSource::WorkloadIdentity {
                client_id: app.clone(),
                token_file: token_file.0.clone(),
            },
        )
        .expect("workload identity credential");
    assert_eq!(
        client.tenant(&t1).get_organization().await.expect("pkcs12 tenant").id,
        t1
    );
    assert_eq!(
        client.tenant(&t2).get_organization().await.expect("workload tenant").id,
        t2
    );
}

#[tokio::test]
async fn token_failures_name_the_tenant_and_the_aadsts_code() {
    let (sim, t) = one_tenant("contoso", json!({})).await;
    let client = client_for(fast_config(&sim), &t);
    // Wrong secret.
    let wrong = SecretTenant {
        id: t.id.clone(),
        client_id: t.client_id.clone(),
        secret: "not-the-secret".into(),
    };
    let bad = client_for(fast_config(&sim), &wrong);
    let e = bad
        .tenant(&t.id)
        .get_organization()
        .await
        .expect_err("wrong secret fails");
    assert_eq!(e.code(), "AADSTS7000215");
    assert_eq!(e.classification(), ErrorClass::Permanent);
    let text = e.to_string();
    assert!(
        text.contains(&t.id) && text.contains("client secret") && text.contains("Invalid client secret"),
        "{text}"
    );
    // Unknown app in the tenant.
    let stranger = SecretTenant {
        id: t.id.clone(),
        client_id: uuid::Uuid::new_v4().to_string(),
        secret: "x".into(),
    };
    let e = client_for(fast_config(&sim), &stranger)
        .tenant(&t.id)
        .get_organization()
        .await
        .unwrap_err();
    assert_eq!(e.code(), "AADSTS700016", "{e}");
    // The token endpoint is down: transient, retried in-process, then handed back.
    sim.client()
        .add_fault(
            &t.id,
            &fault("POST", &format!("/{}/oauth2", t.id), 1, status(503, None)),
        )
        .await
        .expect("fault");
    client
        .tenant(&t.id)
        .get_organization()
        .await
        .expect("recovers after one token outage");
    // A tenant never registered.
    let e = client.tenant("unregistered").get_organization().await.unwrap_err();
    assert!(matches!(e, GraphError::UnknownTenant { .. }), "{e}");
}

/// The certificate credential's assertion (built by mdops-graph, not azure_identity) is checked
/// by the simulated identity platform against the registered certificate: a PEM that pairs the
/// registered certificate with another key is refused (AADSTS700027), and nothing secret leaks.
#[tokio::test]
async fn a_certificate_assertion_signed_with_another_key_is_refused() {
    let (cert_pem, _, _, _) = make_certificate();
    let (_, other_key_and_cert, _, _) = make_certificate();
    let other_key = other_key_and_cert
        .split("-----BEGIN CERTIFICATE-----")
        .next()
        .expect("key part")
        .to_string();
    let tenant = uuid::Uuid::new_v4().to_string();
    let app = uuid::Uuid::new_v4().to_string();
    let sim = start_sim(vec![seed(
        "northwind",
        &tenant,
        &app,
        None,
        Some(&cert_pem),
        PERMISSIONS,
        json!({}),
    )])
    .await;
    let client = GraphClient::new(fast_config(&sim)).expect("client");
    let forged = TempFile::new(&format!("{cert_pem}{other_key}"));
    client
        .register_tenant(
            &tenant,
            CredentialSource::ClientCertificate {
                client_id: app.clone(),
                certificate: CertificateSource::PemFile(forged.0.clone()),
                password: None,
            },
        )
        .expect("a well-formed PEM registers");
    let e = client.tenant(&tenant).get_organization().await.unwrap_err();
    assert_eq!(e.code(), "AADSTS700027", "{e}");
    assert_eq!(e.classification(), ErrorClass::Permanent);
    let text = e.to_string();
    assert!(text.contains(&tenant) && text.contains("client certificate"), "{text}");
    assert!(
        !text.contains("eyJ") && !text.contains("PRIVATE"),
        "no assertion or key in: {text}"
    );
    // No Graph call went out without a token.
    assert!(requests(&sim, &tenant, Some("/v1.0/")).await.is_empty());
}

#[tokio::test]
async fn managed_identity_is_built_but_never_leaves_the_machine_in_simulator_mode() {
    let (sim, _t) = one_tenant("contoso", json!({})).await;
    let client = GraphClient::new(fast_config(&sim)).expect("client");
    client
        .register_tenant(
            "mi-tenant",
            CredentialSource::ManagedIdentity {
                client_id: Some(uuid::Uuid::new_v4().to_string()),
            },
        )
        .expect("managed identity credential builds");
    let started = Instant::now();
    let e = client
        .tenant("mi-tenant")
        .get_organization()
        .await
        .expect_err("no IMDS here");
    let text = e.to_string();
    assert!(
        text.contains("mi-tenant") && text.contains("managed identity"),
        "{text}"
    );
    assert!(text.contains("169.254.169.254") && text.contains("refused"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the refusal is not retried: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn throttling_is_retried_after_integer_decimal_or_missing_retry_after() {
    let (sim, t) = one_tenant("contoso", json!({})).await;
    let client = client_for(fast_config(&sim), &t);
    let graph = client.tenant(&t.id);
    let control = sim.client();
    graph.get_organization().await.expect("warm the token cache");

    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 1, status(429, Some("1"))))
        .await
        .unwrap();
    let started = Instant::now();
    graph.get_organization().await.expect("integer Retry-After");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1900),
        "{took:?}"
    );

    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 1, status(429, Some("0.5"))))
        .await
        .unwrap();
    let started = Instant::now();
    graph.get_organization().await.expect("decimal Retry-After");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(950),
        "{took:?}"
    );

    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 2, status(429, None)))
        .await
        .unwrap();
    let started = Instant::now();
    graph.get_organization().await.expect("backoff without Retry-After");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());

    // 503 with Retry-After is throttling too.
    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 1, status(503, Some("0.2"))))
        .await
        .unwrap();
    graph.get_organization().await.expect("503 + Retry-After");

    let orgs = requests(&sim, &t.id, Some("/v1.0/organization")).await;
    let statuses: Vec<u16> = orgs.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 429, 200, 429, 200, 429, 429, 200, 503, 200]);

    // Past the budget the classified error comes back with Graph's wait.
    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 5, status(429, Some("0.1"))))
        .await
        .unwrap();
    let e = graph.get_organization().await.expect_err("budget exhausted");
    assert_eq!(
        e.classification(),
        ErrorClass::Throttled {
            retry_after: Duration::from_millis(100)
        }
    );
    assert_eq!(e.status(), Some(429));
    assert!(e.request_id().is_some() && e.client_request_id().is_some(), "{e:?}");
    control.clear_faults(&t.id).await.unwrap();

    // A wait longer than the in-process cap is not slept: handed back at once.
    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 1, status(429, Some("30"))))
        .await
        .unwrap();
    let started = Instant::now();
    let e = graph
        .get_organization()
        .await
        .expect_err("long Retry-After is the queue's job");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        e.classification(),
        ErrorClass::Throttled {
            retry_after: Duration::from_secs(30)
        }
    );
}

#[tokio::test]
async fn a_retry_after_http_date_is_honoured() {
    let (sim, t) = one_tenant("contoso", json!({})).await;
    let client = client_for(fast_config(&sim), &t);
    let graph = client.tenant(&t.id);
    graph.get_organization().await.expect("warm the token cache");
    // RFC 9110 allows an HTTP date; ten minutes ahead is past the in-process cap, so the error
    // comes back at once carrying the wait (today's seconds-only parser fell back to the default).
    let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600));
    sim.client()
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 1, status(429, Some(&at))))
        .await
        .unwrap();
    let e = graph.get_organization().await.expect_err("the wait is the queue's job");
    let wait = e.classification().retry_after().expect("throttled");
    assert!(
        wait > Duration::from_secs(590) && wait <= Duration::from_secs(600),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_401_fetches_a_new_token_once_then_fails() {
    let (sim, t) = one_tenant("contoso", json!({})).await;
    let client = client_for(fast_config(&sim), &t);
    let graph = client.tenant(&t.id);
    let control = sim.client();
    graph.get_organization().await.expect("warm the token cache");
    let token_path = format!("/{}/oauth2", t.id);
    let tokens = async |sim: &tenant_sim::RunningSim| requests(sim, &t.id, Some(&token_path)).await.len();
    assert_eq!(tokens(&sim).await, 1);
    // Graph refuses the cached token once (revoked, say): a new token is fetched and the call works.
    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 1, status(401, None)))
        .await
        .unwrap();
    graph.get_organization().await.expect("a fresh token is accepted");
    assert_eq!(tokens(&sim).await, 2, "exactly one new token");
    // Refused again with the fresh token: permanent, and no third token.
    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 2, status(401, None)))
        .await
        .unwrap();
    let e = graph.get_organization().await.expect_err("a second 401 fails the call");
    assert_eq!(e.status(), Some(401));
    assert_eq!(e.classification(), ErrorClass::Permanent);
    assert_eq!(tokens(&sim).await, 3, "one refresh per call");
}

#[tokio::test]
async fn server_errors_resets_and_timeouts_are_transient_and_retried() {
    let (sim, t) = one_tenant("contoso", json!({})).await;
    let mut config = fast_config(&sim);
    config.timeouts.request = Duration::from_millis(400);
    let client = client_for(config, &t);
    let graph = client.tenant(&t.id);
    let control = sim.client();
    graph.get_organization().await.expect("warm");

    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 2, status(500, None)))
        .await
        .unwrap();
    graph.get_organization().await.expect("two 500s then success");

    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 1, FaultAction::Reset))
        .await
        .unwrap();
    graph.get_organization().await.expect("a reset connection is retried");

    control
        .add_fault(
            &t.id,
            &fault("GET", "/v1.0/organization", 1, FaultAction::Hang { ms: 1500 }),
        )
        .await
        .unwrap();
    graph.get_organization().await.expect("a timeout is retried");

    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 3, status(502, None)))
        .await
        .unwrap();
    let e = graph.get_organization().await.expect_err("three 502s");
    assert!(matches!(e.classification(), ErrorClass::Transient { .. }), "{e}");
    assert_eq!(e.code(), "BadGateway");

    control
        .add_fault(&t.id, &fault("GET", "/v1.0/organization", 3, FaultAction::Reset))
        .await
        .unwrap();
    let e = graph.get_organization().await.expect_err("three resets");
    assert_eq!(e.code(), "ConnectionReset", "{e}");
    assert!(matches!(e.classification(), ErrorClass::Transient { .. }));

    control
        .add_fault(
            &t.id,
            &fault("GET", "/v1.0/organization", 3, FaultAction::Hang { ms: 1000 }),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let e = graph.get_organization().await.expect_err("three timeouts");
    assert_eq!(e.code(), "Timeout", "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timeouts bound each attempt"
    );
}

#[tokio::test]
async fn replication_lag_404s_resolve_and_a_missing_object_ends_permanent_after_the_window() {
    let (sim, t) = one_tenant("contoso", json!({"knobs": {"replication_lag_ms": 1000}})).await;
    let mut config = fast_config(&sim);
    config.retry.max_attempts = 8;
    config.retry.base_backoff = Duration::from_millis(200);
    config.retry.max_backoff = Duration::from_millis(500);
    let client = client_for(config.clone(), &t);
    let graph = client.tenant(&t.id);
    let group = graph
        .create_group(&NewGroup::security("Modern Workplace Devices - Test", "mwtest", None))
        .await
        .unwrap();
    let read = graph.get_group(&group.id).await.expect("visible once replicated");
    assert_eq!(read.display_name, "Modern Workplace Devices - Test");
    let reads = requests(&sim, &t.id, Some(&format!("/v1.0/groups/{}", group.id))).await;
    assert_eq!(reads.first().map(|r| r.status), Some(404), "{reads:?}");
    assert_eq!(reads.last().map(|r| r.status), Some(200));

    // Within the lag window a 404 stays "maybe lag"; past it, permanent.
    config.retry.max_attempts = 2;
    let quick = client_for(config.clone(), &t);
    let e = quick
        .tenant(&t.id)
        .get_group(&uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_err();
    assert!(matches!(e.classification(), ErrorClass::NotFoundMaybeLag { .. }), "{e}");
    assert_eq!(e.code(), "Request_ResourceNotFound");
    config.retry.lag_window = Duration::ZERO;
    let strict = client_for(config, &t);
    let e = strict
        .tenant(&t.id)
        .get_group(&uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_err();
    assert_eq!(e.classification(), ErrorClass::Permanent, "{e}");
}

#[tokio::test]
async fn permanent_errors_surface_the_graph_code_and_duplicates_are_recognised() {
    let (sim, t) = one_tenant("contoso", json!({"users": [{"user_principal_name": "alex"}]})).await;
    let client = client_for(fast_config(&sim), &t);
    let graph = client.tenant(&t.id);
    let upn = "mmdadmin1@contoso.onmicrosoft.com";
    let user = graph.create_user(&new_user(upn)).await.expect("create");
    let found = graph.find_user_by_upn(upn).await.unwrap().expect("found by UPN");
    assert_eq!(found.id, user.id);
    assert!(
        graph
            .find_user_by_upn("nobody@contoso.onmicrosoft.com")
            .await
            .unwrap()
            .is_none()
    );

    let e = graph.create_user(&new_user(upn)).await.expect_err("duplicate UPN");
    assert_eq!(e.status(), Some(400));
    assert_eq!(e.code(), "Request_BadRequest");
    assert!(e.is_object_conflict("userPrincipalName"), "{e}");
    assert_eq!(e.classification(), ErrorClass::Permanent);
    assert_eq!(
        requests(&sim, &t.id, Some("/v1.0/users"))
            .await
            .iter()
            .filter(|r| r.status == 400)
            .count(),
        1
    );

    let group = graph
        .create_group(&NewGroup::security("Modern Workplace Devices - First", "mwfirst", None))
        .await
        .unwrap();
    graph.add_group_member(&group.id, &user.id).await.expect("add member");
    let e = graph
        .add_group_member(&group.id, &user.id)
        .await
        .expect_err("member twice");
    assert!(e.is_reference_already_exists(), "{e}");
    let members = graph.list_group_members(&group.id).await.unwrap();
    assert_eq!(
        members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec![user.id.as_str()]
    );
    graph
        .remove_group_member(&group.id, &user.id)
        .await
        .expect("remove member");
    assert!(graph.list_group_members(&group.id).await.unwrap().is_empty());

    // Missing permission (no Mail.Send granted): 403, permanent, one attempt only.
    let mail = Mail {
        subject: "s".into(),
        body: "b".into(),
        html: false,
        to: vec!["ops@example.com".into()],
    };
    let e = graph.send_mail(&user.id, &mail).await.expect_err("no Mail.Send");
    assert_eq!(e.status(), Some(403));
    assert_eq!(e.code(), "Authorization_RequestDenied");
    assert_eq!(e.classification(), ErrorClass::Permanent);
    assert!(e.to_string().contains("1 attempt"), "{e}");
}

#[tokio::test]
async fn lists_follow_next_links_within_a_bound() {
    let users: Vec<_> = (0..250)
        .map(|i| json!({"user_principal_name": format!("user{i:03}")}))
        .collect();
    let (sim, t) = one_tenant("contoso", json!({"users": users})).await;
    let client = client_for(fast_config(&sim), &t);
    let graph = client.tenant(&t.id);
    let all: Vec<mdops_graph::resources::users::User> = graph
        .list_all("users", &Query::select(mdops_graph::resources::users::USER_SELECT), 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 250);
    let distinct: std::collections::HashSet<_> = all.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(distinct.len(), 250);
    let pages = requests(&sim, &t.id, Some("/v1.0/users")).await;
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages[0].query.contains("%24select") || pages[0].query.contains("$select"),
        "{}",
        pages[0].query
    );

    let mut stream = graph.list::<serde_json::Value>("users", &Query::select(&["id"]), 2);
    let mut seen = 0;
    let err = loop {
        match stream.try_next().await {
            Ok(Some(_)) => seen += 1,
            Ok(None) => panic!("stream ended without hitting the bound"),
            Err(e) => break e,
        }
    };
    assert_eq!(seen, 200);
    assert!(matches!(err, GraphError::TooManyPages { max_pages: 2, .. }), "{err}");
}

#[tokio::test]
async fn batch_resends_only_throttled_items() {
    let users: Vec<_> = (0..25)
        .map(|i| json!({"user_principal_name": format!("user{i:02}")}))
        .collect();
    let (sim, t) = one_tenant("contoso", json!({"users": users})).await;
    let client = client_for(fast_config(&sim), &t);
    let graph = client.tenant(&t.id);
    let domain = "contoso.onmicrosoft.com";
    let control = sim.client();
    control
        .add_fault(
            &t.id,
            &fault(
                "GET",
                &format!("/v1.0/users/user03@{domain}"),
                1,
                status(429, Some("0.3")),
            ),
        )
        .await
        .unwrap();
    control
        .add_fault(
            &t.id,
            &fault(
                "GET",
                &format!("/v1.0/users/user07@{domain}"),
                9,
                status(429, Some("0.1")),
            ),
        )
        .await
        .unwrap();
    let mut items: Vec<BatchItem> = (0..25)
        .map(|i| BatchItem::get(format!("{i}"), format!("/users/user{i:02}@{domain}?$select=id")))
        .collect();
    items.push(BatchItem::get("missing", format!("/users/ghost@{domain}")));
    let results = graph.batch(items).await.expect("batch");
    assert_eq!(results.len(), 26);
    for (i, r) in results.iter().enumerate().take(25) {
        assert_eq!(r.id, i.to_string());
        match i {
            3 => assert_eq!((r.status, r.attempts), (200, 2), "{r:?}"),
            7 => {
                assert_eq!((r.status, r.attempts), (429, 3), "{r:?}");
                let e = r.error(&graph).expect("error");
                assert_eq!(
                    e.classification(),
                    ErrorClass::Throttled {
                        retry_after: Duration::from_millis(100)
                    }
                );
            }
            _ => assert_eq!((r.status, r.attempts), (200, 1), "{r:?}"),
        }
    }
    let missing = &results[25];
    assert_eq!((missing.status, missing.attempts), (404, 1));
    assert_eq!(
        missing.error(&graph).map(|e| e.code().to_string()).as_deref(),
        Some("Request_ResourceNotFound")
    );
    let user = results[0].json::<serde_json::Value>().unwrap();
    assert!(user["id"].is_string(), "{user}");
    // 26 items: two envelopes, then re-sends of items 3 and 7, then 7 once more.
    let envelopes = requests(&sim, &t.id, Some("/v1.0/$batch")).await;
    assert_eq!(envelopes.len(), 4, "{envelopes:?}");
}

#[tokio::test]
async fn typed_helpers_cover_the_onboarding_calls() {
    let (sim, t) = one_tenant(
        "contoso",
        json!({
            "skus": [{"sku_part_number": "SPE_E5", "enabled": 10}],
            "detected_apps": [{"display_name": "Contoso CRM", "version": "1.2", "device_count": 3}],
            "devices": [{"display_name": "PC-001", "operating_system": "Windows"}],
            "mobile_apps": [{"display_name": "Company Portal"}],
        }),
    )
    .await;
    let client = client_for(fast_config(&sim), &t);
    let graph = client.tenant(&t.id);
    let org = graph.get_organization().await.unwrap();
    graph.set_mdm_authority(&org.id).await.expect("MDM authority");
    assert_eq!(sim.client().tenant(&t.id).await.unwrap().mdm_authority, "intune");

    let skus = graph.list_subscribed_skus().await.unwrap();
    assert_eq!(skus.len(), 1);
    assert_eq!(skus[0].sku_part_number, "SPE_E5");
    let user = graph
        .create_user(&new_user("mmdadmin2@contoso.onmicrosoft.com"))
        .await
        .unwrap();
    let license = mdops_graph::resources::users::AssignedLicense {
        sku_id: skus[0].sku_id,
        disabled_plans: vec![],
    };
    graph
        .assign_license(&user.id, &[license], &[])
        .await
        .expect("assign licence");
    assert_eq!(graph.list_subscribed_skus().await.unwrap()[0].consumed_units, 1);
    graph
        .patch_user(&user.id, &json!({"displayName": "MMD Admin 2"}))
        .await
        .unwrap();
    assert_eq!(
        graph.get_user(&user.id).await.unwrap().display_name.as_deref(),
        Some("MMD Admin 2")
    );

    let roles = graph.list_directory_roles().await.unwrap();
    let role = roles.first().expect("an activated role");
    graph
        .add_directory_role_member(&role.id, &user.id)
        .await
        .expect("role member");
    assert!(
        graph
            .list_directory_role_members(&role.id)
            .await
            .unwrap()
            .iter()
            .any(|m| m.id == user.id)
    );
    assert!(
        graph
            .user_member_of(&user.id)
            .await
            .unwrap()
            .iter()
            .any(|m| m.id == role.id)
    );

    let group = graph
        .create_group(&NewGroup::security("MW Broad", "mwbroad", Some("Broad ring")))
        .await
        .unwrap();
    assert_eq!(
        graph
            .find_group_by_mail_nickname("mwbroad")
            .await
            .unwrap()
            .map(|g| g.id),
        Some(group.id.clone())
    );
    assert_eq!(graph.find_groups_by_display_name("MW Broad").await.unwrap().len(), 1);
    graph
        .patch_group(&group.id, &json!({"description": "Broad ring (patched)"}))
        .await
        .unwrap();

    let config = graph
        .create_device_configuration(&json!({
            "@odata.type": "#microsoft.graph.windowsUpdateForBusinessConfiguration",
            "displayName": "MW Update Policy [Broad]",
            "qualityUpdatesDeferralPeriodInDays": 7,
        }))
        .await
        .expect("create device configuration");
    graph
        .assign_device_configuration(&config.id, &[group.id.as_str()])
        .await
        .expect("assign");
    let assignments = graph.list_device_configuration_assignments(&config.id).await.unwrap();
    assert_eq!(
        assignments.iter().filter_map(|a| a.group_id()).collect::<Vec<_>>(),
        vec![group.id.as_str()]
    );
    let found = graph
        .list_device_configurations(Some("displayName eq 'MW Update Policy [Broad]'"))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);

    assert_eq!(graph.list_detected_apps().await.unwrap()[0].display_name, "Contoso CRM");
    assert_eq!(graph.list_devices(None).await.unwrap().len(), 1);
    assert_eq!(
        graph.list_mobile_apps(None).await.unwrap()[0].display_name,
        "Company Portal"
    );
    let invitation = graph
        .create_invitation(&mdops_graph::resources::directory::NewInvitation {
            invited_user_email_address: "engineer@mmd.example.com".into(),
            invited_user_display_name: Some("Engineer".into()),
            invite_redirect_url: "https://myapps.microsoft.com".into(),
            send_invitation_message: false,
        })
        .await
        .expect("invitation");
    assert!(!invitation.invited_user.id.is_empty());
}

#[tokio::test]
async fn the_limiter_keeps_intune_writes_under_the_quota() {
    // The simulated tenant allows 5 Intune writes per second; the client is configured for 4.
    let (sim, t) = one_tenant(
        "contoso",
        json!({"knobs": {"intune_write_limit": 5, "intune_write_window_ms": 1000}}),
    )
    .await;
    let mut config = fast_config(&sim);
    config.limiter.intune_writes = mdops_graph::BucketSettings {
        permits: 4,
        per: Duration::from_secs(1),
    };
    config.limiter.max_wait = Duration::from_secs(5);
    let client = client_for(config.clone(), &t);
    let graph = client.tenant(&t.id);
    graph.get_organization().await.expect("warm");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let graph = graph.clone();
        tasks.push(tokio::spawn(async move {
            graph
                .create_device_configuration(&json!({
                    "@odata.type": "#microsoft.graph.windowsUpdateForBusinessConfiguration",
                    "displayName": format!("ring {i}"),
                }))
                .await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("create");
    }
    let took = started.elapsed();
    // A burst of 4, then 4 per second: the last of 12 goes out after ~2 s.
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let writes = requests(&sim, &t.id, Some("/v1.0/deviceManagement/deviceConfigurations")).await;
    assert_eq!(writes.len(), 12, "no write was throttled and retried: {writes:?}");
    assert!(writes.iter().all(|r| r.status == 201), "{writes:?}");

    // Past max_wait the call is refused locally, as throttling the queue should carry. (A new
    // client has a fresh limiter: let the simulator's window empty first.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    config.limiter.max_wait = Duration::from_millis(100);
    let strict = client_for(config, &t);
    let graph = strict.tenant(&t.id);
    let mut limited = None;
    for i in 0..6 {
        let body = json!({"@odata.type": "#microsoft.graph.windowsUpdateForBusinessConfiguration", "displayName": format!("x{i}")});
        if let Err(e) = graph.create_device_configuration(&body).await {
            limited = Some(e);
            break;
        }
    }
    let e = limited.expect("the fifth or sixth write is limited");
    assert_eq!(e.code(), "Limited", "{e}");
    assert!(
        matches!(e.classification(), ErrorClass::Throttled { retry_after } if retry_after > Duration::from_millis(100))
    );
}

#[tokio::test]
async fn a_post_whose_answer_was_lost_is_never_re_sent() {
    let (sim, t) = one_tenant("contoso", json!({})).await;
    let mut config = fast_config(&sim);
    config.timeouts.request = Duration::from_millis(400);
    let client = client_for(config, &t);
    let graph = client.tenant(&t.id);
    let control = sim.client();
    graph.get_organization().await.expect("warm");
    let lost = [
        FaultAction::CommitThenReset,
        FaultAction::CommitThenStatus { status: 504 },
        FaultAction::CommitThenHang { ms: 1_000 },
    ];
    for (i, action) in lost.into_iter().enumerate() {
        control
            .add_fault(&t.id, &fault("POST", "/v1.0/groups", 1, action.clone()))
            .await
            .unwrap();
        let e = graph
            .create_group(&NewGroup::security(&format!("Lost {i}"), &format!("lost{i}"), None))
            .await
            .expect_err("the answer was lost");
        assert!(e.outcome_unknown(), "{action:?}: {e}");
        assert!(e.reason().contains("outcome unknown"), "{}", e.reason());
        assert!(matches!(e.classification(), ErrorClass::Transient { .. }), "{e}");
    }
    let posts: Vec<_> = requests(&sim, &t.id, Some("/v1.0/groups"))
        .await
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 3, "each create sent once: {posts:?}");
    let groups = control.counts(&t.id).await.unwrap()["groups"];
    assert_eq!(groups, 3, "three creates, three groups, no second copy");

    // A 429 means Graph did not carry the request out: a throttled create is retried.
    control
        .add_fault(&t.id, &fault("POST", "/v1.0/groups", 1, status(429, Some("0.1"))))
        .await
        .unwrap();
    graph
        .create_group(&NewGroup::security("Throttled", "throttled", None))
        .await
        .expect("a throttled create is sent again");
    // A read whose answer was lost is still retried.
    control
        .add_fault(&t.id, &fault("GET", "/v1.0/groups", 1, FaultAction::CommitThenReset))
        .await
        .unwrap();
    graph
        .find_groups_by_display_name("Throttled")
        .await
        .expect("a read is retried after a reset");
    assert_eq!(control.counts(&t.id).await.unwrap()["groups"], 4);
}
