//! Attacks on temporary access, over HTTP against `mdops access serve` with tokens from the
//! simulated provider tenant: a table of cases, each asserting the status the API answers AND that
//! nothing changed: the request record, its trail, its refusals (unless the case is one whose
//! refusal is recorded), the Graph request log (no mail, no membership) and the JWKS fetches.
//! Plus: a JWKS endpoint that hangs holds no request whose key is cached, and a process killed right
//! after a decision keeps the decision's audit entry (they commit in one transaction).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mdops_core::access::{AccessRequests, audit_subject, refusals_subject};
use mdops_core::store::Store;
use mdops_core::tenant::{CredentialRef, Tenant, TenantRegistry, TenantSettings};
use mdops_local::SqliteBackend;
use secrecy::SecretString;
use serde_json::{Value, json};
use tenant_sim::SimClient;
use tenant_sim::control::types::{AppTokenRequest, UserTokenRequest};
use tenant_sim::faults::{FaultAction, FaultSpec, MAX_HANG_MS};
use tenant_sim::seeds::{AppSeed, GroupSeed, PRODUCT_PERMISSIONS, TenantSeed};
use tenant_sim::store::RequestLogQuery;

const MDOPS: &str = env!("CARGO_BIN_EXE_mdops");
const AUDIENCE: &str = "api://mdops-access";
const SOC: &str = "Modern Workplace Roles-SOC";
const TEAM_ROLE: &str = "Access.SOC";
const ALICE: &str = "alice@provider.onmicrosoft.com";
const BOB: &str = "bob@provider.onmicrosoft.com";
const EVE: &str = "eve@provider.onmicrosoft.com";
/// Refused approvals thrown at one request to bury its trail.
const FLOOD: usize = 200;
/// Bound of every wait here (in polls of 20 ms).
const POLLS: usize = 1500;

