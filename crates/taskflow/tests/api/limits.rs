//! One client cannot take the service down: connection caps and timeouts, through the binary
//! on 127.0.0.1, bounded in count and time.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use crate::start;

fn addr(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

/// A connection from `from` (another loopback address is another client).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the server closes, up to `limit`; returns what arrived and when it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<(String, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => {
                return Some((
                    String::from_utf8_lossy(&got).into_owned(),
                    started.elapsed(),
                ));
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let Some((server, _db)) = start(&["--max-connections-per-ip", "5"]).await else {
        return;
    };
    let to = addr(&server.base);
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from([127, 0, 0, 2], to).await);
    }
    // Let the server accept them all before the sixth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sixth = connect_from([127, 0, 0, 2], to).await;
    let (answer, _) = read_until_closed(&mut sixth, Duration::from_secs(5))
        .await
        .expect("the sixth connection is answered and closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 5"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("from one address"), "{answer}");

    // Another client is still served while the first holds its five.
    let res = server
        .client
        .get(server.url("/healthz/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = metrics(&server.base).await;
    assert!(
        text.contains(r#"taskflow_connections_rejected_total{reason="per_ip"} 1"#),
        "{text}"
    );
    let logged = server
        .stderr
        .try_iter()
        .any(|l| l.contains("connection limit reached"));
    assert!(logged, "the refusal is logged");

    // A place freed is a place to take again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from([127, 0, 0, 2], to).await;
    again
        .write_all(b"GET /healthz/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut again, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn the_total_cap_holds_across_addresses() {
    if taskflow_testkit::through_dapr() {
        // The sidecar's own connections to the process count: the cap of 3 is theirs.
        eprintln!("not through a Dapr sidecar");
        return;
    }
    let Some((server, _db)) = start(&["--max-connections", "3"]).await else {
        return;
    };
    let to = addr(&server.base);
    let _held = [
        connect_from([127, 0, 0, 3], to).await,
        connect_from([127, 0, 0, 4], to).await,
        connect_from([127, 0, 0, 5], to).await,
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = connect_from([127, 0, 0, 6], to).await;
    let (answer, _) = read_until_closed(&mut fourth, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("in total"), "{answer}");
}

#[tokio::test]
async fn a_half_sent_request_and_a_slowloris_trickle_are_cut_at_the_header_timeout() {
    let Some((server, _db)) = start(&["--header-timeout-secs", "1"]).await else {
        return;
    };
    let to = addr(&server.base);
    let mut half = connect_from([127, 0, 0, 1], to).await;
    half.write_all(b"GET /healthz/live HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut trickle = connect_from([127, 0, 0, 1], to).await;
    let trickling = tokio::spawn(async move {
        let started = Instant::now();
        for b in b"GET /healthz/live HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if trickle.write_all(&[*b]).await.is_err() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    });
    let (_, after) = read_until_closed(&mut half, Duration::from_secs(5))
        .await
        .expect("the half-sent request is closed");
    assert!(after < Duration::from_secs(3), "closed after {after:?}");
    let cut = trickling.await.unwrap().expect("the trickle is cut");
    assert!(cut < Duration::from_secs(4), "cut after {cut:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_a_live_stream_stays() {
    let Some((server, _db)) = start(&["--idle-timeout-secs", "2", "--heartbeat-secs", "1"]).await
    else {
        return;
    };
    let (token, _) = server.signup("ada@example.com", "UTC").await;
    let to = addr(&server.base);
    let mut idle = connect_from([127, 0, 0, 1], to).await;
    idle.write_all(b"GET /healthz/live HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut stream = connect_from([127, 0, 0, 1], to).await;
    stream
        .write_all(
            format!("GET /api/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let (answer, after) = read_until_closed(&mut idle, Duration::from_secs(10))
        .await
        .expect("the idle connection is closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        // The server counts from its own last write, a moment before this read began.
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "closed after {after:?}"
    );
    // The stream, silent from the client's side, is kept open by its heartbeats.
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(4))
            .await
            .is_none(),
        "the live stream stays open"
    );
}

async fn auth(
    server: &taskflow_testkit::TestServer,
    route: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    server
        .client
        .post(server.url(&format!("/api/auth/{route}")))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn code(
    server: &taskflow_testkit::TestServer,
    route: &str,
    email: &str,
    password: &str,
) -> u16 {
    auth(server, route, email, password).await.status().as_u16()
}

async fn assert_problem(
    res: reqwest::Response,
    status: u16,
    detail: &str,
) -> reqwest::header::HeaderMap {
    assert_eq!(res.status(), status);
    let headers = res.headers().clone();
    assert_eq!(headers["content-type"], "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains(detail), "{body}");
    headers
}

#[tokio::test]
async fn sign_in_routes_have_their_own_limit_per_address() {
    let Some((server, _db)) =
        start(&["--rate-limit-auth-per-ip", "1", "--rate-limit-burst", "1"]).await
    else {
        return;
    };
    let (token, _) = server.signup("a@example.com", "UTC").await;
    let second = auth(&server, "signup", "b@example.com", "correct horse").await;
    let headers = assert_problem(second, 429, "rate limit").await;
    assert!(headers.contains_key("retry-after"));
    // Other routes are not held back by the sign-in limit.
    let me = server.get_json("/api/me", &token).await;
    assert_eq!(me["email"], "a@example.com", "{me}");
}

#[tokio::test]
async fn one_account_has_a_limit_of_its_own_whatever_the_address() {
    let Some((server, _db)) = start(&[
        "--rate-limit-auth-per-ip",
        "0",
        "--rate-limit-auth-per-account",
        "2",
    ])
    .await
    else {
        return;
    };
    assert_eq!(
        code(&server, "signup", "ada@example.com", "correct horse").await,
        201
    );
    assert_eq!(
        code(&server, "login", "ADA@example.com", "correct horse").await,
        200
    );
    let third = auth(&server, "login", "ada@example.com", "correct horse").await;
    assert_problem(third, 429, "rate limit").await;
    assert_eq!(
        code(&server, "signup", "bob@example.com", "correct horse").await,
        201
    );
}

#[tokio::test]
async fn repeated_failed_logins_of_one_account_must_wait_and_a_success_clears_them() {
    let Some((server, _db)) = start(&[
        "--rate-limit-auth-per-ip",
        "0",
        "--rate-limit-auth-per-account",
        "0",
        "--login-failures-before-throttle",
        "3",
    ])
    .await
    else {
        return;
    };
    assert_eq!(
        code(&server, "signup", "ada@example.com", "correct horse").await,
        201
    );
    for _ in 0..4 {
        assert_eq!(
            code(&server, "login", "ada@example.com", "wrong horse").await,
            401
        );
    }
    // Even the right password waits now: the throttle does not tell which one is right.
    let held = auth(&server, "login", "ada@example.com", "correct horse").await;
    let headers = assert_problem(held, 429, "too many failed logins").await;
    assert_eq!(headers["retry-after"], "1");
    // Another account is not affected, and the same holds for emails without an account.
    assert_eq!(code(&server, "login", "nobody@example.com", "x").await, 401);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        code(&server, "login", "ada@example.com", "correct horse").await,
        200
    );
    assert_eq!(
        code(&server, "login", "ada@example.com", "wrong horse").await,
        401
    );
}

#[tokio::test]
async fn a_flood_of_signups_is_queued_or_told_to_come_back() {
    let Some((server, _db)) = start(&[
        "--rate-limit-auth-per-ip",
        "0",
        "--rate-limit-auth-per-account",
        "0",
    ])
    .await
    else {
        return;
    };
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..60 {
        let client = server.client.clone();
        let url = server.url("/api/auth/signup");
        flood.spawn(async move {
            let res = client
                .post(url)
                .json(&serde_json::json!({"email": format!("u{i}@example.com"), "password": "correct horse"}))
                .send()
                .await
                .unwrap();
            let retry = res.headers().get("retry-after").is_some();
            (res.status().as_u16(), retry)
        });
    }
    let answers = flood.join_all().await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let busy = answers
        .iter()
        .filter(|(s, retry)| *s == 503 && *retry)
        .count();
    assert_eq!(
        created + busy,
        60,
        "only 201 or 503 with Retry-After: {answers:?}"
    );
    assert!(created >= 1 && busy >= 1, "{answers:?}");
    let text = metrics(&server.base).await;
    assert!(
        text.contains("taskflow_password_hashing_refused_total"),
        "{text}"
    );
}
