"""What kernel a bzImage really carries.

An x86 bzImage holds the kernel (arch/x86/boot/compressed/vmlinux.bin)
compressed, behind the setup code; boot protocol 2.08+ gives its place in
the setup header (payload_offset, payload_length, from the start of the
protected-mode code). The lab compares it with the vmlinux.bin of the same
build: ccache in depend mode once served a cached piggy.o, whose .incbin
of the compressed kernel it does not track, and bzImages carried the kernel
of an earlier build (the vmlinux, its BTF and the guest module were new).
"""

from __future__ import annotations

import hashlib
import lzma
import struct
from pathlib import Path

from lab.errors import LabError

SETUP_SECTS, HEADER_MAGIC, PAYLOAD = 0x1F1, 0x202, 0x248


def payload(bzimage: bytes) -> bytes:
    """The decompressed kernel of an xz-compressed bzImage."""
    if bzimage[HEADER_MAGIC : HEADER_MAGIC + 4] != b"HdrS":
        raise ValueError("no x86 boot setup header (HdrS)")
    setup_sects = bzimage[SETUP_SECTS] or 4
    offset, length = struct.unpack_from("<II", bzimage, PAYLOAD)
    start = (setup_sects + 1) * 512 + offset
    data = bzimage[start : start + length]
    if not data.startswith(b"\xfd7zXZ\x00"):
        raise ValueError(f"payload at {start:#x} is not xz (the lab builds KERNEL_XZ): {data[:6]!r}")
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)


def verify(bzimage: Path, vmlinux_bin: Path) -> None:
    """LabError unless `bzimage` carries exactly `vmlinux_bin`."""
    try:
        carried = payload(bzimage.read_bytes())
    except (ValueError, lzma.LZMAError) as exc:
        raise LabError(f"cannot read the kernel in {bzimage}: {exc}", fix="check CONFIG_KERNEL_XZ in the merged config") from exc
    built = vmlinux_bin.read_bytes()
    if carried != built:
        raise LabError(
            f"{bzimage} carries another kernel than {vmlinux_bin} of the same build "
            f"(sha256 {hashlib.sha256(carried).hexdigest()[:16]} vs {hashlib.sha256(built).hexdigest()[:16]})",
            fix=f"remove {vmlinux_bin.parent / 'piggy.o'} and build again; report it if it persists",
        )
