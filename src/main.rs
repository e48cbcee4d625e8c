//! The `rapport` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rapport::cli::{self, Report};
use rapport::config::Settings;
use rapport::startup::Application;
use rapport::telemetry::{self, LogFormat};

/// jemalloc instead of glibc's malloc: rows are allocated on SQLite's connection threads and
/// freed on the runtime's, and glibc's arenas serialise those frees behind a lock (sends
/// +8 %, clicks +10 %; BENCHMARKS.md). mimalloc was faster still but held 20 MB more.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at start: two arenas (two cores are the usual machine), and
/// freed pages go back to the system after a second instead of ten.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8] = b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// rapport: self-hosted relationship marketing (opt-in, profiles, campaigns, tracking).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Folder holding campaigns.toml, segments/, templates/ and content/ (the library).
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
        #[arg(long, env = "RAPPORT_BIND", default_value = cli::DEFAULT_BIND)]
        bind: SocketAddr,
    },
    /// Validate campaigns.toml, segments/, templates/ and the library's content/*.md, and
    /// render every campaign for a sample person of every segment. Exit 1 with
    /// `file:line:col: message` lines.
    Check,
    /// Show exactly what one stored person would receive from a campaign now.
    Preview {
        /// Campaign id from campaigns.toml.
        campaign: String,
        /// The person's address.
        #[arg(long)]
        email: String,
        /// What to print: the whole message, its HTML part or its text part.
        #[arg(long, value_enum, default_value = "eml")]
        format: cli::PreviewFormat,
    },
    /// Start a new run of a campaign now (a manual send; each call is a new run) and wait
    /// until it is queued; a running `serve` sends it.
    Run {
        /// Campaign id from campaigns.toml.
        campaign: String,
    },
    /// Bring in an existing list: columns named by question key, email required; new
    /// addresses become subscribed with an `imported` consent record from SOURCE.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Where the list comes from (kept with each consent record), e.g. crm-2026.
        #[arg(long)]
        source: String,
    },
    /// Fill the store with clearly marked demo profiles and six months of history, so the
    /// dashboard and exports show a living programme (refuses a store with real profiles).
    Demo {
        /// How many demo profiles.
        #[arg(long, default_value_t = 300)]
        profiles: usize,
        /// Write demo data even though the store holds other profiles.
        #[arg(long)]
        force: bool,
    },
    /// A person's data: everything held about them, or erasure on request.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Write a report as CSV (to stdout, or -o FILE).
    #[command(subcommand)]
    Export(Export),
    /// Read bounces and complaints from .eml files, mbox files or Maildir folders, and
    /// record them (the same as the SMTP listener of `serve` does).
    Bounces {
        /// Message files, mbox files or Maildir folders.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// API tokens: create (printed once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Webhook deliveries that were given up: list them, send one again.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Apply database migrations and exit.
    Migrate,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// A new token for the API, printed once (only its hash is kept).
    Create {
        /// A name to list and revoke it by (e.g. the system that uses it: shop, crm).
        name: String,
        /// What it may do: profiles:read, profiles:write, events:write, campaigns:run,
        /// reports:read (comma-separated).
        #[arg(long, required = true)]
        scopes: String,
    },
    /// Every token: name, scopes, created, last used, revoked.
    List,
    /// Revoke a token by name: requests with it get 401 from now on.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Every delivery kept as failed (no 2xx answer within 24 hours of retries): id,
    /// endpoint, type, attempts, last error.
    Failed,
    /// Queue a failed delivery again now (with a new 24-hour retry window).
    Retry { id: i64 },
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Print everything held about the address as JSON: profile, consents, events.
    Export { email: String },
    /// Erase the person: address and answers removed, consents deleted, aggregates kept,
    /// and the address suppressed so that an import cannot bring it back.
    Erase { email: String },
}

