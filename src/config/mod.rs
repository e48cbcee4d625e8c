//! Configuration: the operator's settings (environment) and the marketer's files
//! (`campaigns.toml`), with problems reported as located diagnostics.

mod diagnostic;
mod nesting;
mod project;
mod settings;

pub use diagnostic::{Diagnostic, Diagnostics, line_col};
pub use nesting::{MAX_TOML_NESTING, diagnostic as too_deep_diagnostic, too_deep};
pub use project::{AfterToml, CAMPAIGNS_FILE, CampaignToml, Project, SectionToml, Sender};
pub use settings::{DomainRates, SettingError, Settings, parse_duration};

/// Reads one of the marketer's files (`campaigns.toml`, a segment, a template, a library
/// item) as text, without the byte-order mark some Windows editors put first: left in, it
/// would hide a library item's opening `+++` and start every message from a template with
/// an invisible character. The one way those files are read, so every one of them takes it.
pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
    let mut text = std::fs::read_to_string(path)?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}
