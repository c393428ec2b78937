//! The VN2VN VN_Port (FC-BB-6): address selection by probe and claim, answers to the
//! neighbours' probes and claims, beacons, and the table of neighbours.
//!
//! This mirrors Linux `fcoe_ctlr_vn_*` (drivers/scsi/fcoe/fcoe_ctlr.c), which is the de-facto
//! standard the Linux initiator holds us to:
//! - START --(random <= 100 ms)--> PROBE1 (probe) --100 ms--> PROBE2 (probe) --400 ms-->
//!   CLAIM (claim notification) --400 ms--> UP (beacon; again 400 ms later; then every 8 s).
//! - Linux logs in to a neighbour only once the neighbour is in its table (from our claim or
//!   claim response) **and** it has received a beacon from it (`fcoe_ctlr_vn_beacon`,
//!   `fcoe_ctlr_vn_disc`). So a beacon follows every claim response we send.
//! - Neighbours silent for 2.5 beacon intervals (20 s) are aged out.
//! - The table is bounded ([`MAX_PEERS`]); when it is full, a new neighbour replaces the one a
//!   flood of forged claims is most likely to have put there (see [`Vn2VnPort::handle`]).
//!
//! Driven by `now`; it never reads a clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use l2san_common::ether::MacAddr;
use l2san_common::io::Transmit;

use crate::tx::send_fip;
use crate::wire::fip::{
    flags, fpma, Fc4Features, FipRepr, Vn2VnRepr, Vn2VnSubcode, VnPortId, ALL_VN2VN_MACS,
    VN2VN_FC_MAP,
};
use crate::wire::{FcId, Wwn};

/// `FIP_VN_PROBE_WAIT`.
pub const PROBE_WAIT: Duration = Duration::from_millis(100);
/// `FIP_VN_ANN_WAIT`.
pub const ANN_WAIT: Duration = Duration::from_millis(400);
/// Margin after a neighbour's announce-wait before we beacon to it again.
const CLAIM_SETTLE: Duration = Duration::from_millis(150);
/// `FIP_VN_BEACON_INT`.
pub const BEACON_INT: Duration = Duration::from_millis(8000);
/// `FIP_VN_BEACON_FUZZ`.
pub const BEACON_FUZZ_MS: u64 = 100;
/// 2.5 beacon intervals (`fcoe_ctlr_vn_age`).
pub const PEER_AGE: Duration = Duration::from_millis(20_000);
/// `FIP_VN_RLIM_COUNT` / `FIP_VN_RLIM_INT`: after this many quick retries, wait 10 s.
pub const RLIM_COUNT: u32 = 10;
pub const RLIM_INT: Duration = Duration::from_secs(10);
/// At most this many neighbours are remembered. A claim beyond it replaces a neighbour that
/// has no login with us (never one that has), or is not answered if every one has.
pub const MAX_PEERS: usize = 256;
/// How long answered claims may keep postponing our next beacon. Each claim asks for a beacon
/// one announce-wait plus `CLAIM_SETTLE` after it; a steady stream of claims (a flood, or a
/// boot farm starting) must not hold every beacon back, or no new neighbour ever logs in and
/// the logged-in ones age us out after 20 s.
pub const BEACON_HOLD: Duration = Duration::from_millis(2000);
/// At most one "neighbour table full" warning per this interval.
const FULL_WARN_EVERY: Duration = Duration::from_secs(60);

/// Where the VN_Port is in its address selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VnState {
    /// Not started yet (no `now` seen), or waiting to (re)start probing.
    Start,
    Probe1,
    Probe2,
    Claim,
    Up,
}

/// A neighbour VN_Port learned from a claim notification or claim response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub enode_mac: MacAddr,
    pub vn_mac: MacAddr,
    pub wwpn: Wwn,
    pub wwnn: Wwn,
    pub max_fcoe_size: u16,
    /// Last beacon, claim or claim response seen from it.
    pub last_seen: Instant,
    /// Whether a beacon was seen since it was added.
    pub beaconed: bool,
}

/// Something the FC layer must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VnEvent {
    /// Our N_Port ID is being given up: every VN2VN login ends (Linux `disc_stop`).
    Restarted,
    /// A neighbour went silent or was replaced: its logins end.
    PeerGone(FcId),
}

