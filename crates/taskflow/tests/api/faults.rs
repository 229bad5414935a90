//! Faults through a real Kafka-protocol broker, each bounded and on 127.0.0.1: the broker
//! unreachable for 30 s under write load, a consumer killed mid-stream, two `reminders` and two
//! `sync` processes side by side, and an event no handler can digest. They run in the Kafka
//! run of the suite (`TASKFLOW_TEST_BUS=kafka`) on PostgreSQL, and build their own topology.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use taskflow_testkit::{TestDb, TestServer};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::watch,
    task::JoinSet,
};

use crate::{
    BIN,
    kafka::{poll, skipped, start_all},
    services::Sse,
};

/// A database for a fault test: PostgreSQL (the roles share it across processes).
async fn database() -> Option<TestDb> {
    let db = TestDb::new(taskflow_testkit::Backend::from_env()).await?;
    if db.is_postgres() {
        Some(db)
    } else {
        eprintln!("runs on PostgreSQL only (TASKFLOW_TEST_BACKEND=postgres)");
        None
    }
}

/// Adds a task as `token`; the answer's status (503 when there was none).
pub(crate) async fn add_task(server: &TestServer, token: &str, body: Value) -> reqwest::StatusCode {
    server
        .client
        .post(server.url("/api/tasks"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_or(reqwest::StatusCode::SERVICE_UNAVAILABLE, |r| r.status())
}

/// Every audit entry of the signed-in user, oldest first.
pub(crate) async fn audit(server: &TestServer, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/audit?limit=500&after={c}"),
            None => "/api/audit?limit=500".to_owned(),
        };
        let page = server.get_json(&path, token).await;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

/// How many times each task title was created, by the audit log.
pub(crate) fn created_titles(items: &[Value]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for e in items {
        if e["type"] == "com.taskflow.task.created.v1" {
            let title = e["data"]["task_data"]["title"].as_str().unwrap_or_default();
            *seen.entry(title.to_owned()).or_insert(0) += 1;
        }
    }
    seen
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker of the test's own: tansu (`TASKFLOW_TEST_TANSU`) on `port`, advertising
/// `advertised` as its address, so that its clients reach it through a proxy there.
struct Broker(Child);

impl Broker {
    fn start(port: u16, advertised: &str) -> Self {
        let bin = std::env::var("TASKFLOW_TEST_TANSU")
            .expect("the broker fault test needs TASKFLOW_TEST_TANSU (scripts/test sets it)");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://{advertised}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the broker did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP proxy in front of the broker that can be cut: while cut, every connection through it
/// is closed and new ones are refused, as clients see a stopped broker. (The broker itself
/// keeps its log in memory, so stopping and restarting it would also lose the log, which a
/// Kafka broker keeps on disk.)
struct Proxy {
    addr: String,
    up: watch::Sender<bool>,
}

fn listen(addr: std::net::SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr).unwrap();
    socket.listen(128).unwrap()
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = listen("127.0.0.1:0".parse().unwrap());
        let addr = listener.local_addr().unwrap();
        let (up, mut rx) = watch::channel(true);
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let Some(l) = listener.take() else {
                    // Cut: wait to be restored, then listen on the same port again.
                    loop {
                        if *rx.borrow_and_update() {
                            break;
                        }
                        if rx.changed().await.is_err() {
                            return;
                        }
                    }
                    listener = Some(listen(addr));
                    continue;
                };
                let mut conns = JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = l.accept() => if let Ok((mut inbound, _)) = accepted {
                            let target = target.clone();
                            conns.spawn(async move {
                                if let Ok(mut out) = TcpStream::connect(&target).await {
                                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                                }
                            });
                        },
                        changed = rx.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            if !*rx.borrow_and_update() {
                                break;
                            }
                        }
                    }
                }
                // Dropping the listener refuses new connections; dropping the set closes
                // the open ones.
                drop(l);
                drop(conns);
            }
        });
        Self {
            addr: addr.to_string(),
            up,
        }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_gone_for_30_s_under_write_load_loses_and_repeats_nothing() {
    if skipped() {
        return;
    }
    let Some(db) = database().await else {
        return;
    };
    let broker_port = free_port();
    let proxy = Proxy::start(format!("127.0.0.1:{broker_port}")).await;
    let _broker = Broker::start(broker_port, &proxy.addr);
    let (url, brokers) = (db.url.clone(), proxy.addr.clone());
    let server = tokio::task::spawn_blocking(move || {
        TestServer::start_through(
            BIN,
            "serve",
            &url,
            &brokers,
            &["--rate-limit-per-ip", "0", "--rate-limit-per-user", "0"],
        )
    })
    .await
    .unwrap();
    let (token, _) = server.signup("ada@example.com", "UTC").await;

    // Writes every 50 ms, every tenth with a reminder 3 s later, until told to stop; the
    // acknowledged ones are kept.
    let acknowledged: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let (stop, stopped) = watch::channel(false);
    let writer = {
        let (client, url) = (server.client.clone(), server.url("/api/tasks"));
        let (token, acknowledged) = (token.clone(), acknowledged.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !*stopped.borrow() {
                let title = format!("w{n:04}");
                let reminder = n % 10 == 0;
                let body = if reminder {
                    let at = (Utc::now() + chrono::TimeDelta::seconds(3))
                        .to_rfc3339_opts(SecondsFormat::Millis, true);
                    json!({"title": title, "reminders": [{"at": at}]})
                } else {
                    json!({"title": title})
                };
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status() == 201) {
                    acknowledged.lock().unwrap().push((title, reminder));
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(30)).await;
    proxy.restore();
    let restored = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send_replace(true);
    writer.await.unwrap();

    let acknowledged = acknowledged.lock().unwrap().clone();
    let titles: BTreeSet<String> = acknowledged.iter().map(|(t, _)| t.clone()).collect();
    let reminders = acknowledged.iter().filter(|(_, r)| *r).count();
    assert!(
        titles.len() > 200,
        "writes went on while the broker was gone: {}",
        titles.len()
    );
    // Everything written reaches the audit log soon after the broker is back (the consumers
    // do not first read through the errors queued during the outage), and each reminder
    // fires (late where it came due while the broker was gone).
    let deadline = restored + Duration::from_secs(20);
    let (created, fired) = loop {
        let items = audit(&server, &token).await;
        let created = created_titles(&items);
        let fired: Vec<Value> = items
            .into_iter()
            .filter(|e| e["type"] == "com.taskflow.reminder.triggered.v1")
            .collect();
        if (titles.iter().all(|t| created.contains_key(t)) && fired.len() >= reminders)
            || Instant::now() > deadline
        {
            break (created, fired);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "audit log complete {:?} after the broker came back",
        restored.elapsed()
    );
    let missing: Vec<&String> = titles
        .iter()
        .filter(|t| !created.contains_key(*t))
        .collect();
    if !missing.is_empty() {
        show_logs(&server, &["relay"]);
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged tasks never reached the audit log: {missing:?}",
        missing.len()
    );
    let twice: Vec<_> = created.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "created twice: {twice:?}");
    assert_eq!(
        created.len(),
        titles.len(),
        "nothing created that was not acknowledged"
    );
    let fired_tasks: BTreeSet<&str> = fired.iter().filter_map(|e| e["task_id"].as_str()).collect();
    assert_eq!(fired.len(), reminders, "each reminder fired once");
    assert_eq!(fired_tasks.len(), reminders, "each reminder fired once");
    // Timers live in the database: a reminder fires once, never before its time, broker or
    // not (late ones say so; with the scheduler beside the API they are on time).
    for e in &fired {
        let late = e["data"]["late_by_ms"].as_i64().unwrap();
        assert_eq!(e["data"]["late"], late > 2000, "{e}");
    }
    // The notifier, behind the broker too, told of every reminder: one notification each,
    // or one digest ("12 reminders") for a burst.
    let told = |b: &Value| -> usize {
        b["items"].as_array().map_or(0, |items| {
            items
                .iter()
                .map(|n| match n["task_id"].as_str() {
                    Some(_) => 1,
                    None => n["title"]
                        .as_str()
                        .and_then(|t| t.split(' ').next()?.parse().ok())
                        .unwrap_or(0),
                })
                .sum()
        })
    };
    let notes = poll(
        &server,
        &token,
        "/api/notifications?limit=500",
        Duration::from_secs(10),
        |b| told(b) >= reminders,
    )
    .await;
    eprintln!(
        "notifications complete {:?} after the broker came back",
        restored.elapsed()
    );
    if told(&notes) != reminders {
        show_logs(
            &server,
            &["notifier", "consumer", "partitions", "WARN", "ERROR"],
        );
    }
    assert_eq!(told(&notes), reminders, "{notes}");
    assert!(
        metric(&server, "taskflow_relay_errors_total").await >= 1.0,
        "the relay counted its failed rounds"
    );
}

/// Prints the lines `server` has logged that name one of `about`, for a failure's story.
pub(crate) fn show_logs(server: &TestServer, about: &[&str]) {
    for l in std::iter::from_fn(|| server.stderr.try_recv().ok()) {
        if about.iter().any(|a| l.contains(a)) {
            eprintln!("{l}");
        }
    }
}

/// The number a metric line of `server`'s `/metrics` carries, 0 when absent.
pub(crate) async fn metric(server: &TestServer, line: &str) -> f64 {
    let text = server.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// How many task creations the audit log holds for `token`'s user.
async fn audited(server: &TestServer, token: &str) -> usize {
    created_titles(&audit(server, token).await).values().sum()
}

/// Adds `titles` as `token`, eight at a time.
async fn add_all(server: &TestServer, token: &str, titles: impl Iterator<Item = String>) {
    let titles: Vec<String> = titles.collect();
    for chunk in titles.chunks(8) {
        let adds = chunk
            .iter()
            .map(|t| add_task(server, token, json!({"title": t})));
        for status in futures_util::future::join_all(adds).await {
            assert_eq!(status, 201);
        }
    }
}

#[tokio::test]
async fn a_consumer_killed_mid_stream_resumes_from_its_committed_offset_with_no_duplicate_effect() {
    if skipped() {
        return;
    }
    let Some(db) = database().await else {
        return;
    };
    const N: usize = 600;
    let api = TestServer::start_with(
        BIN,
        "run",
        &db.url,
        &[
            "--roles",
            "api,relay",
            "--rate-limit-per-ip",
            "0",
            "--rate-limit-per-user",
            "0",
        ],
    );
    // Each audit entry takes 10 ms to write, so the log takes seconds to digest and the kill
    // lands in the middle of it.
    db.execute(
        "CREATE FUNCTION slow_audit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$;
         CREATE TRIGGER slow_audit BEFORE INSERT ON audit_log
             FOR EACH ROW EXECUTE FUNCTION slow_audit();",
    )
    .await;
    let (token, _) = api.signup("ada@example.com", "UTC").await;
    add_all(&api, &token, (0..N).map(|n| format!("t{n:04}"))).await;

    let first = TestServer::start_with(BIN, "run", &db.url, &["--roles", "audit"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while audited(&api, &token).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the audit consumer wrote nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the next offset commit (every second), then killed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill9();
    let at_kill = audited(&api, &token).await;
    assert!(at_kill < N, "killed mid-stream: {at_kill} of {N} written");

    let second = TestServer::start_with(BIN, "run", &db.url, &["--roles", "audit"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while audited(&api, &token).await < N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let created = created_titles(&audit(&api, &token).await);
    assert_eq!(created.len(), N, "every task in the audit log");
    assert!(created.values().all(|n| *n == 1), "none twice");
    // It went on from the committed offset: what it handled is what was left, not all of it.
    let handled = metric(&second, "taskflow_events_handled_total{consumer=\"audit\"}").await;
    assert!(
        handled > 0.0 && handled < N as f64,
        "the second audit process handled {handled} events; {at_kill} of {N} were written before the kill"
    );
}

#[tokio::test]
async fn two_reminders_processes_never_fire_one_reminder_twice() {
    if skipped() {
        return;
    }
    let Some(db) = database().await else {
        return;
    };
    const N: usize = 40;
    let api = TestServer::start_with(
        BIN,
        "run",
        &db.url,
        &[
            "--roles",
            "api,relay",
            "--rate-limit-per-ip",
            "0",
            "--rate-limit-per-user",
            "0",
        ],
    );
    let workers = start_all(&db, &["reminders", "reminders", "audit"]);
    let (token, _) = api.signup("ada@example.com", "UTC").await;
    // All due at the same instant, so both schedulers wake for them together.
    let at =
        (Utc::now() + chrono::TimeDelta::seconds(4)).to_rfc3339_opts(SecondsFormat::Millis, true);
    for n in 0..N {
        let body = json!({"title": format!("r{n}"), "reminders": [{"at": at}]});
        assert_eq!(add_task(&api, &token, body).await, 201);
    }
    let triggered = |items: Vec<Value>| -> Vec<Value> {
        items
            .into_iter()
            .filter(|e| e["type"] == "com.taskflow.reminder.triggered.v1")
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while triggered(audit(&api, &token).await).len() < N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Long enough for a second firing to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fired_events = triggered(audit(&api, &token).await);
    let tasks: BTreeSet<&str> = fired_events
        .iter()
        .filter_map(|e| e["task_id"].as_str())
        .collect();
    assert_eq!(fired_events.len(), N, "one reminder.triggered per reminder");
    assert_eq!(tasks.len(), N);
    let mut fired = 0.0;
    for w in &workers[..2] {
        fired += metric(w, "taskflow_reminders_fired_total").await;
    }
    assert_eq!(
        fired, N as f64,
        "the two processes fired {fired} reminders between them"
    );
}

#[tokio::test]
async fn two_sync_processes_each_deliver_every_event_to_their_own_clients() {
    if skipped() {
        return;
    }
    let Some(db) = database().await else {
        return;
    };
    let a = TestServer::start_with(BIN, "run", &db.url, &["--roles", "api,sync"]);
    let mut rest = start_all(&db, &["api,sync", "relay"]);
    let b = rest.remove(0);
    let (token, _) = a.signup("ada@example.com", "UTC").await;
    let mut on_a = Sse::open(&a, &token, None).await;
    let mut on_b = Sse::open(&b, &token, None).await;
    for (via, title) in [(&a, "through a"), (&b, "through b")] {
        assert_eq!(add_task(via, &token, json!({"title": title})).await, 201);
        for (name, stream) in [("a", &mut on_a), ("b", &mut on_b)] {
            let (_, ty, data) = stream
                .next(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("{title}: nothing on the stream of {name}"));
            assert_eq!(ty, "com.taskflow.task.created.v1");
            assert_eq!(data["data"]["task_data"]["title"], title, "on {name}");
        }
    }
}

#[tokio::test]
async fn an_event_no_handler_can_digest_is_parked_and_the_group_moves_on() {
    if skipped() {
        return;
    }
    let Some(db) = database().await else {
        return;
    };
    let api = TestServer::start_with(BIN, "run", &db.url, &["--roles", "api,relay"]);
    let audit_role = TestServer::start_with(BIN, "run", &db.url, &["--roles", "audit"]);
    // The audit log refuses one task's events, on every try.
    db.execute(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.data LIKE '%\"title\":\"poison\"%' THEN RAISE EXCEPTION 'poison'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_log
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .await;
    let (token, _) = api.signup("ada@example.com", "UTC").await;
    for title in ["before", "poison", "after"] {
        assert_eq!(add_task(&api, &token, json!({"title": title})).await, 201);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        let created = created_titles(&audit(&api, &token).await);
        if created.contains_key("after") || Instant::now() > deadline {
            break created;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        created.keys().map(String::as_str).collect::<Vec<_>>(),
        ["after", "before"],
        "the group went on past the event it could not digest"
    );
    let parked = metric(&audit_role, "taskflow_dead_letters{consumer=\"audit\"}").await;
    assert_eq!(parked, 1.0, "parked as a dead letter");
}
