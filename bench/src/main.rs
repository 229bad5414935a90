//! Benchmarks of taskflow: `seed` fills a database with users and tasks straight through SQL
//! (fast, for scale), `load` drives the real server over HTTP with N concurrent connections
//! and reports requests/s, latency percentiles and the server's memory.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::json;
use sqlx::AssertSqlSafe;

mod events;

/// Password of every seeded user.
const PASSWORD: &str = "benchmark-password";
const WORDS: &[&str] = &[
    "pay",
    "rent",
    "buy",
    "milk",
    "call",
    "mom",
    "file",
    "taxes",
    "book",
    "dentist",
    "renew",
    "passport",
    "water",
    "plants",
    "clean",
    "garage",
    "email",
    "boss",
    "review",
    "report",
    "fix",
    "bike",
    "order",
    "groceries",
    "plan",
    "trip",
    "read",
    "chapter",
    "write",
    "notes",
    "backup",
    "laptop",
    "walk",
    "dog",
    "pick",
    "kids",
    "cook",
    "dinner",
];
const TAGS: &[&str] = &[
    "home",
    "work",
    "errands",
    "health",
    "finance",
    "family",
    "urgent-ish",
    "someday",
];
const PRIORITIES: &[(&str, i64)] = &[("low", 3), ("medium", 2), ("high", 1), ("urgent", 0)];

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create users `bench-N@example.com` and tasks spread over them, straight through SQL.
    Seed {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 10_000)]
        users: u64,
        #[arg(long, default_value_t = 1_000_000)]
        tasks: u64,
    },
    /// Drive a running server and report throughput and latency.
    Load {
        /// Base URL of the server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base: String,
        #[arg(long, value_enum)]
        scenario: Scenario,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds of measured load (after a 2 s warm-up).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// How many seeded users to log in and spread requests over.
        #[arg(long, default_value_t = 256)]
        users: u64,
        /// Seeded users to pick from (bench-0 … bench-N-1).
        #[arg(long, default_value_t = 10_000)]
        seeded: u64,
        /// PID of the server, to report its resident memory.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Give tasks of the seeded database reminders: `pending` of them far ahead, `due` of them
    /// spread over the minute starting at `due_at` (Unix seconds).
    SeedReminders {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 100_000)]
        pending: u64,
        #[arg(long, default_value_t = 1_000)]
        due: u64,
        #[arg(long)]
        due_at: i64,
    },
    /// Parse every utterance of a corpus file (JSON lines with `say`, `now`, `tz`) in process,
    /// `rounds` times, and report the parse time percentiles.
    Nlu {
        #[arg(long)]
        corpus: Vec<String>,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Lateness of the reminders that fired (from their `reminder.triggered` events).
    ReminderReport {
        #[arg(long)]
        database_url: String,
        /// How many must have fired; waits up to `wait` seconds for them.
        #[arg(long)]
        expect: usize,
        #[arg(long, default_value_t = 180)]
        wait: u64,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// `signups` clients signing up in parallel from one address, each again as soon as it
    /// is answered, for `seconds`, while another user reads `GET /api/tasks` every 20 ms:
    /// that user's latency, how the flood was answered, and the server's peak memory.
    AuthFlood {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base: String,
        #[arg(long, default_value_t = 300)]
        signups: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Live events: open `streams` SSE connections over `users` users; with `rate` > 0, create
    /// tasks at that rate and measure create → SSE delivery latency; with `rate` 0, hold the
    /// connections idle and report the server's memory per connection.
    Sse {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base: String,
        #[arg(long, default_value_t = 100)]
        users: u64,
        #[arg(long, default_value_t = 10_000)]
        seeded: u64,
        #[arg(long, default_value_t = 1_000)]
        streams: usize,
        #[arg(long, default_value_t = 500)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// The event pipeline end to end (PostgreSQL): `concurrency` clients create tasks as fast
    /// as they are answered for `seconds`; reports the writes/s and how fast their events
    /// reached the audit log (the audit consumer's table), and the CPU time each process
    /// (`--process role=pid`, repeatable) spent per event.
    Pipeline {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base: String,
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 64)]
        users: u64,
        #[arg(long, default_value_t = 1_000)]
        seeded: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long = "process", value_parser = events::parse_process)]
        processes: Vec<(String, u32)>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// POST /api/tasks.
    Create,
    /// GET /api/tasks with filters, limit 50.
    List,
    /// 80 % list, 20 % create.
    Mix,
    /// POST /api/chat with the rule-based agent: adds, lists, completes by words.
    Chat,
    /// GET /api/tasks?limit=1: the smallest authenticated read.
    One,
    /// PATCH one of the user's first ten tasks (a new title): a read-check-write change.
    Update,
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Seed {
            database_url,
            users,
            tasks,
        } => seed(&database_url, users, tasks).await,
        Command::Load {
            base,
            scenario,
            concurrency,
            seconds,
            users,
            seeded,
            pid,
        } => load(&base, scenario, concurrency, seconds, users, seeded, pid).await,
        Command::Nlu { corpus, rounds } => nlu_bench(&corpus, rounds),
        Command::AuthFlood {
            base,
            signups,
            seconds,
            pid,
        } => auth_flood(&base, signups, seconds, pid).await,
        Command::SeedReminders {
            database_url,
            pending,
            due,
            due_at,
        } => events::seed_reminders(&database_url, pending, due, due_at).await,
        Command::ReminderReport {
            database_url,
            expect,
            wait,
            pid,
        } => events::reminder_report(&database_url, expect, wait, pid).await,
        Command::Sse {
            base,
            users,
            seeded,
            streams,
            rate,
            seconds,
            pid,
        } => events::sse(&base, users, seeded, streams, rate, seconds, pid).await,
        Command::Pipeline {
            base,
            database_url,
            users,
            seeded,
            concurrency,
            seconds,
            processes,
        } => {
            let run = events::PipelineRun {
                users,
                seeded,
                concurrency,
                seconds,
            };
            events::pipeline(&base, &database_url, run, &processes).await
        }
    }
}

