//! Hostile input, FCoE part: hand-made frames on a veth pair against the running target.
//!
//! Each test creates a namespace with a veth pair `a`–`b`, runs
//! `l2san serve -i a --fcoe 0=<image> --wwpn 20:00:00:25:b5:00:00:01` and talks to it through
//! raw sockets on `b` ([`RawSocket`]) as an iPXE-style point-to-point initiator: a plain FLOGI to
//! `0E:FC:00:FF:FF:FE`, then PLOGI 01.01.02 -> 01.01.01 and PRLI, as in
//! `testdata/captures/ipxe-fcoe-p2p-boot.pcap` (whose FLOGI, PLOGI and PRLI frames are replayed,
//! with our MAC). Frames are built and read with l2san's own
//! `wire` module.
//!
//! What is expected comes from the reference (`fcoe.md` §1.2 framing, §3.4-3.6 exchanges, BLS
//! and FCP, §3.7 sense table, §7 checklist) and from the behaviour `fcoe/src/fc/*.rs`
//! documents: frames with a bad CRC, a non-class-3 SOF/EOF, a short FC header, or Ethernet
//! padding are dropped silently; FCP or ELS from a port without a login get LS_RJT "PLOGI
//! required", FCP_CMND without PRLI is dropped; data for an unknown exchange or outside the
//! XFER_RDY range is dropped; ABTS of an unknown exchange gets BA_RJT.
//!
//! Every reply is checked: to us from the target's MAC, version 0, good CRC, SOFi3/SOFn3 and
//! EOFn/EOFt, never padded, reserved bytes and fill bytes zero, EX_CTX set and FIRST_SEQ clear,
//! the request's OX_ID. The image is compared byte for byte after every refused write and at
//! the end; the target must still run, never have panicked, and exit 0 on SIGTERM.
//!
//! Silence is checked without long waits: after the frames that must go unanswered an RTV goes
//! out; the target handles frames in order, so once the RTV's LS_ACC is in (plus a grace period)
//! any reply to the earlier frames would have arrived.
//!
//! l2san only (vblade has no FCoE): under `L2SAN_E2E_TARGET=vblade` they say so and do not run.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use l2san_common::MacAddr;
use l2san_fcoe::initiator::{frame, scsi, Port, Vn2VnPort};
use l2san_fcoe::wire::els::{fcp_sppf, ElsPacket, LoginRepr, PrliRepr, LOGIN_LEN, PRLI_LEN};
use l2san_fcoe::wire::fc::{FCtl, FcHeaderRepr, FcPacket, FcType, RCtl};
use l2san_fcoe::wire::fcoe::{crc32, emit_frame, Eof, FcoePacket, FcoeRepr, Sof};
use l2san_fcoe::wire::fcp::{rsp_flags, FcpCmndPacket, FcpCmndRepr, TaskAttribute};
use l2san_fcoe::wire::fip::{Fc4Features, FipPacket, FipRepr, Vn2VnSubcode, ALL_VN2VN_MACS};
use l2san_fcoe::wire::{FcId, Wwn};
use l2san_rig::fixture::{
    self, data, hex, listen_for_silence, patterned_image, recv_first, stop_clean, VethOpts,
    VethPair, REPLY_TIMEOUT,
};
use l2san_rig::rawsock::RawSocket;
use l2san_rig::rig::{self, Netns, Run, Target};

const ETHERTYPE_FCOE: u16 = 0x8906;
const ETHERTYPE_FIP: u16 = 0x8914;
const FLOGI_MAC: [u8; 6] = [0x0e, 0xfc, 0x00, 0xff, 0xff, 0xfe];
/// The target's WWPN (that of the capture's target) and ours (iPXE's in the capture): ours is
/// the higher, so we are 01.01.02 and the target 01.01.01, as in the capture.
const TARGET_WWPN: &str = "20:00:00:25:b5:00:00:01";
const OUR_WWPN: Wwn = Wwn(0x2000_5254_0012_3456);
const OUR_WWNN: Wwn = Wwn(0x1000_5254_0012_3456);
const OUR_ID: u32 = 0x01_0102;
const TARGET_ID: u32 = 0x01_0101;
/// 1 MiB image, 512-byte blocks.
const BLOCKS: u64 = 2048;
const BLOCK: usize = 512;
/// iPXE's receive size and ours (MTU 1500).
const MFS: usize = 1452;

/// SCSI.
const GOOD: u8 = 0x00;
const CHECK_CONDITION: u8 = 0x02;
const TEST_UNIT_READY: u8 = 0x00;
const WRITE_6: u8 = 0x0a;
const WRITE_16: u8 = 0x8a;

/// An FC header of ours: a request opening its exchange (FIRST_SEQ | END_SEQ | SEQ_INIT).
fn request(r_ctl: RCtl, fc_type: FcType, ox_id: u16) -> FcHeaderRepr {
    FcHeaderRepr {
        r_ctl,
        d_id: FcId::new(TARGET_ID),
        cs_ctl: 0,
        s_id: FcId::new(OUR_ID),
        fc_type,
        f_ctl: FCtl::FIRST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT,
        seq_id: (ox_id as u8) | 1,
        df_ctl: 0,
        seq_cnt: 0,
        ox_id,
        rx_id: 0xffff,
        parameter: 0,
    }
}

/// The FC frame (header, payload, fill bytes counted in F_CTL).
fn fc_frame(hdr: &FcHeaderRepr, payload: &[u8]) -> Vec<u8> {
    let fill = FCtl::fill_for(payload.len());
    let mut h = *hdr;
    h.f_ctl = h.f_ctl.with_fill_bytes(fill);
    let mut fc = vec![0u8; 24 + payload.len() + fill];
    h.emit(&mut FcPacket::new_unchecked(&mut fc[..]));
    fc[24..24 + payload.len()].copy_from_slice(payload);
    fc
}

/// A whole Ethernet frame carrying `fc` with the given delimiters and a good CRC.
fn fcoe_frame(dst: [u8; 6], src: [u8; 6], fc: &[u8], sof: Sof, eof: Eof) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 14 + fc.len() + 8];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ETHERTYPE_FCOE.to_be_bytes());
    emit_frame(&mut f[14..], sof, eof, fc).expect("FC frame of a header and a 4-aligned payload");
    f
}

/// A CDB in 16 bytes.
fn cdb16(bytes: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..bytes.len()].copy_from_slice(bytes);
    c
}

fn read10(lba: u32, blocks: u16) -> [u8; 16] {
    scsi::read_write(false, lba.into(), blocks.into(), false)
}

fn write10(lba: u32, blocks: u16) -> [u8; 16] {
    scsi::read_write(true, lba.into(), blocks.into(), false)
}

fn lun(n: u8) -> [u8; 8] {
    scsi::lun(n.into())
}

/// A received FCoE frame, checked and split.
#[derive(Debug, Clone)]
struct Fr {
    raw: Vec<u8>,
    hdr: FcHeaderRepr,
    /// The FC payload without fill bytes.
    data: Vec<u8>,
}

/// An FCP_RSP, read.
#[derive(Debug, Clone)]
struct Rsp {
    flags: u8,
    status: u8,
    resid: u32,
    sense: Vec<u8>,
}

