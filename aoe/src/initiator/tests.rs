//! The initiator against real frames (Linux's `aoe` driver and iPXE talking to vblade, from
//! `testdata/captures`) and against this crate's own target, in process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use l2san_common::{Image, ImageOptions, MacAddr, Transmit};

use super::*;
use crate::ata::{error, status};
use crate::wire::test_frames::{frame, IPXE, LINUX};
use crate::{AoeExport, AoeTarget};

/// The initiator's MAC in both captures.
const HOST: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
/// vblade in the Linux capture.
const VBLADE: MacAddr = MacAddr([0xee, 0xa7, 0x93, 0x1b, 0xc5, 0x99]);
/// vblade in the iPXE capture.
const VBLADE_IPXE: MacAddr = MacAddr([0x0a, 0x1d, 0xf7, 0x72, 0xc7, 0x25]);

/// `built` is `captured` zero-padded to the Ethernet minimum (the captures were taken on the
/// sending host, before padding).
fn assert_same_frame(built: &[u8], captured: &[u8], what: &str) {
    assert_eq!(built.len(), captured.len().max(60), "{what}");
    assert_eq!(&built[..captured.len()], captured, "{what}");
    assert!(built[captured.len()..].iter().all(|&b| b == 0), "{what}");
}

fn request(dst: MacAddr, major: u16, minor: u8, tag: u32, body: Body) -> Request {
    Request {
        dst,
        src: HOST,
        major,
        minor,
        tag,
        body,
    }
}

#[test]
fn builds_the_requests_linux_sends() {
    // Frame 1: the broadcast Query Config, tag 0.
    let q = request(MacAddr::BROADCAST, 0xffff, 0xff, 0, Body::QueryConfig);
    assert_same_frame(&q.to_frame(&[]), &frame(LINUX, 1), "query");
    // Frame 3: IDENTIFY, lba3 0xA0.
    let id = request(VBLADE, 0, 0, 0x0001_dcec, Body::Ata(AtaRequest::Identify));
    assert_same_frame(&id.to_frame(&[]), &frame(LINUX, 3), "identify");
    // Frames 5-8: READ SECTORS EXT of two sectors at 0, 2, 4, 6 (Linux counts its tags in
    // the high half).
    for (n, lba) in [(5, 0), (6, 2), (7, 4), (8, 6)] {
        let read = AtaRequest::Read {
            lba,
            sector_count: 2,
            lba48: true,
        };
        let tag = 0x0002_dcf5 + ((lba as u32 / 2) << 16);
        let r = request(VBLADE, 0, 0, tag, Body::Ata(read));
        assert_same_frame(&r.to_frame(&[]), &frame(LINUX, n), "read");
    }
}

#[test]
fn builds_the_requests_ipxe_sends() {
    let q = request(MacAddr::BROADCAST, 0, 0, 0x18ae_0001, Body::QueryConfig);
    assert_same_frame(&q.to_frame(&[]), &frame(IPXE, 1), "query");
    for (n, tag, lba, sector_count) in [(5, 0x18ae_0003, 64, 2), (9, 0x18ae_0005, 0, 1)] {
        let read = AtaRequest::Read {
            lba,
            sector_count,
            lba48: true,
        };
        let r = request(VBLADE_IPXE, 0, 0, tag, Body::Ata(read));
        assert_same_frame(&r.to_frame(&[]), &frame(IPXE, n), "read");
    }
}

#[test]
fn register_values_of_every_request() {
    let repr = |a: AtaRequest| {
        let r = a.repr();
        (r.aflags.0, r.sector_count, r.cmd_status, r.lba)
    };
    let write28 = AtaRequest::Write {
        lba: 0x1234_5678_9abc,
        sector_count: 2,
        lba48: false,
    };
    // 28-bit: the top LBA nibble under the Device register's 0xE0.
    assert_eq!(repr(write28), (0x01, 2, 0x30, 0xe678_9abc));
    assert_eq!(write28.data_out_len(), 1024);
    let write48 = AtaRequest::Write {
        lba: 0x1234_5678_9abc,
        sector_count: 1,
        lba48: true,
    };
    assert_eq!(repr(write48), (0x41, 1, 0x34, 0x1234_5678_9abc));
    let read28 = AtaRequest::Read {
        lba: 7,
        sector_count: 3,
        lba48: false,
    };
    assert_eq!(repr(read28), (0x00, 3, 0x20, 0xe000_0007));
    assert_eq!((read28.data_out_len(), read28.data_in_len()), (0, 1536));
    assert_eq!(repr(AtaRequest::Flush { lba48: true }), (0x40, 0, 0xea, 0));
    assert_eq!(repr(AtaRequest::Flush { lba48: false }), (0, 0, 0xe7, 0));
    assert_eq!(repr(AtaRequest::Identify), (0, 1, 0xec, 0xa000_0000));
    assert_eq!(AtaRequest::Identify.data_in_len(), 512);

    // A frame used again for another command: the new tag and argument, the same addresses.
    let mut f = request(VBLADE, 0, 0, 1, Body::Ata(AtaRequest::Identify)).to_frame(&[]);
    let read = AtaRequest::Read {
        lba: 6,
        sector_count: 2,
        lba48: true,
    };
    assert_eq!(reissue(&mut f, 0x0005_dcf5, read), 60);
    assert_same_frame(&f, &frame(LINUX, 8), "reissued read");

    // A write frame carries its data after the argument.
    let w = request(VBLADE, 3, 1, 9, Body::Ata(write48)).to_frame(&[0x5a; 512]);
    assert_eq!(w.len(), ATA_DATA_OFFSET + 512);
    assert!(w[ATA_DATA_OFFSET..].iter().all(|&b| b == 0x5a));
    assert_eq!(&w[14..24], &[0x10, 0, 0, 3, 1, 0, 0, 0, 0, 9]);
}

