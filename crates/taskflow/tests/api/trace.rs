//! W3C trace context: a request's `traceparent` reaches the events it writes (the CloudEvents
//! extension), the consumers carry it on, and the log lines name the trace.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{App, services::Sse};

const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_B: &str = "0af7651916cd43dd8448eb211c80319c";

fn trace_id(event: &Value) -> &str {
    let header = event["traceparent"].as_str().unwrap_or_default();
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!(parts.len(), 4, "a traceparent: {event}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    parts[1]
}

/// POSTs `path` (with `body`) sending `traceparent`, asserts the `status`, and returns the
/// response's body and the next event of type `ty` on `sse`.
async fn traced(
    app: &App,
    sse: &mut Sse,
    (path, body, status): (&str, Option<Value>, u16),
    traceparent: &str,
    ty: &str,
) -> (Value, Value) {
    let res = app
        .call_as(
            &app.token,
            Method::POST,
            path,
            body,
            &[("traceparent", traceparent)],
        )
        .await;
    assert_eq!(res.status, status, "{}", res.body);
    let ((_, _, event), _) = sse
        .next_of(ty, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("{ty} on the stream"));
    (res.body, event)
}

/// A task due daily: completing it makes the next occurrence.
fn daily() -> Option<Value> {
    Some(
        json!({"title": "water the plants", "due_at": "2030-03-09T14:00:00Z", "recurrence": "FREQ=DAILY"}),
    )
}

const CREATED: &str = "com.taskflow.task.created.v1";
const COMPLETED: &str = "com.taskflow.task.completed.v1";

#[tokio::test]
async fn a_requests_traceparent_reaches_its_events_and_the_next_occurrence() {
    let Some(app) = App::new().await else { return };
    let mut sse = Sse::open(&app.server, &app.token, None).await;
    let incoming = format!("00-{TRACE_A}-00f067aa0ba902b7-01");
    let (task, created) = traced(
        &app,
        &mut sse,
        ("/api/tasks", daily(), 201),
        &incoming,
        CREATED,
    )
    .await;
    assert_eq!(trace_id(&created), TRACE_A, "{created}");
    assert_ne!(
        created["traceparent"], incoming,
        "the event's parent is the server's span, a child of the caller's"
    );

    let completing = format!("00-{TRACE_B}-b7ad6b7169203331-01");
    let path = format!("/api/tasks/{}/complete", task["id"].as_str().unwrap());
    let (_, completed) = traced(&app, &mut sse, (&path, None, 200), &completing, COMPLETED).await;
    assert_eq!(trace_id(&completed), TRACE_B);
    let ((_, _, next), _) = sse
        .next_of(CREATED, Duration::from_secs(10))
        .await
        .expect("the next occurrence's task.created");
    assert_eq!(
        trace_id(&next),
        TRACE_B,
        "the recurring consumer carries the completion's trace into the next occurrence: {next}"
    );

    if !taskflow_testkit::one_process_per_role() {
        // The consumer's log line about it names the trace (JSON logs, the event's span).
        let logged = std::iter::from_fn(|| {
            app.server
                .stderr
                .recv_timeout(Duration::from_millis(500))
                .ok()
        })
        .take(400)
        .find(|l| l.contains("created the next occurrence"));
        let line = logged.expect("the recurring consumer logged the next occurrence");
        assert!(
            line.contains(TRACE_B),
            "the log line carries the trace id: {line}"
        );
    }
}

#[tokio::test]
async fn without_a_valid_traceparent_each_request_starts_a_trace_of_its_own() {
    let Some(app) = App::new().await else { return };
    let mut sse = Sse::open(&app.server, &app.token, None).await;
    for header in [
        None,
        Some("00-not-a-trace-01"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    ] {
        let headers: Vec<(&str, &str)> = header.map(|h| ("traceparent", h)).into_iter().collect();
        let res = app
            .call_as(
                &app.token,
                Method::POST,
                "/api/tasks",
                Some(json!({"title": "t"})),
                &headers,
            )
            .await;
        assert_eq!(
            res.status, 201,
            "a bad traceparent is ignored, not refused: {}",
            res.body
        );
    }
    let mut traces = Vec::new();
    for _ in 0..3 {
        let ((_, _, e), _) = sse
            .next_of(CREATED, Duration::from_secs(10))
            .await
            .expect("task.created");
        let t = trace_id(&e).to_owned();
        assert!(t.bytes().any(|b| b != b'0'), "{t}");
        traces.push(t);
    }
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 3, "three traces: {traces:?}");
}

/// A stand-in OpenTelemetry collector speaking OTLP over HTTP with the JSON encoding: it takes
/// `POST /v1/traces` and keeps each span with the `service.name` of its resource.
struct Collector {
    endpoint: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

impl Collector {
    async fn start() -> Self {
        use axum::{Json, http::HeaderMap, routing::post};
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |headers: HeaderMap, Json(body): Json<Value>| {
                let kept = kept.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/json");
                    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                        let service = rs["resource"]["attributes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|a| a["key"] == "service.name")
                            .and_then(|a| a["value"]["stringValue"].as_str())
                            .unwrap_or_default()
                            .to_owned();
                        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                            for span in ss["spans"].as_array().into_iter().flatten() {
                                kept.lock().unwrap().push((service.clone(), span.clone()));
                            }
                        }
                    }
                    Json(json!({}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, spans }
    }

    /// The first span (with its service) that `want` accepts, waiting up to 15 s for it.
    async fn span(&self, want: impl Fn(&Value) -> bool) -> (String, Value) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(found) = self.spans.lock().unwrap().iter().find(|(_, s)| want(s)) {
                return found.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no such span; the collector has {:?}",
                self.spans.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn traces(&self) -> Vec<String> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .map(|(_, s)| s["traceId"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// The span id in an event's `traceparent`.
fn parent_span_of(event: &Value) -> String {
    let header = event["traceparent"].as_str().unwrap();
    header.split('-').nth(2).unwrap().to_owned()
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["key"] == key))
        .map_or(&Value::Null, |a| &a["value"])
}

#[tokio::test]
async fn traces_are_exported_to_an_otlp_collector() {
    let collector = Collector::start().await;
    let Some(app) = App::with_args(&["--otlp-endpoint", &collector.endpoint]).await else {
        return;
    };
    let mut sse = Sse::open(&app.server, &app.token, None).await;
    const UNSAMPLED: &str = "11111111111111111111111111111111";
    let unsampled = format!("00-{UNSAMPLED}-00f067aa0ba902b7-00");
    let not_recorded = Some(json!({"title": "not recorded"}));
    traced(
        &app,
        &mut sse,
        ("/api/tasks", not_recorded, 201),
        &unsampled,
        CREATED,
    )
    .await;

    let sampled = format!("00-{TRACE_A}-00f067aa0ba902b7-01");
    let (task, created) = traced(
        &app,
        &mut sse,
        ("/api/tasks", daily(), 201),
        &sampled,
        CREATED,
    )
    .await;
    assert_eq!(trace_id(&created), TRACE_A, "{created}");

    // The request: a server span, child of the caller's span, parent of the event.
    let (service, server) = collector
        .span(|s| s["traceId"] == TRACE_A && s["kind"] == 2)
        .await;
    assert!(service.starts_with("taskflow"), "{service}");
    assert_eq!(server["name"], "POST /api/tasks", "{server}");
    assert_eq!(server["parentSpanId"], "00f067aa0ba902b7", "{server}");
    assert_eq!(
        server["spanId"],
        parent_span_of(&created),
        "the event's parent is the request's span"
    );
    assert_eq!(
        attribute(&server, "http.response.status_code"),
        &json!({"intValue": "201"})
    );
    assert_eq!(
        attribute(&server, "http.route"),
        &json!({"stringValue": "/api/tasks"})
    );
    let start: u128 = server["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u128 = server["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 0 && start <= end, "{server}");

    // Completing it: the recurring consumer's span is a child of the completion's event.
    let completing = format!("00-{TRACE_B}-b7ad6b7169203331-01");
    let path = format!("/api/tasks/{}/complete", task["id"].as_str().unwrap());
    let (_, completed) = traced(&app, &mut sse, (&path, None, 200), &completing, COMPLETED).await;
    let (service, consumer) = collector
        .span(|s| s["traceId"] == TRACE_B && s["name"] == "recurring process")
        .await;
    assert!(service.starts_with("taskflow"), "{service}");
    assert_eq!(consumer["kind"], 5, "a consumer span: {consumer}");
    assert_eq!(
        consumer["parentSpanId"],
        parent_span_of(&completed),
        "{consumer}"
    );
    assert_eq!(
        attribute(&consumer, "cloudevents.event_id"),
        &json!({"stringValue": completed["id"]})
    );
    assert!(
        consumer.get("status").is_none(),
        "handled without error: {consumer}"
    );
    assert!(
        !collector.traces().iter().any(|t| t == UNSAMPLED),
        "a trace the caller does not record is not exported"
    );
}

#[tokio::test]
async fn a_collector_that_cannot_be_reached_costs_nothing_but_a_warning() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let Some(app) = App::with_args(&["--otlp-endpoint", &closed]).await else {
        return;
    };
    let res = app
        .post("/api/tasks", json!({"title": "still works"}))
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let warned = std::iter::from_fn(|| app.server.stderr.recv_timeout(Duration::from_secs(5)).ok())
        .take(400)
        .find(|l| l.contains("cannot export traces"));
    let line = warned.expect("a warning that traces cannot be exported");
    assert!(line.contains(&closed), "it names the collector: {line}");
}

#[test]
fn a_bad_collector_url_is_refused_at_start() {
    let out = std::process::Command::new(crate::BIN)
        .args([
            "--otlp-endpoint",
            "collector:4318",
            "migrate",
            "--database-url",
            "sqlite::memory:",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--otlp-endpoint") && err.contains("collector:4318"),
        "the message names the setting and the value: {err}"
    );
}
