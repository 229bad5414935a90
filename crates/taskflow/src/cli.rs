//! Command line and environment: every setting is a flag and a `TASKFLOW_*` variable (the
//! flag wins). Doc comments here are the `--help` text.

use std::{io::IsTerminal, net::SocketAddr, process::ExitCode};

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use taskflow_core::Role;

use crate::otlp;

/// taskflow: an event-driven todo assistant.
///
/// `taskflow serve` runs every part in one process on an SQLite file; the same binary runs
/// any subset of parts against PostgreSQL with `taskflow run --roles …`.
#[derive(Debug, Parser)]
#[command(name = "taskflow", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct LogOpts {
    /// Log format: `auto` is pretty in a terminal and JSON otherwise.
    #[arg(long, env = "TASKFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `taskflow_api=debug,info`.
    #[arg(long, env = "TASKFLOW_LOG", default_value = "info", global = true)]
    pub log_level: String,
    /// Export traces to this OpenTelemetry collector (OTLP over HTTP, JSON), e.g.
    /// `http://otel-collector:4318`; spans go to its `/v1/traces`. Off when unset. The service
    /// name is `OTEL_SERVICE_NAME`, else `taskflow` (`taskflow-ROLE-…` for `run --roles`).
    #[arg(
        long,
        env = "TASKFLOW_OTLP_ENDPOINT",
        value_name = "URL",
        global = true
    )]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role in one process (the default way to run taskflow).
    Serve(ServeOpts),
    /// Run only the given roles (how each Kubernetes Deployment is made).
    Run(RunOpts),
    /// Apply pending database migrations and exit.
    Migrate(MaintenanceOpts),
    /// Work on the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The assistant's language understanding.
    #[command(subcommand)]
    Nlu(NluCommand),
    /// Talk to the assistant of a running server from the terminal.
    Chat(ChatOpts),
    /// Serve the task tools over MCP on stdio, for one user (e.g. for Claude Desktop).
    Mcp(McpOpts),
    /// Write a consistent copy of the SQLite database to a new file, also while the server
    /// runs (for PostgreSQL use pg_dump).
    Backup(BackupOpts),
}

#[derive(Debug, Clone, Args)]
pub struct BackupOpts {
    #[command(flatten)]
    pub db: DbOpts,
    /// The file to write; it must not exist yet.
    pub path: std::path::PathBuf,
}

/// `HOST:PORT` with a port number; the host is resolved when the server binds.
fn parse_bind(raw: &str) -> Result<String, String> {
    if raw.parse::<SocketAddr>().is_ok() {
        return Ok(raw.to_owned());
    }
    match raw.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok() =>
        {
            Ok(raw.to_owned())
        }
        _ => Err(format!(
            "`{raw}` is not HOST:PORT (e.g. 127.0.0.1:8080, localhost:8080 or [::1]:8080)"
        )),
    }
}

#[derive(Debug, Clone, Args)]
pub struct McpOpts {
    #[command(flatten)]
    pub db: DbOpts,
    /// The email of the user whose tasks the tools act on.
    #[arg(long, env = "TASKFLOW_MCP_USER")]
    pub user: String,
}

