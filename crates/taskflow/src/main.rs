//! `taskflow`: one binary runs every part of taskflow.

use std::process::ExitCode;

use clap::Parser;

mod chat;
mod cli;
mod memory;
mod nlu;
mod otlp;
mod secrets;
mod serve;

/// mimalloc instead of glibc's allocator: under concurrent load glibc kept a 64 MiB arena per
/// thread that sqlx's SQLite workers freed into (about 1 GiB resident after a minute of
/// list requests); mimalloc keeps memory near the working set and allocates faster.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::exit_for_clap(e),
    };
    if matches!(&cli.command, cli::Command::Run(run) if !run.roles.contains(&taskflow_core::Role::Api))
    {
        without_huge_pages();
    }
    memory::note_start();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            eprintln!("taskflow: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A process without the API runs without transparent huge pages. mimalloc reserves its heap
/// as one 1 GiB region and asks for huge pages on it, so each touched 2 MiB of it becomes
/// resident whole: 9 of the 14 MiB of private memory of an idle worker role. The API keeps
/// them: its list requests served about 13 % more per second with them (SQLite, 64
/// connections). mimalloc takes the choice from `MIMALLOC_ALLOW_THP` as the process starts,
/// before `main` (the runtime allocates first), and turning them off later (`prctl`) left
/// the 4 MiB already faulted in: so the process starts itself again with `MIMALLOC_ALLOW_THP=0`,
/// unless the variable is set (then it has the say). Where that fails, it goes on as it is:
/// only memory is at stake.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        use std::os::unix::process::CommandExt as _;
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_default();
        // Returns only when it failed.
        let _ = std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env("MIMALLOC_ALLOW_THP", "0")
            .exec();
    }
}

async fn run(cli: cli::Cli) -> ExitCode {
    let service = match &cli.command {
        cli::Command::Run(run) => {
            let roles: Vec<&str> = run.roles.iter().map(|r| r.name()).collect();
            format!("taskflow-{}", roles.join("-"))
        }
        _ => "taskflow".to_owned(),
    };
    let exporter = match cli::init_logging(&cli.log, &service) {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("taskflow: {e}");
            return ExitCode::from(2);
        }
    };
    let code = command(cli).await;
    if let Some(exporter) = exporter {
        exporter.flush(std::time::Duration::from_secs(5)).await;
    }
    code
}

async fn command(cli: cli::Cli) -> ExitCode {
    match cli.command {
        cli::Command::Serve(opts) => serve::run(opts, taskflow_core::Role::ALL.to_vec()).await,
        cli::Command::Run(run) => serve::run(run.serve, run.roles).await,
        cli::Command::Audit(cli::AuditCommand::Rebuild(db)) => serve::rebuild_audit(db).await,
        cli::Command::Migrate(opts) => serve::migrate(opts).await,
        cli::Command::Chat(opts) => chat::run(opts).await,
        cli::Command::Mcp(opts) => serve::mcp_stdio(opts).await,
        cli::Command::Backup(opts) => serve::backup(opts).await,
        cli::Command::Nlu(cli::NluCommand::Parse {
            now,
            tz,
            explain,
            utterance,
        }) => nlu::parse(now.as_deref(), tz.as_deref(), &utterance.join(" "), explain),
    }
}
