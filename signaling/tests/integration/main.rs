//! Confab's integration tests, one binary (one link instead of one per file): each module
//! drives real servers over HTTP, the gateway and UDP against a real PostgreSQL.

mod common;
mod nats_util;
mod voice_util;

mod account_security;
mod api_auth;
mod api_chat;
mod attachments;
mod authz_matrix;
mod bus_events;
mod cluster;
mod cluster_voice;
mod community;
mod db_outage;
mod deploy;
mod dispatch_visibility;
mod dms;
mod e2ee;
mod emoji;
mod floods;
mod gateway;
mod input_hardening;
mod integrations;
mod large_servers;
mod link_preview;
mod metrics_doc;
mod push;
mod relationships;
mod resume_churn;
mod safety;
mod search;
mod soundboard;
mod stage;
mod threads;
mod voice;
mod voice_moderation;
mod voice_self_state;
mod voice_visibility;
