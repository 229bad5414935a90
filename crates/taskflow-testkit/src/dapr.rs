//! A fake Dapr sidecar for tests: the parts of Dapr's HTTP API that taskflow uses, as Dapr
//! documents them, with a broker of its own behind (a log per topic, in memory).
//!
//! - `POST /v1.0/publish/{pubsub}/{topic}`: a body of `application/cloudevents+json` passes
//!   through (with `topic` and `pubsubname` set, and the trace fields where the request
//!   carries a `traceparent`); any other content type is wrapped in a CloudEvent of type
//!   `com.dapr.event.sent`. `?metadata.partitionKey=` is recorded. 204, or 500 with
//!   `{errorCode, message}` while failures are injected.
//! - `POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}`: entries `{entryId, event,
//!   contentType, metadata}`; 400 for a malformed request, 500 with `failedEntries` while
//!   failures are injected.
//! - `GET /v1.0/secrets/{store}/{name}`: the secret's keys and values
//!   ([`FakeDapr::set_secret`]); 401 `ERR_SECRET_STORE_NOT_FOUND` for a store it does not
//!   have, 500 `ERR_SECRET_GET` for a secret it does not have.
//! - `POST|GET|DELETE /v1.0-alpha1/jobs/{name}`: one-shot jobs (`dueTime`, `data`,
//!   `overwrite`) that trigger `POST /job/{name}` with the data on their app at their time,
//!   retried after 1 s up to three times (Dapr's default failure policy).
//! - `/v1.0/invoke/{app-id}/method/{method}`: service invocation, any HTTP method, to the
//!   attached app.
//! - `GET|POST /v1.0/state/{store}[/{key}]`, `DELETE /v1.0/state/{store}/{key}`: state
//!   stores ([`FakeDapr::add_state_store`]) with ETags: a read answers the value with its
//!   `ETag` (204 when there is none); a save or delete with an `etag` (or `If-Match`) that
//!   is not the value's is refused with 409 and changes nothing, one without is
//!   last-write-wins; `metadata.ttlInSeconds` expires a value. 400
//!   `ERR_STATE_STORE_NOT_FOUND` for a store it does not have, 500 while failures are
//!   injected ([`FakeDapr::fail_state_for`]).
//! - `GET /v1.0/healthz`, `GET /v1.0/healthz/outbound`: 204.
//! - Cron input bindings ([`FakeDapr::add_cron_binding`]): the route `/{name}` of the app is
//!   probed with `OPTIONS` (a 404 leaves the binding unread, as Dapr does), then called with
//!   `POST` and an empty body at every period.
//!
//! Every route is also served under `/apps/{app-id}` ([`FakeDapr::endpoint_for`]): that is
//! app `app-id`'s own sidecar, whose jobs trigger that app.
//! - Programmatic subscriptions: [`FakeDapr::attach`] reads an app's `GET /dapr/subscribe`
//!   (as the sidecar does when its app starts) and delivers each topic's events, in order,
//!   to the route: a 2xx answer with `SUCCESS` (or no status) or `DROP` moves on, as does a
//!   404; `RETRY` or any other answer is delivered again after a backoff. Each app id is a
//!   consumer group of its own whose place survives the app's restart (attach it again);
//!   subscriptions to a live component ([`LIVE_PUBSUB`]) start at the end of the log.
//!
//! One fake serves every app of a test (as one broker behind several sidecars would).

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The live fan-out component taskflow uses by default.
pub const LIVE_PUBSUB: &str = "taskflow-live";

/// What one publish request carried, as the fake recorded it.
#[derive(Debug, Clone)]
pub struct Published {
    pub pubsub: String,
    pub topic: String,
    /// `metadata.partitionKey` (of the request, or of the bulk entry).
    pub partition_key: Option<String>,
    pub content_type: String,
    /// The CloudEvent as subscribers receive it.
    pub event: Value,
    pub bulk: bool,
}

/// How deliveries to apps went, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deliveries {
    /// Deliveries answered SUCCESS (or 2xx without a status).
    pub succeeded: u64,
    /// Deliveries answered RETRY, non-2xx other than 404, or not answered.
    pub retried: u64,
    /// Deliveries answered DROP or 404.
    pub dropped: u64,
}

