//! The probe without sockets: [`Discovery`] drives both sans-IO initiators (AoE's and the
//! VN2VN `Join`), is handed frames and `now`, hands back frames to send, and at the end builds
//! the [`Report`] with the conflicts flagged.
//!
//! AoE: a broadcast Query Config (major 0xffff, minor 0xff; tags with bit 31 set, like
//! aoetools, so that a Linux `aoe` driver on this host ignores the answers) at the start and
//! again after a second. Every export answers from its interface MAC, one response per
//! shelf.slot. Each (MAC, shelf.slot) then gets a unicast IDENTIFY DEVICE (lba3 0xA0, count 1,
//! up to three tries) for the capacity (words 100-103 when word 83 or 86 says LBA48, else
//! 60-61), the model and the serial; sectors per frame, buffer count, firmware version and
//! config string come from the config response. A shelf.slot answered from two MACs is a
//! conflict. The requests, their tags, the matching of answers and the retries are
//! `l2san_aoe::initiator`'s.
//!
//! FCoE VN2VN: beacons come only every 8 s, so the probe does not wait for them. It becomes a
//! short-lived VN2VN neighbour instead, the way a Linux VN_Port joins: a Probe Request for a
//! port ID to All-VN2VN-MACs (any VN_Port that owns the ID answers with a Probe Reply; then
//! another ID is tried), and 250 ms later a Claim Notification for it. Every VN_Port in CLAIM or
//! UP state, l2san's and Linux `fcoe_ctlr_vn_claim_notify` alike, answers a claim for an ID
//! that is not its own with a unicast Claim Response carrying its ENode MAC, WWNN, VN_Port ID
//! (VN MAC, port ID, WWPN), FC-4 features and max FCoE size. The claim is sent twice, a second
//! apart, against a lost frame. Beacons, claims and probe replies heard meanwhile are listed
//! too; `--fcoe-passive` sends nothing FCoE and only listens (use `--timeout 9` or more to hear
//! every port's beacon).
//!
//! The probe's VN_Port uses a locally administered ENode MAC of its own, `0a:4c:32:<last three
//! bytes of the interface MAC>`, so that a Linux FCoE instance on the same interface is not
//! confused, and a stable port ID derived from it (so repeated probes from one host update one
//! neighbour entry in the peers' tables instead of adding new ones). Its WWPN is
//! `10:00:<ENode MAC>`: lower than any NAA 2 or 5 name, so that if its claim ever meets a port
//! with the same ID, that port defends its ID (re-claims) rather than giving it up. It claims
//! no FC-4 type and never beacons: Linux logs in only to peers that beacon, and l2san never
//! logs in, so nobody tries to log in to it. l2san ages it out after 20 s; Linux keeps an idle
//! (never logged in) entry for it, one per probing host since its port ID is stable.
//!
//! A port ID claimed by two WWPNs, or one WWPN claimed from two ENode MACs, is a conflict.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use l2san_aoe::initiator::{AtaRefused, AtaReply, AtaRequest, Event, Initiator, Retry, Tags};
use l2san_common::ether::MIN_FRAME_LEN;
use l2san_common::{EtherType, EthernetFrame, MacAddr};
use l2san_fcoe::initiator::vn2vn::{port_id_from as valid_port_id, HeardIn, Join, JoinConfig};
use l2san_fcoe::initiator::{wwn_of as wwn, Port, Vn2VnPort};
use l2san_fcoe::wire::fip::Fc4Features;
use l2san_fcoe::wire::{FcId, Wwn};

use super::report::{AoeFound, Identity, Report, VnFound};

/// How long an IDENTIFY may take before it is sent again, and how often it is sent.
const IDENTIFY_RETRY: Retry = Retry {
    after: Duration::from_millis(500),
    tries: 3,
};
/// When the broadcast Query Config is repeated.
const QUERY_AGAIN: Duration = Duration::from_secs(1);
/// How long to wait for a Probe Reply before claiming (Linux waits 100 + 400 ms).
const PROBE_WAIT: Duration = Duration::from_millis(250);
/// When the claim is repeated.
const CLAIM_AGAIN: Duration = Duration::from_secs(1);
/// Port IDs tried before giving up on claiming.
const PROBE_TRIES: u32 = 4;
/// The largest FCoE frame we say we take (FC-BB-5: 2112-byte payload plus headers).
const MAX_FCOE_SIZE: u16 = 2158;

