//! Thousands of webhooks (issue 17: a cluster holds at least 10,000): tenants and their
//! webhooks are created through the API, one event is posted per tenant, and the run ends
//! when the receiver has counted a delivery per webhook. Prints how long each phase took
//! and a `RESULT` line.

use std::{sync::Arc, time::Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::{
    cli::ManyWebhooksArgs,
    control::{Control, WebhookSpec},
    report::ResultLine,
};

pub async fn run(args: ManyWebhooksArgs) -> Result<()> {
    let control = Arc::new(Control::new()?);
    let total = args.tenants * args.per_tenant;
    let started = Instant::now();
    let mut keys = Vec::new();
    for t in 0..args.tenants {
        let tenant = format!("many-{t:04}");
        keys.push((
            tenant.clone(),
            control
                .create_tenant(&args.url, &args.admin_token, &tenant)
                .await?,
        ));
    }
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let mut creations = tokio::task::JoinSet::new();
    for (tenant, key) in &keys {
        for w in 0..args.per_tenant {
            let permit = slots.clone().acquire_owned().await?;
            let (control, url, tenant, key) = (
                control.clone(),
                args.url.clone(),
                tenant.clone(),
                key.clone(),
            );
            let target = format!("{}/hook/{tenant}/w{w}", args.receiver.trim_end_matches('/'));
            creations.spawn(async move {
                let _permit = permit;
                let id = format!("w{w}");
                let spec = WebhookSpec {
                    id: &id,
                    url: &target,
                    event_type: "bench.event",
                    max_in_flight: None,
                };
                control.create_webhook(&url, &tenant, &key, &spec).await
            });
        }
    }
    while let Some(created) = creations.join_next().await {
        created.context("a creation task panicked")??;
    }
    let created_in = started.elapsed();
    println!(
        "created {total} webhooks over {} tenants in {created_in:.1?} ({:.0}/s)",
        args.tenants,
        total as f64 / created_in.as_secs_f64()
    );

    let before = control
        .receiver_stats(&args.receiver)
        .await?
        .deliveries_total;
    let http = reqwest::Client::new();
    let posted = Instant::now();
    for (tenant, key) in &keys {
        let response = http
            .post(format!(
                "{}/{tenant}/v1/events",
                args.url.trim_end_matches('/')
            ))
            .bearer_auth(key)
            .json(&json!({"event_type": "bench.event", "payload": {"n": 1}}))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("ingest for {tenant} answered {}", response.status());
        }
    }
    let deadline = posted + args.timeout;
    let delivered = loop {
        let delivered = control
            .receiver_stats(&args.receiver)
            .await?
            .deliveries_total
            - before;
        if delivered as usize >= total || Instant::now() >= deadline {
            break delivered;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let delivered_in = posted.elapsed();
    println!(
        "{delivered} of {total} deliveries in {delivered_in:.1?} after posting one event per tenant ({:.0}/s)",
        delivered as f64 / delivered_in.as_secs_f64()
    );
    let mut assets = String::new();
    if let Some(monitor) = &args.nats_monitor {
        let jsz: serde_json::Value = http
            .get(format!("{}/jsz", monitor.trim_end_matches('/')))
            .send()
            .await?
            .json()
            .await?;
        println!(
            "JetStream: {} streams, {} consumers, {} messages, {} bytes",
            jsz["streams"], jsz["consumers"], jsz["messages"], jsz["bytes"]
        );
        assets = format!("streams={} consumers={}", jsz["streams"], jsz["consumers"]);
    }
    ResultLine::new("many-webhooks")
        .field("webhooks", total)
        .field("create_secs", format!("{:.1}", created_in.as_secs_f64()))
        .field("delivered", delivered)
        .field("deliver_secs", format!("{:.1}", delivered_in.as_secs_f64()))
        .field("jetstream", assets.replace(' ', ","))
        .print();
    if (delivered as usize) < total {
        bail!(
            "{} deliveries missing after {:?}",
            total - delivered as usize,
            args.timeout
        );
    }
    Ok(())
}
