; l2san end-to-end test boot code, started by iPXE `sanboot` over AoE.
;
; Two stages in one flat image of 3 sectors: the MBR (sector 0) sets up, checks for int 13h
; extensions and loads sectors 1-2 (stage 2) to 0x7e00 with AH=42h; stage 2 runs the checks.
;
; Assemble: nasm -f bin -o boot.bin boot.asm
; The assembled boot.bin is committed and embedded by tests/src/bootdisk.rs; a unit test there
; re-assembles this file when nasm is present and compares. Change both together.
;
; What it does, reporting on COM1 (0x3f8) directly so the test never depends on the BIOS console:
;   1. prints "L2SAN-BOOT START";
;   2. checks for int 13h extensions (AH=41h);
;   3. for each read extent in the parameter block: reads it with AH=42h, at most 64 sectors per
;      call, and checks every dword against the pattern the image builder wrote:
;          dword k of sector lba = (lba * 128 + k) * 0x9E3779B1   (mod 2^32)
;   4. for each write extent: writes the complement of that pattern with AH=43h, clears the
;      buffer, reads the sectors back and checks them. If the write is refused (CF set) the export
;      is read-only: the read-back must then still hold the original pattern;
;   5. prints "L2SAN-BOOT OK reads=<sectors> writes=<sectors>", or "L2SAN-BOOT RO reads=<sectors>
;      writes=0" when every write was refused, or "L2SAN-BOOT FAIL <reason>=<n> lba=<lba>" (reasons:
;      no-int13-ext bx=, int13-status=, read-mismatch dword=, readback-mismatch dword=,
;      some-writes-refused writes=);
;   6. ends QEMU through isa-debug-exit at port 0xf4 (exit status 1 for OK/RO, 3 for FAIL), and
;      halts if that device is absent.
;
; The parameter block at 0x180 is filled in by the image builder (bootdisk.rs):
;   0x180  "L2SB"
;   0x184  4 read extents  { lba: u32, sectors: u16 }, a zero sector count ends the list
;   0x19c  3 write extents { lba: u32, sectors: u16 (at most 64) }, likewise
; Disk signature at 0x1b8, partition table at 0x1be, 55 aa at 0x1fe. The builder's pattern starts
; at LBA 3, after stage 2.

bits 16
cpu 386
org 0x7c00

COM1      equ 0x3f8
EXIT_PORT equ 0xf4
BUF_SEG   equ 0x1000            ; 32 KiB transfer buffer at 0x10000
MAX_CHUNK equ 64                ; sectors per int 13h call
PATTERN   equ 0x9E3779B1
STAGE2_SECTORS equ 2

start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    cld
    mov di, vars                ; zero the variables (they live below 0x7c00)
    mov cx, vars_len
    rep stosb
    mov [drive], dl
    mov byte [dap], 0x10
    push BUF_SEG
    pop es                      ; es stays on the buffer from here on
    xor ebx, ebx                ; lba shown by an early FAIL

    mov si, msg_start
    call puts

    mov ah, 0x41
    mov bx, 0x55aa
    mov dl, [drive]
    int 0x13
    mov si, msg_noext
    jc .noext
    cmp bx, 0xaa55
    je .ext
.noext:
    movzx eax, bx
    jmp fail
.ext:

    ; -- load stage 2 (its own sectors are not part of the pattern)
    mov ebx, 1
    mov word [dap + 2], STAGE2_SECTORS
    mov [dap + 8], ebx
    mov word [dap + 6], 0
    mov word [dap + 4], stage2
    mov ah, 0x42
    call disk
    mov word [dap + 4], 0
    mov word [dap + 6], BUF_SEG
    jmp stage2

; int 13h function ah on the DAP; reads fail the boot, a write error returns with CF set.
disk:
    mov si, dap
    mov dl, [drive]
    mov al, 0
    push ax
    int 0x13
    pop dx
    jnc .ret
    cmp dh, 0x43
    stc                         ; keep CF for the caller (stc leaves ZF alone)
    je .ret
    movzx eax, ah
    mov si, msg_readerr
    jmp fail
.ret:
    ret

; Print "FAIL <si><eax> lba=<ebx>" and exit with code 1 (QEMU exit status 3).
fail:
    push eax                    ; puts clobbers al
    push si
    mov si, msg_fail
    call puts
    pop si
    call puts
    pop eax
    call putdec
    mov si, msg_lba
    call puts
    mov eax, ebx
    call putdec
    mov si, msg_crlf
    call puts
    mov al, 1
exit:
    out EXIT_PORT, al
.halt:
    cli
    hlt
    jmp .halt

puts:
    lodsb
    test al, al
    jz .ret
    call putc
    jmp puts