#[derive(Debug, Clone, Args)]
pub struct ChatOpts {
    /// The server.
    #[arg(long, env = "TASKFLOW_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Your account's email.
    #[arg(long, env = "TASKFLOW_EMAIL")]
    pub email: String,
    /// Your password. Asked for (without echo) when not given and the terminal is interactive.
    #[arg(long, env = "TASKFLOW_PASSWORD", hide_env_values = true)]
    pub password: Option<SecretString>,
    /// Continue this conversation instead of starting a new one.
    #[arg(long, conflicts_with = "resume")]
    pub conversation: Option<String>,
    /// Continue your most recent conversation.
    #[arg(long = "continue", id = "resume")]
    pub resume: bool,
    /// Where the lines you typed are kept between runs (arrow keys recall them).
    /// Default: $XDG_STATE_HOME/taskflow/chat_history, else ~/.local/state/taskflow/chat_history.
    #[arg(long, env = "TASKFLOW_CHAT_HISTORY")]
    pub history_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum NluCommand {
    /// Print, as JSON, how the assistant understands an utterance.
    Parse {
        /// The moment it is said: wall-clock time in --tz (2026-11-22T10:00:00), or RFC 3339
        /// with an offset. Default: now.
        #[arg(long)]
        now: Option<String>,
        /// The user's IANA timezone. Default: $TZ, else the machine's zone, else UTC.
        #[arg(long)]
        tz: Option<String>,
        /// Also show which words became which field: `explain: [{words, as}]`, in the
        /// order they were read, then the title and the task named.
        #[arg(long)]
        explain: bool,
        /// What the user says (several words are joined with spaces).
        #[arg(required = true)]
        utterance: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Empty the audit log and replay the whole event log into it; the result is identical
    /// to the log kept live. Run it with the `audit` role stopped.
    Rebuild(MaintenanceOpts),
}

/// A command that works on the database alone: its URL, which may be a reference into a Dapr
/// secret store.
#[derive(Debug, Clone, Args)]
pub struct MaintenanceOpts {
    #[command(flatten)]
    pub db: DbOpts,
    #[command(flatten)]
    pub sidecar: SidecarOpts,
}

#[derive(Debug, Clone, Args)]
pub struct DbOpts {
    /// Database URL: `sqlite:PATH` (created when missing) or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "TASKFLOW_DATABASE_URL",
        default_value = "sqlite:./taskflow.db"
    )]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeOpts {
    #[command(flatten)]
    pub db: DbOpts,
    /// Address to listen on: HOST:PORT, where HOST is an IP address or a name such as
    /// `localhost` (port 0 picks a free port).
    #[arg(long, env = "TASKFLOW_BIND", default_value = "127.0.0.1:8080", value_parser = parse_bind)]
    pub bind: String,
    /// Secret that signs tokens; when unset one is generated on first start and kept in the
    /// database.
    #[arg(long, env = "TASKFLOW_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
    /// How long a token stays valid, in hours.
    #[arg(long, env = "TASKFLOW_TOKEN_TTL_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(1..=8784))]
    pub token_ttl_hours: u64,
    /// Requests per second allowed from one client IP (0 turns the limit off).
    #[arg(long, env = "TASKFLOW_RATE_LIMIT_PER_IP", default_value_t = 500)]
    pub rate_limit_per_ip: u32,
    /// Requests per second allowed for one signed-in user (0 turns the limit off).
    #[arg(long, env = "TASKFLOW_RATE_LIMIT_PER_USER", default_value_t = 100)]
    pub rate_limit_per_user: u32,
    /// Chat messages per second allowed for one signed-in user (0 turns the limit off).
    #[arg(long, env = "TASKFLOW_RATE_LIMIT_CHAT_PER_USER", default_value_t = 5)]
    pub rate_limit_chat_per_user: u32,
    /// Sign-up and login requests per second allowed from one client IP (0 turns the limit
    /// off); each costs a deliberately slow password hash.
    #[arg(long, env = "TASKFLOW_RATE_LIMIT_AUTH_PER_IP", default_value_t = 5)]
    pub rate_limit_auth_per_ip: u32,
    /// Sign-up and login requests per minute allowed for one account (0 turns the limit off).
    #[arg(
        long,
        env = "TASKFLOW_RATE_LIMIT_AUTH_PER_ACCOUNT",
        default_value_t = 20
    )]
    pub rate_limit_auth_per_account: u32,
    /// Failed logins of one account in a row before each further try must wait (1 s,
    /// doubling up to 15 min; a successful login clears it). 0 turns the throttle off.
    #[arg(
        long,
        env = "TASKFLOW_LOGIN_FAILURES_BEFORE_THROTTLE",
        default_value_t = 5
    )]
    pub login_failures_before_throttle: u32,
    /// Burst allowance: how many requests above the steady rate a client may send at once,
    /// as a multiple of the rate.
    #[arg(long, env = "TASKFLOW_RATE_LIMIT_BURST", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rate_limit_burst: u32,
    /// Open connections allowed in total; lowered to fit the open-file limit (0: as many as
    /// that limit allows).
    #[arg(long, env = "TASKFLOW_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Open connections allowed from one client address (0 turns the cap off, e.g. behind a
    /// proxy that sends every request from its own address).
    #[arg(long, env = "TASKFLOW_MAX_CONNECTIONS_PER_IP", default_value_t = 512)]
    pub max_connections_per_ip: usize,
    /// Seconds a client has to send a request's headers (counted from its first byte, or
    /// from the connection's start for the first request).
    #[arg(long, env = "TASKFLOW_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout_secs: u64,
    /// Seconds a keep-alive connection may stay idle (no byte moving, no request running)
    /// before it is closed.
    #[arg(long, env = "TASKFLOW_IDLE_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_secs: u64,
    /// Event bus: `embedded` (the event log in the database), `kafka` (the relay role
    /// publishes the log to Kafka; every role reads it in its own consumer group) or `dapr`
    /// (the same through a Dapr sidecar's pub/sub component).
    #[arg(long, env = "TASKFLOW_BUS", value_enum, default_value_t = Bus::Embedded)]
    pub bus: Bus,
    /// Seconds a relayed event stays in the outbox (with `kafka` or `dapr`), where
    /// `Last-Event-ID` replays and `taskflow audit rebuild` read it (the audit log keeps the
    /// history for good); 0 keeps events for good. The default is 7 days.
    #[arg(long, env = "TASKFLOW_OUTBOX_RETENTION_SECS", default_value_t = 7 * 24 * 3600)]
    pub outbox_retention_secs: u64,
    /// Where the reminders' timers are kept: `db` (the database's scheduler) or `dapr-jobs`
    /// (a job per reminder in the Dapr sidecar's scheduler, triggering `POST /job/{name}`; the
    /// database is still swept at start and every 30 s for jobs lost or missed).
    #[arg(long, env = "TASKFLOW_TIMERS", value_enum, default_value_t = Timers::Db)]
    pub timers: Timers,
    /// Live connections (SSE and WebSocket together) one user may have open at once.
    #[arg(long, env = "TASKFLOW_MAX_STREAMS_PER_USER", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams_per_user: u32,
    /// OpenAI-compatible Chat Completions server for the assistant (e.g.
    /// https://api.openai.com/v1). Unset: the rule-based agent answers.
    #[arg(long, env = "TASKFLOW_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,
    /// The model to ask.
    #[arg(long, env = "TASKFLOW_LLM_MODEL", default_value = "gpt-4o-mini")]
    pub llm_model: String,
    /// API key for the model server.
    #[arg(long, env = "TASKFLOW_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<SecretString>,
    /// Seconds to wait for one model call before falling back to the rule-based agent.
    #[arg(long, env = "TASKFLOW_LLM_TIMEOUT_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub llm_timeout_secs: u64,
    /// Host names (or host:port) the MCP endpoint /mcp accepts in the Host header, comma
    /// separated; protects local servers from DNS rebinding.
    #[arg(
        long,
        env = "TASKFLOW_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub mcp_allowed_hosts: Vec<String>,
    /// MCP sessions (streamable HTTP) one user may have open at once.
    #[arg(long, env = "TASKFLOW_MCP_SESSIONS_PER_USER", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub mcp_sessions_per_user: u32,
    /// Seconds an MCP session may go without a message before it is closed.
    #[arg(long, env = "TASKFLOW_MCP_SESSION_IDLE_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(5..=86_400))]
    pub mcp_session_idle_secs: u64,
    /// Seconds between heartbeats on an idle live stream (SSE comment, WebSocket ping).
    #[arg(long, env = "TASKFLOW_HEARTBEAT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub heartbeat_secs: u64,
    /// Seconds to wait for in-flight requests at shutdown.
    #[arg(long, env = "TASKFLOW_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Once the roles are ready, give back the resident pages of code and read-only data that
    /// only starting ran (Linux; they stay in the page cache and come back when run again).
    /// `false` keeps them, e.g. to compare memory figures.
    #[arg(long, env = "TASKFLOW_RELEASE_STARTUP_PAGES", default_value_t = true, action = clap::ArgAction::Set)]
    pub release_startup_pages: bool,
    // The groups with a heading of their own come last: clap gives every option after one
    // that heading.
    #[command(flatten)]
    pub kafka: KafkaOpts,
    #[command(flatten)]
    pub dapr: DaprOpts,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Bus {
    Embedded,
    Kafka,
    Dapr,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Timers {
    Db,
    DaprJobs,
}

impl ServeOpts {
    /// How long relayed events stay in the outbox; `None` keeps them for good.
    pub fn outbox_retention(&self) -> Option<std::time::Duration> {
        (self.outbox_retention_secs > 0)
            .then(|| std::time::Duration::from_secs(self.outbox_retention_secs))
    }
}

/// How to reach the Dapr sidecar, and the secret store settings may refer to.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Dapr sidecar")]
pub struct SidecarOpts {
    /// The sidecar's HTTP endpoint; by default `http://127.0.0.1:$DAPR_HTTP_PORT`.
    #[arg(long, env = "DAPR_HTTP_ENDPOINT")]
    pub dapr_http_endpoint: Option<String>,
    /// The sidecar's HTTP port on 127.0.0.1 (the sidecar injector sets it).
    #[arg(long, env = "DAPR_HTTP_PORT", default_value_t = 3500)]
    pub dapr_http_port: u16,
    /// The token the sidecar requires of this process (`dapr-api-token`); never logged.
    #[arg(long, env = "DAPR_API_TOKEN", hide_env_values = true)]
    pub dapr_api_token: Option<SecretString>,
    /// A Dapr secret store (with any bus): settings whose value is `dapr-secret:NAME` or
    /// `dapr-secret:NAME/KEY` (the database URL, --jwt-secret, --llm-api-key, the Kafka user
    /// name and password) are read from it at start.
    #[arg(long, env = "TASKFLOW_DAPR_SECRET_STORE")]
    pub dapr_secret_store: Option<String>,
    /// Seconds to wait at start for the sidecar (it starts beside this process) where a
    /// secret must be read.
    #[arg(long, env = "TASKFLOW_DAPR_WAIT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub dapr_wait_secs: u64,
}

impl SidecarOpts {
    /// The sidecar's endpoint, from --dapr-http-endpoint or the port.
    pub fn endpoint(&self) -> String {
        match &self.dapr_http_endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("http://127.0.0.1:{}", self.dapr_http_port),
        }
    }

    /// What is wrong with the settings, for a process that uses the sidecar.
    pub fn check(&self) -> Result<(), String> {
        let endpoint = self.endpoint();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "--dapr-http-endpoint {endpoint}: not an http:// or https:// URL"
            ));
        }
        match &self.dapr_secret_store {
            Some(store) if !taskflow_bus::dapr::valid_component_name(store) => Err(format!(
                "--dapr-secret-store `{store}`: a component name has letters, digits, `-`, `_` and `.` only"
            )),
            _ => Ok(()),
        }
    }

    /// A client of the sidecar, with the token it requires.
    pub fn sidecar(&self) -> taskflow_bus::dapr::Sidecar {
        use secrecy::ExposeSecret as _;
        let token = self
            .dapr_api_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned());
        taskflow_bus::dapr::Sidecar::new(&self.endpoint(), token)
    }
}

