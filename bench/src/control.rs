//! Control-plane calls the drivers and scripts make outside the measured path: readiness,
//! tenant and webhook setup on the gateway (API.md), and the receiver's counters.
//! A plain reqwest client is fine here; none of these calls is timed.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::servers::receiver::ReceiverStats;

pub struct Control {
    http: reqwest::Client,
}

/// A webhook the delivery driver creates on the gateway.
pub struct WebhookSpec<'a> {
    pub id: &'a str,
    pub url: &'a str,
    pub event_type: &'a str,
    pub max_in_flight: Option<u32>,
}

impl Control {
    pub fn new() -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self { http })
    }

    /// Polls `url` every 100 ms until it answers 2xx.
    pub async fn wait_ready(&self, url: &str, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_problem;
        loop {
            match self
                .http
                .get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => last_problem = format!("answered {}", response.status()),
                Err(error) => last_problem = error.to_string(),
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{url} not ready after {timeout:?}: {last_problem}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /admin/v1/tenants` → the tenant's API key.
    pub async fn create_tenant(&self, base: &str, admin_token: &str, id: &str) -> Result<String> {
        let created: Value = expect_json(
            self.http
                .post(format!("{}/admin/v1/tenants", base.trim_end_matches('/')))
                .bearer_auth(admin_token)
                .json(&json!({ "id": id })),
        )
        .await
        .with_context(|| format!("creating tenant `{id}`"))?;
        created["api_key"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("tenant creation answered without api_key: {created}"))
    }

    /// `POST /{tenant}/v1/webhooks`; the gateway starts it at once.
    pub async fn create_webhook(
        &self,
        base: &str,
        tenant: &str,
        key: &str,
        spec: &WebhookSpec<'_>,
    ) -> Result<()> {
        let mut body = json!({
            "id": spec.id,
            "url": spec.url,
            "event_types": [spec.event_type],
        });
        if let Some(max_in_flight) = spec.max_in_flight {
            body["max_in_flight"] = json!(max_in_flight);
        }
        expect_json::<Value>(
            self.http
                .post(format!(
                    "{}/{tenant}/v1/webhooks",
                    base.trim_end_matches('/')
                ))
                .bearer_auth(key)
                .json(&body),
        )
        .await
        .with_context(|| format!("creating webhook `{}`", spec.id))?;
        Ok(())
    }

    /// `DELETE /{tenant}/v1/webhooks/{id}`, so a finished run stops receiving deliveries.
    pub async fn delete_webhook(
        &self,
        base: &str,
        tenant: &str,
        key: &str,
        id: &str,
    ) -> Result<()> {
        let response = self
            .http
            .delete(format!(
                "{}/{tenant}/v1/webhooks/{id}",
                base.trim_end_matches('/')
            ))
            .bearer_auth(key)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("deleting webhook `{id}` answered {}", response.status());
        }
        Ok(())
    }

    pub async fn receiver_stats(&self, receiver: &str) -> Result<ReceiverStats> {
        expect_json(
            self.http
                .get(format!("{}/stats", receiver.trim_end_matches('/'))),
        )
        .await
        .context("reading the receiver's /stats")
    }

    /// Starts a measurement at the receiver; its `since_ns` is the measurement's start.
    pub async fn receiver_reset(&self, receiver: &str) -> Result<ReceiverStats> {
        expect_json(
            self.http
                .post(format!("{}/stats/reset", receiver.trim_end_matches('/'))),
        )
        .await
        .context("resetting the receiver's counters")
    }
}

/// Sends, requires a 2xx, and decodes the JSON answer; a failure carries the answer's body.
async fn expect_json<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T> {
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("answered {status}: {body}");
    }
    Ok(response.json().await?)
}
