//! iPXE (BIOS, in QEMU) boots the bootdisk image over AoE from the target under test.
//!
//! Run against vblade instead of l2san with `L2SAN_E2E_TARGET=vblade`.

#![forbid(unsafe_code)]

use anyhow::{bail, ensure};
use l2san_rig::bootdisk;
use l2san_rig::rig::{self, AoeExport, BootResult, IpxeOpts, Netns};

/// 8 MiB: also clear of iPXE's geometry pitfall without the partition entry.
const IMAGE_LEN: usize = 8 << 20;

#[test]
fn ipxe_aoe_boot() {
    rig::e2e("ipxe_aoe_boot", |run| {
        let image = run.path("disk.img");
        std::fs::write(&image, bootdisk::build(IMAGE_LEN))?;
        let ns = Netns::new()?;
        let tap = ns.tap("tap0", 1500)?;
        let target = run.start_target(&ns, &tap, &AoeExport::new(0, 0, &image))?;
        let outcome = rig::ipxe_sanboot(&ns, &tap, &IpxeOpts::default(), run.dir())?;
        rig::report(format_args!(
            "ipxe_aoe_boot: {:?} after {:.1} s",
            outcome.result,
            outcome.elapsed.as_secs_f64()
        ));
        let expected = BootResult::Ok {
            reads: bootdisk::expected_reads(),
            writes: bootdisk::expected_writes(),
        };
        if outcome.result != expected {
            bail!("boot code said {:?}, expected {expected:?}", outcome.result);
        }
        target.stop()?;
        bootdisk::check_written(&std::fs::read(&image)?)?;
        Ok(())
    });
}

#[test]
fn ipxe_aoe_readonly() {
    rig::e2e("ipxe_aoe_readonly", |run| {
        let image = run.path("disk.img");
        std::fs::write(&image, bootdisk::build(IMAGE_LEN))?;
        let ns = Netns::new()?;
        let tap = ns.tap("tap0", 1500)?;
        let export = AoeExport::new(0, 0, &image).read_only();
        let target = run.start_target(&ns, &tap, &export)?;
        let outcome = rig::ipxe_sanboot(&ns, &tap, &IpxeOpts::default(), run.dir())?;
        rig::report(format_args!(
            "ipxe_aoe_readonly: {:?} after {:.1} s",
            outcome.result,
            outcome.elapsed.as_secs_f64()
        ));
        // Every read, including the re-reads of the refused sectors, succeeded.
        let expected = BootResult::ReadOnly {
            reads: bootdisk::expected_reads(),
        };
        ensure!(
            outcome.result == expected,
            "boot code said {:?}, expected {expected:?}",
            outcome.result
        );
        target.stop()?;
        bootdisk::check_unchanged(&std::fs::read(&image)?)?;
        Ok(())
    });
}
