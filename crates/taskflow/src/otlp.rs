//! Trace export: OpenTelemetry's OTLP over HTTP with the JSON encoding, on when
//! `--otlp-endpoint` names a collector.
//!
//! The spans that carry a W3C trace context are exported: each HTTP request's (`http`, the
//! trace's server span) and each consumer's handling of an event (`event`, a child of the
//! `traceparent` the event carries). Export never holds up the work: finished spans wait in a
//! bounded queue and are sent in batches by a task of their own; when the queue is full or
//! the collector cannot take a batch, spans are dropped and counted
//! (`taskflow_otlp_spans_dropped_total`), and a warning says so at most once a minute.

use std::{
    fmt::Write as _,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

/// Finished spans waiting to be sent; more are dropped.
const QUEUE: usize = 8192;
/// The most spans in one request to the collector.
const BATCH: usize = 512;
/// How long a finished span waits at most before it is sent.
const EVERY: Duration = Duration::from_secs(1);
/// How long a request to the collector may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `SPAN_KIND_SERVER` and `SPAN_KIND_CONSUMER` of OTLP.
const KIND_SERVER: u8 = 2;
const KIND_CONSUMER: u8 = 5;
/// `STATUS_CODE_ERROR` of OTLP.
const STATUS_ERROR: u8 = 2;

/// The URL spans are posted to: the endpoint's `/v1/traces` (as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is read), or the endpoint itself where it already names that path.
pub fn traces_url(endpoint: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(endpoint.trim())
        .map_err(|e| format!("{endpoint:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{endpoint:?} is not an http:// or https:// URL of a collector"
        ));
    }
    if url.path().ends_with("/v1/traces") {
        return Ok(url);
    }
    let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
    let mut url = url;
    url.set_path(&path);
    Ok(url)
}

/// A finished span, ready to be encoded.
#[derive(Debug)]
struct Finished {
    trace_id: String,
    span_id: String,
    parent_id: String,
    name: String,
    kind: u8,
    start: u128,
    end: u128,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
}

impl Finished {
    fn to_json(&self) -> Value {
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        let mut span = json!({
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "name": self.name,
            "kind": self.kind,
            "startTimeUnixNano": self.start.to_string(),
            "endTimeUnixNano": self.end.to_string(),
            "attributes": attributes,
        });
        if !self.parent_id.is_empty() {
            span["parentSpanId"] = json!(self.parent_id);
        }
        if let Some(message) = &self.error {
            span["status"] = json!({"code": STATUS_ERROR, "message": message});
        }
        span
    }
}

