//! Scenario setup through the public REST API: users, a server, channels,
//! an invite, memberships.

use std::sync::Arc;

use anyhow::{Context, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::api::{Api, User};

/// All bars draw through one `MultiProgress`, so `mixed` shows the voice
/// and chat bars one above the other instead of overwriting each other.
fn multi() -> &'static MultiProgress {
    static MP: std::sync::OnceLock<MultiProgress> = std::sync::OnceLock::new();
    MP.get_or_init(MultiProgress::new)
}

/// The steady-state bar: elapsed / total seconds, and a live message
/// (peers, loss, latency) set by the scenario once a second.
pub fn steady_bar(secs: u64, what: &str) -> ProgressBar {
    let pb = multi().add(ProgressBar::new(secs));
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>6} [{elapsed_precise}] {bar:20} {pos}/{len} s {msg}",
        )
        .expect("valid template"),
    );
    pb.set_prefix(what.to_string());
    pb
}

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = multi().add(ProgressBar::new(len));
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    pb.set_message(what.to_string());
    pb
}

/// Registers `n` users, `concurrency` at a time (the server hashes each
/// password with argon2id, tens of milliseconds of CPU apiece).
pub async fn register_users(api: &Api, n: usize, concurrency: usize) -> Result<Vec<User>> {
    let pb = bar(n as u64, "register");
    let users: Vec<User> = stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let pb = pb.clone();
            async move {
                let u = api.register(i).await;
                pb.inc(1);
                u
            }
        })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
        .context("registering users")?;
    pb.finish();
    Ok(users)
}

/// A server owned by `users[0]` that every user has joined.
pub struct ServerSetup {
    pub server_id: String,
}

pub async fn server_with_members(
    api: &Api,
    users: &[User],
    name: &str,
    concurrency: usize,
) -> Result<ServerSetup> {
    let owner = &users[0];
    let server_id = api.create_server(&owner.token, name).await?;
    let code = Arc::new(api.create_invite(&owner.token, &server_id).await?);
    let pb = bar(users.len().saturating_sub(1) as u64, "join server");
    stream::iter(users.iter().skip(1))
        .map(|u| {
            let api = api.clone();
            let code = code.clone();
            let pb = pb.clone();
            async move {
                let r = api.join_invite(&u.token, &code).await;
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await
        .context("joining the server")?;
    pb.finish();
    Ok(ServerSetup { server_id })
}
