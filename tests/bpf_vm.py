"""A classic BPF interpreter for the opcodes :mod:`smtptop.bpf` emits, so that its kernel
filter can be run on frames without a kernel: by the tests, and by the throughput benchmark
to check that tcpdump's expression keeps the same packets."""

from __future__ import annotations

from smtptop import bpf


def run(program: list[bpf.Instruction], packet: bytes) -> int:
    """Execute a classic BPF program as the kernel does (out-of-bounds loads drop)."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == bpf.LDH_ABS or code == bpf.LDH_IND:
            at = k + (x if code == bpf.LDH_IND else 0)
            if at + 2 > len(packet):
                return 0
            a = int.from_bytes(packet[at : at + 2], "big")
        elif code == bpf.LDB_ABS:
            if k >= len(packet):
                return 0
            a = packet[k]
        elif code == bpf.LDX_MSH:
            if k >= len(packet):
                return 0
            x = 4 * (packet[k] & 0x0F)
        elif code == bpf.AND:
            a &= k
        elif code == bpf.JEQ:
            pc += jt if a == k else jf
        elif code == bpf.JSET:
            pc += jt if a & k else jf
        elif code == bpf.JA:
            pc += k
        elif code == bpf.RET:
            return k
        else:
            raise AssertionError(f"unknown opcode {code:#x}")
