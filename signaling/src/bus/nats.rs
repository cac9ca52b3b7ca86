//! The event bus between nodes, on NATS core publish/subscribe.
//!
//! Subjects (`<prefix>` is `--nats-prefix`, default `confab`):
//! - `<prefix>.server.<id>`: dispatches to a server's members (`Target::Server`,
//!   `Target::ServerExcept` with the excepted user in the `Confab-Except` header);
//! - `<prefix>.user.<id>`: dispatches to one user (`Target::User`, and `Target::Users` of up to
//!   `USERS_FANOUT` users, one message each);
//! - `<prefix>.users`: dispatches to a longer list of users (`Confab-Users` header); every node
//!   receives these and delivers to those it has sessions for;
//! - `<prefix>.control`: every other `BusEvent` (membership, permissions, friendships, ended
//!   login sessions), JSON; every node receives these.
//!
//! A dispatch's payload is its `d` exactly as clients receive it, with the event name in the
//! `Confab-Event` header, so a receiving node serializes nothing again. Session-addressed
//! dispatches (`Target::Session`) never leave their node: a session lives on one node.
//!
//! Each node subscribes to a server's or a user's subject only while it has sessions for it
//! (`Interest`, told by the hub), with a count per subject: one subscription per subject per
//! node, however many connections want it. The connection is made with `no_echo`, so a node
//! never receives what it published itself (it applied it already). NATS keeps the order of
//! one publisher's messages on one subject; events of different subjects may interleave
//! differently at each node. NATS restarts are survived by the client: it reconnects and
//! subscribes again by itself; what is published while it is away is queued up to
//! `OUTBOX` events, then dropped and counted.

use super::{BusEvent, EventBus};
use crate::gateway::dispatch::{Dispatch, Target};
use crate::gateway::events::Event;
use crate::gateway::routing::{Audience, Interest};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A `Target::Users` of at most this many users goes to each user's subject; a longer one to
/// `<prefix>.users`, which every node receives.
const USERS_FANOUT: usize = 16;
/// Events waiting to be handed to the NATS client (while it reconnects, say).
const OUTBOX: usize = 65_536;