/// How to use the Dapr sidecar's building blocks: pub/sub with `--bus dapr`, and state,
/// the cron binding and the app token with any bus.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Dapr")]
pub struct DaprOpts {
    /// The token the sidecar presents on its calls to this process; calls without it are
    /// refused. Never logged.
    #[arg(long, env = "APP_API_TOKEN", hide_env_values = true)]
    pub dapr_app_api_token: Option<SecretString>,
    /// The pub/sub component of the consumer groups (one group per Dapr app id).
    #[arg(long, env = "TASKFLOW_DAPR_PUBSUB", default_value = "taskflow-pubsub")]
    pub dapr_pubsub: String,
    /// The pub/sub component of live fan-out (the `sync` role): one consumer per pod, from
    /// the newest event (deploy/dapr has it). The same name as --dapr-pubsub does for a
    /// single instance of `sync`.
    #[arg(
        long,
        env = "TASKFLOW_DAPR_LIVE_PUBSUB",
        default_value = "taskflow-live"
    )]
    pub dapr_live_pubsub: String,
    /// Publish through the bulk API (many events a request); `false` sends one event a
    /// request.
    #[arg(long, env = "TASKFLOW_DAPR_BULK_PUBLISH", default_value_t = true, action = clap::ArgAction::Set)]
    pub dapr_bulk_publish: bool,
    /// A Dapr state store (with any bus) where the api replicas keep the limits that must
    /// hold across them: the per-user chat window, the per-account sign-in window and
    /// failed-login throttle, and each user's live connections. Without it each replica
    /// limits alone.
    #[arg(long, env = "TASKFLOW_DAPR_STATE_STORE")]
    pub dapr_state_store: Option<String>,
    /// With --dapr-state-store, keep the per-user request window there too (two calls to
    /// the sidecar on every request); by default each replica keeps its own, which still
    /// bounds what one user takes of each replica.
    #[arg(long, env = "TASKFLOW_DAPR_SHARE_REQUEST_WINDOW", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dapr_share_request_window: bool,
    /// A Dapr cron input binding (`bindings.cron`) that drives housekeeping: the sidecar
    /// calls `POST /{name}` on its schedule, which prunes handled-event records past a week
    /// and relayed events past --outbox-retention-secs; the hourly timers are then off.
    #[arg(long, env = "TASKFLOW_DAPR_CRON_BINDING")]
    pub dapr_cron_binding: Option<String>,
    #[command(flatten)]
    pub sidecar: SidecarOpts,
}