#[test]
fn decodes_vblade_responses_from_the_captures() {
    // Linux frame 2: vblade's config.
    let f = frame(LINUX, 2);
    let r = Response::parse(&f).unwrap();
    assert_eq!((r.dst, r.src), (HOST, VBLADE));
    let ResponseBody::Config(c) = r.body else {
        panic!("{:?}", r.body)
    };
    assert_eq!(
        (c.buffer_count, c.firmware_version, c.sector_count),
        (16, 0x4019, 2)
    );
    // iPXE frame 4: IDENTIFY's block.
    let f = frame(IPXE, 4);
    let ResponseBody::Ata(a) = Response::parse(&f).unwrap().body else {
        panic!()
    };
    assert!(!a.failed());
    assert_eq!(
        a.identify().unwrap(),
        IdentifyInfo {
            sectors: 16384,
            lba48: true,
            model: "Coraid EtherDrive vblade".into(),
            serial: "0.0:vm".into(),
            firmware: "V25".into(),
        }
    );
    // Requests are not responses.
    assert_eq!(Response::parse(&frame(LINUX, 3)), None);
    assert_eq!(Response::parse(&frame(LINUX, 4)[..23]), None);
}

#[test]
fn initiator_matches_the_linux_exchange() {
    let now = Instant::now();
    let mut out = Vec::new();
    // Tags 0x0000_xxxx from 0: the query's tag is 0, as Linux's.
    let mut ini = Initiator::new(HOST, Tags::new(0, 0), None);
    assert_eq!(ini.query_config(0xffff, 0xff, &mut out), 0);
    assert_same_frame(&out[0], &frame(LINUX, 1), "query");
    let f = frame(LINUX, 2);
    let Some(Event::Config { target, config, .. }) = ini.on_frame(&f) else {
        panic!("no config event");
    };
    let vblade = Target {
        mac: VBLADE,
        major: 0,
        minor: 0,
    };
    assert_eq!((target, config.sector_count), (vblade, 2));

    // Linux's IDENTIFY and READ tags, from its counter.
    let mut ini = Initiator::new(HOST, Tags::new(0x0001_0000, 0xdcec), None);
    out.clear();
    // Not our tag, not broadcast: someone else's config.
    assert_eq!(ini.on_frame(&f), None);
    let tag = ini.ata(vblade, AtaRequest::Identify, &[], now, &mut out);
    assert_eq!(tag, 0x0001_dcec);
    assert_same_frame(&out[0], &frame(LINUX, 3), "identify");
    let f = frame(LINUX, 4);
    let Some(Event::Ata {
        reply: Ok(a),
        request: AtaRequest::Identify,
        ..
    }) = ini.on_frame(&f)
    else {
        panic!("no IDENTIFY event");
    };
    assert_eq!(a.identify().unwrap().sectors, 16384);
    // Answered once: the same response again is none of ours.
    assert_eq!(ini.on_frame(&f), None);

    // vblade's read data (Linux counts tags in the high half, which Tags does not do).
    for n in 9..=12 {
        let f = frame(LINUX, n);
        let ResponseBody::Ata(a) = Response::parse(&f).unwrap().body else {
            panic!("frame {n}");
        };
        assert_eq!((a.status, a.data.len()), (status::DRDY, 1024));
    }
}

