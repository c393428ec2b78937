//! (4) Random frame sequences never panic, every reply is well-formed, and state stays
//! bounded.

use proptest::prelude::*;

use super::ipxe::IPXE_TARGET_MAC;
use super::*;

fn corpus() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = Vec::new();
    for name in [
        "ipxe-fcoe-p2p-boot.pcap",
        "linux-fcoe-vn2vn-vs-lio-late.pcap",
    ] {
        v.extend(
            capture(name)
                .into_iter()
                .filter(|f| {
                    f.len() >= 14 && matches!(u16::from_be_bytes([f[12], f[13]]), 0x8906 | 0x8914)
                })
                .take(200),
        );
    }
    v
}

#[derive(Debug, Clone)]
enum Op {
    Replay(usize),
    /// Replay with new source MAC / OX_ID (CRC fixed), to grow sessions and exchanges.
    Vary {
        idx: usize,
        mac: u8,
        ox: u16,
    },
    Flip {
        idx: usize,
        at: usize,
        bits: u8,
    },
    Cut {
        idx: usize,
        len: usize,
    },
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<usize>().prop_map(Op::Replay),
        4 => (any::<usize>(), any::<u8>(), any::<u16>()).prop_map(|(idx, mac, ox)| Op::Vary { idx, mac, ox }),
        2 => (any::<usize>(), any::<usize>(), 1u8..).prop_map(|(idx, at, bits)| Op::Flip { idx, at, bits }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(idx, len)| Op::Cut { idx, len }),
        1 => any::<u16>().prop_map(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_frames_never_panic_and_stay_bounded(ops in proptest::collection::vec(op(), 1..200)) {
        static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        let corpus = CORPUS.get_or_init(corpus);
        let t = one_lun_target(IPXE_TARGET_MAC, 1500, Wwn(0x2000_5254_004c_100a), 16 << 20);
        let mut tx = TxBatch::new(64);
        let mut now = Instant::now();
        for op in ops {
            let pick = |i: usize| &corpus[i % corpus.len()];
            let frame = match op {
                Op::Replay(i) => pick(i).clone(),
                Op::Vary { idx, mac, ox } => {
                    let mut f = pick(idx).clone();
                    f[11] = mac;
                    if is_fcoe(&f) && f.len() >= 14 + 14 + 24 + 8 {
                        f = patch_fc(&f, |p| p.set_ox_id(ox));
                    }
                    f
                }
                Op::Flip { idx, at, bits } => {
                    let mut f = pick(idx).clone();
                    let at = at % f.len();
                    f[at] ^= bits;
                    f
                }
                Op::Cut { idx, len } => {
                    let f = pick(idx);
                    f[..len % (f.len() + 1)].to_vec()
                }
                Op::Tick(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    t.tick(now, &mut tx);
                    continue;
                }
            };
            now += Duration::from_millis(1);
            t.handle_frame(&frame, now, &mut tx);
            for out in drain(&mut tx) {
                prop_assert!(out.len() <= 14 + 1500);
                let eth = EthernetFrame::new_checked(&out[..]).unwrap();
                match eth.ethertype() {
                    EtherType::Fcoe => { parse_fc(&out); }
                    EtherType::Fip => { prop_assert!(fip_of(&out).is_some()); }
                    other => prop_assert!(false, "sent {other:?}"),
                }
            }
            let st = t.stats();
            prop_assert!(t.session_count() <= MAX_SESSIONS);
            prop_assert!(st.exchanges as usize <= MAX_SESSIONS * crate::fc::session::MAX_EXCHANGES);
            prop_assert!(st.vn2vn_peers as usize <= crate::fip::vn2vn::MAX_PEERS);
        }
    }
}
