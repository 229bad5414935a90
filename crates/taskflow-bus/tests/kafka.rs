//! The Kafka transport in process, against librdkafka's mock cluster (a real Kafka protocol
//! peer inside the test, with injectable broker errors): the relay publishes the outbox in
//! order, a consumer group receives every event with its outbox position, produce errors the
//! broker reports are retried without loss or reordering, and an event refused for good is
//! parked.

#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::Utc;
use rdkafka::{
    mocking::MockCluster,
    types::{RDKafkaApiKey, RDKafkaRespErr},
};
use taskflow_bus::{
    ConsumerConfig, Envelope, Handler, HandlerError, Transport,
    kafka::{KafkaBus, KafkaSettings},
};
use taskflow_core::{
    CloudEvent, Email, EventKind, Readiness, Role, Task, TaskDraft, TaskTitle, Timezone, User,
    UserId, UserName,
};
use taskflow_store::Store;
use taskflow_testkit::TestDb;
use tokio::sync::watch;

/// Records what it is handed.
struct Recorder(Mutex<Vec<Envelope>>);

#[async_trait]
impl Handler for Recorder {
    fn role(&self) -> Role {
        Role::Audit
    }
    fn group(&self) -> &'static str {
        "recorder"
    }
    fn wants(&self, _: &Envelope) -> bool {
        true
    }
    async fn handle(&self, events: &[Envelope]) -> Result<(), HandlerError> {
        self.0.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

fn user(email: &str) -> User {
    User {
        id: UserId::new(),
        email: Email::parse(email).unwrap(),
        name: UserName::parse("n").unwrap(),
        timezone: Timezone::parse("UTC").unwrap(),
        created_at: Utc::now(),
    }
}

/// Creates a task, and its event in the outbox; returns the event's position.
async fn add(store: &dyn Store, u: &User, title: &str) -> i64 {
    let draft = TaskDraft {
        title: Some(TaskTitle::parse(title).unwrap()),
        ..TaskDraft::default()
    };
    let task = Task::create(u.id, draft, u.timezone, Utc::now()).unwrap();
    let ev = Box::new(|t: &Task| {
        CloudEvent::for_task(EventKind::TaskCreated, t, &[], "test", None, Utc::now())
    });
    store
        .insert_task(&task, u.timezone, ev, None)
        .await
        .unwrap()
        .1
}

/// The settings of a transport on `cluster`.
fn settings(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> KafkaSettings {
    KafkaSettings {
        brokers: cluster.bootstrap_servers(),
        security_protocol: "plaintext".into(),
        sasl_mechanism: None,
        username: None,
        password: None,
        ca_file: None,
        client_id: "taskflow-test".into(),
        topic_prefix: String::new(),
        // The mock cluster has no CreateTopics; its own call makes them.
        create_topics: false,
        partitions: 3,
        replication_factor: 1,
        outbox_retention: None,
        debug: None,
    }
}

/// A store on a fresh SQLite file holding `users`, the three topics with `partitions` each
/// on `cluster`, and a transport on both.
async fn open(
    cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    partitions: i32,
    users: &[&User],
) -> (TestDb, Arc<dyn Store>, KafkaBus) {
    let db = TestDb::sqlite();
    let store = taskflow_store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    for u in users {
        store.insert_user(u, "h").await.unwrap();
    }
    for topic in ["task-events", "reminders", "task-updates"] {
        cluster.create_topic(topic, partitions, 1).unwrap();
    }
    let bus = KafkaBus::open(settings(cluster), store.clone())
        .await
        .unwrap();
    (db, store, bus)
}

/// The relay, and a group handing `rec` its events with `config`, until `stop`.
fn run(
    bus: &KafkaBus,
    rec: &Arc<Recorder>,
    config: ConsumerConfig,
    stop: &watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    let readiness = Readiness::default();
    let relay = {
        let (bus, readiness, stop) = (bus.clone(), readiness.clone(), stop.clone());
        tokio::spawn(async move { bus.relay(readiness, stop).await })
    };
    let consumer = {
        let (bus, handler, stop) = (bus.clone(), rec.clone(), stop.clone());
        tokio::spawn(async move { bus.consume(handler, config, readiness, stop).await })
    };
    (relay, consumer)
}

/// Waits until the recorder holds `n` events.
async fn received(rec: &Recorder, n: usize) -> Vec<Envelope> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = rec.0.lock().unwrap().clone();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_the_outbox_in_order_and_a_group_receives_every_event() {
    let cluster = MockCluster::new(1).unwrap();
    let (ada, bob) = (user("ada@example.com"), user("bob@example.com"));
    let (_db, store, bus) = open(&cluster, 3, &[&ada, &bob]).await;
    let (stop_tx, stop) = watch::channel(false);
    let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
    let (relay, consumer) = run(&bus, &rec, ConsumerConfig::default(), &stop);

    let mut last = 0;
    for n in 0..10 {
        let who = if n % 2 == 0 { &ada } else { &bob };
        last = add(&*store, who, &format!("task {n}")).await;
    }
    bus.committed(last);
    let first = received(&rec, 10).await;
    assert_eq!(first.len(), 10, "every event arrived: {first:?}");

    // The broker refuses the next produce requests with errors a client retries.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    for n in 10..20 {
        let who = if n % 2 == 0 { &ada } else { &bob };
        last = add(&*store, who, &format!("task {n}")).await;
    }
    bus.committed(last);
    let all = received(&rec, 20).await;
    let _ = stop_tx.send(true);
    relay.await.unwrap();
    consumer.await.unwrap();

    let mut positions: Vec<i64> = all.iter().map(|e| e.position).collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(
        positions,
        (1..=20).collect::<Vec<_>>(),
        "each position once: {all:?}"
    );
    for u in [&ada, &bob] {
        let mine: Vec<i64> = all
            .iter()
            .filter(|e| e.event.userid == u.id.to_string())
            .map(|e| e.position)
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one user's events in order: {mine:?}"
        );
        assert_eq!(mine.len(), 10);
    }
    let titles: Vec<&str> = all
        .iter()
        .map(|e| e.event.data["task_data"]["title"].as_str().unwrap())
        .collect();
    assert!(titles.contains(&"task 19"), "{titles:?}");
    assert_eq!(
        store.consumer_offset("relay").await.unwrap(),
        last,
        "the relay saved the last acknowledged position"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_brokers_refuse_for_good_is_parked_and_the_relay_goes_on() {
    let cluster = MockCluster::new(1).unwrap();
    let ada = user("ada@example.com");
    let (_db, store, bus) = open(&cluster, 1, &[&ada]).await;
    let (stop_tx, stop) = watch::channel(false);
    let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
    let (relay, consumer) = run(&bus, &rec, ConsumerConfig::default(), &stop);
    let first = add(&*store, &ada, "first").await;
    bus.committed(first);
    assert_eq!(received(&rec, 1).await.len(), 1);

    // The broker refuses the next produce request as too large: no retry can change that.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let refused = add(&*store, &ada, "refused").await;
    bus.committed(refused);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.count_dead_letters("relay").await.unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "the refused event was not parked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = add(&*store, &ada, "after").await;
    bus.committed(after);
    let got = received(&rec, 2).await;
    let _ = stop_tx.send(true);
    relay.await.unwrap();
    consumer.await.unwrap();

    let titles: Vec<&str> = got
        .iter()
        .map(|e| e.event.data["task_data"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["first", "after"], "the relay went on past it");
    assert_eq!(store.count_dead_letters("relay").await.unwrap(), 1);
    assert_eq!(store.consumer_offset("relay").await.unwrap(), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_group_given_a_partition_back_after_a_rebalance_misses_no_event_written_meanwhile() {
    use rdkafka::{
        ClientConfig,
        consumer::{BaseConsumer, Consumer as _},
    };
    let cluster = MockCluster::new(1).unwrap();
    let users: Vec<User> = (0..6).map(|n| user(&format!("u{n}@example.com"))).collect();
    let (_db, store, bus) = open(&cluster, 3, &users.iter().collect::<Vec<_>>()).await;
    let (stop_tx, stop) = watch::channel(false);
    let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
    let live = ConsumerConfig {
        durable: false,
        ..ConsumerConfig::default()
    };
    let (relay, consumer) = run(&bus, &rec, live, &stop);
    // A live group starts at the end of the log once it has its partitions: write until an
    // event arrives, one for every user (so every partition has been read).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut last = 0;
        for u in &users {
            last = add(&*store, u, "probe").await;
        }
        bus.committed(last);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if rec.0.lock().unwrap().iter().any(|e| e.position == last) {
            break;
        }
        assert!(Instant::now() < deadline, "the live group never started");
    }

    // Another member joins the group and takes partitions away; meanwhile events are written
    // on every partition; then it leaves and the partitions come back.
    let group = bus.group_id("recorder", false);
    let brokers = cluster.bootstrap_servers();
    let (joined_tx, joined) = std::sync::mpsc::channel();
    let (leave_tx, leave) = std::sync::mpsc::channel::<()>();
    let intruder = std::thread::spawn(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        c.subscribe(&["task-events"]).unwrap();
        let mut told = false;
        loop {
            let _ = c.poll(Duration::from_millis(100));
            if !told && c.assignment().is_ok_and(|a| a.count() > 0) {
                joined_tx.send(()).unwrap();
                told = true;
            }
            if leave.try_recv().is_ok() {
                break;
            }
        }
        c.unsubscribe();
    });
    joined
        .recv_timeout(Duration::from_secs(30))
        .expect("the other member got partitions");
    let before = rec.0.lock().unwrap().len();
    let mut written = Vec::new();
    for round in 0..2 {
        for u in &users {
            written.push(add(&*store, u, &format!("meanwhile {round}")).await);
        }
    }
    bus.committed(*written.last().unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    leave_tx.send(()).unwrap();
    intruder.join().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got: Vec<i64> = rec.0.lock().unwrap()[before..]
            .iter()
            .map(|e| e.position)
            .collect();
        if written.iter().all(|p| got.contains(p)) || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop_tx.send(true);
    relay.await.unwrap();
    consumer.await.unwrap();
    let missed: Vec<&i64> = written.iter().filter(|p| !got.contains(p)).collect();
    assert!(
        missed.is_empty(),
        "events written while the partitions were away never arrived: {missed:?}"
    );
}
