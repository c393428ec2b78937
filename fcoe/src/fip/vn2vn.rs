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
//!
//! Driven by `now`; it never reads a clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use l2san_common::ether::MacAddr;
use l2san_common::io::Transmit;

use crate::fc::tx::send_fip;
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
/// At most this many neighbours are remembered; claims beyond it are not answered.
pub const MAX_PEERS: usize = 256;

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
    peers: BTreeMap<FcId, Peer>,
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
            peers: BTreeMap::new(),
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
                let fuzz = self.random() % BEACON_FUZZ_MS;
                self.beacon_at = Some(now + BEACON_INT + Duration::from_millis(fuzz));
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

    /// Add or refresh a neighbour (`fcoe_ctlr_vn_add`). A different WWPN behind the same
    /// ID is a new port: the old logins end.
    fn add_peer(&mut self, v: &Vn2VnRepr, now: Instant, events: &mut Vec<VnEvent>) {
        let id = v.vn_port.fc_id;
        if id == self.port_id {
            return;
        }
        if let Some(old) = self.peers.get(&id) {
            if old.wwpn != v.vn_port.wwpn || old.wwnn != v.wwnn {
                events.push(VnEvent::PeerGone(id));
            }
        } else if self.peers.len() >= MAX_PEERS {
            tracing::warn!(peer = %id, "VN2VN neighbour table full; ignoring a new neighbour");
            return;
        }
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

    /// A received VN2VN frame. Returns what the FC layer must act on.
    pub fn handle(&mut self, v: &Vn2VnRepr, now: Instant, tx: &mut dyn Transmit) -> Vec<VnEvent> {
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
                        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&theirs) {
                            return events;
                        }
                        let size = v
                            .max_fcoe_size
                            .map_or(self.max_fcoe_size, |s| s.min(self.max_fcoe_size));
                        self.send(tx, Vn2VnSubcode::ClaimResponse, v.enode_mac, Some(size));
                        self.add_peer(v, now, &mut events);
                        if self.state == VnState::Up {
                            // Linux logs in (sends a FLOGI) only after a beacon from a port in
                            // its table, which the claim response above just put us in. But not
                            // a beacon at once: the neighbour is still claiming for one
                            // announce-wait, and Linux drops a FIP ELS reply that arrives
                            // before it is up, so a FLOGI it sent on an early beacon times out
                            // and the login stalls 8 s (seen with a 6.1 guest). Beacon once its
                            // claim is surely done, as LIO's timing does.
                            self.beacon_at = Some(now + ANN_WAIT + CLAIM_SETTLE);
                        }
                    }
                }
            }
            Vn2VnSubcode::ClaimResponse => {
                if self.is_addressable() {
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
