from __future__ import annotations

import lzma
import struct
from pathlib import Path

import pytest

from lab import build, bzimage
from lab.errors import LabError


def fake_bzimage(kernel: bytes, setup_sects: int = 1) -> bytes:
    """Setup sectors with a boot header, then the protected-mode part with an
    xz payload and kbuild's 4-byte size trailer, as arch/x86/boot lays it out."""
    head = bytearray(512 * (setup_sects + 1))
    head[0x1F1] = setup_sects
    head[0x202:0x206] = b"HdrS"
    xz = lzma.compress(kernel, format=lzma.FORMAT_XZ)
    struct.pack_into("<II", head, 0x248, 16, len(xz) + 4)
    return bytes(head) + bytes(16) + xz + struct.pack("<I", len(kernel))


def test_the_payload_is_the_kernel_the_bzimage_carries() -> None:
    assert bzimage.payload(fake_bzimage(b"\x7fELF new kernel" * 100)) == b"\x7fELF new kernel" * 100


def test_a_bzimage_carrying_an_older_kernel_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "bzImage").write_bytes(fake_bzimage(b"old kernel" * 50))
    (tmp_path / "vmlinux.bin").write_bytes(b"new kernel" * 50)
    with pytest.raises(LabError, match="carries another kernel"):
        bzimage.verify(tmp_path / "bzImage", tmp_path / "vmlinux.bin")
    (tmp_path / "vmlinux.bin").write_bytes(b"old kernel" * 50)
    bzimage.verify(tmp_path / "bzImage", tmp_path / "vmlinux.bin")


def test_what_is_not_an_xz_bzimage_is_said_plainly(tmp_path: Path) -> None:
    (tmp_path / "bzImage").write_bytes(bytes(4096))
    (tmp_path / "vmlinux.bin").write_bytes(b"k")
    with pytest.raises(LabError, match="no x86 boot setup header"):
        bzimage.verify(tmp_path / "bzImage", tmp_path / "vmlinux.bin")


def test_ccache_never_runs_in_depend_mode_nor_in_its_old_directory(tmp_path: Path) -> None:
    """Depend mode cached piggy.o (an .incbin of the compressed kernel) and its
    entries answer direct-mode lookups: neither the mode nor its directory."""
    builder = build.KernelBuilder.__new__(build.KernelBuilder)
    builder.cache = tmp_path

    class NoLock:
        class build:  # noqa: N801 - the shape of Lock.build
            @staticmethod
            def env() -> dict[str, str]:
                return {}

    builder.lock = NoLock()  # type: ignore[assignment]
    env = builder.env()
    assert "CCACHE_DEPEND" not in env
    assert env["CCACHE_DIR"] == str(tmp_path / "ccache-direct")
