//! Contract: every event the binary writes matches its JSON Schema in `schemas/`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::App;

pub fn validator(ty: &str) -> jsonschema::Validator {
    let path = format!("{}/../../schemas/{ty}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no schema for {ty} at {path}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

#[tokio::test]
async fn every_task_event_matches_its_schema_and_describes_the_change() {
    let Some(app) = App::new().await else { return };
    let t = app
        .task(json!({"title": "Pay rent", "tags": ["home"], "due_date": "2030-12-01", "recurrence": "FREQ=MONTHLY",
                      "reminders": [{"before_minutes": 30}]}))
        .await;
    let path = format!("/api/tasks/{}", t["id"].as_str().unwrap());
    app.patch(&path, json!({"title": "Pay the rent", "priority": "high"}))
        .await;
    app.call(Method::POST, &format!("{path}/complete"), None)
        .await;
    app.call(Method::POST, &format!("{path}/reopen"), None)
        .await;
    app.call(Method::DELETE, &path, None).await;

    let store = taskflow_store::connect(&app.db.url).await.unwrap();
    // The recurring service adds the next occurrence's `task.created`; this test is about the
    // events of the API's own changes.
    let events: Vec<_> = store
        .events_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.source == "taskflow/api")
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e.event.ty.as_str()).collect();
    assert_eq!(
        types,
        [
            "com.taskflow.task.created.v1",
            "com.taskflow.task.updated.v1",
            "com.taskflow.task.completed.v1",
            "com.taskflow.task.reopened.v1",
            "com.taskflow.task.deleted.v1"
        ]
    );
    for e in &events {
        let json = serde_json::to_value(&e.event).unwrap();
        let v = validator(&e.event.ty);
        let errors: Vec<String> = v
            .iter_errors(&json)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{} does not match its schema: {errors:?}\n{json:#}",
            e.event.ty
        );
        assert_eq!(e.topic, taskflow_core::Topic::TaskEvents);
        assert_eq!(json["subject"], t["id"]);
        assert_eq!(json["userid"], app.user["id"]);
        assert_eq!(json["data"]["task_number"], 1);
    }
    assert_eq!(
        serde_json::to_value(&events[1].event).unwrap()["data"]["changed"],
        json!(["title", "priority"])
    );
    assert_eq!(
        serde_json::to_value(&events[1].event).unwrap()["data"]["task_data"]["title"],
        "Pay the rent"
    );
    // A schema is not a rubber stamp: a wrong event fails it.
    let mut broken = serde_json::to_value(&events[0].event).unwrap();
    broken["data"]["task_data"]["priority"] = json!("critical");
    assert!(!validator("com.taskflow.task.created.v1").is_valid(&broken));
}
