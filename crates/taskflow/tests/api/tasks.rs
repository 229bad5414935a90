use reqwest::Method;
use serde_json::json;

use crate::App;

#[tokio::test]
async fn a_task_is_created_with_defaults_and_read_back_with_its_etag() {
    let Some(app) = App::new().await else { return };
    let t = app.task(json!({"title": "  Pay rent  "})).await;
    assert_eq!(t["title"], "Pay rent");
    assert_eq!(t["number"], 1);
    assert_eq!(t["status"], "pending");
    assert_eq!(t["priority"], "medium");
    assert_eq!(t["tags"], json!([]));
    assert_eq!(t["recurrence_anchor"], "due");
    assert_eq!(t["version"], 1);
    assert!(t["series_id"].is_null() && t["completed_at"].is_null() && t["due_at"].is_null());
    let res = app
        .get(&format!("/api/tasks/{}", t["id"].as_str().unwrap()))
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.headers.get("etag").unwrap(), "\"1\"");
    assert_eq!(res.body, t);
}

#[tokio::test]
async fn a_full_task_keeps_every_field() {
    let Some(app) = App::new().await else { return };
    let t = app
        .task(json!({
            "title": "Pay rent", "description": "to the landlord", "priority": "urgent",
            "tags": ["#Home", "bills", "home"], "due_date": "2030-12-01",
            "recurrence": "FREQ=MONTHLY;BYMONTHDAY=1", "recurrence_anchor": "completion",
            "reminders": [{"before_minutes": 60}, {"at": "2030-11-30T12:00:00Z"}]
        }))
        .await;
    assert_eq!(t["tags"], json!(["home", "bills"]));
    assert_eq!(t["due_date"], "2030-12-01");
    assert_eq!(t["recurrence"], "FREQ=MONTHLY;BYMONTHDAY=1");
    assert_eq!(t["recurrence_anchor"], "completion");
    assert_eq!(t["series_id"], t["id"]);
    // All-day: 09:00 in New York (EST, UTC-5) minus one hour.
    assert_eq!(t["reminders"][0]["fire_at"], "2030-12-01T13:00:00Z");
    assert_eq!(t["reminders"][0]["before_minutes"], 60);
    assert_eq!(t["reminders"][1]["fire_at"], "2030-11-30T12:00:00Z");
    assert!(t["reminders"][1]["before_minutes"].is_null());
    assert_eq!(t["reminders"][0]["status"], "pending");
}

#[tokio::test]
async fn a_reminder_already_past_is_skipped() {
    let Some(app) = App::new().await else { return };
    let t = app
        .task(json!({"title": "x", "reminders": [{"at": "2001-01-01T00:00:00Z"}]}))
        .await;
    assert_eq!(t["reminders"][0]["status"], "skipped");
}

#[tokio::test]
async fn patch_changes_fields_null_clears_and_the_version_moves() {
    let Some(app) = App::new().await else { return };
    let t = app.task(json!({"title": "a", "description": "d", "due_at": "2030-01-01T10:00:00+01:00", "tags": ["x"]})).await;
    assert_eq!(t["due_at"], "2030-01-01T09:00:00Z", "stored in UTC");
    let path = format!("/api/tasks/{}", t["id"].as_str().unwrap());
    let res = app.patch(&path, json!({"title": "b", "description": null, "due_at": null, "tags": null, "priority": "high"})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.headers.get("etag").unwrap(), "\"2\"");
    let b = &res.body;
    assert_eq!(
        (
            b["title"].as_str(),
            b["description"].as_str(),
            b["priority"].as_str()
        ),
        (Some("b"), Some(""), Some("high"))
    );
    assert!(b["due_at"].is_null());
    assert_eq!(b["tags"], json!([]));
    assert_eq!(b["version"], 2);
    let same = app.patch(&path, json!({"title": "b"})).await;
    assert_eq!(
        same.body["version"], 2,
        "a patch that changes nothing keeps the version"
    );
    let to_date = app.patch(&path, json!({"due_date": "2030-02-02"})).await;
    assert_eq!(to_date.body["due_date"], "2030-02-02");
}