fn sql(postgres: bool, s: &str) -> String {
    if !postgres {
        return s.to_owned();
    }
    let mut n = 0;
    s.chars()
        .map(|c| {
            if c == '?' {
                n += 1;
                format!("${n}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

async fn seed(url: &str, users: u64, tasks: u64) -> Result<()> {
    let store = taskflow_store::connect(url)
        .await
        .context("opening the database")?;
    store.migrate().await?;
    drop(store);
    let hash = {
        use argon2::{PasswordHasher, password_hash::SaltString};
        let salt = SaltString::encode_b64(b"benchmark-salt!!").unwrap();
        argon2::Argon2::default()
            .hash_password(PASSWORD.as_bytes(), &salt)
            .unwrap()
            .to_string()
    };
    let postgres = url.starts_with("postgres");
    let started = Instant::now();
    if postgres {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await?;
        pg_seed::seed_with(&pool, true, users, tasks, &hash).await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
    } else {
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse()?;
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                opts.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Off),
            )
            .await?;
        sqlite_seed::seed_with(&pool, false, users, tasks, &hash).await?;
        sqlx::query("ANALYZE").execute(&pool).await?;
    }
    eprintln!(
        "seeded {users} users and {tasks} tasks in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

macro_rules! seed_impl {
    ($name:ident, $db:ty) => {
        pub(super) async fn $name(pool: &sqlx::Pool<$db>, postgres: bool, users: u64, tasks: u64, hash: &str) -> Result<()> {
            let now = 1_795_000_000_000_000_i64;
            let mut rng = StdRng::seed_from_u64(42);
            let ids: Vec<String> = (0..users).map(|_| uuid::Uuid::now_v7().to_string()).collect();
            let per_user = tasks / users.max(1);
            for chunk in ids.chunks(500).enumerate() {
                let (ci, chunk) = chunk;
                let rows = vec!["(?, ?, ?, 'UTC', ?, ?, ?)"; chunk.len()].join(", ");
                let mut q = sqlx::query(AssertSqlSafe(sql(postgres, &format!(
                    "INSERT INTO users (id, email, name, timezone, password_hash, task_seq, created_at) VALUES {rows}"
                ))));
                for (i, id) in chunk.iter().enumerate() {
                    let n = ci * 500 + i;
                    q = q.bind(id.clone()).bind(format!("bench-{n}@example.com")).bind(format!("Bench {n}"))
                        .bind(hash.to_owned()).bind(per_user as i64).bind(now);
                }
                q.execute(pool).await?;
            }
            const BATCH: usize = 400;
            let mut rows_tasks = Vec::with_capacity(BATCH);
            let mut done = 0u64;
            for (u, uid) in ids.iter().enumerate() {
                for number in 1..=per_user as i64 {
                    let words: Vec<&str> = (0..rng.random_range(2..5)).map(|_| *WORDS.choose(&mut rng).unwrap()).collect();
                    let title = words.join(" ");
                    let (priority, pos) = *PRIORITIES.choose(&mut rng).unwrap();
                    let tag = *TAGS.choose(&mut rng).unwrap();
                    let due = if rng.random_bool(0.8) { Some(now + rng.random_range(-60..60) * 86_400_000_000) } else { None };
                    let status = if rng.random_bool(0.3) { "completed" } else { "pending" };
                    rows_tasks.push((uuid::Uuid::now_v7().to_string(), uid.clone(), number, title, priority, pos, tag, due, status, u));
                    if rows_tasks.len() == BATCH {
                        flush(pool, postgres, &mut rows_tasks, now).await?;
                        done += BATCH as u64;
                        if done % 100_000 == 0 {
                            eprintln!("  {done} tasks");
                        }
                    }
                }
            }
            flush(pool, postgres, &mut rows_tasks, now).await?;
            Ok(())
        }
    };
}

type TaskSeed = (
    String,
    String,
    i64,
    String,
    &'static str,
    i64,
    &'static str,
    Option<i64>,
    &'static str,
    usize,
);

macro_rules! flush_impl {
    ($name:ident, $db:ty) => {
        async fn $name(pool: &sqlx::Pool<$db>, postgres: bool, rows: &mut Vec<TaskSeed>, now: i64) -> Result<()> {
            if rows.is_empty() {
                return Ok(());
            }
            let mut tx = pool.begin().await?;
            let marks = vec!["(?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, 'due', ?, ?, ?, 1)"; rows.len()].join(", ");
            let mut q = sqlx::query(AssertSqlSafe(sql(postgres, &format!(
                "INSERT INTO tasks (id, user_id, number, title, title_key, description, status, priority, priority_pos, \
                 tags, due_at, due_sort, due_last, recurrence_anchor, created_at, updated_at, completed_at, version) VALUES {marks}"
            ))));
            for (id, uid, number, title, priority, pos, tag, due, status, _) in rows.iter() {
                q = q.bind(id.clone()).bind(uid.clone()).bind(*number).bind(title.clone()).bind(title.to_lowercase())
                    .bind(*status).bind(*priority).bind(*pos).bind(format!("[\"{tag}\"]"))
                    .bind(*due).bind(*due).bind(*due).bind(now).bind(now)
                    .bind(if *status == "completed" { Some(now) } else { None });
            }
            q.execute(&mut *tx).await?;
            let marks = vec!["(?, ?, ?)"; rows.len()].join(", ");
            let mut q = sqlx::query(AssertSqlSafe(sql(postgres, &format!("INSERT INTO task_tags (task_id, user_id, tag) VALUES {marks}"))));
            for (id, uid, _, _, _, _, tag, _, _, _) in rows.iter() {
                q = q.bind(id.clone()).bind(uid.clone()).bind(*tag);
            }
            q.execute(&mut *tx).await?;
            tx.commit().await?;
            rows.clear();
            Ok(())
        }
    };
}

mod sqlite_seed {
    use super::*;
    seed_impl!(seed_with, sqlx::Sqlite);
    flush_impl!(flush, sqlx::Sqlite);
}
mod pg_seed {
    use super::*;
    seed_impl!(seed_with, sqlx::Postgres);
    flush_impl!(flush, sqlx::Postgres);
}

/// Mebibytes with one decimal, from kibibytes.
pub(crate) fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// The `p` percentile of microsecond samples sorted ascending, in milliseconds (0 if none).
fn percentile_ms<T: Copy + Into<u64>>(sorted_micros: &[T], p: f64) -> f64 {
    let i = ((sorted_micros.len() as f64 * p) as usize).min(sorted_micros.len().saturating_sub(1));
    sorted_micros.get(i).map_or(0, |t| (*t).into()) as f64 / 1000.0
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A signed-in seeded user.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) token: String,
    pub(crate) user_id: String,
}

/// The server's CPU time so far (user and system), in microseconds.
pub(crate) fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let (utime, stime): (u64, u64) = (fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
    // Clock ticks of 10 ms (USER_HZ is 100 on Linux).
    Some((utime + stime) * 10_000)
}

/// Logs `users` seeded users in (picked from `seeded`), a few at a time: argon2 is
/// deliberately slow. Returns their tokens and ids.
pub(crate) async fn login(
    client: &reqwest::Client,
    base: &str,
    users: u64,
    seeded: u64,
) -> Result<Vec<Login>> {
    let mut tokens = Vec::new();
    let mut rng = StdRng::seed_from_u64(7);
    // Distinct users, so each token is one user's.
    let picks: Vec<u64> =
        rand::seq::index::sample(&mut rng, seeded as usize, users.min(seeded) as usize)
            .into_iter()
            .map(|n| n as u64)
            .collect();
    for chunk in picks.chunks(8) {
        let mut logins = tokio::task::JoinSet::new();
        for &n in chunk {
            let client = client.clone();
            let base = base.to_owned();
            logins.spawn(async move {
                let res = client
                    .post(format!("{base}/api/auth/login"))
                    .json(&json!({"email": format!("bench-{n}@example.com"), "password": PASSWORD}))
                    .send()
                    .await?;
                anyhow::ensure!(
                    res.status() == 200,
                    "login of bench-{n} failed: {}",
                    res.status()
                );
                let body: serde_json::Value = res.json().await?;
                Ok::<_, anyhow::Error>(Login {
                    token: body["token"].as_str().unwrap_or_default().to_owned(),
                    user_id: body["user"]["id"].as_str().unwrap_or_default().to_owned(),
                })
            });
        }
        for t in logins.join_all().await {
            tokens.push(t?);
        }
    }
    Ok(tokens)
}

async fn load(
    base: &str,
    scenario: Scenario,
    concurrency: usize,
    seconds: u64,
    users: u64,
    seeded: u64,
    pid: Option<u32>,
) -> Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let idle_rss = pid.and_then(rss_kib);
    let tokens = login(&client, base, users, seeded).await?;
    let tokens = Arc::new(tokens);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (client, base, tokens, measuring, stop, errors) = (
            client.clone(),
            base.to_owned(),
            tokens.clone(),
            measuring.clone(),
            stop.clone(),
            errors.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w as u64);
            let mut lat = Vec::with_capacity(200_000);
            while !stop.load(Ordering::Relaxed) {
                let login = tokens.choose(&mut rng).unwrap();
                let token = &login.token;
                let write = match scenario {
                    Scenario::Create => true,
                    Scenario::List | Scenario::Chat | Scenario::One | Scenario::Update => false,
                    Scenario::Mix => rng.random_bool(0.2),
                };
                let req = if scenario == Scenario::One {
                    client.get(format!("{base}/api/tasks?limit=1")).bearer_auth(token)
                } else if scenario == Scenario::Update {
                    let number = rng.random_range(1..=10);
                    let title = format!("{} {}", WORDS.choose(&mut rng).unwrap(), WORDS.choose(&mut rng).unwrap());
                    client
                        .patch(format!("{base}/api/{}/tasks/{number}", login.user_id))
                        .bearer_auth(token)
                        .json(&json!({"title": title}))
                } else if scenario == Scenario::Chat {
                    let (a, b) = (WORDS.choose(&mut rng).unwrap(), WORDS.choose(&mut rng).unwrap());
                    let message = match rng.random_range(0..4) {
                        0 => format!("add {a} {b} tomorrow at 5pm #bench high priority"),
                        1 => format!("remind me to {a} {b} every friday at 9am"),
                        2 => "what's due this week?".to_owned(),
                        _ => format!("show tasks about {a}"),
                    };
                    client.post(format!("{base}/api/chat")).bearer_auth(token).json(&json!({"message": message}))
                } else if write {
                    let title = format!("{} {}", WORDS.choose(&mut rng).unwrap(), WORDS.choose(&mut rng).unwrap());
                    client.post(format!("{base}/api/tasks")).bearer_auth(token).json(&json!({
                        "title": title, "priority": "high", "tags": ["bench"], "due_at": "2030-01-01T09:00:00Z"
                    }))
                } else {
                    let filter = ["status=pending", "status=pending&priority=high,urgent", "tag=home", "sort=priority&status=all"]
                        .choose(&mut rng)
                        .unwrap();
                    client.get(format!("{base}/api/tasks?{filter}&limit=50")).bearer_auth(token)
                };
                let t0 = Instant::now();
                let ok = match req.send().await {
                    Ok(res) => {
                        let ok = res.status().is_success();
                        let _ = res.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        lat.push(t0.elapsed().as_micros() as u32);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let cpu_before = pid.and_then(cpu_micros);
    let mut peak_rss = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(r) = pid.and_then(rss_kib) {
            peak_rss = peak_rss.max(r);
        }
    }
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(pid.and_then(cpu_micros)).map(|(a, b)| b - a);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await?);
    }
    all.sort_unstable();
    let pct = |p: f64| percentile_ms(&all, p);
    println!(
        "{}",
        json!({
            "scenario": format!("{scenario:?}").to_lowercase(),
            "concurrency": concurrency,
            "seconds": elapsed,
            "requests": all.len(),
            "errors": errors.load(Ordering::Relaxed),
            "rps": (all.len() as f64 / elapsed).round(),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": all.last().copied().unwrap_or(0) as f64 / 1000.0,
            // The server's CPU per answered request: less tied to the load generator sharing
            // the machine than requests per second.
            "cpu_us_per_req": cpu.filter(|_| !all.is_empty()).map(|c| (c as f64 / all.len() as f64).round()),
            "rss_idle_mib": idle_rss.map(mib),
            "rss_peak_mib": pid.map(|_| mib(peak_rss)),
        })
    );
    Ok(())
}

/// Parse time of the rule-based reader over corpus files.
fn nlu_bench(files: &[String], rounds: usize) -> Result<()> {
    let mut cases = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(f)?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let tz: chrono_tz::Tz = v["tz"]
                .as_str()
                .unwrap_or("UTC")
                .parse()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let now = taskflow_nlu::parse_now(v["now"].as_str().unwrap_or_default(), tz)
                .context("now")?;
            cases.push((v["say"].as_str().unwrap_or_default().to_owned(), now, tz));
        }
    }
    let mut times = Vec::with_capacity(cases.len() * rounds);
    for (say, now, tz) in &cases {
        let _ = taskflow_nlu::parse(say, *now, *tz); // warm up
    }
    for _ in 0..rounds {
        for (say, now, tz) in &cases {
            let t0 = Instant::now();
            std::hint::black_box(taskflow_nlu::parse(say, *now, *tz));
            times.push(t0.elapsed().as_nanos() as f64 / 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{}",
        json!({"scenario": "nlu-parse", "utterances": cases.len(), "parses": times.len(),
               "p50_us": pct(0.5), "p99_us": pct(0.99), "max_us": pct(1.0)})
    );
    Ok(())
}

/// See [`Command::AuthFlood`].
async fn auth_flood(base: &str, signups: usize, seconds: u64, pid: Option<u32>) -> Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let reader = format!("reader-{}@example.com", std::process::id());
    let res = client
        .post(format!("{base}/api/auth/signup"))
        .json(&json!({"email": reader, "password": PASSWORD}))
        .send()
        .await?;
    anyhow::ensure!(
        res.status() == 201,
        "the reader's signup failed: {}",
        res.status()
    );
    let token = res.json::<serde_json::Value>().await?["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let idle_rss = pid.and_then(rss_kib);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = pid.and_then(rss_kib) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let reads = {
        let (client, base, done) = (client.clone(), base.to_owned(), done.clone());
        tokio::spawn(async move {
            let mut times = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = client
                    .get(format!("{base}/api/tasks?limit=10"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ok {
                    times.push(started.elapsed().as_micros() as u64);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            times
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    let until = started + Duration::from_secs(seconds);
    for i in 0..signups {
        let (client, base) = (client.clone(), base.to_owned());
        flood.spawn(async move {
            let mut statuses = Vec::new();
            let mut n = 0;
            while Instant::now() < until {
                n += 1;
                let email = format!("flood-{}-{i}-{n}@example.com", std::process::id());
                let status = client
                    .post(format!("{base}/api/auth/signup"))
                    .json(&json!({"email": email, "password": PASSWORD}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                statuses.push(status);
            }
            statuses
        });
    }
    let statuses: Vec<u16> = flood.join_all().await.into_iter().flatten().collect();
    let flood_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::Relaxed);
    let mut times = reads.await?;
    sampler.await?;
    times.sort_unstable();
    let pct = |p: f64| percentile_ms(&times, p);
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    println!(
        "{}",
        json!({
            "scenario": "auth-flood",
            "clients": signups,
            "signups": statuses.len(),
            "flood_seconds": (flood_secs * 100.0).round() / 100.0,
            "created": count(201),
            "busy_503": count(503),
            "limited_429": count(429),
            "other": statuses.len() - count(201) - count(503) - count(429),
            "reader_gets": times.len(),
            "reader_p50_ms": pct(0.50),
            "reader_p99_ms": pct(0.99),
            "reader_max_ms": times.last().copied().unwrap_or(0) as f64 / 1000.0,
            "rss_idle_mib": idle_rss.map(mib),
            "rss_peak_mib": pid.map(|_| mib(peak.load(Ordering::Relaxed))),
        })
    );
    Ok(())
}
