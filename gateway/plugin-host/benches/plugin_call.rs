//! Cost of plugin calls with a fresh store each (the production path), on a 1 KiB JSON
//! event, against the same work in native Rust.
//!
//! For each hook the bench reports three figures from the same calls:
//! `…/instantiate` (new store + instantiate), `…/call` (the hook itself: lowering the
//! event, guest work, lifting the result, checks, dropping the store) and `…/total`.
//! `filter+transform/total` runs both hooks back to back, as the pipeline does.
//!
//!     cargo bench -p hookgate-plugin-host --bench plugin_call
//!
//! Figures (project's 2-core machine, 1 KiB order event, fresh store per call). Wall-clock
//! medians swing by 2x with other work on the machine, so compare within one run; the
//! callgrind instruction counts (`PLUGIN_BENCH_LOOP`, below) are stable.
//!
//! | | instructions/call | median, same run (load avg 6-11) |
//! |---|---|---|
//! | filter, before (full `Value` parse, untagged config, opt "s") | 278k | 21.7 µs (5.1 + 21.5 call) |
//! | filter, now (`Event::json_pointers`, opt 3) | 144k | 16.5 µs (5.1 + 11.1 call) |
//! | transform, before | 321k | 36.1 µs (5.6 + 26.1 call) |
//! | transform, now (borrowed fields, no per-line clones) | 228k | 28.0 µs (3.6 + 17.1 call) |
//! | filter then transform, before / now | 599k / 372k | 73.7 / 42.8 µs |
//! | an SDK default hook, before / now (skipped once known) | 84k / 0.8k | |
//! | native filter (full `Value`) / transform | 95k / 76k | 9.2 / 4.8 µs |
//!
//! On a quiet machine the old code measured filter 16.8 µs and transform 20.2 µs; scaled
//! by the instruction counts that would be about 9 and 14 µs now (an estimate: no quiet
//! machine was available for this run). Of a call's fixed ~84k instructions
//! (new store, instantiate, lowering, page reset, drop) about 16k are resetting the pages
//! the guest dirtied and 12k looking up function locations for the component's imports.
//! The native `filter` builds the whole body as a `serde_json::Value` (a map and strings
//! per object: 55% of its time in malloc, free and B-tree inserts), which is why "native"
//! was 11.7 µs rather than the 3.5 µs of one transform quoted in STACK-NOTES.
//!
//! `PLUGIN_BENCH_WASM_DIR=<dir>` takes the components from `<dir>` instead of building
//! `plugins/`, to compare builds in one run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use hookgate_plugin_host::{
    CallContext, CallReport, Event, LoadedPlugin, PluginRuntime, RuntimeConfig,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
#[allow(dead_code)]
#[path = "../tests/sandbox/support.rs"]
mod support;

const FILTER_CONFIG: &str = r#"[{"path": "/payload/total", "op": "gte", "value": 100},
                                {"path": "/payload/status", "op": "in", "value": ["paid", "shipped"]}]"#;

/// An order envelope of about 1 KiB.
fn order_event() -> Event {
    let lines: Vec<Value> = (0..9)
        .map(|i| json!({"sku": format!("SKU-{i:04}"), "quantity": i + 1, "unit_price": 9.95, "title": "Widget, blue"}))
        .collect();
    let payload = json!({
        "order_id": "SO-100234", "status": "paid", "total": 208.95, "currency": "EUR",
        "customer": {"id": "C-77812", "email": "jane.doe@example.com", "name": "Jane Doe"},
        "shipping": {"street": "Hauptstrasse 1", "city": "Berlin", "zip": "10115", "country": "DE"},
        "lines": lines,
    });
    let event = support::envelope("order.created", payload);
    assert!(
        (900..1300).contains(&event.body.len()),
        "event body is {} bytes",
        event.body.len()
    );
    event
}

fn bench_hook<T>(c: &mut Criterion, name: &str, mut call: impl FnMut() -> CallReport<T>) {
    let mut group = c.benchmark_group(name);
    group.bench_function("instantiate", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| call().instantiate).sum())
    });
    group.bench_function("call", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let report = call();
                    report.elapsed - report.instantiate
                })
                .sum()
        })
    });
    group.bench_function("total", |b| b.iter(|| black_box(call())));
    group.finish();
}

