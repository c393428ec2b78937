//! Every AoE parse path over arbitrary bytes: no panic, and what parses re-emits to the same
//! meaning.
#![no_main]

use l2san_aoe::wire::ata::AtaPacket;
use l2san_aoe::wire::config::{ConfigPacket, ConfigRepr};
use l2san_aoe::wire::header::{HeaderPacket, HeaderRepr};
use l2san_aoe::wire::mask::MaskPacket;
use l2san_aoe::wire::reserve::ReservePacket;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = HeaderPacket::new_checked(data) else { return };
    if let Ok(repr) = HeaderRepr::parse(&header) {
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut HeaderPacket::new_unchecked(&mut buf[..]));
        let again = HeaderRepr::parse(&HeaderPacket::new_unchecked(&buf[..])).unwrap();
        assert_eq!(again, repr);
    }
    let arg = header.payload();
    if let Ok(ata) = AtaPacket::new_checked(arg) {
        let _ = (ata.lba(), ata.sector_count(), ata.data().len(), ata.aflags().extended());
    }
    if let Ok(cfg) = ConfigPacket::new_checked(arg) {
        if let Ok(repr) = ConfigRepr::parse(&cfg) {
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut ConfigPacket::new_unchecked(&mut buf[..]));
            let again = ConfigRepr::parse(&ConfigPacket::new_unchecked(&buf[..])).unwrap();
            assert_eq!(again, repr);
        }
    }
    if let Ok(mask) = MaskPacket::new_checked(arg) {
        if mask.check_directives().is_ok() {
            for i in 0..mask.dir_count() as usize {
                assert!(mask.directive(i).is_some());
            }
        }
    }
    if let Ok(res) = ReservePacket::new_checked(arg) {
        let _ = res.command();
    }
});
