"""A VMM of a few hundred bytes of guest code, for pvsched's lifetimes at
scale: `python -m lab.invm.tiny_vmm VCPUS [halt|spin] [pvsched-off] [pi-held]` makes one VM whose
every vCPU registers a pvsched area saying "an RT task runs here"
(SCHED_FIFO 50) and then halts with interrupts off, so its thread sleeps
in KVM_RUN until the process dies (`halt`), or spins in the guest, so a
boost uses its budget and is throttled (`spin`). Level 1 starts many of
these to create and destroy hundreds of vCPU threads in seconds, and to
destroy VMs in the middle of boosts and throttles, which real guests
cannot do here. `pvsched-off` turns KVM_CAP_PVSCHED off for the VM first.
`pi-held`: each vCPU thread holds a PI futex that a thread at SCHED_FIFO
PI_WAITER_PRIORITY waits for, so it runs PI-boosted to that priority.

Prints `TINY-VMM running TID...` once every vCPU thread is about to enter
the guest, and `TINY-VMM refused VCPU` for a vCPU whose registration
faulted; any other failure is one line on stderr and exit 1.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
import sys
import threading
import time

from lab.invm.vcpu_sampler import thread_priority

KVMIO = 0xAE


def _io(nr: int) -> int:
    return (KVMIO << 8) | nr


def _iow(nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (KVMIO << 8) | nr


def _ior(nr: int, size: int) -> int:
    return (2 << 30) | (size << 16) | (KVMIO << 8) | nr


REGS_SIZE, SREGS_SIZE = 18 * 8, 312  # struct kvm_regs, struct kvm_sregs
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, 32)
KVM_CREATE_IRQCHIP = _io(0x60)
KVM_RUN = _io(0x80)
KVM_SET_REGS = _iow(0x82, REGS_SIZE)
KVM_GET_SREGS = _ior(0x83, SREGS_SIZE)
KVM_SET_SREGS = _iow(0x84, SREGS_SIZE)
KVM_SET_MP_STATE = _iow(0x99, 4)
KVM_ENABLE_CAP = _iow(0xA3, 104)  # struct kvm_enable_cap
KVM_CAP_PVSCHED = 239  # include/uapi/linux/kvm.h of the series
KVM_EXIT_IO, FAULT_PORT = 2, 0x80

# include/uapi/linux/pvsched.h
MSR_KVM_PVSCHED, PVSCHED_MSR_ENABLE, PVSCHED_ABI_VERSION = 0x4B564DF0, 1, 1
AREA_SIZE, SCHED_FIFO, GUEST_RT_PRIORITY = 128, 1, 50

MEM_SIZE = 0x10000
CODE_GPA, FAULT_GPA, AREAS_GPA = 0x1000, 0x1100, 0x2000
# Every exception (a refused registration is a #GP) says so on FAULT_PORT
# and ends in a halt loop: the real-mode IVT at 0 points all 256 vectors here.
FAULT_CODE = bytes([0xE6, FAULT_PORT, 0xF4, 0xEB, 0xFD])
# Real mode, from CODE_GPA: wrmsr (edx:eax to ecx, set by KVM_SET_REGS),
# then hlt and a jump back to it, or a jump to itself.
GUEST_CODE = {"halt": bytes([0x0F, 0x30, 0xF4, 0xEB, 0xFD]), "spin": bytes([0x0F, 0x30, 0xEB, 0xFE])}
MAX_VCPUS = (MEM_SIZE - AREAS_GPA) // AREA_SIZE
SYS_futex, FUTEX_LOCK_PI = 202, 6  # x86_64
PI_WAITER_PRIORITY = 70
PI_BOOST_WAIT_S = 10.0
_SAY = threading.Lock()
_HELD: list[ctypes.c_uint32] = []


def say(line: str) -> None:
    """One whole line on stdout: vCPU threads print while the main one does."""
    with _SAY:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def guest_state() -> bytes:
    """struct pvsched_guest_state: version, seq, cs, flags, policy, rt_priority, nice."""
    return struct.pack("<IIIIiii", PVSCHED_ABI_VERSION, 1, 0, 0, SCHED_FIFO, GUEST_RT_PRIORITY, 0)


def regs_for(area_gpa: int) -> bytes:
    """struct kvm_regs: rax, rbx, rcx, rdx, ..., rip, rflags (bit 1 is always set)."""
    regs = [0] * 18
    regs[0] = area_gpa | PVSCHED_MSR_ENABLE  # rax: low half of the MSR value
    regs[2] = MSR_KVM_PVSCHED  # rcx
    regs[16], regs[17] = CODE_GPA, 0x2
    return struct.pack("<18Q", *regs)


def hold_pi_futex() -> None:
    """The calling thread takes a PI futex that a SCHED_FIFO thread then waits
    for forever: the caller runs PI-boosted to PI_WAITER_PRIORITY from then on."""
    libc = ctypes.CDLL(None, use_errno=True)
    word = ctypes.c_uint32(0)
    _HELD.append(word)  # the futex word lives as long as the process
    if libc.syscall(SYS_futex, ctypes.byref(word), FUTEX_LOCK_PI, 0, None, None, 0) != 0:
        raise OSError(ctypes.get_errno(), "FUTEX_LOCK_PI (owner)")
    owner = threading.get_native_id()

    def waiter() -> None:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PI_WAITER_PRIORITY))
        libc.syscall(SYS_futex, ctypes.byref(word), FUTEX_LOCK_PI, 0, None, None, 0)  # blocks: the owner never unlocks

    threading.Thread(target=waiter, daemon=True).start()
    deadline = time.monotonic() + PI_BOOST_WAIT_S
    while thread_priority(owner) != -1 - PI_WAITER_PRIORITY:
        if time.monotonic() > deadline:
            raise OSError(f"thread {owner} not PI-boosted to {PI_WAITER_PRIORITY} after {PI_BOOST_WAIT_S:.0f} s")
        time.sleep(0.01)


def real_mode_at_zero(sregs: bytes) -> bytes:
    """The reset state's CS (base 0xffff0000) moved to base 0, selector 0."""
    buf = bytearray(sregs)
    struct.pack_into("<Q", buf, 0, 0)  # cs.base
    struct.pack_into("<H", buf, 12, 0)  # cs.selector
    return bytes(buf)