#[test]
fn initiator_matches_the_ipxe_reads() {
    // iPXE counts its tags in the low half: 0x18ae0003.. are its reads.
    let now = Instant::now();
    let mut out = Vec::new();
    let mut ini = Initiator::new(HOST, Tags::new(0x18ae_0000, 3), None);
    let vblade = Target {
        mac: VBLADE_IPXE,
        major: 0,
        minor: 0,
    };
    for (n, lba, sector_count) in [(5, 64, 2), (7, 66, 2), (9, 0, 1), (11, 0, 1)] {
        let read = AtaRequest::Read {
            lba,
            sector_count,
            lba48: true,
        };
        ini.ata(vblade, read, &[], now, &mut out);
        assert_same_frame(&out.remove(0), &frame(IPXE, n), "read");
    }
    for n in [6, 8, 10, 12] {
        let f = frame(IPXE, n);
        let Some(Event::Ata {
            reply: Ok(a),
            request: AtaRequest::Read { sector_count, .. },
            ..
        }) = ini.on_frame(&f)
        else {
            panic!("frame {n} unmatched");
        };
        assert!(!a.failed());
        assert_eq!(a.data.len(), usize::from(sector_count) * 512);
    }
    assert_eq!(ini.outstanding(), 0);
}

#[test]
fn tags_count_round_and_know_their_own() {
    let mut t = Tags::new(0x8123_ffff, 0xfffe);
    assert_eq!(t.take(), 0x8123_fffe);
    assert_eq!(t.take(), 0x8123_ffff);
    assert_eq!(t.take(), 0x8123_fffe);
    assert!(t.owns(0x8123_0000) && !t.owns(0x0123_0000) && !t.owns(0x8124_0001));
}

/// Collects the target's replies; its clock stands still at the time it was made.
struct Replies(Vec<Vec<u8>>, Vec<u8>, std::time::Instant);

impl Transmit for Replies {
    fn buffer(&mut self, len: usize) -> &mut [u8] {
        self.1 = vec![0xa5; len];
        &mut self.1
    }
    fn commit(&mut self, len: usize) {
        let mut f = self.1[..len].to_vec();
        f.resize(len.max(60), 0);
        self.0.push(f);
    }
    fn now(&self) -> std::time::Instant {
        self.2
    }
}

const TARGET_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
const SECTORS: u64 = 4096;
/// The one export of [`target`].
const E12: Target = Target {
    mac: TARGET_MAC,
    major: 1,
    minor: 2,
};

fn target() -> AoeTarget {
    let img = Image::memory(SECTORS * 512, ImageOptions::default()).unwrap();
    AoeTarget::new(
        TARGET_MAC,
        1500,
        "testhost",
        vec![AoeExport::new(1, 2, Arc::new(img))],
    )
}

/// Every request through the target; every reply back.
fn exchange(t: &AoeTarget, requests: &mut Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let now = std::time::Instant::now();
    let mut tx = Replies(Vec::new(), Vec::new(), now);
    for f in requests.drain(..) {
        t.handle_frame(&f, now, &mut tx);
    }
    tx.0
}

/// The one ATA result the replies to `requests` bring.
fn ata_result(
    ini: &mut Initiator,
    t: &AoeTarget,
    requests: &mut Vec<Vec<u8>>,
) -> (u8, u8, Vec<u8>) {
    let replies = exchange(t, requests);
    assert_eq!(replies.len(), 1);
    match ini.on_frame(&replies[0]) {
        Some(Event::Ata { reply: Ok(a), .. }) => (a.status, a.error, a.data.to_vec()),
        e => panic!("{e:?}"),
    }
}