impl Rsp {
    fn parse(fr: &Fr, what: &str) -> Result<Rsp> {
        let d = &fr.data;
        ensure!(
            fr.hdr.r_ctl == RCtl::FcpRsp && fr.hdr.fc_type == FcType::Fcp,
            "{what}: expected FCP_RSP, got {:?}: {}",
            fr.hdr,
            hex(&fr.raw)
        );
        ensure!(d.len() >= 24, "{what}: FCP_RSP of {} bytes", d.len());
        ensure!(
            d[0..8].iter().all(|&b| b == 0) && d[8..10] == [0, 0],
            "{what}: FCP_RSP reserved/qualifier bytes not zero: {}",
            hex(d)
        );
        let flags = d[10];
        let be32 = |at: usize| u32::from_be_bytes(d[at..at + 4].try_into().unwrap());
        let sns_len = if flags & rsp_flags::SNS_LEN_VALID != 0 {
            be32(16) as usize
        } else {
            ensure!(
                be32(16) == 0,
                "{what}: FCP_SNS_LEN set without SNS_LEN_VALID"
            );
            0
        };
        let rsp_len = if flags & rsp_flags::RSP_LEN_VALID != 0 {
            be32(20) as usize
        } else {
            ensure!(
                be32(20) == 0,
                "{what}: FCP_RSP_LEN set without RSP_LEN_VALID"
            );
            0
        };
        ensure!(
            d.len() == 24 + rsp_len + sns_len,
            "{what}: FCP_RSP is {} bytes, its lengths say {} (stale bytes after it?): {}",
            d.len(),
            24 + rsp_len + sns_len,
            hex(d)
        );
        let resid = be32(12);
        if flags & (rsp_flags::RESID_OVER | rsp_flags::RESID_UNDER) == 0 {
            ensure!(resid == 0, "{what}: FCP_RESID {resid} without a RESID flag");
        }
        Ok(Rsp {
            flags,
            status: d[11],
            resid,
            sense: d[24 + rsp_len..].to_vec(),
        })
    }

    fn good(&self, what: &str) -> Result<()> {
        ensure!(
            self.status == GOOD && self.sense.is_empty(),
            "{what}: status {:#04x} sense {}, expected GOOD",
            self.status,
            hex(&self.sense)
        );
        Ok(())
    }

    /// CHECK CONDITION with fixed-format sense key/ASC/ASCQ, zeros where fixed sense has
    /// nothing to say.
    fn check(&self, key: u8, asc: u8, ascq: u8, what: &str) -> Result<()> {
        let s = &self.sense;
        ensure!(
            self.status == CHECK_CONDITION && s.len() >= 18,
            "{what}: status {:#04x} sense {}, expected CHECK CONDITION with sense",
            self.status,
            hex(s)
        );
        ensure!(
            s[0] & 0x7f == 0x70 && s[2] & 0x0f == key && s[12] == asc && s[13] == ascq,
            "{what}: sense {}, expected {key:02x}/{asc:02x}/{ascq:02x}",
            hex(s)
        );
        Ok(())
    }

    fn resid(&self, flag: u8, resid: u32, what: &str) -> Result<()> {
        let got = self.flags & (rsp_flags::RESID_OVER | rsp_flags::RESID_UNDER);
        ensure!(
            got == flag && self.resid == resid,
            "{what}: residual flags {got:#04x} count {}, expected {flag:#04x} / {resid}",
            self.resid
        );
        Ok(())
    }
}

/// What one FCP command brought back.
#[derive(Debug, Clone)]
struct Outcome {
    data: Vec<u8>,
    /// XFER_RDY: (RX_ID, burst length).
    xfer_rdy: Option<(u16, u32)>,
    rsp: Option<Rsp>,
}

/// A running target on `a`, raw sockets on `b`, and the image as it must be.
/// Fields drop in order: the target and the sockets before the namespace.
struct Fx {
    target: Option<Target>,
    sock: RawSocket,
    fip: RawSocket,
    _ns: Netns,
    image: PathBuf,
    expected: Vec<u8>,
    us: [u8; 6],
    them: [u8; 6],
    next_ox: u16,
}

impl Fx {
    fn start(run: &Run, read_only: bool) -> Result<Fx> {
        let image = run.path("disk.img");
        let expected = patterned_image(&image, BLOCKS, BLOCK)?;
        let ns = Netns::new()?;
        let veth = VethPair::create(
            &ns,
            VethOpts {
                mtu: Some(1500),
                no_ipv6: true,
            },
        )?;
        let (them, us) = (veth.them, veth.us);
        let sock = veth.socket(&ns, ETHERTYPE_FCOE)?;
        let fip = veth.socket(&ns, ETHERTYPE_FIP)?;
        let tap = veth.tap(1500);
        let mut spec = format!("0={}", image.display());
        if read_only {
            spec.push_str(",ro");
        }
        let args = vec![
            "--fcoe".to_string(),
            spec,
            "--wwpn".to_string(),
            TARGET_WWPN.to_string(),
        ];
        let target = Target::l2san_args(
            &ns,
            &tap,
            &rig::l2san_bin()?,
            &args,
            &run.path("target.log"),
        )?;
        Ok(Fx {
            target: Some(target),
            sock,
            fip,
            _ns: ns,
            image,
            expected,
            us,
            them,
            next_ox: 0x0100,
        })
    }

    fn ox(&mut self) -> u16 {
        self.next_ox += 1;
        self.next_ox
    }

    /// A request frame to the target (SOFi3, EOFt).
    fn frame(&self, hdr: &FcHeaderRepr, payload: &[u8]) -> Vec<u8> {
        fcoe_frame(self.them, self.us, &fc_frame(hdr, payload), Sof::I3, Eof::T)
    }

    fn send(&self, f: &[u8]) -> Result<()> {
        self.sock
            .send(f)
            .with_context(|| format!("cannot send {}", hex(f)))
    }

    /// The next FCoE frame, checked as every reply must be.
    fn recv(&self, timeout: Duration, what: &str) -> Result<Option<Fr>> {
        let Some(raw) = self.sock.recv(timeout)? else {
            return Ok(None);
        };
        self.check_frame(raw, what).map(Some)
    }