#[tokio::test]
async fn changing_the_due_time_reschedules_relative_reminders() {
    let Some(app) = App::new().await else { return };
    let t = app.task(json!({"title": "a", "due_at": "2030-01-01T10:00:00Z", "reminders": [{"before_minutes": 15}]})).await;
    let res = app
        .patch(
            &format!("/api/tasks/{}", t["id"].as_str().unwrap()),
            json!({"due_at": "2030-01-02T10:00:00Z"}),
        )
        .await;
    assert_eq!(res.body["reminders"][0]["fire_at"], "2030-01-02T09:45:00Z");
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_changes_nothing() {
    let Some(app) = App::new().await else { return };
    let t = app.task(json!({"title": "a"})).await;
    let path = format!("/api/tasks/{}", t["id"].as_str().unwrap());
    let ok = app
        .call_as(
            &app.token,
            Method::PATCH,
            &path,
            Some(json!({"title": "b"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(ok.status, 200);
    let before = app.counts().await;
    let stale = app
        .call_as(
            &app.token,
            Method::PATCH,
            &path,
            Some(json!({"title": "c"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    stale.problem(412);
    let del = app
        .call_as(
            &app.token,
            Method::DELETE,
            &path,
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    del.problem(412);
    assert_eq!(app.get(&path).await.body["title"], "b");
    assert_eq!(app.counts().await, before);
    let del = app
        .call_as(
            &app.token,
            Method::DELETE,
            &path,
            None,
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!(del.status, 204);
}

#[tokio::test]
async fn complete_is_idempotent_and_reopen_undoes_it() {
    let Some(app) = App::new().await else { return };
    let t = app
        .task(json!({"title": "a", "reminders": [{"at": "2030-01-01T00:00:00Z"}]}))
        .await;
    let path = format!("/api/tasks/{}", t["id"].as_str().unwrap());
    let done = app
        .call(Method::POST, &format!("{path}/complete"), None)
        .await;
    assert_eq!(done.status, 200);
    assert_eq!(done.body["status"], "completed");
    assert!(done.body["completed_at"].is_string());
    assert_eq!(done.body["reminders"][0]["status"], "cancelled");
    let events = app.counts().await.1;
    let again = app
        .call(Method::POST, &format!("{path}/complete"), None)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body, done.body,
        "completing a completed task changes nothing"
    );
    assert_eq!(app.counts().await.1, events, "and writes no event");
    let open = app
        .call(Method::POST, &format!("{path}/reopen"), None)
        .await;
    assert_eq!(open.body["status"], "pending");
    assert!(open.body["completed_at"].is_null());
    assert_eq!(open.body["reminders"][0]["status"], "pending");
}

#[tokio::test]
async fn delete_is_204_then_404_and_numbers_are_never_reused() {
    let Some(app) = App::new().await else { return };
    let a = app.task(json!({"title": "a"})).await;
    let path = format!("/api/tasks/{}", a["id"].as_str().unwrap());
    assert_eq!(app.call(Method::DELETE, &path, None).await.status, 204);
    app.get(&path).await.problem(404);
    app.call(Method::DELETE, &path, None).await.problem(404);
    assert_eq!(app.task(json!({"title": "b"})).await["number"], 2);
}

#[tokio::test]
async fn another_users_task_is_404_for_every_verb() {
    let Some(app) = App::new().await else { return };
    let t = app.task(json!({"title": "mine"})).await;
    let (eve, eve_user) = app.server.signup("eve@example.com", "UTC").await;
    let id = t["id"].as_str().unwrap();
    let before = app.counts().await;
    for (m, p, body) in [
        (Method::GET, format!("/api/tasks/{id}"), None),
        (
            Method::PATCH,
            format!("/api/tasks/{id}"),
            Some(json!({"title": "stolen"})),
        ),
        (Method::DELETE, format!("/api/tasks/{id}"), None),
        (Method::POST, format!("/api/tasks/{id}/complete"), None),
        (Method::POST, format!("/api/tasks/{id}/reopen"), None),
        (
            Method::GET,
            format!("/api/{}/tasks/1", eve_user["id"].as_str().unwrap()),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/{}/tasks/1", eve_user["id"].as_str().unwrap()),
            Some(json!({"title": "stolen"})),
        ),
        (
            Method::DELETE,
            format!("/api/{}/tasks/1", eve_user["id"].as_str().unwrap()),
            None,
        ),
        (
            Method::POST,
            format!("/api/{}/tasks/1/complete", eve_user["id"].as_str().unwrap()),
            None,
        ),
    ] {
        let res = app.call_as(&eve, m.clone(), &p, body, &[]).await;
        assert_eq!(res.status, 404, "{m} {p}");
        res.problem(404);
    }
    let list = app
        .call_as(&eve, Method::GET, "/api/tasks", None, &[])
        .await;
    assert_eq!(list.body["items"], json!([]));
    assert_eq!(app.counts().await, before);
    assert_eq!(
        app.get(&format!("/api/tasks/{id}")).await.body["title"],
        "mine"
    );
}

#[tokio::test]
async fn the_compatibility_routes_use_numbers_and_refuse_another_user_id() {
    let Some(app) = App::new().await else { return };
    let uid = app.user_id().to_owned();
    let created = app
        .post(&format!("/api/{uid}/tasks"), json!({"title": "compat"}))
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["number"], 1);
    let got = app.get(&format!("/api/{uid}/tasks/1")).await;
    assert_eq!(got.body["title"], "compat");
    let put = app
        .call(
            Method::PUT,
            &format!("/api/{uid}/tasks/1"),
            Some(json!({"title": "renamed"})),
        )
        .await;
    assert_eq!(put.body["title"], "renamed");
    let done = app
        .call(Method::PATCH, &format!("/api/{uid}/tasks/1/complete"), None)
        .await;
    assert_eq!(done.body["status"], "completed");
    let list = app.get(&format!("/api/{uid}/tasks?status=completed")).await;
    assert_eq!(list.body["items"][0]["number"], 1);
    assert_eq!(
        app.call(Method::DELETE, &format!("/api/{uid}/tasks/1"), None)
            .await
            .status,
        204
    );
    let (_, other) = app.server.signup("eve@example.com", "UTC").await;
    let other_id = other["id"].as_str().unwrap();
    app.get(&format!("/api/{other_id}/tasks"))
        .await
        .problem(403);
    app.post(&format!("/api/{other_id}/tasks"), json!({"title": "x"}))
        .await
        .problem(403);
    app.get("/api/not-a-uuid/tasks").await.problem(403);
}
