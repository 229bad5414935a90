//! Wiring: open the store, migrate, build the roles, serve until a signal.

use std::{process::ExitCode, sync::Arc, time::Duration};

use taskflow_agent::{Llm, LlmConfig};
use taskflow_api::{AppState, AuthRates, ConnLimits, Limits, McpSettings, Rate, SharedLimits};
use taskflow_app::{App, TokenConfig, Tokens};
use taskflow_bus::{ConsumerConfig, EmbeddedBus, Handler, Transport, dapr::SidecarHealth};
use taskflow_core::{Readiness, Role, RoleState, SystemClock};
use taskflow_services::{
    Audit, DaprJobs, Hub, HubFeed, Notifier, Recurring, ReminderHandler, Scheduler,
};
use taskflow_store::{Store, redact_url};
use tokio::{sync::watch, task::JoinSet};

use crate::cli::{Bus, DbOpts, MaintenanceOpts, ServeOpts, Timers};

/// A failure at start-up: one line on stderr, exit status 2.
fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("taskflow: {msg}");
    ExitCode::from(2)
}

async fn open(db: &DbOpts) -> Result<Arc<dyn Store>, ExitCode> {
    let store = taskflow_store::connect(&db.database_url)
        .await
        .map_err(|e| {
            fail(format_args!(
                "cannot open database {}: {e}",
                redact_url(&db.database_url)
            ))
        })?;
    let applied = store.migrate().await.map_err(|e| {
        fail(format_args!(
            "cannot migrate database {}: {e}",
            redact_url(&db.database_url)
        ))
    })?;
    tracing::info!(backend = store.backend(), applied, "database ready");
    Ok(store)
}

/// `taskflow backup PATH`: a consistent copy of the database, also while it is served.
pub async fn backup(opts: crate::cli::BackupOpts) -> ExitCode {
    if opts.path.exists() {
        return fail(format_args!(
            "{} already exists; name a new file",
            opts.path.display()
        ));
    }
    let store = match open(&opts.db).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let path = opts.path.display().to_string();
    match store.backup(&path).await {
        Ok(true) => {
            store.close().await;
            let size = std::fs::metadata(&opts.path).map(|m| m.len()).unwrap_or(0);
            eprintln!("taskflow: backed up to {path} ({} KiB)", size / 1024);
            ExitCode::SUCCESS
        }
        Ok(false) => fail(format_args!(
            "the {} backend is backed up with its own tools (pg_dump)",
            store.backend()
        )),
        Err(e) => fail(format_args!("cannot back up to {path}: {e}")),
    }
}

/// The database of a maintenance command, its URL read from the secret store where it
/// refers to one.
async fn open_for_maintenance(opts: MaintenanceOpts) -> Result<Arc<dyn Store>, ExitCode> {
    let MaintenanceOpts { mut db, sidecar } = opts;
    if sidecar.dapr_secret_store.is_some() {
        sidecar.check().map_err(fail)?;
    }
    crate::secrets::resolve_database_url(&mut db, &sidecar)
        .await
        .map_err(fail)?;
    open(&db).await
}

