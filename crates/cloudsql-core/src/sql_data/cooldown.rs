//! Per-instance memory of the tunnel's answers: instances that do not offer it (connect directly
//! from then on) and instances in a `RESOURCE_EXHAUSTED` cooldown with exponential backoff.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::InstanceConnectionName;

/// The first cooldown after `RESOURCE_EXHAUSTED` (Python's default); it doubles with each
/// refusal in a row, up to [`MAX_COOLDOWN`].
pub(crate) const BASE_COOLDOWN: Duration = Duration::from_secs(5);
/// The longest cooldown.
pub(crate) const MAX_COOLDOWN: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Cooldown {
    until: Instant,
    refusals: u32,
}

/// What the connector learnt about each instance's tunnel.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    unsupported: Mutex<HashSet<InstanceConnectionName>>,
    cooldowns: Mutex<HashMap<InstanceConnectionName, Cooldown>>,
}

impl Memory {
    /// Remembers that `name` does not offer the tunnel.
    pub(crate) fn mark_unsupported(&self, name: &InstanceConnectionName) {
        self.unsupported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone());
    }

    /// Whether `name` was found not to offer the tunnel.
    pub(crate) fn is_unsupported(&self, name: &InstanceConnectionName) -> bool {
        self.unsupported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name)
    }

    /// Starts (or lengthens) `name`'s cooldown; returns its length.
    pub(crate) fn exhausted(&self, name: &InstanceConnectionName, now: Instant) -> Duration {
        let mut cooldowns = self.cooldowns.lock().unwrap_or_else(PoisonError::into_inner);
        let refusals = cooldowns.get(name).map_or(0, |c| c.refusals).saturating_add(1);
        let wait = BASE_COOLDOWN
            .saturating_mul(2u32.saturating_pow(refusals.saturating_sub(1).min(16)))
            .min(MAX_COOLDOWN);
        cooldowns.insert(
            name.clone(),
            Cooldown {
                until: now + wait,
                refusals,
            },
        );
        wait
    }

    /// How long `name`'s cooldown still runs, if it does.
    pub(crate) fn cooling(&self, name: &InstanceConnectionName, now: Instant) -> Option<Duration> {
        let cooldowns = self.cooldowns.lock().unwrap_or_else(PoisonError::into_inner);
        cooldowns
            .get(name)
            .map(|c| c.until.saturating_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// A tunnel to `name` worked: the next refusal starts again from the base cooldown.
    pub(crate) fn succeeded(&self, name: &InstanceConnectionName) {
        self.cooldowns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldowns_double_from_five_seconds_and_reset_on_success() {
        let memory = Memory::default();
        let name: InstanceConnectionName = "p:r:i".parse().unwrap();
        let now = Instant::now();
        assert_eq!(memory.cooling(&name, now), None);
        assert_eq!(memory.exhausted(&name, now), Duration::from_secs(5));
        assert_eq!(memory.exhausted(&name, now), Duration::from_secs(10));
        assert_eq!(memory.exhausted(&name, now), Duration::from_secs(20));
        assert_eq!(memory.cooling(&name, now), Some(Duration::from_secs(20)));
        assert_eq!(memory.cooling(&name, now + Duration::from_secs(21)), None);
        for _ in 0..40 {
            memory.exhausted(&name, now);
        }
        assert_eq!(memory.exhausted(&name, now), MAX_COOLDOWN);
        memory.succeeded(&name);
        assert_eq!(memory.exhausted(&name, now), BASE_COOLDOWN);
    }

    #[test]
    fn unsupported_instances_are_remembered_one_by_one() {
        let memory = Memory::default();
        let a: InstanceConnectionName = "p:r:a".parse().unwrap();
        let b: InstanceConnectionName = "p:r:b".parse().unwrap();
        memory.mark_unsupported(&a);
        assert!(memory.is_unsupported(&a));
        assert!(!memory.is_unsupported(&b));
    }
}
