//! A bootable raw disk image that tests a SAN target through the BIOS int 13h interface.
//!
//! Layout (512-byte sectors):
//! - LBA 0: the boot code's first stage (from `boot/boot.asm`), its parameter block at 0x180, a
//!   disk signature and one partition entry whose CHS geometry is 16 heads x 63 sectors. Without a
//!   partition table iPXE assumes 255 x 63, and images under about 8 MiB then have 0 cylinders and
//!   fail to boot although every read succeeds.
//! - LBA 1-2: the boot code's second stage.
//! - LBA 3 to the end: a pattern, dword `k` of sector `lba` being `(lba * 128 + k) * 0x9E3779B1`
//!   (mod 2^32), little endian. Every byte depends on its position, so misplaced, stale or torn
//!   sectors are caught.
//!
//! The boot code reads [`READS`] (64 sectors per int 13h AH=42h call) and checks the pattern, then
//! for each of [`WRITES`] writes the pattern's complement with AH=43h, reads it back and checks it.
//! If the target refuses the writes it checks that the sectors still hold the pattern. It reports on
//! COM1 (see [`crate::rig::BootResult`]) and ends QEMU through `isa-debug-exit` at port 0xf4.

use anyhow::{bail, ensure, Result};

/// The assembled `boot/boot.asm` (nasm -f bin): 3 sectors, the MBR and the second stage.
pub const BOOT_CODE: &[u8] = include_bytes!("../boot/boot.bin");

/// Sector size of the image.
pub const SECTOR: usize = 512;

/// First LBA holding the pattern (after the boot code).
pub const FIRST_DATA_LBA: u64 = (BOOT_CODE.len() / SECTOR) as u64;

/// Smallest image [`build`] accepts.
pub const MIN_LEN_BYTES: usize = 2 << 20;

/// Extents the boot code reads and checks: `(lba, sectors)`; a negative lba counts from the end.
/// The first spans 16 calls of 64 sectors, the second starts at an odd LBA with an odd count.
pub const READS: [(i64, u16); 3] = [(3, 1024), (2047, 37), (-64, 64)];

/// Extents the boot code writes (the pattern's complement), reads back and checks: odd LBAs.
pub const WRITES: [(u64, u16); 2] = [(333, 3), (1001, 64)];

const PARAMS: usize = 0x180;
const READ_SLOTS: usize = 4;
const WRITE_SLOTS: usize = 3;
const HEADS: u64 = 16;
const SECTORS_PER_TRACK: u64 = 63;

/// Sectors the boot code reports as read after a successful read-write boot.
pub fn expected_reads() -> u64 {
    READS.iter().map(|r| u64::from(r.1)).sum::<u64>() + expected_writes()
}

/// Sectors the boot code reports as written after a successful read-write boot.
pub fn expected_writes() -> u64 {
    WRITES.iter().map(|w| u64::from(w.1)).sum()
}

/// Dword `k` (0..128) of sector `lba` of the pattern.
pub fn pattern_dword(lba: u64, k: u32) -> u32 {
    // Truncation to 32 bits is the pattern's definition, matching the boot code's registers.
    (lba as u32)
        .wrapping_mul(128)
        .wrapping_add(k)
        .wrapping_mul(0x9E37_79B1)
}

/// Fills `sector` with the pattern for `lba`, complemented if `written`.
fn fill_sector(sector: &mut [u8], lba: u64, written: bool) {
    let mask = if written { u32::MAX } else { 0 };
    for (k, dword) in (0u32..).zip(sector.chunks_exact_mut(4)) {
        dword.copy_from_slice(&(pattern_dword(lba, k) ^ mask).to_le_bytes());
    }
}

fn chs(lba: u64) -> [u8; 3] {
    let cylinder = lba / (HEADS * SECTORS_PER_TRACK);
    if cylinder > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let head = (lba / SECTORS_PER_TRACK) % HEADS;
    let sector = lba % SECTORS_PER_TRACK + 1;
    [
        head as u8,
        (sector as u8) | (((cylinder >> 8) as u8) << 6),
        cylinder as u8,
    ]
}

fn resolve_reads(sectors: u64) -> impl Iterator<Item = (u64, u16)> {
    READS.into_iter().map(move |(lba, count)| {
        let lba = if lba < 0 {
            sectors - lba.unsigned_abs()
        } else {
            lba as u64
        };
        (lba, count)
    })
}

