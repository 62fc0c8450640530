//! URLs without a URL crate: base URLs (the Admin API endpoint, token URIs) are checked once with
//! `http::Uri`, and request paths are built from percent-encoded segments, so no name can change
//! a path's shape.

use http::Uri;
use http::uri::{Authority, Scheme};

/// A checked base URL, `http(s)://host[:port][/path]`, that request paths are appended to.
#[derive(Debug, Clone)]
pub(crate) struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// The base's path without a trailing `/` (empty for the root).
    path: String,
}

impl BaseUrl {
    /// Checks `text`; the error says what is wrong, worded to follow the URL (`` `…` {why} ``).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let uri = parse_url(text)?;
        if uri.query().is_some() {
            return Err("must not have a query (`?…`)".to_owned());
        }
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            // parse_url only returns URLs that have both.
            return Err("must start with http:// or https://".to_owned());
        };
        let path = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Ok(Self {
            scheme,
            authority,
            path,
        })
    }

    /// `{base}/{segments}`, each segment percent-encoded ([`encode_segment`]); `None` when a
    /// segment is empty, `.` or `..`.
    pub(crate) fn join(&self, segments: &[&str]) -> Option<Uri> {
        let mut path = self.path.clone();
        for segment in segments {
            path.push('/');
            path.push_str(&encode_segment(segment)?);
        }
        if path.is_empty() {
            path.push('/');
        }
        // Every part was checked or encoded, so this cannot fail; `ok()` keeps it panic-free.
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .ok()
    }
}

/// Checks a whole URL (path and query allowed): `http://` or `https://`, a host, no user name or
/// password, no fragment. The error says what is wrong, worded to follow the URL.
pub(crate) fn parse_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("is not a valid URL ({e}); write it as https://host[:port][/path]"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".to_owned()),
    }
    let authority = uri.authority().ok_or_else(|| "has no host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("must not hold a user name or password".to_owned());
    }
    if authority.host().is_empty() {
        return Err("has no host".to_owned());
    }
    if text.contains('#') {
        return Err("must not have a fragment (`#…`)".to_owned());
    }
    Ok(uri)
}

/// `text` with any user name and password (`scheme://user:password@host`) replaced by `…`, so a
/// URL can be quoted in an error.
pub(crate) fn without_userinfo(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => format!("{}…{}", &text[..start], &text[start + at..]),
        None => text.to_owned(),
    }
}

/// One path segment, percent-encoded except for unreserved characters and `:`; `None` for an
/// empty, `.` or `..` segment, which a URL parser would drop or resolve.
pub(crate) fn encode_segment(segment: &str) -> Option<String> {
    if matches!(segment, "" | "." | "..") {
        return None;
    }
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        let table = [
            ("pg-1a2b", "pg-1a2b"),
            ("example.com:proj", "example.com:proj"),
            ("db:generateEphemeralCert", "db:generateEphemeralCert"),
            ("a/b", "a%2Fb"),
            ("a\\b", "a%5Cb"),
            ("x?y#z", "x%3Fy%23z"),
            ("%2e%2e", "%252e%252e"),
            ("sp ace", "sp%20ace"),
            ("nul\0", "nul%00"),
            ("é", "%C3%A9"),
            ("...", "..."),
        ];
        for (segment, encoded) in table {
            assert_eq!(encode_segment(segment).as_deref(), Some(encoded), "{segment:?}");
        }
        for segment in ["", ".", ".."] {
            assert_eq!(encode_segment(segment), None, "{segment:?}");
        }
    }

    #[test]
    fn joined_urls_keep_the_base_path_and_every_segment() {
        let table = [
            ("https://sql.test", "https://sql.test/a/b%2Fc"),
            ("https://sql.test/", "https://sql.test/a/b%2Fc"),
            (
                "http://127.0.0.1:8080/prefix/",
                "http://127.0.0.1:8080/prefix/a/b%2Fc",
            ),
            ("http://[::1]:9/p", "http://[::1]:9/p/a/b%2Fc"),
        ];
        for (base, joined) in table {
            let base = BaseUrl::parse(base).unwrap();
            assert_eq!(base.join(&["a", "b/c"]).unwrap().to_string(), joined);
        }
        let base = BaseUrl::parse("https://sql.test").unwrap();
        assert!(base.join(&["a", ".."]).is_none());
        assert_eq!(base.join(&[]).unwrap().to_string(), "https://sql.test/");
    }

    #[test]
    fn bad_base_urls_say_what_is_wrong() {
        let table = [
            ("127.0.0.1:8080", "must start with http:// or https://"),
            ("ftp://sql.test", "must start with http:// or https://"),
            ("sql.test", "must start with http:// or https://"),
            ("", "is not a valid URL"),
            ("https://sql test", "is not a valid URL"),
            ("https://", "is not a valid URL"),
            (
                "https://user:pw@sql.test",
                "must not hold a user name or password",
            ),
            ("https://sql.test/?x=1", "must not have a query"),
            ("https://sql.test/#frag", "must not have a fragment"),
            ("https://:443/", "has no host"),
        ];
        for (text, why) in table {
            let err = BaseUrl::parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn quoted_urls_hide_user_names_and_passwords() {
        let table = [
            ("https://user:s3cret@sql.test/x", "https://…@sql.test/x"),
            ("user:s3cret@sql.test", "…@sql.test"),
            ("https://sql.test/a@b", "https://sql.test/a@b"),
            ("https://sql.test", "https://sql.test"),
        ];
        for (text, shown) in table {
            assert_eq!(without_userinfo(text), shown);
        }
    }

    #[test]
    fn whole_urls_may_have_queries() {
        let uri = parse_url("http://metadata.test/token?scopes=a%20b").unwrap();
        assert_eq!(uri.query(), Some("scopes=a%20b"));
    }
}
