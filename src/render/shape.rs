//! The text part of a campaign message, derived once per template shape instead of once
//! per recipient.
//!
//! Deriving the text part from each message's HTML (`html_to_text`) was a twelfth of the
//! CPU a send costs. Yet most of a message is the same for everyone who gets the same
//! sections: only the values written by data (`{{first_name}}`, `{{email}}`, the personal
//! links) and the tracked links differ. So campaign messages are rendered through a second
//! registry whose escape function wraps every value it writes in two Unicode
//! noncharacters (reserved for a program's internal use, never interchanged). Taking the
//! render apart gives the HTML as usual and its *shape*: the HTML with each value replaced
//! by a numbered placeholder. The shape's text is derived once and kept; a message's text
//! is that text with its links and values put back.
//!
//! The result is the same as deriving the text from the message's HTML, because a value
//! is only wrapped when it converts to itself wherever it lands: not empty, no whitespace
//! at its ends, no ASCII whitespace but single spaces, no ASCII control character, no
//! `script:`.
//! Values that do not qualify stay in the shape as they are (their messages are simply
//! less alike). Equal values share a placeholder, so an anchor whose text is its own URL
//! is still recognised; where a link's text would equal its URL only once filled in, the
//! message's text is derived from its HTML instead. What remains is contrived: a template
//! that puts data into an unquoted attribute, splices a `javascript:` URL together from
//! data, or writes out as a link's text a URL that its `href` builds partly from data: its
//! text part may then show that URL where the HTML-derived one would not.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// Opens a value written by data in a marked render.
const OPEN: char = '\u{FDD0}';
/// Closes it.
const CLOSE: char = '\u{FDD1}';

/// Bytes of shapes and texts kept at most; past it the cache starts again (a template whose
/// every message has its own shape gains nothing from it, and must not grow it without
/// bound). A newsletter with library items has a shape per selection of items, and the
/// first issue of a library gives a selection per combination of chosen topics, segments
/// and industry: hundreds of shapes of about 15 KB each. A count of 256 shapes thrashed
/// there (the cache was cleared before any shape came round again, BENCHMARKS.md, "The
/// library"); 32 MiB holds a couple of thousand.
const MAX_SHAPE_BYTES: usize = 32 << 20;

/// Whether a template's source can be rendered marked: it holds no marker character
/// itself, and no element whose text keeps markup or entities as written.
pub(super) fn template_allows(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    !src.contains([OPEN, CLOSE])
        && !["<pre", "<xmp", "<textarea", "<plaintext"]
            .iter()
            .any(|t| lower.contains(t))
}

/// What [`marking_escape`] needs to know of a byte, one bit per question, so that a value is
/// read once (every value a campaign message writes goes through it).
mod class {
    /// Written as an entity by Handlebars' HTML escaping: `<`, `>`, `"`, `&`, `'`, `=` and
    /// the backtick.
    pub const ESCAPED: u8 = 1;
    /// An ASCII control character (whitespace other than the space included): the value
    /// is not wrapped.
    pub const CONTROL: u8 = 2;
    /// The space: two in a row and the value is not wrapped.
    pub const SPACE: u8 = 4;
    /// A colon: after `script` the value is not wrapped.
    pub const COLON: u8 = 8;
    /// 0xEF, the first byte of a marker character's UTF-8.
    pub const MARKER_LEAD: u8 = 16;

    /// The bits of each byte.
    pub static OF: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = match b as u8 {
                b'<' | b'>' | b'"' | b'&' | b'\'' | b'`' | b'=' => ESCAPED,
                0..=0x1F | 0x7F => CONTROL,
                b' ' => SPACE,
                b':' => COLON,
                0xEF => MARKER_LEAD,
                _ => 0,
            };
            b += 1;
        }
        t
    };
}