class TinyVm:
    def __init__(self, vcpus: int, mode: str = "halt", pvsched: bool = True, pi_held: bool = False) -> None:
        self.pi_held = pi_held
        if not 1 <= vcpus <= MAX_VCPUS:
            raise ValueError(f"1..{MAX_VCPUS} vCPUs, not {vcpus}")
        if mode not in GUEST_CODE:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(GUEST_CODE)}")
        code = GUEST_CODE[mode]
        self.kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        self.vm = fcntl.ioctl(self.kvm, KVM_CREATE_VM, 0)
        if not pvsched:
            fcntl.ioctl(self.vm, KVM_ENABLE_CAP, struct.pack("<II4Q64x", KVM_CAP_PVSCHED, 0, 0, 0, 0, 0))
        self.mem = mmap.mmap(-1, MEM_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.mem[CODE_GPA : CODE_GPA + len(code)] = code
        self.mem[FAULT_GPA : FAULT_GPA + len(FAULT_CODE)] = FAULT_CODE
        self.mem[0 : 256 * 4] = struct.pack("<HH", FAULT_GPA, 0) * 256
        host_addr = _address_of(self.mem)
        region = struct.pack("<IIQQQ", 0, 0, 0, MEM_SIZE, host_addr)  # slot, flags, gpa, size, userspace address
        fcntl.ioctl(self.vm, KVM_SET_USER_MEMORY_REGION, region)
        # In-kernel LAPIC: a halted vCPU sleeps in KVM, where pvsched's halt hook runs.
        fcntl.ioctl(self.vm, KVM_CREATE_IRQCHIP, 0)
        self.run_size = fcntl.ioctl(self.kvm, KVM_GET_VCPU_MMAP_SIZE, 0)
        self.vcpus = []
        for i in range(vcpus):
            area = AREAS_GPA + i * AREA_SIZE
            self.mem[area : area + len(guest_state())] = guest_state()
            fd = fcntl.ioctl(self.vm, KVM_CREATE_VCPU, i)
            sregs = bytearray(SREGS_SIZE)
            fcntl.ioctl(fd, KVM_GET_SREGS, sregs)
            fcntl.ioctl(fd, KVM_SET_SREGS, real_mode_at_zero(bytes(sregs)))
            fcntl.ioctl(fd, KVM_SET_REGS, regs_for(area))
            fcntl.ioctl(fd, KVM_SET_MP_STATE, struct.pack("<I", 0))  # RUNNABLE: no INIT/SIPI for the APs
            self.vcpus.append(fd)

    def run(self) -> None:
        """Every vCPU in a thread of its own; returns once all are about to run."""
        tids: list[int] = []
        ready = threading.Barrier(len(self.vcpus) + 1)

        def vcpu_thread(index: int, fd: int) -> None:
            tids.append(threading.get_native_id())
            run = mmap.mmap(fd, self.run_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
            if self.pi_held:
                try:
                    hold_pi_futex()
                except OSError as exc:
                    print(f"tiny_vmm: {exc}", file=sys.stderr, flush=True)
                    os._exit(1)
            ready.wait()
            while True:
                fcntl.ioctl(fd, KVM_RUN, 0)
                # The guest halts with interrupts off or spins: it leaves
                # KVM_RUN only to say it faulted (struct kvm_run: exit_reason
                # at 8, io.port at 34). Any other exit this VMM cannot handle.
                reason = struct.unpack_from("<I", run, 8)[0]
                if reason == KVM_EXIT_IO and struct.unpack_from("<H", run, 34)[0] == FAULT_PORT:
                    say(f"TINY-VMM refused {index}")
                    continue
                print(f"tiny_vmm: unexpected exit {reason}", file=sys.stderr, flush=True)
                os._exit(1)

        for index, fd in enumerate(self.vcpus):
            threading.Thread(target=vcpu_thread, args=(index, fd), daemon=True).start()
        ready.wait()
        say("TINY-VMM running " + " ".join(str(t) for t in sorted(tids)))


def _address_of(mem: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(mem))


def main(argv: list[str]) -> int:
    words = [w for w in argv if w not in ("pvsched-off", "pi-held")]
    if not 1 <= len(words) <= 2 or not words[0].isdigit():
        print(f"usage: python -m lab.invm.tiny_vmm VCPUS (1..{MAX_VCPUS}) [{'|'.join(GUEST_CODE)}] [pvsched-off] [pi-held]",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        mode = words[1] if len(words) == 2 else "halt"
        vm = TinyVm(int(words[0]), mode, pvsched="pvsched-off" not in argv, pi_held="pi-held" in argv)
        vm.run()
    except (OSError, ValueError) as exc:
        print(f"tiny_vmm: {exc}", file=sys.stderr, flush=True)
        return 1
    threading.Event().wait()  # until killed: the lab destroys the VM with SIGKILL
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
