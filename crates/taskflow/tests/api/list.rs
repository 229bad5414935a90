use serde_json::{Value, json};

use crate::App;

fn titles(v: &Value) -> Vec<&str> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect()
}

async fn seeded() -> Option<App> {
    let app = App::new().await?;
    app.task(json!({"title": "Pay rent", "priority": "urgent", "tags": ["home", "bills"], "due_date": "2030-01-10"})).await;
    app.task(json!({"title": "buy milk", "description": "oat milk from the corner shop", "tags": ["home"], "due_at": "2030-01-09T15:00:00Z"})).await;
    app.task(json!({"title": "Call mom", "priority": "low"}))
        .await;
    app.task(json!({"title": "file taxes", "priority": "high", "due_at": "2020-04-15T12:00:00Z"}))
        .await;
    let done = app
        .task(json!({"title": "old chore", "due_at": "2020-01-01T12:00:00Z"}))
        .await;
    app.call(
        reqwest::Method::POST,
        &format!("/api/tasks/{}/complete", done["id"].as_str().unwrap()),
        None,
    )
    .await;
    Some(app)
}

#[tokio::test]
async fn filters_narrow_the_list() {
    let Some(app) = seeded().await else { return };
    let get = |q: &'static str| {
        let app = &app;
        async move { app.get(&format!("/api/tasks?{q}")).await.body }
    };
    assert_eq!(titles(&get("status=completed").await), ["old chore"]);
    assert_eq!(titles(&get("status=pending").await).len(), 4);
    assert_eq!(titles(&get("status=all").await).len(), 5);
    assert_eq!(
        titles(&get("priority=urgent,low").await),
        ["Pay rent", "Call mom"]
    );
    assert_eq!(titles(&get("tag=home&tag=bills").await), ["Pay rent"]);
    assert_eq!(titles(&get("tag=HOME").await), ["buy milk", "Pay rent"]);
    assert_eq!(titles(&get("q=corner%20milk").await), ["buy milk"]);
    assert_eq!(titles(&get("q=Milk").await), ["buy milk"]);
    assert!(
        titles(&get("q=milk%20rent").await).is_empty(),
        "words are ANDed"
    );
    assert_eq!(
        titles(&get("overdue=true").await),
        ["file taxes"],
        "completed tasks are not overdue"
    );
    // Dates are whole days in the user's timezone (New York).
    assert_eq!(titles(&get("due_after=2030-01-10").await), ["Pay rent"]);
    assert_eq!(
        titles(&get("due_before=2030-01-09").await),
        ["old chore", "file taxes", "buy milk"]
    );
    assert_eq!(
        titles(&get("due_after=2030-01-09T15:00:00Z&due_before=2030-01-09T15:00:00Z").await),
        ["buy milk"],
        "bounds are inclusive"
    );
    assert_eq!(
        titles(&get("due_after=2030-01-10T04:59:59Z&due_before=2030-01-10T05:00:00Z").await),
        ["Pay rent"],
        "an all-day task counts as its whole day"
    );
}

#[tokio::test]
async fn sorting_puts_undated_last_and_breaks_ties_by_number() {
    let Some(app) = seeded().await else { return };
    let get = |q: &'static str| {
        let app = &app;
        async move {
            titles(&app.get(&format!("/api/tasks?{q}")).await.body)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        get("").await,
        [
            "old chore",
            "file taxes",
            "buy milk",
            "Pay rent",
            "Call mom"
        ]
    );
    assert_eq!(
        get("sort=due&order=desc").await,
        [
            "Pay rent",
            "buy milk",
            "file taxes",
            "old chore",
            "Call mom"
        ]
    );
    assert_eq!(
        get("sort=priority").await,
        [
            "Pay rent",
            "file taxes",
            "buy milk",
            "old chore",
            "Call mom"
        ]
    );
    assert_eq!(
        get("sort=priority&order=desc").await,
        [
            "Call mom",
            "old chore",
            "buy milk",
            "file taxes",
            "Pay rent"
        ]
    );
    assert_eq!(
        get("sort=title").await,
        [
            "buy milk",
            "Call mom",
            "file taxes",
            "old chore",
            "Pay rent"
        ]
    );
    assert_eq!(
        get("sort=created&order=desc").await,
        [
            "old chore",
            "file taxes",
            "Call mom",
            "buy milk",
            "Pay rent"
        ]
    );
}

