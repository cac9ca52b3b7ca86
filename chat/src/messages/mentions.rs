//! Mention syntax in message content: `<@USER_ID>` (or `<@!USER_ID>`), `<@&ROLE_ID>`, and
//! `@everyone` / `@here`. Parsing is pure; resolving against the server happens on send.
//!
//! The rules, shared with the web client's renderer (`web/js/markdown.js`):
//! - `@everyone` and `@here` count only as whole words: not inside an address such as
//!   `team@here.example`, not as the start of `@everyones`;
//! - nothing inside inline code (`` `…` `` on one line) or a fenced block (```` ```…``` ````)
//!   mentions anyone, so pasting a token in code is safe;
//! - `<#CHANNEL_ID>` is a link to a channel, never a notification: it is not parsed here.

use crate::{RoleId, Snowflake, UserId};

#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub users: Vec<UserId>,
    pub roles: Vec<RoleId>,
    pub everyone: bool,
}

impl Parsed {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.roles.is_empty() && !self.everyone
    }
}

/// Most distinct mentions kept per message.
const MAX: usize = 50;

/// Whether `b` continues a word (so `@everyone` touching it is not the keyword).
fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-' || b >= 0x80
}

/// Where the code span starting at `i` (a backtick) ends, past its closing backticks; `None`
/// when it is not closed (then the backtick is plain text, as the renderer shows it).
fn code_span_end(content: &str, i: usize) -> Option<usize> {
    let rest = &content[i..];
    if let Some(inner) = rest.strip_prefix("```") {
        return inner.find("```").map(|e| i + 3 + e + 3);
    }
    let line_end = rest[1..].find('\n').map_or(rest.len(), |e| e + 1);
    rest[1..line_end]
        .find('`')
        .filter(|&e| e > 0)
        .map(|e| i + 1 + e + 1)
}

pub fn parse(content: &str) -> Parsed {
    let mut p = Parsed::default();
    let bytes = content.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' {
            if let Some(end) = code_span_end(content, i) {
                i = end;
                continue;
            }
        }
        if bytes[i] == b'<' && bytes.get(i + 1) == Some(&b'@') {
            let mut j = i + 2;
            let role = bytes.get(j) == Some(&b'&');
            if role || bytes.get(j) == Some(&b'!') {
                j += 1;
            }
            let start = j;
            while j < bytes.len() && bytes[j].is_ascii_digit() && j - start < 20 {
                j += 1;
            }
            if j > start && bytes.get(j) == Some(&b'>') {
                if let Ok(id) = content[start..j].parse::<Snowflake>() {
                    if role {
                        push_new(&mut p.roles, RoleId::new(id));
                    } else {
                        push_new(&mut p.users, UserId::new(id));
                    }
                }
                i = j + 1;
                continue;
            }
        }
        if bytes[i] == b'@' && (i == 0 || !word_byte(bytes[i - 1])) {
            let rest = &content[i + 1..];
            for word in ["everyone", "here"] {
                let after = rest.as_bytes().get(word.len()).copied();
                if rest.starts_with(word) && !after.is_some_and(word_byte) {
                    p.everyone = true;
                }
            }
        }
        i += 1;
    }
    p
}

/// Adds an id not yet in the list, up to `MAX` ids.
fn push_new<T: PartialEq>(list: &mut Vec<T>, id: T) {
    if !list.contains(&id) && list.len() < MAX {
        list.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_roles_everyone_and_ignores_junk() {
        let p = parse(
            "hi <@123> and <@!123> <@&45> @everyone <@abc> <@> <@&> <@999999999999999999999999>",
        );
        assert_eq!(p.users, vec![UserId::new(Snowflake(123))]);
        assert_eq!(p.roles, vec![RoleId::new(Snowflake(45))]);
        assert!(p.everyone);
        assert!(parse("mail me at x@example.org").is_empty());
        assert!(parse("@here").everyone);
        // Multi-byte text around mentions is fine.
        assert_eq!(parse("é<@7>é").users, vec![UserId::new(Snowflake(7))]);
    }

    #[test]
    fn everyone_and_here_only_as_whole_words() {
        for yes in [
            "@everyone",
            "hey @here!",
            "(@everyone)",
            "@here, look",
            "line\n@everyone",
        ] {
            assert!(parse(yes).everyone, "{yes:?} mentions everyone");
        }
        for no in [
            "team@here.example",
            "write to ops@everyone.org",
            "@everyones",
            "@hereafter",
            "@here_team",
            "é@here",
        ] {
            assert!(!parse(no).everyone, "{no:?} mentions nobody");
        }
    }

    #[test]
    fn code_mentions_nobody() {
        assert!(parse("`<@1>` and `@everyone`").is_empty());
        assert!(parse("```\n<@&2>\n@here\n```").is_empty());
        assert_eq!(
            parse("`<@1>` but <@3>").users,
            vec![UserId::new(Snowflake(3))]
        );
        // An unclosed backtick is text: what follows still counts.
        assert_eq!(parse("it`s <@4>").users, vec![UserId::new(Snowflake(4))]);
        // Inline code does not run across lines.
        assert_eq!(
            parse("a ` b\n<@5> ` c").users,
            vec![UserId::new(Snowflake(5))]
        );
        // A channel link is not a notification.
        assert!(parse("see <#6>").is_empty());
    }
}