fn plugin_calls(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = PluginRuntime::new(support::test_config(dir.path())).unwrap();
    let filter = rt
        .load(
            support::TENANT,
            &rt.compile(&wasm("field-filter")).unwrap().sha256,
        )
        .unwrap();
    let transform = rt
        .load(
            support::TENANT,
            &rt.compile(&wasm("erp-transform")).unwrap().sha256,
        )
        .unwrap();
    let event = order_event();
    let ctx = CallContext::default().at(1_795_341_600_000);

    // Sanity: the plugins do the work being measured.
    assert_eq!(
        rt.call_filter_blocking(&filter, FILTER_CONFIG, &event, ctx.clone())
            .result,
        Ok(true)
    );
    let out = rt
        .call_transform_blocking(&transform, "", &event, ctx.clone())
        .result
        .unwrap();
    assert_eq!(out.event_type, "ERP_ORDER_NEW");
    assert_eq!(
        out.body,
        native_transform(&event).unwrap().body,
        "native and plugin transforms agree"
    );

    bench_hook(c, "filter", || {
        rt.call_filter_blocking(&filter, FILTER_CONFIG, &event, ctx.clone())
    });
    bench_hook(c, "transform", || {
        rt.call_transform_blocking(&transform, "", &event, ctx.clone())
    });
    c.bench_function("filter+transform/total", |b| {
        b.iter(|| {
            let keep = rt.call_filter_blocking(&filter, FILTER_CONFIG, &event, ctx.clone());
            assert_eq!(keep.result, Ok(true));
            black_box(rt.call_transform_blocking(&transform, "", &event, ctx.clone()))
        })
    });

    // The same work in native Rust (what the plugins do, minus the sandbox).
    c.bench_function("native/filter", |b| {
        b.iter(|| assert!(native_filter(black_box(&event))))
    });
    c.bench_function("native/transform", |b| {
        b.iter(|| black_box(native_transform(black_box(&event)).unwrap()))
    });
    c.bench_function("native/filter+transform", |b| {
        b.iter(|| {
            let keep = native_filter(black_box(&event));
            assert!(keep);
            black_box(native_transform(black_box(&event)).unwrap())
        })
    });
}

/// The component of plugin crate `name`: built from `plugins/` by the test support, or
/// taken from `$PLUGIN_BENCH_WASM_DIR` to compare builds (e.g. other profiles).
fn wasm(name: &str) -> Vec<u8> {
    match std::env::var_os("PLUGIN_BENCH_WASM_DIR") {
        Some(dir) => {
            let path = std::path::Path::new(&dir).join(format!("{}.wasm", name.replace('-', "_")));
            std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        }
        None => support::wasm(name),
    }
}

/// `field-filter` with `FILTER_CONFIG`, natively: parse config and body, check both.
fn native_filter(event: &Event) -> bool {
    let conditions: Vec<Value> = serde_json::from_str(FILTER_CONFIG).unwrap();
    let body: Value = serde_json::from_slice(&event.body).unwrap();
    conditions.iter().all(|c| {
        let field = body.pointer(c["path"].as_str().unwrap());
        match (c["op"].as_str().unwrap(), field) {
            ("gte", Some(v)) => v.as_f64() >= c["value"].as_f64(),
            ("in", Some(v)) => c["value"].as_array().unwrap().contains(v),
            _ => false,
        }
    })
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    published_at: String,
    payload: Order,
}

#[derive(Deserialize)]
struct Order {
    order_id: Value,
    customer: Option<Customer>,
    currency: Option<String>,
    lines: Vec<OrderLine>,
}

#[derive(Deserialize)]
struct Customer {
    id: Value,
}

#[derive(Deserialize)]
struct OrderLine {
    sku: String,
    quantity: f64,
    unit_price: f64,
}

#[derive(Serialize)]
struct ErpDocument<'a> {
    record_type: &'a str,
    source_event_id: &'a str,
    records: Vec<ErpLine<'a>>,
}

