//! A VN_Port joining a VN2VN segment (FC-BB-6 7.12.4; Linux `fcoe_ctlr_vn_*`), as an
//! initiator does it:
//! 1. a Probe Request for a port ID to All-VN2VN-MACs; a VN_Port that owns the ID answers with
//!    a Probe Reply, and another ID is tried;
//! 2. after a quiet wait, a Claim Notification for it: every VN_Port in CLAIM or UP state
//!    answers with a unicast Claim Response describing itself (ENode MAC, WWNN, VN_Port ID,
//!    FC-4 features, max FCoE size); a port that holds the same ID defends it with a claim
//!    of its own;
//! 3. beacons every 8 s keep it in its neighbours' tables (they age a silent port out after
//!    2.5 periods).
//!
//! Probe requests and claims go from the ENode MAC, beacons from the VN MAC (as Linux sends
//! them: linux-fcoe-vn2vn-vs-lio.pcap frames 8, 11 and 14).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use l2san_common::ether::MacAddr;

use super::frame::{fip_frame, vn2vn_of};
use super::Port;
use crate::wire::fip::{
    fpma, Fc4Features, FipRepr, Vn2VnRepr, Vn2VnSubcode, VnPortId, ALL_VN2VN_MACS, VN2VN_FC_MAP,
};
use crate::wire::{FcId, Wwn};

/// VN2VN beacon period (FC-BB-6 `FIP_VN_BEACON_INT`).
pub const BEACON_EVERY: Duration = Duration::from_secs(8);

/// Our VN_Port on a VN2VN segment: who we are and what our claims say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vn2VnPort {
    pub port: Port,
    /// The FC-4 features our claims carry (FCP initiator; none for a port that only looks).
    pub fc4: Fc4Features,
    /// The max FCoE size our claims carry ([`super::frame::max_fcoe_size`]).
    pub max_fcoe_size: u16,
}

impl Vn2VnPort {
    /// The meaning of our frame of `subcode`: claims carry FC-4 features and size.
    pub fn repr(&self, subcode: Vn2VnSubcode) -> Vn2VnRepr {
        let claim = subcode.is_claim();
        Vn2VnRepr {
            subcode,
            flags: 0,
            enode_mac: self.port.enode,
            wwnn: self.port.wwnn,
            vn_port: VnPortId {
                mac: self.port.mac,
                fc_id: self.port.id,
                wwpn: self.port.wwpn,
            },
            fc4_features: claim.then_some(self.fc4),
            max_fcoe_size: claim.then_some(self.max_fcoe_size),
        }
    }

    /// Our multicast frame of `subcode` (probe request, claim notification, beacon).
    pub fn frame(&self, subcode: Vn2VnSubcode) -> Vec<u8> {
        let src = if subcode == Vn2VnSubcode::Beacon {
            self.port.mac
        } else {
            self.port.enode
        };
        fip_frame(ALL_VN2VN_MACS, src, &FipRepr::Vn2Vn(self.repr(subcode)))
    }

    /// A Claim Notification.
    pub fn claim(&self) -> Vec<u8> {
        self.frame(Vn2VnSubcode::ClaimNotification)
    }

    /// A beacon.
    pub fn beacon(&self) -> Vec<u8> {
        self.frame(Vn2VnSubcode::Beacon)
    }

    /// What a received VN2VN frame (sent from `src` to `dst`) is to us: `None` for our own
    /// frames, frames to someone else, and probe requests (nothing to learn from); probe
    /// replies and claim responses count only when sent to us.
    pub fn heard(&self, src: MacAddr, dst: MacAddr, v: &Vn2VnRepr) -> Option<Vn2VnSubcode> {
        let me = self.port.enode;
        if src == me || (dst != me && dst != ALL_VN2VN_MACS) || v.enode_mac == me {
            return None;
        }
        match v.subcode {
            Vn2VnSubcode::ProbeRequest => None,
            Vn2VnSubcode::ProbeReply | Vn2VnSubcode::ClaimResponse if dst != me => None,
            s => Some(s),
        }
    }

