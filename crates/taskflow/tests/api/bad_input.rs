//! Every limit of API.md: the right status, a problem+json body naming what is wrong, and
//! nothing changed (the count of tasks and events is the same before and after).

use reqwest::Method;
use serde_json::{Value, json};

use crate::App;

async fn refused(app: &App, body: Value, status: u16, field: &str) {
    let before = app.counts().await;
    let res = app.post("/api/tasks", body.clone()).await;
    res.problem(status);
    if status == 422 {
        let fields = res.error_fields();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{body} should name {field}: {}",
            res.body
        );
    }
    assert_eq!(app.counts().await, before, "{body} must change nothing");
}

#[tokio::test]
async fn invalid_task_fields_are_422_naming_the_field_and_change_nothing() {
    let Some(app) = App::new().await else { return };
    app.task(json!({"title": "existing"})).await;
    let long = |n: usize| "a".repeat(n);
    let tags21: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let reminders11: Vec<Value> = (0..11)
        .map(|_| json!({"at": "2030-01-01T00:00:00Z"}))
        .collect();
    for (body, field) in [
        (json!({}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": "   "}), "title"),
        (json!({"title": long(501)}), "title"),
        (
            json!({"title": "a", "description": long(10_001)}),
            "description",
        ),
        (json!({"title": "a", "tags": tags21}), "tags"),
        (json!({"title": "a", "tags": ["two words"]}), "tags"),
        (json!({"title": "a", "tags": [long(51)]}), "tags"),
        (json!({"title": "a", "reminders": reminders11}), "reminders"),
        (
            json!({"title": "a", "due_at": "2030-01-01T10:00:00Z", "due_date": "2030-01-01"}),
            "due_at",
        ),
        (
            json!({"title": "a", "due_at": "2030-01-01T10:00:00"}),
            "due_at",
        ),
        (json!({"title": "a", "due_at": "tomorrow"}), "due_at"),
        (json!({"title": "a", "due_date": "2030-02-30"}), "due_date"),
        (
            json!({"title": "a", "reminders": [{"before_minutes": 10}]}),
            "reminders[0]",
        ),
        (
            json!({"title": "a", "due_date": "2030-01-01", "reminders": [{"before_minutes": -5}]}),
            "reminders[0]",
        ),
        (json!({"title": "a", "reminders": [{}]}), "reminders[0]"),
        (json!({"title": "a", "priority": "critical"}), "priority"),
        (
            json!({"title": "a", "recurrence": "FREQ=SOMETIMES"}),
            "recurrence",
        ),
        (
            json!({"title": "a", "recurrence": "DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY"}),
            "recurrence",
        ),
        (
            json!({"title": "a", "recurrence_anchor": "whenever"}),
            "recurrence_anchor",
        ),
        (json!({"title": 42}), "body"),
        (json!({"title": "a", "tags": "home"}), "body"),
    ] {
        refused(&app, body, 422, field).await;
    }
}

#[tokio::test]
async fn limits_at_the_edge_are_accepted() {
    let Some(app) = App::new().await else { return };
    let tags: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    let reminders: Vec<Value> = (0..10).map(|i| json!({"before_minutes": i})).collect();
    let t = app
        .task(json!({"title": "é".repeat(500), "description": "d".repeat(10_000), "tags": tags,
                      "due_at": "2031-01-01T00:00:00Z", "reminders": reminders, "unknown_field": true}))
        .await;
    assert_eq!(t["tags"].as_array().unwrap().len(), 20);
    assert_eq!(t["reminders"].as_array().unwrap().len(), 10);
    assert_eq!(
        app.task(json!({"title": "past", "due_date": "1999-01-01"}))
            .await["due_date"],
        "1999-01-01",
        "past due dates are allowed"
    );
}

#[tokio::test]
async fn malformed_json_is_400_and_a_wrong_content_type_is_415() {
    let Some(app) = App::new().await else { return };
    let before = app.counts().await;
    let res = app
        .server
        .client
        .post(app.server.url("/api/tasks"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app
        .server
        .client
        .post(app.server.url("/api/tasks"))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("{\"title\": \"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(app.counts().await, before);
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_and_a_10_mb_body_does_not_hurt_the_server() {
    let Some(app) = App::new().await else { return };
    let before = app.counts().await;
    let big = json!({"title": "a", "description": "x".repeat(65 * 1024)});
    app.post("/api/tasks", big).await.problem(413);
    let huge = vec![b'a'; 10 * 1024 * 1024];
    let res = app
        .server
        .client
        .post(app.server.url("/api/tasks"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await;
    if let Ok(res) = res {
        // The server may answer before it has read the body, or close the connection.
        assert_eq!(res.status(), 413);
    }
    assert_eq!(app.counts().await, before);
    assert_eq!(
        app.get("/healthz/live").await.status,
        200,
        "the server is still up"
    );
    assert_eq!(app.task(json!({"title": "still works"})).await["number"], 1);
}

#[tokio::test]
async fn an_sql_looking_title_is_stored_literally() {
    let Some(app) = App::new().await else { return };
    let title = "Robert'); DROP TABLE tasks;-- \" OR 1=1";
    let t = app
        .task(json!({"title": title, "description": "'; DELETE FROM users; --"}))
        .await;
    assert_eq!(
        app.get(&format!("/api/tasks/{}", t["id"].as_str().unwrap()))
            .await
            .body["title"],
        title
    );
    let found = app.get("/api/tasks?q=robert").await;
    assert_eq!(found.body["items"][0]["title"], title);
    assert_eq!(app.counts().await.0, 1);
}

#[tokio::test]
async fn bad_list_parameters_are_422() {
    let Some(app) = App::new().await else { return };
    for (q, field) in [
        ("limit=201", "limit"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("status=done", "status"),
        ("priority=high,nope", "priority"),
        ("sort=random", "sort"),
        ("order=up", "order"),
        ("overdue=maybe", "overdue"),
        ("due_before=next%20week", "due_before"),
        ("due_after=2030-01-01T00:00:00", "due_after"),
        ("cursor=not-a-cursor", "cursor"),
        ("tag=a%20b", "tag"),
    ] {
        let res = app.get(&format!("/api/tasks?{q}")).await;
        assert_eq!(res.error_fields(), [field], "{q}");
    }
}

#[tokio::test]
async fn a_malformed_if_match_and_a_malformed_id_are_clear_errors() {
    let Some(app) = App::new().await else { return };
    let t = app.task(json!({"title": "a"})).await;
    let path = format!("/api/tasks/{}", t["id"].as_str().unwrap());
    app.call_as(
        &app.token,
        Method::PATCH,
        &path,
        Some(json!({"title": "b"})),
        &[("if-match", "yesterday")],
    )
    .await
    .problem(400);
    app.get("/api/tasks/not-a-uuid").await.problem(404);
    app.patch(&path, json!({"title": null})).await.problem(422);
    app.patch(&path, json!({"status": "archived"}))
        .await
        .problem(422);
    assert_eq!(app.get(&path).await.body["version"], 1);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_json() {
    let Some(app) = App::new().await else { return };
    app.get("/api/nothing/here/at/all").await.problem(404);
    app.call(Method::DELETE, "/api/tasks", None)
        .await
        .problem(405);
    app.call(Method::PUT, "/healthz/live", None)
        .await
        .problem(405);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let Some(app) =
        App::with_args(&["--rate-limit-per-user", "5", "--rate-limit-burst", "1"]).await
    else {
        return;
    };
    let mut limited = None;
    for _ in 0..50 {
        let res = app.get("/api/tasks").await;
        if res.status == 429 {
            limited = Some(res);
            break;
        }
    }
    let res = limited.expect("the per-user limit kicks in");
    res.problem(429);
    let retry: u64 = res
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let (other, _) = app.server.signup("other@example.com", "UTC").await;
    let res = app
        .call_as(&other, Method::GET, "/api/tasks", None, &[])
        .await;
    assert_eq!(res.status, 200, "another user is not limited");
}

#[tokio::test]
async fn the_per_ip_limit_covers_unauthenticated_requests() {
    let Some(app) = App::with_args(&["--rate-limit-per-ip", "3", "--rate-limit-burst", "1"]).await
    else {
        return;
    };
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(
            app.call_as("", Method::GET, "/openapi.json", None, &[])
                .await
                .status
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // Probes and scrapes from the same address still pass: a refused liveness probe would
    // restart a healthy instance.
    for path in ["/healthz/live", "/healthz/ready", "/metrics"] {
        for _ in 0..10 {
            let res = app.call_as("", Method::GET, path, None, &[]).await;
            assert_eq!(res.status, 200, "{path}");
        }
    }
}