/// What the probe is set up with.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The interface MAC: source of the AoE requests, destination of their answers.
    pub mac: MacAddr,
    /// Tag bits 16-30, so that two probes on one segment do not take each other's answers.
    pub tag_seed: u16,
    /// Claim a VN2VN port ID (true) or only listen (false).
    pub fcoe_claim: bool,
    pub mtu: u32,
}

type AoeKey = (u16, u8, MacAddr);

/// The probe without sockets: frames in, frames out, driven by `now`.
pub struct Discovery {
    /// Our short-lived VN_Port: probe, claims, and the VN2VN ports heard.
    join: Join,
    started: Instant,
    queries_sent: u32,
    /// The AoE requests: tags, IDENTIFY matching and retries.
    initiator: Initiator,
    aoe: BTreeMap<AoeKey, AoeFound>,
}

/// The probe's ENode MAC: `0a:4c:32` and the last three bytes of the interface MAC (any
/// other byte changed if that is the interface MAC itself).
pub fn enode_mac_for(mac: MacAddr) -> MacAddr {
    let m = mac.0;
    let mut e = [0x0a, 0x4c, 0x32, m[3], m[4], m[5]];
    if e == m {
        e[2] ^= 1;
    }
    MacAddr(e)
}

fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < MIN_FRAME_LEN {
        frame.resize(MIN_FRAME_LEN, 0);
    }
    frame
}

impl Discovery {
    pub fn new(cfg: ProbeConfig, now: Instant) -> Discovery {
        let enode_mac = enode_mac_for(cfg.mac);
        let e = enode_mac.0;
        // Not the interface MAC's low 16 bits: that is what default l2san and Linux WWPNs
        // (20:00:<MAC>) make their port ID.
        let port_id = valid_port_id(u32::from(u16::from_be_bytes([e[4], e[5]]) ^ 0x4c32));
        let rng = u64::from_be_bytes([0, 0, e[0], e[1], e[2], e[3], e[4], e[5]])
            ^ u64::from(cfg.tag_seed) << 48
            ^ 0x9e37_79b9_7f4a_7c15;
        // Tags with bit 31 and the seed's 15 bits above a counter.
        let tags = Tags::new(0x8000_0000 | u32::from(cfg.tag_seed & 0x7fff) << 16, 0);
        let port = Vn2VnPort {
            port: Port::vn2vn(
                enode_mac,
                port_id,
                wwn(0x1000, enode_mac),
                wwn(0x2000, enode_mac),
            ),
            // No FC-4 type: nothing to log in to.
            fc4: Fc4Features::empty(),
            max_fcoe_size: MAX_FCOE_SIZE.min(u16::try_from(cfg.mtu).unwrap_or(u16::MAX)),
        };
        let join = JoinConfig {
            claim: cfg.fcoe_claim,
            probe_wait: PROBE_WAIT,
            claim_again: CLAIM_AGAIN,
            claims: 2,
            probe_tries: PROBE_TRIES,
        };
        Discovery {
            initiator: Initiator::new(cfg.mac, tags, Some(IDENTIFY_RETRY)),
            join: Join::new(port, join, rng, now),
            started: now,
            queries_sent: 0,
            aoe: BTreeMap::new(),
        }
    }