#[derive(Default)]
struct Inner {
    /// Every topic's log: the events as delivered.
    topics: HashMap<String, Vec<Value>>,
    published: Vec<Published>,
    subs: HashMap<(String, String, String), Sub>,
    /// Apps' base URLs by app id.
    apps: HashMap<String, String>,
    fail_until: Option<Instant>,
    redeliver_twice: bool,
    deliveries: Deliveries,
    /// Scheduled jobs by name, and what their triggers got.
    jobs: HashMap<String, Job>,
    job_triggers: Vec<JobTrigger>,
    /// Bumped on every schedule and delete: a job's timer of an older one stops.
    job_generation: u64,
    /// Secret stores: store → secret name → its keys and values.
    secrets: HashMap<String, HashMap<String, HashMap<String, String>>>,
    /// State stores: store → key → value.
    state: HashMap<String, HashMap<String, Stored>>,
    /// The last ETag given out.
    etag: u64,
    state_fail_until: Option<Instant>,
    /// Calls to the state API, answered or refused.
    state_calls: u64,
    /// What each input binding's calls got: name → (method, status) in order.
    binding_calls: HashMap<String, Vec<(String, u16)>>,
}

/// A value of a state store.
#[derive(Debug, Clone)]
struct Stored {
    value: Value,
    etag: u64,
    expires: Option<Instant>,
}

impl Stored {
    fn live(&self) -> bool {
        self.expires.is_none_or(|t| t > Instant::now())
    }
}

/// A job as the sidecar keeps it.
#[derive(Debug, Clone)]
pub struct Job {
    pub app: Option<String>,
    pub due: chrono::DateTime<chrono::Utc>,
    pub data: Value,
    generation: u64,
}

/// One trigger of a job: when, and what the app answered (0: no answer).
#[derive(Debug, Clone)]
pub struct JobTrigger {
    pub name: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub status: u16,
    pub body: Value,
}

struct Sub {
    route: String,
    /// The next index of the topic's log to deliver.
    cursor: usize,
    /// Bumped on every attach and detach: a delivery loop of an older one stops.
    generation: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Counts publishes, waking the delivery loops.
    published: watch::Sender<u64>,
    client: reqwest::Client,
    live: HashSet<String>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A fake sidecar listening on 127.0.0.1.
#[derive(Clone)]
pub struct FakeDapr {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeDapr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDapr")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The runtime every fake runs on, apart from the tests' own.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-dapr")
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Runs `f` on the fakes' runtime and waits for it, from sync or async code alike.
fn block<F: std::future::Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| s.spawn(|| runtime().block_on(f)).join().unwrap())
}

