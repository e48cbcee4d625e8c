//! Located problems in the marketer's files, printed as `file:line:col: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem at one place in one file. `check` prints every one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl Diagnostic {
    /// A problem at byte `offset` of `source` (1-based line and column, counted in characters).
    pub fn at(file: &Path, source: &str, offset: usize, message: impl Into<String>) -> Diagnostic {
        let (line, col) = line_col(source, offset);
        Diagnostic {
            file: file.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    /// The TOML parser's refusal of `toml`, which starts at byte `base` of `source`: at its
    /// place, on one line, in the marketer's words rather than Rust's. Every number the
    /// files hold is read as an `i64` and its range checked after, so "expected i64" is the
    /// one type name a message can carry.
    pub fn toml(file: &Path, source: &str, base: usize, e: &toml::de::Error) -> Diagnostic {
        let offset = base + e.span().map_or(0, |s| s.start);
        let message = e.message().trim().replace('\n', " ");
        let message = message.replace("expected i64", "expected a whole number");
        Diagnostic::at(file, source, offset, message)
    }

    /// A problem with a file as a whole (missing, unreadable): reported at 1:1.
    pub fn file(file: &Path, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_path_buf(),
            line: 1,
            col: 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// The 1-based line and column of byte `offset` in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// All the problems found while loading; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_columns_from_one() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 3));
        assert_eq!(line_col(src, 999), (3, 1));
    }
}
