//! The next box's shim, made ahead of need: its namespaces, init and pid 1 exist before a
//! start asks for them.

use super::*;

/// The shim made ahead of need for the next box (see [`engine::Warm`]).
#[derive(Debug, Default)]
pub(super) struct WarmSlot {
    pub(super) ready: Option<engine::Warm>,
    /// A refill is making one (outside the lock; a close waits for it).
    pub(super) preparing: bool,
}

/// How long a close waits for a shim being made ahead of need.
pub(super) const PREPARE_WAIT: Duration = Duration::from_secs(5);

/// How long a start waits for one, before it makes its own.
pub(super) const TAKE_WAIT: Duration = Duration::from_millis(50);

impl Inner {
    pub(super) fn warm_slot(&self) -> MutexGuard<'_, WarmSlot> {
        lock(&self.warm.0)
    }

    /// A warm shim for a box with `config`: the one made ahead of need if it is ready and fits,
    /// or one made now (at full priority: a box waits for it). A box with volumes gets a new
    /// one: a shim's mount namespace is a copy of the host's mounts when it was made, and a
    /// volume's source may have been mounted since. So does a box without a network (ahead of
    /// need, shims are made with one): removing an interface waits for the kernel's RCU grace
    /// period, which costs more than a new shim.
    pub(super) fn warm_shim(&self, config: &ShimConfig) -> Result<engine::Warm> {
        if config.volumes.is_empty() {
            // One being made is most of the way: it is waited for (bounded) rather than made
            // again.
            let slot = self.warm_slot();
            let (mut slot, _) = self.warm.1.wait_timeout_while(slot, TAKE_WAIT, |slot| slot.preparing).unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(warm) = slot.ready.take_if(|warm| warm.user_namespace == config.user_namespace.is_some() && warm.sockets.is_some() == config.network) {
                return Ok(warm);
            }
        }
        // A box made before boxes had user namespaces keeps running without one (`idmap` rule 1).
        let kind = engine::ShimKind { user_namespace: config.user_namespace.is_some(), ..self.shim.clone() };
        engine::Warm::prepare(&kind, false, config.network)
    }

    /// Makes the next box's shim unless one is ready or being made, or the runtime is closing.
    /// Blocking; the slot is not locked meanwhile. It holds the runtime only while it looks at
    /// the slot: a runtime let go of meanwhile goes at once (its home free for the next), and
    /// the shim made for it ends.
    pub(super) fn refill_warm(runtime: &Weak<Self>) {
        let shim = {
            let Some(inner) = runtime.upgrade() else { return };
            let mut slot = inner.warm_slot();
            if slot.ready.is_some() || slot.preparing || inner.shut_down.load(Ordering::Acquire) {
                return;
            }
            slot.preparing = true;
            inner.shim.clone()
        };
        let mut prepared = engine::Warm::prepare(&shim, true, true).inspect_err(|error| log::warn!("could not prepare the next box ahead of need: {error}")).ok();
        let Some(inner) = runtime.upgrade() else { return };
        let mut slot = inner.warm_slot();
        if slot.ready.is_none() && !inner.shut_down.load(Ordering::Acquire) {
            slot.ready = prepared.take();
        }
        if prepared.is_some() {
            // Not wanted (the runtime closes): it ends while `preparing` still holds a waiting
            // close back, so the close returns with nothing of it left.
            drop(slot);
            drop(prepared);
            slot = inner.warm_slot();
        }
        slot.preparing = false;
        drop(slot);
        inner.warm.1.notify_all();
    }

    /// Ends the shim made ahead of need, once one being made is done (bounded). Call after
    /// setting `shut_down`. Blocking.
    pub(super) fn dismiss_warm(&self) {
        let slot = self.warm_slot();
        let (mut slot, _) = self.warm.1.wait_timeout_while(slot, PREPARE_WAIT, |slot| slot.preparing).unwrap_or_else(std::sync::PoisonError::into_inner);
        let ready = slot.ready.take();
        drop(slot);
        drop(ready);
    }
}