    /// Does this frame answer our claim (a Claim Response to our ENode MAC) or defend our ID
    /// against it (a claim for our port ID from another WWPN)? Either way it describes a
    /// port that is up on the segment.
    pub fn answers_claim(&self, dst: MacAddr, v: &Vn2VnRepr) -> bool {
        let answer = v.subcode == Vn2VnSubcode::ClaimResponse && dst == self.port.enode;
        let defends = v.subcode == Vn2VnSubcode::ClaimNotification
            && v.vn_port.fc_id == self.port.id
            && v.vn_port.wwpn != self.port.wwpn;
        answer || defends
    }
}

/// A VN_Port heard on the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub enode: MacAddr,
    pub wwnn: Wwn,
    pub vn_port: VnPortId,
    /// From a claim or claim response (beacons carry none).
    pub fc4: Option<Fc4Features>,
    pub max_fcoe_size: Option<u16>,
    /// What it was heard in.
    pub heard: BTreeSet<HeardIn>,
}

/// The kind of frame a neighbour was heard in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HeardIn {
    ProbeReply,
    Claim,
    ClaimResponse,
    Beacon,
}

impl HeardIn {
    fn of(subcode: Vn2VnSubcode) -> Option<HeardIn> {
        match subcode {
            Vn2VnSubcode::ProbeRequest => None,
            Vn2VnSubcode::ProbeReply => Some(HeardIn::ProbeReply),
            Vn2VnSubcode::ClaimNotification => Some(HeardIn::Claim),
            Vn2VnSubcode::ClaimResponse => Some(HeardIn::ClaimResponse),
            Vn2VnSubcode::Beacon => Some(HeardIn::Beacon),
        }
    }
}

impl Neighbour {
    /// A neighbour as one frame describes it.
    pub fn of(v: &Vn2VnRepr) -> Neighbour {
        Neighbour {
            enode: v.enode_mac,
            wwnn: v.wwnn,
            vn_port: v.vn_port,
            fc4: v.fc4_features,
            max_fcoe_size: v.max_fcoe_size,
            heard: HeardIn::of(v.subcode).into_iter().collect(),
        }
    }

    /// Its claims say it is an FCP target.
    pub fn is_fcp_target(&self) -> bool {
        self.fc4
            .is_some_and(|f| f.features_of(Fc4Features::TYPE_FCP) & Fc4Features::FCP_TARGET != 0)
    }

    /// The port to log in to: FCoE frames to its VN MAC, FIP to its ENode MAC.
    pub fn port(&self) -> Port {
        Port {
            enode: self.enode,
            mac: self.vn_port.mac,
            id: self.vn_port.fc_id,
            wwpn: self.vn_port.wwpn,
            wwnn: self.wwnn,
        }
    }
}

/// How a [`Join`] paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinConfig {
    /// Send a probe first (true) or only listen (false).
    pub claim: bool,
    /// How long to wait for a Probe Reply before claiming (Linux waits 100 + 400 ms).
    pub probe_wait: Duration,
    /// When a claim is repeated, against a lost frame.
    pub claim_again: Duration,
    /// Claims sent in all.
    pub claims: u32,
    /// Port IDs tried before giving up.
    pub probe_tries: u32,
}

/// Where a [`Join`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinState {
    /// Listening only.
    Off,
    /// Probe Request sent for the current ID, waiting for a reply that says it is taken.
    Probing,
    /// `claims` Claim Notifications sent.
    Claimed { claims: u32 },
    /// Every ID tried was taken.
    GaveUp,
}

/// A VN_Port joining the segment and the neighbours it hears. Frames to send are pushed on
/// `out`.
#[derive(Debug, Clone)]
pub struct Join {
    port: Vn2VnPort,
    cfg: JoinConfig,
    state: JoinState,
    since: Instant,
    probe_tries: u32,
    rng: u64,
    neighbours: BTreeMap<(FcId, Wwn, MacAddr), Neighbour>,
}

/// A random port ID's low 16 bits; 0 and 0xffff (not port IDs) become 0x4c32.
pub fn port_id_from(v: u32) -> FcId {
    let v = v & 0xffff;
    FcId::new(if v == 0 || v == 0xffff { 0x4c32 } else { v })
}