    /// The checks every FCoE reply must pass (reference §1.2, §3.5).
    fn check_frame(&self, raw: Vec<u8>, what: &str) -> Result<Fr> {
        let ctx = || format!("{what}: reply {}", hex(&raw));
        ensure!(raw.len() >= 60, "{}: shorter than 60 bytes", ctx());
        ensure!(raw[0..6] == self.us, "{}: not sent to us", ctx());
        ensure!(
            raw[6..12] == self.them,
            "{}: not from the target's MAC",
            ctx()
        );
        ensure!(raw.len() <= 1514, "{}: larger than the MTU", ctx());
        let p =
            FcoePacket::new_checked(&raw[14..]).map_err(|e| anyhow::anyhow!("{}: {e}", ctx()))?;
        let repr = FcoeRepr::parse(&p).map_err(|e| anyhow::anyhow!("{}: {e}", ctx()))?;
        ensure!(
            repr.sof.is_class3() && repr.eof.is_class3(),
            "{}: SOF {:?} EOF {:?}",
            ctx(),
            repr.sof,
            repr.eof
        );
        ensure!(
            repr.buffer_len() == raw.len() - 14,
            "{}: padded after the FCoE trailer",
            ctx()
        );
        ensure!(
            raw[14..27].iter().all(|&b| b == 0) && raw[raw.len() - 3..].iter().all(|&b| b == 0),
            "{}: FCoE reserved bytes not zero",
            ctx()
        );
        let fc = FcPacket::new_checked(p.fc_frame()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let hdr = FcHeaderRepr::parse(&fc).map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(
            hdr.cs_ctl == 0 && hdr.df_ctl == 0,
            "{}: CS_CTL/DF_CTL not zero",
            ctx()
        );
        let fill = hdr.f_ctl.fill_bytes();
        let payload = fc.payload();
        ensure!(
            payload.len() >= fill && payload[payload.len() - fill..].iter().all(|&b| b == 0),
            "{}: fill bytes not zero",
            ctx()
        );
        ensure!(
            hdr.f_ctl.contains(FCtl::EX_CTX) && !hdr.f_ctl.contains(FCtl::FIRST_SEQ),
            "{}: F_CTL {:?}: the responder's frames set EX_CTX and never FIRST_SEQ",
            ctx(),
            hdr.f_ctl
        );
        ensure!(
            (repr.sof == Sof::I3) == (hdr.seq_cnt == 0)
                && (repr.eof == Eof::T) == hdr.f_ctl.contains(FCtl::END_SEQ),
            "{}: SOF/EOF do not match SEQ_CNT/END_SEQ",
            ctx()
        );
        ensure!(
            (hdr.d_id.get() == OUR_ID && hdr.s_id.get() == TARGET_ID)
                || (hdr.d_id.get() == 0 && hdr.s_id == FcId::FLOGI),
            "{}: D_ID {} S_ID {}",
            ctx(),
            hdr.d_id,
            hdr.s_id
        );
        Ok(Fr {
            data: fc.data().to_vec(),
            hdr,
            raw,
        })
    }

    /// Sends `f` and collects the frames of exchange `ox` up to the one that ends it (LAST_SEQ)
    /// or hands us the initiative (XFER_RDY). Any frame of another exchange is an error.
    fn exchange(&mut self, f: &[u8], ox: u16, what: &str) -> Result<Vec<Fr>> {
        self.send(f)?;
        self.collect(ox, what)
    }

    fn collect(&mut self, ox: u16, what: &str) -> Result<Vec<Fr>> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(fr) = self.recv(left, what)? else {
                bail!(
                    "{what}: no (complete) answer within {REPLY_TIMEOUT:?}; got {} frames",
                    out.len()
                );
            };
            ensure!(
                fr.hdr.ox_id == ox,
                "{what}: a frame of exchange {:#06x}, expected {ox:#06x} (a reply to an \
                 earlier frame?): {}",
                fr.hdr.ox_id,
                hex(&fr.raw)
            );
            let end = fr.hdr.f_ctl.contains(FCtl::LAST_SEQ) || fr.hdr.r_ctl == RCtl::XferRdy;
            out.push(fr);
            if end {
                return Ok(out);
            }
        }
    }

    /// One ELS request; returns its single reply frame (ELS reply, payload checked to be
    /// LS_ACC or LS_RJT).
    fn els(&mut self, payload: &[u8], what: &str) -> Result<Fr> {
        let ox = self.ox();
        let f = self.frame(&request(RCtl::ElsRequest, FcType::Els, ox), payload);
        self.els_frame(&f, ox, what)
    }

    fn els_frame(&mut self, f: &[u8], ox: u16, what: &str) -> Result<Fr> {
        let mut frs = self.exchange(f, ox, what)?;
        ensure!(frs.len() == 1, "{what}: {} frames for one ELS", frs.len());
        let fr = frs.remove(0);
        ensure!(
            (fr.hdr.r_ctl, fr.hdr.fc_type) == (RCtl::ElsReply, FcType::Els),
            "{what}: not an ELS reply: {:?}",
            fr.hdr
        );
        ensure!(
            fr.hdr
                .f_ctl
                .contains(FCtl::LAST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT),
            "{what}: ELS reply F_CTL {:?}",
            fr.hdr.f_ctl
        );
        ensure!(
            fr.data.len() >= 4 && matches!(fr.data[0], 1 | 2),
            "{what}: ELS reply payload {}",
            hex(&fr.data)
        );
        if fr.data[0] == 1 {
            ensure!(
                fr.data.len() == 8 && fr.data[1..5] == [0; 4],
                "{what}: LS_RJT payload {} (8 bytes, bytes 1-4 reserved)",
                hex(&fr.data)
            );
        }
        Ok(fr)
    }

    fn ls_acc(&mut self, payload: &[u8], len: usize, what: &str) -> Result<Fr> {
        let fr = self.els(payload, what)?;
        ensure!(
            fr.data[0] == 2 && fr.data.len() == len && (len == PRLI_LEN || fr.data[1..4] == [0; 3]),
            "{what}: expected a {len}-byte LS_ACC, got {}",
            hex(&fr.data)
        );
        Ok(fr)
    }

    /// RTV: the ping that proves the target handled everything before it.
    fn rtv_frame(&mut self) -> (Vec<u8>, u16) {
        let ox = self.ox();
        (
            self.frame(
                &request(RCtl::ElsRequest, FcType::Els, ox),
                &[0x0e, 0, 0, 0],
            ),
            ox,
        )
    }

    fn ping(&mut self, what: &str) -> Result<()> {
        let (f, ox) = self.rtv_frame();
        let fr = self.els_frame(&f, ox, what)?;
        ensure!(
            fr.data[0] == 2 && fr.data.len() == 16,
            "{what}: RTV answer {}",
            hex(&fr.data)
        );
        Ok(())
    }

    /// Sends every frame in `frames`, which must all go unanswered, then an RTV; fails on any
    /// FCoE frame but the RTV's LS_ACC.
    fn silent(&mut self, frames: &[Vec<u8>], what: &str) -> Result<()> {
        for f in frames {
            self.send(f)?;
        }
        let (ping, ox) = self.rtv_frame();
        self.send(&ping)?;
        let mut rtv_answered = false;
        let pinged = listen_for_silence(&self.sock, |raw| {
            let fr = self.check_frame(raw, what)?;
            if fr.hdr.ox_id == ox && !rtv_answered {
                rtv_answered = true;
                return Ok(true);
            }
            bail!(
                "{what}: expected no reply to the frames sent, got {}",
                hex(&fr.raw)
            );
        })?;
        ensure!(
            pinged,
            "{what}: no answer to the RTV sent after the silent frames (target dead?)"
        );
        Ok(())
    }

    /// FLOGI to 0E:FC:00:FF:FF:FE (iPXE's, from the capture).
    fn flogi(&mut self) -> Result<()> {
        let ox = self.ox();
        let payload = capture_els(8, 0x04, LOGIN_LEN, "FLOGI")?;
        let mut hdr = request(RCtl::ElsRequest, FcType::Els, ox);
        hdr.d_id = FcId::FLOGI;
        hdr.s_id = FcId::new(0);
        let f = fcoe_frame(
            FLOGI_MAC,
            self.us,
            &fc_frame(&hdr, &payload),
            Sof::I3,
            Eof::T,
        );
        let fr = self.els_frame(&f, ox, "FLOGI")?;
        ensure!(
            fr.data[0] == 2 && fr.data.len() == LOGIN_LEN,
            "FLOGI: {}",
            hex(&fr.data)
        );
        let acc = LoginRepr::parse(&ElsPacket::new_unchecked(&fr.data[..]))
            .map_err(|e| anyhow::anyhow!("FLOGI LS_ACC: {e}"))?;
        ensure!(
            !acc.is_f_port() && acc.wwpn.to_string() == TARGET_WWPN,
            "FLOGI LS_ACC: {acc:?}"
        );
        unused_login_bytes_zero(&fr.data, "FLOGI LS_ACC")
    }

    fn plogi(&mut self) -> Result<()> {
        let payload = capture_els(10, 0x03, LOGIN_LEN, "PLOGI")?;
        let fr = self.ls_acc(&payload, LOGIN_LEN, "PLOGI")?;
        unused_login_bytes_zero(&fr.data, "PLOGI LS_ACC")
    }

    fn prli(&mut self) -> Result<()> {
        let payload = capture_els(12, 0x20, PRLI_LEN, "PRLI")?;
        let fr = self.ls_acc(&payload, PRLI_LEN, "PRLI")?;
        let acc = PrliRepr::parse(&ElsPacket::new_unchecked(&fr.data[..]))
            .map_err(|e| anyhow::anyhow!("PRLI LS_ACC: {e}"))?;
        ensure!(
            acc.response_code() == 1
                && acc.service_params & fcp_sppf::TARG_FCN != 0
                && fr.data[7] == 0,
            "PRLI LS_ACC: {acc:?}"
        );
        Ok(())
    }

    /// FLOGI, PLOGI, PRLI, and TEST UNIT READY until the power-on unit attention is gone.
    fn login(&mut self) -> Result<()> {
        self.flogi()?;
        self.plogi()?;
        self.prli()?;
        let (first, _) = self.scsi(0, cdb16(&[TEST_UNIT_READY]), 0, false, false, "first TUR")?;
        let rsp = first.rsp.context("first TUR: no FCP_RSP")?;
        if rsp.status != GOOD {
            rsp.check(0x06, 0x29, 0x00, "first TUR (power-on unit attention)")?;
            let (again, _) = self.scsi(0, cdb16(&[TEST_UNIT_READY]), 0, false, false, "TUR")?;
            again.rsp.context("TUR: no FCP_RSP")?.good("second TUR")?;
        }
        Ok(())
    }

    fn cmnd_frame(
        &mut self,
        lun_n: u8,
        cdb: [u8; 16],
        fcp_dl: u32,
        rd: bool,
        wr: bool,
    ) -> (Vec<u8>, u16) {
        let ox = self.ox();
        let c = FcpCmndRepr {
            lun: lun(lun_n),
            crn: 0,
            task_attribute: TaskAttribute::Simple,
            priority: 0,
            tmf_flags: 0,
            rddata: rd,
            wrdata: wr,
            cdb,
            fcp_dl,
        };
        let mut p = vec![0u8; c.buffer_len()];
        c.emit(&mut FcpCmndPacket::new_unchecked(&mut p[..]));
        (self.frame(&request(RCtl::FcpCmnd, FcType::Fcp, ox), &p), ox)
    }

    /// One FCP_CMND and what comes back, up to the FCP_RSP or an XFER_RDY.
    fn scsi(
        &mut self,
        lun_n: u8,
        cdb: [u8; 16],
        fcp_dl: u32,
        rd: bool,
        wr: bool,
        what: &str,
    ) -> Result<(Outcome, u16)> {
        let (f, ox) = self.cmnd_frame(lun_n, cdb, fcp_dl, rd, wr);
        let frs = self.exchange(&f, ox, what)?;
        Ok((self.outcome(frs, what)?, ox))
    }

    fn outcome(&self, frs: Vec<Fr>, what: &str) -> Result<Outcome> {
        let mut out = Outcome {
            data: Vec::new(),
            xfer_rdy: None,
            rsp: None,
        };
        let mut rx_id = None;
        for fr in frs {
            ensure!(
                *rx_id.get_or_insert(fr.hdr.rx_id) == fr.hdr.rx_id && fr.hdr.rx_id != 0xffff,
                "{what}: RX_ID {:#06x} (must be assigned and constant)",
                fr.hdr.rx_id
            );
            match fr.hdr.r_ctl {
                RCtl::FcpData => {
                    ensure!(
                        fr.hdr.f_ctl.contains(FCtl::REL_OFF)
                            && fr.hdr.parameter as usize == out.data.len(),
                        "{what}: data frame at offset {} after {} bytes",
                        fr.hdr.parameter,
                        out.data.len()
                    );
                    ensure!(
                        fr.data.len() <= MFS,
                        "{what}: data frame of {}",
                        fr.data.len()
                    );
                    out.data.extend_from_slice(&fr.data);
                }
                RCtl::XferRdy => {
                    ensure!(
                        fr.data.len() == 12
                            && fr.data[0..4] == [0; 4]
                            && fr.data[8..12] == [0; 4]
                            && fr.hdr.f_ctl.contains(FCtl::SEQ_INIT),
                        "{what}: XFER_RDY {}",
                        hex(&fr.data)
                    );
                    let burst = u32::from_be_bytes(fr.data[4..8].try_into().unwrap());
                    out.xfer_rdy = Some((fr.hdr.rx_id, burst));
                }
                RCtl::FcpRsp => {
                    ensure!(
                        fr.hdr
                            .f_ctl
                            .contains(FCtl::LAST_SEQ | FCtl::END_SEQ | FCtl::SEQ_INIT),
                        "{what}: FCP_RSP F_CTL {:?}",
                        fr.hdr.f_ctl
                    );
                    out.rsp = Some(Rsp::parse(&fr, what)?);
                }
                other => bail!("{what}: unexpected {other:?} in an FCP exchange"),
            }
        }
        Ok(out)
    }

    /// FCP_DATA frames of `bytes` at relative offset `at`: REL_OFF, one sequence, the last
    /// frame ending it and handing back the initiative when `last`.
    fn data_frames(&self, ox: u16, rx_id: u16, at: u32, bytes: &[u8], last: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = bytes.chunks(MFS).collect();
        for (i, c) in chunks.iter().enumerate() {
            let end = i + 1 == chunks.len() && last;
            let mut h = request(RCtl::FcpData, FcType::Fcp, ox);
            h.rx_id = rx_id;
            h.seq_cnt = i as u16;
            h.parameter = at + (i * MFS) as u32;
            h.f_ctl = FCtl::REL_OFF;
            if end {
                h.f_ctl |= FCtl::END_SEQ | FCtl::SEQ_INIT;
            }
            let sof = if i == 0 { Sof::I3 } else { Sof::N3 };
            let eof = if end { Eof::T } else { Eof::N };
            out.push(fcoe_frame(self.them, self.us, &fc_frame(&h, c), sof, eof));
        }
        out
    }

    /// A whole write: FCP_CMND, XFER_RDY for `expect_burst`, the data, FCP_RSP.
    fn write(&mut self, cdb: [u8; 16], fcp_dl: u32, bytes: &[u8], what: &str) -> Result<Rsp> {
        let (o, ox) = self.scsi(0, cdb, fcp_dl, false, true, what)?;
        let (rx_id, burst) = o
            .xfer_rdy
            .with_context(|| format!("{what}: no XFER_RDY but {:?}", o.rsp))?;
        ensure!(
            burst as usize == bytes.len(),
            "{what}: XFER_RDY asks for {burst} bytes, expected {}",
            bytes.len()
        );
        self.send_data(ox, rx_id, bytes, what)
    }

    /// The data phase of write `ox` (RX_ID `rx_id`): all of `bytes` from offset 0, handing back
    /// the initiative; returns the FCP_RSP.
    fn send_data(&mut self, ox: u16, rx_id: u16, bytes: &[u8], what: &str) -> Result<Rsp> {
        for f in self.data_frames(ox, rx_id, 0, bytes, true) {
            self.send(&f)?;
        }
        let frs = self.collect(ox, what)?;
        let o = self.outcome(frs, what)?;
        o.rsp.with_context(|| format!("{what}: no FCP_RSP"))
    }

    fn expect_write(&mut self, at: usize, bytes: &[u8]) {
        self.expected[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn check_image(&self, what: &str) -> Result<()> {
        fixture::check_image(&self.image, &self.expected, BLOCK, what)
    }

    /// READ(10) through the target, compared with the image as it must be.
    fn read_check(&mut self, lba: u32, blocks: u16, what: &str) -> Result<()> {
        let len = usize::from(blocks) * BLOCK;
        let (o, _) = self.scsi(0, read10(lba, blocks), len as u32, true, false, what)?;
        o.rsp.context("no FCP_RSP")?.good(what)?;
        let at = lba as usize * BLOCK;
        ensure!(
            o.data == self.expected[at..at + len],
            "{what}: data read is not blocks {lba}..+{blocks} of the image"
        );
        Ok(())
    }

    /// Still answering, the image, still running, no panic, exit 0 on SIGTERM.
    fn finish(mut self) -> Result<()> {
        self.ping("RTV at the end")?;
        self.check_image("at the end")?;
        stop_clean(self.target.take().context("no target")?)?;
        self.check_image("after SIGTERM")
    }
}

/// The ELS payload of frame `n` of ipxe-fcoe-p2p-boot.pcap (8 FLOGI, 10 PLOGI, 12 PRLI),
/// checked to be a `len`-byte `name` (ELS command `code`).
fn capture_els(n: usize, code: u8, len: usize, name: &str) -> Result<Vec<u8>> {
    let frames = l2san_common::test_utils::capture("ipxe-fcoe-p2p-boot.pcap");
    let f = &frames[n - 1];
    assert!(
        f.len() >= 14 + 14 + 24 + 8,
        "frame {n} of the capture is no FCoE ELS"
    );
    let payload = f[14 + 14 + 24..f.len() - 8].to_vec();
    ensure!(
        payload.len() == len && payload[0] == code,
        "frame {n} of the capture is no {name}: {}",
        hex(&payload)
    );
    Ok(payload)
}

/// In a FLOGI or PLOGI LS_ACC, classes 1, 2, 4 and the vendor version are zeros (no stale
/// bytes).
fn unused_login_bytes_zero(acc: &[u8], what: &str) -> Result<()> {
    ensure!(
        acc[36..68].iter().all(|&b| b == 0) && acc[84..116].iter().all(|&b| b == 0),
        "{what}: unused class or vendor bytes not zero: {}",
        hex(acc)
    );
    Ok(())
}

/// Runs one case: a fresh namespace, target and image, `body`, then [`Fx::finish`].
fn case(name: &str, read_only: bool, body: impl FnOnce(&mut Fx) -> Result<()>) {
    rig::e2e_l2san(&format!("fcoe_bad_{name}"), "vblade has no FCoE", |run| {
        let mut fx = Fx::start(run, read_only)?;
        body(&mut fx)?;
        fx.finish()
    });
}

// ---- Framing: CRC, delimiters, length, padding (§1.2) ------------------------------------

/// §1.2: a frame whose CRC fails is dropped (both initiators drop them too); the data of a bad
/// frame never reaches the image, and the exchange it belonged to still completes.
#[test]
fn bad_crc_dropped() {
    case("bad_crc", false, |fx| {
        fx.login()?;
        let mut bad = Vec::new();
        let (mut f, _) = fx.cmnd_frame(0, cdb16(&[TEST_UNIT_READY]), 0, false, false);
        let n = f.len();
        f[n - 8] ^= 0x01; // the CRC itself
        bad.push(f);
        let (mut f, _) = fx.cmnd_frame(0, read10(0, 1), 512, true, false);
        f[14 + 14 + 24 + 12] ^= 0x80; // a CDB byte under the CRC
        bad.push(f);
        let (mut f, _) = fx.rtv_frame();
        f[14 + 14 + 16] ^= 0xff; // OX_ID
        bad.push(f);
        fx.silent(&bad, "frames with a bad CRC")?;

        // A write whose first data frame is corrupt: the corrupt frame is dropped, the good
        // one completes the write.
        let (o, ox) = fx.scsi(0, write10(40, 1), 512, false, true, "WRITE(10) 1 block")?;
        let (rx_id, burst) = o.xfer_rdy.context("no XFER_RDY")?;
        ensure!(burst == 512, "XFER_RDY burst {burst}");
        let good = data(3, 512);
        let mut corrupt = fx.data_frames(ox, rx_id, 0, &data(9, 512), true).remove(0);
        let n = corrupt.len();
        corrupt[n - 9 - 100] ^= 0x55;
        fx.silent(&[corrupt], "write data with a bad CRC")?;
        fx.check_image("after write data with a bad CRC")?;
        fx.send_data(ox, rx_id, &good, "write data")?
            .good("write")?;
        fx.expect_write(40 * BLOCK, &good);
        fx.check_image("after the write")?;
        fx.read_check(40, 1, "read back")
    });
}

/// §1.2 / §7 step 3: class 3 only (SOFi3/SOFn3, EOFn/EOFt); anything else is dropped, as iPXE
/// drops it.
#[test]
fn bad_sof_eof_dropped() {
    case("bad_sof_eof", false, |fx| {
        fx.login()?;
        let mut bad = Vec::new();
        for (sof, eof) in [
            (0x28, 0x42), // SOFf
            (0x2d, 0x42), // SOFi2
            (0x35, 0x42), // SOFn2
            (0x29, 0x42), // SOFi4
            (0x00, 0x42),
            (0xff, 0x42),
            (0x2e, 0x49), // EOFni
            (0x2e, 0x50), // EOFa
            (0x2e, 0x00),
        ] {
            let (f, _) = fx.rtv_frame();
            let fc = f[28..f.len() - 8].to_vec();
            bad.push(fcoe_frame(
                fx.them,
                fx.us,
                &fc,
                Sof::from(sof),
                Eof::from(eof),
            ));
            let (f, _) = fx.cmnd_frame(0, cdb16(&[TEST_UNIT_READY]), 0, false, false);
            let fc = f[28..f.len() - 8].to_vec();
            bad.push(fcoe_frame(
                fx.them,
                fx.us,
                &fc,
                Sof::from(sof),
                Eof::from(eof),
            ));
        }
        // FCoE version 1 (the upper nibble of byte 0), CRC good.
        let (mut f, _) = fx.rtv_frame();
        f[14] = 0x10;
        bad.push(f);
        fx.silent(&bad, "frames with non-class-3 delimiters or version 1")?;
        // Class-3 delimiters in the other combination are fine: SOFn3 / EOFn.
        let (f, ox) = fx.rtv_frame();
        let fc = f[28..f.len() - 8].to_vec();
        let f = fcoe_frame(fx.them, fx.us, &fc, Sof::N3, Eof::N);
        fx.els_frame(&f, ox, "RTV with SOFn3/EOFn")?;
        Ok(())
    });
}

/// §1.2: the smallest FCoE frame holds a whole 24-byte FC header; shorter ones, and FC frames
/// whose length is not a multiple of four, are dropped.
#[test]
fn truncated_fc_header_dropped() {
    case("truncated", false, |fx| {
        fx.login()?;
        let (f, _) = fx.rtv_frame();
        let fc = f[28..f.len() - 8].to_vec();
        let mut bad = Vec::new();
        // FC header cut to 20, 12 and 0 bytes, each with a CRC that matches what is there.
        for cut in [20usize, 12, 4, 0] {
            let part = &fc[..cut];
            let mut g = f[..28].to_vec();
            g.extend_from_slice(part);
            g.extend_from_slice(&crc32(part).to_le_bytes());
            g.extend_from_slice(&[0x42, 0, 0, 0]);
            bad.push(g);
        }
        // The FCoE header alone, and an Ethernet header alone.
        bad.push(f[..28].to_vec());
        bad.push(f[..14].to_vec());
        // An FC frame of 26 bytes (not a multiple of 4), CRC good.
        let mut odd = fc[..24].to_vec();
        odd.extend_from_slice(&[0x0e, 0]);
        let mut g = f[..28].to_vec();
        g.extend_from_slice(&odd);
        g.extend_from_slice(&crc32(&odd).to_le_bytes());
        g.extend_from_slice(&[0x42, 0, 0, 0]);
        bad.push(g);
        // A truncated frame: the trailer cut off.
        bad.push(f[..f.len() - 8].to_vec());
        fx.silent(&bad, "truncated frames")
    });
}

/// §1.2: FCoE is never Ethernet-padded (iPXE reads the trailer at the very end): zero bytes
/// after the trailer move it, and the frame is dropped.
#[test]
fn padded_frames_dropped() {
    case("padded", false, |fx| {
        fx.login()?;
        let mut bad = Vec::new();
        for pad in [1usize, 2, 4, 8, 36] {
            let (mut f, _) = fx.rtv_frame();
            f.extend(vec![0u8; pad]);
            bad.push(f);
            let (mut f, _) = fx.cmnd_frame(0, cdb16(&[TEST_UNIT_READY]), 0, false, false);
            f.extend(vec![0u8; pad]);
            bad.push(f);
        }
        fx.silent(&bad, "padded frames")
    });
}

// ---- FIP descriptors (§2.1) ------------------------------------------------------------------

/// A VN2VN Probe Request for N_Port ID `id`, from us; `extra` descriptors appended.
fn probe(us: [u8; 6], id: FcId, extra: &[&[u8]]) -> Vec<u8> {
    let me = Vn2VnPort {
        port: Port::vn2vn(MacAddr(us), id, OUR_WWPN, OUR_WWNN),
        fc4: Fc4Features::empty(),
        max_fcoe_size: 0,
    };
    let repr = FipRepr::Vn2Vn(me.repr(Vn2VnSubcode::ProbeRequest));
    let mut p = vec![0u8; repr.buffer_len()];
    repr.emit(&mut FipPacket::new_unchecked(&mut p[..]));
    for d in extra {
        p.extend_from_slice(d);
    }
    let words = ((p.len() - 10) / 4) as u16;
    p[6..8].copy_from_slice(&words.to_be_bytes());
    let mut f = ALL_VN2VN_MACS.0.to_vec();
    f.extend_from_slice(&us);
    f.extend_from_slice(&ETHERTYPE_FIP.to_be_bytes());
    f.extend_from_slice(&p);
    f
}

/// §2.1: a FIP frame with an unknown critical descriptor (type < 128) or a critical descriptor
/// twice is dropped (iPXE `fcoe_fip_parse`, Linux `fcoe_ctlr_vn_parse`), and so is one with a
/// descriptor of the wrong or zero length; unknown non-critical descriptors are skipped.
/// Checked on the VN2VN probe for the target's own N_Port ID, which it answers with a Probe
/// Reply once its address is claimed.
#[test]
fn fip_unknown_and_duplicate_critical_descriptors_dropped() {
    case("fip_descriptors", false, |fx| {
        // Wait for the VN_Port's beacon (probe, claim, up: about a second): a probe for its ID
        // while it is still probing would make it pick another.
        let id = fx.vn_beacon(Duration::from_secs(10))?;
        let good = probe(fx.us, id, &[]);
        fx.fip.send(&good)?;
        let n = fx.probe_replies(Duration::from_millis(500))?;
        ensure!(
            n == 1,
            "{n} Probe Replies to a probe for the target's ID {id}"
        );
        let unknown_critical: &[u8] = &[100, 2, 0, 0, 0, 0, 0, 0];
        let mac_again: &[u8] = &[2, 2, 0x52, 0x54, 0, 0, 0, 1];
        let name_again: &[u8] = &[4, 3, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 2];
        let vendor_too_short: &[u8] = &[13, 1, 0, 0];
        let zero_len: &[u8] = &[200, 0, 0, 0];
        let mac_too_long: &[u8] = &[2, 3, 0x52, 0x54, 0, 0, 0, 1, 0, 0, 0, 0];
        let bad = [
            probe(fx.us, id, &[unknown_critical]),
            probe(fx.us, id, &[mac_again]),
            probe(fx.us, id, &[name_again]),
            probe(fx.us, id, &[vendor_too_short]),
            probe(fx.us, id, &[zero_len]),
            probe(fx.us, id, &[mac_too_long]),
        ];
        for f in &bad {
            fx.fip.send(f)?;
        }
        fx.fip.send(&good)?;
        let n = fx.probe_replies(Duration::from_millis(500))?;
        ensure!(
            n == 1,
            "{n} Probe Replies to {} malformed probes and 1 good one (expected 1)",
            bad.len()
        );
        // An unknown non-critical descriptor is skipped: still answered.
        let non_critical: &[u8] = &[200, 2, 1, 2, 3, 4, 5, 6];
        fx.fip.send(&probe(fx.us, id, &[non_critical]))?;
        let n = fx.probe_replies(Duration::from_millis(500))?;
        ensure!(
            n == 1,
            "{n} Probe Replies to a probe with a non-critical descriptor"
        );
        // The FCoE side is untouched: the login still works.
        fx.login()
    });
}

impl Fx {
    /// The N_Port ID of the target's VN_Port, from its first beacon.
    fn vn_beacon(&mut self, wait: Duration) -> Result<FcId> {
        let them = self.them;
        recv_first(&self.fip, wait, |f| {
            let (_, _, v) = frame::vn2vn_of(&f)?;
            (v.subcode == Vn2VnSubcode::Beacon && v.enode_mac.0 == them).then_some(v.vn_port.fc_id)
        })?
        .with_context(|| format!("no VN2VN beacon from the target within {wait:?}"))
    }

    /// Probe Replies to us within `wait` (beacons and claims to everyone are ignored), each
    /// checked: from the target's MAC, parsing, zeros after the descriptor list.
    fn probe_replies(&mut self, wait: Duration) -> Result<usize> {
        let deadline = Instant::now() + wait;
        let mut n = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(f) = self.fip.recv(left)? else {
                return Ok(n);
            };
            if f[0..6] != self.us {
                continue;
            }
            ensure!(f[6..12] == self.them, "FIP reply not from the target's MAC");
            let p = FipPacket::new_checked(&f[14..]).map_err(|e| anyhow::anyhow!("{e}"))?;
            let r = FipRepr::parse(&p).map_err(|e| anyhow::anyhow!("FIP reply: {e}"))?;
            let end = 14 + 10 + p.desc_list_len();
            ensure!(
                f[end..].iter().all(|&b| b == 0),
                "FIP reply: non-zero bytes after the descriptors: {}",
                hex(&f)
            );
            if let FipRepr::Vn2Vn(v) = r {
                if v.subcode == Vn2VnSubcode::ProbeReply {
                    n += 1;
                }
            }
        }
    }
}