impl DaprOpts {
    /// A client of the sidecar, with the token it requires.
    pub fn sidecar(&self) -> taskflow_bus::dapr::Sidecar {
        self.sidecar.sidecar()
    }

    /// The token the sidecar's calls to this process carry, where one is set.
    pub fn app_token(&self) -> Option<String> {
        use secrecy::ExposeSecret as _;
        self.dapr_app_api_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned())
    }

    /// The transport's settings, or what is wrong with them.
    pub fn settings(
        &self,
        outbox_retention: Option<std::time::Duration>,
    ) -> Result<taskflow_bus::dapr::DaprSettings, String> {
        use secrecy::ExposeSecret as _;
        self.sidecar.check()?;
        let endpoint = self.sidecar.endpoint();
        for (flag, name) in [
            ("--dapr-pubsub", &self.dapr_pubsub),
            ("--dapr-live-pubsub", &self.dapr_live_pubsub),
        ] {
            if !taskflow_bus::dapr::valid_component_name(name) {
                return Err(format!(
                    "{flag} `{name}`: a component name has letters, digits, `-`, `_` and `.` only"
                ));
            }
        }
        let secret = |s: &Option<SecretString>| s.as_ref().map(|t| t.expose_secret().to_owned());
        Ok(taskflow_bus::dapr::DaprSettings {
            endpoint,
            api_token: secret(&self.sidecar.dapr_api_token),
            app_token: secret(&self.dapr_app_api_token),
            pubsub: self.dapr_pubsub.clone(),
            live_pubsub: self.dapr_live_pubsub.clone(),
            bulk_publish: self.dapr_bulk_publish,
            outbox_retention,
        })
    }
}

