//! `taskflow`: one binary runs every part of taskflow.

use std::process::ExitCode;

use clap::Parser;

mod chat;
mod cli;
mod nlu;
mod secrets;
mod serve;

/// mimalloc instead of glibc's allocator: under concurrent load glibc kept a 64 MiB arena per
/// thread that sqlx's SQLite workers freed into (about 1 GiB resident after a minute of
/// list requests); mimalloc keeps memory near the working set and allocates faster.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::exit_for_clap(e),
    };
    cli::init_logging(&cli.log);
    match cli.command {
        cli::Command::Serve(opts) => serve::run(opts, taskflow_core::Role::ALL.to_vec()).await,
        cli::Command::Run(run) => serve::run(run.serve, run.roles).await,
        cli::Command::Audit(cli::AuditCommand::Rebuild(db)) => serve::rebuild_audit(db).await,
        cli::Command::Migrate(opts) => serve::migrate(opts).await,
        cli::Command::Chat(opts) => chat::run(opts).await,
        cli::Command::Mcp(opts) => serve::mcp_stdio(opts).await,
        cli::Command::Backup(opts) => serve::backup(opts).await,
        cli::Command::Nlu(cli::NluCommand::Parse { now, tz, utterance }) => {
            nlu::parse(now.as_deref(), tz.as_deref(), &utterance.join(" "))
        }
    }
}