#[tokio::test]
async fn cursors_walk_every_task_once_and_are_stable_under_inserts() {
    let Some(app) = App::new().await else { return };
    for i in 0..12 {
        app.task(json!({"title": format!("task {i:02}"), "due_at": format!("2030-01-{:02}T00:00:00Z", 12 - i)})).await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/tasks?limit=5".to_owned();
    let mut pages = 0;
    loop {
        let page = app.get(&path).await.body;
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["number"].as_i64().unwrap()),
        );
        if pages == 1 {
            // An insert that sorts before the cursor does not shift the following pages.
            app.task(json!({"title": "early", "due_at": "2029-01-01T00:00:00Z"}))
                .await;
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/tasks?limit=5&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=12).rev().collect::<Vec<i64>>());
    let last = app.get("/api/tasks?limit=200").await.body;
    assert!(last["next_cursor"].is_null());
    let c = app.get("/api/tasks?limit=5").await.body["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    app.get(&format!("/api/tasks?limit=5&sort=title&cursor={c}"))
        .await
        .problem(422);
}

/// URL-safe base64 without padding, as the server encodes a cursor's payload.
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn a_cursor_the_server_did_not_issue_is_422_on_every_backend() {
    let Some(app) = App::new().await else { return };
    for i in 0..3 {
        app.task(json!({"title": format!("t{i}")})).await;
    }
    let real = app.get("/api/tasks?limit=1").await.body["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let (payload, tag) = real.split_once('.').expect("payload.signature");
    // A text key under a numeric sort (was a 500 on PostgreSQL), unsigned and signed with
    // another payload's signature; a valid payload with its signature cut; an edited one.
    let text_key = b64(br#"{"s":"due","o":"asc","f":0,"k":"text","n":1}"#);
    let forged = [
        text_key.clone(),
        format!("{text_key}.{tag}"),
        payload.to_owned(),
        format!("{payload}.{}", &tag[1..]),
        format!(
            "{}.{tag}",
            b64(br#"{"s":"due","o":"asc","f":1,"k":0,"n":0}"#)
        ),
        "%00".to_owned(),
    ];
    for c in forged {
        let res = app.get(&format!("/api/tasks?limit=1&cursor={c}")).await;
        assert_eq!(res.error_fields(), ["cursor"], "{c}: {}", res.body);
    }
    let next = app.get(&format!("/api/tasks?limit=1&cursor={real}")).await;
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body["items"][0]["number"], 2);
}

/// `completed_after` / `completed_before` bound when a task was completed, not when it is due;
/// dates are whole days in the user's timezone, as for the due bounds.
#[tokio::test]
async fn completion_bounds_select_by_the_moment_of_completion() {
    let Some(app) = seeded().await else { return };
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::America::New_York)
        .date_naive();
    let yesterday = today.pred_opt().unwrap();
    let get = |q: String| {
        let app = &app;
        async move { app.get(&format!("/api/tasks?{q}")).await }
    };
    let done_today = get(format!("completed_after={today}&completed_before={today}")).await;
    assert_eq!(
        titles(&done_today.body),
        ["old chore"],
        "{}",
        done_today.body
    );
    assert!(titles(&get(format!("completed_before={yesterday}")).await.body).is_empty());
    let later = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let none_yet = get(format!("completed_after={}", later.replace('+', "%2B"))).await;
    assert!(titles(&none_yet.body).is_empty(), "{}", none_yet.body);
    let bad = get("completed_after=last%20tuesday".into()).await;
    let problem = bad.problem(422);
    assert_eq!(
        problem["errors"][0]["field"], "completed_after",
        "{problem}"
    );
}