    /// The first frames: Query Config and, when claiming, the Probe Request.
    pub fn start(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.started = now;
        self.send_query(out);
        let mut fip = Vec::new();
        self.join.start(now, &mut fip);
        out.extend(fip.into_iter().map(pad));
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_wakeup(&self) -> Instant {
        let mut next = self.started + Duration::from_secs(3600);
        if self.queries_sent < 2 {
            next = next.min(self.started + QUERY_AGAIN);
        }
        if let Some(t) = self.join.next_wakeup() {
            next = next.min(t);
        }
        if let Some(t) = self.initiator.next_wakeup() {
            next = next.min(t);
        }
        next
    }

    /// Timers: the second query, claiming, IDENTIFY retries.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        if self.queries_sent < 2 && now >= self.started + QUERY_AGAIN {
            self.send_query(out);
        }
        let mut fip = Vec::new();
        self.join.tick(now, &mut fip);
        out.extend(fip.into_iter().map(pad));
        self.initiator.poll(now, out);
    }

    fn send_query(&mut self, out: &mut Vec<Vec<u8>>) {
        self.queries_sent += 1;
        self.initiator.query_config(0xffff, 0xff, out);
    }

    /// One received frame.
    pub fn on_frame(&mut self, frame: &[u8], now: Instant, out: &mut Vec<Vec<u8>>) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        match eth.ethertype() {
            EtherType::Aoe => self.on_aoe(frame, now, out),
            EtherType::Fip => {
                // VN2VN frames for us: the join records their senders as neighbours.
                let mut fip = Vec::new();
                self.join.on_frame(frame, now, &mut fip);
                out.extend(fip.into_iter().map(pad));
            }
            _ => {}
        }
    }

    fn on_aoe(&mut self, frame: &[u8], now: Instant, out: &mut Vec<Vec<u8>>) {
        match self.initiator.on_frame(frame) {
            Some(Event::Config { target, config, .. }) => {
                let key = (target.major, target.minor, target.mac);
                let found = AoeFound {
                    shelf: target.major,
                    slot: target.minor,
                    mac: target.mac,
                    buffer_count: config.buffer_count,
                    firmware_version: config.firmware_version,
                    sectors_per_frame: config.sector_count,
                    config: config.config_string.to_vec(),
                    identify: Err("no answer to IDENTIFY".into()),
                    duplicate: false,
                };
                if let Some(e) = self.aoe.get_mut(&key) {
                    // A later answer is as current; keep what IDENTIFY told.
                    e.buffer_count = found.buffer_count;
                    e.firmware_version = found.firmware_version;
                    e.sectors_per_frame = found.sectors_per_frame;
                    e.config = found.config;
                    return;
                }
                self.aoe.insert(key, found);
                self.initiator
                    .ata(target, AtaRequest::Identify, &[], now, out);
            }
            Some(Event::Ata { target, reply, .. }) => {
                if let Some(e) = self.aoe.get_mut(&(target.major, target.minor, target.mac)) {
                    e.identify = identify_result(reply);
                }
            }
            None => {}
        }
    }

    /// What was found, sorted, with the conflicts flagged.
    pub fn report(&self) -> Report {
        let mut warnings = Vec::new();
        let mut aoe: Vec<AoeFound> = self.aoe.values().cloned().collect();
        flag_aoe_duplicates(&mut aoe, &mut warnings);
        let mut fcoe: Vec<VnFound> = self.join.neighbours().map(vn_found).collect();
        flag_fcoe_duplicates(&mut fcoe, &mut warnings);
        aoe.sort_by_key(|a| (a.shelf, a.slot, a.mac));
        fcoe.sort_by_key(|v| (v.port_id, v.wwpn, v.enode_mac));
        Report {
            aoe,
            fcoe,
            warnings,
        }
    }
}

/// Marks every shelf.slot answered from more than one MAC, with a warning each.
fn flag_aoe_duplicates(aoe: &mut [AoeFound], warnings: &mut Vec<String>) {
    let mut by_addr: BTreeMap<(u16, u8), Vec<usize>> = BTreeMap::new();
    for (i, a) in aoe.iter().enumerate() {
        by_addr.entry((a.shelf, a.slot)).or_default().push(i);
    }
    for ((shelf, slot), idx) in &by_addr {
        if idx.len() < 2 {
            continue;
        }
        for &i in idx {
            aoe[i].duplicate = true;
        }
        let macs: Vec<String> = idx.iter().map(|&i| aoe[i].mac.to_string()).collect();
        let serials: BTreeSet<Option<(String, u64)>> = idx
            .iter()
            .map(|&i| {
                aoe[i]
                    .identify
                    .as_ref()
                    .ok()
                    .map(|id| (id.serial.clone(), id.sectors))
            })
            .collect();
        let same = serials.len() == 1 && serials.iter().all(|s| s.is_some());
        warnings.push(if same {
            format!(
                "DUPLICATE e{shelf}.{slot}: answered by {} MACs ({}) with the same serial and \
                 size: fine if this is one target on several ports (multipath) serving one \
                 image; otherwise give each export its own shelf.slot",
                idx.len(),
                macs.join(", ")
            )
        } else {
            format!(
                "DUPLICATE e{shelf}.{slot}: answered by {} MACs ({}); an initiator would mix \
                 their I/O as if they were one disk: give each export its own shelf.slot",
                idx.len(),
                macs.join(", ")
            )
        });
    }
}

