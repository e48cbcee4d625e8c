//! Configuration: the operator's settings (environment) and the marketer's files
//! (`campaigns.toml`), with problems reported as located diagnostics.

mod diagnostic;
mod project;
mod settings;

pub use diagnostic::{Diagnostic, Diagnostics, line_col};
pub use project::{AfterToml, CAMPAIGNS_FILE, CampaignToml, Project, SectionToml, Sender};
pub use settings::{SettingError, Settings, parse_duration};
