//! Messages from files, for `rapport bounces FILE...`: a single message (`.eml`), an mbox
//! file (messages after `From ` lines, `>From ` unquoted as mboxrd writes it), a Maildir
//! (its `cur/` and `new/` folders) or a folder of message files.

use std::path::{Path, PathBuf};

/// One message read from a file: where it came from (for errors) and its bytes.
#[derive(Debug)]
pub struct Found {
    pub origin: String,
    pub raw: Vec<u8>,
}

/// The message files under `path`: the file itself, or the files of a Maildir's `cur/` and
/// `new/`, or of a plain folder, in name order (hidden files and `tmp/` left out).
pub fn files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        std::fs::metadata(path)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let maildir = path.join("cur").is_dir() || path.join("new").is_dir();
    let folders = if maildir {
        vec![path.join("cur"), path.join("new")]
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for folder in folders.into_iter().filter(|f| f.is_dir()) {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if entry.file_type()?.is_file() && !hidden {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The messages in one file's bytes: several when it is an mbox file (it starts with a
/// `From ` line), else the whole file.
pub fn split(origin: &Path, raw: Vec<u8>) -> Vec<Found> {
    if !raw.starts_with(b"From ") {
        return vec![Found {
            origin: origin.display().to_string(),
            raw,
        }];
    }
    let mut starts = vec![0];
    starts.extend(memchr::memmem::find_iter(&raw, b"\nFrom ").map(|i| i + 1));
    starts.push(raw.len());
    starts
        .windows(2)
        .enumerate()
        .map(|(n, w)| {
            let chunk = &raw[w[0]..w[1]];
            let body = chunk
                .iter()
                .position(|b| *b == b'\n')
                .map_or(&chunk[chunk.len()..], |i| &chunk[i + 1..]);
            Found {
                origin: format!("{} (message {})", origin.display(), n + 1),
                raw: unquote_from(body),
            }
        })
        .collect()
}

/// mboxrd's quoting: a body line `>From ` (with any number of `>`) loses one `>`.
fn unquote_from(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|b| *b == b'\n') {
        let quoted = line.iter().take_while(|b| **b == b'>').count();
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mbox_file_is_split_at_its_from_lines() {
        let mbox = b"From MAILER-DAEMON Mon Dec  1 10:00:00 2026\nSubject: one\n\n>From the start\nbody\n\nFrom x@y Tue Dec  2 10:00:00 2026\nSubject: two\n\nhi\n".to_vec();
        let found = split(Path::new("box"), mbox);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].raw, b"Subject: one\n\nFrom the start\nbody\n\n");
        assert_eq!(found[1].raw, b"Subject: two\n\nhi\n");
        assert_eq!(found[1].origin, "box (message 2)");
        let single = split(Path::new("a.eml"), b"Subject: x\n\nFrom here\n".to_vec());
        assert_eq!(single.len(), 1);
    }
}
