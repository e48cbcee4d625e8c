//! What each command of the `rapport` binary does: the work, progress on stderr, results
//! on stdout, and the exit code. `main.rs` holds only the command line's definitions and
//! the dispatch to these.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Settings;
use crate::profile::Email;
use crate::report::Period;
use crate::site::Site;
use crate::store::Store;

/// Where `serve` listens unless told otherwise (and so the links `preview` shows).
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// The formats of `rapport preview`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PreviewFormat {
    Eml,
    Html,
    Text,
}

/// The CSV exports.
#[derive(Debug, Clone, Copy)]
pub enum Report {
    /// Response rates, grouped by `campaign`, `run` or `segment`.
    ResponseRates,
    Clicks,
    Feedback,
    Links,
    Optin,
    Deliverability,
}

/// What an export covers and where it goes.
#[derive(Debug, Clone, Default)]
pub struct ExportRange {
    /// First and last day included (YYYY-MM-DD, UTC).
    pub from: Option<String>,
    pub to: Option<String>,
    /// A file instead of stdout.
    pub output: Option<PathBuf>,
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

/// The project files, or an error that sends the user to `rapport check`.
pub fn load_site(dir: &Path) -> anyhow::Result<Site> {
    Site::load(dir)
        .map_err(|d| anyhow::anyhow!("the project files have problems (run rapport check):\n{d}"))
}

/// `rapport check`: every problem on its own line, exit 1 when there is any.
pub fn check(dir: &Path) -> ExitCode {
    let site = match Site::load_for_check(dir) {
        Ok(site) => site,
        Err(problems) => {
            for p in &problems.0 {
                println!("{p}");
            }
            eprintln!("{} problem(s) found", problems.0.len());
            return ExitCode::FAILURE;
        }
    };
    let (problems, warnings) = crate::mail::check(&site);
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() {
        eprintln!(
            "ok: {} campaign(s), {} segment(s), {} library item(s) checked; every campaign rendered for every sample person",
            site.campaigns.len(),
            site.segments.iter().count(),
            site.library.items().len()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{} problem(s) found", problems.len());
        ExitCode::FAILURE
    }
}

/// `rapport preview`: renders one campaign for one stored person, as it would be sent now.
pub async fn preview(
    dir: &Path,
    settings: &Settings,
    campaign_id: &str,
    email: &str,
    format: PreviewFormat,
) -> anyhow::Result<()> {
    let site = load_site(dir)?;
    let campaign = find_campaign(&site, campaign_id)?;
    let address = Email::parse(email).map_err(|e| anyhow::anyhow!("--email {email:?}: {e}"))?;
    let store = Store::open(&settings.database_url).await?;
    let profile = store.profile_by_email(&address).await?.with_context(|| {
        format!(
            "no profile with the address {address} in {}",
            crate::store::redact(&settings.database_url)
        )
    })?;
    let signer = crate::startup::signer(settings, &store).await?;
    // Links read as `serve` would write them: RAPPORT_PUBLIC_URL, or its bind address.
    let bind = std::env::var("RAPPORT_BIND").unwrap_or_else(|_| DEFAULT_BIND.into());
    let bind = bind
        .parse()
        .with_context(|| format!("RAPPORT_BIND={bind:?} is not host:port"))?;
    let public_url = settings.public_url_for(bind);
    let mailer = crate::mail::Mailer::new(signer, public_url);
    let now = crate::store::now();
    let (composed, rendered) =
        crate::mail::preview(&mailer, &store, &site, campaign, &profile, now).await?;
    let out = match format {
        PreviewFormat::Eml => String::from_utf8_lossy(&composed.message.formatted()).into_owned(),
        PreviewFormat::Html => rendered.html,
        PreviewFormat::Text => rendered.text,
    };
    print!("{out}");
    if profile.status != crate::profile::Status::Subscribed {
        eprintln!(
            "note: {address} is {}; rapport sends campaigns to subscribed profiles only",
            profile.status.as_str()
        );
    }
    Ok(())
}

/// `rapport run CAMPAIGN`: a new run now, queued before this returns.
pub async fn run(dir: &Path, settings: &Settings, campaign: &str) -> anyhow::Result<()> {
    let site = load_site(dir)?;
    let campaign = find_campaign(&site, campaign)?;
    let store = Store::open(&settings.database_url).await?;
    eprintln!(
        "queuing a new run of {} for audience \"{}\"...",
        campaign.id, campaign.audience
    );
    let queued = crate::schedule::manual_run(&store, &site, campaign).await?;
    println!(
        "queued run {} of {}: {} recipient(s)",
        queued.run_id, queued.campaign, queued.recipients
    );
    Ok(())
}

/// The campaign of that id, or an error listing the known ones.
fn find_campaign<'a>(site: &'a Site, id: &str) -> anyhow::Result<&'a crate::campaign::Campaign> {
    site.campaign(id).with_context(|| {
        let known: Vec<&str> = site.campaigns.iter().map(|c| c.id.as_str()).collect();
        format!("unknown campaign \"{id}\"; known: {}", known.join(", "))
    })
}