.ret:
    ret

putdec:                         ; eax, unsigned decimal
    push ebx
    mov ebx, 10
    xor cx, cx
.div:
    xor edx, edx
    div ebx
    push dx
    inc cx
    test eax, eax
    jnz .div
.out:
    pop ax
    add al, '0'
    call putc
    loop .out
    pop ebx
    ret

putc:
    push ax
    mov dx, COM1 + 5
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    pop ax
    mov dx, COM1
    out dx, al
    ret

msg_start:     db 13, 10, "L2SAN-BOOT START", 13, 10, 0
msg_fail:      db 13, 10, "L2SAN-BOOT FAIL ", 0
msg_noext:     db "no-int13-ext bx=", 0
msg_readerr:   db "int13-status=", 0
msg_lba:       db " lba=", 0
msg_crlf:      db 13, 10, 0

    times 0x180 - ($ - $$) db 0
params:
    db "L2SB"
reads:
    times 4 * 6 db 0
writes:
    times 3 * 6 db 0
    times 0x1fe - ($ - $$) db 0
    dw 0xaa55

; ---------------------------------------------------------------- stage 2, at 0x7e00
stage2:
    ; -- reads
    mov si, reads
.rnext:
    mov ebx, [si]
    mov cx, [si + 4]
    jcxz .rdone
    push si
    xor ebp, ebp                ; expect the original pattern
    call read_verify
    pop si
    add si, 6
    jmp .rnext
.rdone:

    ; -- writes
    mov si, writes
.wnext:
    mov ebx, [si]
    mov cx, [si + 4]
    jcxz .wdone
    push si
    push cx
    mov [dap + 2], cx
    mov [dap + 8], ebx
    shl cx, 7
    mov eax, ebx
    shl eax, 7
    xor di, di
.fill:
    imul edx, eax, PATTERN
    not edx
    mov [es:di], edx
    add di, 4
    inc eax
    loop .fill
    mov ah, 0x43
    call disk
    pop cx
    mov ebp, 0xffffffff         ; expect what we wrote
    jnc .wok
    mov byte [ro], 1
    xor ebp, ebp                ; refused: expect the original pattern
    jmp .readback
.wok:
    movzx eax, cx
    add [nwrites], eax
.readback:
    call read_verify
    pop si
    add si, 6
    jmp .wnext
.wdone:

    mov si, msg_ok
    cmp byte [ro], 0
    je .report
    mov eax, [nwrites]
    test eax, eax
    mov si, msg_mixed
    jnz fail
    mov si, msg_ro
.report:
    call puts
    mov eax, [nreads]
    call putdec
    mov si, msg_writes
    call puts
    mov eax, [nwrites]
    call putdec
    mov si, msg_crlf
    call puts
    mov al, 0
    jmp exit

; Read cx sectors from lba ebx (64 per call) and check them against the pattern xor ebp.
read_verify:
.chunk:
    jcxz .ret
    mov ax, cx
    cmp ax, MAX_CHUNK
    jbe .n
    mov ax, MAX_CHUNK
.n:
    sub cx, ax
    push cx
    mov [dap + 2], ax
    mov [dap + 8], ebx
    xor di, di                  ; clear the buffer so stale data can never pass
    xor eax, eax
    mov cx, MAX_CHUNK * 128
    rep stosd
    mov ah, 0x42
    call disk
    movzx ecx, word [dap + 2]
    add [nreads], ecx
    shl cx, 7
    mov eax, ebx
    shl eax, 7
    xor di, di
.v:
    imul edx, eax, PATTERN
    xor edx, ebp
    cmp [es:di], edx
    jne .bad
    add di, 4
    inc eax
    loop .v
    movzx eax, word [dap + 2]
    add ebx, eax
    pop cx
    jmp .chunk
.ret:
    ret
.bad:
    mov ebx, eax
    shr ebx, 7                  ; lba
    and eax, 127                ; dword within the sector
    mov si, msg_mismatch
    test ebp, ebp
    jz fail
    mov si, msg_wmismatch
    jmp fail

msg_ok:        db 13, 10, "L2SAN-BOOT OK reads=", 0
msg_ro:        db 13, 10, "L2SAN-BOOT RO reads=", 0
msg_writes:    db " writes=", 0
msg_mismatch:  db "read-mismatch dword=", 0
msg_wmismatch: db "readback-mismatch dword=", 0
msg_mixed:     db "some-writes-refused writes=", 0

    times (1 + STAGE2_SECTORS) * 512 - ($ - $$) db 0

absolute 0x0600
vars:
drive:   resb 1
ro:      resb 1
nreads:  resd 1
nwrites: resd 1
dap:     resb 16
vars_len equ $ - vars
