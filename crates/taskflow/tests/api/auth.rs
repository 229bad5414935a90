use reqwest::Method;
use serde_json::json;

use crate::App;

#[tokio::test]
async fn signup_returns_a_token_and_the_user_and_login_works() {
    let Some(app) = App::new().await else { return };
    assert_eq!(app.user["email"], "ada@example.com");
    assert_eq!(app.user["timezone"], "America/New_York");
    assert!(app.user.get("password_hash").is_none());
    let res = app
        .call_as(
            "",
            Method::POST,
            "/api/auth/login",
            Some(json!({"email": "ADA@example.com", "password": "correct horse battery"})),
            &[],
        )
        .await;
    assert_eq!(res.status, 200);
    let token = res.body["token"].as_str().unwrap();
    let me = app.call_as(token, Method::GET, "/api/me", None, &[]).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], app.user["id"]);
}

#[tokio::test]
async fn a_duplicate_email_is_409() {
    let Some(app) = App::new().await else { return };
    let res = app
        .call_as(
            "",
            Method::POST,
            "/api/auth/signup",
            Some(json!({"email": "ada@example.com", "password": "another password"})),
            &[],
        )
        .await;
    res.problem(409);
}

#[tokio::test]
async fn a_short_password_and_a_bad_timezone_are_422_naming_both_fields() {
    let Some(app) = App::new().await else { return };
    let res = app
        .call_as(
            "",
            Method::POST,
            "/api/auth/signup",
            Some(json!({"email": "x@example.com", "password": "short", "timezone": "Mars/Base"})),
            &[],
        )
        .await;
    assert_eq!(res.error_fields(), ["password", "timezone"]);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let Some(app) = App::new().await else { return };
    let a = app
        .call_as(
            "",
            Method::POST,
            "/api/auth/login",
            Some(json!({"email": "ada@example.com", "password": "wrong password"})),
            &[],
        )
        .await;
    let b = app
        .call_as(
            "",
            Method::POST,
            "/api/auth/login",
            Some(json!({"email": "nobody@example.com", "password": "wrong password"})),
            &[],
        )
        .await;
    a.problem(401);
    b.problem(401);
    assert_eq!(a.body["detail"], b.body["detail"]);
}

#[tokio::test]
async fn every_task_route_needs_a_valid_token() {
    let Some(app) = App::new().await else { return };
    for (m, p) in [
        (Method::GET, "/api/tasks"),
        (Method::POST, "/api/tasks"),
        (Method::GET, "/api/me"),
    ] {
        let res = app
            .call_as("", m.clone(), p, Some(json!({"title": "x"})), &[])
            .await;
        res.problem(401);
        assert_eq!(res.headers.get("www-authenticate").unwrap(), "Bearer");
        app.call_as("garbage.token.here", m, p, Some(json!({"title": "x"})), &[])
            .await
            .problem(401);
    }
}

#[tokio::test]
async fn the_profile_changes_name_and_timezone_and_validates_them() {
    let Some(app) = App::new().await else { return };
    let res = app
        .patch(
            "/api/me",
            json!({"name": "Ada L.", "timezone": "Europe/Paris"}),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        (res.body["name"].as_str(), res.body["timezone"].as_str()),
        (Some("Ada L."), Some("Europe/Paris"))
    );
    assert_eq!(
        app.patch("/api/me", json!({"timezone": "Nowhere/Land"}))
            .await
            .error_fields(),
        ["timezone"]
    );
    assert_eq!(app.get("/api/me").await.body["timezone"], "Europe/Paris");
}

#[tokio::test]
async fn the_signing_secret_survives_a_restart() {
    let Some(app) = App::new().await else { return };
    let url = app.server.db_url.clone();
    let token = app.token.clone();
    let App { server, db, .. } = app;
    server.terminate();
    let server = taskflow_testkit::TestServer::start(crate::BIN, &url, &[]);
    let res = server
        .client
        .get(server.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "a token issued before the restart is still valid"
    );
    drop(db);
}

#[tokio::test]
async fn a_configured_signing_secret_is_used_instead_of_the_stored_one() {
    let Some((server, db)) = crate::start(&["--jwt-secret", "first-secret-of-enough-length"]).await
    else {
        return;
    };
    let (token, _) = server.signup("sec@example.com", "UTC").await;
    server.terminate();
    let me = |server: &taskflow_testkit::TestServer| {
        let req = server.client.get(server.url("/api/me")).bearer_auth(&token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let other = taskflow_testkit::TestServer::start(
        crate::BIN,
        &db.url,
        &["--jwt-secret", "another-secret-entirely"],
    );
    assert_eq!(
        me(&other).await,
        401,
        "a token signed with another secret is refused"
    );
    other.terminate();
    let stored = taskflow_testkit::TestServer::start(crate::BIN, &db.url, &[]);
    assert_eq!(
        me(&stored).await,
        401,
        "nor does the generated secret accept it"
    );
    stored.terminate();
    let same = taskflow_testkit::TestServer::start(
        crate::BIN,
        &db.url,
        &["--jwt-secret", "first-secret-of-enough-length"],
    );
    assert_eq!(me(&same).await, 200);
}