pub async fn migrate(opts: MaintenanceOpts) -> ExitCode {
    match open_for_maintenance(opts).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// The embedded event log over `store`.
async fn embedded(store: &Arc<dyn Store>) -> Result<Arc<dyn Transport>, ExitCode> {
    let bus = EmbeddedBus::open(store.clone())
        .await
        .map_err(|e| fail(format_args!("cannot open the event log: {e}")))?;
    Ok(Arc::new(bus))
}

/// The first segments of the paths the server serves: a cron binding's route (`/{name}`)
/// must not be one of them.
const SERVED: [&str; 8] = [
    "api",
    "dapr",
    "docs",
    "healthz",
    "job",
    "mcp",
    "metrics",
    "openapi.json",
];

/// The retention the relay prunes the outbox by itself with: none where a cron binding
/// drives housekeeping.
fn relay_retention(opts: &ServeOpts) -> Option<Duration> {
    match opts.dapr.dapr_cron_binding {
        Some(_) => None,
        None => opts.outbox_retention(),
    }
}

/// The transport `opts` choose.
async fn transport(
    opts: &ServeOpts,
    store: &Arc<dyn Store>,
    sidecar: Option<&SidecarHealth>,
) -> Result<Arc<dyn Transport>, ExitCode> {
    match opts.bus {
        Bus::Embedded => embedded(store).await,
        #[cfg(not(feature = "kafka"))]
        Bus::Kafka => Err(fail(
            "--bus kafka: this build has no Kafka support (built without the `kafka` feature)",
        )),
        #[cfg(feature = "kafka")]
        Bus::Kafka => {
            let settings = opts.kafka.settings(relay_retention(opts)).map_err(fail)?;
            let brokers = settings.brokers.clone();
            let bus = taskflow_bus::kafka::KafkaBus::open(settings, store.clone())
                .await
                .map_err(fail)?;
            tracing::info!(brokers, "events go through Kafka");
            Ok(Arc::new(bus))
        }
        Bus::Dapr => {
            let settings = opts.dapr.settings(relay_retention(opts)).map_err(fail)?;
            let (endpoint, pubsub) = (settings.endpoint.clone(), settings.pubsub.clone());
            let health = sidecar
                .cloned()
                .unwrap_or_else(|| SidecarHealth::watch(opts.dapr.sidecar()));
            let bus = taskflow_bus::dapr::DaprBus::open(settings, store.clone(), health)
                .await
                .map_err(fail)?;
            tracing::info!(endpoint, pubsub, "events go through the Dapr sidecar");
            Ok(Arc::new(bus))
        }
    }
}

/// The use cases over `store`: token signing and the transport's wake-ups.
async fn build_app(
    store: Arc<dyn Store>,
    tokens: &TokenConfig,
    bus: Arc<dyn Transport>,
) -> Result<App, ExitCode> {
    let tokens = Tokens::load(store.as_ref(), tokens)
        .await
        .map_err(|e| fail(format_args!("cannot set up token signing: {e}")))?;
    Ok(App::new(store, bus, Arc::new(SystemClock), tokens))
}

/// `taskflow mcp`: the task tools over MCP on stdio, acting for one user.
pub async fn mcp_stdio(opts: crate::cli::McpOpts) -> ExitCode {
    use rmcp::ServiceExt as _;
    let store = match open(&opts.db).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let email = match taskflow_core::Email::parse(&opts.user) {
        Ok(e) => e,
        Err(e) => return fail(format_args!("--user: {e}")),
    };
    let user = match store.user_by_email(&email).await {
        Ok(Some(u)) => u.user,
        Ok(None) => {
            return fail(format_args!(
                "there is no user {email}; sign up first",
                email = email.as_str()
            ));
        }
        Err(e) => return fail(format_args!("cannot read users: {e}")),
    };
    let config = TokenConfig {
        secret: None,
        ttl: Duration::from_secs(3600),
    };
    let bus = match embedded(&store).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let app = match build_app(store, &config, bus).await {
        Ok(app) => app,
        Err(code) => return code,
    };
    let server = taskflow_agent::McpServer::for_user(taskflow_agent::Tools::new(app), user);
    tracing::info!("serving MCP on stdio");
    match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => {
            let _ = running.waiting().await;
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("MCP session failed: {e}")),
    }
}

/// `taskflow audit rebuild`: replays the event log into an empty audit log.
pub async fn rebuild_audit(opts: MaintenanceOpts) -> ExitCode {
    let store = match open_for_maintenance(opts).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let total = store.count_events().await.unwrap_or_default();
    eprintln!("taskflow: rebuilding the audit log from {total} events");
    let mut shown = 0;
    let result = taskflow_app::rebuild_history(store.as_ref(), |done| {
        if done - shown >= 10_000 {
            shown = done;
            eprintln!("taskflow: {done}/{total} events replayed");
        }
    })
    .await;
    match result {
        Ok(rebuilt) => {
            if rebuilt.from > 1 {
                eprintln!(
                    "taskflow: the audit entries before position {} were kept: their events have left the outbox after its retention",
                    rebuilt.from
                );
            }
            eprintln!(
                "taskflow: audit log rebuilt: {} entries replayed",
                rebuilt.replayed
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format_args!("cannot rebuild the audit log: {e}")),
    }
}

/// What the event-driven roles of this process start with.
struct Services<'a> {
    roles: &'a [Role],
    app: &'a App,
    readiness: &'a Readiness,
    hub: Option<&'a Arc<Hub>>,
    /// The reminders' timers as Dapr jobs, where they are.
    jobs: Option<&'a DaprJobs>,
    /// Whether a Dapr cron binding drives housekeeping (else an hourly timer).
    cron: bool,
}

