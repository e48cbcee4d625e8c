//! Form bodies (`application/x-www-form-urlencoded`) read strictly: the content type must
//! be exactly that (parameters such as `charset` allowed), and every name and value must
//! decode to UTF-8. `form_urlencoded::parse` would turn `%FF%FE` into `��` and store it;
//! here it is a 400 naming the field, as the CSV import refuses a file that is not UTF-8.

use percent_encoding::percent_decode;

/// Whether a `Content-Type` header value is a form post.
pub fn is_form(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// The (name, value) pairs of a form body, in order; an error names the first field that
/// is not text.
pub fn decode(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let text = |raw: &[u8]| -> Option<String> {
            let plus: Vec<u8> = raw
                .iter()
                .map(|b| if *b == b'+' { b' ' } else { *b })
                .collect();
            percent_decode(&plus)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        };
        let Some(name) = text(name) else {
            return Err(format!(
                "field number {} has a name that is not UTF-8 text",
                out.len() + 1
            ));
        };
        let Some(value) = text(value) else {
            let shown: String = name.chars().take(40).collect();
            return Err(format!(
                "the field \"{shown}\" is not UTF-8 text; send the form from a web page, or encode it as UTF-8"
            ));
        };
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_form_posts_are_forms() {
        assert!(is_form("application/x-www-form-urlencoded"));
        assert!(is_form("Application/X-WWW-Form-Urlencoded; charset=UTF-8"));
        assert!(!is_form("application/x-www-form-urlencodedXYZ"));
        assert!(!is_form("multipart/form-data"));
        assert!(!is_form(""));
    }

    #[test]
    fn decodes_like_browsers_send_and_refuses_what_is_not_text() {
        assert_eq!(
            decode(b"email=ann%40example.com&name=Ann+Lee&products=a&products=b&empty=&flag")
                .unwrap(),
            [
                ("email", "ann@example.com"),
                ("name", "Ann Lee"),
                ("products", "a"),
                ("products", "b"),
                ("empty", ""),
                ("flag", ""),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(decode(b"name=Jos%C3%A9").unwrap()[0].1, "José");
        let e = decode(b"name=x&email=%FF%FE@example.com").unwrap_err();
        assert!(e.contains("\"email\" is not UTF-8"), "{e}");
        assert!(decode(b"%FF=1").is_err());
        assert!(decode(b"name=\xff").is_err(), "raw bytes too");
    }
}
