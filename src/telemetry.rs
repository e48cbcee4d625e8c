//! Logging: `tracing` to stderr, human-readable by default, JSON lines on request
//! (`--log-format json` or `RAPPORT_LOG_FORMAT=json`); the filter comes from `RAPPORT_LOG`
//! (e.g. `rapport=debug,tower_http=debug`), default `info`.

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Installs the global subscriber; call once at start. Later calls do nothing.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RAPPORT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