#[derive(Debug, Subcommand)]
enum Export {
    /// Response rates per campaign, run or segment.
    ResponseRates {
        /// One row per campaign, per run, or per campaign and segment.
        #[arg(long, default_value = "campaign")]
        by: String,
        #[command(flatten)]
        range: Range,
    },
    /// Every click: who clicked which link of which run, when.
    Clicks {
        #[command(flatten)]
        range: Range,
    },
    /// Per run and link: how many of the run's messages a person clicked it in.
    Links {
        #[command(flatten)]
        range: Range,
    },
    /// The "was this useful?" votes that count (a person's last per message) with comments.
    Feedback {
        #[command(flatten)]
        range: Range,
    },
    /// Per receiving domain: sent, delivered, bounced (hard, soft), complaints.
    Deliverability {
        #[command(flatten)]
        range: Range,
    },
    /// The opt-in funnel per day.
    Optin {
        #[command(flatten)]
        range: Range,
    },
}

/// The days an export covers and where it goes; the same for every export.
#[derive(Debug, clap::Args)]
struct Range {
    /// First day included (YYYY-MM-DD, UTC).
    #[arg(long)]
    from: Option<String>,
    /// Last day included (YYYY-MM-DD, UTC).
    #[arg(long)]
    to: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
}

impl From<Range> for cli::ExportRange {
    fn from(r: Range) -> cli::ExportRange {
        cli::ExportRange {
            from: r.from,
            to: r.to,
            output: r.output,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env(cli.database_url.clone())?;
    let dir = &cli.dir;
    match cli.command {
        Command::Serve { bind } => {
            let app = Application::build(settings, dir, bind).await?;
            app.reload_on_sighup(dir.clone());
            app.run_until(rapport::startup::shutdown_signal())
                .await
                .context("server stopped with an error")?;
        }
        Command::Check => return Ok(cli::check(dir)),
        Command::Preview {
            campaign,
            email,
            format,
        } => cli::preview(dir, &settings, &campaign, &email, format).await?,
        Command::Run { campaign } => cli::run(dir, &settings, &campaign).await?,
        Command::Import { file, source } => {
            return cli::import(dir, &settings, &file, &source).await;
        }
        Command::Demo { profiles, force } => cli::demo(dir, &settings, profiles, force).await?,
        Command::Profile(ProfileCommand::Export { email }) => {
            cli::profile_export(&settings, &email).await?
        }
        Command::Profile(ProfileCommand::Erase { email }) => {
            cli::profile_erase(&settings, &email).await?
        }
        Command::Export(Export::ResponseRates { by, range }) => {
            cli::export(dir, &settings, Report::ResponseRates, &by, &range.into()).await?
        }
        Command::Export(Export::Clicks { range }) => {
            cli::export(dir, &settings, Report::Clicks, "", &range.into()).await?
        }
        Command::Export(Export::Links { range }) => {
            cli::export(dir, &settings, Report::Links, "", &range.into()).await?
        }
        Command::Export(Export::Feedback { range }) => {
            cli::export(dir, &settings, Report::Feedback, "", &range.into()).await?
        }
        Command::Export(Export::Deliverability { range }) => {
            cli::export(dir, &settings, Report::Deliverability, "", &range.into()).await?
        }
        Command::Export(Export::Optin { range }) => {
            cli::export(dir, &settings, Report::Optin, "", &range.into()).await?
        }
        Command::Bounces { files } => return cli::bounces(dir, &settings, &files).await,
        Command::Webhooks(WebhooksCommand::Failed) => cli::webhooks_failed(&settings).await?,
        Command::Webhooks(WebhooksCommand::Retry { id }) => {
            cli::webhooks_retry(&settings, id).await?
        }
        Command::Token(TokenCommand::Create { name, scopes }) => {
            cli::token_create(&settings, &name, &scopes).await?
        }
        Command::Token(TokenCommand::List) => cli::token_list(&settings).await?,
        Command::Token(TokenCommand::Revoke { name }) => {
            cli::token_revoke(&settings, &name).await?
        }
        Command::Migrate => cli::migrate(&settings).await?,
    }
    Ok(ExitCode::SUCCESS)
}