/// Builds an image of `len_bytes` (a multiple of 512, at least [`MIN_LEN_BYTES`], at most 2 TiB).
///
/// # Panics
/// If `len_bytes` is out of range: that is a bug in the calling test.
pub fn build(len_bytes: usize) -> Vec<u8> {
    assert!(
        len_bytes.is_multiple_of(SECTOR)
            && len_bytes >= MIN_LEN_BYTES
            && (len_bytes as u64) < (1 << 41),
        "bootdisk::build: bad image length {len_bytes}"
    );
    let sectors = (len_bytes / SECTOR) as u64;
    let mut image = vec![0u8; len_bytes];
    image[..BOOT_CODE.len()].copy_from_slice(BOOT_CODE);
    for (lba, sector) in (0u64..).zip(image.chunks_exact_mut(SECTOR)) {
        if lba >= FIRST_DATA_LBA {
            fill_sector(sector, lba, false);
        }
    }

    let mbr = &mut image[..SECTOR];
    assert_eq!(
        &mbr[PARAMS..PARAMS + 4],
        b"L2SB",
        "boot.bin has no parameter block"
    );
    let mut at = PARAMS + 4;
    for (lba, count) in resolve_reads(sectors) {
        mbr[at..at + 4].copy_from_slice(&(lba as u32).to_le_bytes());
        mbr[at + 4..at + 6].copy_from_slice(&count.to_le_bytes());
        at += 6;
    }
    at = PARAMS + 4 + READ_SLOTS * 6;
    for (lba, count) in WRITES {
        mbr[at..at + 4].copy_from_slice(&(lba as u32).to_le_bytes());
        mbr[at + 4..at + 6].copy_from_slice(&count.to_le_bytes());
        at += 6;
    }
    debug_assert!(at <= PARAMS + 4 + (READ_SLOTS + WRITE_SLOTS) * 6);

    // Disk signature, then one partition of type 0xda (non-FS data) spanning whole cylinders from
    // LBA 63, so that iPXE derives 16 x 63 geometry from its end CHS.
    mbr[0x1b8..0x1bc].copy_from_slice(b"l2sn");
    let cylinder = HEADS * SECTORS_PER_TRACK;
    let end = (sectors / cylinder).max(1) * cylinder - 1;
    let start = SECTORS_PER_TRACK;
    let entry = &mut mbr[0x1be..0x1ce];
    entry[0] = 0x80;
    entry[1..4].copy_from_slice(&chs(start));
    entry[4] = 0xda;
    entry[5..8].copy_from_slice(&chs(end));
    entry[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&((end + 1 - start) as u32).to_le_bytes());
    assert_eq!(&mbr[0x1fe..], &[0x55, 0xaa]);
    image
}

/// What an image of `len_bytes` holds after a successful read-write boot.
pub fn expected_after_boot(len_bytes: usize) -> Vec<u8> {
    let mut image = build(len_bytes);
    for (lba, count) in WRITES {
        for lba in lba..lba + u64::from(count) {
            let at = lba as usize * SECTOR;
            fill_sector(&mut image[at..at + SECTOR], lba, true);
        }
    }
    image
}

