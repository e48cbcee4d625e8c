//! How deep a TOML file nests its inline tables and arrays, read before it is parsed. The
//! toml parser stops at about 80 levels, but turning 60 nested `not = { … }` into rapport's
//! types recurses deeper than a 2 MiB thread stack allows (found by `tests/fuzz.rs`), which
//! aborts the process. No file a marketer writes needs more than [`MAX_TOML_NESTING`].

/// Nested inline tables and arrays a marketer's TOML file may hold (a segment at its
/// deepest allowed rule needs about 35).
pub const MAX_TOML_NESTING: usize = 40;

/// The byte offset of the first `{` or `[` that opens a level past [`MAX_TOML_NESTING`],
/// if any. Strings and comments are skipped; `[table]` headers are not nesting.
pub fn too_deep(source: &str) -> Option<usize> {
    let b = source.as_bytes();
    let mut depth = 0usize;
    let mut line_start = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => line_start = true,
            b' ' | b'\t' | b'\r' => {}
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                let triple = b[i..].starts_with(if c == b'"' { b"\"\"\"" } else { b"'''" });
                i += if triple { 3 } else { 1 };
                while i < b.len() {
                    if c == b'"' && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == c && (!triple || b[i..].starts_with(&[c, c, c])) {
                        i += if triple { 3 } else { 1 };
                        break;
                    }
                    if !triple && b[i] == b'\n' {
                        break;
                    }
                    i += 1;
                }
                line_start = false;
                continue;
            }
            b'[' if depth == 0 && line_start => {
                // A table header: `[rule]` or `[[campaign]]`, to the end of the line.
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_TOML_NESTING {
                    return Some(i);
                }
                line_start = false;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                line_start = false;
            }
            _ => line_start = false,
        }
        i += 1;
    }
    None
}

/// The located message for [`too_deep`]'s answer.
pub fn diagnostic(path: &std::path::Path, source: &str, at: usize) -> super::Diagnostic {
    super::Diagnostic::at(
        path,
        source,
        at,
        format!(
            "tables and arrays nest more than {MAX_TOML_NESTING} deep here; rapport reads no deeper (split the rule into segments)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_values_not_headers_strings_or_comments() {
        let ok =
            "[rule]\nall = [ { not = { field = \"a[{\", eq = '[[{' } } ] # [[[{{{\n[[campaign]]\n";
        assert_eq!(too_deep(ok), None);
        let deep = format!("[rule]\nnot = {}x{}", "{ not = ".repeat(45), "}".repeat(45));
        let at = too_deep(&deep).unwrap();
        assert_eq!(&deep[at..at + 1], "{");
        assert_eq!(deep[..at].matches('{').count(), MAX_TOML_NESTING);
        let s = format!(
            "a = \"\"\"{}\"\"\"\nb = '''{}'''",
            "[".repeat(99),
            "{".repeat(99)
        );
        assert_eq!(too_deep(&s), None);
    }
}