/// The VN2VN VN_Port of one interface.
#[derive(Debug)]
pub struct Vn2VnPort {
    enode_mac: MacAddr,
    wwpn: Wwn,
    wwnn: Wwn,
    max_fcoe_size: u16,
    state: VnState,
    port_id: FcId,
    probe_tries: u32,
    rng: u64,
    /// When the state machine next acts (None until the first `now`).
    next: Option<Instant>,
    /// Last claim notification we sent (rate limit for claims answering unknown beacons).
    sol_time: Option<Instant>,
    /// Next beacon while UP.
    beacon_at: Option<Instant>,
    /// When `beacon_at` was first set for a claimer (answered claims may postpone it until
    /// [`BEACON_HOLD`] after that).
    settle_since: Option<Instant>,
    /// A beacon owed after `beacon_at` to a claimer that came too late to postpone it.
    settle_after: Option<Instant>,
    peers: BTreeMap<FcId, Peer>,
    /// Last "neighbour table full" warning.
    full_warned: Option<Instant>,
}

impl Vn2VnPort {
    pub fn new(enode_mac: MacAddr, wwpn: Wwn, wwnn: Wwn, max_fcoe_size: u16) -> Vn2VnPort {
        let mut port = Vn2VnPort {
            enode_mac,
            wwpn,
            wwnn,
            max_fcoe_size,
            state: VnState::Start,
            port_id: FcId::new(0),
            probe_tries: 0,
            // Seeded from the WWPN like Linux, so two l2san instances do not collide forever.
            rng: wwpn.0 ^ 0x9e37_79b9_7f4a_7c15,
            next: None,
            sol_time: None,
            beacon_at: None,
            settle_since: None,
            settle_after: None,
            peers: BTreeMap::new(),
            full_warned: None,
        };
        port.port_id = port.initial_id();
        port
    }

    /// The proposed N_Port ID before any collision: WWPN & 0xFFFF, never 0 or 0xFFFF.
    fn initial_id(&self) -> FcId {
        Self::valid_id((self.wwpn.0 & 0xffff) as u32)
    }

