//! `taskflow`: one binary runs every part of taskflow.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod serve;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return cli::exit_for_clap(e),
    };
    cli::init_logging(&cli.log);
    match cli.command {
        cli::Command::Serve(opts) => serve::run(opts, cli::Role::ALL.to_vec()).await,
        cli::Command::Run(run) => serve::run(run.serve, run.roles).await,
        cli::Command::Migrate(opts) => serve::migrate(opts).await,
    }
}
