//! The initiator against real frames (iPXE's point-to-point boot, Linux VN2VN against LIO) and
//! in process against l2san's own target.

use std::sync::Arc;
use std::time::{Duration, Instant};

use l2san_common::ether::{EtherType, MacAddr};
use l2san_common::io::TxBatch;
use l2san_common::store::{Image, ImageOptions};

use super::fcp::{finish_data_frame, set_command, CMND_FRAME_LEN};
use super::frame::{self, fip_of, receive, vn2vn_of, FLOGI_MAC, PAYLOAD_AT};
use super::scsi::{self, Capacity, Inquiry, Sense};
use super::vn2vn::{HeardIn, JoinState};
use super::*;
use crate::wire::fc::{FCtl, FcHeaderRepr, FcPacket, RCtl};
use crate::wire::fcoe::{FcoePacket, FcoeRepr, Sof};
use crate::wire::fip::{Fc4Features, FipRepr, Vn2VnSubcode, ALL_VN2VN_MACS};
use crate::wire::testdata::{frame, IPXE_BOOT, LINUX_LIO};
use crate::{FcoeConfig, FcoeTarget};

/// iPXE's N_Port in ipxe-fcoe-p2p-boot.pcap and the target it booted from.
const IPXE_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const IPXE_TARGET_MAC: MacAddr = MacAddr([0x0a, 0x91, 0x10, 0xa3, 0x88, 0xf9]);

fn ipxe() -> Initiator {
    let local = Port::p2p(
        IPXE_MAC,
        FcId::new(0x01_0102),
        Wwn(0x2000_5254_0012_3456),
        Wwn(0x1000_5254_0012_3456),
    );
    let remote = Port::p2p(IPXE_TARGET_MAC, FcId::new(0x01_0101), Wwn(0), Wwn(0));
    Initiator::p2p(local, remote, 1452)
}

fn header_of(f: &[u8]) -> FcHeaderRepr {
    let rx = receive(f, true).expect("an FCoE frame with a good CRC");
    FcHeaderRepr::parse(&rx.fc).unwrap()
}

/// What makes two request headers the same exchange step (SEQ_ID is the sender's choice).
fn same_request(ours: &FcHeaderRepr, theirs: &FcHeaderRepr) {
    assert_eq!(
        (
            ours.r_ctl,
            ours.d_id,
            ours.s_id,
            ours.fc_type,
            ours.f_ctl,
            ours.ox_id,
            ours.rx_id
        ),
        (
            theirs.r_ctl,
            theirs.d_id,
            theirs.s_id,
            theirs.fc_type,
            theirs.f_ctl,
            theirs.ox_id,
            theirs.rx_id
        )
    );
    assert_eq!(
        (ours.seq_cnt, ours.parameter),
        (theirs.seq_cnt, theirs.parameter)
    );
}

#[test]
fn builds_ipxes_login_frames_and_follows_its_replies() {
    let mut i = ipxe();
    for (kind, ox, req, acc, state) in [
        (ElsRequest::Flogi, 2, 8, 9, LoginState::FabricLoggedIn),
        (ElsRequest::Plogi, 4, 10, 11, LoginState::PortLoggedIn),
        (ElsRequest::Prli, 6, 12, 13, LoginState::Ready),
    ] {
        let ours = i.request(kind, ox);
        let theirs = frame(IPXE_BOOT, req);
        assert_eq!(ours[..12], theirs[..12], "{kind:?}: MACs");
        same_request(&header_of(&ours), &header_of(&theirs));
        let (o, t) = (
            receive(&ours, true).unwrap(),
            receive(&theirs, true).unwrap(),
        );
        assert_eq!(o.data.len(), t.data.len(), "{kind:?}");
        assert_eq!(o.data[0], t.data[0], "{kind:?}: ELS command");
        if kind == ElsRequest::Prli {
            // PRLI: the same service parameter page as iPXE's, byte for byte.
            assert_eq!(o.data, t.data);
        }
        // The capture's reply, and nothing for another exchange.
        let reply = frame(IPXE_BOOT, acc);
        assert_eq!(i.on_els_reply(kind, ox + 1, &reply), None);
        assert_eq!(i.on_els_reply(kind, ox, &theirs), None, "our own request");
        assert_eq!(i.on_els_reply(kind, ox, &reply), Some(ElsVerdict::Accepted));
        assert_eq!(i.state, state);
    }
    assert_eq!(i.peer_mfs, 1452);
}

