//! Mention syntax in message content: `<@USER_ID>` (or `<@!USER_ID>`), `<@&ROLE_ID>`, and
//! `@everyone` / `@here`. Parsing is pure; resolving against the server happens on send.

use crate::Snowflake;

#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub users: Vec<Snowflake>,
    pub roles: Vec<Snowflake>,
    pub everyone: bool,
}

impl Parsed {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.roles.is_empty() && !self.everyone
    }
}

/// Most distinct mentions kept per message.
const MAX: usize = 50;

pub fn parse(content: &str) -> Parsed {
    let mut p = Parsed::default();
    let bytes = content.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
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
                    let list = if role { &mut p.roles } else { &mut p.users };
                    if !list.contains(&id) && list.len() < MAX {
                        list.push(id);
                    }
                }
                i = j + 1;
                continue;
            }
        }
        if bytes[i] == b'@' {
            let rest = &content[i + 1..];
            if rest.starts_with("everyone") || rest.starts_with("here") {
                p.everyone = true;
            }
        }
        i += 1;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_roles_everyone_and_ignores_junk() {
        let p = parse(
            "hi <@123> and <@!123> <@&45> @everyone <@abc> <@> <@&> <@999999999999999999999999>",
        );
        assert_eq!(p.users, vec![Snowflake(123)]);
        assert_eq!(p.roles, vec![Snowflake(45)]);
        assert!(p.everyone);
        assert!(parse("mail me at x@example.org").is_empty());
        assert!(parse("@here").everyone);
        // Multi-byte text around mentions is fine.
        assert_eq!(parse("é<@7>é").users, vec![Snowflake(7)]);
    }
}