/// `rapport demo`: marked demo profiles and six months of history.
pub async fn demo(
    dir: &Path,
    settings: &Settings,
    profiles: usize,
    force: bool,
) -> anyhow::Result<()> {
    let site = load_site(dir)?;
    let store = Store::open(&settings.database_url).await?;
    eprintln!("writing {profiles} demo profiles and six months of newsletters...");
    let s = crate::demo::fill(&store, &site, profiles, force).await?;
    println!(
        "demo data: {} profiles (under demo.example), {} runs, {} events; open /admin to see them",
        s.profiles, s.runs, s.events
    );
    Ok(())
}

/// `rapport migrate`.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    Store::open(&settings.database_url).await?;
    eprintln!(
        "migrations applied to {}",
        crate::store::redact(&settings.database_url)
    );
    Ok(())
}

/// `rapport profile export EMAIL`: everything held about the address, as JSON on stdout.
pub async fn profile_export(settings: &Settings, email: &str) -> anyhow::Result<()> {
    let (store, profile) = person(settings, email).await?;
    let data = store.personal_data(&profile).await?;
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}

/// `rapport profile erase EMAIL`: erases the person (see `Store::erase`).
pub async fn profile_erase(settings: &Settings, email: &str) -> anyhow::Result<()> {
    let (store, profile) = person(settings, email).await?;
    store.erase(&profile).await?;
    eprintln!(
        "erased {}: address and answers removed, consent records deleted, counts kept; imports will skip it",
        profile.email
    );
    Ok(())
}

/// The store and the profile of `email`, or an error that says there is none.
async fn person(
    settings: &Settings,
    email: &str,
) -> anyhow::Result<(Store, crate::profile::Profile)> {
    let address = Email::parse(email).map_err(|e| anyhow::anyhow!("{email:?}: {e}"))?;
    let store = Store::open(&settings.database_url).await?;
    let profile = store.profile_by_email(&address).await?.with_context(|| {
        format!(
            "no profile with the address {address}; nothing is held about it (or it was erased)"
        )
    })?;
    Ok((store, profile))
}

