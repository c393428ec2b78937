//! The XDP program that hands the served ethertypes to our AF_XDP sockets, and the few bpf(2)
//! commands that load and attach it: no libbpf, no clang, no bpffs.
//!
//! Layouts follow `union bpf_attr` in linux/bpf.h: each command reads a prefix of the union,
//! and the kernel zero-fills whatever is past the size we pass, so each command gets a
//! `#[repr(C)]` struct of just the fields it needs (their offsets are asserted in the tests).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::io::sys::cvt;

// enum bpf_cmd
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
// enum bpf_map_type, enum bpf_prog_type, enum bpf_attach_type
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// The program copes with multi-buffer frames (it only reads the first buffer's header).
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;

/// XSKMAP slots: the key is the RX queue index, so this bounds the queues we can serve.
pub(crate) const XSKMAP_ENTRIES: u32 = 1024;

/// struct bpf_insn: opcode, dst_reg (low nibble) and src_reg (high nibble), offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
const LDX_MEM_H: u8 = 0x69; // BPF_LDX | BPF_MEM | BPF_H: dst = *(u16 *)(src + off)
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X: dst = src
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
const ADD64_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K: dst += imm
const JGT_X: u8 = 0x2d; // BPF_JMP | BPF_JGT | BPF_X: if dst > src goto +off
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K: if dst == imm goto +off
const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_DW | BPF_IMM: two slots, 64-bit immediate
const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
/// src_reg of LD_IMM64 meaning "imm is a map fd" (BPF_PSEUDO_MAP_FD).
const PSEUDO_MAP_FD: u8 = 1;
/// BPF_FUNC_redirect_map.
const FUNC_REDIRECT_MAP: i32 = 51;
/// enum xdp_action.
const XDP_PASS: i32 = 2;
// struct xdp_md field offsets.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE_INDEX: i16 = 16;

/// The program, for the XSKMAP `map_fd` and the served `ethertypes`:
///
/// ```text
///        r2 = ctx->data; r3 = ctx->data_end
///        if r2 + 14 > r3 goto pass            ; runt: not ours
///        r4 = *(u16 *)(r2 + 12)               ; ethertype, as loaded (network order)
///        if r4 == T0 goto redirect ... Tn-1
/// pass:  return XDP_PASS                      ; everything else goes to the kernel
/// redir: return bpf_redirect_map(xskmap, ctx->rx_queue_index, XDP_PASS)
/// ```
///
/// The last argument of bpf_redirect_map is the action when the map has no socket for this
/// queue: XDP_PASS, so that a queue without an AF_XDP socket still reaches AF_PACKET.
/// With multi-buffer frames only the first buffer is visible through data/data_end, and it
/// always holds at least the Ethernet header.
pub(crate) fn program(map_fd: RawFd, ethertypes: &[u16]) -> Vec<Insn> {
    let n = ethertypes.len() as i16;
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, MD_DATA, 0),
        insn(LDX_MEM_W, 3, 1, MD_DATA_END, 0),
        insn(MOV64_X, 4, 2, 0, 0),
        insn(ADD64_K, 4, 0, 0, 14),
        // To `pass`, past the load and the n compares.
        insn(JGT_X, 4, 3, n + 1, 0),
        insn(LDX_MEM_H, 4, 2, 12, 0),
    ];
    for (i, &t) in ethertypes.iter().enumerate() {
        // The load reads the two wire bytes in host order.
        let as_loaded = u16::from_ne_bytes(t.to_be_bytes());
        // To `redirect`, past the remaining compares and the two `pass` instructions.
        prog.push(insn(JEQ_K, 4, 0, n - i as i16 - 1 + 2, as_loaded as i32));
    }
    prog.extend([
        // pass:
        insn(MOV64_K, 0, 0, 0, XDP_PASS),
        insn(EXIT, 0, 0, 0, 0),
        // redirect:
        insn(LDX_MEM_W, 2, 1, MD_RX_QUEUE_INDEX, 0),
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        insn(MOV64_K, 3, 0, 0, XDP_PASS),
        insn(CALL, 0, 0, 0, FUNC_REDIRECT_MAP),
        insn(EXIT, 0, 0, 0, 0),
    ]);
    prog
}

/// The BPF_MAP_CREATE prefix of union bpf_attr.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// The BPF_MAP_UPDATE_ELEM prefix of union bpf_attr.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The BPF_PROG_LOAD prefix of union bpf_attr.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The BPF_LINK_CREATE prefix of union bpf_attr.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// bpf(2). `T` must be the `#[repr(C)]` prefix of union bpf_attr that `cmd` reads.
///
/// # Safety
/// Every pointer stored as a u64 in `attr` must point to memory valid for the access `cmd`
/// makes through it (read or write, of the size stated next to it) for the whole call.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusive T and we pass its exact size, so the kernel reads
    // (and for some commands writes) only memory we own; the pointers inside it are the
    // caller's obligation as stated above.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    })
}