/// How to reach Kafka, with `--bus kafka`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Kafka (with --bus kafka)")]
pub struct KafkaOpts {
    /// Bootstrap brokers, comma separated (HOST:PORT,HOST:PORT).
    #[arg(long, env = "TASKFLOW_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// How to talk to the brokers: `sasl-ssl` for most managed services.
    #[arg(long, env = "TASKFLOW_KAFKA_SECURITY_PROTOCOL", value_enum, default_value_t = SecurityProtocol::Plaintext)]
    pub kafka_security_protocol: SecurityProtocol,
    /// SASL mechanism, with `sasl-plaintext` or `sasl-ssl`.
    #[arg(
        long,
        env = "TASKFLOW_KAFKA_SASL_MECHANISM",
        value_enum,
        ignore_case = true
    )]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name (an API key on Confluent Cloud, `$ConnectionString` on Event Hubs).
    #[arg(long, env = "TASKFLOW_KAFKA_USERNAME")]
    pub kafka_username: Option<String>,
    /// SASL password; never logged.
    #[arg(long, env = "TASKFLOW_KAFKA_PASSWORD", hide_env_values = true)]
    pub kafka_password: Option<SecretString>,
    /// CA certificates (PEM) to trust for TLS, when the system's do not cover the brokers.
    #[arg(long, env = "TASKFLOW_KAFKA_CA_FILE")]
    pub kafka_ca_file: Option<std::path::PathBuf>,
    /// Client id the brokers see (quotas, logs).
    #[arg(long, env = "TASKFLOW_KAFKA_CLIENT_ID", default_value = "taskflow")]
    pub kafka_client_id: String,
    /// Put before every topic and consumer group name, so that several deployments can
    /// share one cluster (`staging.` gives `staging.task-events`).
    #[arg(long, env = "TASKFLOW_KAFKA_TOPIC_PREFIX", default_value = "")]
    pub kafka_topic_prefix: String,
    /// Create missing topics at start; `false` where they are provisioned apart and the
    /// credentials may not create them.
    #[arg(long, env = "TASKFLOW_KAFKA_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub kafka_create_topics: bool,
    /// Partitions of each topic created at start (existing topics are left as they are).
    #[arg(long, env = "TASKFLOW_KAFKA_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub kafka_partitions: i32,
    /// Replication factor of each topic created at start (3 on a production cluster).
    #[arg(long, env = "TASKFLOW_KAFKA_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    pub kafka_replication_factor: i32,
    /// librdkafka debug contexts for a close look at the client (`broker,cgrp,fetch`,
    /// `all`); its lines are logged at debug level under the target `librdkafka`.
    #[arg(long, env = "TASKFLOW_KAFKA_DEBUG")]
    pub kafka_debug: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

