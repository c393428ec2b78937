//! A Debian kernel's aoe driver (in QEMU, busybox initramfs) reads, checksums and writes an image
//! served by the target under test, at MTU 1500 and 9000.
//!
//! Run against vblade instead of l2san with `L2SAN_E2E_TARGET=vblade`.

#![forbid(unsafe_code)]

use anyhow::{ensure, Result};
use l2san_rig::linux::{self, AoeScenario, Kernel};
use l2san_rig::rig::{self, AoeExport, Netns, Run};
use l2san_rig::{bootdisk, rig::md5_file};

/// `image_mib` is big enough for a rate over about a second and small enough for TCG; the last
/// half of it takes the timed write.
fn linux_aoe(run: &Run, mtu: u32, image_mib: usize) -> Result<()> {
    let kernel = Kernel::debian()?;
    let image = run.path("disk.img");
    let original = bootdisk::build(image_mib << 20);
    std::fs::write(&image, &original)?;
    let original_md5 = md5_file(&image)?;
    let pattern = run.path("pattern.bin");
    std::fs::write(&pattern, linux::aoe_pattern())?;
    let pattern_md5 = md5_file(&pattern)?;

    let ns = Netns::new()?;
    let tap = ns.tap("tap0", mtu)?;
    let target = run.start_target(&ns, &tap, &AoeExport::new(0, 0, &image))?;
    let scenario = AoeScenario {
        mtu,
        write_mib: image_mib as u64 / 2,
        ..AoeScenario::default()
    };
    let outcome = linux::run_aoe(&ns, &tap, &kernel, &scenario, run.dir())?;
    outcome.check_done()?;
    rig::report(format_args!(
        "{}: {} MTU {}: O_DIRECT read {}, O_DIRECT write {} (guest run {:.1} s)",
        run.name(),
        run.target_kind(),
        outcome.get("MTU").unwrap_or("?"),
        outcome.rate("READ-RATE"),
        outcome.rate("WRITE-RATE"),
        outcome.elapsed.as_secs_f64()
    ));
    ensure!(
        outcome.get("MTU") == Some(&mtu.to_string()),
        "guest eth0 MTU is {:?}, wanted {mtu}",
        outcome.get("MTU")
    );
    ensure!(
        outcome.md5("READ-MD5")? == original_md5,
        "whole-device md5 in the guest {} differs from the image's {original_md5}",
        outcome.md5("READ-MD5")?
    );
    ensure!(
        outcome.md5("READBACK-MD5")? == pattern_md5,
        "O_DIRECT read-back md5 {} differs from the pattern's {pattern_md5}",
        outcome.md5("READBACK-MD5")?
    );
    target.stop()?;
    let after = std::fs::read(&image)?;
    let expected = linux::expected_after_aoe(&original, scenario.write_mib);
    if let Some(diff) = bootdisk::first_difference(&after, &expected) {
        anyhow::bail!("image after the guest's writes: {diff}");
    }
    Ok(())
}

#[test]
fn linux_aoe_mtu1500() {
    rig::e2e("linux_aoe_mtu1500", |run| linux_aoe(run, 1500, 64));
}

#[test]
fn linux_aoe_mtu9000() {
    rig::e2e("linux_aoe_mtu9000", |run| linux_aoe(run, 9000, 128));
}
