//! Which roles run in this process and whether each is ready, for `/healthz/ready`.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

/// Where a role is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleState {
    Starting,
    Ready,
    /// Not ready, with the reason.
    Failing(String),
}

/// The roles of this process and their states; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<RwLock<BTreeMap<&'static str, RoleState>>>);

impl Readiness {
    pub fn set(&self, role: &'static str, state: RoleState) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.insert(role, state);
    }

    /// Every role and its state, by name.
    pub fn roles(&self) -> Vec<(&'static str, RoleState)> {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    pub fn all_ready(&self) -> bool {
        self.roles().iter().all(|(_, s)| *s == RoleState::Ready)
    }
}