/// Starts the event-driven roles; each stops when `stop` turns true. Also returns the
/// scheduler that the triggers of the reminders' Dapr jobs fire, where they are jobs.
fn start_services(
    services: &Services<'_>,
    stop: &watch::Receiver<bool>,
) -> (JoinSet<()>, Option<Arc<Scheduler>>) {
    let Services {
        roles,
        app,
        readiness,
        hub,
        jobs,
        cron,
    } = *services;
    let mut jobs_due = None;
    let mut workers = JoinSet::new();
    let bus = app.bus().clone();
    // Registered at once, before the server takes requests (a Dapr sidecar asks for the
    // subscriptions as soon as the port is open).
    // Each part counts as starting from the moment its task is spawned: the task reports
    // only once it runs, and until then an empty map would read as ready.
    let consumer = |handler: Arc<dyn Handler>, config: ConsumerConfig| {
        bus.register(&handler, &config);
        readiness.set(
            handler.role(),
            taskflow_bus::CONSUMER_PART,
            RoleState::Starting,
        );
        let (bus, readiness, stop) = (bus.clone(), readiness.clone(), stop.clone());
        async move { bus.consume(handler, config, readiness, stop).await }
    };
    for role in roles {
        match role {
            Role::Api => {}
            Role::Relay => {
                readiness.set(Role::Relay, taskflow_bus::RELAY_PART, RoleState::Starting);
                let (bus, readiness, stop) = (bus.clone(), readiness.clone(), stop.clone());
                workers.spawn(async move { bus.relay(readiness, stop).await });
            }
            Role::Recurring => {
                let handler = Arc::new(Recurring::new(app.clone()));
                workers.spawn(consumer(handler, ConsumerConfig::default()));
            }
            Role::Reminders => {
                let (scheduler, handler) = match jobs {
                    Some(jobs) => {
                        let scheduler = Scheduler::with_timers(app.clone(), true);
                        jobs_due = Some(scheduler.clone());
                        let handler = ReminderHandler::with_jobs(scheduler.clone(), jobs.clone());
                        (scheduler, handler)
                    }
                    None => {
                        let scheduler = Scheduler::new(app.clone());
                        (scheduler.clone(), ReminderHandler::new(scheduler))
                    }
                };
                workers.spawn(consumer(Arc::new(handler), ConsumerConfig::default()));
                workers.spawn(scheduler.run(readiness.clone(), stop.clone()));
            }
            Role::Notifier => {
                let handler = Arc::new(Notifier::new(app.clone()));
                workers.spawn(consumer(handler, ConsumerConfig::default()));
            }
            Role::Audit => {
                let handler = Arc::new(Audit::new(app.clone()));
                workers.spawn(consumer(handler, ConsumerConfig::default()));
            }
            Role::Sync => {
                if let Some(hub) = hub {
                    let handler = Arc::new(HubFeed(hub.clone()));
                    let config = ConsumerConfig {
                        durable: false,
                        ..ConsumerConfig::default()
                    };
                    workers.spawn(consumer(handler, config));
                }
            }
        }
    }
    // A cron binding, where there is one, calls for housekeeping instead.
    if !cron
        && roles
            .iter()
            .any(|r| matches!(r, Role::Recurring | Role::Notifier))
    {
        workers.spawn(prune_processed(app.clone(), stop.clone()));
    }
    (workers, jobs_due)
}