#[cfg(feature = "kafka")]
impl SecurityProtocol {
    /// librdkafka's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn is_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

#[cfg(feature = "kafka")]
impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[cfg(feature = "kafka")]
impl KafkaOpts {
    /// The transport's settings, or what is missing or contradictory.
    pub fn settings(
        &self,
        outbox_retention: Option<std::time::Duration>,
    ) -> Result<taskflow_bus::kafka::KafkaSettings, String> {
        use secrecy::ExposeSecret as _;
        let sasl = self.kafka_security_protocol.is_sasl();
        if sasl && self.kafka_sasl_mechanism.is_none() {
            return Err("--kafka-security-protocol with SASL needs --kafka-sasl-mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)".into());
        }
        if !sasl && self.kafka_sasl_mechanism.is_some() {
            return Err(
                "--kafka-sasl-mechanism needs --kafka-security-protocol sasl-ssl or sasl-plaintext"
                    .into(),
            );
        }
        if sasl && (self.kafka_username.is_none() || self.kafka_password.is_none()) {
            return Err(
                "SASL needs --kafka-username and --kafka-password (TASKFLOW_KAFKA_PASSWORD)".into(),
            );
        }
        if let Some(ca) = &self.kafka_ca_file
            && !ca.is_file()
        {
            return Err(format!("--kafka-ca-file {}: no such file", ca.display()));
        }
        Ok(taskflow_bus::kafka::KafkaSettings {
            brokers: self.kafka_brokers.clone(),
            security_protocol: self.kafka_security_protocol.name().to_owned(),
            sasl_mechanism: self.kafka_sasl_mechanism.map(|m| m.name().to_owned()),
            username: self.kafka_username.clone(),
            password: self
                .kafka_password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            ca_file: self.kafka_ca_file.clone(),
            client_id: self.kafka_client_id.clone(),
            topic_prefix: self.kafka_topic_prefix.clone(),
            create_topics: self.kafka_create_topics,
            partitions: self.kafka_partitions,
            replication_factor: self.kafka_replication_factor,
            outbox_retention,
            debug: self.kafka_debug.clone(),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct RunOpts {
    /// Comma-separated roles to run.
    #[arg(
        long,
        env = "TASKFLOW_ROLES",
        value_parser = role_parser(),
        value_delimiter = ',',
        required = true
    )]
    pub roles: Vec<Role>,
    #[command(flatten)]
    pub serve: ServeOpts,
}

/// `--roles` values: the roles' names, each with what it does in `--help`.
fn role_parser() -> impl clap::builder::TypedValueParser<Value = Role> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
    PossibleValuesParser::new(
        Role::ALL
            .iter()
            .map(|r| PossibleValue::new(r.name()).help(r.about())),
    )
    .map(|name| {
        name.parse::<Role>()
            .expect("a possible value is a role's name")
    })
}

/// Help and version go to stdout with status 0; a bad setting is one line on stderr and
/// status 2.
pub fn exit_for_clap(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        kind => {
            let text = e.render().to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("taskflow: {}", line.trim_start_matches("error: "));
            // A mistyped flag or command: show how the command is used, and where help is.
            if matches!(
                kind,
                ErrorKind::UnknownArgument | ErrorKind::InvalidSubcommand
            ) && let Some(usage) = text.lines().find(|l| l.starts_with("Usage:"))
            {
                eprintln!("{usage}  (see --help)");
            }
            ExitCode::from(2)
        }
    }
}

/// Starts logging, and trace export where `--otlp-endpoint` is set (then the exporter is
/// returned, to be flushed before the process ends). `service` is the service name traces
/// are exported under. Err: a message naming the bad setting.
pub fn init_logging(opts: &LogOpts, service: &str) -> Result<Option<otlp::Exporter>, String> {
    use tracing_subscriber::{EnvFilter, Layer as _, filter, fmt, prelude::*};
    let filter = EnvFilter::try_new(&opts.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match opts.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let url = opts
        .otlp_endpoint
        .as_deref()
        .filter(|e| !e.trim().is_empty())
        .map(otlp::traces_url)
        .transpose()
        .map_err(|e| format!("--otlp-endpoint: {e}"))?;
    let logs = fmt::layer().with_writer(std::io::stderr);
    let logs = if json {
        logs.json()
            .with_current_span(false)
            .flatten_event(true)
            .boxed()
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).boxed()
    };
    let (traces, exporter) = match url {
        Some(url) => {
            let service = std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| service.to_owned());
            let (layer, exporter) = otlp::start(url, service);
            // Only the traced spans reach it, whatever the log filter lets through.
            let spans = filter::filter_fn(|m| m.is_span() && matches!(m.name(), "http" | "event"))
                .with_max_level_hint(tracing::Level::INFO);
            (Some(layer.with_filter(spans)), Some(exporter))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .init();
    Ok(exporter)
}
