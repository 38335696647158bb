//! Fuzzing the decoding of stored records (SQLite): a record damaged the way a hand edit, a bad
//! migration or an older build would leave it (a field dropped, renamed, of the wrong type, huge,
//! nested deep; the text cut or a byte replaced) is never a panic: reading it gives `Corrupt`
//! naming the record's key and the field at fault (or saying the body is not JSON). The typed
//! readers covered: the tenant registry and the access settings; the raw row decode under them
//! is the one every record goes through. Cases per property: `MDOPS_FUZZ_CASES` (default 256).

use mdops_core::access::{AccessSettings, load_settings, save_settings};
use mdops_core::store::{Key, Store, StoreError};
use mdops_core::tenant::{CredentialRef, Domain, Tenant, TenantId, TenantRegistry, TenantSettings};
use mdops_fuzz::{Mutated, check, config, mutated};
use mdops_local::SqliteBackend;
use proptest::test_runner::{TestCaseError, TestRunner};

struct Db {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    backend: SqliteBackend,
}

fn db() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mdops.db");
    let backend = SqliteBackend::open(&path).expect("open database");
    Db {
        _dir: dir,
        path,
        backend,
    }
}

/// Writes `bytes` as the stored body of `key` (as a hand edit would).
fn damage(db: &Db, key: &Key, input: &Mutated) {
    let conn = rusqlite::Connection::open(&db.path).expect("open database file");
    let changed = conn
        .execute(
            "UPDATE records SET body = ?1 WHERE partition = ?2 AND sort = ?3",
            rusqlite::params![input.text(), key.partition, key.sort],
        )
        .expect("damage record");
    assert_eq!(changed, 1);
}

fn corrupt_reason<T>(result: Result<T, StoreError>) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(StoreError::Corrupt { reason, .. }) => Err(reason),
        Err(other) => Err(format!("not a Corrupt error: {other}")),
    }
}

fn tenant() -> Tenant {
    let mut settings = TenantSettings::default();
    for (name, value) in [
        ("account_prefix", "mmd"),
        ("usage_location", "NL"),
        ("service_account_skus", "SPE_E5,EMS"),
        ("access_max_hours", "4"),
        ("deferral.fast.quality_days", "7"),
    ] {
        settings.set(name, value).expect("a valid setting");
    }
    Tenant {
        tenant_id: "5f4d3a2b-9c1e-4b7a-8d6f-0e2c1a3b4d5e".parse().unwrap(),
        domain: "contoso.onmicrosoft.com".parse::<Domain>().unwrap(),
        name: "Contoso".into(),
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        credential: CredentialRef::Env {
            var: "CONTOSO_SECRET".into(),
        },
        settings,
        added_at: chrono::Utc::now(),
    }
}

#[test]
fn damaged_tenant_records_are_refused_naming_the_field() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = db();
    let store: &dyn Store = db.backend.store();
    let t = tenant();
    rt.block_on(TenantRegistry::new(store).add(&t)).unwrap();
    let id: TenantId = t.tenant_id.clone();
    let key = Key::new(format!("tenant#{id}"), "registration");
    let valid = rt.block_on(store.get(&key)).unwrap().expect("stored").body;
    TestRunner::new(config())
        .run(&mutated(valid), |input| {
            damage(&db, &key, &input);
            let result = rt.block_on(TenantRegistry::new(store).get(&id));
            let result = match result {
                Err(mdops_core::tenant::RegistryError::Store(e)) => corrupt_reason::<()>(Err(e)),
                Err(other) => Err(format!("not a store error: {other}")),
                Ok(_) => Ok(()),
            };
            check(&input, &result)
        })
        .unwrap();
}

#[test]
fn damaged_access_settings_are_refused_naming_the_field() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = db();
    let store: &dyn Store = db.backend.store();
    let settings = AccessSettings {
        provider_tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".parse().unwrap()),
        team_roles: vec!["Access.SOC".into()],
        ..AccessSettings::default()
    };
    rt.block_on(save_settings(store, &settings)).unwrap();
    let key = Key::new("config#access", "settings");
    let valid = rt.block_on(store.get(&key)).unwrap().expect("stored").body;
    TestRunner::new(config())
        .run(&mutated(valid), |input| {
            damage(&db, &key, &input);
            let result = corrupt_reason(rt.block_on(load_settings(store)));
            check(&input, &result).map_err(|e| TestCaseError::fail(format!("{e}")))
        })
        .unwrap();
}
