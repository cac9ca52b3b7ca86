//! REST request bodies and query strings into the types handlers take, and
//! the domain objects' wire format (what a client sends back must read the
//! same). The first byte picks the type; the rest is the body.
#![no_main]

use confab_chat::messages::mentions;
use confab_chat::model::{Channel, Invite, Member, Message, Server, User};
use confab_signaling::http::{
    auth, channels, dms, moderation, relationships, roles, servers, users, voice_states,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

fn body<T: DeserializeOwned>(json: &[u8]) -> Option<T> {
    serde_json::from_slice(json).ok()
}

fn query<T: DeserializeOwned>(q: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(q).ok()
}

/// A domain object read from JSON writes the JSON that reads back as itself.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(json: &[u8]) {
    let Ok(v) = serde_json::from_slice::<T>(json) else {
        return;
    };
    let out = serde_json::to_string(&v).expect("domain objects serialize");
    let back: T = serde_json::from_str(&out).expect("what we write, we read");
    assert_eq!(back, v, "round trip through {out}");
}

fn content(text: &str) {
    let parsed = mentions::parse(text);
    let users = parsed.users.iter().map(|u| u.snowflake());
    for id in users.chain(parsed.roles.iter().map(|r| r.snowflake())) {
        assert!(
            text.contains(&id.to_string()),
            "mention {id} not in the content"
        );
    }
    assert!(parsed.users.len() <= 50 && parsed.roles.len() <= 50);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 30 {
        0 => {
            if let Some(b) = body::<auth::RegisterBody>(rest) {
                let _ = confab_chat::password::validate(&b.password, &b.username);
            }
        }
        1 => {
            body::<auth::LoginBody>(rest);
        }
        2 => {
            body::<auth::RefreshBody>(rest);
        }
        3 => {
            body::<auth::LogoutBody>(rest);
        }
        4 => {
            body::<channels::ChannelPatchBody>(rest);
        }
        5 => {
            if let Some(b) = body::<channels::MessageBody>(rest) {
                content(&b.content);
            }
        }
        6 => {
            if let Some(c) = body::<channels::EditBody>(rest).and_then(|b| b.content) {
                content(&c);
            }
        }
        7 => {
            body::<channels::BulkDeleteBody>(rest);
        }
        8 => {
            body::<roles::RoleBody>(rest);
        }
        9 => {
            body::<roles::OverwriteBody>(rest);
        }
        10 => {
            body::<moderation::BanBody>(rest);
        }
        11 => {
            body::<dms::NewDmBody>(rest);
        }
        12 => {
            body::<relationships::FriendRequestBody>(rest);
        }
        13 => {
            body::<relationships::RelationshipBody>(rest);
        }
        14 => {
            body::<servers::ServerBody>(rest);
        }
        15 => {
            body::<servers::NewChannelBody>(rest);
        }
        16 => {
            body::<servers::InviteBody>(rest);
        }
        17 => {
            body::<servers::MemberVoiceBody>(rest);
        }
        18 => {
            body::<users::ProfileBody>(rest);
        }
        19 => {
            body::<voice_states::MyVoiceStateBody>(rest);
        }
        20 => {
            body::<voice_states::VoiceStateBody>(rest);
        }
        21 => {
            query::<channels::HistoryParams>(rest);
        }
        22 => {
            query::<moderation::AuditParams>(rest);
        }
        23 => {
            query::<servers::MembersParams>(rest);
        }
        24 => round_trip::<User>(rest),
        25 => round_trip::<Server>(rest),
        26 => round_trip::<Channel>(rest),
        27 => round_trip::<Member>(rest),
        28 => round_trip::<Invite>(rest),
        _ => round_trip::<Message>(rest),
    }
});