#[test]
fn builds_ipxes_commands_and_reads_their_multi_frame_data() {
    let i = ipxe();
    let lun = scsi::lun(0);
    // READ CAPACITY(10), frames 16-18.
    let cmd = Command::new(lun, scsi::read_capacity_10(), DataDirection::Read, 8);
    let ours = i.command(0x0a, &cmd);
    let theirs = frame(IPXE_BOOT, 16);
    same_request(&header_of(&ours), &header_of(&theirs));
    assert_eq!(
        receive(&ours, true).unwrap().data,
        receive(&theirs, true).unwrap().data,
        "the FCP_CMND payload"
    );
    let mut x = Exchange::new(0x0a, 8);
    let mut done = None;
    for n in 17..=18 {
        let f = frame(IPXE_BOOT, n);
        let (ox, rx_id, reply) = i.fcp_reply(&f, true).expect("a reply to us");
        assert_eq!((ox, rx_id), (0x0a, 0x0102));
        // Not a reply to another port, nor from another target.
        let mut other = i.clone();
        other.local.id = FcId::new(0x01_0103);
        assert!(other.fcp_reply(&f, true).is_none());
        other = i.clone();
        other.remote.id = FcId::new(0x01_0103);
        assert!(other.fcp_reply(&f, true).is_none());
        if let ExchangeStep::Done(o) = x.on_reply(rx_id, &reply) {
            done = Some(o);
        }
    }
    let o = done.expect("FCP_RSP");
    assert!(o.good());
    assert_eq!(
        Capacity::parse_10(&o.data),
        Some(Capacity {
            blocks: 0x4000,
            block_len: 512
        })
    );

    // READ(10) of 4 blocks at LBA 0x40 in two 1024-byte frames, frames 19-22.
    let cmd = Command::new(
        lun,
        scsi::read_write(false, 0x40, 4, false),
        DataDirection::Read,
        2048,
    );
    assert_eq!(
        receive(&i.command(0x0c, &cmd), true).unwrap().data,
        receive(&frame(IPXE_BOOT, 19), true).unwrap().data
    );
    let mut x = Exchange::new(0x0c, 2048);
    let mut steps = Vec::new();
    for n in 20..=22 {
        let f = frame(IPXE_BOOT, n);
        let (_, rx_id, reply) = i.fcp_reply(&f, true).unwrap();
        steps.push(x.on_reply(rx_id, &reply));
    }
    let ExchangeStep::Done(o) = steps.pop().unwrap() else {
        panic!("no FCP_RSP")
    };
    assert!(steps.iter().all(|s| *s == ExchangeStep::Pending));
    assert_eq!(o.data.len(), 2048);
    assert_eq!(&o.data[..4], b"SECT");
    assert_eq!(&o.data[1024..1028], b"SECT");
    assert_eq!(x.rx_id, Some(0x0103));
}

#[test]
fn writes_as_ipxe_does_after_xfer_rdy() {
    // WRITE(10) of 3 blocks, frames 66-70: XFER_RDY for 1536 bytes, data in 1452 + 84.
    let i = ipxe();
    let cmd = Command::new(
        scsi::lun(0),
        scsi::read_write(true, 0x3ffc, 3, false),
        DataDirection::Write,
        1536,
    );
    let ours = i.command(0x16, &cmd);
    let theirs = frame(IPXE_BOOT, 66);
    same_request(&header_of(&ours), &header_of(&theirs));
    assert_eq!(
        receive(&ours, true).unwrap().data,
        receive(&theirs, true).unwrap().data
    );
    let mut x = Exchange::new(0x16, 1536);
    let f = frame(IPXE_BOOT, 67);
    let (_, rx_id, reply) = i.fcp_reply(&f, true).unwrap();
    let step = x.on_reply(rx_id, &reply);
    assert_eq!(
        step,
        ExchangeStep::SendData {
            rx_id: 0x0108,
            offset: 0,
            len: 1536
        }
    );
    let data: Vec<u8> = [68, 69]
        .iter()
        .flat_map(|&n| receive(&frame(IPXE_BOOT, n), true).unwrap().data.to_vec())
        .collect();
    assert_eq!(data.len(), 1536);
    let ours = i.data_out(0x16, 0x0108, 0, &data, 1452);
    assert_eq!(ours.len(), 2);
    for (k, n) in [68, 69].into_iter().enumerate() {
        let theirs = frame(IPXE_BOOT, n);
        same_request(&header_of(&ours[k]), &header_of(&theirs));
        // Delimiters: SOFi3 then SOFn3, EOFn then EOFt.
        assert_eq!(ours[k][27], theirs[27], "SOF of frame {n}");
        assert_eq!(ours[k][ours[k].len() - 4], theirs[theirs.len() - 4], "EOF");
        assert_eq!(
            receive(&ours[k], true).unwrap().data,
            receive(&theirs, true).unwrap().data
        );
    }
    // The same frames written in place over templates.
    let mut area = vec![0u8; 2048];
    for (k, (offset, len)) in [(0u32, 1452usize), (1452, 84)].into_iter().enumerate() {
        i.emit_data_template(&mut area, offset);
        area[PAYLOAD_AT..PAYLOAD_AT + len]
            .copy_from_slice(&data[offset as usize..offset as usize + len]);
        let n = finish_data_frame(&mut area, 0x16, 0x0108, k as u16, k == 0, k == 1, len);
        assert_eq!(area[..n], ours[k][..], "data frame {k} in place");
    }
    let f = frame(IPXE_BOOT, 70);
    let (_, _, reply) = i.fcp_reply(&f, true).unwrap();
    let ExchangeStep::Done(o) = x.on_reply(0x0108, &reply) else {
        panic!("no FCP_RSP")
    };
    assert!(o.good() && o.data.is_empty());
}