/// Describes the first sector where `actual` and `expected` differ, if any.
pub fn first_difference(actual: &[u8], expected: &[u8]) -> Option<String> {
    if actual.len() != expected.len() {
        return Some(format!(
            "length {} bytes, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    let bad = actual
        .chunks(SECTOR)
        .zip(expected.chunks(SECTOR))
        .position(|(a, e)| a != e)?;
    let differing = actual
        .chunks(SECTOR)
        .zip(expected.chunks(SECTOR))
        .filter(|(a, e)| a != e)
        .count();
    let at = bad * SECTOR;
    let a = &actual[at..(at + SECTOR).min(actual.len())];
    let e = &expected[at..(at + SECTOR).min(expected.len())];
    let what = if a.iter().all(|&b| b == 0) {
        " (all zero)".to_string()
    } else if bad as u64 >= FIRST_DATA_LBA {
        let mut original = vec![0; SECTOR];
        let mut written = vec![0; SECTOR];
        fill_sector(&mut original, bad as u64, false);
        fill_sector(&mut written, bad as u64, true);
        if a == original {
            " (holds the original pattern)".into()
        } else if a == written {
            " (holds the boot code's write pattern)".into()
        } else {
            String::new()
        }
    } else {
        String::new()
    };
    Some(format!(
        "{differing} sector(s) differ, first at LBA {bad}{what}: starts {:02x?}, expected {:02x?}",
        &a[..16.min(a.len())],
        &e[..16.min(e.len())]
    ))
}

/// Checks that `image` is exactly what a successful read-write boot leaves: the boot code's
/// written sectors hold the complemented pattern and every other byte is as [`build`] made it.
pub fn check_written(image: &[u8]) -> Result<()> {
    ensure!(
        image.len().is_multiple_of(SECTOR) && image.len() >= MIN_LEN_BYTES,
        "image of {} bytes was not made by bootdisk::build",
        image.len()
    );
    if let Some(diff) = first_difference(image, &expected_after_boot(image.len())) {
        bail!("image after boot: {diff}");
    }
    Ok(())
}

/// Checks that `image` is byte for byte what [`build`] made (nothing was written).
pub fn check_unchanged(image: &[u8]) -> Result<()> {
    ensure!(
        image.len().is_multiple_of(SECTOR) && image.len() >= MIN_LEN_BYTES,
        "image of {} bytes was not made by bootdisk::build",
        image.len()
    );
    if let Some(diff) = first_difference(image, &build(image.len())) {
        bail!("image changed: {diff}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skip;
    use std::process::Command;

    #[test]
    fn boot_bin_matches_boot_asm() {
        if let Err(reason) = skip::tool("nasm", "nasm") {
            return skip::skip("boot_bin_matches_boot_asm", reason);
        }
        let dir = std::env::temp_dir().join(format!("l2st-nasm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("boot.bin");
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/boot/boot.asm");
        let status = Command::new("nasm")
            .args(["-f", "bin", "-o"])
            .arg(&out)
            .arg(src)
            .status()
            .expect("cannot run nasm");
        assert!(status.success(), "nasm failed on {src}");
        let fresh = std::fs::read(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            fresh == BOOT_CODE,
            "tests/rig/boot/boot.bin is stale: run `nasm -f bin -o tests/rig/boot/boot.bin tests/rig/boot/boot.asm`"
        );
    }

    #[test]
    fn layout() {
        assert_eq!(BOOT_CODE.len(), 3 * SECTOR);
        assert_eq!(&BOOT_CODE[PARAMS..PARAMS + 4], b"L2SB");
        assert!(READS.len() < READ_SLOTS && WRITES.len() < WRITE_SLOTS);
        assert!(WRITES.iter().all(|w| w.1 <= 64 && w.0 % 2 == 1));
        let image = build(MIN_LEN_BYTES);
        assert_eq!(&image[510..512], &[0x55, 0xaa]);
        // Tail read resolved against the size.
        let tail = PARAMS + 4 + 2 * 6;
        let lba = u32::from_le_bytes(image[tail..tail + 4].try_into().unwrap());
        assert_eq!(u64::from(lba), (MIN_LEN_BYTES / SECTOR) as u64 - 64);
        // Partition: 16 heads x 63 sectors, ends on a cylinder boundary.
        let entry = &image[0x1be..0x1ce];
        assert_eq!(entry[5], 15);
        assert_eq!(entry[6] & 0x3f, 63);
        assert_eq!(entry[4], 0xda);
        // Pattern sample.
        let at = 5 * SECTOR + 4;
        assert_eq!(
            u32::from_le_bytes(image[at..at + 4].try_into().unwrap()),
            (5u32 * 128 + 1).wrapping_mul(0x9E37_79B1)
        );
    }

    #[test]
    fn checks() {
        let len = MIN_LEN_BYTES;
        let built = build(len);
        check_unchanged(&built).unwrap();
        assert!(check_written(&built).is_err());
        let mut after = expected_after_boot(len);
        check_written(&after).unwrap();
        assert!(check_unchanged(&after).is_err());
        after[1001 * SECTOR + 7] ^= 1;
        let err = check_written(&after).unwrap_err().to_string();
        assert!(err.contains("LBA 1001"), "{err}");
        assert_eq!(expected_reads(), 1024 + 37 + 64 + 67);
        assert_eq!(expected_writes(), 67);
    }
}