impl FakeDapr {
    /// A fresh sidecar on a free port.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0")
    }

    /// A fresh sidecar on `addr`.
    pub fn start_on(addr: &str) -> Self {
        let shared = Arc::new(Shared {
            inner: Mutex::default(),
            published: watch::Sender::new(0),
            client: reqwest::Client::new(),
            live: HashSet::from([LIVE_PUBSUB.to_owned()]),
        });
        let listener = block(tokio::net::TcpListener::bind(addr)).unwrap();
        let addr = listener.local_addr().unwrap();
        let api = Router::new()
            .route("/v1.0/publish/{pubsub}/{topic}", post(publish))
            .route("/v1.0-alpha1/publish/bulk/{pubsub}/{topic}", post(bulk))
            .route("/v1.0/secrets/{store}/{name}", get(secret))
            .route("/v1.0/state/{store}", post(save_state))
            .route(
                "/v1.0/state/{store}/{key}",
                get(get_state).delete(delete_state),
            )
            .route(
                "/v1.0-alpha1/jobs/{name}",
                post(schedule_job).get(get_job).delete(delete_job),
            )
            .route("/v1.0/invoke/{target}/method/{*method}", any(invoke))
            .route("/v1.0/healthz", get(|| async { StatusCode::NO_CONTENT }))
            .route(
                "/v1.0/healthz/outbound",
                get(|| async { StatusCode::NO_CONTENT }),
            );
        // The same API as each app's own sidecar, where jobs trigger that app.
        let app = Router::new()
            .merge(api.clone())
            .nest("/apps/{app}", api)
            .with_state(shared.clone());
        runtime().spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared }
    }

    /// The sidecar of every server on `db_url` in this test process: a server restarted on
    /// the same database finds the events and the consumer groups' places it left.
    pub fn for_db(db_url: &str) -> Self {
        static FAKES: OnceLock<Mutex<HashMap<String, FakeDapr>>> = OnceLock::new();
        let mut fakes = FAKES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        fakes
            .entry(db_url.to_owned())
            .or_insert_with(Self::start)
            .clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The endpoint of app `app_id`'s own sidecar: jobs scheduled through it trigger that app.
    pub fn endpoint_for(&self, app_id: &str) -> String {
        format!("http://{}/apps/{app_id}", self.addr)
    }

    /// The job `name`, while it is scheduled.
    pub fn job(&self, name: &str) -> Option<Job> {
        self.shared.lock().jobs.get(name).cloned()
    }

    /// Every trigger of a job so far, in order.
    pub fn job_triggers(&self) -> Vec<JobTrigger> {
        self.shared.lock().job_triggers.clone()
    }

    /// Reads the subscriptions of the app at `base` (`GET /dapr/subscribe`) and delivers to
    /// them as app `app_id`, from the group's place (or the start of the log for a new one;
    /// the end for a live component).
    pub fn attach(&self, app_id: &str, base: &str) {
        let shared = self.shared.clone();
        let (app_id, base) = (app_id.to_owned(), base.to_owned());
        block(async move {
            let list: Value = shared
                .client
                .get(format!("{base}/dapr/subscribe"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let list = list.as_array().cloned().unwrap_or_default();
            let mut inner = shared.lock();
            inner.apps.insert(app_id.clone(), base);
            for s in list {
                let pubsub = s["pubsubname"].as_str().unwrap_or_default().to_owned();
                let topic = s["topic"].as_str().unwrap_or_default().to_owned();
                let route = s["routes"]["default"]
                    .as_str()
                    .or(s["route"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                let end = inner.topics.get(&topic).map_or(0, Vec::len);
                let live = shared.live.contains(&pubsub);
                let key = (app_id.clone(), pubsub, topic);
                let sub = inner.subs.entry(key.clone()).or_insert(Sub {
                    route: String::new(),
                    cursor: end,
                    generation: 0,
                });
                if !live && sub.generation == 0 {
                    sub.cursor = 0;
                }
                if live {
                    sub.cursor = end;
                }
                sub.route = route;
                sub.generation += 1;
                let generation = sub.generation;
                tokio::spawn(deliver_loop(shared.clone(), key, generation));
            }
        });
    }

    /// Whether `GET url` answers 200.
    pub fn answers(&self, url: &str) -> bool {
        let client = self.shared.client.clone();
        let url = url.to_owned();
        block(async move {
            client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    }

    /// Stops delivering to `app_id` (its process is gone); its groups keep their places.
    pub fn detach(&self, app_id: &str) {
        let mut inner = self.shared.lock();
        inner.apps.remove(app_id);
        for ((app, _, _), sub) in inner.subs.iter_mut() {
            if app == app_id {
                sub.generation += 1;
            }
        }
    }

    /// Adds secret `name` with `keys` to the secret store `store`.
    pub fn set_secret(&self, store: &str, name: &str, keys: &[(&str, &str)]) {
        let keys = keys
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut inner = self.shared.lock();
        let stores = inner.secrets.entry(store.to_owned()).or_default();
        stores.insert(name.to_owned(), keys);
    }

    /// Adds an empty state store named `store`.
    pub fn add_state_store(&self, store: &str) {
        self.shared
            .lock()
            .state
            .entry(store.to_owned())
            .or_default();
    }

    /// The keys of `store` that hold a value now, sorted.
    pub fn state_keys(&self, store: &str) -> Vec<String> {
        let inner = self.shared.lock();
        let mut keys: Vec<String> = inner
            .state
            .get(store)
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.live())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// The value under `key` of `store`, while it holds one.
    pub fn state_value(&self, store: &str, key: &str) -> Option<Value> {
        let inner = self.shared.lock();
        let v = inner.state.get(store)?.get(key)?;
        v.live().then(|| v.value.clone())
    }

    /// Calls to the state API so far.
    pub fn state_calls(&self) -> u64 {
        self.shared.lock().state_calls
    }

    /// Answers every state call with 500 for `d` from now.
    pub fn fail_state_for(&self, d: Duration) {
        self.shared.lock().state_fail_until = Some(Instant::now() + d);
    }

    /// Every publish so far, in order.
    pub fn published(&self) -> Vec<Published> {
        self.shared.lock().published.clone()
    }

    pub fn deliveries(&self) -> Deliveries {
        self.shared.lock().deliveries
    }

    /// Publishing answers 500 for `d` from now.
    pub fn fail_publishing_for(&self, d: Duration) {
        self.shared.lock().fail_until = Some(Instant::now() + d);
    }

    /// Every event is delivered twice to every subscription (after the first went through).
    pub fn redeliver_twice(&self, on: bool) {
        self.shared.lock().redeliver_twice = on;
    }

    /// Posts `body` to `path` of the app `app_id` as the sidecar would; the answer's status
    /// and JSON body.
    /// A cron input binding `name` of app `app_id` that fires every `period` (Dapr's
    /// `@every` schedule), from now on while the fake runs.
    pub fn add_cron_binding(&self, app_id: &str, name: &str, period: Duration) {
        let (shared, app, name) = (self.shared.clone(), app_id.to_owned(), name.to_owned());
        runtime().spawn(async move {
            let url = || {
                let base = shared.lock().apps.get(&app).cloned();
                base.map(|b| format!("{b}/{name}"))
            };
            let record = |method: &str, status: u16| {
                let mut inner = shared.lock();
                let calls = inner.binding_calls.entry(name.clone()).or_default();
                calls.push((method.to_owned(), status));
            };
            // The sidecar reads the binding only for an app that listens on its route.
            let probe = loop {
                if let Some(url) = url() {
                    let res = shared
                        .client
                        .request(reqwest::Method::OPTIONS, url)
                        .send()
                        .await;
                    break res.map_or(0, |r| r.status().as_u16());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            record("OPTIONS", probe);
            if probe == 404 {
                return;
            }
            let mut every = tokio::time::interval(period);
            every.tick().await;
            loop {
                every.tick().await;
                // The app was detached (its server stopped): so is its sidecar.
                let Some(url) = url() else { return };
                let res = shared.client.post(url).send().await;
                record("POST", res.map_or(0, |r| r.status().as_u16()));
            }
        });
    }

    /// The calls of input binding `name` so far: (method, status), in order.
    pub fn binding_calls(&self, name: &str) -> Vec<(String, u16)> {
        let inner = self.shared.lock();
        inner.binding_calls.get(name).cloned().unwrap_or_default()
    }

    pub fn call_app(&self, app_id: &str, path: &str, body: &[u8]) -> (u16, Value) {
        let base = self.shared.lock().apps.get(app_id).cloned().unwrap();
        let client = self.shared.client.clone();
        let (url, body) = (format!("{base}{path}"), body.to_vec());
        block(async move {
            let res = client
                .post(url)
                .header("content-type", "application/cloudevents+json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json().await.unwrap_or(Value::Null))
        })
    }
}

/// What became of one delivery.
enum Outcome {
    Success,
    Retry,
    Drop,
}

async fn deliver_once(client: &reqwest::Client, url: &str, event: &Value) -> Outcome {
    let sent = client
        .post(url)
        .header("content-type", "application/cloudevents+json")
        .body(serde_json::to_vec(event).unwrap())
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let Ok(res) = sent else {
        return Outcome::Retry;
    };
    let status = res.status();
    if status == StatusCode::NOT_FOUND {
        return Outcome::Drop;
    }
    if !status.is_success() {
        return Outcome::Retry;
    }
    let body: Value = res.json().await.unwrap_or(Value::Null);
    match body["status"].as_str() {
        Some("RETRY") => Outcome::Retry,
        Some("DROP") => Outcome::Drop,
        _ => Outcome::Success,
    }
}

/// Delivers one subscription's events in order until its generation changes.
async fn deliver_loop(shared: Arc<Shared>, key: (String, String, String), generation: u64) {
    let mut wake = shared.published.subscribe();
    loop {
        wake.borrow_and_update();
        let next = {
            let inner = shared.lock();
            let Some(sub) = inner.subs.get(&key) else {
                return;
            };
            if sub.generation != generation {
                return;
            }
            let base = inner.apps.get(&key.0).cloned().unwrap_or_default();
            let event = inner
                .topics
                .get(&key.2)
                .and_then(|log| log.get(sub.cursor))
                .cloned();
            event.map(|e| (format!("{base}{}", sub.route), e, inner.redeliver_twice))
        };
        let Some((url, event, twice)) = next else {
            // Wait for a publish, or check the generation now and then.
            let _ = tokio::time::timeout(Duration::from_millis(200), wake.changed()).await;
            continue;
        };
        for _ in 0..if twice { 2 } else { 1 } {
            let mut backoff = Duration::from_millis(20);
            loop {
                let outcome = deliver_once(&shared.client, &url, &event).await;
                let settled = {
                    let mut inner = shared.lock();
                    if inner.subs.get(&key).map(|s| s.generation) != Some(generation) {
                        return;
                    }
                    let d = &mut inner.deliveries;
                    match outcome {
                        Outcome::Success => d.succeeded += 1,
                        Outcome::Drop => d.dropped += 1,
                        Outcome::Retry => d.retried += 1,
                    }
                    !matches!(outcome, Outcome::Retry)
                };
                if settled {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        let mut inner = shared.lock();
        if let Some(sub) = inner.subs.get_mut(&key)
            && sub.generation == generation
        {
            sub.cursor += 1;
        }
    }
}

fn param(p: &HashMap<String, String>, name: &str) -> String {
    p.get(name).cloned().unwrap_or_default()
}

/// `POST /v1.0-alpha1/jobs/{name}`: `{dueTime, data, overwrite}`; the job triggers `POST
/// /job/{name}` on its app at `dueTime`, again after 1 s up to three times while the app does
/// not answer 2xx (Dapr's default failure policy).
async fn schedule_job(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let name = param(&p, "name");
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return dapr_error(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", "not JSON");
    };
    let Some(due) = v["dueTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
    else {
        return dapr_error(
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            "dueTime must be an RFC 3339 time",
        );
    };
    let generation = {
        let mut inner = shared.lock();
        if inner.jobs.contains_key(&name) && v["overwrite"] != true {
            return dapr_error(
                StatusCode::CONFLICT,
                "ERR_SCHEDULE_JOB",
                "a job of that name exists; overwrite it with \"overwrite\": true",
            );
        }
        inner.job_generation += 1;
        let generation = inner.job_generation;
        let job = Job {
            app: p.get("app").cloned(),
            due,
            data: v["data"].clone(),
            generation,
        };
        inner.jobs.insert(name.clone(), job);
        generation
    };
    tokio::spawn(trigger_job(shared.clone(), name, generation));
    StatusCode::NO_CONTENT.into_response()
}

async fn get_job(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<HashMap<String, String>>,
) -> Response {
    let name = param(&p, "name");
    match shared.lock().jobs.get(&name) {
        Some(j) => Json(json!({"name": name, "dueTime": j.due.to_rfc3339(), "data": j.data}))
            .into_response(),
        None => dapr_error(StatusCode::NOT_FOUND, "ERR_JOB_NOT_FOUND", "no such job"),
    }
}

async fn delete_job(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<HashMap<String, String>>,
) -> Response {
    shared.lock().jobs.remove(&param(&p, "name"));
    StatusCode::NO_CONTENT.into_response()
}

/// Triggers job `name` at its time, while it is the one scheduled as `generation`.
async fn trigger_job(shared: Arc<Shared>, name: String, generation: u64) {
    let current = |inner: &Inner| {
        inner
            .jobs
            .get(&name)
            .filter(|j| j.generation == generation)
            .cloned()
    };
    let Some(job) = current(&shared.lock()) else {
        return;
    };
    let wait = (job.due - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    for attempt in 0..4 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let url = {
            let inner = shared.lock();
            if current(&inner).is_none() {
                return;
            }
            let base = match &job.app {
                Some(app) => inner.apps.get(app).cloned(),
                None if inner.apps.len() == 1 => inner.apps.values().next().cloned(),
                None => None,
            };
            base.map(|b| format!("{b}/job/{name}"))
        };
        let answer = match url {
            Some(url) => shared
                .client
                .post(url)
                .json(&job.data)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .ok(),
            None => None,
        };
        let (status, body) = match answer {
            Some(res) => {
                let status = res.status().as_u16();
                (status, res.json().await.unwrap_or(Value::Null))
            }
            None => (0, Value::Null),
        };
        let mut inner = shared.lock();
        inner.job_triggers.push(JobTrigger {
            name: name.clone(),
            at: chrono::Utc::now(),
            status,
            body,
        });
        if (200..300).contains(&status) {
            // A one-shot job is done once triggered.
            if current(&inner).is_some() {
                inner.jobs.remove(&name);
            }
            return;
        }
    }
}

/// `/v1.0/invoke/{app-id}/method/{method}`: the request, as it came (method, query, body,
/// the headers but the hop's own), to `/{method}` of the attached app `app-id`, and its
/// answer back.
async fn invoke(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<HashMap<String, String>>,
    req: axum::extract::Request,
) -> Response {
    let (target, method) = (param(&p, "target"), param(&p, "method"));
    let Some(base) = shared.lock().apps.get(&target).cloned() else {
        return dapr_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_DIRECT_INVOKE",
            &format!("app {target} is not attached"),
        );
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let mut out = shared
        .client
        .request(parts.method, format!("{base}/{method}{query}"))
        .body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            out = out.header(name, value);
        }
    }
    let out = out.header("dapr-caller-app-id", "fake-caller");
    match out.send().await {
        Ok(res) => {
            let mut answer = Response::builder().status(res.status());
            for (name, value) in res.headers() {
                if !matches!(
                    name.as_str(),
                    "content-length" | "connection" | "transfer-encoding"
                ) {
                    answer = answer.header(name, value);
                }
            }
            let bytes = res.bytes().await.unwrap_or_default();
            answer
                .body(axum::body::Body::from(bytes))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => dapr_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_DIRECT_INVOKE",
            &e.to_string(),
        ),
    }
}

/// The state store of a call, or the answer refusing it (counted either way).
#[allow(clippy::result_large_err)] // the refusal is the handler's answer, returned at once
fn state_store<'a>(
    inner: &'a mut Inner,
    store: &str,
    failing: &str,
) -> Result<&'a mut HashMap<String, Stored>, Response> {
    inner.state_calls += 1;
    if inner.state_fail_until.is_some_and(|t| Instant::now() < t) {
        return Err(dapr_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            failing,
            "the state store is failing (injected)",
        ));
    }
    inner.state.get_mut(store).ok_or_else(|| {
        dapr_error(
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_NOT_FOUND",
            &format!("state store {store} is not found"),
        )
    })
}

/// `GET /v1.0/state/{store}/{key}`: the value and its ETag, or 204.
async fn get_state(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<HashMap<String, String>>,
) -> Response {
    let (store, key) = (param(&p, "store"), param(&p, "key"));
    let mut inner = shared.lock();
    let values = match state_store(&mut inner, &store, "ERR_STATE_GET") {
        Ok(v) => v,
        Err(r) => return r,
    };
    match values.get(&key).filter(|v| v.live()) {
        Some(v) => (
            [(axum::http::header::ETAG, v.etag.to_string())],
            Json(v.value.clone()),
        )
            .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Whether a request's `etag` lets it change `current`: none given, or the value's own.
/// `Err` for an ETag this store never gives out (Dapr's 400).
#[allow(clippy::result_large_err)] // the refusal is the handler's answer, returned at once
fn etag_matches(given: Option<&str>, current: Option<&Stored>) -> Result<bool, Response> {
    let Some(given) = given else { return Ok(true) };
    let given: u64 = given.parse().map_err(|_| {
        dapr_error(
            StatusCode::BAD_REQUEST,
            "ERR_STATE_SAVE",
            &format!("invalid etag value: {given}"),
        )
    })?;
    Ok(current.is_some_and(|c| c.etag == given))
}

/// `POST /v1.0/state/{store}`: saves every item, or none when one's ETag is stale (409).
async fn save_state(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let store = param(&p, "store");
    let malformed =
        |why: String| dapr_error(StatusCode::BAD_REQUEST, "ERR_MALFORMED_REQUEST", &why);
    let items: Vec<Value> = match serde_json::from_slice(&body) {
        Ok(items) => items,
        Err(e) => return malformed(format!("failed to parse the request: {e}")),
    };
    let mut inner = shared.lock();
    let mut etag = inner.etag;
    let values = match state_store(&mut inner, &store, "ERR_STATE_SAVE") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut writes = Vec::new();
    for item in &items {
        let Some(key) = item["key"].as_str().filter(|k| !k.is_empty()) else {
            return malformed("an item without a key".into());
        };
        let ttl = match &item["metadata"]["ttlInSeconds"] {
            Value::Null => None,
            t => match t.as_str().and_then(|t| t.parse::<u64>().ok()) {
                Some(secs) => Some(Duration::from_secs(secs)),
                None => return malformed(format!("ttlInSeconds {t} is not a whole number")),
            },
        };
        let current = values.get(key).filter(|v| v.live());
        match etag_matches(item["etag"].as_str(), current) {
            Ok(true) => {}
            Ok(false) => {
                return dapr_error(
                    StatusCode::CONFLICT,
                    "ERR_STATE_SAVE",
                    &format!("failed saving state in state store {store}: possible etag mismatch"),
                );
            }
            Err(r) => return r,
        }
        etag += 1;
        let stored = Stored {
            value: item["value"].clone(),
            etag,
            expires: ttl.map(|t| Instant::now() + t),
        };
        writes.push((key.to_owned(), stored));
    }
    values.extend(writes);
    inner.etag = etag;
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE /v1.0/state/{store}/{key}`, with `If-Match` only if the value still has it.
async fn delete_state(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (store, key) = (param(&p, "store"), param(&p, "key"));
    let mut inner = shared.lock();
    let values = match state_store(&mut inner, &store, "ERR_STATE_DELETE") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let given = headers
        .get(axum::http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok());
    match etag_matches(given, values.get(&key).filter(|v| v.live())) {
        Ok(true) => {
            values.remove(&key);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => dapr_error(
            StatusCode::CONFLICT,
            "ERR_STATE_DELETE",
            &format!("failed deleting state with key {key}: possible etag mismatch"),
        ),
        Err(r) => r,
    }
}

/// `GET /v1.0/secrets/{store}/{name}`: the secret's keys and values.
async fn secret(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<HashMap<String, String>>,
) -> Response {
    let (store, name) = (param(&p, "store"), param(&p, "name"));
    let inner = shared.lock();
    let Some(secrets) = inner.secrets.get(&store) else {
        return dapr_error(
            StatusCode::UNAUTHORIZED,
            "ERR_SECRET_STORE_NOT_FOUND",
            &format!("secret store {store} not found"),
        );
    };
    match secrets.get(&name) {
        Some(keys) => Json(keys.clone()).into_response(),
        None => dapr_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_SECRET_GET",
            &format!(
                "failed getting secret with key {name} from secret store {store}: secret not found"
            ),
        ),
    }
}

fn dapr_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"errorCode": code, "message": message}))).into_response()
}

/// The CloudEvent subscribers receive for a message of `content_type`.
fn envelope(
    pubsub: &str,
    topic: &str,
    content_type: &str,
    body: &[u8],
    traceparent: Option<&str>,
) -> Result<Value, String> {
    let mut event = if content_type.starts_with("application/cloudevents+json") {
        let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if !v.is_object() {
            return Err("a CloudEvent is a JSON object".into());
        }
        v
    } else {
        let data = if content_type.starts_with("application/json") {
            serde_json::from_slice(body).map_err(|e| e.to_string())?
        } else {
            Value::String(String::from_utf8_lossy(body).into_owned())
        };
        json!({
            "specversion": "1.0",
            "id": uuid::Uuid::now_v7().to_string(),
            "source": "fake-dapr",
            "type": "com.dapr.event.sent",
            "datacontenttype": content_type,
            "data": data,
        })
    };
    event["topic"] = topic.into();
    event["pubsubname"] = pubsub.into();
    if let Some(tp) = traceparent {
        event["traceid"] = tp.into();
        event["traceparent"] = tp.into();
        event["tracestate"] = "".into();
    }
    Ok(event)
}

impl Shared {
    fn failing(&self) -> bool {
        self.lock().fail_until.is_some_and(|t| Instant::now() < t)
    }

    fn append(&self, p: Published) {
        let mut inner = self.lock();
        inner
            .topics
            .entry(p.topic.clone())
            .or_default()
            .push(p.event.clone());
        inner.published.push(p);
        drop(inner);
        self.published.send_modify(|n| *n += 1);
    }
}

async fn publish(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (pubsub, topic) = (param(&p, "pubsub"), param(&p, "topic"));
    if shared.failing() {
        return dapr_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_PUBLISH_MESSAGE",
            "error when publishing to topic: injected failure",
        );
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let content_type = header("content-type").unwrap_or("text/plain").to_owned();
    let event = match envelope(&pubsub, &topic, &content_type, &body, header("traceparent")) {
        Ok(e) => e,
        Err(why) => {
            return dapr_error(StatusCode::BAD_REQUEST, "ERR_PUBSUB_CLOUD_EVENTS_SER", &why);
        }
    };
    shared.append(Published {
        pubsub,
        topic,
        partition_key: query.get("metadata.partitionKey").cloned(),
        content_type,
        event,
        bulk: false,
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn bulk(
    State(shared): State<Arc<Shared>>,
    Path(p): Path<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let (pubsub, topic) = (param(&p, "pubsub"), param(&p, "topic"));
    let bad = |why: &str| dapr_error(StatusCode::BAD_REQUEST, "ERR_PUBSUB_EVENTS_SER", why);
    let Ok(Value::Array(entries)) = serde_json::from_slice::<Value>(&body) else {
        return bad("the body is not a JSON array of entries");
    };
    let mut ids = HashSet::new();
    let mut messages = Vec::new();
    for e in &entries {
        let (Some(id), Some(ct)) = (e["entryId"].as_str(), e["contentType"].as_str()) else {
            return bad("every entry needs entryId and contentType");
        };
        if !ids.insert(id.to_owned()) {
            return bad("entryId values must be unique");
        }
        let raw = match &e["event"] {
            Value::Null => return bad("every entry needs an event"),
            Value::String(s) if !ct.contains("json") => s.clone().into_bytes(),
            v => serde_json::to_vec(v).unwrap(),
        };
        let event = match envelope(&pubsub, &topic, ct, &raw, None) {
            Ok(ev) => ev,
            Err(why) => return bad(&why),
        };
        messages.push(Published {
            pubsub: pubsub.clone(),
            topic: topic.clone(),
            partition_key: e["metadata"]["partitionKey"].as_str().map(str::to_owned),
            content_type: ct.to_owned(),
            event,
            bulk: true,
        });
    }
    if shared.failing() {
        let failed: Vec<Value> = ids
            .iter()
            .map(|id| json!({"entryId": id, "error": "injected failure"}))
            .collect();
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"failedEntries": failed, "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE"})),
        )
            .into_response();
    }
    for m in messages {
        shared.append(m);
    }
    StatusCode::NO_CONTENT.into_response()
}
