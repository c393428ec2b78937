//! IDENTIFY DEVICE (0xEC): the 512-byte identify block (ATA/ATAPI-7 vol. 1 §6.17; ACS-3
//! §7.12.7), filled the way the AoE initiators read it.
//!
//! | Word(s) | Content | Reader |
//! |---|---|---|
//! | 0 | 0: fixed ATA device | — |
//! | 1, 3, 6 | default cylinders / heads (16) / sectors per track (63) | BIOSes, WinAoE ignores |
//! | 10–19 | serial number, 20 ATA chars | Linux `HDIO_GET_IDENTITY` |
//! | 23–26 | firmware revision, 8 ATA chars | — |
//! | 27–46 | model number, 40 ATA chars | iPXE prints it |
//! | 47 | 0x8000: READ/WRITE MULTIPLE not supported | — |
//! | 49 | bit 9: LBA supported | — |
//! | 50 | 0x4000 | — |
//! | 53 | bit 0: words 54–58 valid | — |
//! | 54–58 | current CHS and its capacity | Linux only without LBA48 |
//! | 60–61 | LBA28 capacity, min(capacity, 0x0FFFFFFF) | iPXE, Linux without LBA48 |
//! | 80 | major version: ATA-4 .. ATA/ATAPI-7 | — |
//! | 82 | bit 5: write cache supported | — |
//! | 83 | bit 14 valid, bit 13 FLUSH CACHE EXT, bit 12 FLUSH CACHE, bit 10 LBA48 | iPXE (only this word), Linux |
//! | 84, 87 | 0x4000 (valid) | — |
//! | 85 | bit 5: write cache enabled (writeback and writable) | — |
//! | 86 | enabled: bits 13, 12, 10 | Linux ORs 83 and 86 |
//! | 93 | 0x400b | — |
//! | 100–103 | LBA48 capacity | Linux, iPXE, WinAoE |
//! | 106 | 0x4000: one 512-byte logical sector per physical sector | — |
//! | 255 | integrity word: 0xA5 signature and checksum | libata |
//!
//! Strings are ATA strings: space padded, the two bytes of each 16-bit word swapped.
//!
//! [`build`] fills the block for the target; [`parse`] reads the capacity and the strings back
//! out of a block, for an initiator (`crate::initiator`), from the same word numbers.

/// Length of the identify block.
pub const IDENTIFY_LEN: usize = 512;

/// (first word, words) of each string.
const SERIAL_WORDS: (usize, usize) = (10, 10);
const FIRMWARE_WORDS: (usize, usize) = (23, 4);
const MODEL_WORDS: (usize, usize) = (27, 20);
/// Words 60-61: the LBA28 capacity.
const LBA28_CAPACITY: usize = 60;
/// Word 83: command sets supported (bits 15:14 = 01 when valid).
const COMMAND_SET_2: usize = 83;
/// Word 86: command sets enabled.
const COMMAND_SET_ENABLED_2: usize = 86;
/// Words 100-103: the LBA48 capacity.
const LBA48_CAPACITY: usize = 100;
/// Bit 10 of words 83 and 86: the 48-bit Address feature set.
const LBA48_BIT: u16 = 1 << 10;

/// The strings of the identify block, built once per export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    serial: [u8; 20],
    firmware: [u8; 8],
    model: [u8; 40],
}

/// The model number every export reports.
pub const MODEL: &str = "l2san";

impl Identity {
    /// `serial` is cut to 20 characters; bytes outside printable ASCII become `_`.
    pub fn new(serial: &str) -> Identity {
        Identity {
            serial: ata_chars(serial),
            firmware: ata_chars(env!("CARGO_PKG_VERSION")),
            model: ata_chars(MODEL),
        }
    }

    pub fn serial(&self) -> &[u8] {
        &self.serial
    }
}

/// Space-padded, truncated, printable ASCII (not yet byte-swapped).
fn ata_chars<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [b' '; N];
    for (o, b) in out.iter_mut().zip(s.bytes()) {
        *o = if (0x20..0x7f).contains(&b) { b } else { b'_' };
    }
    out
}

/// Write `chars` as an ATA string at word `start`: each pair of characters swapped.
fn put_string(block: &mut [u8], (start, words): (usize, usize), chars: &[u8]) {
    for (i, pair) in chars.chunks_exact(2).take(words).enumerate() {
        let at = (start + i) * 2;
        block[at] = pair[1];
        block[at + 1] = pair[0];
    }
}