/// `rapport import`: progress on stderr, one line per skipped row, exit 1 if any.
pub async fn import(
    dir: &Path,
    settings: &Settings,
    file: &Path,
    source: &str,
) -> anyhow::Result<ExitCode> {
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
    let report = crate::import::import_csv(
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
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `rapport export ...`: a CSV report (`by` for response rates: campaign, run or segment),
/// with a progress line on stderr.
pub async fn export(
    dir: &Path,
    settings: &Settings,
    report: Report,
    by: &str,
    range: &ExportRange,
) -> anyhow::Result<()> {
    use crate::report::GroupByArg;
    let site = load_site(dir)?;
    let store = Store::open(&settings.database_url).await?;
    let bar = indicatif::ProgressBar::new_spinner().with_message("counting in the database");
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let (rows, what) = match report {
        Report::ResponseRates => {
            let GroupByArg(by) = by.parse()?;
            let (period, out) = range.open()?;
            let n = crate::report::response_rates_csv(&store, &site, by, period, out, |n| {
                bar.set_message(format!("{n} row(s) written"))
            })
            .await?;
            (n, "response rates")
        }
        Report::Clicks => {
            let (period, out) = range.open()?;
            let n = crate::report::clicks_csv(&store, period, out, |n| {
                bar.set_message(format!("{n} click(s) written"))
            })
            .await?;
            (n, "clicks")
        }
        Report::Links => {
            let (period, out) = range.open()?;
            (
                crate::report::links_csv(&store, period, out).await?,
                "links",
            )
        }
        Report::Feedback => {
            let (period, out) = range.open()?;
            let n = crate::report::feedback_csv(&store, period, out, |n| {
                bar.set_message(format!("{n} vote(s) written"))
            })
            .await?;
            (n, "feedback")
        }
        Report::Deliverability => {
            let (period, out) = range.open()?;
            (
                crate::report::deliverability_csv(&store, period, out).await?,
                "receiving domain",
            )
        }
        Report::Optin => {
            let (period, out) = range.open()?;
            (
                crate::report::optin_csv(&store, &site, period, out).await?,
                "opt-in funnel",
            )
        }
    };
    bar.finish_and_clear();
    eprintln!("{what}: {rows} row(s) exported");
    Ok(())
}

/// `rapport bounces FILE...`: reads bounces, complaints and auto-replies from `.eml` files,
/// mbox files and Maildir folders, records what they report, and prints a count per
/// outcome. A file that cannot be read is named on stderr and makes the exit code 1; the
/// others are still read.
pub async fn bounces(
    dir: &Path,
    settings: &Settings,
    paths: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    use crate::bounce::{Intake, mailbox};
    let store = Store::open(&settings.database_url).await?;
    // What is recorded is told to the webhooks, as `serve` would.
    if let Ok(site) = crate::site::Site::load(dir) {
        store.set_hook_routes(crate::webhook::routes(&site.project));
    }
    let signer = crate::startup::signer(settings, &store).await?;
    let intake = Intake::new(store, signer, settings.soft_bounce_limit);
    let mut files = Vec::new();
    let mut failed = false;
    for p in paths {
        match mailbox::files(p) {
            Ok(f) => files.extend(f),
            Err(e) => {
                eprintln!("error: {}: {e}", p.display());
                failed = true;
            }
        }
    }
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for file in &files {
        bar.inc(1);
        let raw = match tokio::fs::read(file).await {
            Ok(raw) => raw,
            Err(e) => {
                bar.suspend(|| eprintln!("error: {}: {e}", file.display()));
                failed = true;
                continue;
            }
        };
        for found in mailbox::split(file, raw) {
            let outcome = intake.take(found.raw, &[]).await?;
            if outcome == crate::bounce::Outcome::Unreadable {
                bar.suspend(|| eprintln!("{}: not a readable mail message", found.origin));
            }
        }
    }
    bar.finish_and_clear();
    let mut total = 0;
    for (outcome, n) in intake.tally().counts() {
        total += n;
        println!("{:<13} {n}", outcome.as_str());
    }
    eprintln!("{total} message(s) read from {} file(s)", files.len());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `rapport token create NAME --scopes ...`: stores the hash of a new token and prints the
/// token (on stdout, alone, for scripts); it is never shown again.
pub async fn token_create(settings: &Settings, name: &str, scopes: &str) -> anyhow::Result<()> {
    let scopes = crate::access::parse_scopes(scopes).context("--scopes")?;
    let name = name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.len() <= 64 && !name.chars().any(char::is_control),
        "the token name must be 1 to 64 printable characters"
    );
    let store = Store::open(&settings.database_url).await?;
    let (token, hash) = crate::access::new_token();
    let list: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let created = store.create_api_token(name, &hash, &list.join(",")).await?;
    anyhow::ensure!(
        created,
        "a token called {name:?} exists; revoke it or choose another name"
    );
    println!("{token}");
    eprintln!(
        "token {name:?} created with {}; it is shown once: keep it now",
        list.join(", ")
    );
    Ok(())
}

/// `rapport token list`: one line per token, never the token itself.
pub async fn token_list(settings: &Settings) -> anyhow::Result<()> {
    let store = Store::open(&settings.database_url).await?;
    let day = |t: Option<i64>| {
        t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map_or("-".to_string(), |d| d.format("%Y-%m-%d %H:%M").to_string())
    };
    println!("name\tscopes\tcreated\tlast used\trevoked");
    for t in store.api_tokens().await? {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            t.name,
            t.scopes,
            day(Some(t.created_at)),
            day(t.last_used_at),
            day(t.revoked_at)
        );
    }
    Ok(())
}

/// `rapport webhooks failed`: one line per delivery given up, newest first.
pub async fn webhooks_failed(settings: &Settings) -> anyhow::Result<()> {
    let store = Store::open(&settings.database_url).await?;
    let failed = store.failed_hooks().await?;
    println!("id\tevent\ttype\tendpoint\tattempts\tqueued\tlast error");
    for h in &failed {
        let queued = chrono::DateTime::from_timestamp(h.created_at, 0)
            .map_or("-".to_string(), |d| d.format("%Y-%m-%d %H:%M").to_string());
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            h.id,
            h.event_id,
            h.kind,
            h.endpoint,
            h.attempts,
            queued,
            h.last_error.as_deref().unwrap_or("")
        );
    }
    eprintln!(
        "{} failed webhook deliveries; rapport webhooks retry ID sends one again",
        failed.len()
    );
    Ok(())
}

/// `rapport webhooks retry ID`: queues a failed delivery again; a running `serve` sends it
/// within a second.
pub async fn webhooks_retry(settings: &Settings, id: i64) -> anyhow::Result<()> {
    let store = Store::open(&settings.database_url).await?;
    anyhow::ensure!(
        store.retry_hook(id).await?,
        "no failed webhook delivery {id} (rapport webhooks failed lists them)"
    );
    eprintln!("webhook delivery {id} queued again");
    Ok(())
}

/// `rapport token revoke NAME`.
pub async fn token_revoke(settings: &Settings, name: &str) -> anyhow::Result<()> {
    let store = Store::open(&settings.database_url).await?;
    anyhow::ensure!(
        store.revoke_api_token(name.trim()).await?,
        "no live token called {name:?} (see rapport token list)"
    );
    eprintln!("token {name:?} revoked");
    Ok(())
}
