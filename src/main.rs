//! The `rapport` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rapport::config::Settings;
use rapport::store::Store;
use rapport::telemetry::{self, LogFormat};
use rapport::web::{Application, Site};

/// rapport: self-hosted relationship marketing (opt-in, profiles, campaigns, tracking).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Folder holding campaigns.toml, segments/ and templates/.
    #[arg(long, global = true, default_value = ".", env = "RAPPORT_DIR")]
    dir: PathBuf,
    /// Database: sqlite://FILE (created if missing) or postgres://USER@HOST/DB.
    #[arg(
        long,
        global = true,
        env = "RAPPORT_DATABASE_URL",
        default_value = "sqlite://rapport.db"
    )]
    database_url: String,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "RAPPORT_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web side (form, profile centre) until stopped; SIGHUP reloads the files.
    Serve {
        /// Address and port to listen on.
        #[arg(long, env = "RAPPORT_BIND", default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
    },
    /// Apply database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let settings = Settings::from_env(cli.database_url.clone())?;
    match cli.command {
        Command::Serve { bind } => {
            let app = Application::build(settings, &cli.dir, bind).await?;
            let state = app.state().clone();
            let dir = cli.dir.clone();
            tokio::spawn(async move {
                let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                else {
                    return;
                };
                while hup.recv().await.is_some() {
                    match Site::load(&dir) {
                        Ok(site) => {
                            state.replace_site(site);
                            tracing::info!("reloaded campaigns.toml and templates");
                        }
                        Err(problems) => {
                            for p in &problems.0 {
                                tracing::error!(problem = %p, "reload rejected; keeping the running files");
                            }
                        }
                    }
                }
            });
            app.run_until(shutdown_signal())
                .await
                .context("server stopped with an error")?;
        }
        Command::Migrate => {
            let store = Store::connect(&settings.database_url).await?;
            store.migrate().await?;
            eprintln!(
                "migrations applied to {}",
                rapport::store::redact(&settings.database_url)
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