/// Marks every port ID claimed by more than one WWPN and every WWPN claimed from more than
/// one ENode MAC, with a warning each.
fn flag_fcoe_duplicates(fcoe: &mut [VnFound], warnings: &mut Vec<String>) {
    let mut by_id: BTreeMap<FcId, BTreeSet<Wwn>> = BTreeMap::new();
    let mut by_wwpn: BTreeMap<Wwn, BTreeSet<MacAddr>> = BTreeMap::new();
    for v in fcoe.iter() {
        by_id.entry(v.port_id).or_default().insert(v.wwpn);
        by_wwpn.entry(v.wwpn).or_default().insert(v.enode_mac);
    }
    for v in fcoe.iter_mut() {
        v.duplicate_port_id = by_id[&v.port_id].len() > 1;
        v.duplicate_wwpn = by_wwpn[&v.wwpn].len() > 1;
    }
    for (id, wwpns) in &by_id {
        if wwpns.len() > 1 {
            let list: Vec<String> = wwpns.iter().map(Wwn::to_string).collect();
            warnings.push(format!(
                "DUPLICATE port ID 0x{:06x}: claimed by {} WWPNs ({}); VN2VN should have made \
                 one of them pick another ID: they may not hear each other",
                id.get(),
                list.len(),
                list.join(", ")
            ));
        }
    }
    for (w, macs) in &by_wwpn {
        if macs.len() > 1 {
            let list: Vec<String> = macs.iter().map(MacAddr::to_string).collect();
            warnings.push(format!(
                "DUPLICATE WWPN {w}: used by {} ENodes ({}); give each port its own --wwpn",
                list.len(),
                list.join(", ")
            ));
        }
    }
}

/// A VN2VN port heard, as the report lists it.
fn vn_found(n: &l2san_fcoe::initiator::Neighbour) -> VnFound {
    VnFound {
        wwpn: n.vn_port.wwpn,
        wwnn: n.wwnn,
        port_id: n.vn_port.fc_id,
        vn_mac: n.vn_port.mac,
        enode_mac: n.enode,
        fc4: n.fc4,
        max_fcoe_size: n.max_fcoe_size,
        heard: n
            .heard
            .iter()
            .map(|h| match h {
                HeardIn::ProbeReply => "probe reply",
                HeardIn::Claim => "claim",
                HeardIn::ClaimResponse => "claim response",
                HeardIn::Beacon => "beacon",
            })
            .collect(),
        duplicate_port_id: false,
        duplicate_wwpn: false,
    }
}

