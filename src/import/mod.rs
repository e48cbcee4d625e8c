//! `rapport import FILE.csv --source NAME`: brings an existing contact list in. Columns are
//! named by question key (`email` required). The file is streamed; rows are checked with the
//! same rules as the form, bad rows are reported as `FILE:LINE: message` and skipped while
//! the good ones are written in batches.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::Path;

use crate::profile::{Answers, Email, FORM_ERROR_KEY, Form, Purpose, Question};
use crate::store::{Store, StoreError};

/// Rows written per transaction.
const BATCH: usize = 2000;

/// An import that could not start or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    #[error(
        "{0}: the file is empty; the first line must name the columns, like email,name,employees"
    )]
    Empty(String),
    #[error(
        "{file}:1: unknown column(s) {unknown}; columns are question keys: {known}. Nothing was imported"
    )]
    UnknownColumns {
        file: String,
        unknown: String,
        known: String,
    },
    #[error(
        "{0}:1: no email column; the first line must name the columns and include email. Nothing was imported"
    )]
    NoEmail(String),
    #[error("{0}:1: column {1} appears twice. Nothing was imported")]
    RepeatedColumn(String, String),
    #[error("{0}:1: the header is not valid UTF-8; save the file as UTF-8. Nothing was imported")]
    HeaderEncoding(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows written (new profiles and updated ones).
    pub imported: u64,
    /// One `FILE:LINE: message` per skipped row.
    pub problems: Vec<String>,
}

fn key_hash(email: &Email) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    email.as_str().to_lowercase().hash(&mut h);
    h.finish()
}

/// Imports `path`, recording `source` with each row's consent. `progress` gets the bytes
/// read so far. Memory stays bounded by the batch, plus 16 bytes per address for finding
/// repeated addresses.
pub async fn import_csv(
    store: &Store,
    form: &Form,
    path: &Path,
    source: &str,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| ImportError::Io(name.clone(), e))?;
    import_reader(
        store,
        form,
        &name,
        std::io::BufReader::with_capacity(1 << 16, file),
        source,
        &mut progress,
    )
    .await
}

/// Imports CSV read from `input` (`name` is used in messages).
pub async fn import_reader<R: Read>(
    store: &Store,
    form: &Form,
    name: &str,
    input: R,
    source: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(input);
    let header = reader
        .byte_headers()
        .map_err(|e| ImportError::Io(name.to_string(), std::io::Error::other(e.to_string())))?
        .clone();
    if header.is_empty() || header.iter().all(|f| f.is_empty()) {
        return Err(ImportError::Empty(name.to_string()));
    }
    let mut columns = Vec::new();
    let mut unknown = Vec::new();
    for field in header.iter() {
        let text = std::str::from_utf8(field)
            .map_err(|_| ImportError::HeaderEncoding(name.to_string()))?;
        let text = text
            .trim()
            .trim_start_matches('\u{feff}')
            .to_ascii_lowercase();
        match Question::from_key(&text) {
            Some(q) if columns.contains(&q) => {
                return Err(ImportError::RepeatedColumn(name.to_string(), text));
            }
            Some(q) => columns.push(q),
            None => unknown.push(text),
        }
    }
    if !unknown.is_empty() {
        let known: Vec<_> = Question::ALL.iter().map(|q| q.key()).collect();
        return Err(ImportError::UnknownColumns {
            file: name.to_string(),
            unknown: unknown.join(", "),
            known: known.join(", "),
        });
    }
    if !columns.contains(&Question::Email) {
        return Err(ImportError::NoEmail(name.to_string()));
    }

    let check_suppressed = store.suppression_count().await? > 0;
    let mut report = ImportReport::default();
    let mut seen: HashMap<u64, u64> = HashMap::new();
    let mut batch: Vec<(Email, Answers)> = Vec::with_capacity(BATCH);
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line() + 1;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map_or(line, |p| p.line());
                report
                    .problems
                    .push(format!("{name}:{at}: {}", describe_csv_error(&e)));
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        match parse_row(form, &columns, &record) {
            Err(message) => report.problems.push(format!("{name}:{line}: {message}")),
            Ok((email, answers)) => {
                let h = key_hash(&email);
                if let Some(first) = seen.get(&h) {
                    report.problems.push(format!(
                        "{name}:{line}: {email} is already on line {first}; skipped"
                    ));
                    continue;
                }
                seen.insert(h, line);
                if check_suppressed && store.is_suppressed(&email).await? {
                    report.problems.push(format!(
                        "{name}:{line}: {email} was erased on request and is not imported again"
                    ));
                    continue;
                }
                batch.push((email, answers));
                if batch.len() >= BATCH {
                    report.imported += store.import_rows(&batch, source).await?;
                    batch.clear();
                    progress(reader.position().byte());
                }
            }
        }
    }
    if !batch.is_empty() {
        report.imported += store.import_rows(&batch, source).await?;
    }
    progress(reader.position().byte());
    Ok(report)
}

fn describe_csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("this row has {len} field(s) but the header names {expected_len}; skipped")
        }
        other => format!("{other:?}; skipped"),
    }
}

/// One row as an address and answers, or the message saying what is wrong with it.
fn parse_row(
    form: &Form,
    columns: &[Question],
    record: &csv::ByteRecord,
) -> Result<(Email, Answers), String> {
    let mut pairs = Vec::new();
    for (q, field) in columns.iter().zip(record.iter()) {
        let text = std::str::from_utf8(field)
            .map_err(|_| format!("the {} column is not valid UTF-8; skipped", q.key()))?;
        if *q == Question::Products {
            // Several products in one cell: separated by ; or |.
            pairs.extend(
                text.split([';', '|'])
                    .map(|p| (q.key().to_string(), p.to_string())),
            );
        } else {
            pairs.push((q.key().to_string(), text.to_string()));
        }
    }
    let sub = form.parse(&pairs, Purpose::ProfileCentre);
    if !sub.errors.is_empty() {
        let messages: Vec<String> = sub
            .errors
            .iter()
            .map(|(k, m)| {
                if k == FORM_ERROR_KEY {
                    m.clone()
                } else {
                    format!("{k}: {m}")
                }
            })
            .collect();
        return Err(format!("{}; skipped", messages.join("; ")));
    }
    let email = sub
        .email
        .ok_or_else(|| "email: the address is empty; skipped".to_string())?;
    Ok((email, sub.answers))
}
