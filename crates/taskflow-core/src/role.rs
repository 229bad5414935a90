//! The roles taskflow runs as, named once: each is a part that can run in a process of its
//! own (`taskflow run --roles …`, one Kubernetes Deployment each), and the readiness of the
//! roles a process runs, for `/healthz/ready`.

use std::{
    collections::BTreeMap,
    fmt,
    str::FromStr,
    sync::{Arc, RwLock},
};

/// A part of taskflow that can run on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// REST API, auth, chat, MCP, docs (health and metrics are served by every role).
    Api,
    /// Publishes committed outbox events to the broker (with an external bus only).
    Relay,
    /// Creates the next occurrence when a recurring task is completed.
    Recurring,
    /// Fires reminders on time (durable timers), and catches up after downtime.
    Reminders,
    /// Turns fired reminders into stored notifications.
    Notifier,
    /// Appends every event to the append-only audit log.
    Audit,
    /// Pushes each user's events to their open SSE and WebSocket connections.
    Sync,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::Api,
        Role::Relay,
        Role::Recurring,
        Role::Reminders,
        Role::Notifier,
        Role::Audit,
        Role::Sync,
    ];

    /// The name in `--roles`, logs, metrics and `/healthz/ready`.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Relay => "relay",
            Role::Recurring => "recurring",
            Role::Reminders => "reminders",
            Role::Notifier => "notifier",
            Role::Audit => "audit",
            Role::Sync => "sync",
        }
    }

    /// What the role does, for help texts.
    pub fn about(self) -> &'static str {
        match self {
            Role::Api => {
                "REST API, auth, chat, MCP, docs (health and metrics are served by every role)"
            }
            Role::Relay => {
                "Publishes committed outbox events to the broker (with an external bus only)"
            }
            Role::Recurring => "Creates the next occurrence when a recurring task is completed",
            Role::Reminders => {
                "Fires reminders on time (durable timers), and catches up after downtime"
            }
            Role::Notifier => "Turns fired reminders into stored notifications",
            Role::Audit => "Appends every event to the append-only audit log",
            Role::Sync => "Pushes each user's events to their open SSE and WebSocket connections",
        }
    }

    /// The `source` of the events the role produces.
    pub const fn source(self) -> &'static str {
        match self {
            Role::Api => "taskflow/api",
            Role::Relay => "taskflow/relay",
            Role::Recurring => "taskflow/recurring",
            Role::Reminders => "taskflow/reminders",
            Role::Notifier => "taskflow/notifier",
            Role::Audit => "taskflow/audit",
            Role::Sync => "taskflow/sync",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role `{0}`; the roles are api, relay, recurring, reminders, notifier, audit, sync"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .iter()
            .copied()
            .find(|r| r.name() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Where a role is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleState {
    Starting,
    Ready,
    /// Not ready, with the reason.
    Failing(String),
}

/// The roles of this process and their states; cheap to clone. A role may have several
/// parts (the reminders role: its timers and its consumer), each reporting on its own; a
/// role is as ready as its least ready part.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<RwLock<BTreeMap<(Role, &'static str), RoleState>>>);

impl Readiness {
    /// Sets the state of `part` of `role`.
    pub fn set(&self, role: Role, part: &'static str, state: RoleState) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.insert((role, part), state);
    }

    /// Every role and its state, in the order of [`Role::ALL`]: failing when a part fails
    /// (with the first part's reason), starting when a part is starting, else ready.
    pub fn roles(&self) -> Vec<(Role, RoleState)> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut roles: Vec<(Role, RoleState)> = Vec::new();
        for (&(role, part), state) in map.iter() {
            let state = match state {
                RoleState::Failing(why) => RoleState::Failing(format!("{part}: {why}")),
                other => other.clone(),
            };
            match roles.last_mut() {
                Some((r, worst)) if *r == role => {
                    let rank = |s: &RoleState| match s {
                        RoleState::Ready => 0,
                        RoleState::Starting => 1,
                        RoleState::Failing(_) => 2,
                    };
                    if rank(&state) > rank(worst) {
                        *worst = state;
                    }
                }
                _ => roles.push((role, state)),
            }
        }
        roles
    }

    pub fn all_ready(&self) -> bool {
        self.roles().iter().all(|(_, s)| *s == RoleState::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_parses_from_its_name() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(*role));
        }
        assert_eq!(
            "relays".parse::<Role>().map_err(|e| e.to_string()),
            Err("unknown role `relays`; the roles are api, relay, recurring, reminders, notifier, audit, sync".into())
        );
    }

    #[test]
    fn a_role_is_as_ready_as_its_least_ready_part() {
        let r = Readiness::default();
        r.set(Role::Reminders, "timers", RoleState::Ready);
        r.set(Role::Reminders, "consumer", RoleState::Starting);
        r.set(Role::Api, "http", RoleState::Ready);
        assert!(!r.all_ready());
        assert_eq!(
            r.roles(),
            [
                (Role::Api, RoleState::Ready),
                (Role::Reminders, RoleState::Starting)
            ]
        );
        r.set(
            Role::Reminders,
            "consumer",
            RoleState::Failing("no log".into()),
        );
        assert_eq!(
            r.roles()[1].1,
            RoleState::Failing("consumer: no log".into())
        );
        r.set(Role::Reminders, "consumer", RoleState::Ready);
        assert!(r.all_ready());
    }
}