/// The escape function of the marking registry: Handlebars' HTML escaping, the result
/// wrapped when the value qualifies (see the module). A marker character in the value
/// itself becomes U+FFFD, so that data can never open or close a value.
pub(super) fn marking_escape(value: &str) -> String {
    let seen = value
        .bytes()
        .fold(0, |seen, b| seen | class::OF[b as usize]);
    let cleaned;
    let value = if seen & class::MARKER_LEAD != 0 && value.contains([OPEN, CLOSE]) {
        cleaned = value.replace([OPEN, CLOSE], "\u{FFFD}");
        cleaned.as_str()
    } else {
        value
    };
    let wrap = qualifies(value, seen);
    let mut out = String::with_capacity(value.len() + 2 * OPEN.len_utf8());
    if wrap {
        out.push(OPEN);
    }
    if seen & class::ESCAPED != 0 {
        escape_into(&mut out, value);
    } else {
        out.push_str(value);
    }
    if wrap {
        out.push(CLOSE);
    }
    out
}

/// Handlebars' HTML escaping (`handlebars::html_escape`, the same entities) appended to
/// `out`, copying the runs between escaped bytes whole instead of char by char.
fn escape_into(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(at) = rest
        .bytes()
        .position(|b| class::OF[b as usize] & class::ESCAPED != 0)
    {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'&' => "&amp;",
            b'\'' => "&#x27;",
            b'`' => "&#x60;",
            _ => "&#x3D;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// Whether a value converts to text as itself wherever it lands in the HTML: not empty, no
/// whitespace at its ends, no ASCII whitespace but single spaces, no ASCII control
/// character, no `script:`. `seen` is the union of its bytes' classes: the double space
/// and `script:` are only looked for where a space or a colon is.
fn qualifies(value: &str, seen: u8) -> bool {
    if value.is_empty()
        || value.starts_with(char::is_whitespace)
        || value.ends_with(char::is_whitespace)
        || seen & class::CONTROL != 0
        || (seen & class::SPACE != 0 && value.contains("  "))
    {
        return false;
    }
    let bytes = value.as_bytes();
    seen & class::COLON == 0
        || !memchr::memchr_iter(b':', bytes)
            .any(|i| i >= 6 && bytes[i - 6..i].eq_ignore_ascii_case(b"script"))
}

/// A marked render taken apart.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Split {
    /// The HTML as an unmarked render writes it.
    pub html: String,
    /// The HTML with each value replaced by its placeholder.
    pub shape: String,
    /// The values (HTML-escaped), by placeholder number.
    pub values: Vec<String>,
}

/// Takes a marked render apart; `None` when its markers do not pair up (then
/// [`strip`] gives the HTML).
pub(super) fn split(marked: &str) -> Option<Split> {
    let mut html = String::with_capacity(marked.len());
    let mut shape = String::with_capacity(marked.len());
    let mut values: Vec<String> = Vec::new();
    let mut rest = marked;
    while let Some((at, OPEN)) = next_marker(rest) {
        let (before, from) = rest.split_at(at);
        let inner = &from[OPEN.len_utf8()..];
        let (end, CLOSE) = next_marker(inner)? else {
            return None;
        };
        let (value, tail) = inner.split_at(end);
        rest = &tail[CLOSE.len_utf8()..];
        html.push_str(before);
        html.push_str(value);
        shape.push_str(before);
        let n = match values.iter().position(|v| v == value) {
            Some(n) => n,
            None => {
                values.push(value.to_string());
                values.len() - 1
            }
        };
        shape.push(OPEN);
        let _ = write!(shape, "{n}");
        shape.push(CLOSE);
    }
    if next_marker(rest).is_some() {
        return None;
    }
    html.push_str(rest);
    shape.push_str(rest);
    Some(Split {
        html,
        shape,
        values,
    })
}

/// Where the next marker character is in `s`, and which. Marker characters are the only
/// ones encoded as EF B7 90 / EF B7 91, and EF is rare in HTML: memchr finds it.
fn next_marker(s: &str) -> Option<(usize, char)> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr(0xEF, &bytes[from..]) {
        let at = from + i;
        match bytes.get(at + 1..at + 3) {
            Some([0xB7, 0x90]) => return Some((at, OPEN)),
            Some([0xB7, 0x91]) => return Some((at, CLOSE)),
            _ => from = at + 1,
        }
    }
    None
}