/// An IDENTIFY response: the identity, or why there is none.
fn identify_result(reply: Result<AtaReply<'_>, AtaRefused>) -> Result<Identity, String> {
    let a = match reply {
        Ok(a) => a,
        Err(AtaRefused::Aoe(e)) => return Err(format!("IDENTIFY refused with AoE error {e:?}")),
        Err(AtaRefused::Truncated) => return Err("IDENTIFY response truncated".into()),
    };
    if a.failed() {
        return Err(format!(
            "IDENTIFY failed: ATA status 0x{:02x}, error 0x{:02x}",
            a.status, a.error
        ));
    }
    a.identify()
        .ok_or_else(|| "IDENTIFY response shorter than 512 bytes".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::json::render_json;
    use crate::probe::text::render_text;
    use std::sync::Arc;

    use l2san_aoe::{AoeExport, AoeTarget};
    use l2san_common::{FrameHandler, Image, ImageOptions, TxBatch};
    use l2san_fcoe::{FcoeConfig, FcoeTarget};

    fn image(name: &str, sectors: u64) -> Arc<Image> {
        let dir = std::env::temp_dir().join(format!("l2san-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, vec![0u8; sectors as usize * 512]).unwrap();
        let img = Image::open(
            &path,
            ImageOptions {
                read_only: true,
                durability: l2san_common::Durability::Writeback,
            },
        )
        .unwrap();
        Arc::new(img)
    }

    fn mac(last: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0x00, 0xaa, 0xbb, last])
    }

    /// A segment: every frame reaches every station but its sender.
    struct Segment {
        aoe: Vec<AoeTarget>,
        fcoe: Vec<FcoeTarget>,
    }

    impl Segment {
        /// Deliver `frames` (from the probe) and return what the stations answered.
        fn deliver(&self, frames: &[Vec<u8>], now: Instant) -> Vec<Vec<u8>> {
            let mut tx = TxBatch::new(8);
            for f in frames {
                for t in &self.aoe {
                    t.handle(f, now, &mut tx);
                }
                for t in &self.fcoe {
                    t.handle_frame(f, now, &mut tx);
                }
            }
            tx.frames().map(<[u8]>::to_vec).collect()
        }

        fn tick(&self, now: Instant) -> Vec<Vec<u8>> {
            let mut tx = TxBatch::new(8);
            for t in &self.fcoe {
                t.tick(now, &mut tx);
            }
            tx.frames().map(<[u8]>::to_vec).collect()
        }
    }

    fn fcoe_target(m: MacAddr, wwpn: Wwn) -> FcoeTarget {
        FcoeTarget::new(FcoeConfig {
            mac: m,
            mtu: 1500,
            wwpn,
            wwnn: wwn(0x1000, m),
            luns: vec![(0, image("lun.img", 64).into())],
            allow: Vec::new(),
        })
    }

    /// The probe against two l2san AoE targets (one duplicate shelf.slot) and two FCoE
    /// targets, all in memory, with simulated time.
    #[test]
    fn finds_targets_and_duplicates() {
        let a = AoeTarget::new(
            mac(1),
            1500,
            "host-a",
            vec![
                AoeExport::new(1, 1, image("a11.img", 2048)),
                AoeExport::new(1, 2, image("a12.img", 4096)),
            ],
        );
        let b = AoeTarget::new(
            mac(2),
            9000,
            "host-b",
            vec![AoeExport::new(1, 2, image("b12.img", 100))],
        );
        let t0 = Instant::now();
        let f1 = fcoe_target(mac(3), wwn(0x2000, mac(3)));
        let f2 = fcoe_target(mac(4), wwn(0x2000, mac(4)));
        // Bring both VN_Ports up (probe, claim, beacon: about a second).
        let seg = Segment {
            aoe: vec![a, b],
            fcoe: vec![f1, f2],
        };
        let mut t = t0;
        for _ in 0..40 {
            let frames = seg.tick(t);
            // Let them hear each other too.
            let _ = seg.deliver(&frames, t);
            t += Duration::from_millis(50);
        }
        assert_eq!(
            seg.fcoe[0].vn2vn().0,
            l2san_fcoe::fip::vn2vn::VnState::Up,
            "FCoE target 1 came up"
        );

        let me = MacAddr([0x52, 0x54, 0x00, 0x99, 0x88, 0x77]);
        let mut d = Discovery::new(
            ProbeConfig {
                mac: me,
                tag_seed: 0x1234,
                fcoe_claim: true,
                mtu: 1500,
            },
            t,
        );
        let mut out = Vec::new();
        d.start(t, &mut out);
        let end = t + Duration::from_secs(3);
        while t < end {
            let replies = seg.deliver(&out, t);
            out.clear();
            for r in &replies {
                d.on_frame(r, t, &mut out);
            }
            for r in seg.tick(t) {
                d.on_frame(&r, t, &mut out);
            }
            d.tick(t, &mut out);
            t += Duration::from_millis(10);
        }
        let r = d.report();
        let addrs: Vec<(u16, u8, MacAddr)> =
            r.aoe.iter().map(|a| (a.shelf, a.slot, a.mac)).collect();
        assert_eq!(addrs, vec![(1, 1, mac(1)), (1, 2, mac(1)), (1, 2, mac(2))]);
        assert!(!r.aoe[0].duplicate && r.aoe[1].duplicate && r.aoe[2].duplicate);
        let sizes: Vec<u64> = r
            .aoe
            .iter()
            .map(|a| a.identify.as_ref().unwrap().sectors)
            .collect();
        assert_eq!(sizes, vec![2048, 4096, 100]);
        assert_eq!(r.aoe[0].firmware_version, 0x4c32);
        assert_eq!(r.aoe[0].buffer_count, 64);
        assert_eq!(r.aoe[0].sectors_per_frame, 2);
        assert_eq!(r.aoe[2].sectors_per_frame, 17);
        assert_eq!(r.fcoe.len(), 2, "{:?}", r.fcoe);
        assert_eq!(r.fcoe[0].wwpn, wwn(0x2000, mac(3)));
        assert!(
            r.fcoe[0].heard.contains("claim response"),
            "{:?}",
            r.fcoe[0]
        );
        assert_eq!(r.fcoe[0].role(), "FCP target");
        assert!(r
            .fcoe
            .iter()
            .all(|v| !v.duplicate_port_id && !v.duplicate_wwpn));
        assert!(r.has_duplicates());
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("e1.2"));
        let text = render_text(&r, "eth0");
        assert!(text.contains("AoE   e1.1  52:54:00:aa:bb:01  1 MiB (2048 sectors)  sectors/frame 2  buffers 64  fw 0x4c32"), "{text}");
        assert!(text.contains("DUPLICATE"), "{text}");
        let json = render_json(&r, "eth0").unwrap();
        assert!(json.contains("\"duplicates\":true"), "{json}");
        assert!(json.contains("\"target\":\"e1.2\""), "{json}");

        // The neighbours learned the probe's port and still run.
        assert_eq!(seg.fcoe[0].vn2vn().0, l2san_fcoe::fip::vn2vn::VnState::Up);
    }

    #[test]
    fn duplicate_fcoe_names_and_ids_are_flagged() {
        let t = Instant::now();
        let mut d = Discovery::new(
            ProbeConfig {
                mac: mac(9),
                tag_seed: 1,
                fcoe_claim: false,
                mtu: 1500,
            },
            t,
        );
        let beacon = |enode: MacAddr, id: u32, wwpn: Wwn| {
            Vn2VnPort {
                port: Port::vn2vn(enode, FcId::new(id), wwpn, wwn(0x1000, enode)),
                fc4: Fc4Features::empty(),
                max_fcoe_size: 0,
            }
            .beacon()
        };
        let mut out = Vec::new();
        let w = Wwn(0x2000_0000_0000_0001);
        d.on_frame(&beacon(mac(1), 0x10, w), t, &mut out);
        d.on_frame(&beacon(mac(2), 0x11, w), t, &mut out);
        d.on_frame(&beacon(mac(3), 0x20, Wwn(5)), t, &mut out);
        d.on_frame(&beacon(mac(4), 0x20, Wwn(6)), t, &mut out);
        assert!(out.is_empty(), "passive: nothing sent");
        let r = d.report();
        assert_eq!(r.fcoe.len(), 4);
        assert!(r.fcoe[0].duplicate_wwpn && r.fcoe[1].duplicate_wwpn);
        assert!(r.fcoe[2].duplicate_port_id && r.fcoe[3].duplicate_port_id);
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
        assert_eq!(r.fcoe[0].role(), "?");
    }

    #[test]
    fn enode_mac_is_local_and_not_ours() {
        let e = enode_mac_for(mac(1));
        assert_eq!(e.0[0] & 0x03, 0x02, "unicast, locally administered");
        let m = MacAddr([0x0a, 0x4c, 0x32, 1, 2, 3]);
        assert_ne!(enode_mac_for(m), m);
    }
}