// ---- Logins (§3.4, §7 step 9) ----------------------------------------------------------------

/// §7 step 9: FCP and ELS from a port without a login get LS_RJT "PLOGI required"
/// (`FcPort::reject_stranger`); FCP_CMND after PLOGI but before PRLI is dropped.
#[test]
fn fcp_without_login_rejected() {
    case("no_login", false, |fx| {
        let (f, ox) = fx.cmnd_frame(0, read10(0, 1), 512, true, false);
        let fr = fx.els_frame(&f, ox, "READ(10) without a login")?;
        ensure!(
            fr.data == [1, 0, 0, 0, 0, 0x09, 0x1e, 0],
            "READ(10) without a login: {} (LS_RJT unable to perform / PLOGI required)",
            hex(&fr.data)
        );
        let prli = vec![
            0x20, 0x10, 0, 0x14, 8, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x22,
        ];
        let fr = fx.els(&prli, "PRLI without PLOGI")?;
        ensure!(
            fr.data == [1, 0, 0, 0, 0, 0x09, 0x1e, 0],
            "PRLI without PLOGI: {}",
            hex(&fr.data)
        );
        let (f, ox) = fx.cmnd_frame(0, cdb16(&[TEST_UNIT_READY]), 0, false, false);
        let fr = fx.els_frame(&f, ox, "TUR without a login")?;
        ensure!(fr.data[0] == 1, "TUR without a login: {}", hex(&fr.data));
        fx.flogi()?;
        fx.plogi()?;
        let (f1, _) = fx.cmnd_frame(0, read10(0, 1), 512, true, false);
        let (f2, _) = fx.cmnd_frame(0, write10(0, 1), 512, false, true);
        fx.silent(&[f1, f2], "FCP_CMND before PRLI")?;
        fx.check_image("after a WRITE before PRLI")?;
        fx.login()?;
        fx.read_check(0, 2, "read after the login")
    });
}

