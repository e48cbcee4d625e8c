//! The `rapport` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rapport::config::Settings;
use rapport::report::Period;
use rapport::startup::Application;
use rapport::store::Store;
use rapport::telemetry::{self, LogFormat};
use rapport::web::Site;

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
/// Where `serve` listens unless told otherwise (and so the links `preview` shows).
const DEFAULT_BIND: &str = "127.0.0.1:8080";

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
        #[arg(long, env = "RAPPORT_BIND", default_value = DEFAULT_BIND)]
        bind: SocketAddr,
    },
    /// Validate campaigns.toml, segments/ and templates/, and render every campaign for a
    /// sample person of every segment. Exit 1 with `file:line:col: message` lines.
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
        format: PreviewFormat,
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
    /// Apply database migrations and exit.
    Migrate,
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
        range: ExportRange,
    },
    /// Every click: who clicked which link of which run, when.
    Clicks {
        #[command(flatten)]
        range: ExportRange,
    },
    /// The opt-in funnel per day.
    Optin {
        #[command(flatten)]
        range: ExportRange,
    },
}

/// The days an export covers and where it goes; the same for every export.
#[derive(Debug, clap::Args)]
struct ExportRange {
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

impl ExportRange {
    /// The period, and the output file (created) or stdout.
    fn open(&self) -> anyhow::Result<(Period, Box<dyn std::io::Write>)> {
        let period = Period::parse(self.from.as_deref(), self.to.as_deref())?;
        let out: Box<dyn std::io::Write> = match &self.output {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        Ok((period, out))
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum PreviewFormat {
    Eml,
    Html,
    Text,
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
            app.reload_on_sighup(cli.dir.clone());
            app.run_until(rapport::startup::shutdown_signal())
                .await
                .context("server stopped with an error")?;
        }
        Command::Check => return Ok(check(&cli.dir)),
        Command::Preview {
            campaign,
            email,
            format,
        } => {
            preview(&cli.dir, &settings, &campaign, &email, format).await?;
        }
        Command::Run { campaign } => {
            let site = load_site(&cli.dir)?;
            let campaign = site.campaign(&campaign).with_context(|| {
                let known: Vec<&str> = site.campaigns.iter().map(|c| c.id.as_str()).collect();
                format!(
                    "unknown campaign \"{campaign}\"; known: {}",
                    known.join(", ")
                )
            })?;
            let store = Store::open(&settings.database_url).await?;
            eprintln!(
                "queuing a new run of {} for audience \"{}\"...",
                campaign.id, campaign.audience
            );
            let queued = rapport::schedule::manual_run(&store, &site, campaign).await?;
            println!(
                "queued run {} of {}: {} recipient(s)",
                queued.run_id, queued.campaign, queued.recipients
            );
        }
        Command::Import { file, source } => {
            return import(&cli.dir, &settings, &file, &source).await;
        }
        Command::Demo { profiles, force } => {
            let site = load_site(&cli.dir)?;
            let store = Store::open(&settings.database_url).await?;
            eprintln!("writing {profiles} demo profiles and six months of newsletters...");
            let s = rapport::demo::fill(&store, &site, profiles, force).await?;
            println!(
                "demo data: {} profiles (under demo.example), {} runs, {} events; open /admin to see them",
                s.profiles, s.runs, s.events
            );
        }
        Command::Profile(cmd) => profile_command(&settings, cmd).await?,
        Command::Export(export) => export_report(&cli.dir, &settings, export).await?,
        Command::Migrate => {
            Store::open(&settings.database_url).await?;
            eprintln!(
                "migrations applied to {}",
                rapport::store::redact(&settings.database_url)
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The project files, or an error that sends the user to `rapport check`.
fn load_site(dir: &std::path::Path) -> anyhow::Result<Site> {
    Site::load(dir)
        .map_err(|d| anyhow::anyhow!("the project files have problems (run rapport check):\n{d}"))
}

/// `rapport check`: every problem on its own line, exit 1 when there is any.
fn check(dir: &std::path::Path) -> std::process::ExitCode {
    let site = match Site::load_for_check(dir) {
        Ok(site) => site,
        Err(problems) => {
            for p in &problems.0 {
                println!("{p}");
            }
            eprintln!("{} problem(s) found", problems.0.len());
            return std::process::ExitCode::FAILURE;
        }
    };
    let (problems, warnings) = rapport::site::check(&site);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() {
        eprintln!(
            "ok: {} campaign(s), {} segment(s) checked; every campaign rendered for every sample person",
            site.campaigns.len(),
            site.segments.iter().count()
        );
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s) found", problems.len());
        std::process::ExitCode::FAILURE
    }
}

/// `rapport preview`: renders one campaign for one stored person, as it would be sent now.
async fn preview(
    dir: &std::path::Path,
    settings: &Settings,
    campaign_id: &str,
    email: &str,
    format: PreviewFormat,
) -> anyhow::Result<()> {
    use rapport::profile::Email;
    let site = load_site(dir)?;
    let campaign = site.campaign(campaign_id).with_context(|| {
        let known: Vec<&str> = site.campaigns.iter().map(|c| c.id.as_str()).collect();
        format!(
            "unknown campaign \"{campaign_id}\"; known: {}",
            known.join(", ")
        )
    })?;
    let address = Email::parse(email).map_err(|e| anyhow::anyhow!("--email {email:?}: {e}"))?;
    let store = Store::open(&settings.database_url).await?;
    let profile = store.profile_by_email(&address).await?.with_context(|| {
        format!(
            "no profile with the address {address} in {}",
            rapport::store::redact(&settings.database_url)
        )
    })?;
    let signer = rapport::startup::signer(settings, &store).await?;
    // Links read as `serve` would write them: RAPPORT_PUBLIC_URL, or its bind address.
    let bind = std::env::var("RAPPORT_BIND").unwrap_or_else(|_| DEFAULT_BIND.into());
    let bind = bind
        .parse()
        .with_context(|| format!("RAPPORT_BIND={bind:?} is not host:port"))?;
    let public_url = settings.public_url_for(bind);
    let mailer = rapport::mail::Mailer::new(signer, public_url);
    let now = rapport::store::now();
    let (composed, rendered) =
        rapport::mail::preview(&mailer, &store, &site, campaign, &profile, now).await?;
    let out = match format {
        PreviewFormat::Eml => String::from_utf8_lossy(&composed.message.formatted()).into_owned(),
        PreviewFormat::Html => rendered.html,
        PreviewFormat::Text => rendered.text,
    };
    print!("{out}");
    if profile.status != rapport::profile::Status::Subscribed {
        eprintln!(
            "note: {address} is {}; rapport sends campaigns to subscribed profiles only",
            profile.status.as_str()
        );
    }
    Ok(())
}

/// `rapport profile export|erase EMAIL`.
async fn profile_command(settings: &Settings, cmd: ProfileCommand) -> anyhow::Result<()> {
    use rapport::profile::Email;
    let (ProfileCommand::Export { email } | ProfileCommand::Erase { email }) = &cmd;
    let address = Email::parse(email).map_err(|e| anyhow::anyhow!("{email:?}: {e}"))?;
    let store = Store::open(&settings.database_url).await?;
    let profile = store.profile_by_email(&address).await?.with_context(|| {
        format!(
            "no profile with the address {address}; nothing is held about it (or it was erased)"
        )
    })?;
    match cmd {
        ProfileCommand::Export { .. } => {
            let data = store.personal_data(&profile).await?;
            println!("{}", serde_json::to_string_pretty(&data)?);
        }
        ProfileCommand::Erase { .. } => {
            store.erase(&profile).await?;
            eprintln!(
                "erased {address}: address and answers removed, consent records deleted, counts kept; imports will skip it"
            );
        }
    }
    Ok(())
}

/// `rapport import`: progress on stderr, one line per skipped row, exit 1 if any.
async fn import(
    dir: &std::path::Path,
    settings: &Settings,
    file: &std::path::Path,
    source: &str,
) -> anyhow::Result<std::process::ExitCode> {
    let site = load_site(dir)?;
    let source = source.trim();
    anyhow::ensure!(
        !source.is_empty(),
        "--source needs a name for where the list comes from, like crm-2026"
    );
    let store = Store::open(&settings.database_url).await?;
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new(size).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {eta}")
            .expect("valid template"),
    );
    let report = rapport::import::import_csv(
        &store,
        &site.project.form,
        file,
        &format!("import:{source}"),
        |b| bar.set_position(b),
    )
    .await?;
    bar.finish_and_clear();
    for p in &report.problems {
        println!("{p}");
    }
    eprintln!(
        "imported {} row(s); {} row(s) skipped",
        report.imported,
        report.problems.len()
    );
    Ok(if report.problems.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// `rapport export ...`: a CSV report, with a progress line on stderr.
async fn export_report(
    dir: &std::path::Path,
    settings: &Settings,
    export: Export,
) -> anyhow::Result<()> {
    use rapport::report::GroupByArg;
    let site = load_site(dir)?;
    let store = Store::open(&settings.database_url).await?;
    let bar = indicatif::ProgressBar::new_spinner().with_message("counting in the database");
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let (rows, what) = match export {
        Export::ResponseRates { by, range } => {
            let GroupByArg(by) = by.parse()?;
            let (period, out) = range.open()?;
            let n = rapport::report::response_rates_csv(&store, &site, by, period, out, |n| {
                bar.set_message(format!("{n} row(s) written"))
            })
            .await?;
            (n, "response rates")
        }
        Export::Clicks { range } => {
            let (period, out) = range.open()?;
            let n = rapport::report::clicks_csv(&store, period, out, |n| {
                bar.set_message(format!("{n} click(s) written"))
            })
            .await?;
            (n, "clicks")
        }
        Export::Optin { range } => {
            let (period, out) = range.open()?;
            (
                rapport::report::optin_csv(&store, &site, period, out).await?,
                "opt-in funnel",
            )
        }
    };
    bar.finish_and_clear();
    eprintln!("{what}: {rows} row(s) exported");
    Ok(())
}
