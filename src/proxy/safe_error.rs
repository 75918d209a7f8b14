//! Errors as logged: kind, source and a short context, never upstream bytes.

use pingora_error::Error;

/// An error for logs: its kind, source and short context, never the raw
/// upstream bytes Pingora puts in some contexts (`buf: ...`, header values),
/// at most a few hundred bytes.
pub struct SafeError<'a>(pub &'a Error);

impl std::fmt::Display for SafeError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut e = self.0;
        for depth in 0..4 {
            if depth > 0 {
                f.write_str(" cause: ")?;
            }
            write!(f, "{} {}", e.esource().as_str(), e.etype().as_str())?;
            if let Some(c) = e.context.as_ref() {
                f.write_str(" context: ")?;
                write_safe_context(f, c.as_str())?;
            }
            match e.cause.as_ref() {
                Some(c) => match c.downcast_ref::<Box<Error>>() {
                    Some(inner) => e = inner,
                    None => {
                        f.write_str(" cause: ")?;
                        let text = c.to_string();
                        return write_safe_context(f, &text);
                    }
                },
                None => return Ok(()),
            }
        }
        Ok(())
    }
}

/// Writes a context string up to the first place upstream bytes can start
/// (`buf:`, `value:`), printable ASCII only, at most 120 bytes.
fn write_safe_context(f: &mut std::fmt::Formatter<'_>, c: &str) -> std::fmt::Result {
    let mut end = c.len();
    for marker in ["buf:", "value:", "Cookie", "cookie", "Bearer", "bearer"] {
        if let Some(i) = c.find(marker) {
            end = end.min(
                i + if marker.ends_with(':') {
                    marker.len()
                } else {
                    0
                },
            );
        }
    }
    let cut = end < c.len();
    for (n, ch) in c[..end].chars().enumerate() {
        if n >= 120 {
            return f.write_str("…");
        }
        let ch = if ch.is_ascii_graphic() || ch == ' ' {
            ch
        } else {
            '?'
        };
        write!(f, "{ch}")?;
    }
    if cut {
        f.write_str(" (upstream bytes withheld)")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_error::ErrorType;

    #[test]
    fn errors_are_logged_without_upstream_bytes() {
        let inner = Error::explain(
            ErrorType::InvalidHTTPHeader,
            "buf: HTTP/1.1 200 OK\\r\\nSet-Cookie: sid=SECRET",
        );
        let e = Error::because(ErrorType::InvalidHTTPHeader, "while reading", inner).into_up();
        let text = SafeError(&e).to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("InvalidHTTPHeader"), "{text}");
        assert!(text.contains("withheld"), "{text}");
        let e = Error::explain(
            ErrorType::InvalidHTTPHeader,
            format!("invalid Content-Length header value: {}", "9".repeat(5000)),
        );
        let text = SafeError(&e).to_string();
        assert!(!text.contains("999"), "{text}");
    }

    proptest::proptest! {
        #[test]
        fn safe_errors_are_short_and_never_carry_what_follows_buf(
            prefix in "[ -~]{0,300}",
            secret in "[A-Za-z0-9]{8,40}",
            depth in 1usize..6,
        ) {
            let mut e = Error::explain(ErrorType::InvalidHTTPHeader, format!("{prefix}buf: {secret}"));
            for _ in 1..depth {
                e = Error::because(ErrorType::ReadError, format!("{prefix}buf: {secret}"), e);
            }
            let text = SafeError(&e).to_string();
            proptest::prop_assert!(text.len() <= 1024, "{} bytes", text.len());
            let leaked = format!("buf: {secret}");
            proptest::prop_assert!(!text.contains(&leaked));
        }
    }
}