// ---- FCP (§3.6, §3.7) ------------------------------------------------------------------------

/// §3.7: a LUN that is not configured answers CHECK CONDITION 05/25/00 (LOGICAL UNIT NOT
/// SUPPORTED), with no data and the whole FCP_DL residual.
#[test]
fn unknown_lun_05_25_00() {
    case("unknown_lun", false, |fx| {
        fx.login()?;
        for n in [1u8, 5, 255] {
            let what = format!("TUR to LUN {n}");
            let (o, _) = fx.scsi(n, cdb16(&[TEST_UNIT_READY]), 0, false, false, &what)?;
            let rsp = o.rsp.context("no FCP_RSP")?;
            rsp.check(0x05, 0x25, 0x00, &what)?;
            rsp.resid(0, 0, &what)?;
            let what = format!("READ(10) to LUN {n}");
            let (o, _) = fx.scsi(n, read10(0, 1), 512, true, false, &what)?;
            ensure!(o.data.is_empty(), "{what}: data sent");
            let rsp = o.rsp.context("no FCP_RSP")?;
            rsp.check(0x05, 0x25, 0x00, &what)?;
            rsp.resid(rsp_flags::RESID_UNDER, 512, &what)?;
            let what = format!("WRITE(10) to LUN {n}");
            let (o, _) = fx.scsi(n, write10(0, 1), 512, false, true, &what)?;
            ensure!(o.xfer_rdy.is_none(), "{what}: XFER_RDY sent");
            o.rsp
                .context("no FCP_RSP")?
                .check(0x05, 0x25, 0x00, &what)?;
            fx.check_image(&what)?;
        }
        Ok(())
    });
}

