//! The pending-request registry: who is waiting for what.
//!
//! # Invariants (rule numbers refer to docs/async-core.md)
//!
//! 1. (rule 17) Each slot is claimed at most once: by the result's delivery, by the caller's
//!    cancellation, or by the close sweep — each claims with [`Registry::take`] or
//!    [`Registry::close_sweep`], and only the claimer touches the slot afterwards. A result whose
//!    slot is gone belongs to nobody and is released by whoever holds it (rule 18).
//! 2. (rule 21) Registering checks `closing` under the same lock the sweep takes, so a request
//!    is either swept or refused, never stranded.
//! 3. Slots are removed when claimed, so the map only holds what is in flight (no unbounded
//!    growth).
//!
//! Pure Rust and generic: the binding stores Python futures in it, tests store plain values.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

struct State<S> {
    slots: HashMap<u64, S>,
    closing: bool,
}

pub struct Registry<S> {
    state: Mutex<State<S>>,
    next_id: AtomicU64,
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Self { state: Mutex::new(State { slots: HashMap::new(), closing: false }), next_id: AtomicU64::new(1) }
    }
}

impl<S> Registry<S> {
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Invariant 2. Returns the new id, or the slot back when the registry is closing.
    pub fn register(&self, slot: S) -> Result<u64, S> {
        let mut state = self.lock();
        if state.closing {
            return Err(slot);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        state.slots.insert(id, slot);
        Ok(id)
    }

    /// Invariant 1: claims the slot.
    pub fn take(&self, id: u64) -> Option<S> {
        self.lock().slots.remove(&id)
    }

    /// Looks at a slot without claiming it.
    pub fn inspect<R>(&self, id: u64, look: impl FnOnce(&S) -> R) -> Option<R> {
        self.lock().slots.get(&id).map(look)
    }

    /// Invariant 1: claims every slot `abandoned` picks (those nobody can be handed anything
    /// anymore).
    pub fn take_where(&self, mut abandoned: impl FnMut(&S) -> bool) -> Vec<S> {
        let mut state = self.lock();
        let ids: Vec<u64> = state.slots.iter().filter(|(_, slot)| abandoned(slot)).map(|(id, _)| *id).collect();
        ids.iter().filter_map(|id| state.slots.remove(id)).collect()
    }

    /// Invariants 1 and 2: refuses new registrations and claims every slot.
    pub fn close_sweep(&self) -> Vec<S> {
        let mut state = self.lock();
        state.closing = true;
        state.slots.drain().map(|(_, slot)| slot).collect()
    }

    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn each_slot_has_exactly_one_claimer() {
        for _ in 0..500 {
            let registry = Arc::new(Registry::default());
            let id = registry.register(7).expect("open");
            let racers: Vec<_> = (0..3)
                .map(|which| {
                    let registry = Arc::clone(&registry);
                    std::thread::spawn(move || match which {
                        2 => registry.close_sweep().len(),
                        _ => usize::from(registry.take(id).is_some()),
                    })
                })
                .collect();
            let claims: usize = racers.into_iter().map(|racer| racer.join().expect("join")).sum();
            assert_eq!(claims, 1);
        }
    }

    #[test]
    fn taking_where_claims_only_the_picked_slots() {
        let registry = Registry::default();
        let ids: Vec<u64> = [1, 2, 3, 4].into_iter().map(|value| registry.register(value).expect("open")).collect();
        let mut taken = registry.take_where(|value| value % 2 == 0);
        taken.sort_unstable();
        assert_eq!(taken, vec![2, 4]);
        assert_eq!((registry.take(ids[0]), registry.take(ids[1]), registry.len()), (Some(1), None, 1));
    }

    #[test]
    fn registering_after_the_sweep_is_refused() {
        let registry = Registry::default();
        let id = registry.register("a").expect("open");
        assert_eq!(registry.close_sweep(), vec!["a"]);
        assert_eq!(registry.take(id), None);
        assert_eq!(registry.register("b"), Err("b"));
        assert!(registry.is_closing());
        assert_eq!(registry.len(), 0);
    }
}
