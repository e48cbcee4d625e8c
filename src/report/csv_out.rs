//! The one way rapport writes CSV. Spreadsheets run a cell that starts with `=`, `+`, `-`
//! or `@` (and some a tab or carriage return before one) as a formula, so an address like
//! `=cmd|'/Ccalc'!A0@example.com`, valid and stored as given, would run on the analyst's
//! machine. Every cell that starts with one of those characters is written with a `'` in
//! front (OWASP's rule for CSV injection); spreadsheets show it as text, and a reader
//! that wants the original removes the leading `'` from such cells.

use std::borrow::Cow;
use std::io::Write;

/// What a cell is written as: `'` + the cell when it could start a formula.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// A CSV writer whose every cell goes through [`neutralise`].
pub struct CsvOut<W: Write>(csv::Writer<W>);

impl<W: Write> CsvOut<W> {
    /// A writer with `header` as its first record.
    pub fn new(out: W, header: &[&str]) -> Result<CsvOut<W>, csv::Error> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(header)?;
        Ok(CsvOut(w))
    }

    /// Writes one record.
    pub fn row<I, S>(&mut self, cells: I) -> Result<(), csv::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.0.write_record(
            cells
                .into_iter()
                .map(|c| neutralise(c.as_ref()).into_owned()),
        )
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> Result<(), csv::Error> {
        Ok(self.0.flush()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_that_could_start_a_formula_are_written_as_text() {
        for bad in [
            "=1+1",
            "+1",
            "-1",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
            "=cmd|'/Ccalc'!A0@example.com",
        ] {
            assert_eq!(neutralise(bad), format!("'{bad}"));
        }
        for fine in ["a=1", "0.1250", "", "dana@example.com", "'quoted"] {
            assert_eq!(neutralise(fine), fine);
        }
        let mut out = Vec::new();
        let mut w = CsvOut::new(&mut out, &["a", "b"]).unwrap();
        w.row(["=HYPERLINK(\"x\")", "ok"]).unwrap();
        w.flush().unwrap();
        drop(w);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,b\n\"'=HYPERLINK(\"\"x\"\")\",ok\n"
        );
    }
}