/// §3.4 / §7 step 14: data frames for an exchange the target does not know, or that claim to
/// come from the exchange responder, or carry another RX_ID, are dropped and never written.
#[test]
fn data_for_unknown_exchange_dropped() {
    case("unknown_exchange_data", false, |fx| {
        fx.login()?;
        let mut stray = fx.data_frames(0x7777, 0xffff, 0, &data(1, 1024), true);
        stray.extend(fx.data_frames(0x7778, 0x0042, 0, &data(2, 512), true));
        fx.silent(&stray, "data of unknown exchanges")?;
        fx.check_image("after data of unknown exchanges")?;

        let (o, ox) = fx.scsi(0, write10(100, 1), 512, false, true, "WRITE(10)")?;
        let (rx_id, _) = o.xfer_rdy.context("no XFER_RDY")?;
        let mut bad = fx.data_frames(ox, rx_id ^ 0x5a5a, 0, &data(4, 512), true);
        // EX_CTX: a frame from the exchange responder, which we are.
        let mut h = request(RCtl::FcpData, FcType::Fcp, ox);
        h.rx_id = rx_id;
        h.f_ctl = FCtl::EX_CTX | FCtl::REL_OFF;
        bad.push(fcoe_frame(
            fx.them,
            fx.us,
            &fc_frame(&h, &data(5, 512)),
            Sof::I3,
            Eof::N,
        ));
        // A data frame from another source MAC (another initiator's session key).
        let mut other = fx.data_frames(ox, rx_id, 0, &data(6, 512), false).remove(0);
        other[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x42]);
        bad.push(other);
        fx.silent(&bad, "data with a wrong RX_ID, EX_CTX, or another source")?;
        fx.check_image("after the bad data frames")?;
        let good = data(7, 512);
        fx.send_data(ox, rx_id, &good, "WRITE(10) data")?
            .good("WRITE(10)")?;
        fx.expect_write(100 * BLOCK, &good);
        fx.check_image("after the write")
    });
}

