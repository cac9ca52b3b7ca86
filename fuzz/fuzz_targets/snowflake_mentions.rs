//! Snowflake ids from path segments, JSON strings and numbers, and the mention
//! syntax in message content.
#![no_main]

use confab_chat::messages::mentions;
use confab_chat::Snowflake;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Path segment / query value.
    if let Ok(id) = text.parse::<Snowflake>() {
        assert!(id.0 >= 0, "ids are positive i64s");
        assert_eq!(id.to_string().parse::<Snowflake>(), Ok(id));
        let _ = id.timestamp_ms();
        // As JSON: a string and a number read the same.
        let s: Snowflake = serde_json::from_str(&format!("\"{}\"", id.0)).unwrap();
        let n: Snowflake = serde_json::from_str(&id.0.to_string()).unwrap();
        assert_eq!((s, n), (id, id));
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{}\"", id.0));
    }
    // Any JSON value: either an id that writes back as itself, or an error.
    if let Ok(id) = serde_json::from_str::<Snowflake>(text) {
        let back: Snowflake = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
        assert_eq!(back, id);
        assert!(id.0 >= 0);
    }
    // Mentions: every id found is written in the content, each once.
    let p = mentions::parse(text);
    let users: Vec<Snowflake> = p.users.iter().map(|u| u.snowflake()).collect();
    let roles: Vec<Snowflake> = p.roles.iter().map(|r| r.snowflake()).collect();
    for list in [&users, &roles] {
        assert!(list.len() <= 50);
        for (i, id) in list.iter().enumerate() {
            assert!(text.contains(&id.to_string()));
            assert!(!list[..i].contains(id), "mention {id} listed twice");
        }
    }
    if !text.contains('@') {
        assert!(p.is_empty());
    }
});
