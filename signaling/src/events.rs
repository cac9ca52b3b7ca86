//! The event bus: how a change made by one request reaches every gateway session that should
//! see it. In one process the bus hands events straight to the hub; with several nodes it is
//! NATS (one subject per server/user), and each node's hub delivers to its own sessions. The
//! rest of the code only calls `AppState::emit`.

use crate::gateway::hub::{Dispatch, Hub, Target};
use std::sync::Arc;

pub trait EventBus: Send + Sync {
    fn publish(&self, target: Target, dispatch: Arc<Dispatch>);
}

/// In-process bus: delivery is a direct call.
pub struct LocalBus {
    hub: Arc<Hub>,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

impl EventBus for LocalBus {
    fn publish(&self, target: Target, dispatch: Arc<Dispatch>) {
        self.hub.deliver(&target, &dispatch);
    }
}
