"""A classic BPF interpreter for the opcodes :mod:`smtptop.bpf` emits, so that its kernel
filter and fanout program can be run on frames without a kernel: by the tests, and by the
throughput benchmark to check that tcpdump's expression keeps the same packets."""

from __future__ import annotations

from smtptop import bpf

WORD = 0xFFFFFFFF


def run(
    program: list[bpf.Instruction], packet: bytes, *, network: int = 0, protocol: int = 0
) -> int:
    """Execute a classic BPF program as the kernel does (out-of-bounds loads drop).

    ``network`` is where the kernel found the network header and ``protocol`` the packet's
    protocol (the ethertype, after any VLAN tag the kernel took off): what the fanout
    program's loads at :data:`bpf.NETWORK` and :data:`bpf.PROTOCOL` read."""
    a = x = pc = 0

    def load(at: int, size: int) -> int | None:
        if at == bpf.PROTOCOL:
            return protocol
        if at >= bpf.NETWORK:
            at = network + at - bpf.NETWORK
        if at + size > len(packet):
            return None
        return int.from_bytes(packet[at : at + size], "big")

    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code in (bpf.LD_ABS, bpf.LDH_ABS, bpf.LDH_IND, bpf.LDB_ABS):
            size = {bpf.LD_ABS: 4, bpf.LDB_ABS: 1}.get(code, 2)
            value = load((k + x) & WORD if code == bpf.LDH_IND else k, size)
            if value is None:
                return 0
            a = value
        elif code == bpf.LDX_MSH:
            value = load(k, 1)
            if value is None:
                return 0
            x = 4 * (value & 0x0F)
        elif code == bpf.AND:
            a &= k
        elif code == bpf.RSH:
            a >>= k
        elif code == bpf.XOR_X:
            a ^= x
        elif code == bpf.TAX:
            x = a
        elif code == bpf.JEQ:
            pc += jt if a == k else jf
        elif code == bpf.JSET:
            pc += jt if a & k else jf
        elif code == bpf.JA:
            pc += k
        elif code == bpf.RET:
            return k
        elif code == bpf.RET_A:
            return a
        else:
            raise AssertionError(f"unknown opcode {code:#x}")