/// A marked render with its markers removed.
pub(super) fn strip(marked: &str) -> String {
    marked.replace([OPEN, CLOSE], "")
}

/// The texts of the shapes met so far. Cleared with the templates on reload.
#[derive(Debug, Default)]
pub(super) struct ShapeTexts {
    texts: Mutex<Kept>,
}

/// The shapes and their texts, and the bytes they hold.
#[derive(Debug, Default)]
struct Kept {
    texts: HashMap<String, Arc<str>, foldhash::fast::RandomState>,
    bytes: usize,
}

impl ShapeTexts {
    /// The text of `shape` as `convert` makes it, derived once per shape.
    pub fn text_of(&self, shape: &str, convert: impl FnOnce(&str) -> String) -> Arc<str> {
        let lock = || self.texts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(text) = lock().texts.get(shape) {
            return text.clone();
        }
        let text: Arc<str> = convert(shape).into();
        let size = shape.len() + text.len();
        let mut kept = lock();
        if kept.bytes + size > MAX_SHAPE_BYTES {
            kept.texts.clear();
            kept.bytes = 0;
        }
        if kept.texts.insert(shape.to_string(), text.clone()).is_none() {
            kept.bytes += size;
        }
        text
    }

    /// How many shapes are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.texts.lock().unwrap().texts.len()
    }

    /// How many bytes of shapes and texts are kept.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.texts.lock().unwrap().bytes
    }
}

/// A shape's text with its values put back (entity-decoded, as the text of the HTML has
/// them); `None` where a value would have made a link's text equal its URL (see the
/// module), or a placeholder is not one of `values`.
pub(super) fn fill_values(text: &str, values: &[String]) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let inner = &rest[at + OPEN.len_utf8()..];
        let end = inner.find(CLOSE)?;
        let value = values.get(inner[..end].parse::<usize>().ok()?)?;
        rest = &inner[end + CLOSE.len_utf8()..];
        let value = html_escape::decode_html_entities(value);
        if rest.starts_with(')') && link_text_equals(&out, &value) {
            return None;
        }
        out.push_str(&value);
    }
    out.push_str(rest);
    Some(out)
}

