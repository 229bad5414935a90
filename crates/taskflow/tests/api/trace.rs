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

#[tokio::test]
async fn a_requests_traceparent_reaches_its_events_and_the_next_occurrence() {
    let Some(app) = App::new().await else { return };
    let mut sse = Sse::open(&app.server, &app.token, None).await;
    let incoming = format!("00-{TRACE_A}-00f067aa0ba902b7-01");
    let res = app
        .call_as(
            &app.token,
            Method::POST,
            "/api/tasks",
            Some(json!({"title": "water the plants", "due_at": "2030-03-09T14:00:00Z", "recurrence": "FREQ=DAILY"})),
            &[("traceparent", &incoming)],
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_owned();
    let ((_, _, created), _) = sse
        .next_of("com.taskflow.task.created.v1", Duration::from_secs(10))
        .await
        .expect("task.created on the stream");
    assert_eq!(trace_id(&created), TRACE_A, "{created}");
    assert_ne!(
        created["traceparent"], incoming,
        "the event's parent is the server's span, a child of the caller's"
    );

    let completing = format!("00-{TRACE_B}-b7ad6b7169203331-01");
    let res = app
        .call_as(
            &app.token,
            Method::POST,
            &format!("/api/tasks/{id}/complete"),
            None,
            &[("traceparent", &completing)],
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let ((_, _, completed), _) = sse
        .next_of("com.taskflow.task.completed.v1", Duration::from_secs(10))
        .await
        .expect("task.completed on the stream");
    assert_eq!(trace_id(&completed), TRACE_B);
    let ((_, _, next), _) = sse
        .next_of("com.taskflow.task.created.v1", Duration::from_secs(10))
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
            .next_of("com.taskflow.task.created.v1", Duration::from_secs(10))
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