#[test]
fn command_template_matches_the_whole_command_frame() {
    let i = ipxe();
    let mut area = vec![0xa5u8; 128];
    i.emit_command_template(&mut area, scsi::lun(0));
    for (ox, write) in [(0x0c, false), (0x16, true)] {
        let cdb = scsi::read_write(write, 7, 4, false);
        let dir = if write {
            DataDirection::Write
        } else {
            DataDirection::Read
        };
        set_command(&mut area, ox, &cdb, dir, 2048);
        let whole = i.command(ox, &Command::new(scsi::lun(0), cdb, dir, 2048));
        assert_eq!(area[..CMND_FRAME_LEN], whole[..]);
    }
}

#[test]
fn reads_linux_and_lio_vn2vn_frames() {
    let linux = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    // Linux's own claim (frame 11): ours says the same.
    let (dst, src, claim) = vn2vn_of(&frame(LINUX_LIO, 11)).unwrap();
    assert_eq!((dst, src), (ALL_VN2VN_MACS, linux));
    let me = Vn2VnPort {
        port: Port::vn2vn(linux, claim.vn_port.fc_id, claim.vn_port.wwpn, claim.wwnn),
        fc4: claim.fc4_features.unwrap(),
        max_fcoe_size: claim.max_fcoe_size.unwrap(),
    };
    assert_eq!(me.port.mac, claim.vn_port.mac);
    let (_, ours_src, ours) = vn2vn_of(&me.claim()).unwrap();
    assert_eq!((ours_src, ours), (linux, claim));
    // Linux's beacon (frame 14) is ours too: sent from the VN MAC.
    let (_, beacon_src, beacon) = vn2vn_of(&frame(LINUX_LIO, 14)).unwrap();
    let (_, ours_src, ours) = vn2vn_of(&me.beacon()).unwrap();
    assert_eq!((ours_src, ours), (beacon_src, beacon));
    assert_eq!(me.heard(beacon_src, ALL_VN2VN_MACS, &beacon), None);

    // LIO's Claim Response to it (frame 12) names an FCP target.
    let (dst, src, resp) = vn2vn_of(&frame(LINUX_LIO, 12)).unwrap();
    assert_eq!(me.heard(src, dst, &resp), Some(Vn2VnSubcode::ClaimResponse));
    assert!(me.answers_claim(dst, &resp));
    let n = Neighbour::of(&resp);
    assert!(n.is_fcp_target());
    assert_eq!(n.port().id, FcId::new(0x10_0a));
    assert_eq!(n.port().mac, MacAddr([0x0e, 0xfd, 0, 0, 0x10, 0x0a]));
    // The same response to someone else says nothing to us.
    let other = Vn2VnPort {
        port: Port::vn2vn(MacAddr([2, 0, 0, 0, 0, 9]), FcId::new(9), Wwn(9), Wwn(9)),
        ..me
    };
    assert_eq!(other.heard(src, dst, &resp), None);
    assert!(!other.answers_claim(dst, &resp));

    // INQUIRY data (frame 28) and an FCP_RSP with a residual (frame 47).
    let f = frame(LINUX_LIO, 28);
    let rx = receive(&f, true).unwrap();
    let Some(Reply::Data {
        data, offset: 0, ..
    }) = fcp::reply_of(&rx)
    else {
        panic!("FCP_DATA")
    };
    let inq = Inquiry::parse(data).unwrap();
    assert_eq!((inq.device_type, inq.vendor.as_str()), (0, "LIO-ORG"));
    let f = frame(LINUX_LIO, 47);
    let rx = receive(&f, true).unwrap();
    let Some(Reply::Rsp(r)) = fcp::reply_of(&rx) else {
        panic!("FCP_RSP")
    };
    assert_eq!((r.status, r.resid), (scsi::GOOD, 0x18));
    assert!(!r.ok(), "an underrun is not a whole transfer");
}