fn put_word(block: &mut [u8], word: usize, v: u16) {
    block[word * 2..word * 2 + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_dword(block: &mut [u8], word: usize, v: u32) {
    put_word(block, word, v as u16);
    put_word(block, word + 1, (v >> 16) as u16);
}

/// Default CHS geometry for `capacity` sectors: 16 heads, 63 sectors per track, at most
/// 16383 cylinders (ATA-7 Annex: larger devices report 16383/16/63).
fn geometry(capacity: u64) -> (u16, u16, u16) {
    const HEADS: u64 = 16;
    const SECTORS: u64 = 63;
    let cylinders = (capacity / (HEADS * SECTORS)).min(16383) as u16;
    (cylinders, HEADS as u16, SECTORS as u16)
}

/// Fill the first [`IDENTIFY_LEN`] bytes of `block` (every byte written).
///
/// `capacity` is in 512-byte sectors; `write_cache_enabled` is word 85 bit 5.
pub fn build(block: &mut [u8], identity: &Identity, capacity: u64, write_cache_enabled: bool) {
    let block = &mut block[..IDENTIFY_LEN];
    block.fill(0);
    let capacity = capacity.min((1 << 48) - 1);
    let (cyl, heads, spt) = geometry(capacity);
    put_word(block, 1, cyl);
    put_word(block, 3, heads);
    put_word(block, 6, spt);
    put_string(block, SERIAL_WORDS, &identity.serial);
    put_string(block, FIRMWARE_WORDS, &identity.firmware);
    put_string(block, MODEL_WORDS, &identity.model);
    put_word(block, 47, 0x8000);
    put_word(block, 49, 1 << 9);
    put_word(block, 50, 0x4000);
    put_word(block, 53, 0x0001);
    put_word(block, 54, cyl);
    put_word(block, 55, heads);
    put_word(block, 56, spt);
    put_dword(
        block,
        57,
        u32::from(cyl) * u32::from(heads) * u32::from(spt),
    );
    put_dword(block, LBA28_CAPACITY, capacity.min(0x0fff_ffff) as u32);
    put_word(block, 80, 0x00f0);
    put_word(block, 82, 1 << 5);
    put_word(
        block,
        COMMAND_SET_2,
        (1 << 14) | (1 << 13) | (1 << 12) | LBA48_BIT,
    );
    put_word(block, 84, 0x4000);
    put_word(block, 85, if write_cache_enabled { 1 << 5 } else { 0 });
    put_word(
        block,
        COMMAND_SET_ENABLED_2,
        (1 << 13) | (1 << 12) | LBA48_BIT,
    );
    put_word(block, 87, 0x4000);
    put_word(block, 93, 0x400b);
    for i in 0..4 {
        put_word(block, LBA48_CAPACITY + i, (capacity >> (16 * i)) as u16);
    }
    put_word(block, 106, 0x4000);
    // Word 255: signature 0xA5 in the low byte, and a high byte that makes all 512 bytes sum
    // to zero modulo 256.
    block[510] = 0xa5;
    let sum = block[..511].iter().fold(0u8, |s, &b| s.wrapping_add(b));
    block[511] = sum.wrapping_neg();
}

/// What an initiator learns from an identify block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyInfo {
    /// Capacity in 512-byte sectors: words 100-103 when LBA48 is there, else words 60-61.
    pub sectors: u64,
    /// The device takes 48-bit commands.
    pub lba48: bool,
    /// The strings, trimmed of their padding (spaces and NULs).
    pub model: String,
    pub serial: String,
    pub firmware: String,
}

fn word(block: &[u8], w: usize) -> u16 {
    u16::from_le_bytes([block[w * 2], block[w * 2 + 1]])
}

/// Read an ATA string at `(start, words)`: each pair of bytes swapped back.
fn get_string(block: &[u8], (start, words): (usize, usize)) -> String {
    let mut s = Vec::with_capacity(words * 2);
    for w in start..start + words {
        s.push(block[w * 2 + 1]);
        s.push(block[w * 2]);
    }
    String::from_utf8_lossy(&s)
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .to_string()
}

/// Capacity and strings of the first [`IDENTIFY_LEN`] bytes of `data`; `None` when it is
/// shorter.
///
/// LBA48 when word 83 is valid (bits 15:14 = 01, as libata checks) with bit 10 set, or when
/// word 86 has bit 10 (the Linux `aoe` driver ORs the two words).
pub fn parse(data: &[u8]) -> Option<IdentifyInfo> {
    let block = data.get(..IDENTIFY_LEN)?;
    let w83 = word(block, COMMAND_SET_2);
    let lba48 = (w83 & 0xc000 == 0x4000 && w83 & LBA48_BIT != 0)
        || word(block, COMMAND_SET_ENABLED_2) & LBA48_BIT != 0;
    let sectors = if lba48 {
        (0..4).fold(0u64, |acc, i| {
            acc | u64::from(word(block, LBA48_CAPACITY + i)) << (16 * i)
        })
    } else {
        u64::from(word(block, LBA28_CAPACITY)) | u64::from(word(block, LBA28_CAPACITY + 1)) << 16
    };
    Some(IdentifyInfo {
        sectors,
        lba48,
        model: get_string(block, MODEL_WORDS),
        serial: get_string(block, SERIAL_WORDS),
        firmware: get_string(block, FIRMWARE_WORDS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(b: &[u8], start: usize, words: usize) -> String {
        let mut s = Vec::new();
        for w in start..start + words {
            s.push(b[w * 2 + 1]);
            s.push(b[w * 2]);
        }
        String::from_utf8(s).unwrap()
    }

    #[test]
    fn words_as_initiators_read_them() {
        let id = Identity::new("e0.0:host");
        let mut block = [0xa5u8; 600];
        let cap = 0x1_2345_6789u64;
        build(&mut block, &id, cap, true);
        assert_eq!(word(&block, 0), 0);
        assert_eq!(word(&block, 49) & (1 << 9), 1 << 9);
        assert_eq!(word(&block, 50), 0x4000);
        assert_eq!(word(&block, 60), 0xffff);
        assert_eq!(word(&block, 61), 0x0fff);
        assert_eq!(word(&block, 83), 0x7400);
        assert_eq!(word(&block, 84), 0x4000);
        assert_eq!(word(&block, 85), 0x0020);
        assert_eq!(word(&block, 86), 0x3400);
        assert_eq!(word(&block, 87), 0x4000);
        assert_eq!(word(&block, 82), 0x0020);
        assert_eq!(word(&block, 93), 0x400b);
        assert_eq!(
            (0..4)
                .map(|i| u64::from(word(&block, 100 + i)) << (16 * i))
                .sum::<u64>(),
            cap
        );
        assert_eq!(
            (word(&block, 1), word(&block, 3), word(&block, 6)),
            (16383, 16, 63)
        );
        assert_eq!(string(&block, 10, 10), "e0.0:host           ");
        assert_eq!(string(&block, 27, 20), format!("{MODEL:<40}"));
        assert_eq!(string(&block, 23, 4).trim_end(), env!("CARGO_PKG_VERSION"));
        // Only 512 bytes written; the checksum makes them sum to zero.
        assert!(block[512..].iter().all(|&b| b == 0xa5));
        assert_eq!(block[510], 0xa5);
        assert_eq!(block[..512].iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0);
    }

    #[test]
    fn small_image_geometry_and_cache_off() {
        let mut block = [0u8; 512];
        build(&mut block, &Identity::new("x"), 2048, false);
        assert_eq!(word(&block, 85), 0);
        assert_eq!(word(&block, 60), 2048);
        assert_eq!(word(&block, 61), 0);
        assert_eq!(word(&block, 100), 2048);
        assert_eq!((word(&block, 1), word(&block, 54)), (2, 2));
        assert_eq!(
            u32::from(word(&block, 57)) | (u32::from(word(&block, 58)) << 16),
            2 * 16 * 63
        );
    }

    #[test]
    fn serial_truncated_and_sanitised() {
        let id = Identity::new("e65535.255:a-very-long-hostname\u{e9}");
        assert_eq!(id.serial(), b"e65535.255:a-very-lo");
        let id = Identity::new("e1.2:h\u{e9}");
        assert_eq!(&id.serial()[..8], b"e1.2:h__");
    }

    #[test]
    fn parse_reads_back_what_build_wrote() {
        let mut block = [0u8; 512];
        build(&mut block, &Identity::new("e1.2:host"), 0x1_2345_6789, true);
        let info = parse(&block).unwrap();
        assert_eq!(
            info,
            IdentifyInfo {
                sectors: 0x1_2345_6789,
                lba48: true,
                model: MODEL.into(),
                serial: "e1.2:host".into(),
                firmware: env!("CARGO_PKG_VERSION").into(),
            }
        );
        assert_eq!(parse(&block[..511]), None);
    }

    #[test]
    fn parse_without_lba48_takes_words_60_61() {
        let mut block = [0u8; 512];
        block[120..124].copy_from_slice(&[0x00, 0x00, 0x01, 0x00]);
        block[200..208].copy_from_slice(&u64::MAX.to_le_bytes());
        // Word 83 with bit 10 but not valid (bits 15:14 = 11): no LBA48.
        block[166..168].copy_from_slice(&0xc400u16.to_le_bytes());
        let info = parse(&block).unwrap();
        assert_eq!((info.sectors, info.lba48), (0x10000, false));
        assert_eq!((info.model.as_str(), info.serial.as_str()), ("", ""));
        // Word 86 alone, as the Linux aoe driver reads it.
        block[172..174].copy_from_slice(&(1u16 << 10).to_le_bytes());
        let info = parse(&block).unwrap();
        assert_eq!((info.sectors, info.lba48), (u64::MAX, true));
        // Word 83 valid (bits 14 and 10) alone; model "MO" (word 27, bytes swapped).
        block[172..174].fill(0);
        block[166..168].copy_from_slice(&0x4400u16.to_le_bytes());
        block[200..208].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
        block[54..56].copy_from_slice(b"OM");
        let info = parse(&block).unwrap();
        assert_eq!((info.sectors, info.lba48), (0x1_0000_0000, true));
        assert_eq!(info.model, "MO");
    }
}