/// Whether the text written so far ends with a link's text equal to `url`, about to be
/// followed by `url` in parentheses: the HTML's own text would hold the URL alone.
pub(super) fn link_text_equals(out: &str, url: &str) -> bool {
    out.strip_suffix(" (")
        .is_some_and(|before| before.ends_with(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(values: &[&str]) -> String {
        values.iter().map(|v| marking_escape(v)).collect()
    }

    /// A marked render's text both ways: from its shape, filled, and from its HTML.
    fn texts(marked: &str) -> (Option<String>, String) {
        let s = split(marked).unwrap();
        let filled = fill_values(&nanohtml2text::html2text(&s.shape), &s.values);
        (filled, nanohtml2text::html2text(&s.html))
    }

    /// The one-pass rules, as the rules were first written: a byte at a time.
    fn qualifies_as_written(value: &str) -> bool {
        if value.is_empty()
            || value.starts_with(char::is_whitespace)
            || value.ends_with(char::is_whitespace)
        {
            return false;
        }
        let bytes = value.as_bytes();
        let mut space = false;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b' ' if space => return false,
                b' ' => {
                    space = true;
                    continue;
                }
                0..=0x1F | 0x7F => return false,
                b':' if i >= 6 && bytes[i - 6..i].eq_ignore_ascii_case(b"script") => {
                    return false;
                }
                _ => {}
            }
            space = false;
        }
        true
    }

    proptest::proptest! {
        /// The escaping is Handlebars' own, and a value is wrapped exactly when the rules
        /// say so, for any value (markers, entities, spaces and `script:` made likely).
        #[test]
        fn escaping_and_wrapping_follow_the_rules(
            value in "([a-zA-Z ]|  |[<>\"&'`=:]|sCrIpt:|\u{FDD0}|\u{FDD1}|\u{F000}|\u{FFFD}|\t|\n|\u{A0}|é|😀){0,24}"
        ) {
            let cleaned = value.replace([OPEN, CLOSE], "\u{FFFD}");
            let wrap = qualifies_as_written(&cleaned);
            let escaped = handlebars::html_escape(&cleaned);
            let expected = if wrap { format!("{OPEN}{escaped}{CLOSE}") } else { escaped };
            proptest::prop_assert_eq!(marking_escape(&value), expected);
        }
    }

    #[test]
    fn only_values_that_convert_to_themselves_are_wrapped() {
        for v in [
            "Ann",
            "Ann Lee",
            "a<b> & \"c\"",
            "https://x.example/p?a=1&b=2",
        ] {
            assert!(marking_escape(v).starts_with(OPEN), "{v}");
        }
        for v in [
            "",
            " Ann",
            "Ann ",
            "Ann  Lee",
            "Ann\nLee",
            "a\tb",
            "javaScript:alert(1)",
            "\u{1}x",
        ] {
            assert!(!marking_escape(v).contains(OPEN), "{v:?}");
        }
        assert_eq!(
            marking_escape("x\u{FDD0}y\u{FDD1}"),
            format!("{OPEN}x\u{FFFD}y\u{FFFD}{CLOSE}"),
            "data cannot spell a marker"
        );
    }

    #[test]
    fn split_gives_the_html_and_a_shape_with_shared_placeholders() {
        let m = format!(
            "<p>{}</p><a href=\"{}\">{}</a>",
            marked(&["Ann & Co"]),
            marked(&["https://u"]),
            marked(&["https://u"])
        );
        let s = split(&m).unwrap();
        assert_eq!(
            s.html,
            "<p>Ann &amp; Co</p><a href=\"https://u\">https://u</a>"
        );
        assert_eq!(
            s.shape,
            format!("<p>{OPEN}0{CLOSE}</p><a href=\"{OPEN}1{CLOSE}\">{OPEN}1{CLOSE}</a>")
        );
        assert_eq!(s.values, vec!["Ann &amp; Co", "https://u"]);
        assert!(split(&format!("a{OPEN}b")).is_none());
        assert!(split(&format!("a{CLOSE}b")).is_none());
        assert_eq!(strip(&format!("a{OPEN}b{CLOSE}")), "ab");
    }

    #[test]
    fn filled_shape_text_matches_the_html_text() {
        let m = format!(
            "<p>Hello {},</p><p><a href=\"{}\">Profile</a> · {}</p>",
            marked(&["Ann <b>"]),
            marked(&["https://x.example/p/T"]),
            marked(&["ann@example.com"])
        );
        let (filled, text) = texts(&m);
        assert_eq!(filled.unwrap(), text);
    }

    #[test]
    fn a_link_whose_text_becomes_its_url_is_left_to_the_html() {
        let m = format!("<a href=\"{}\">https://u</a>", marked(&["https://u"]));
        assert_eq!(texts(&m).0, None);
    }

    #[test]
    fn the_cache_derives_each_shape_once_and_stays_bounded() {
        let texts = ShapeTexts::default();
        let mut calls = 0;
        for _ in 0..3 {
            texts.text_of("<p>a</p>", |s| {
                calls += 1;
                nanohtml2text::html2text(s)
            });
        }
        assert_eq!(calls, 1);
        let big = "x".repeat(1 << 20);
        for i in 0..40 {
            texts.text_of(&format!("<p>{i}{big}</p>"), nanohtml2text::html2text);
        }
        assert!(texts.bytes() <= MAX_SHAPE_BYTES);
    }
}