const EVENT: &str = "Confab-Event";
const EXCEPT: &str = "Confab-Except";
const USERS: &str = "Confab-Users";
/// When the event was published (Unix microseconds), for the cross-node delivery latency.
const SENT: &str = "Confab-Sent";

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One message for NATS.
struct Outgoing {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

enum Command {
    Watch(Audience),
    Unwatch(Audience),
    /// Answered once every earlier command took effect at the NATS server.
    Sync(oneshot::Sender<()>),
}

/// The NATS side of a node: publishes its events and subscribes to what its sessions need.
pub struct NatsBus {
    prefix: Arc<str>,
    outbox: mpsc::Sender<Outgoing>,
    commands: mpsc::UnboundedSender<Command>,
}

impl NatsBus {
    /// Connects to `url` (retrying in the background if the server is not up yet) and starts
    /// the tasks that publish and subscribe; they end with `shutdown`. Events from other nodes
    /// arrive on the returned receiver, in the order each subject delivered them.
    pub async fn connect(
        url: &str,
        prefix: &str,
        node_name: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Arc<NatsBus>, mpsc::UnboundedReceiver<BusEvent>)> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("confab {node_name}"))
            .no_echo()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => {
                        metrics::gauge!("confab_bus_connected").set(1.0);
                        tracing::info!("NATS connected");
                    }
                    async_nats::Event::Disconnected => {
                        metrics::gauge!("confab_bus_connected").set(0.0);
                        tracing::warn!("NATS disconnected; reconnecting");
                    }
                    other => tracing::warn!(event = %other, "NATS"),
                }
            })
            .connect(url)
            .await?;
        let prefix: Arc<str> = prefix.into();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        let (commands, commands_rx) = mpsc::unbounded_channel();

        tokio::spawn(publish_loop(client.clone(), outbox_rx, shutdown.clone()));
        let subs = Subscriptions {
            client,
            prefix: prefix.clone(),
            incoming: incoming_tx,
            active: HashMap::new(),
            shutdown: shutdown.clone(),
        };
        // What every node receives, whatever its sessions.
        for subject in ["control", "users"] {
            let handle = subs.subscribe(format!("{prefix}.{subject}")).await?;
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                handle.abort();
            });
        }
        let shutdown_interest = subs.shutdown.clone();
        tokio::spawn(subs.run(commands_rx, shutdown_interest));
        Ok((
            Arc::new(NatsBus {
                prefix,
                outbox,
                commands,
            }),
            incoming,
        ))
    }

    /// Waits until every subscription asked for so far is in place at the NATS server, so
    /// that what other nodes publish from now on arrives here.
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Sync(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    fn send(&self, out: Outgoing) {
        if self.outbox.try_send(out).is_err() {
            metrics::counter!("confab_bus_dropped_total").increment(1);
        }
    }

    fn dispatch(&self, target: &Target, dispatch: &Dispatch) {
        let payload = Bytes::copy_from_slice(dispatch.d.as_bytes());
        let sent = unix_micros().to_string();
        let headers = |extra: Option<(&str, String)>| {
            let mut h = HeaderMap::new();
            h.insert(EVENT, dispatch.t.name());
            h.insert(SENT, sent.as_str());
            if let Some((k, v)) = extra {
                h.insert(k, v.as_str());
            }
            h
        };
        let p = &self.prefix;
        match target {
            Target::Server(s) => self.send(Outgoing {
                subject: format!("{p}.server.{s}"),
                headers: headers(None),
                payload,
            }),
            Target::ServerExcept(s, u) => self.send(Outgoing {
                subject: format!("{p}.server.{s}"),
                headers: headers(Some((EXCEPT, u.to_string()))),
                payload,
            }),
            Target::User(u) => self.send(Outgoing {
                subject: format!("{p}.user.{u}"),
                headers: headers(None),
                payload,
            }),
            Target::Users(list) if list.len() <= USERS_FANOUT => {
                for u in list {
                    self.send(Outgoing {
                        subject: format!("{p}.user.{u}"),
                        headers: headers(None),
                        payload: payload.clone(),
                    });
                }
            }
            Target::Users(list) => {
                let ids: Vec<String> = list.iter().map(|u| u.to_string()).collect();
                self.send(Outgoing {
                    subject: format!("{p}.users"),
                    headers: headers(Some((USERS, ids.join(",")))),
                    payload,
                })
            }
            // A gateway session lives on one node.
            Target::Session(_) => {}
        }
    }
}

impl EventBus for NatsBus {
    fn publish(&self, event: &BusEvent) {
        match event {
            BusEvent::Dispatch { target, dispatch } => self.dispatch(target, dispatch),
            other => match serde_json::to_vec(other) {
                Ok(json) => {
                    let mut headers = HeaderMap::new();
                    headers.insert(SENT, unix_micros().to_string().as_str());
                    self.send(Outgoing {
                        subject: format!("{}.control", self.prefix),
                        headers,
                        payload: json.into(),
                    })
                }
                Err(e) => tracing::error!(error = %e, "encoding a bus event"),
            },
        }
    }
}

impl Interest for NatsBus {
    fn watch(&self, audience: Audience) {
        let _ = self.commands.send(Command::Watch(audience));
    }

    fn unwatch(&self, audience: Audience) {
        let _ = self.commands.send(Command::Unwatch(audience));
    }
}

/// Hands queued messages to the NATS client in order.
async fn publish_loop(
    client: async_nats::Client,
    mut outbox: mpsc::Receiver<Outgoing>,
    shutdown: CancellationToken,
) {
    loop {
        let out = tokio::select! {
            _ = shutdown.cancelled() => return,
            out = outbox.recv() => match out {
                Some(out) => out,
                None => return,
            },
        };
        let sent = client
            .publish_with_headers(out.subject, out.headers, out.payload)
            .await;
        match sent {
            Ok(()) => metrics::counter!("confab_bus_published_total").increment(1),
            Err(e) => {
                metrics::counter!("confab_bus_publish_errors_total").increment(1);
                tracing::warn!(error = %e, "NATS publish failed");
            }
        }
    }
}