#[test]
fn sense_cdbs_and_sizes() {
    let fixed = [
        0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x00, 0, 0, 0, 0,
    ];
    let s = Sense::parse(&fixed).unwrap();
    assert!(s.is_unit_attention());
    assert_eq!(s.to_string(), "06/29/00");
    assert_eq!(
        Sense::parse(&[0x72, 0x05, 0x24, 0x01]),
        Some(Sense {
            key: 5,
            asc: 0x24,
            ascq: 1
        })
    );
    assert_eq!(Sense::parse(&fixed[..10]), None);
    assert_eq!(
        &scsi::read_write(false, 0x0102_0304, 2, false)[..10],
        &[0x28, 0, 1, 2, 3, 4, 0, 0, 2, 0]
    );
    assert_eq!(scsi::read_write(true, 5, 1, false)[0], 0x2a);
    let c = scsi::read_write(false, 1 << 33, 1, false);
    assert_eq!((c[0], c[5], c[13]), (0x88, 2, 1));
    assert_eq!(scsi::read_write(true, 5, 1, true)[0], 0x8a);
    assert_eq!(scsi::lun(3), [0, 3, 0, 0, 0, 0, 0, 0]);
    assert_eq!(scsi::lun(0x123), [0x41, 0x23, 0, 0, 0, 0, 0, 0]);
    assert_eq!(frame::mfs_for_mtu(1500), 1452);
    assert_eq!(frame::mfs_for_mtu(9000), 2112);
    assert_eq!(frame::max_fcoe_size(1500), 1500);
    assert_eq!(frame::max_fcoe_size(9000), 2158);
    assert!(wwn_of(0x1000, MacAddr([2, 0, 0, 0, 0, 1])) < Wwn(0x2000_0000_0000_0000));
    assert_eq!(
        scsi::parse_report_luns(&[
            0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0
        ]),
        Some(vec![[0; 8], [0, 1, 0, 0, 0, 0, 0, 0]])
    );
}

/// l2san's target in memory, and a clock that moves only when told.
struct Rig {
    target: FcoeTarget,
    now: Instant,
}

const TARGET_MAC: MacAddr = MacAddr([0x02, 0x4c, 0, 0, 0x12, 0x34]);
const TARGET_WWPN: Wwn = Wwn(0x2000_024c_0000_1234);

impl Rig {
    fn new() -> Rig {
        let image = Arc::new(Image::memory(4 << 20, ImageOptions::default()).unwrap());
        let target = FcoeTarget::new(FcoeConfig {
            mac: TARGET_MAC,
            mtu: 1500,
            wwpn: TARGET_WWPN,
            wwnn: Wwn(0x1000_024c_0000_1234),
            luns: vec![(0, image.into())],
            allow: Vec::new(),
        });
        Rig {
            target,
            now: Instant::now(),
        }
    }

    /// Frames in, answers out.
    fn send(&self, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut tx = TxBatch::new(64);
        for f in frames {
            self.target.handle_frame(f, self.now, &mut tx);
        }
        tx.frames().map(<[u8]>::to_vec).collect()
    }

