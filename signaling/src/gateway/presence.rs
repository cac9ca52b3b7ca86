//! Presence statuses.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Idle,
    Dnd,
    Invisible,
    Offline,
}

impl Status {
    /// Which status wins when a user has several sessions.
    pub fn rank(self) -> u8 {
        match self {
            Status::Offline => 0,
            Status::Invisible => 1,
            Status::Idle => 2,
            Status::Dnd => 3,
            Status::Online => 4,
        }
    }

    /// What others see.
    pub fn visible(self) -> Status {
        match self {
            Status::Invisible => Status::Offline,
            s => s,
        }
    }
}