/// This node's subscriptions, counted per audience.
struct Subscriptions {
    client: async_nats::Client,
    prefix: Arc<str>,
    incoming: mpsc::UnboundedSender<BusEvent>,
    active: HashMap<Audience, (u32, JoinHandle<()>)>,
    shutdown: CancellationToken,
}

impl Subscriptions {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        shutdown: CancellationToken,
    ) {
        loop {
            let cmd = tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = commands.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => break,
                },
            };
            match cmd {
                Command::Watch(a) => {
                    if let Some((n, _)) = self.active.get_mut(&a) {
                        *n += 1;
                        continue;
                    }
                    match self.subscribe(self.subject(a)).await {
                        Ok(handle) => {
                            self.active.insert(a, (1, handle));
                        }
                        Err(e) => tracing::error!(error = %e, ?a, "NATS subscribe failed"),
                    }
                }
                Command::Unwatch(a) => {
                    if let Some((n, _)) = self.active.get_mut(&a) {
                        *n -= 1;
                        if *n == 0 {
                            if let Some((_, handle)) = self.active.remove(&a) {
                                handle.abort();
                            }
                        }
                    }
                }
                Command::Sync(done) => {
                    match tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await {
                        Ok(Err(e)) => tracing::warn!(error = %e, "NATS flush failed"),
                        Err(_) => tracing::warn!("NATS flush timed out (bus unreachable?)"),
                        Ok(Ok(())) => {}
                    }
                    let _ = done.send(());
                }
            }
            metrics::gauge!("confab_bus_subscriptions").set(self.active.len() as f64);
        }
        for (_, (_, handle)) in self.active.drain() {
            handle.abort();
        }
    }

    fn subject(&self, a: Audience) -> String {
        match a {
            Audience::Server(s) => format!("{}.server.{s}", self.prefix),
            Audience::User(u) => format!("{}.user.{u}", self.prefix),
        }
    }

    /// Subscribes to `subject`; a task decodes what arrives until it is aborted (which drops
    /// the subscription, and so unsubscribes).
    async fn subscribe(&self, subject: String) -> anyhow::Result<JoinHandle<()>> {
        let mut sub = self.client.subscribe(subject).await?;
        let incoming = self.incoming.clone();
        let prefix = self.prefix.clone();
        Ok(tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                metrics::counter!("confab_bus_received_total").increment(1);
                if let Some(sent) = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(SENT))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                {
                    // Across machines this includes their clock difference.
                    let micros = unix_micros().saturating_sub(sent);
                    metrics::histogram!("confab_bus_delivery_seconds").record(micros as f64 / 1e6);
                }
                match decode(&prefix, &msg) {
                    Some(event) => {
                        if incoming.send(event).is_err() {
                            return;
                        }
                    }
                    None => {
                        metrics::counter!("confab_bus_undecodable_total").increment(1);
                        tracing::warn!(subject = %msg.subject, "undecodable bus message");
                    }
                }
            }
        }))
    }
}

/// The `BusEvent` a NATS message carries, or None if it is not one of ours.
fn decode(prefix: &str, msg: &async_nats::Message) -> Option<BusEvent> {
    let rest = msg
        .subject
        .as_str()
        .strip_prefix(prefix)?
        .strip_prefix('.')?;
    if rest == "control" {
        return serde_json::from_slice(&msg.payload).ok();
    }
    let headers = msg.headers.as_ref()?;
    let t = Event::from_name(headers.get(EVENT)?.as_str())?;
    let d = std::str::from_utf8(&msg.payload).ok()?;
    let dispatch = Arc::new(Dispatch { t, d: d.into() });
    fn id<T: FromStr>(s: &str) -> Option<T> {
        s.parse().ok()
    }
    let target = if rest == "users" {
        let list = headers.get(USERS)?.as_str();
        Target::Users(list.split(',').filter_map(id).collect())
    } else if let Some(s) = rest.strip_prefix("server.") {
        let s = id(s)?;
        match headers.get(EXCEPT) {
            Some(u) => Target::ServerExcept(s, id(u.as_str())?),
            None => Target::Server(s),
        }
    } else if let Some(u) = rest.strip_prefix("user.") {
        Target::User(id(u)?)
    } else {
        return None;
    };
    Some(BusEvent::Dispatch { target, dispatch })
}
