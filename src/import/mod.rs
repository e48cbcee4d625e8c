//! `rapport import FILE.csv --source NAME`: brings an existing contact list in. Columns are
//! named by question key (`email` required). The file is streamed; rows are checked with the
//! same rules as the form, bad rows are reported as `FILE:LINE: message` and skipped while
//! the good ones are written in batches.

use std::collections::HashMap;
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

/// Imports `path`, recording `source` with each row's consent. `progress` gets the bytes
/// read so far. Memory is bounded by the batch (and the list of skipped rows): repeated
/// addresses are found through the database, not a set of every address in memory.
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
                return Err(ImportError::RepeatedColumn(name.to_string(), shown(&text)));
            }
            Some(q) => columns.push(q),
            None => unknown.push(text),
        }
    }
    if !unknown.is_empty() {
        let known: Vec<_> = Question::ALL.iter().map(|q| q.key()).collect();
        return Err(ImportError::UnknownColumns {
            file: name.to_string(),
            unknown: listed(&unknown),
            known: known.join(", "),
        });
    }
    if !columns.contains(&Question::Email) {
        return Err(ImportError::NoEmail(name.to_string()));
    }

    let check_suppressed = store.suppression_count().await? > 0;
    let mut report = ImportReport::default();
    let import_id = uuid::Uuid::new_v4().simple().to_string();
    let mut problems: Vec<(u64, String)> = Vec::new();
    let mut batch: Vec<(Email, Answers, u64)> = Vec::with_capacity(BATCH);
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line() + 1;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map_or(line, |p| p.line());
                problems.push((at, format!("{name}:{at}: {}", describe_csv_error(&e))));
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        match parse_row(form, &columns, &record) {
            Err(message) => problems.push((line, format!("{name}:{line}: {message}"))),
            Ok((email, answers)) => {
                if check_suppressed && store.is_suppressed(&email).await? {
                    problems.push((
                        line,
                        format!(
                            "{name}:{line}: {email} was erased on request and is not imported again"
                        ),
                    ));
                    continue;
                }
                batch.push((email, answers, line));
                if batch.len() >= BATCH {
                    report.imported +=
                        write_batch(store, &import_id, name, source, &mut batch, &mut problems)
                            .await?;
                    progress(reader.position().byte());
                }
            }
        }
    }
    report.imported +=
        write_batch(store, &import_id, name, source, &mut batch, &mut problems).await?;
    store.import_done(&import_id).await?;
    progress(reader.position().byte());
    problems.sort_by_key(|(line, _)| *line);
    report.problems = problems.into_iter().map(|(_, m)| m).collect();
    Ok(report)
}

/// Writes a batch, leaving out (and reporting) addresses this import has seen before: on an
/// earlier line of this batch, or of an earlier one (the database remembers those).
async fn write_batch(
    store: &Store,
    import_id: &str,
    name: &str,
    source: &str,
    batch: &mut Vec<(Email, Answers, u64)>,
    problems: &mut Vec<(u64, String)>,
) -> Result<u64, ImportError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut first_in_batch: HashMap<String, u64> = HashMap::new();
    let mut keep = vec![true; batch.len()];
    for (i, (email, _, line)) in batch.iter().enumerate() {
        let key = email.key();
        if let Some(first) = first_in_batch.get(&key) {
            problems.push((
                *line,
                format!("{name}:{line}: {email} is already on line {first}; skipped"),
            ));
            keep[i] = false;
        } else {
            first_in_batch.insert(key, *line);
        }
    }
    let candidates: Vec<usize> = (0..batch.len()).filter(|i| keep[*i]).collect();
    let seen_rows: Vec<(&Email, u64)> = candidates
        .iter()
        .map(|i| (&batch[*i].0, batch[*i].2))
        .collect();
    for (j, first) in store.import_seen(import_id, &seen_rows).await? {
        let i = candidates[j];
        let (email, _, line) = &batch[i];
        problems.push((
            *line,
            format!("{name}:{line}: {email} is already on line {first}; skipped"),
        ));
        keep[i] = false;
    }
    let rows: Vec<(Email, Answers)> = batch
        .drain(..)
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|((e, a, _), _)| (e, a))
        .collect();
    Ok(store.import_rows(&rows, source).await?)
}

/// A cell as echoed in a message: at most 60 characters (a header of 50 MB is not written
/// back whole into the error).
fn shown(text: &str) -> String {
    const MAX: usize = 60;
    let count = text.chars().count();
    if count <= MAX {
        return text.to_string();
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head}… ({count} characters)")
}

/// Names as echoed in a message: the first ten, each [`shown`], and how many more.
fn listed(names: &[String]) -> String {
    let mut out: Vec<String> = names.iter().take(10).map(|n| shown(n)).collect();
    if names.len() > 10 {
        out.push(format!("and {} more", names.len() - 10));
    }
    out.join(", ")
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
        if q.kind() == crate::profile::Kind::MultiChoice {
            // Several products or topics in one cell: separated by ; or |.
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
                // The form's sentences end in a full stop; here they are joined in one line.
                let m = m.strip_suffix('.').unwrap_or(m);
                if k == FORM_ERROR_KEY {
                    m.to_string()
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