    fn valid_id(id: u32) -> FcId {
        if id == 0 || id == 0xffff {
            FcId::new(1)
        } else {
            FcId::new(id)
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: cheap, deterministic from the WWPN, good enough to spread IDs and fuzz.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn state(&self) -> VnState {
        self.state
    }
    pub fn port_id(&self) -> FcId {
        self.port_id
    }
    /// Our VN_Port MAC, `0E:FD:00:<port id>`.
    pub fn vn_mac(&self) -> MacAddr {
        fpma(VN2VN_FC_MAP, self.port_id)
    }
    /// True once the ID is claimed: FCoE frames to the VN MAC are served.
    pub fn is_addressable(&self) -> bool {
        matches!(self.state, VnState::Claim | VnState::Up)
    }
    pub fn peer(&self, id: FcId) -> Option<&Peer> {
        self.peers.get(&id)
    }
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
    pub fn set_max_fcoe_size(&mut self, size: u16) {
        self.max_fcoe_size = size;
    }

    /// Give up the current ID and probe again (`fcoe_ctlr_vn_restart`).
    fn restart(&mut self, now: Instant, events: &mut Vec<VnEvent>) {
        if self.probe_tries > 0 {
            let r = self.random();
            self.port_id = Self::valid_id((r & 0xffff) as u32);
        }
        let wait = if self.probe_tries < RLIM_COUNT {
            self.probe_tries += 1;
            Duration::from_millis(self.random() % PROBE_WAIT.as_millis() as u64)
        } else {
            RLIM_INT
        };
        self.state = VnState::Start;
        self.next = Some(now + wait);
        self.beacon_at = None;
        self.settle_since = None;
        self.settle_after = None;
        self.peers.clear();
        events.push(VnEvent::Restarted);
    }

    fn repr(&self, subcode: Vn2VnSubcode, claim_size: Option<u16>) -> FipRepr<'static> {
        let claim = subcode.is_claim();
        FipRepr::Vn2Vn(Vn2VnRepr {
            subcode,
            flags: 0,
            enode_mac: self.enode_mac,
            wwnn: self.wwnn,
            vn_port: VnPortId {
                mac: self.vn_mac(),
                fc_id: self.port_id,
                wwpn: self.wwpn,
            },
            fc4_features: claim.then(|| Fc4Features::fcp(Fc4Features::FCP_TARGET)),
            max_fcoe_size: claim.then(|| claim_size.unwrap_or(self.max_fcoe_size)),
        })
    }

    /// Probes, claims and claim responses come from the ENode MAC; beacons from the VN MAC
    /// (`fcoe_ctlr_vn_send`).
    fn send(&self, tx: &mut dyn Transmit, subcode: Vn2VnSubcode, dst: MacAddr, size: Option<u16>) {
        let src = if subcode == Vn2VnSubcode::Beacon {
            self.vn_mac()
        } else {
            self.enode_mac
        };
        send_fip(tx, dst, src, &self.repr(subcode, size));
    }

    fn send_claim(&mut self, now: Instant, tx: &mut dyn Transmit) {
        self.send(tx, Vn2VnSubcode::ClaimNotification, ALL_VN2VN_MACS, None);
        self.sol_time = Some(now);
    }

    /// Run the timers: probing, claiming, beacons and neighbour ageing.
    pub fn tick(&mut self, now: Instant, tx: &mut dyn Transmit) -> Vec<VnEvent> {
        let mut events = Vec::new();
        let Some(next) = self.next else {
            // First sight of the clock: start after a random delay, as Linux does.
            let wait = self.random() % PROBE_WAIT.as_millis() as u64;
            self.next = Some(now + Duration::from_millis(wait));
            return events;
        };
        if self.state == VnState::Up {
            self.age(now, &mut events);
            if self.beacon_at.is_some_and(|t| now >= t) {
                self.send(tx, Vn2VnSubcode::Beacon, ALL_VN2VN_MACS, None);
                match self.settle_after.take() {
                    Some(due) if due > now => {
                        self.beacon_at = Some(due);
                        self.settle_since = Some(due);
                    }
                    _ => {
                        let fuzz = self.random() % BEACON_FUZZ_MS;
                        self.beacon_at = Some(now + BEACON_INT + Duration::from_millis(fuzz));
                        self.settle_since = None;
                    }
                }
            }
            return events;
        }
        if now < next {
            return events;
        }
        match self.state {
            VnState::Start => {
                self.state = VnState::Probe1;
                self.send(tx, Vn2VnSubcode::ProbeRequest, ALL_VN2VN_MACS, None);
                self.next = Some(now + PROBE_WAIT);
            }
            VnState::Probe1 => {
                self.state = VnState::Probe2;
                self.send(tx, Vn2VnSubcode::ProbeRequest, ALL_VN2VN_MACS, None);
                self.next = Some(now + ANN_WAIT);
            }
            VnState::Probe2 => {
                self.state = VnState::Claim;
                self.send_claim(now, tx);
                self.next = Some(now + ANN_WAIT);
            }
            VnState::Claim => {
                self.state = VnState::Up;
                self.send(tx, Vn2VnSubcode::Beacon, ALL_VN2VN_MACS, None);
                // Linux beacons again one announce-wait later, then every 8 s.
                self.beacon_at = Some(now + ANN_WAIT);
                self.probe_tries = 0;
            }
            VnState::Up => {}
        }
        events
    }

    fn age(&mut self, now: Instant, events: &mut Vec<VnEvent>) {
        let gone: Vec<FcId> = self
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_seen) > PEER_AGE)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            tracing::debug!(peer = %id, "VN2VN neighbour aged out after 20 s without a beacon");
            self.peers.remove(&id);
            events.push(VnEvent::PeerGone(id));
        }
    }

    /// Whether the neighbour `id` has (or gets) a place in the table. When the table is full,
    /// a newcomer replaces the neighbour with the least to lose: one without a login with us
    /// (`established` says which have one), preferring one that never beaconed since its
    /// claim, then the longest silent. A forged claim is a one-shot from a made-up port, so
    /// a flood of them replaces its own earlier claims, never a logged-in neighbour, and a
    /// real newcomer (claim, then beacon, then FLOGI) is answered at once.
    ///
    /// Linux's `fcoe_ctlr_vn_add` keeps an unbounded list (`rport_create`) and never ages an
    /// entry that has not beaconed; it logs in on a neighbour's first beacon whether or not it
    /// is still in our table, and our FLOGI answer does not depend on the table either. A real
    /// neighbour replaced here only misses ageing: its next beacon, unknown to us, makes us
    /// claim again, and its claim response puts it back.
    fn room_for(&mut self, id: FcId, now: Instant, established: &dyn Fn(FcId) -> bool) -> bool {
        if id == self.port_id {
            return false;
        }
        if self.peers.len() < MAX_PEERS || self.peers.contains_key(&id) {
            return true;
        }
        let victim = self
            .peers
            .iter()
            .filter(|(&id, _)| !established(id))
            .min_by_key(|(_, p)| (p.beaconed, p.last_seen))
            .map(|(&id, _)| id);
        if self
            .full_warned
            .is_none_or(|t| now.saturating_duration_since(t) >= FULL_WARN_EVERY)
        {
            self.full_warned = Some(now);
            tracing::warn!(
                "VN2VN neighbour table full ({MAX_PEERS} ports): new neighbours replace those \
                 that never logged in. A host may be flooding FIP claims: find it with \
                 `tcpdump -e ether proto 0x8914` and keep it off the SAN segment"
            );
        }
        match victim {
            Some(old) => {
                tracing::debug!(peer = %old, new = %id, "VN2VN neighbour replaced (table full)");
                // It has no login with us: nothing for the FC layer to end.
                self.peers.remove(&old);
                true
            }
            None => false,
        }
    }

    /// Add or refresh a neighbour (`fcoe_ctlr_vn_add`); the caller made room
    /// ([`Vn2VnPort::room_for`]). A different WWPN behind the same ID is a new port: the old
    /// logins end.
    fn add_peer(&mut self, v: &Vn2VnRepr, now: Instant, events: &mut Vec<VnEvent>) {
        let id = v.vn_port.fc_id;
        if id == self.port_id {
            return;
        }
        if let Some(old) = self.peers.get(&id) {
            if old.wwpn != v.vn_port.wwpn || old.wwnn != v.wwnn {
                events.push(VnEvent::PeerGone(id));
            }
        }
        debug_assert!(self.peers.len() < MAX_PEERS || self.peers.contains_key(&id));
        self.peers.insert(
            id,
            Peer {
                enode_mac: v.enode_mac,
                vn_mac: v.vn_port.mac,
                wwpn: v.vn_port.wwpn,
                wwnn: v.wwnn,
                max_fcoe_size: v.max_fcoe_size.unwrap_or(self.max_fcoe_size),
                last_seen: now,
                beaconed: false,
            },
        );
    }

    /// Our next beacon after answering a claim at `now`. Linux logs in (sends a FLOGI) only
    /// after a beacon from a port in its table, which our claim response just put us in. But
    /// not a beacon at once: the neighbour is still claiming for one announce-wait, and Linux
    /// drops a FIP ELS reply that arrives before it is up, so a FLOGI it sent on an early
    /// beacon times out and the login stalls 8 s (seen with a 6.1 guest). Beacon once its
    /// claim is surely done, as LIO's timing does. Later claims postpone that beacon for at
    /// most [`BEACON_HOLD`]; a claim after that gets a beacon of its own after the pending one.
    fn beacon_after_claim(&mut self, now: Instant) {
        let due = now + ANN_WAIT + CLAIM_SETTLE;
        match self.settle_since {
            Some(first) if due > first + BEACON_HOLD => {
                self.settle_after = Some(self.settle_after.map_or(due, |s| s.max(due)));
            }
            Some(_) => self.beacon_at = Some(self.beacon_at.map_or(due, |t| t.max(due))),
            None => {
                self.beacon_at = Some(due);
                self.settle_since = Some(due);
            }
        }
    }

    /// A received VN2VN frame. Returns what the FC layer must act on. `established` says
    /// which neighbours (by N_Port ID) have a login with us: a full neighbour table never
    /// gives their place to a newcomer.
    pub fn handle(
        &mut self,
        v: &Vn2VnRepr,
        now: Instant,
        tx: &mut dyn Transmit,
        established: &dyn Fn(FcId) -> bool,
    ) -> Vec<VnEvent> {
        let mut events = Vec::new();
        if self.next.is_none() {
            // Frames before the first tick: start the clock now.
            self.tick(now, tx);
        }
        let theirs = v.vn_port.fc_id;
        let rec = v.flags & flags::REC_OR_P2P != 0;
        match v.subcode {
            Vn2VnSubcode::ProbeRequest => {
                if theirs != self.port_id {
                    return events;
                }
                match self.state {
                    VnState::Claim | VnState::Up => {
                        self.send(tx, Vn2VnSubcode::ProbeReply, v.enode_mac, None)
                    }
                    VnState::Probe1 | VnState::Probe2 if self.wwpn > v.vn_port.wwpn && !rec => {
                        self.send(tx, Vn2VnSubcode::ProbeReply, v.enode_mac, None)
                    }
                    _ => self.restart(now, &mut events),
                }
            }
            Vn2VnSubcode::ProbeReply => {
                if theirs != self.port_id {
                    return events;
                }
                if self.state == VnState::Up {
                    self.send_claim(now, tx);
                } else {
                    self.restart(now, &mut events);
                }
            }
            Vn2VnSubcode::ClaimNotification => {
                if rec {
                    // Linux: P2P mode is unsupported; it answers with a probe.
                    self.send(tx, Vn2VnSubcode::ProbeRequest, ALL_VN2VN_MACS, None);
                    return events;
                }
                match self.state {
                    VnState::Start | VnState::Probe1 | VnState::Probe2 => {
                        if theirs == self.port_id {
                            self.restart(now, &mut events);
                        }
                    }
                    VnState::Claim | VnState::Up => {
                        if theirs == self.port_id {
                            if v.vn_port.wwpn > self.wwpn {
                                self.restart(now, &mut events);
                            } else {
                                self.send_claim(now, tx);
                            }
                            return events;
                        }
                        if !self.room_for(theirs, now, established) {
                            return events;
                        }
                        let size = v
                            .max_fcoe_size
                            .map_or(self.max_fcoe_size, |s| s.min(self.max_fcoe_size));
                        self.send(tx, Vn2VnSubcode::ClaimResponse, v.enode_mac, Some(size));
                        self.add_peer(v, now, &mut events);
                        if self.state == VnState::Up {
                            self.beacon_after_claim(now);
                        }
                    }
                }
            }
            Vn2VnSubcode::ClaimResponse => {
                if self.is_addressable() && self.room_for(theirs, now, established) {
                    self.add_peer(v, now, &mut events);
                }
            }
            Vn2VnSubcode::Beacon => {
                if rec {
                    self.send(tx, Vn2VnSubcode::ProbeRequest, ALL_VN2VN_MACS, None);
                    return events;
                }
                if let Some(p) = self.peers.get_mut(&theirs) {
                    if p.wwpn == v.vn_port.wwpn && p.wwnn == v.wwnn {
                        p.last_seen = now;
                        p.beaconed = true;
                    }
                    return events;
                }
                // A beacon from a port we do not know: claim again (rate limited) so that it
                // answers with a claim response and we learn it.
                if self.state == VnState::Up && self.sol_time.is_none_or(|t| now >= t + ANN_WAIT) {
                    self.send_claim(now, tx);
                }
            }
        }
        events
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use l2san_common::io::TxBatch;
    use l2san_common::test_utils::drain;

    use super::*;
    use crate::wire::fip::{FipPacket, VN2VN_FC_MAP};

    const OUR_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x4c, 0x10, 0x0a]);
    const OUR_WWPN: Wwn = Wwn(0x2000_5254_004c_100a);

    /// A port that is up, and the clock it was brought up with.
    fn up() -> (Vn2VnPort, Instant, TxBatch) {
        let mut port = Vn2VnPort::new(OUR_MAC, OUR_WWPN, Wwn(0x1000_5254_004c_100a), 2158);
        let mut tx = TxBatch::new(16);
        let mut now = Instant::now();
        for _ in 0..40 {
            port.tick(now, &mut tx);
            now += Duration::from_millis(50);
        }
        assert_eq!(port.state(), VnState::Up);
        drain(&mut tx);
        (port, now, tx)
    }

    /// A neighbour's VN2VN frame: port `id`, ENode MAC `enode`, WWPN derived from both.
    fn vn2vn(subcode: Vn2VnSubcode, id: FcId, enode: MacAddr) -> Vn2VnRepr {
        let wwpn = Wwn(0x2000_0000_0000_0000 | u64::from(id.get()) << 16 | u64::from(enode.0[5]));
        initiator_vn2vn(subcode, id, enode, wwpn)
    }

    /// The VN2VN frame of an initiator neighbour: port `id` at its FPMA, ENode MAC `enode`,
    /// `wwpn`; claims carry the FCP initiator feature and a max FCoE size of 2158.
    pub(crate) fn initiator_vn2vn(
        subcode: Vn2VnSubcode,
        id: FcId,
        enode: MacAddr,
        wwpn: Wwn,
    ) -> Vn2VnRepr {
        let claim = subcode.is_claim();
        Vn2VnRepr {
            subcode,
            flags: 0,
            enode_mac: enode,
            wwnn: Wwn(wwpn.0 ^ 0x3000_0000_0000_0000),
            vn_port: VnPortId {
                mac: fpma(VN2VN_FC_MAP, id),
                fc_id: id,
                wwpn,
            },
            fc4_features: claim.then(|| Fc4Features::fcp(Fc4Features::FCP_INITIATOR)),
            max_fcoe_size: claim.then_some(2158),
        }
    }

    /// Made-up ports of a claim flood: random IDs (never ours or one of `avoid`, never twice)
    /// from random locally administered MACs.
    struct Forger {
        x: u64,
        used: BTreeSet<u32>,
    }

    impl Forger {
        fn new(avoid: &[FcId]) -> Forger {
            Forger {
                x: 0x0123_4567_89ab_cdef,
                used: avoid.iter().map(|id| id.get()).collect(),
            }
        }
        fn next(&mut self) -> u64 {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            self.x
        }
        /// A one-shot claim from a new port.
        fn claim(&mut self, port: &Vn2VnPort) -> Vn2VnRepr {
            loop {
                let r = self.next();
                let id = (r & 0xffff) as u32;
                if id == 0 || id == 0xffff || id == port.port_id().get() || !self.used.insert(id) {
                    continue;
                }
                let b = (r >> 16).to_be_bytes();
                let enode = MacAddr([0x02, b[3], b[4], b[5], b[6], b[7]]);
                return vn2vn(Vn2VnSubcode::ClaimNotification, FcId::new(id), enode);
            }
        }
    }

    /// The VN2VN frames we sent, with their destination.
    fn sent(tx: &mut TxBatch) -> Vec<(Vn2VnSubcode, MacAddr)> {
        drain(tx)
            .iter()
            .filter_map(|f| {
                let dst = MacAddr(f[..6].try_into().ok()?);
                match FipRepr::parse(&FipPacket::new_checked(&f[14..]).ok()?).ok()? {
                    FipRepr::Vn2Vn(v) => Some((v.subcode, dst)),
                    _ => None,
                }
            })
            .collect()
    }

    const NONE: &dyn Fn(FcId) -> bool = &|_| false;

    /// Fill the table with one-shot claims, one a millisecond.
    fn flood_full(port: &mut Vn2VnPort, forger: &mut Forger, now: &mut Instant, tx: &mut TxBatch) {
        while port.peer_count() < MAX_PEERS {
            let c = forger.claim(port);
            port.handle(&c, *now, tx, NONE);
            *now += Duration::from_millis(1);
        }
        drain(tx);
    }

    /// A table full of forged one-shot claims still takes a real newcomer: its claim is
    /// answered, it stays while the flood goes on, our beacon follows its claim, and once it
    /// has logged in no forged claim takes its place.
    #[test]
    fn a_claim_flood_leaves_room_for_a_real_neighbour() {
        let (mut port, mut now, mut tx) = up();
        let real_id = FcId::new(0x3456);
        let real_mac = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        let mut forger = Forger::new(&[real_id]);
        flood_full(&mut port, &mut forger, &mut now, &mut tx);

        let claimed = now;
        port.handle(
            &vn2vn(Vn2VnSubcode::ClaimNotification, real_id, real_mac),
            now,
            &mut tx,
            NONE,
        );
        assert_eq!(
            sent(&mut tx),
            [(Vn2VnSubcode::ClaimResponse, real_mac)],
            "a real claim into a full table must be answered"
        );
        assert!(port.peer(real_id).is_some());
        assert_eq!(port.peer_count(), MAX_PEERS);

        // The flood goes on (a claim every 4 ms); the newcomer beacons after its claim, and
        // we beacon once its claim is done (claims postpone it by BEACON_HOLD at most).
        let mut our_beacon = None;
        for ms in (4..3200).step_by(4) {
            now = claimed + Duration::from_millis(ms);
            let c = forger.claim(&port);
            port.handle(&c, now, &mut tx, NONE);
            if ms == 400 {
                port.handle(
                    &vn2vn(Vn2VnSubcode::Beacon, real_id, real_mac),
                    now,
                    &mut tx,
                    NONE,
                );
                assert!(port.peer(real_id).is_some_and(|p| p.beaconed));
            }
            port.tick(now, &mut tx);
            for (subcode, dst) in sent(&mut tx) {
                if subcode == Vn2VnSubcode::Beacon
                    && now >= claimed + ANN_WAIT + CLAIM_SETTLE
                    && our_beacon.is_none()
                {
                    assert_eq!(dst, ALL_VN2VN_MACS);
                    our_beacon = Some(now);
                }
            }
            assert_eq!(port.peer_count(), MAX_PEERS);
            assert!(port.peer(real_id).is_some(), "the newcomer was replaced");
        }
        assert!(
            our_beacon.is_some(),
            "no beacon of ours after the newcomer's claim: it cannot log in"
        );

        // It logs in; forged claims (many times the table) never replace it.
        let logged_in = |id: FcId| id == real_id;
        for _ in 0..4 * MAX_PEERS {
            let c = forger.claim(&port);
            port.handle(&c, now, &mut tx, &logged_in);
            now += Duration::from_millis(1);
        }
        assert!(
            port.peer(real_id).is_some(),
            "a logged-in neighbour was replaced"
        );
        assert_eq!(port.peer_count(), MAX_PEERS);
    }

    /// Who is replaced first: never-beaconed before beaconed, the longest silent first, and
    /// never a neighbour with a login. A table full of logins refuses newcomers unanswered.
    #[test]
    fn eviction_order_and_logged_in_neighbours() {
        let (mut port, mut now, mut tx) = up();
        let mut forger = Forger::new(&[]);
        flood_full(&mut port, &mut forger, &mut now, &mut tx);
        let ids: Vec<FcId> = port.peers.keys().copied().collect();
        // 64 of them log in (as many as the FC layer allows sessions), 32 more beacon.
        let logged: BTreeSet<FcId> = ids.iter().step_by(4).copied().collect();
        let beaconing: Vec<FcId> = ids.iter().skip(1).step_by(8).copied().collect();
        assert_eq!((logged.len(), beaconing.len()), (64, 32));
        let established = |id: FcId| logged.contains(&id);
        for &id in &beaconing {
            let p = port.peers[&id];
            let mut b = vn2vn(Vn2VnSubcode::Beacon, id, p.enode_mac);
            b.wwnn = p.wwnn;
            b.vn_port.wwpn = p.wwpn;
            port.handle(&b, now, &mut tx, &established);
            assert!(port.peers[&id].beaconed);
        }
        // A flood of one-shots replaces one-shots only (its own, the longest silent first).
        let first_one_shot = *ids
            .iter()
            .filter(|id| !port.peers[id].beaconed && !logged.contains(id))
            .min_by_key(|id| port.peers[id].last_seen)
            .unwrap();
        let c = forger.claim(&port);
        port.handle(&c, now, &mut tx, &established);
        now += Duration::from_millis(1);
        assert!(
            port.peer(first_one_shot).is_none(),
            "not the longest silent one-shot"
        );
        for _ in 0..4 * MAX_PEERS {
            let c = forger.claim(&port);
            port.handle(&c, now, &mut tx, &established);
            now += Duration::from_millis(1);
        }
        assert!(beaconing.iter().all(|id| port.peer(*id).is_some()));
        assert!(logged.iter().all(|id| port.peer(*id).is_some()));
        // With no one-shot left, the longest silent beaconing neighbour goes, never one with
        // a login.
        let rest: Vec<FcId> = port
            .peers
            .keys()
            .filter(|id| !logged.contains(id) && !beaconing.contains(id))
            .copied()
            .collect();
        for id in rest {
            let p = port.peers[&id];
            let mut b = vn2vn(Vn2VnSubcode::Beacon, id, p.enode_mac);
            b.wwnn = p.wwnn;
            b.vn_port.wwpn = p.wwpn;
            port.handle(&b, now, &mut tx, &established);
        }
        let c = forger.claim(&port);
        port.handle(&c, now, &mut tx, &established);
        assert!(port.peer(beaconing[0]).is_none() && port.peer(c.vn_port.fc_id).is_some());
        for _ in 0..4 * MAX_PEERS {
            let c = forger.claim(&port);
            port.handle(&c, now, &mut tx, &established);
            now += Duration::from_millis(1);
        }
        assert!(logged.iter().all(|id| port.peer(*id).is_some()));
        // Forged claim responses get no further.
        for _ in 0..MAX_PEERS {
            let mut c = forger.claim(&port);
            c.subcode = Vn2VnSubcode::ClaimResponse;
            port.handle(&c, now, &mut tx, &established);
        }
        assert!(logged.iter().all(|id| port.peer(*id).is_some()));
        assert_eq!(port.peer_count(), MAX_PEERS);
        drain(&mut tx);

        // Everyone logged in: a newcomer is neither answered nor added.
        let everyone = |_: FcId| true;
        let c = forger.claim(&port);
        port.handle(&c, now, &mut tx, &everyone);
        assert!(sent(&mut tx).is_empty());
        assert!(port.peer(c.vn_port.fc_id).is_none());
        assert_eq!(port.peer_count(), MAX_PEERS);
    }

    /// Claims from new ports every 100 ms must not hold back our beacons: every claimer gets
    /// a beacon after its claim is done and within a bounded time, and an isolated claim
    /// still gets its beacon only after the claimer's announce-wait.
    #[test]
    fn steady_claims_do_not_starve_our_beacons() {
        let (mut port, start, mut tx) = up();
        let mut forger = Forger::new(&[]);
        let mut claims = Vec::new();
        let mut beacons = Vec::new();
        let mut now = start;
        while now < start + Duration::from_secs(10) {
            if (now - start).as_millis() % 100 == 0 {
                let c = forger.claim(&port);
                port.handle(&c, now, &mut tx, NONE);
                claims.push(now);
            }
            port.tick(now, &mut tx);
            beacons.extend(
                sent(&mut tx)
                    .into_iter()
                    .filter(|s| s.0 == Vn2VnSubcode::Beacon)
                    .map(|_| now),
            );
            now += Duration::from_millis(10);
        }
        assert!(
            beacons.len() >= 3,
            "beacons during 10 s of claims: {beacons:?}"
        );
        let settle = ANN_WAIT + CLAIM_SETTLE;
        let bound = settle + BEACON_HOLD + settle;
        for &c in claims.iter().filter(|&&c| c + bound < now) {
            assert!(
                beacons.iter().any(|&b| b >= c + settle && b <= c + bound),
                "no beacon for the claim at {:?}: {beacons:?}",
                c - start
            );
        }

        // An isolated claim: no beacon before its announce-wait plus the margin.
        now += BEACON_INT * 2;
        port.tick(now, &mut tx);
        drain(&mut tx);
        let claimed = now;
        let c = forger.claim(&port);
        port.handle(&c, now, &mut tx, NONE);
        let mut first = None;
        while first.is_none() && now < claimed + Duration::from_secs(2) {
            now += Duration::from_millis(10);
            port.tick(now, &mut tx);
            if sent(&mut tx).iter().any(|s| s.0 == Vn2VnSubcode::Beacon) {
                first = Some(now);
            }
        }
        let first = first.expect("no beacon after an isolated claim");
        assert!(first >= claimed + settle && first <= claimed + settle + Duration::from_millis(20));
    }
}
