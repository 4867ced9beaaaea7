//! The next box's shim, made ahead of need: its namespaces, init and pid 1 exist before a
//! start asks for them.

use super::*;

/// The shim made ahead of need for the next box (see [`engine::Warm`]).
#[derive(Debug)]
pub(super) struct WarmSlot {
    pub(super) ready: Option<engine::Warm>,
    /// A refill is making one, with a network or without (outside the lock; a close waits for
    /// it).
    preparing: Option<bool>,
    /// The kind of box the next one is made for.
    next: NextKind,
}

impl Default for WarmSlot {
    fn default() -> Self {
        Self { ready: None, preparing: None, next: NextKind { network: true, others_in_a_row: 0 } }
    }
}

/// Whether the shim made ahead of need gets a network (a box with one cannot start on a shim
/// without, and one without would wait for the kernel to remove the interface). It follows the
/// boxes started: the default box has a network; two starts in a row of the other kind change
/// it. A program that alternates keeps the kind it had, rather than making, at each start, a
/// shim the next start cannot use.
#[derive(Debug, Clone, Copy)]
struct NextKind {
    network: bool,
    others_in_a_row: u8,
}

impl NextKind {
    fn started(&mut self, network: bool) {
        if network == self.network {
            self.others_in_a_row = 0;
            return;
        }
        self.others_in_a_row += 1;
        if self.others_in_a_row == 2 {
            *self = Self { network, others_in_a_row: 0 };
        }
    }
}

/// How long a close waits for a shim being made ahead of need.
pub(super) const PREPARE_WAIT: Duration = Duration::from_secs(5);

/// How long a start waits for one, before it makes its own.
pub(super) const TAKE_WAIT: Duration = Duration::from_millis(50);

impl Inner {
    pub(super) fn warm_slot(&self) -> MutexGuard<'_, WarmSlot> {
        lock(&self.warm.0)
    }

    /// A warm shim for a box with `config`: the one made ahead of need if it is ready and fits
    /// (its network as the box's: [`NextKind`]), or one made now (at full priority: a box waits
    /// for it). A box with volumes gets a new one: a shim's mount namespace is a copy of the
    /// host's mounts when it was made, and a volume's source may have been mounted since.
    pub(super) fn warm_shim(&self, config: &ShimConfig) -> Result<engine::Warm> {
        let mut slot = self.warm_slot();
        slot.next.started(config.network);
        if config.volumes.is_empty() {
            // One being made is most of the way: it is waited for (bounded) rather than made
            // again, if it is of the box's kind.
            let (mut slot, _) = self.warm.1.wait_timeout_while(slot, TAKE_WAIT, |slot| slot.preparing == Some(config.network)).unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(warm) = slot.ready.take_if(|warm| warm.user_namespace == config.user_namespace.is_some() && warm.sockets.is_some() == config.network) {
                return Ok(warm);
            }
        } else {
            drop(slot);
        }
        // A box made before boxes had user namespaces keeps running without one (`idmap` rule 1).
        let kind = engine::ShimKind { user_namespace: config.user_namespace.is_some(), ..self.shim.clone() };
        engine::Warm::prepare(&kind, false, config.network)
    }

    /// Makes the next box's shim unless one of the kind the next box is likely to be is ready,
    /// or one is being made, or the runtime is closing; one of the other kind ends. Blocking;
    /// the slot is not locked meanwhile. It holds the runtime only while it looks at the slot:
    /// a runtime let go of meanwhile goes at once (its home free for the next), and the shim
    /// made for it ends.
    pub(super) fn refill_warm(runtime: &Weak<Self>) {
        let (shim, network, unwanted) = {
            let Some(inner) = runtime.upgrade() else { return };
            let mut slot = inner.warm_slot();
            let network = slot.next.network;
            if slot.ready.as_ref().is_some_and(|warm| warm.sockets.is_some() == network) || slot.preparing.is_some() || inner.shut_down.load(Ordering::Acquire) {
                return;
            }
            slot.preparing = Some(network);
            (inner.shim.clone(), network, slot.ready.take())
        };
        drop(unwanted);
        let mut prepared = engine::Warm::prepare(&shim, true, network).inspect_err(|error| log::warn!("could not prepare the next box ahead of need: {error}")).ok();
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
        slot.preparing = None;
        drop(slot);
        inner.warm.1.notify_all();
    }

    /// Ends the shim made ahead of need, once one being made is done (bounded). Call after
    /// setting `shut_down`. Blocking.
    pub(super) fn dismiss_warm(&self) {
        let slot = self.warm_slot();
        let (mut slot, _) = self.warm.1.wait_timeout_while(slot, PREPARE_WAIT, |slot| slot.preparing.is_some()).unwrap_or_else(std::sync::PoisonError::into_inner);
        let ready = slot.ready.take();
        drop(slot);
        drop(ready);
    }
}
