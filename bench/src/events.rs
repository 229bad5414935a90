//! Benchmarks of the event-driven parts: reminder precision at scale, create → SSE latency
//! under load, and memory per idle live connection.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row as _};

use crate::{login, mib, rss_kib, sql};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

macro_rules! seed_reminders_impl {
    ($name:ident, $db:ty) => {
        async fn $name(pool: &sqlx::Pool<$db>, postgres: bool, pending: u64, due: u64, due_at: i64) -> Result<()> {
            let rows = sqlx::query(AssertSqlSafe(sql(postgres, "SELECT id, user_id FROM tasks ORDER BY seq LIMIT ?")))
                .bind((pending + due) as i64)
                .fetch_all(pool)
                .await?;
            anyhow::ensure!(rows.len() as u64 == pending + due, "seed at least {} tasks first", pending + due);
            let far = (due_at + 30 * 86_400) * 1_000_000;
            let start = due_at * 1_000_000;
            let step = 60_000_000 / due.max(1) as i64;
            let mut tx = pool.begin().await?;
            for (c, chunk) in rows.chunks(500).enumerate() {
                let marks = vec!["(?, ?, ?, 0, ?, NULL, 'pending')"; chunk.len()].join(", ");
                let mut q = sqlx::query(AssertSqlSafe(sql(postgres, &format!(
                    "INSERT INTO reminders (id, task_id, user_id, ordinal, fire_at, before_minutes, status) VALUES {marks}"
                ))));
                for (i, r) in chunk.iter().enumerate() {
                    let n = (c * 500 + i) as u64;
                    let id: String = r.try_get(0)?;
                    let fire_at = if n < due { start + n as i64 * step } else { far + n as i64 };
                    q = q.bind(id.clone()).bind(id).bind(r.try_get::<String, _>(1)?).bind(fire_at);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }
    };
}

seed_reminders_impl!(seed_reminders_sqlite, sqlx::Sqlite);
seed_reminders_impl!(seed_reminders_pg, sqlx::Postgres);

pub async fn seed_reminders(url: &str, pending: u64, due: u64, due_at: i64) -> Result<()> {
    if url.starts_with("postgres") {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        seed_reminders_pg(&pool, true, pending, due, due_at).await?;
    } else {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await?;
        seed_reminders_sqlite(&pool, false, pending, due, due_at).await?;
    }
    eprintln!("seeded {pending} pending reminders and {due} due in the minute from {due_at}");
    Ok(())
}

pub async fn reminder_report(url: &str, expect: usize, wait: u64, pid: Option<u32>) -> Result<()> {
    let store = taskflow_store::connect(url)
        .await
        .context("opening the database")?;
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut late: Vec<f64> = Vec::new();
    let mut position = 0;
    loop {
        let batch = store.events_after(position, 1000).await?;
        if let Some(last) = batch.last() {
            position = last.position;
        }
        for e in batch
            .iter()
            .filter(|e| e.event.ty == "com.taskflow.reminder.triggered.v1")
        {
            late.push(e.event.data["late_by_ms"].as_f64().context("late_by_ms")?);
        }
        if late.len() >= expect || Instant::now() > deadline {
            break;
        }
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    late.sort_by(f64::total_cmp);
    let pending = store.count_pending_reminders().await?;
    println!(
        "{}",
        json!({
            "scenario": "reminders",
            "fired": late.len(),
            "still_pending": pending,
            "late_p50_ms": percentile(&late, 0.5),
            "late_p99_ms": percentile(&late, 0.99),
            "late_max_ms": late.last().copied().unwrap_or(0.0),
            "rss_mib": pid.and_then(rss_kib).map(mib),
        })
    );
    Ok(())
}

/// Reads one SSE stream; for each `task.created` whose title is `lat <ns>`, records the
/// delay since that moment (ns after `base`).
async fn read_stream(
    res: reqwest::Response,
    base: Instant,
    lat: Arc<Mutex<Vec<f64>>>,
    stop: Arc<AtomicBool>,
) {
    let mut res = res;
    let mut buf = String::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(Some(bytes))) =
            tokio::time::timeout(Duration::from_millis(500), res.chunk()).await
        else {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            continue;
        };
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(i) = block.find("\"title\":\"lat ") {
                let rest = &block[i + 13..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(sent) = digits.parse::<u64>() {
                    let now = base.elapsed().as_nanos() as u64;
                    lat.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(now.saturating_sub(sent) as f64 / 1e6);
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn sse(
    base_url: &str,
    users: u64,
    seeded: u64,
    streams: usize,
    rate: u64,
    seconds: u64,
    pid: Option<u32>,
) -> Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let tokens: Vec<String> = login(&client, base_url, users, seeded)
        .await?
        .into_iter()
        .map(|l| l.token)
        .collect();
    // Logins hash passwords (argon2, 19 MiB each); let the allocator hand that back first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_before = pid.and_then(rss_kib);
    let base = Instant::now();
    let lat = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = tokio::task::JoinSet::new();
    // Open the streams with their own clients' connections, a batch at a time.
    let stream_client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    // Memory per stream is the slope between a fifth of the streams and all of them: the
    // first ones may reuse memory the allocator kept from the logins.
    let first = streams / 5;
    let mut rss_first = None;
    for i in 0..streams {
        if i == first && rate == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            rss_first = pid.and_then(rss_kib);
        }
        let token = &tokens[i % tokens.len()];
        let res = stream_client
            .get(format!("{base_url}/api/events"))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("opening stream {i}"))?;
        anyhow::ensure!(res.status() == 200, "stream {i}: {}", res.status());
        readers.spawn(read_stream(res, base, lat.clone(), stop.clone()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = pid.and_then(rss_kib);
    let mut sent = 0u64;
    let mut errors = 0u64;
    if rate > 0 {
        let started = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let mut tick = tokio::time::interval(interval);
        let mut writers = tokio::task::JoinSet::new();
        while started.elapsed() < Duration::from_secs(seconds) {
            tick.tick().await;
            let token = tokens[(sent as usize) % tokens.len()].clone();
            let (client, url) = (client.clone(), format!("{base_url}/api/tasks"));
            let title = format!("lat {}", base.elapsed().as_nanos());
            writers.spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"title": title}))
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            });
            sent += 1;
            while let Some(done) = writers.try_join_next() {
                if !matches!(done, Ok(true)) {
                    errors += 1;
                }
            }
        }
        while let Some(done) = writers.join_next().await {
            if !matches!(done, Ok(true)) {
                errors += 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    } else {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
    let rss_end = pid.and_then(rss_kib);
    stop.store(true, Ordering::Relaxed);
    readers.abort_all();
    let mut lat = lat.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lat.sort_by(f64::total_cmp);
    let expected = sent as usize * streams / tokens.len();
    let per_conn = match (rss_first, rss_open) {
        (Some(a), Some(b)) => {
            Some(((b as f64 - a as f64) / (streams - first) as f64 * 100.0).round() / 100.0)
        }
        _ => None,
    };
    println!(
        "{}",
        json!({
            "scenario": if rate > 0 { "sse-latency" } else { "sse-idle" },
            "streams": streams,
            "users": tokens.len(),
            "writes_per_s": rate,
            "writes": sent,
            "write_errors": errors,
            "deliveries": lat.len(),
            "deliveries_expected": expected,
            "p50_ms": percentile(&lat, 0.5),
            "p99_ms": percentile(&lat, 0.99),
            "max_ms": lat.last().copied().unwrap_or(0.0),
            "rss_before_streams_mib": rss_before.map(mib),
            "rss_fifth_open_mib": rss_first.map(mib),
            "rss_streams_open_mib": rss_open.map(mib),
            "rss_end_mib": rss_end.map(mib),
            "kib_per_stream": per_conn,
        })
    );
    Ok(())
}

/// `role=pid`, for `pipeline --process`.
pub fn parse_process(s: &str) -> Result<(String, u32), String> {
    let (role, pid) = s.split_once('=').ok_or("expected role=pid")?;
    let pid = pid.parse().map_err(|e| format!("pid: {e}"))?;
    Ok((role.to_owned(), pid))
}

/// CPU time (user + system) a process has used, in milliseconds; `/proc` counts in clock
/// ticks of 10 ms (USER_HZ is 100 on Linux).
fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10)
}

/// The load of a `pipeline` run.
#[derive(Debug, Clone, Copy)]
pub struct PipelineRun {
    pub users: u64,
    pub seeded: u64,
    pub concurrency: usize,
    pub seconds: u64,
}

pub async fn pipeline(
    base_url: &str,
    url: &str,
    run: PipelineRun,
    processes: &[(String, u32)],
) -> Result<()> {
    let db = sqlx::PgPool::connect(url)
        .await
        .context("opening the database")?;
    let audited = || async {
        sqlx::query("SELECT count(*) FROM audit_log")
            .fetch_one(&db)
            .await
            .map(|r| r.get::<i64, _>(0))
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(run.concurrency)
        .build()?;
    let tokens: Vec<String> = login(&client, base_url, run.users, run.seeded)
        .await?
        .into_iter()
        .map(|l| l.token)
        .collect();
    let tokens = Arc::new(tokens);
    let before = audited().await?;
    let cpu_before: Vec<Option<u64>> = processes.iter().map(|(_, p)| cpu_ms(*p)).collect();
    let started = Instant::now();
    let until = started + Duration::from_secs(run.seconds);
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..run.concurrency {
        let (client, tokens, url) = (
            client.clone(),
            tokens.clone(),
            format!("{base_url}/api/tasks"),
        );
        writers.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut n = w;
            while Instant::now() < until {
                let res = client
                    .post(&url)
                    .bearer_auth(&tokens[n % tokens.len()])
                    .json(&json!({"title": format!("pipeline {n}")}))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => ok += 1,
                    _ => failed += 1,
                }
                n += run.concurrency;
            }
            (ok, failed)
        });
    }
    let (mut writes, mut errors) = (0u64, 0u64);
    while let Some(done) = writers.join_next().await {
        let (ok, failed) = done?;
        writes += ok;
        errors += failed;
    }
    let written = started.elapsed();
    // Each write is one event; the audit log holds them all once the pipeline has drained.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut arrived = audited().await? - before;
    while (arrived as u64) < writes && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        arrived = audited().await? - before;
    }
    let drained = started.elapsed();
    let cpu: serde_json::Map<String, serde_json::Value> = processes
        .iter()
        .zip(cpu_before)
        .map(|((role, pid), before)| {
            let spent = match (before, cpu_ms(*pid)) {
                (Some(a), Some(b)) => json!({
                    "cpu_ms": b - a,
                    "cpu_ms_per_event": ((b - a) as f64 / writes.max(1) as f64 * 1000.0).round() / 1000.0,
                }),
                _ => json!(null),
            };
            (role.clone(), spent)
        })
        .collect();
    println!(
        "{}",
        json!({
            "scenario": "pipeline",
            "concurrency": run.concurrency,
            "writes": writes,
            "write_errors": errors,
            "writes_per_s": (writes as f64 / written.as_secs_f64()).round(),
            "audited": arrived,
            "audited_per_s": (arrived as f64 / drained.as_secs_f64()).round(),
            "drain_after_last_write_ms": (drained - written).as_millis() as u64,
            "processes": cpu,
        })
    );
    Ok(())
}
