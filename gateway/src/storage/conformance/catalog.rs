//! The catalog's contract as tests (see the parent module): what a change returns, what
//! reads see after it, the plugin records' numbering, secrets and deletion rules.

use std::collections::BTreeMap;

use hookgate_plugin_host::Hook;
use serde_json::json;

use crate::{
    model::webhook::{Webhook, WebhookStatus, parse_spec},
    storage::{
        Catalog,
        catalog::{EventType, NewPluginVersion, PluginHead, PluginSecret, PluginVersion, Tenant},
    },
};

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: Some(format!("{id} inc")),
        created_at: 1,
    }
}

fn event_type(name: &str) -> EventType {
    EventType {
        name: name.into(),
        description: None,
        schema: Some(json!({"type": "object"})),
        created_at: 1,
        updated_at: 1,
    }
}

/// A webhook with a secret (HMAC), so the round trip shows secrets survive storage.
fn webhook(id: &str) -> Webhook {
    let spec = parse_spec(json!({
        "url": "https://erp.example.com/hook",
        "authentication": {"type": "hmac", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
    }))
    .unwrap();
    Webhook {
        id: id.into(),
        status: WebhookStatus::Running,
        created_at: 1,
        updated_at: 1,
        spec,
    }
}

fn component(sha256: &str) -> NewPluginVersion {
    NewPluginVersion {
        sha256: sha256.into(),
        size: 100,
        exports: vec![Hook::Filter],
    }
}

pub async fn tenants_are_created_once_and_keys_authenticate(catalog: &dyn Catalog) {
    let issued = catalog
        .create_tenant(&tenant("acme"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        catalog
            .create_tenant(&tenant("acme"))
            .await
            .unwrap()
            .is_none(),
        "id taken"
    );
    let stored = catalog.tenant("acme").await.unwrap().expect("created");
    assert_eq!(
        (stored.id.as_str(), stored.name.as_deref()),
        ("acme", Some("acme inc"))
    );
    assert!(catalog.tenant("globex").await.unwrap().is_none());
    assert_eq!(
        catalog
            .authenticate_key(&issued.api_key)
            .await
            .unwrap()
            .as_deref(),
        Some("acme")
    );
    let forged = format!("{}x", issued.api_key);
    assert_eq!(catalog.authenticate_key(&forged).await.unwrap(), None);
    assert_eq!(catalog.authenticate_key("hgk_nothing").await.unwrap(), None);

    let second = catalog.issue_key("acme", 2).await.unwrap();
    assert_eq!(catalog.keys_of("acme").await.unwrap().len(), 2);
    assert!(
        !catalog.revoke_key("other", &second.key_id).await.unwrap(),
        "not its key"
    );
    assert!(catalog.revoke_key("acme", &second.key_id).await.unwrap());
    assert_eq!(
        catalog.authenticate_key(&second.api_key).await.unwrap(),
        None
    );
    assert_eq!(
        catalog
            .authenticate_key(&issued.api_key)
            .await
            .unwrap()
            .as_deref(),
        Some("acme"),
        "the other key still works"
    );
}

pub async fn listings_page_in_key_order(catalog: &dyn Catalog) {
    for id in ["c", "a", "b"] {
        catalog.create_tenant(&tenant(id)).await.unwrap();
    }
    let (first, done) = catalog.tenants_page(None, 2).await.unwrap();
    let ids: Vec<_> = first.iter().map(|t| t.id.as_str()).collect();
    assert_eq!((ids, done), (vec!["a", "b"], false));
    let (rest, done) = catalog.tenants_page(Some("b"), 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(done);

    for name in ["order.paid", "order.created"] {
        assert!(
            catalog
                .create_event_type("a", &event_type(name))
                .await
                .unwrap()
        );
    }
    assert!(
        !catalog
            .create_event_type("a", &event_type("order.paid"))
            .await
            .unwrap()
    );
    let (types, done) = catalog.event_types_page("a", None, 10).await.unwrap();
    let names: Vec<_> = types.iter().map(|t| t.name.as_str()).collect();
    assert_eq!((names, done), (vec!["order.created", "order.paid"], true));
    assert!(
        catalog
            .event_types_page("b", None, 10)
            .await
            .unwrap()
            .0
            .is_empty(),
        "per tenant"
    );
}

pub async fn webhooks_round_trip_with_their_secrets(catalog: &dyn Catalog) {
    catalog.create_tenant(&tenant("acme")).await.unwrap();
    let mut w1 = webhook("w1");
    assert!(catalog.create_webhook("acme", &w1).await.unwrap());
    assert!(
        !catalog.create_webhook("acme", &w1).await.unwrap(),
        "id taken"
    );
    let read = catalog.webhook("acme", "w1").await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(&read.spec).unwrap(),
        serde_json::to_value(&w1.spec).unwrap(),
        "every field, the secret in plaintext, comes back"
    );
    w1.status = WebhookStatus::Stopped;
    catalog.put_webhook("acme", &w1).await.unwrap();
    assert_eq!(
        catalog.webhook("acme", "w1").await.unwrap().unwrap().status,
        WebhookStatus::Stopped
    );
    catalog
        .create_webhook("acme", &webhook("w2"))
        .await
        .unwrap();
    catalog
        .create_webhook("beta", &webhook("w1"))
        .await
        .unwrap();
    assert_eq!(catalog.count_webhooks("acme").await.unwrap(), 2);
    assert_eq!(catalog.all_webhooks_of("acme").await.unwrap().len(), 2);
    let (page, done) = catalog.webhooks_page("acme", Some("w1"), 10).await.unwrap();
    assert_eq!((page.len(), page[0].id.as_str(), done), (1, "w2", true));
    let mut ids = catalog.all_webhook_ids().await.unwrap();
    ids.sort();
    assert_eq!(
        ids,
        [("acme", "w1"), ("acme", "w2"), ("beta", "w1")].map(|(t, w)| (t.into(), w.into()))
    );
    assert!(catalog.delete_webhook("acme", "w1").await.unwrap());
    assert!(!catalog.delete_webhook("acme", "w1").await.unwrap());
    assert!(catalog.webhook("acme", "w1").await.unwrap().is_none());
    assert!(
        catalog.webhook("beta", "w1").await.unwrap().is_some(),
        "another tenant's"
    );
}

pub async fn plugin_versions_count_up_and_are_never_reused(catalog: &dyn Catalog) {
    let generation = catalog.plugin_generation();
    let v1 = catalog
        .add_plugin_version("acme", "erp", component("aa"), 1)
        .await
        .unwrap();
    let v2 = catalog
        .add_plugin_version("acme", "erp", component("bb"), 2)
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_ne!(
        catalog.plugin_generation(),
        generation,
        "an upload moves the generation"
    );
    assert_eq!(
        catalog
            .latest_plugin_version("acme", "erp")
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    catalog
        .delete_plugin_version("acme", "erp", 2)
        .await
        .unwrap();
    let v3 = catalog
        .add_plugin_version("acme", "erp", component("cc"), 3)
        .await
        .unwrap();
    assert_eq!(
        v3.version, 3,
        "a deleted version's number is not given again"
    );
    let versions: Vec<u32> = catalog
        .plugin_versions("acme", "erp")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [1, 3]);
    assert!(
        catalog
            .plugin_version("acme", "erp", 2)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(catalog.count_plugin_versions("acme").await.unwrap(), 2);

    catalog
        .add_plugin_version("beta", "erp", component("aa"), 4)
        .await
        .unwrap();
    let (heads, _) = catalog.plugin_heads_page("acme", None, 10).await.unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].last_version, 3);
    assert!(catalog.all_plugin_digests().await.unwrap().contains("cc"));

    let removed = catalog.delete_plugin("acme", "erp").await.unwrap();
    assert_eq!(removed.len(), 2);
    assert!(
        catalog
            .plugin_versions("acme", "erp")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        catalog
            .plugin_heads_page("acme", None, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert!(
        catalog.plugin_digest_in_use("aa").await.unwrap(),
        "beta still uses it"
    );
    assert!(!catalog.plugin_digest_in_use("cc").await.unwrap());
    let restarted = catalog
        .add_plugin_version("acme", "erp", component("dd"), 5)
        .await
        .unwrap();
    assert_eq!(restarted.version, 1, "a deleted name starts again");
}

pub async fn plugin_secrets_are_scoped_sealed_and_move_the_generation(catalog: &dyn Catalog) {
    catalog
        .add_plugin_version("acme", "signer", component("aa"), 1)
        .await
        .unwrap();
    let generation = catalog.plugin_generation();
    let (record, created) = catalog
        .put_plugin_secret("acme", "signer", "key", "s3cret", 1)
        .await
        .unwrap();
    assert!(created);
    assert_ne!(record.value, "s3cret", "the record holds the sealed value");
    assert_ne!(
        catalog.plugin_generation(),
        generation,
        "workers must see the change"
    );
    let (_, created) = catalog
        .put_plugin_secret("acme", "signer", "key", "n3w", 2)
        .await
        .unwrap();
    assert!(!created);
    catalog
        .put_plugin_secret("acme", "signer", "other", "x", 2)
        .await
        .unwrap();
    catalog
        .put_plugin_secret("acme", "echo", "key", "not-yours", 2)
        .await
        .unwrap();
    catalog
        .put_plugin_secret("beta", "signer", "key", "not-yours", 2)
        .await
        .unwrap();
    assert_eq!(
        catalog
            .plugin_secret_values("acme", "signer")
            .await
            .unwrap(),
        BTreeMap::from([("key".into(), "n3w".into()), ("other".into(), "x".into())])
    );
    let stored = catalog
        .plugin_secret("acme", "signer", "key")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.created_at, 1, "replacing keeps the creation time");
    let (page, done) = catalog
        .plugin_secrets_page("acme", "signer", Some("key"), 10)
        .await
        .unwrap();
    assert_eq!((page.len(), page[0].key.as_str(), done), (1, "other", true));
    let generation = catalog.plugin_generation();
    assert!(
        catalog
            .delete_plugin_secret("acme", "signer", "other")
            .await
            .unwrap()
    );
    assert_ne!(catalog.plugin_generation(), generation);
    assert!(
        !catalog
            .delete_plugin_secret("acme", "signer", "other")
            .await
            .unwrap()
    );
    catalog.delete_plugin("acme", "signer").await.unwrap();
    assert!(
        catalog
            .plugin_secret_values("acme", "signer")
            .await
            .unwrap()
            .is_empty(),
        "a deleted plugin's secrets go with it"
    );
}

/// `restore_plugin` (migration) writes a name as it was elsewhere: version numbers with
/// gaps, the head's counter, times, and secrets sealed here and readable again; whatever
/// the name had before goes.
pub async fn a_restored_plugin_keeps_its_numbers_times_and_secrets(catalog: &dyn Catalog) {
    catalog
        .add_plugin_version("acme", "erp", component("old"), 1)
        .await
        .unwrap();
    catalog
        .put_plugin_secret("acme", "erp", "stale", "x", 1)
        .await
        .unwrap();
    let generation = catalog.plugin_generation();
    let head = PluginHead {
        name: "erp".into(),
        last_version: 5,
        created_at: 10,
        updated_at: 50,
    };
    let version = |n: u32, sha256: &str| PluginVersion {
        name: "erp".into(),
        version: n,
        sha256: sha256.into(),
        size: 7,
        exports: vec![Hook::Transform],
        created_at: 10 * i64::from(n),
    };
    let secret = PluginSecret {
        key: "token".into(),
        value: "s3cret".into(),
        created_at: 20,
        updated_at: 30,
    };
    catalog
        .restore_plugin(
            "acme",
            &head,
            &[version(2, "bb"), version(4, "dd")],
            std::slice::from_ref(&secret),
        )
        .await
        .unwrap();
    assert_ne!(catalog.plugin_generation(), generation);
    let stored_head = catalog.plugin_head("acme", "erp").await.unwrap().unwrap();
    assert_eq!(
        (
            stored_head.last_version,
            stored_head.created_at,
            stored_head.updated_at
        ),
        (5, 10, 50)
    );
    let versions = catalog.plugin_versions("acme", "erp").await.unwrap();
    let numbers: Vec<_> = versions.iter().map(|v| (v.version, v.created_at)).collect();
    assert_eq!(numbers, [(2, 20), (4, 40)], "the old version 1 went");
    assert_eq!(
        catalog
            .latest_plugin_version("acme", "erp")
            .await
            .unwrap()
            .unwrap()
            .sha256,
        "dd"
    );
    assert!(!catalog.plugin_digest_in_use("old").await.unwrap());
    assert_eq!(
        catalog.plugin_secret_values("acme", "erp").await.unwrap(),
        BTreeMap::from([("token".into(), "s3cret".into())]),
        "the stale secret went"
    );
    let stored = catalog
        .plugin_secret("acme", "erp", "token")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.value, "s3cret", "sealed in storage");
    assert_eq!((stored.created_at, stored.updated_at), (20, 30));
    let next = catalog
        .add_plugin_version("acme", "erp", component("ee"), 60)
        .await
        .unwrap();
    assert_eq!(next.version, 6, "numbering goes on from the head's counter");
}

pub async fn deleting_a_tenant_removes_only_its_records(catalog: &dyn Catalog) {
    let acme = catalog
        .create_tenant(&tenant("acme"))
        .await
        .unwrap()
        .unwrap();
    let beta = catalog
        .create_tenant(&tenant("beta"))
        .await
        .unwrap()
        .unwrap();
    for id in ["acme", "beta"] {
        catalog
            .create_event_type(id, &event_type("order.paid"))
            .await
            .unwrap();
        catalog.create_webhook(id, &webhook("w1")).await.unwrap();
        catalog
            .add_plugin_version(id, "erp", component(id), 1)
            .await
            .unwrap();
    }
    assert!(catalog.delete_tenant("acme").await.unwrap());
    assert!(!catalog.delete_tenant("acme").await.unwrap());
    let digests = catalog.delete_tenant_plugins("acme").await.unwrap();
    assert_eq!(digests.into_iter().collect::<Vec<_>>(), ["acme"]);
    assert!(catalog.tenant("acme").await.unwrap().is_none());
    assert_eq!(catalog.authenticate_key(&acme.api_key).await.unwrap(), None);
    assert!(
        catalog
            .event_type("acme", "order.paid")
            .await
            .unwrap()
            .is_none()
    );
    assert!(catalog.webhook("acme", "w1").await.unwrap().is_none());
    assert!(
        catalog
            .plugin_versions("acme", "erp")
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(
        catalog
            .authenticate_key(&beta.api_key)
            .await
            .unwrap()
            .as_deref(),
        Some("beta")
    );
    assert!(
        catalog
            .event_type("beta", "order.paid")
            .await
            .unwrap()
            .is_some()
    );
    assert!(catalog.webhook("beta", "w1").await.unwrap().is_some());
    assert_eq!(
        catalog.plugin_versions("beta", "erp").await.unwrap().len(),
        1
    );
}