    /// Let the target's timers run for `d`, 50 ms at a time; what it sent meanwhile.
    fn wait(&mut self, d: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(50);
            let mut tx = TxBatch::new(64);
            self.target.tick(self.now, &mut tx);
            out.extend(tx.frames().map(<[u8]>::to_vec));
        }
        out
    }

    /// Run `cmd` to its end (data out when asked), answering nothing else.
    fn scsi(&self, i: &Initiator, ox: u16, cmd: &Command, data_out: &[u8]) -> Outcome {
        let mut x = Exchange::new(ox, cmd.fcp_dl);
        let mut pending = self.send(&[i.command(ox, cmd)]);
        loop {
            assert!(!pending.is_empty(), "no answer to {:02x?}", cmd.cdb);
            let mut next = Vec::new();
            for f in &pending {
                let Some((got_ox, rx_id, reply)) = i.fcp_reply(f, true) else {
                    continue;
                };
                assert_eq!(got_ox, ox);
                match x.on_reply(rx_id, &reply) {
                    ExchangeStep::Pending => {}
                    ExchangeStep::SendData { rx_id, offset, len } => {
                        let part = &data_out[offset as usize..(offset + len) as usize];
                        let chunk = usize::from(i.peer_mfs.min(i.mfs));
                        next.extend(self.send(&i.data_out(ox, rx_id, offset, part, chunk)));
                    }
                    ExchangeStep::Done(o) => return o,
                }
            }
            pending = next;
        }
    }
}

/// Log `i` in: each request answered with LS_ACC (a PLOGI of the target's own answered).
/// Returns how many PLOGIs of its own the target sent.
fn log_in(rig: &mut Rig, i: &mut Initiator) -> usize {
    let mut plogis = 0;
    for (n, kind) in [ElsRequest::Flogi, ElsRequest::Plogi, ElsRequest::Prli]
        .into_iter()
        .enumerate()
    {
        let ox = 0x8000 + n as u16;
        let mut verdict = None;
        let mut answers = Vec::new();
        // The target sends its PLOGI, if it does, from its next timer tick.
        let mut heard = rig.send(&[i.request(kind, ox)]);
        heard.extend(rig.wait(Duration::from_millis(100)));
        for f in heard {
            if let Some(acc) = i.answer_plogi(&f) {
                answers.push(acc);
            } else if let Some(v) = i.on_els_reply(kind, ox, &f) {
                verdict = Some(v);
            }
        }
        plogis += answers.len();
        for f in rig.send(&answers) {
            // Nothing comes back for an LS_ACC but, maybe, the target's next request.
            assert!(i.on_els_reply(kind, ox, &f).is_none());
        }
        assert_eq!(verdict, Some(ElsVerdict::Accepted), "{kind:?}");
    }
    assert_eq!(i.state, LoginState::Ready);
    plogis
}

/// READ CAPACITY(16) through the power-on unit attention, INQUIRY, REPORT LUNS, a multi-frame
/// WRITE and its READ back, LOGO.
fn io_and_logout(rig: &Rig, i: &mut Initiator) {
    let lun = scsi::lun(0);
    let rc = Command::new(lun, scsi::read_capacity_16(), DataDirection::Read, 32);
    let first = rig.scsi(i, 1, &rc, &[]);
    assert!(first.is_unit_attention(), "{first:?}");
    assert_eq!(first.sense().unwrap().asc, 0x29, "power on or reset");
    let o = rig.scsi(i, 2, &rc, &[]);
    assert!(o.good(), "{o:?}");
    assert_eq!(
        Capacity::parse_16(&o.data),
        Some(Capacity {
            blocks: 8192,
            block_len: 512
        })
    );
    let o = rig.scsi(
        i,
        3,
        &Command::new(lun, scsi::inquiry(None, 96), DataDirection::Read, 96),
        &[],
    );
    assert!(o.good());
    let inq = Inquiry::parse(&o.data).unwrap();
    assert_eq!(inq.device_type, 0);
    let o = rig.scsi(
        i,
        4,
        &Command::new(lun, scsi::report_luns(64), DataDirection::Read, 64),
        &[],
    );
    assert_eq!(scsi::parse_report_luns(&o.data), Some(vec![lun]));
    let o = rig.scsi(
        i,
        5,
        &Command::new(lun, scsi::test_unit_ready(), DataDirection::None, 0),
        &[],
    );
    assert!(o.good() && o.data.is_empty());

    let data: Vec<u8> = (0..8 * 512).map(|n| (n * 7 % 251) as u8).collect();
    let w = Command::new(
        lun,
        scsi::read_write(true, 100, 8, false),
        DataDirection::Write,
        4096,
    );
    assert!(rig.scsi(i, 6, &w, &data).good());
    let r = Command::new(
        lun,
        scsi::read_write(false, 100, 8, true),
        DataDirection::Read,
        4096,
    );
    let o = rig.scsi(i, 7, &r, &[]);
    assert!(o.good());
    assert!(o.data == data, "READ(16) returns what WRITE(10) wrote");

    let sessions = rig.target.session_count();
    let mut verdict = None;
    for f in rig.send(&[i.request(ElsRequest::Logo, 0x9000)]) {
        verdict = verdict.or(i.on_els_reply(ElsRequest::Logo, 0x9000, &f));
    }
    assert_eq!(verdict, Some(ElsVerdict::Accepted));
    assert_eq!(rig.target.session_count(), sessions - 1);
    assert_eq!(i.state, LoginState::Start);
}

