"""A member's offset in one of the running kernel's structures, read from its
BTF (/sys/kernel/btf/vmlinux, the format of the kernel's
Documentation/bpf/btf.rst): for a probe that follows a pointer no
tracepoint exposes (lab.invm.shutdown_trace). Stdlib only, like the rest of
lab.invm: level 1 has no pahole, and bpftool's dump of every type is tens
of megabytes to read one number.
"""

from __future__ import annotations

import struct
from pathlib import Path

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F
KIND_STRUCT = 4
# What follows each type's 12-byte header, by kind: (fixed bytes, bytes per vlen entry).
_TRAILER = {
    1: (4, 0),  # INT
    2: (0, 0),  # PTR
    3: (12, 0),  # ARRAY
    4: (0, 12),  # STRUCT
    5: (0, 12),  # UNION
    6: (0, 8),  # ENUM
    7: (0, 0),  # FWD
    8: (0, 0),  # TYPEDEF
    9: (0, 0),  # VOLATILE
    10: (0, 0),  # CONST
    11: (0, 0),  # RESTRICT
    12: (0, 0),  # FUNC
    13: (0, 8),  # FUNC_PROTO
    14: (4, 0),  # VAR
    15: (0, 12),  # DATASEC
    16: (0, 0),  # FLOAT
    17: (4, 0),  # DECL_TAG
    18: (0, 0),  # TYPE_TAG
    19: (0, 12),  # ENUM64
}


def member_offset(blob: bytes, struct_name: str, member: str) -> int | None:
    """The byte offset of `member` in `struct struct_name`; None if BTF has no such struct or member."""
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
    if magic != BTF_MAGIC:
        raise ValueError(f"not BTF (magic {magic:#x})")
    type_off, type_len, str_off, _str_len = struct.unpack_from("<IIII", blob, 8)
    types, strings = hdr_len + type_off, hdr_len + str_off

    def named(offset: int, name: bytes) -> bool:
        return blob[strings + offset : strings + offset + len(name) + 1] == name + b"\0"

    wanted_struct, wanted_member = struct_name.encode(), member.encode()
    pos, end = types, types + type_len
    while pos < end:
        name_off, info, _size = struct.unpack_from("<III", blob, pos)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        pos += 12
        if kind not in _TRAILER:
            raise ValueError(f"BTF kind {kind} unknown at byte {pos - 12}")
        if kind == KIND_STRUCT and named(name_off, wanted_struct):
            for i in range(vlen):
                m_name, _type, offset = struct.unpack_from("<III", blob, pos + 12 * i)
                if named(m_name, wanted_member):
                    # With kflag set the low 24 bits are the bit offset (bitfield size above).
                    return int(offset & 0xFFFFFF if kflag else offset) // 8
            return None
        fixed, per_entry = _TRAILER[kind]
        pos += fixed + per_entry * vlen
    return None


def running_member_offset(struct_name: str, member: str, btf: Path = VMLINUX_BTF) -> int | None:
    return member_offset(btf.read_bytes(), struct_name, member)