/// §3.6: write data past FCP_DL (outside what the XFER_RDY asked for) is dropped; the write
/// of FCP_DL bytes completes with RESID_OVER for the rest of the CDB's length.
#[test]
fn data_past_fcp_dl_dropped() {
    case("past_fcp_dl", false, |fx| {
        fx.login()?;
        // WRITE(10) of 4 blocks, FCP_DL 1024: the target asks for 1024 bytes.
        let (o, ox) = fx.scsi(0, write10(200, 4), 1024, false, true, "WRITE(10) 4 blocks")?;
        let (rx_id, burst) = o.xfer_rdy.context("no XFER_RDY")?;
        ensure!(burst == 1024, "XFER_RDY asks for {burst}, FCP_DL is 1024");
        let mut bad = fx.data_frames(ox, rx_id, 1024, &data(1, 512), false);
        bad.extend(fx.data_frames(ox, rx_id, 512, &data(2, 1024), false));
        bad.extend(fx.data_frames(ox, rx_id, 0xffff_fe00, &data(3, 1024), false));
        fx.silent(&bad, "data past FCP_DL")?;
        fx.check_image("after data past FCP_DL")?;
        let good = data(4, 1024);
        let rsp = fx.send_data(ox, rx_id, &good, "write data")?;
        rsp.good("WRITE of FCP_DL bytes")?;
        rsp.resid(rsp_flags::RESID_OVER, 1024, "WRITE of FCP_DL bytes")?;
        fx.expect_write(200 * BLOCK, &good);
        fx.check_image("after the write")?;

        // Too little: the initiative comes back after 512 of 1024 bytes. No GOOD over missing
        // data: CHECK CONDITION (ABORTED COMMAND, DATA PHASE ERROR 0B/4B/00).
        let (o, ox) = fx.scsi(0, write10(300, 2), 1024, false, true, "WRITE(10) 2 blocks")?;
        let (rx_id, _) = o.xfer_rdy.context("no XFER_RDY")?;
        let half = data(5, 512);
        let rsp = fx.send_data(ox, rx_id, &half, "short write data")?;
        rsp.check(0x0b, 0x4b, 0x00, "write with half its data")?;
        // What did arrive is in the image (written straight through, as documented).
        fx.expect_write(300 * BLOCK, &half);
        fx.check_image("after the short write")
    });
}

/// §3.4: ABTS of an exchange the target does not know gets BA_RJT (logical error, invalid
/// OX_ID-RX_ID); ABTS of an open write gets BA_ACC (OX_ID, RX_ID, SEQ_CNT 0..0xFFFF), after
/// which its data is dropped and nothing else is sent for it.
#[test]
fn abts_unknown_exchange_ba_rjt() {
    case("abts", false, |fx| {
        fx.login()?;
        for (ox, rx) in [(0x6666u16, 0xffffu16), (0x6667, 0x1234)] {
            let mut h = request(RCtl::Abts, FcType::Bls, ox);
            h.rx_id = rx;
            h.f_ctl = FCtl::END_SEQ | FCtl::SEQ_INIT;
            let f = fx.frame(&h, &[]);
            let frs = fx.exchange(&f, ox, "ABTS of an unknown exchange")?;
            let fr = &frs[0];
            ensure!(
                (fr.hdr.r_ctl, fr.hdr.fc_type) == (RCtl::BaRjt, FcType::Bls)
                    && fr.data == [0, 0x03, 0x03, 0],
                "ABTS of unknown exchange {ox:#x}: {:?} {}",
                fr.hdr,
                hex(&fr.data)
            );
        }
        let (o, ox) = fx.scsi(0, write10(500, 2), 1024, false, true, "WRITE(10)")?;
        let (rx_id, _) = o.xfer_rdy.context("no XFER_RDY")?;
        let mut h = request(RCtl::Abts, FcType::Bls, ox);
        h.rx_id = rx_id;
        h.f_ctl = FCtl::END_SEQ | FCtl::SEQ_INIT;
        let f = fx.frame(&h, &[]);
        let frs = fx.exchange(&f, ox, "ABTS of an open write")?;
        let fr = &frs[0];
        let mut acc = vec![0u8, 0, 0, 0];
        acc.extend_from_slice(&ox.to_be_bytes());
        acc.extend_from_slice(&rx_id.to_be_bytes());
        acc.extend_from_slice(&[0, 0, 0xff, 0xff]);
        ensure!(
            fr.hdr.r_ctl == RCtl::BaAcc && fr.data == acc && fr.hdr.rx_id == rx_id,
            "ABTS of the open write: {:?} {}",
            fr.hdr,
            hex(&fr.data)
        );
        let late = fx.data_frames(ox, rx_id, 0, &data(1, 1024), true);
        fx.silent(&late, "data of the aborted write")?;
        fx.check_image("after data of the aborted write")?;
        // RRQ (frees the OX_ID) is accepted.
        let mut rrq = vec![0x12, 0, 0, 0, 0];
        rrq.extend_from_slice(&OUR_ID.to_be_bytes()[1..]);
        rrq.extend_from_slice(&ox.to_be_bytes());
        rrq.extend_from_slice(&rx_id.to_be_bytes());
        fx.ls_acc(&rrq, 4, "RRQ")?;
        Ok(())
    });
}

