//! Unit attention state per I_T nexus (SAM-5 §5.14, SPC-4 §5.14).
//!
//! The transport names each I_T nexus with an opaque [`NexusId`] (FCP: one per PRLI image
//! pair). The first time an id is seen, a POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
//! condition is established for every LUN; it is reported on the first command to each LUN
//! other than INQUIRY, REPORT LUNS and REQUEST SENSE (which returns it as data), and then
//! cleared. iPXE's TEST UNIT READY retries and Linux's scan both absorb it.
//!
//! Other conditions are raised for all known nexuses (capacity changed, LUN inventory changed)
//! or for all but one (a LUN RESET by one nexus is reported to the others as 29/03). A pending
//! power-on condition stands for all of them: the initiator will re-read everything anyway, so
//! nothing else is queued behind it for that LUN. Several pending conditions are reported one
//! per command, in the order of [`UnitAttention::ALL`].
//!
//! The table is bounded ([`MAX_NEXUSES`]) and allocated once. When it is full, the slot after
//! the last evicted one is reused: the evicted nexus, if it ever comes back, sees one more
//! power-on unit attention, which initiators handle as a retry.

use super::lun::MAX_LUNS;
use super::sense::UnitAttention;

/// How many I_T nexuses the unit attention table remembers.
pub const MAX_NEXUSES: usize = 128;

/// An I_T nexus as the transport names it (opaque to this layer). FCP may use its session
/// index, or a hash of the initiator's port name and port ID; it only has to stay the same for
/// the life of the login and differ between concurrent logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NexusId(pub u64);

const KINDS: usize = UnitAttention::ALL.len();
const ALL_LUNS: u64 = if MAX_LUNS == 64 {
    u64::MAX
} else {
    (1 << MAX_LUNS) - 1
};

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: NexusId,
    /// Per condition, bit n set when it is pending for LUN n.
    pending: [u64; KINDS],
}

impl Entry {
    fn new(id: NexusId) -> Entry {
        let mut pending = [0; KINDS];
        pending[UnitAttention::PowerOnReset.index()] = ALL_LUNS;
        Entry { id, pending }
    }
}

#[derive(Debug)]
pub(crate) struct NexusTable {
    entries: Vec<Entry>,
    /// The next slot to reuse when the table is full.
    evict: usize,
}

impl NexusTable {
    pub(crate) fn new() -> NexusTable {
        NexusTable {
            entries: Vec::with_capacity(MAX_NEXUSES),
            evict: 0,
        }
    }

    /// The entry of `id`, created (with power-on pending everywhere) if it is new.
    fn entry(&mut self, id: NexusId) -> &mut Entry {
        let at = match self.entries.iter().position(|e| e.id == id) {
            Some(at) => at,
            None if self.entries.len() < MAX_NEXUSES => {
                // Within the capacity reserved in `new`: no allocation.
                self.entries.push(Entry::new(id));
                self.entries.len() - 1
            }
            None => {
                let at = self.evict % MAX_NEXUSES;
                self.evict = (at + 1) % MAX_NEXUSES;
                tracing::debug!(
                    evicted = self.entries[at].id.0,
                    "I_T nexus table full; forgetting one"
                );
                self.entries[at] = Entry::new(id);
                at
            }
        };
        &mut self.entries[at]
    }

    /// Make sure `id` is known (a new nexus gets its power-on unit attention pending).
    pub(crate) fn touch(&mut self, id: NexusId) {
        self.entry(id);
    }

    /// Report and clear the first pending condition of `id` for LUN `lun`.
    pub(crate) fn take(&mut self, id: NexusId, lun: u16) -> Option<UnitAttention> {
        let bit = lun_bit(lun)?;
        let entry = self.entry(id);
        let ua = UnitAttention::ALL
            .into_iter()
            .find(|ua| entry.pending[ua.index()] & bit != 0)?;
        entry.pending[ua.index()] &= !bit;
        Some(ua)
    }

    /// The conditions pending for `id` on LUN `lun`, without clearing them.
    pub(crate) fn pending(&self, id: NexusId, lun: u16) -> Vec<UnitAttention> {
        let Some(bit) = lun_bit(lun) else {
            return Vec::new();
        };
        match self.entries.iter().find(|e| e.id == id) {
            None => vec![UnitAttention::PowerOnReset],
            Some(e) => UnitAttention::ALL
                .into_iter()
                .filter(|ua| e.pending[ua.index()] & bit != 0)
                .collect(),
        }
    }

    /// Clear `ua` for `id` on the LUNs of `luns`.
    pub(crate) fn clear(&mut self, id: NexusId, ua: UnitAttention, luns: u64) {
        self.entry(id).pending[ua.index()] &= !luns;
    }

    /// Raise `ua` on the LUNs of `luns` for every known nexus but `except`.
    pub(crate) fn raise(&mut self, ua: UnitAttention, luns: u64, except: Option<NexusId>) {
        for e in self.entries.iter_mut().filter(|e| Some(e.id) != except) {
            let covered = e.pending[UnitAttention::PowerOnReset.index()];
            e.pending[ua.index()] |= luns & !covered;
        }
    }

    /// Forget `id` (logout); true if it was known.
    pub(crate) fn forget(&mut self, id: NexusId) -> bool {
        match self.entries.iter().position(|e| e.id == id) {
            Some(at) => {
                self.entries.swap_remove(at);
                true
            }
            None => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The mask bit of LUN `lun`; `None` above [`MAX_LUNS`].
pub(crate) fn lun_bit(lun: u16) -> Option<u64> {
    (usize::from(lun) < MAX_LUNS).then(|| 1u64 << lun)
}
