"""The BTF reader behind the shutdown-state probe (lab.invm.btf_offsets), on
blobs laid out as the kernel's Documentation/bpf/btf.rst describes."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lab.invm import btf_offsets


def btf_blob(types: list[tuple[str, int, int, list[tuple[str, int]], bytes]]) -> bytes:
    """types: (name, kind, kflag, struct members as (name, bit offset), other trailer bytes)."""
    strings = bytearray(b"\0")

    def name_off(name: str) -> int:
        strings.extend(name.encode() + b"\0")
        return len(strings) - len(name) - 1

    body = bytearray()
    for name, kind, kflag, members, trailer in types:
        vlen = len(members) if members else len(trailer) // 8 if kind == 6 else 0
        body += struct.pack("<III", name_off(name), (kflag << 31) | (kind << 24) | vlen, 8)
        for member, bits in members:
            body += struct.pack("<III", name_off(member), 1, bits)
        body += trailer
    header = struct.pack("<HBBI", btf_offsets.BTF_MAGIC, 1, 0, 24) + struct.pack("<IIII", 0, len(body), len(body), len(strings))
    return header + bytes(body) + bytes(strings)


BLOB = btf_blob([
    ("int", 1, 0, [], b"\x20\x00\x00\x01"),  # INT: its 4-byte encoding
    ("color", 6, 0, [], struct.pack("<Ii", 0, 1) * 2),  # ENUM of two: 8 bytes each, skipped over
    ("kvm_vcpu", 4, 0, [("vcpu_id", 64)], b""),
    ("vcpu_svm", 4, 0, [("vcpu", 0), ("vmcb", 6136 * 8)], b""),
    ("packed", 4, 1, [("bits", (3 << 24) | 40)], b""),  # kflag: bitfield size above the bit offset
])  # fmt: skip


def test_a_members_offset_in_bytes_past_other_kinds_of_types() -> None:
    assert btf_offsets.member_offset(BLOB, "vcpu_svm", "vmcb") == 6136  # as pahole says of 6.12's vcpu_svm
    assert btf_offsets.member_offset(BLOB, "vcpu_svm", "vcpu") == 0
    assert btf_offsets.member_offset(BLOB, "kvm_vcpu", "vcpu_id") == 8
    assert btf_offsets.member_offset(BLOB, "packed", "bits") == 5


def test_no_such_struct_or_member_and_not_btf() -> None:
    assert btf_offsets.member_offset(BLOB, "vcpu_vmx", "vmcb") is None
    assert btf_offsets.member_offset(BLOB, "vcpu_svm", "vmcs") is None
    assert btf_offsets.member_offset(BLOB, "vcpu", "vmcb") is None  # a member's name is not a struct's
    with pytest.raises(ValueError, match="not BTF"):
        btf_offsets.member_offset(b"\x7fELF" + bytes(20), "vcpu_svm", "vmcb")


def test_the_running_kernels_btf_is_read_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "vmlinux").write_bytes(BLOB)
    assert btf_offsets.running_member_offset("vcpu_svm", "vmcb", tmp_path / "vmlinux") == 6136
