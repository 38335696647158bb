//! Tenants with and without an Intune licence, as `GET /subscribedSkus` shows them.

mod common;

use common::*;
use reqwest::Method;
use tenant_sim::seeds::{SkuSeed, TenantSeed};

fn plans(skus: &serde_json::Value) -> Vec<String> {
    skus["value"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["servicePlans"].as_array().unwrap().iter())
        .map(|p| p["servicePlanName"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_tenant_has_intune_unless_its_seed_says_it_has_none() {
    let mut bare = TenantSeed::new("bare");
    bare.apps = seed("x", 0, 0).apps;
    let sim = sim_with(bare).await;
    let tok = token(&sim, "bare", FULL_APP).await;
    let (_, skus) = graph(&sim, &tok, Method::GET, "/subscribedSkus", None).await;
    assert!(plans(&skus).contains(&"INTUNE_A".to_string()), "{skus}");

    let mut without = seed("fabrikam", 1, 0);
    without.objects.skus = vec![SkuSeed::new("ENTERPRISEPREMIUM", 5)];
    without.without_intune = true;
    let sim = sim_with(without).await;
    let tok = token(&sim, "fabrikam", FULL_APP).await;
    let (_, skus) = graph(&sim, &tok, Method::GET, "/subscribedSkus", None).await;
    assert_eq!(skus["value"].as_array().unwrap().len(), 1);
    assert!(!plans(&skus).iter().any(|p| p.starts_with("INTUNE")), "{skus}");

    let mut contradictory = seed("contoso", 1, 1);
    contradictory.without_intune = true;
    let refused = tenant_sim::start("127.0.0.1:0", vec![contradictory])
        .await
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("without_intune"), "{refused}");
}