/// The fields of a span as it is open.
#[derive(Debug, Default)]
struct Open {
    trace_id: String,
    span_id: String,
    parent_id: String,
    sampled: bool,
    start: u128,
    /// The fields other than the trace context, as recorded.
    fields: Vec<(&'static str, Value)>,
}

impl Visit for Open {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "trace_id" => value.clone_into(&mut self.trace_id),
            "span_id" => value.clone_into(&mut self.span_id),
            "parent_id" => value.clone_into(&mut self.parent_id),
            name => self.set(name, Value::String(value.to_owned())),
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "sampled" {
            self.sampled = value;
        } else {
            self.set(field.name(), Value::Bool(value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), json!(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), json!(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.record_str(field, &text);
    }
}

impl Open {
    fn set(&mut self, name: &'static str, value: Value) {
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((name, value)),
        }
    }

    fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn text(&self, name: &str) -> &str {
        self.field(name).and_then(Value::as_str).unwrap_or_default()
    }

    /// The span in OTLP's terms, with the attribute names of OpenTelemetry's semantic
    /// conventions for HTTP servers and message consumers.
    fn finish(self, span: &str, end: u128) -> Finished {
        let (name, kind) = if span == "http" {
            let method = self.text("method");
            let route = self.text("route");
            let name = if route.is_empty() {
                method.to_owned()
            } else {
                format!("{method} {route}")
            };
            (name, KIND_SERVER)
        } else {
            (format!("{} process", self.text("consumer")), KIND_CONSUMER)
        };
        let mut error = None;
        let mut attributes = Vec::new();
        for (field, value) in &self.fields {
            let key = match *field {
                "method" => "http.request.method",
                "path" => "url.path",
                "route" if value.as_str().is_some_and(|r| !r.is_empty()) => "http.route",
                "status" => {
                    if value.as_u64().is_some_and(|s| s >= 500) {
                        error = Some(String::new());
                    }
                    "http.response.status_code"
                }
                "request_id" => "http.request.header.x-request-id",
                "consumer" => "messaging.consumer.group.name",
                "event_id" => "cloudevents.event_id",
                "event_type" => "cloudevents.event_type",
                "error" => {
                    error = Some(value.as_str().unwrap_or_default().to_owned());
                    continue;
                }
                _ => continue,
            };
            attributes.push((key, any_value(value)));
        }
        Finished {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_id: self.parent_id,
            name,
            kind,
            start: self.start,
            end,
            attributes,
            error,
        }
    }
}

/// A JSON value as OTLP's `AnyValue` (64-bit integers as strings, as its JSON mapping has it).
fn any_value(value: &Value) -> Value {
    match value {
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        Value::String(s) => json!({"stringValue": s}),
        other => json!({"stringValue": other.to_string()}),
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The layer that collects the traced spans as they close.
#[derive(Debug)]
pub struct OtlpLayer {
    queue: mpsc::Sender<Finished>,
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let name = attrs.metadata().name();
        if name != "http" && name != "event" {
            return;
        }
        let mut open = Open {
            start: now_nanos(),
            ..Open::default()
        };
        attrs.record(&mut open);
        if open.sampled
            && !open.trace_id.is_empty()
            && !open.span_id.is_empty()
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(open);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            values.record(open);
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let finished = open.finish(span.name(), now_nanos());
        if self.queue.try_send(finished).is_err() {
            metrics::counter!("taskflow_otlp_spans_dropped_total").increment(1);
        }
    }
}

/// Sends the collected spans; ask it to [`Exporter::flush`] before the process ends.
#[derive(Debug)]
pub struct Exporter {
    flush: mpsc::Sender<oneshot::Sender<()>>,
}

impl Exporter {
    /// Sends what is waiting, for at most `within`.
    pub async fn flush(&self, within: Duration) {
        let (done, sent) = oneshot::channel();
        if self.flush.send(done).await.is_ok() {
            let _ = tokio::time::timeout(within, sent).await;
        }
    }
}

/// The layer and the exporter sending to `url` as `service` (OTLP's `service.name`); the
/// exporter's task runs on the current Tokio runtime.
pub fn start(url: reqwest::Url, service: String) -> (OtlpLayer, Exporter) {
    let (queue, spans) = mpsc::channel(QUEUE);
    let (flush, flushes) = mpsc::channel(1);
    tokio::spawn(send(url, service, spans, flushes));
    (OtlpLayer { queue }, Exporter { flush })
}

async fn send(
    url: reqwest::Url,
    service: String,
    mut spans: mpsc::Receiver<Finished>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_default();
    let resource = json!({"attributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
    ]});
    let mut batch = Vec::with_capacity(BATCH);
    let mut warned: Option<Instant> = None;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        let mut ack = None;
        tokio::select! {
            span = spans.recv() => match span {
                Some(span) => {
                    batch.push(span);
                    if batch.len() < BATCH {
                        continue;
                    }
                }
                None => return,
            },
            _ = tick.tick() => {}
            done = flushes.recv() => {
                while batch.len() < BATCH && let Ok(span) = spans.try_recv() {
                    batch.push(span);
                }
                ack = done;
            }
        }
        if !batch.is_empty() {
            let body = json!({"resourceSpans": [{
                "resource": resource,
                "scopeSpans": [{
                    "scope": {"name": "taskflow", "version": env!("CARGO_PKG_VERSION")},
                    "spans": batch.iter().map(Finished::to_json).collect::<Vec<_>>(),
                }],
            }]});
            let n = batch.len() as u64;
            batch.clear();
            match post(&client, &url, &body).await {
                Ok(()) => metrics::counter!("taskflow_otlp_spans_exported_total").increment(n),
                Err(why) => {
                    metrics::counter!("taskflow_otlp_spans_dropped_total").increment(n);
                    if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                        warned = Some(Instant::now());
                        tracing::warn!(collector = %url, error = %why, spans = n,
                            "cannot export traces; these spans are dropped (said at most once a minute)");
                    }
                }
            }
        }
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
}

async fn post(client: &reqwest::Client, url: &reqwest::Url, body: &Value) -> Result<(), String> {
    let res = client
        .post(url.clone())
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("the collector answered {}", res.status()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        for (endpoint, url) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example.com/otlp",
                "https://otel.example.com/otlp/v1/traces",
            ),
            ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
        ] {
            assert_eq!(traces_url(endpoint).unwrap().as_str(), url, "{endpoint}");
        }
        for bad in ["collector:4318", "ftp://c/", "not a url", ""] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_http_span_is_a_server_span_named_by_its_route() {
        let mut open = Open {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            sampled: true,
            start: 10,
            ..Open::default()
        };
        open.set("method", json!("POST"));
        open.set("route", json!("/api/tasks/{id}"));
        open.set("path", json!("/api/tasks/9"));
        open.set("status", json!(503));
        let span = open.finish("http", 20).to_json();
        assert_eq!(span["name"], "POST /api/tasks/{id}");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "10");
        assert_eq!(span["status"]["code"], 2, "a 5xx is an error: {span}");
        assert!(span.get("parentSpanId").is_none(), "a root span: {span}");
        let attrs = span["attributes"].as_array().unwrap();
        assert!(
            attrs.contains(
                &json!({"key": "http.response.status_code", "value": {"intValue": "503"}})
            )
        );
        assert!(
            attrs.contains(&json!({"key": "url.path", "value": {"stringValue": "/api/tasks/9"}}))
        );
    }
}
