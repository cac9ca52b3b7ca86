//! Which links of a message get a preview: bare `http(s)://` URLs outside code, in order, each
//! once, at most [`MAX_LINKS`]. A URL written in angle brackets (`<https://…>`) is shown as a
//! link but gets no preview, as on Discord.

use url::Url;

/// Most previews per message.
pub const MAX_LINKS: usize = 3;
/// Longest URL considered (longer ones are not previewed).
pub const MAX_URL_LEN: usize = 2048;

/// The URLs of `content` that get a preview.
pub fn extract(content: &str) -> Vec<Url> {
    let mut out: Vec<Url> = Vec::new();
    let bytes = content.as_bytes();
    let mut i = 0;
    while i < bytes.len() && out.len() < MAX_LINKS {
        // Code blocks and inline code are shown verbatim: no previews from inside them.
        if bytes[i] == b'`' {
            let fence = if content[i..].starts_with("```") {
                "```"
            } else {
                "`"
            };
            match content[i + fence.len()..].find(fence) {
                Some(end) => {
                    i += fence.len() + end + fence.len();
                    continue;
                }
                None => {
                    i += fence.len();
                    continue;
                }
            }
        }
        let rest = &content[i..];
        let starts = rest.starts_with("https://") || rest.starts_with("http://");
        let at_word_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if !(starts && at_word_start) {
            i += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let len = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`'))
            .unwrap_or(rest.len());
        let raw = trim_trailing(&rest[..len]);
        let suppressed = i > 0 && bytes[i - 1] == b'<' && rest[len..].starts_with('>');
        i += len.max(1);
        if suppressed || raw.len() > MAX_URL_LEN {
            continue;
        }
        if let Ok(url) = Url::parse(raw) {
            if url.host_str().is_some() && !out.contains(&url) {
                out.push(url);
            }
        }
    }
    out
}

/// A URL at the end of a sentence keeps its closing punctuation outside: `see https://x.y/a.`
/// links to `https://x.y/a`. A closing parenthesis stays when the URL opened one
/// (`https://en.wikipedia.org/wiki/Rust_(programming_language)`).
fn trim_trailing(mut s: &str) -> &str {
    loop {
        let Some(last) = s.chars().last() else {
            return s;
        };
        let drop = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' | '_' | '~' => true,
            ')' => s.matches('(').count() < s.matches(')').count(),
            ']' => s.matches('[').count() < s.matches(']').count(),
            _ => false,
        };
        if !drop {
            return s;
        }
        s = &s[..s.len() - last.len_utf8()];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(s: &str) -> Vec<String> {
        extract(s).into_iter().map(String::from).collect()
    }

    #[test]
    fn finds_bare_links_in_order_once() {
        assert_eq!(
            urls("see https://a.example/x, and http://b.example/y?z=1. https://a.example/x"),
            vec!["https://a.example/x", "http://b.example/y?z=1"]
        );
        assert_eq!(
            urls("(https://en.wikipedia.org/wiki/Rust_(programming_language))"),
            vec!["https://en.wikipedia.org/wiki/Rust_(programming_language)"]
        );
        assert_eq!(
            urls("é https://a.example/ü"),
            vec!["https://a.example/%C3%BC"]
        );
    }

    #[test]
    fn angle_brackets_and_code_suppress() {
        assert!(urls("<https://a.example/x>").is_empty());
        assert!(urls("`https://a.example/x`").is_empty());
        assert!(urls("```\nhttps://a.example/x\n```").is_empty());
        assert_eq!(
            urls("<https://a.example/x> but https://b.example/"),
            vec!["https://b.example/"]
        );
        // Unbalanced: only the bracket is missing, the link still gets a preview.
        assert_eq!(urls("<https://a.example/x"), vec!["https://a.example/x"]);
    }

    #[test]
    fn ignores_non_links_and_caps_the_count() {
        assert!(
            urls("ftp://a.example/ javascript:alert(1) xhttps://a.example https://").is_empty()
        );
        let many = (0..10)
            .map(|i| format!("https://h{i}.example/"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(extract(&many).len(), MAX_LINKS);
        let long = format!("https://a.example/{}", "x".repeat(MAX_URL_LEN));
        assert!(urls(&long).is_empty());
    }
}
