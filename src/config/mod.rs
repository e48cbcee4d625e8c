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