/// Simulated tenants (provider, customer, and a second allowed caller tenant), registered and
/// configured in an embedded database.
struct World {
    sim: tenant_sim::RunningSim,
    control: SimClient,
    provider: String,
    customer: String,
    /// A second tenant on the API's allow-list (its keys are fetched separately).
    partner: String,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let secret = format!("access-attacks-{}", uuid::Uuid::new_v4());
        let mut seeds = Vec::new();
        let mut ids = Vec::new();
        for name in ["provider", "fabrikam", "partner"] {
            let mut seed = TenantSeed::new(name);
            let id = uuid::Uuid::new_v4();
            let client = uuid::Uuid::new_v4();
            seed.id = Some(id);
            seed.apps.push(AppSeed {
                client_id: client,
                display_name: None,
                secret: Some(SecretString::from(secret.clone())),
                certificates: Vec::new(),
                permissions: PRODUCT_PERMISSIONS.iter().map(|p| p.to_string()).collect(),
            });
            seed.objects.groups.push(GroupSeed {
                display_name: SOC.into(),
                id: None,
                members: Vec::new(),
                is_assignable_to_role: true,
            });
            seeds.push(seed);
            ids.push((id.to_string(), client.to_string(), name));
        }
        let sim = tenant_sim::start("127.0.0.1:0", seeds).await.unwrap();
        let control = SimClient::new(sim.url());
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mdops.db");
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, &secret).unwrap();
        {
            let backend = SqliteBackend::open(&db).unwrap();
            for (id, client, name) in &ids[..2] {
                TenantRegistry::new(backend.store())
                    .add(&Tenant {
                        tenant_id: id.parse().unwrap(),
                        domain: format!("{name}.onmicrosoft.com").parse().unwrap(),
                        name: name.to_string(),
                        client_id: client.clone(),
                        credential: CredentialRef::File {
                            path: secret_file.display().to_string(),
                        },
                        settings: TenantSettings::default(),
                        added_at: chrono::Utc::now(),
                    })
                    .await
                    .unwrap();
            }
        }
        let w = World {
            sim,
            control,
            provider: ids[0].0.clone(),
            customer: ids[1].0.clone(),
            partner: ids[2].0.clone(),
            db,
            _dir: dir,
        };
        let out = w
            .mdops()
            .args([
                "access",
                "configure",
                "--provider-tenant",
                &w.provider,
                "--team-roles",
                TEAM_ROLE,
                "--team-alias",
                "team@provider.onmicrosoft.com",
                "--service-mailbox",
                "mdops@provider.onmicrosoft.com",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        w
    }

    fn mdops(&self) -> Command {
        let mut c = Command::new(MDOPS);
        c.env_remove("MDOPS_ACCESS_TOKEN").env_remove("MDOPS_ACCESS_TOKEN_FILE");
        c.arg("--db")
            .arg(&self.db)
            .arg("--sim-url")
            .arg(format!("{}/", self.sim.url()));
        c
    }

    /// Starts `mdops access serve` (with `env`); returns the process and its address.
    async fn serve(&self, env: &[(&str, &str)]) -> (Child, String) {
        let tenants = format!("{},{}", self.provider, self.partner);
        let mut child = self
            .mdops()
            .envs(env.iter().copied())
            .args([
                "access",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--audience",
                AUDIENCE,
                "--tenants",
                &tenants,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start serve");
        let stdout = child.stdout.take().unwrap();
        let api = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line.trim().to_string()
        })
        .await
        .unwrap();
        assert!(api.starts_with("http://127.0.0.1:"), "{api}");
        (child, api)
    }

    async fn token(&self, req: UserTokenRequest) -> String {
        self.token_in(&self.provider, req).await
    }

    async fn token_in(&self, tenant: &str, req: UserTokenRequest) -> String {
        self.control.issue_user_token(tenant, &req).await.unwrap().access_token
    }

    /// A token of `upn` in the provider tenant with the team role.
    async fn member(&self, upn: &str) -> String {
        self.token(person(upn, &[TEAM_ROLE])).await
    }

    /// JWKS fetches the simulator answered for `tenant`.
    async fn jwks_gets(&self, tenant: &str) -> usize {
        self.log(&format!("/{tenant}/discovery/")).await
    }

    async fn log(&self, prefix: &str) -> usize {
        self.control
            .requests(&RequestLogQuery {
                path_prefix: Some(prefix.into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .len()
    }

    /// Everything a refused call must leave as it was.
    async fn snapshot(&self, id: &str) -> Snapshot {
        let backend = SqliteBackend::open(&self.db).unwrap();
        let stored = AccessRequests::new(backend.store()).get(id).await.unwrap().unwrap();
        let entries = |subject: String| {
            let store = backend.store().clone();
            async move {
                store
                    .audit(&subject, 10_000)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| json!({"actor": e.actor, "action": e.action, "detail": e.detail}))
                    .collect::<Vec<_>>()
            }
        };
        Snapshot {
            request: json!({"request": stored.request, "version": stored.version}),
            trail: entries(audit_subject(id)).await,
            refusals: entries(refusals_subject(id)).await.len(),
            graph: self.log("/v1.0/").await,
            jwks: self.jwks_gets(&self.provider).await,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    request: Value,
    trail: Vec<Value>,
    refusals: usize,
    graph: usize,
    jwks: usize,
}

fn person(upn: &str, roles: &[&str]) -> UserTokenRequest {
    UserTokenRequest {
        audience: AUDIENCE.into(),
        upn: upn.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    }
}

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let dec = |s: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (dec(it.next().unwrap()), dec(it.next().unwrap()))
}

fn enc(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// `token` with its header or payload replaced (the signature left as it was).
fn forge(token: &str, header: Option<&Value>, payload: Option<&Value>) -> String {
    let s: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        header.map(enc).unwrap_or_else(|| s[0].to_string()),
        payload.map(enc).unwrap_or_else(|| s[1].to_string()),
        s[2]
    )
}

async fn call(api: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{api}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("API answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Alice files a request; returns its id.
async fn file_request(w: &World, api: &str) -> String {
    let (status, body) = call(
        api,
        "POST",
        "/requests",
        &w.member(ALICE).await,
        Some(json!({
            "tenant": w.customer, "role_group": SOC, "justification": "investigate alert 42",
            "ticket": "INC0042", "duration_minutes": 30,
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// One attack: who calls what, what the API answers, and how many refusals it records.
struct Case {
    name: &'static str,
    token: String,
    method: &'static str,
    path: String,
    status: u16,
    /// Refusals recorded apart from the trail (a team member's or the requester's).
    refusals: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_are_refused_and_change_nothing() {
    let w = World::new().await;
    let (mut serve, api) = w.serve(&[]).await;
    let id = file_request(&w, &api).await;
    let approve = format!("/requests/{id}/approve");
    let alice = w.member(ALICE).await;
    let bob = w.member(BOB).await;
    let (header, payload) = parts(&bob);
    let alice_oid = parts(&alice).1["oid"].as_str().unwrap().to_string();

    // HS256 with the provider's public key (PEM) as the secret: the classic algorithm confusion.
    let jwks: Value = reqwest::get(w.control.jwks_uri(&w.provider))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    let public = rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(&n), rsa::BigUint::from_bytes_be(&e)).unwrap();
    let pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(&public, rsa::pkcs8::LineEnding::LF).unwrap();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = header["kid"].as_str().map(str::to_string);
    let hs256 = jsonwebtoken::encode(
        &hs,
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(pem.as_bytes()).unwrap(),
    )
    .unwrap();

    let mut tampered = payload.clone();
    tampered["roles"] = json!([TEAM_ROLE, "Access.Approver"]);
    let mut none_header = header.clone();
    none_header["alg"] = "none".into();
    let mut unknown_kid = header.clone();
    unknown_kid["kid"] = "attacker-key".into();
    let omit = |claim: &str| UserTokenRequest {
        omit: vec![claim.to_string()],
        ..person(BOB, &[TEAM_ROLE])
    };
    let app_token = {
        let info = w.control.tenant(&w.provider).await.unwrap();
        w.control
            .issue_app_token(
                &w.provider,
                &AppTokenRequest {
                    client_id: info.apps[0].clone(),
                    lifetime_secs: None,
                },
            )
            .await
            .unwrap()
            .access_token
    };
    let eve = w.token(person(EVE, &[])).await;
    // Alice renamed: a new UPN, the same object id.
    let renamed = w
        .token(UserTokenRequest {
            oid: Some(alice_oid.clone()),
            ..person("alice.renamed@provider.onmicrosoft.com", &[TEAM_ROLE])
        })
        .await;

    let token_case = |name, token: String| Case {
        name,
        token,
        method: "POST",
        path: approve.clone(),
        status: 401,
        refusals: 0,
    };
    let cases = vec![
        token_case(
            "alg none",
            format!("{}.{}.", enc(&json!({"alg": "none", "typ": "JWT"})), enc(&payload)),
        ),
        token_case("alg none, signature kept", forge(&bob, Some(&none_header), None)),
        token_case("HS256 signed with the public key", hs256),
        token_case("unknown kid", forge(&bob, Some(&unknown_kid), None)),
        token_case("tampered payload", forge(&bob, None, Some(&tampered))),
        token_case(
            "expired",
            w.token(UserTokenRequest {
                lifetime_secs: Some(-600),
                ..person(BOB, &[TEAM_ROLE])
            })
            .await,
        ),
        token_case(
            "not yet valid (nbf)",
            w.token(UserTokenRequest {
                not_before_secs: Some(600),
                ..person(BOB, &[TEAM_ROLE])
            })
            .await,
        ),
        token_case("wrong issuer (an app token, v1 issuer)", app_token),
        token_case(
            "wrong audience",
            w.token(UserTokenRequest {
                audience: "api://someone-else".into(),
                ..person(BOB, &[TEAM_ROLE])
            })
            .await,
        ),
        token_case(
            "another tenant",
            w.token_in(&w.customer, person("admin@fabrikam.onmicrosoft.com", &[TEAM_ROLE]))
                .await,
        ),
        token_case("missing oid", w.token(omit("oid")).await),
        token_case("missing tid", w.token(omit("tid")).await),
        token_case("missing kid", w.token(omit("kid")).await),
        token_case(
            "oversized token",
            forge(
                &bob,
                None,
                Some(&{
                    let mut p = payload.clone();
                    p["groups"] = json!(vec!["00000000-0000-0000-0000-000000000000"; 1000]);
                    p
                }),
            ),
        ),
        Case {
            name: "a renamed user approving their own request",
            token: renamed.clone(),
            method: "POST",
            path: approve.clone(),
            status: 403,
            refusals: 1,
        },
        Case {
            name: "the requester approving their own request",
            token: alice.clone(),
            method: "POST",
            path: approve.clone(),
            status: 403,
            refusals: 1,
        },
        Case {
            name: "a non-member reading a request",
            token: eve.clone(),
            method: "GET",
            path: format!("/requests/{id}"),
            status: 403,
            refusals: 0,
        },
        Case {
            name: "a non-member reading a trail",
            token: eve.clone(),
            method: "GET",
            path: format!("/requests/{id}/audit"),
            status: 403,
            refusals: 0,
        },
        Case {
            name: "a non-member approving",
            token: eve.clone(),
            method: "POST",
            path: approve.clone(),
            status: 403,
            refusals: 0,
        },
    ];
    // Keys are cached by the request filed above: no case may make the API fetch them again.
    for case in cases {
        let before = w.snapshot(&id).await;
        let (status, body) = call(&api, case.method, &case.path, &case.token, None).await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        if status == 401 {
            assert_eq!(
                body["error"], "invalid or missing access token",
                "{}: no detail leaks",
                case.name
            );
        }
        let after = w.snapshot(&id).await;
        let expected = Snapshot {
            refusals: before.refusals + case.refusals,
            ..before.clone()
        };
        assert_eq!(after, expected, "{}: nothing changed", case.name);
    }

    // 200 refused approvals (the requester's, recorded apart; a non-member's, only logged) do not
    // bury the real trail: its first page, newest first, is still the real entries.
    let before = w.snapshot(&id).await;
    for i in 0..FLOOD {
        let token = if i % 2 == 0 { &alice } else { &eve };
        let (status, _) = call(&api, "POST", &approve, token, None).await;
        assert_eq!(status, 403);
    }
    let after = w.snapshot(&id).await;
    assert_eq!(
        after,
        Snapshot {
            refusals: before.refusals + FLOOD / 2,
            ..before.clone()
        },
        "refusals are kept apart from the trail"
    );
    let (status, body) = call(&api, "POST", &approve, &bob, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&api, "GET", &format!("/requests/{id}/audit?limit=2"), &bob, None).await;
    assert_eq!(status, 200, "{body}");
    let actions: Vec<&str> = body["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["approved", "requested"], "newest first: {body}");
    let bob_oid = parts(&bob).1["oid"].as_str().unwrap().to_string();
    assert_eq!(body["audit"][0]["actor"], format!("user:{}/{bob_oid}", w.provider));

    serve.kill().unwrap();
    let _ = serve.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_jwks_holds_no_request_whose_key_is_cached() {
    let w = World::new().await;
    let (mut serve, api) = w.serve(&[]).await;
    let id = file_request(&w, &api).await;
    let bob = w.member(BOB).await;
    // The partner tenant's keys are not cached yet; fetching them hangs until the test releases it.
    w.control
        .add_fault(
            &w.partner,
            &FaultSpec {
                method: Some("GET".into()),
                path_prefix: format!("/{}/discovery/v2.0/keys", w.partner),
                count: 1,
                action: FaultAction::Hang { ms: MAX_HANG_MS },
            },
        )
        .await
        .unwrap();
    let partner_token = w
        .token_in(&w.partner, person("someone@partner.onmicrosoft.com", &[TEAM_ROLE]))
        .await;
    let held = tokio::spawn({
        let api = api.clone();
        async move { call(&api, "GET", "/requests", &partner_token, None).await }
    });
    for _ in 0..POLLS {
        if w.control.faults(&w.partner).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        w.control.faults(&w.partner).await.unwrap().is_empty(),
        "the JWKS fetch arrived"
    );
    // While it is held, callers whose keys are cached are answered.
    let before = w.snapshot(&id).await;
    for _ in 0..5 {
        let (status, body) = call(&api, "GET", &format!("/requests/{id}"), &bob, None).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(!held.is_finished(), "the JWKS fetch is still held");
    assert_eq!(w.jwks_gets(&w.partner).await, 0, "the held fetch has not been answered");
    w.control.clear_faults(&w.partner).await.unwrap();
    let (status, _) = held.await.unwrap();
    assert_eq!(status, 401, "no keys, no entry");
    assert_eq!(w.snapshot(&id).await, before, "nothing changed");
    serve.kill().unwrap();
    let _ = serve.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_right_after_a_decision_keeps_its_audit_entry() {
    let w = World::new().await;
    let (mut serve, api) = w.serve(&[]).await;
    let id = file_request(&w, &api).await;
    serve.kill().unwrap();
    let _ = serve.wait();
    // This one dies the moment the approval commits, before it answers or queues anything.
    let (mut dying, api) = w
        .serve(&[(
            mdops_core::crash_point::CRASH_AT_ENV,
            mdops_core::crash_point::ACCESS_DECIDED,
        )])
        .await;
    let bob = w.member(BOB).await;
    let answered = reqwest::Client::new()
        .post(format!("{api}/requests/{id}/approve"))
        .bearer_auth(&bob)
        .send()
        .await;
    assert!(answered.is_err(), "the process died before answering: {answered:?}");
    let status = dying.wait().unwrap();
    assert!(!status.success(), "it aborted at the crash point");
    // After a restart the decision and its entry are both there.
    let (mut serve, api) = w.serve(&[]).await;
    let (status, body) = call(&api, "GET", &format!("/requests/{id}"), &bob, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request"]["state"], "approved", "{body}");
    assert_eq!(body["audit"][0]["action"], "approved", "{body}");
    let bob_oid = parts(&bob).1["oid"].as_str().unwrap().to_string();
    assert_eq!(body["audit"][0]["actor"], format!("user:{}/{bob_oid}", w.provider));
    serve.kill().unwrap();
    let _ = serve.wait();
}
