//! End-to-end test rigs for l2san: real initiators (iPXE, Linux) in QEMU, talking to a target over
//! a tap device in a network namespace that the rig creates and removes.
//!
//! - [`rig`]: network namespaces and taps ([`rig::Netns`], [`rig::Tap`]), process groups killed on
//!   drop ([`rig::Child`]), [`rig::wait_until`], the target under test ([`rig::Target`], l2san or
//!   vblade), iPXE `sanboot` in QEMU ([`rig::ipxe_sanboot`]) and the test harness glue
//!   ([`rig::e2e`], [`rig::e2e_l2san`]).
//! - [`skip`]: what a test that cannot run does: it says so, and fails under
//!   `L2SAN_REQUIRE_E2E=1`.
//! - [`bootdisk`]: a bootable raw image whose boot code checks int 13h reads and writes.
//! - [`linux`]: a Debian kernel (fetched and cached) with a busybox initramfs running an AoE
//!   scenario ([`linux::run_aoe`]).
//! - [`fcoe_guest`]: the same kernel as a VN2VN FCoE initiator ([`fcoe_guest::run_fcoe`]), with
//!   tcpdump captures of the segment and checks of the frames in them.
//! - [`fixture`]: MAC text, a veth pair `a`–`b` with raw sockets on `b`, an AoE ATA frame to
//!   e0.0, `l2san serve --config` with a control socket, `l2san ctl`: the setup of the tests
//!   that send hand-made frames or drive the control socket; their image checks, silence check
//!   and AoE frames ([`fixture::aoe`]); the kill and restart of l2san under a workload guest.
//! - [`cpio`]: the newc archive writer behind the initramfs.
//! - [`rawsock`]: a raw AF_PACKET socket for tests that send hand-made frames (l2san's own
//!   `PacketSocket`, opened inside a namespace).
//! - [`workload`]: a verified O_DIRECT write workload in a Linux guest over AoE, with host-side
//!   checks of the image and an l2san process the test can kill -9 and restart.
//!
//! Everything here needs root, `/dev/net/tun`, `qemu-system-x86_64`, `/boot/ipxe.lkrn` (package
//! ipxe) and `/bin/busybox` (busybox-static). Without root or tun the tests say they were skipped
//! ([`skip`]), and fail instead under `L2SAN_REQUIRE_E2E=1`; a missing tool fails them.
//!
//! No unsafe code here: the system calls the rig needs (namespaces, packet sockets, process
//! groups) are `l2san_common::io::sys`'s safe API.

#![forbid(unsafe_code)]

pub mod bootdisk;
pub mod cpio;
pub mod fcoe_guest;
pub mod fixture;
pub mod linux;
pub mod rawsock;
pub mod rig;
pub mod skip;
pub mod workload;