/// §3.6 / §7 step 15: FCP_DL against the CDB's length. Smaller: send FCP_DL bytes, RESID_OVER;
/// larger: send what the CDB has, RESID_UNDER; both GOOD.
#[test]
fn fcp_dl_mismatch_residuals() {
    case("residuals", false, |fx| {
        fx.login()?;
        let at = 10 * BLOCK;
        let (o, _) = fx.scsi(
            0,
            read10(10, 2),
            512,
            true,
            false,
            "READ 2 blocks, FCP_DL 512",
        )?;
        ensure!(
            o.data == fx.expected[at..at + 512],
            "READ with FCP_DL 512: data"
        );
        let rsp = o.rsp.context("no FCP_RSP")?;
        rsp.good("READ with FCP_DL 512")?;
        rsp.resid(rsp_flags::RESID_OVER, 512, "READ with FCP_DL 512")?;

        let (o, _) = fx.scsi(
            0,
            read10(10, 2),
            4096,
            true,
            false,
            "READ 2 blocks, FCP_DL 4096",
        )?;
        ensure!(
            o.data == fx.expected[at..at + 1024],
            "READ with FCP_DL 4096: data"
        );
        let rsp = o.rsp.context("no FCP_RSP")?;
        rsp.good("READ with FCP_DL 4096")?;
        rsp.resid(rsp_flags::RESID_UNDER, 3072, "READ with FCP_DL 4096")?;

        let (o, _) = fx.scsi(0, read10(10, 2), 0, true, false, "READ 2 blocks, FCP_DL 0")?;
        ensure!(o.data.is_empty(), "READ with FCP_DL 0 sent data");
        o.rsp
            .context("no FCP_RSP")?
            .resid(rsp_flags::RESID_OVER, 1024, "READ with FCP_DL 0")?;

        // A 3-block read crossing frames (1536 > 1452) with FCP_DL one byte short.
        let (o, _) = fx.scsi(
            0,
            read10(20, 3),
            1535,
            true,
            false,
            "READ 3 blocks, FCP_DL 1535",
        )?;
        let at = 20 * BLOCK;
        ensure!(
            o.data == fx.expected[at..at + 1535],
            "READ with FCP_DL 1535: data"
        );
        o.rsp
            .context("no FCP_RSP")?
            .resid(rsp_flags::RESID_OVER, 1, "READ with FCP_DL 1535")?;

        let w = data(8, 1024);
        let rsp = fx.write(write10(30, 2), 4096, &w, "WRITE 2 blocks, FCP_DL 4096")?;
        rsp.good("WRITE with FCP_DL 4096")?;
        rsp.resid(rsp_flags::RESID_UNDER, 3072, "WRITE with FCP_DL 4096")?;
        fx.expect_write(30 * BLOCK, &w);
        fx.check_image("after WRITE with FCP_DL 4096")?;
        // No data phase at all: TUR with FCP_DL 512 -> RESID_UNDER 512.
        let (o, _) = fx.scsi(
            0,
            cdb16(&[TEST_UNIT_READY]),
            512,
            true,
            false,
            "TUR, FCP_DL 512",
        )?;
        ensure!(o.data.is_empty(), "TUR sent data");
        let rsp = o.rsp.context("no FCP_RSP")?;
        rsp.good("TUR with FCP_DL 512")?;
        rsp.resid(rsp_flags::RESID_UNDER, 512, "TUR with FCP_DL 512")
    });
}

/// §3.7: WRITE to a read-only LUN is CHECK CONDITION, DATA PROTECT 07/27/00, without an
/// XFER_RDY; the image stays as it was. Reads still work.
#[test]
fn read_only_lun_data_protect() {
    case("read_only", true, |fx| {
        fx.login()?;
        let mut w6 = [0u8; 16];
        w6[0] = WRITE_6;
        w6[3] = 7;
        w6[4] = 1;
        let mut w16 = [0u8; 16];
        w16[0] = WRITE_16;
        w16[9] = 8;
        w16[13] = 2;
        for (cdb, dl, name) in [
            (write10(5, 1), 512u32, "WRITE(10)"),
            (w6, 512, "WRITE(6)"),
            (w16, 1024, "WRITE(16)"),
        ] {
            let (o, ox) = fx.scsi(0, cdb, dl, false, true, name)?;
            ensure!(o.xfer_rdy.is_none(), "{name}: XFER_RDY on a read-only LUN");
            let rsp = o.rsp.context("no FCP_RSP")?;
            rsp.check(0x07, 0x27, 0x00, name)?;
            rsp.resid(rsp_flags::RESID_UNDER, dl, name)?;
            // Unsolicited data for it anyway: dropped.
            let push = fx.data_frames(ox, 0xffff, 0, &data(1, dl as usize), true);
            fx.silent(&push, &format!("{name}: unsolicited data"))?;
            fx.check_image(name)?;
        }
        fx.read_check(5, 4, "read from the read-only LUN")
    });
}

/// No reply carries bytes of an earlier frame: after large frames (a multi-frame READ, a
/// 1000-byte ECHO), small replies (LS_RJT, BA_RJT, short ECHO, FCP_RSP without and with sense,
/// RTV) are exactly their length, reserved fields zero (checked on every reply).
#[test]
fn replies_carry_no_stale_bytes() {
    case("stale_bytes", false, |fx| {
        fx.login()?;
        for round in 0..3u8 {
            let (o, _) = fx.scsi(0, read10(64, 16), 8192, true, false, "READ 16 blocks")?;
            ensure!(o.data.len() == 8192, "READ: {} bytes", o.data.len());
            o.rsp.context("no FCP_RSP")?.good("READ")?;
            let mut echo = vec![0x10, 0, 0, 0];
            echo.extend(data(round, 1000));
            let fr = fx.els(&echo, "ECHO 1000")?;
            ensure!(fr.data[0] == 2 && fr.data[4..] == echo[4..], "ECHO reply");
            // Short replies after long ones.
            let fr = fx.els(&[0x10, 0, 0, 0, 1, 2, 3], "ECHO 3")?;
            ensure!(
                fr.data == [2, 0, 0, 0, 1, 2, 3],
                "short ECHO reply {} (stale bytes?)",
                hex(&fr.data)
            );
            let fr = fx.els(&[0x0f, 0, 0, 0, 0, 0, 0, 0], "RLS")?;
            ensure!(
                fr.data[0] == 1 && fr.data[5] == 0x0b,
                "RLS: {}",
                hex(&fr.data)
            );
            let fr = fx.els(&[0x77, 0xff, 0xff, 0xff], "unknown ELS")?;
            ensure!(fr.data[0] == 1, "unknown ELS: {}", hex(&fr.data));
            let mut h = request(RCtl::Abts, FcType::Bls, 0x5000 + u16::from(round));
            h.f_ctl = FCtl::END_SEQ | FCtl::SEQ_INIT;
            let f = fx.frame(&h, &[]);
            let frs = fx.exchange(&f, 0x5000 + u16::from(round), "ABTS")?;
            ensure!(frs[0].data == [0, 3, 3, 0], "BA_RJT {}", hex(&frs[0].data));
            let (o, _) = fx.scsi(0, cdb16(&[TEST_UNIT_READY]), 0, false, false, "TUR")?;
            o.rsp.context("no FCP_RSP")?.good("TUR")?;
            // Unsupported opcode: CHECK CONDITION with 18 bytes of sense, fill bytes zero.
            let (o, _) = fx.scsi(0, cdb16(&[0xc7]), 0, false, false, "opcode C7")?;
            let rsp = o.rsp.context("no FCP_RSP")?;
            rsp.check(0x05, 0x20, 0x00, "opcode C7")?;
            ensure!(rsp.sense.len() == 18, "sense of {} bytes", rsp.sense.len());
            ensure!(
                rsp.sense[1] == 0 && rsp.sense[3..7] == [0; 4] && rsp.sense[8..12] == [0; 4],
                "unused fixed-sense bytes not zero: {}",
                hex(&rsp.sense)
            );
            fx.ping("RTV")?;
        }
        Ok(())
    });
}