/// Keeps the consumers' records of handled events to a week.
async fn prune_processed(app: App, mut stop: watch::Receiver<bool>) {
    loop {
        match app.tidy(None).await {
            Ok(t) if t.handled_records > 0 => {
                tracing::info!(
                    records = t.handled_records,
                    "pruned records of handled events"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune records of handled events"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

pub async fn run(mut opts: ServeOpts, roles: Vec<Role>) -> ExitCode {
    // The metrics recorder comes before anything that records: a gauge set before it exists
    // (a consumer's dead-letter count, set once at start) would be lost.
    let metrics = taskflow_api::prometheus();
    // Settings kept in a secret store come first: the others may depend on them.
    // The sidecar's settings, where anything uses it, are checked before it is asked.
    let uses_dapr = opts.bus == Bus::Dapr
        || opts.dapr.dapr_state_store.is_some()
        || opts.timers == Timers::DaprJobs
        || opts.dapr.dapr_cron_binding.is_some();
    if (uses_dapr || opts.dapr.sidecar.dapr_secret_store.is_some())
        && let Err(e) = opts.dapr.sidecar.check()
    {
        return fail(e);
    }
    if let Err(e) = crate::secrets::resolve(&mut opts).await {
        return fail(e);
    }
    if let Some(binding) = &opts.dapr.dapr_cron_binding
        && (!taskflow_bus::dapr::valid_component_name(binding)
            || SERVED.contains(&binding.as_str()))
    {
        return fail(format_args!(
            "--dapr-cron-binding `{binding}`: a component name (letters, digits, `-`, `_`, `.`) that is not one of the paths served ({})",
            SERVED.join(", ")
        ));
    }
    let state_store = match &opts.dapr.dapr_state_store {
        Some(store) => match taskflow_bus::dapr::StateStore::new(opts.dapr.sidecar(), store) {
            Ok(state) => Some(state),
            Err(why) => return fail(format_args!("--dapr-state-store: {why}")),
        },
        None => None,
    };
    // A database URL of no known kind is a bad setting, reported before anything else.
    if let Err(e) = taskflow_store::check_url(&opts.db.database_url) {
        return fail(format_args!("--database-url: {e}"));
    }
    // Bind next: a taken address fails before any other work.
    let listener = match tokio::net::TcpListener::bind(&opts.bind).await {
        Ok(l) => l,
        Err(e) => return fail(format_args!("cannot listen on --bind {}: {e}", opts.bind)),
    };
    let store = match open(&opts.db).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let closing_store = store.clone();
    let token_config = TokenConfig {
        secret: opts.jwt_secret.clone(),
        ttl: Duration::from_secs(opts.token_ttl_hours * 3600),
    };
    // Where this process calls the sidecar while it runs (secrets are read at start only),
    // one task watches its readiness for every part of the process.
    let sidecar_health = uses_dapr.then(|| SidecarHealth::watch(opts.dapr.sidecar()));
    let bus = match transport(&opts, &store, sidecar_health.as_ref()).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let app = match build_app(store, &token_config, bus).await {
        Ok(app) => app,
        Err(code) => return code,
    };
    let llm = match &opts.llm_base_url {
        Some(url) => {
            use secrecy::ExposeSecret as _;
            let config = LlmConfig {
                base_url: url.clone(),
                model: opts.llm_model.clone(),
                api_key: opts
                    .llm_api_key
                    .as_ref()
                    .map(|k| k.expose_secret().to_owned()),
                timeout: Duration::from_secs(opts.llm_timeout_secs),
            };
            match Llm::new(config) {
                Ok(l) => {
                    tracing::info!(model = %opts.llm_model, "chat goes through the model first");
                    Some(l)
                }
                Err(e) => return fail(format_args!("cannot set up the model client: {e}")),
            }
        }
        None => None,
    };
    let readiness = Readiness::default();
    let hub = roles
        .contains(&Role::Sync)
        .then(|| Hub::new(opts.max_streams_per_user as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let jobs = (opts.timers == Timers::DaprJobs).then(|| DaprJobs::new(opts.dapr.sidecar()));
    let services = Services {
        roles: &roles,
        app: &app,
        readiness: &readiness,
        hub: hub.as_ref(),
        jobs: jobs.as_ref(),
        cron: opts.dapr.dapr_cron_binding.is_some(),
    };
    let (mut workers, jobs_due) = start_services(&services, &stop_rx);
    let burst = opts.rate_limit_burst;
    let shared = state_store.map(|state| {
        let limits = SharedLimits::new(state, app.tokens().clone())
            .with_request_window(opts.dapr.dapr_share_request_window);
        Arc::new(limits)
    });
    if let (Some(shared), Some(hub)) = (&shared, &hub) {
        let (shared, hub, stop) = (shared.clone(), hub.clone(), stop_rx.clone());
        tokio::spawn(async move { shared.renew_streams(&hub, stop).await });
    }
    let limits = Limits::with_shared(
        Rate {
            per_second: opts.rate_limit_per_ip,
            burst: opts.rate_limit_per_ip.saturating_mul(burst),
        },
        Rate {
            per_second: opts.rate_limit_per_user,
            burst: opts.rate_limit_per_user.saturating_mul(burst),
        },
        Rate {
            per_second: opts.rate_limit_chat_per_user,
            burst: opts.rate_limit_chat_per_user.saturating_mul(burst),
        },
        AuthRates {
            per_ip: Rate {
                per_second: opts.rate_limit_auth_per_ip,
                burst: opts.rate_limit_auth_per_ip.saturating_mul(burst),
            },
            per_account_per_minute: opts.rate_limit_auth_per_account,
            failures_before_throttle: opts.login_failures_before_throttle,
        },
        shared,
    );
    let housekeeping = taskflow_api::spawn_housekeeping(limits.clone(), metrics.clone());
    let state = AppState {
        app,
        limits,
        metrics,
        hub: hub.clone(),
        readiness: readiness.clone(),
        heartbeat: Duration::from_secs(opts.heartbeat_secs),
        llm,
        mcp: McpSettings {
            allowed_hosts: opts.mcp_allowed_hosts.clone(),
            sessions_per_user: opts.mcp_sessions_per_user as usize,
            session_idle: Duration::from_secs(opts.mcp_session_idle_secs),
        },
        sidecar: taskflow_api::Sidecar {
            app_token: opts.dapr.app_token(),
            jobs: jobs_due,
            cron: opts
                .dapr
                .dapr_cron_binding
                .clone()
                .map(|binding| taskflow_api::Cron {
                    binding,
                    outbox_retention: opts.outbox_retention(),
                }),
            health: sidecar_health,
        },
    };
    let router = if roles.contains(&Role::Api) {
        readiness.set(Role::Api, "http", RoleState::Ready);
        taskflow_api::router(state)
    } else {
        taskflow_api::ops_router(state)
    };

    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let role_names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
    tracing::info!(addr = %addr, roles = %role_names.join(","), "listening");
    let releasing = opts
        .release_startup_pages
        .then(|| tokio::spawn(release_after_start(readiness.clone())));

    let grace = Duration::from_secs(opts.shutdown_grace_secs);
    let mut server_stop = stop_rx.clone();
    let conn_limits = ConnLimits {
        max_total: opts.max_connections,
        max_per_ip: opts.max_connections_per_ip,
        header_timeout: Duration::from_secs(opts.header_timeout_secs),
        // A live stream's heartbeat must keep its connection open.
        idle_timeout: Duration::from_secs(opts.idle_timeout_secs.max(opts.heartbeat_secs * 2)),
    }
    .fit_to_fd_limit(taskflow_api::open_file_limit());
    let server = tokio::spawn(taskflow_api::serve(
        listener,
        router,
        conn_limits,
        async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        },
    ));
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests and stopping consumers");
    let _ = stop_tx.send(true);
    // Live streams never end on their own: end them so the server can drain.
    if let Some(hub) = &hub {
        hub.close();
    }
    housekeeping.abort();
    if let Some(releasing) = releasing {
        releasing.abort();
    }
    let drained = tokio::time::timeout(grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("consumers did not stop within {grace:?}");
    }
    let code = match tokio::time::timeout(grace, server).await {
        Ok(Ok(Ok(()))) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Ok(Ok(Err(e))) => fail(format_args!("server error: {e}")),
        Ok(Err(e)) => fail(format_args!("server task failed: {e}")),
        Err(_) => {
            tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway");
            ExitCode::SUCCESS
        }
    };
    // After a clean stop the database file alone holds every change (SQLite's WAL is
    // checkpointed into it).
    closing_store.close().await;
    code
}

/// Once every role is ready and has run a while, the pages of code and read-only data that
/// only starting used leave the resident set (see `crate::memory`).
async fn release_after_start(readiness: Readiness) {
    const SETTLE: Duration = Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !readiness.all_ready() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(SETTLE).await;
    match tokio::task::spawn_blocking(crate::memory::release_startup_pages).await {
        Ok(Ok(released)) => tracing::info!(
            mappings = released.mappings,
            kib = released.kib,
            "start-up pages given back: code and read-only data that only starting ran"
        ),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot read this process's mappings; start-up pages stay resident")
        }
        Err(_) => {}
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