impl Join {
    /// `seed` drives the choice of another ID when ours is taken.
    pub fn new(port: Vn2VnPort, cfg: JoinConfig, seed: u64, now: Instant) -> Join {
        Join {
            state: if cfg.claim {
                JoinState::Probing
            } else {
                JoinState::Off
            },
            port,
            cfg,
            since: now,
            probe_tries: 0,
            rng: seed,
            neighbours: BTreeMap::new(),
        }
    }

    pub fn port(&self) -> &Vn2VnPort {
        &self.port
    }

    pub fn state(&self) -> JoinState {
        self.state
    }

    /// The neighbours heard, by (port ID, WWPN, ENode MAC).
    pub fn neighbours(&self) -> impl Iterator<Item = &Neighbour> {
        self.neighbours.values()
    }

    /// The first frame: the Probe Request, when claiming.
    pub fn start(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.since = now;
        if self.state == JoinState::Probing {
            out.push(self.port.frame(Vn2VnSubcode::ProbeRequest));
            self.probe_tries = 1;
        }
    }

    /// When [`tick`](Self::tick) next has something to do, if ever.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match self.state {
            JoinState::Probing => Some(self.since + self.cfg.probe_wait),
            JoinState::Claimed { claims } if claims < self.cfg.claims => {
                Some(self.since + self.cfg.claim_again)
            }
            _ => None,
        }
    }

    /// Timers: claim once the probe went unanswered, repeat the claim.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        match self.state {
            JoinState::Probing if now >= self.since + self.cfg.probe_wait => {
                tracing::debug!(
                    "claiming VN2VN port ID {} as ENode {} (WWPN {})",
                    self.port.port.id,
                    self.port.port.enode,
                    self.port.port.wwpn
                );
                out.push(self.port.claim());
                self.state = JoinState::Claimed { claims: 1 };
                self.since = now;
            }
            JoinState::Claimed { claims }
                if claims < self.cfg.claims && now >= self.since + self.cfg.claim_again =>
            {
                out.push(self.port.claim());
                self.state = JoinState::Claimed { claims: claims + 1 };
                self.since = now;
            }
            _ => {}
        }
    }

    /// A received frame. Returns what a VN2VN frame for us was heard as (and records its
    /// sender as a neighbour); a Probe Reply for the ID we are probing makes us try another.
    pub fn on_frame(
        &mut self,
        frame: &[u8],
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> Option<Vn2VnSubcode> {
        let (dst, src, v) = vn2vn_of(frame)?;
        let heard = self.port.heard(src, dst, &v)?;
        if heard == Vn2VnSubcode::ProbeReply
            && v.vn_port.fc_id == self.port.port.id
            && self.state == JoinState::Probing
        {
            self.pick_another_id(now, out);
        }
        self.record(&v);
        Some(heard)
    }

    fn pick_another_id(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        if self.probe_tries >= self.cfg.probe_tries {
            self.state = JoinState::GaveUp;
            return;
        }
        let taken: BTreeSet<FcId> = self.neighbours.keys().map(|k| k.0).collect();
        loop {
            // xorshift64*
            let mut x = self.rng;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.rng = x;
            let id = port_id_from((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32);
            if id != self.port.port.id && !taken.contains(&id) {
                self.port.port.id = id;
                self.port.port.mac = fpma(VN2VN_FC_MAP, id);
                break;
            }
        }
        self.probe_tries += 1;
        self.since = now;
        out.push(self.port.frame(Vn2VnSubcode::ProbeRequest));
    }

    fn record(&mut self, v: &Vn2VnRepr) {
        let key = (v.vn_port.fc_id, v.vn_port.wwpn, v.enode_mac);
        let heard = Neighbour::of(v);
        let e = self.neighbours.entry(key).or_insert_with(|| Neighbour {
            heard: BTreeSet::new(),
            fc4: None,
            max_fcoe_size: None,
            ..heard.clone()
        });
        e.wwnn = v.wwnn;
        e.vn_port.mac = v.vn_port.mac;
        e.fc4 = v.fc4_features.or(e.fc4);
        e.max_fcoe_size = v.max_fcoe_size.or(e.max_fcoe_size);
        e.heard.extend(heard.heard);
    }
}