/// A descriptor the kernel just returned becomes an OwnedFd at once.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` is a fresh descriptor returned by bpf(2) that nothing else owns. bpf(2)
    // creates its descriptors with O_CLOEXEC.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// An XSKMAP: RX queue index -> AF_XDP socket.
pub(crate) fn create_xskmap() -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: XSKMAP_ENTRIES,
        map_name: name16("l2san_xsks"),
        ..Default::default()
    };
    // SAFETY: BPF_MAP_CREATE reads only the plain fields of `attr`; it holds no pointers.
    unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map(owned)
}

/// Put AF_XDP socket `xsk` into `map` at `queue`.
pub(crate) fn xskmap_set(map: &OwnedFd, queue: u32, xsk: RawFd) -> io::Result<()> {
    let key: u32 = queue;
    let value: u32 = xsk as u32;
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        ..Default::default()
    };
    // SAFETY: `key` and `value` are live u32s for the whole call, matching the map's
    // key_size and value_size of 4; the kernel only reads them.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(|_| ())
}

/// Load `insns` as a frags-aware XDP program. On a verifier refusal the error carries the
/// verifier's log.
pub(crate) fn load_program(insns: &[Insn]) -> io::Result<OwnedFd> {
    // l2san's own licence. The program calls no GPL-only helper (bpf_redirect_map is not).
    let license = c"MIT OR Apache-2.0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_flags: BPF_F_XDP_HAS_FRAGS,
        prog_name: name16("l2san_xsk"),
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    // SAFETY: `insns` points to `insn_cnt` live instructions and `license` to a live
    // NUL-terminated string, both only read by the kernel during the call; no log buffer.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => Ok(owned(fd)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EINVAL)) => {
            // Load again with a log to say why (set-up only: the allocation is fine here).
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            // SAFETY: as above, and `log` is a live, writable buffer of `log_size` bytes
            // that the kernel fills with a NUL-terminated text during the call.
            match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
                Ok(fd) => Ok(owned(fd)),
                Err(_) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    let last = text.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
                    Err(io::Error::new(e.kind(), format!("{e}; verifier: {last}")))
                }
            }
        }
        Err(e) => Err(e),
    }
}

/// Attach `prog` to the interface through a BPF link: the program stays attached exactly as
/// long as the returned descriptor is open, so it goes when we exit, even on SIGKILL.
pub(crate) fn attach_xdp(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        // No mode flag: native (driver) XDP where the driver has it, generic otherwise.
        flags: 0,
    };
    // SAFETY: BPF_LINK_CREATE for XDP reads only the plain fields of `attr`.
    unsafe { bpf(BPF_LINK_CREATE, &mut attr) }.map(owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn attr_layouts_match_linux_bpf_h() {
        assert_eq!(size_of::<Insn>(), 8);
        assert_eq!(offset_of!(MapCreateAttr, max_entries), 12);
        assert_eq!(offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(offset_of!(MapElemAttr, key), 8);
        assert_eq!(offset_of!(MapElemAttr, value), 16);
        assert_eq!(offset_of!(MapElemAttr, flags), 24);
        assert_eq!(offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(offset_of!(ProgLoadAttr, license), 16);
        assert_eq!(offset_of!(ProgLoadAttr, log_level), 24);
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, prog_flags), 44);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(offset_of!(LinkCreateAttr, attach_type), 8);
        assert_eq!(size_of::<LinkCreateAttr>(), 16);
    }

    #[test]
    fn program_jumps_land_where_the_comments_say() {
        let types = [0x88a2, 0x8906, 0x8914];
        let prog = program(7, &types);
        assert_eq!(prog.len(), 14 + types.len());
        let pass = 6 + types.len();
        let redirect = pass + 2;
        // The runt check jumps to `pass`.
        assert_eq!(4 + 1 + prog[4].off as usize, pass);
        assert_eq!(prog[pass].imm, XDP_PASS);
        assert_eq!(prog[pass + 1].code, EXIT);
        for (i, &t) in types.iter().enumerate() {
            let at = 6 + i;
            assert_eq!(at + 1 + prog[at].off as usize, redirect);
            // What a little- or big-endian u16 load of the wire bytes gives.
            assert_eq!(
                prog[at].imm as u16,
                u16::from_ne_bytes([(t >> 8) as u8, t as u8])
            );
        }
        assert_eq!(prog[redirect].off, MD_RX_QUEUE_INDEX);
        assert_eq!(prog[redirect + 1].imm, 7);
        assert_eq!(prog[redirect + 1].regs, 1 | (PSEUDO_MAP_FD << 4));
        assert_eq!(prog[redirect + 4].imm, FUNC_REDIRECT_MAP);
    }
}
