//! Wiring: open the store, migrate, build the roles, serve until a signal.

use std::{process::ExitCode, sync::Arc, time::Duration};

use taskflow_api::{AppState, Limits, Rate};
use taskflow_app::{App, TokenConfig, Tokens};
use taskflow_bus::EmbeddedBus;
use taskflow_core::SystemClock;
use taskflow_store::{Store, redact_url};

use crate::cli::{DbOpts, Role, ServeOpts};

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

pub async fn migrate(db: DbOpts) -> ExitCode {
    match open(&db).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

pub async fn run(opts: ServeOpts, roles: Vec<Role>) -> ExitCode {
    // Bind first: a taken address fails before any other work.
    let listener = match tokio::net::TcpListener::bind(opts.bind).await {
        Ok(l) => l,
        Err(e) => return fail(format_args!("cannot listen on {}: {e}", opts.bind)),
    };
    let store = match open(&opts.db).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let token_config = TokenConfig {
        secret: opts.jwt_secret.clone(),
        ttl: Duration::from_secs(opts.token_ttl_hours * 3600),
    };
    let tokens = match Tokens::load(store.as_ref(), &token_config).await {
        Ok(t) => t,
        Err(e) => return fail(format_args!("cannot set up token signing: {e}")),
    };
    let bus = match EmbeddedBus::open(store.clone()).await {
        Ok(b) => b,
        Err(e) => return fail(format_args!("cannot open the event log: {e}")),
    };
    let app = App::new(store, bus, Arc::new(SystemClock), tokens);
    let burst = opts.rate_limit_burst;
    let limits = Limits::new(
        Rate {
            per_second: opts.rate_limit_per_ip,
            burst: opts.rate_limit_per_ip.saturating_mul(burst),
        },
        Rate {
            per_second: opts.rate_limit_per_user,
            burst: opts.rate_limit_per_user.saturating_mul(burst),
        },
    );
    let metrics = taskflow_api::prometheus();
    let housekeeping = taskflow_api::spawn_housekeeping(limits.clone(), metrics.clone());
    let state = AppState {
        app,
        limits,
        metrics,
    };

    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let role_names: Vec<String> = roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect();
    tracing::info!(addr = %addr, roles = %role_names.join(","), "listening");

    let grace = Duration::from_secs(opts.shutdown_grace_secs);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(taskflow_api::serve(
        listener,
        taskflow_api::router(state),
        async move {
            let mut rx = stop_rx;
            let _ = rx.wait_for(|stop| *stop).await;
        },
    ));
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    housekeeping.abort();
    match tokio::time::timeout(grace, server).await {
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