#[derive(Serialize)]
struct ErpLine<'a> {
    order_no: String,
    customer_no: Option<String>,
    line_no: usize,
    sku: &'a str,
    quantity: f64,
    unit_price: f64,
    amount: f64,
    currency: Option<&'a str>,
    ordered_at: &'a str,
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// `erp-transform` with its default config, natively.
fn native_transform(event: &Event) -> serde_json::Result<Event> {
    let envelope: Envelope = serde_json::from_slice(&event.body)?;
    let order = &envelope.payload;
    let records = order
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| ErpLine {
            order_no: text(&order.order_id),
            customer_no: order.customer.as_ref().map(|c| text(&c.id)),
            line_no: i + 1,
            sku: &line.sku,
            quantity: line.quantity,
            unit_price: line.unit_price,
            amount: (line.quantity * line.unit_price * 100.0).round() / 100.0,
            currency: order.currency.as_deref(),
            ordered_at: &envelope.published_at,
        })
        .collect();
    let document = ErpDocument {
        record_type: "ERP_ORDER_NEW",
        source_event_id: &envelope.id,
        records,
    };
    let mut out = event.clone();
    out.body = serde_json::to_vec(&document)?;
    out.event_type = "ERP_ORDER_NEW".into();
    Ok(out)
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(60)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = plugin_calls
}

/// `PLUGIN_BENCH_LOOP=<what>:<n>` runs one of the measured operations `n` times in a plain
/// loop instead of the criterion benches, for profilers (`perf record`, `valgrind
/// --tool=callgrind`, whose instruction counts are stable on a noisy machine). `<what>` is
/// `filter`, `transform`, `filter+transform`, `neutral` (the transform plugin's default
/// filter: the sandbox around no work), `native-filter` or `native-transform`.
fn profile_loop(spec: &str) {
    let (what, n) = spec.split_once(':').expect("PLUGIN_BENCH_LOOP=<what>:<n>");
    let n: u64 = n.parse().expect("a count");
    let dir = tempfile::tempdir().unwrap();
    // One slot: valgrind cannot reserve the address space of a bigger pool.
    let config = RuntimeConfig {
        max_concurrent_calls: 1,
        ..support::test_config(dir.path())
    };
    let rt = PluginRuntime::new(config).unwrap();
    let filter = rt
        .load(
            support::TENANT,
            &rt.compile(&wasm("field-filter")).unwrap().sha256,
        )
        .unwrap();
    let transform = rt
        .load(
            support::TENANT,
            &rt.compile(&wasm("erp-transform")).unwrap().sha256,
        )
        .unwrap();
    let event = order_event();
    let ctx = CallContext::default().at(1_795_341_600_000);
    let started = std::time::Instant::now();
    measured_loop(what, n, &rt, &filter, &transform, &event, &ctx);
    eprintln!("{what}: {n} in {:?}", started.elapsed());
}

/// The loop of [`profile_loop`], apart so that `valgrind --tool=callgrind
/// --toggle-collect=plugin_call::measured_loop` counts only the calls, not the setup.
#[inline(never)]
fn measured_loop(
    what: &str,
    n: u64,
    rt: &PluginRuntime,
    filter: &LoadedPlugin,
    transform: &LoadedPlugin,
    event: &Event,
    ctx: &CallContext,
) {
    for _ in 0..n {
        match what {
            "filter" => {
                let report = rt.call_filter_blocking(filter, FILTER_CONFIG, event, ctx.clone());
                assert_eq!(report.result, Ok(true));
            }
            "transform" => {
                let report = rt.call_transform_blocking(transform, "", event, ctx.clone());
                assert!(report.result.is_ok());
            }
            "filter+transform" => {
                let keep = rt.call_filter_blocking(filter, FILTER_CONFIG, event, ctx.clone());
                assert_eq!(keep.result, Ok(true));
                let out = rt.call_transform_blocking(transform, "", event, ctx.clone());
                assert!(out.result.is_ok());
            }
            // A hook the plugin does not implement (the SDK's neutral default): what the
            // sandbox costs around no work at all.
            "neutral" => {
                let report = rt.call_filter_blocking(transform, "", event, ctx.clone());
                assert_eq!(report.result, Ok(true));
            }
            "native-filter" => assert!(native_filter(black_box(event))),
            "native-transform" => {
                black_box(native_transform(black_box(event)).unwrap());
            }
            other => panic!("unknown PLUGIN_BENCH_LOOP operation {other:?}"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("PLUGIN_BENCH_LOOP") {
        profile_loop(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
