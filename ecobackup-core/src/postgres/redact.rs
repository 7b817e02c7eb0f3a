//! Connection strings fit for messages and logs: the password removed, whatever the form.

/// A connection string fit for messages and logs: the password removed from a URL
/// (`postgres://user:secret@host/db` → `postgres://user@host/db`, and `?password=`) or from a
/// `key=value` string (`password=secret`).
pub fn redact_url(url: &str) -> String {
    match url.find("://") {
        Some(scheme_end) => redact_uri(url, scheme_end + 3),
        None => redact_key_values(url),
    }
}

fn redact_uri(url: &str, rest_start: usize) -> String {
    let rest = &url[rest_start..];
    // The user info ends at an `@`: libpq takes the first one before any `/`, so a raw `?`
    // in a password is part of it; a raw `/` or `@` in a password must not make us print it
    // either, so the last `@` before the query (or before the first `/`) ends it.
    let slash = rest.find('/').unwrap_or(rest.len());
    let at = rest[..slash].rfind('@').or_else(|| {
        let query_start = rest.find('?').unwrap_or(rest.len());
        rest[..query_start].rfind('@')
    });
    let (host_part, rest) = match at {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            (format!("{user}@"), &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    let query_start = rest.find('?').unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_start);
    let host_part = format!("{host_part}{before_query}");
    let query = match query.strip_prefix('?') {
        Some(params) => {
            let kept: Vec<&str> = params
                .split('&')
                .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
                .collect();
            if kept.is_empty() {
                String::new()
            } else {
                format!("?{}", kept.join("&"))
            }
        }
        None => String::new(),
    };
    format!("{}{host_part}{query}", &url[..rest_start])
}

fn redact_key_values(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        // At the start of a key?
        let at_key_start = i == 0 || chars[i - 1].is_whitespace();
        if at_key_start
            && chars[i..]
                .iter()
                .take(8)
                .collect::<String>()
                .eq_ignore_ascii_case("password")
        {
            let mut j = i + 8;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if j < chars.len() && chars[j] == '=' {
                j += 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if j < chars.len() && chars[j] == '\'' {
                    j += 1;
                    while j < chars.len() && chars[j] != '\'' {
                        if chars[j] == '\\' {
                            j += 1;
                        }
                        j += 1;
                    }
                    j += 1;
                } else {
                    while j < chars.len() && !chars[j].is_whitespace() {
                        j += 1;
                    }
                }
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                i = j.min(chars.len());
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out.trim_end().to_owned()
}