#[test]
fn joins_logs_in_and_does_io_against_l2san_over_vn2vn() {
    let mut rig = Rig::new();
    rig.wait(Duration::from_secs(2));
    let enode = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    let me = Vn2VnPort {
        port: Port::vn2vn(
            enode,
            FcId::new(0x00_0042),
            wwn_of(0x1000, enode),
            wwn_of(0x2000, enode),
        ),
        fc4: Fc4Features::fcp(Fc4Features::FCP_INITIATOR),
        max_fcoe_size: frame::max_fcoe_size(1500),
    };
    let mut join = Join::new(
        me,
        JoinConfig {
            claim: true,
            probe_wait: Duration::from_millis(250),
            claim_again: Duration::from_secs(1),
            claims: 2,
            probe_tries: 4,
        },
        42,
        rig.now,
    );
    let mut out = Vec::new();
    join.start(rig.now, &mut out);
    let mut target = None;
    for _ in 0..40 {
        let mut heard = rig.send(&std::mem::take(&mut out));
        heard.extend(rig.wait(Duration::from_millis(50)));
        for f in &heard {
            if join.on_frame(f, rig.now, &mut out) == Some(Vn2VnSubcode::ClaimResponse) {
                let (dst, _, v) = vn2vn_of(f).unwrap();
                assert!(join.port().answers_claim(dst, &v));
                target = Some(Neighbour::of(&v));
            }
        }
        join.tick(rig.now, &mut out);
    }
    assert_eq!(join.state(), JoinState::Claimed { claims: 2 });
    assert_eq!(join.next_wakeup(), None);
    let target = target.expect("a claim response");
    assert!(target.is_fcp_target());
    assert_eq!(target.vn_port.wwpn, TARGET_WWPN);
    let n: Vec<&Neighbour> = join.neighbours().collect();
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(n[0].heard.contains(&HeardIn::ClaimResponse));

    let mut i = Initiator::vn2vn(join.port().port, target.port(), 1452);
    // The FIP FLOGI goes to the target's ENode MAC and its LS_ACC comes back in FIP.
    let flogi = i.request(ElsRequest::Flogi, 0x8000);
    assert_eq!(flogi[..6], TARGET_MAC.0);
    assert!(matches!(
        fip_of(&flogi),
        Some((_, _, FipRepr::ElsRequest(_)))
    ));
    // Our WWPN (10:00:...) is the lower: the target logs in to us too, and is answered.
    assert_eq!(log_in(&mut rig, &mut i), 1);
    assert_eq!(i.peer_mfs, 1452);
    assert_eq!(rig.target.session_count(), 1);
    io_and_logout(&rig, &mut i);
}

#[test]
fn logs_in_point_to_point_and_does_io_against_l2san() {
    let mut rig = Rig::new();
    let local = Port::p2p(
        MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
        FcId::new(0x01_0102),
        Wwn(0x2000_5254_0012_3456),
        Wwn(0x1000_5254_0012_3456),
    );
    let remote = Port::p2p(TARGET_MAC, FcId::new(0x01_0101), TARGET_WWPN, Wwn(0));
    let mut i = Initiator::p2p(local, remote, 1452);
    let flogi = i.request(ElsRequest::Flogi, 0x8000);
    assert_eq!(flogi[..6], FLOGI_MAC.0);
    assert_eq!(header_of(&flogi).d_id, FcId::FLOGI);
    // Our WWPN is the higher: no PLOGI from the target.
    assert_eq!(log_in(&mut rig, &mut i), 0);
    io_and_logout(&rig, &mut i);
}