#[test]
fn initiator_against_the_target_in_process() {
    let t = target();
    let now = Instant::now();
    let mut ini = Initiator::new(HOST, Tags::new(0x8000_0000, 0), None);
    let mut out = Vec::new();
    ini.query_config(0xffff, 0xff, &mut out);
    let replies = exchange(&t, &mut out);
    assert_eq!(replies.len(), 1);
    let Some(Event::Config { target, config, .. }) = ini.on_frame(&replies[0]) else {
        panic!("no config");
    };
    assert_eq!(target, E12);
    assert_eq!(config.buffer_count, crate::DEFAULT_BUFFER_COUNT);
    assert!(config.sector_count >= 2);

    ini.ata(E12, AtaRequest::Identify, &[], now, &mut out);
    let (st, _, data) = ata_result(&mut ini, &t, &mut out);
    assert_eq!(st, status::DRDY);
    let info = crate::ata::identify::parse(&data).unwrap();
    assert_eq!((info.sectors, info.lba48), (SECTORS, true));
    assert_eq!(info.model, crate::ata::identify::MODEL);

    // Write two sectors with a 48-bit command, read them back with a 28-bit one.
    let data: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    let write = AtaRequest::Write {
        lba: 100,
        sector_count: 2,
        lba48: true,
    };
    ini.ata(E12, write, &data, now, &mut out);
    assert_eq!(ata_result(&mut ini, &t, &mut out).0, status::DRDY);
    let read = AtaRequest::Read {
        lba: 100,
        sector_count: 2,
        lba48: false,
    };
    ini.ata(E12, read, &[], now, &mut out);
    let (st, _, back) = ata_result(&mut ini, &t, &mut out);
    assert_eq!((st, &back[..1024]), (status::DRDY, &data[..]));
    for lba48 in [false, true] {
        ini.ata(E12, AtaRequest::Flush { lba48 }, &[], now, &mut out);
        assert_eq!(ata_result(&mut ini, &t, &mut out).0, status::DRDY);
    }

    // Past the end: the ATA error comes back in the registers.
    let past = AtaRequest::Read {
        lba: SECTORS - 1,
        sector_count: 2,
        lba48: true,
    };
    ini.ata(E12, past, &[], now, &mut out);
    let replies = exchange(&t, &mut out);
    let Some(Event::Ata { reply: Ok(a), .. }) = ini.on_frame(&replies[0]) else {
        panic!();
    };
    assert!(a.failed());
    assert_eq!(
        (a.status, a.error),
        (status::DRDY | status::ERR, error::IDNF)
    );

    // Another shelf.slot at the same MAC: no answer, still outstanding.
    let e13 = Target { minor: 3, ..E12 };
    let tag = ini.ata(e13, AtaRequest::Identify, &[], now, &mut out);
    assert!(exchange(&t, &mut out).is_empty());
    assert_eq!(ini.outstanding(), 1);
    ini.cancel(tag);
    assert_eq!(ini.outstanding(), 0);
}

#[test]
fn replies_must_match_tag_mac_and_address() {
    let t = target();
    let now = Instant::now();
    let mut ini = Initiator::new(HOST, Tags::new(0x8000_0000, 0x100), None);
    let mut out = Vec::new();
    ini.ata(E12, AtaRequest::Identify, &[], now, &mut out);
    let reply = exchange(&t, &mut out).remove(0);
    let mut other_mac = reply.clone();
    other_mac[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x98]);
    let mut other_slot = reply.clone();
    other_slot[18] = 3;
    let mut other_tag = reply.clone();
    other_tag[23] ^= 1;
    let mut not_to_us = reply.clone();
    not_to_us[5] ^= 1;
    for (f, what) in [
        (other_mac, "source MAC"),
        (other_slot, "slot"),
        (other_tag, "tag"),
        (not_to_us, "destination"),
    ] {
        assert_eq!(ini.on_frame(&f), None, "{what}");
    }
    // An AoE error and a cut-short argument are answers too.
    let mut refused = reply.clone();
    refused[14] |= 0x04;
    refused[15] = 3;
    assert!(matches!(
        ini.on_frame(&refused),
        Some(Event::Ata {
            reply: Err(AtaRefused::Aoe(ErrorCode::DeviceUnavailable)),
            ..
        })
    ));
    ini.ata(E12, AtaRequest::Identify, &[], now, &mut out);
    let reply = exchange(&t, &mut out).remove(0);
    assert!(matches!(
        ini.on_frame(&reply[..30]),
        Some(Event::Ata {
            reply: Err(AtaRefused::Truncated),
            ..
        })
    ));
}

#[test]
fn retransmits_as_told_and_takes_late_answers() {
    let t = target();
    let start = Instant::now();
    let retry = Retry {
        after: Duration::from_millis(500),
        tries: 3,
    };
    let mut ini = Initiator::new(HOST, Tags::new(0x8000_0000, 0), Some(retry));
    let mut out = Vec::new();
    ini.ata(E12, AtaRequest::Identify, &[], start, &mut out);
    let first = out.remove(0);
    assert_eq!(ini.next_wakeup(), Some(start + retry.after));
    assert_eq!(ini.poll(start + Duration::from_millis(499), &mut out), 0);
    let mut at = start;
    for _ in 1..retry.tries {
        at += retry.after;
        assert_eq!(ini.poll(at, &mut out), 1);
        assert_eq!(out.remove(0), first, "the same frame again");
    }
    assert_eq!(ini.next_wakeup(), None, "all tries spent");
    assert_eq!(ini.poll(at + Duration::from_secs(10), &mut out), 0);
    // A late answer still counts.
    let reply = exchange(&t, &mut vec![first]).remove(0);
    assert!(matches!(
        ini.on_frame(&reply),
        Some(Event::Ata { reply: Ok(_), .. })
    ));
    assert_eq!(ini.outstanding(), 0);
}