#[test]
fn a_probe_reply_for_our_id_makes_the_join_pick_another() {
    let t = Instant::now();
    let enode = MacAddr([0x0a, 0x4c, 0x32, 0, 0, 1]);
    let me = Vn2VnPort {
        port: Port::vn2vn(enode, FcId::new(0x1234), Wwn(1), Wwn(2)),
        fc4: Fc4Features::empty(),
        max_fcoe_size: 1500,
    };
    let cfg = JoinConfig {
        claim: true,
        probe_wait: Duration::from_millis(250),
        claim_again: Duration::from_secs(1),
        claims: 2,
        probe_tries: 2,
    };
    let mut j = Join::new(me, cfg, 7, t);
    let mut out = Vec::new();
    j.start(t, &mut out);
    assert_eq!(out.len(), 1);
    let (_, src, probe) = vn2vn_of(&out[0]).unwrap();
    assert_eq!((src, probe.subcode), (enode, Vn2VnSubcode::ProbeRequest));
    assert_eq!(j.next_wakeup(), Some(t + Duration::from_millis(250)));
    // Someone owns 0x1234: its Probe Reply, to our ENode MAC.
    let owner = Vn2VnPort {
        port: Port::vn2vn(
            MacAddr([2, 0, 0, 0, 0, 2]),
            FcId::new(0x1234),
            Wwn(3),
            Wwn(4),
        ),
        ..me
    };
    let mut reply = owner.frame(Vn2VnSubcode::ProbeReply);
    reply[..6].copy_from_slice(&enode.0);
    out.clear();
    assert_eq!(
        j.on_frame(&reply, t, &mut out),
        Some(Vn2VnSubcode::ProbeReply)
    );
    let id = j.port().port.id;
    assert_ne!(id, FcId::new(0x1234));
    assert_eq!(j.port().port.mac.0[3..], id.to_bytes());
    assert_eq!(
        vn2vn_of(&out[0]).unwrap().2.vn_port.fc_id,
        id,
        "probe for the new ID"
    );
    // Its ID is taken too: out of tries.
    let mut taken = Vn2VnPort {
        port: Port::vn2vn(MacAddr([2, 0, 0, 0, 0, 3]), id, Wwn(5), Wwn(6)),
        ..me
    }
    .frame(Vn2VnSubcode::ProbeReply);
    taken[..6].copy_from_slice(&enode.0);
    j.on_frame(&taken, t, &mut out);
    assert_eq!(j.state(), JoinState::GaveUp);
    assert_eq!(j.neighbours().count(), 2);
    // Our own frames and probe requests are nothing to learn from.
    let ours = out[0].clone();
    assert_eq!(j.on_frame(&ours, t, &mut out), None);

    // Claims on time, twice.
    let mut j = Join::new(me, cfg, 7, t);
    let mut out = Vec::new();
    j.start(t, &mut out);
    j.tick(t + Duration::from_millis(249), &mut out);
    assert_eq!(out.len(), 1);
    j.tick(t + Duration::from_millis(250), &mut out);
    j.tick(t + Duration::from_millis(1250), &mut out);
    j.tick(t + Duration::from_secs(5), &mut out);
    let subcodes: Vec<Vn2VnSubcode> = out.iter().map(|f| vn2vn_of(f).unwrap().2.subcode).collect();
    assert_eq!(
        subcodes,
        [
            Vn2VnSubcode::ProbeRequest,
            Vn2VnSubcode::ClaimNotification,
            Vn2VnSubcode::ClaimNotification
        ]
    );
}

#[test]
fn received_frames_are_checked() {
    let f = frame(IPXE_BOOT, 9);
    assert!(receive(&f, true).is_some());
    let mut bad = f.clone();
    let n = bad.len();
    bad[n - 8] ^= 1;
    assert!(receive(&bad, true).is_none(), "bad CRC");
    assert!(receive(&bad, false).is_some(), "CRC not checked");
    for len in 0..frame::frame_len(0) {
        assert!(receive(&f[..len], false).is_none());
    }
    let p = FcoePacket::new_checked(&f[14..]).unwrap();
    assert_eq!(FcoeRepr::parse(&p).unwrap().sof, Sof::I3);
    let fc = FcPacket::new_checked(p.fc_frame()).unwrap();
    assert!(fc.f_ctl().contains(FCtl::LAST_SEQ) && fc.r_ctl() == RCtl::ElsReply);
    assert_eq!(f[12..14], EtherType::FCOE.to_be_bytes());
}
