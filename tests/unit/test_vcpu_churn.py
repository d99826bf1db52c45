from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest

from lab.invm import boosted_teardown, pvsched_switch, tiny_vmm, vcpu_churn


@dataclass
class FakeVm:
    pid: int
    tids: list[int]
    killed: bool = False

    @property
    def output(self) -> str:
        return "TINY-VMM running " + " ".join(map(str, self.tids)) + "\n"

    def wait_for(self, marker: str, timeout: float) -> bool:
        return marker in self.output

    def stop(self, sig: int, grace: float) -> int:
        self.killed = True
        return -sig


@dataclass
class FakeHost:
    """KVM's list and the threads' policies as a kernel would show them."""

    vcpus: int
    map_size: int | None = None  # a policy that stops boosting after this many threads
    leak_rows: bool = False
    vms: list[FakeVm] = field(default_factory=list)

    def start(self, argv: list[str], label: str) -> FakeVm:
        base = 1000 * (len(self.vms) + 1)
        vm = FakeVm(base, [base + i + 1 for i in range(self.vcpus)])
        self.vms.append(vm)
        return vm

    def rows(self, pid: int) -> list[dict[str, str]]:
        vm = next(v for v in self.vms if v.pid == pid)
        return [] if vm.killed and not self.leak_rows else [{"vm_pid": str(pid)}] * self.vcpus

    def policy(self, tid: int) -> int:
        seen = [t for vm in self.vms for t in vm.tids]
        return 0 if self.map_size is not None and seen.index(tid) >= self.map_size else 1


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    fake = FakeHost(vcpus=4)
    monkeypatch.setattr(vcpu_churn, "rows_of", fake.rows)
    monkeypatch.setattr(vcpu_churn, "thread_policy", fake.policy)
    for name in ("REGISTER_WAIT_S", "BOOST_WAIT_S", "DESTROY_WAIT_S"):
        monkeypatch.setattr(vcpu_churn, name, 0.2)
    monkeypatch.setattr(vcpu_churn, "POLL_S", 0.01)
    return fake


def test_churn_passes_when_the_last_vm_is_boosted_and_every_vm_leaves_kvm(host: FakeHost) -> None:
    status, why = vcpu_churn._churn(host, vms=3, vcpus=4)  # type: ignore[arg-type]
    assert status == "passed", why
    assert all(vm.killed for vm in host.vms)


def test_a_policy_that_stops_boosting_after_its_map_fills_fails(host: FakeHost) -> None:
    host.map_size = 8  # 12 threads: the third VM's are never boosted
    status, why = vcpu_churn._churn(host, vms=3, vcpus=4)  # type: ignore[arg-type]
    assert status == "failed"
    assert "4 of the last VM's 4 were not boosted" in why


def test_a_killed_vm_left_in_kvm_fails(host: FakeHost) -> None:
    host.leak_rows = True
    status, why = vcpu_churn._churn(host, vms=3, vcpus=4)  # type: ignore[arg-type]
    assert status == "failed" and "VM 0 killed" in why


def test_tiny_vm_registers_its_own_area_through_the_msr() -> None:
    regs = struct.unpack("<18Q", tiny_vmm.regs_for(0x2080))
    assert regs[0] == 0x2080 | 1 and regs[2] == 0x4B564DF0 and regs[3] == 0  # edx:eax -> MSR ecx
    assert regs[16] == tiny_vmm.CODE_GPA and regs[17] & 0x2
    state = struct.unpack("<IIIIiii", tiny_vmm.guest_state())
    assert state[0] == 1 and state[4:6] == (1, 50)  # ABI version, SCHED_FIFO 50
    sregs = tiny_vmm.real_mode_at_zero(b"\xff" * tiny_vmm.SREGS_SIZE)
    assert sregs[:8] == bytes(8) and sregs[12:14] == bytes(2) and sregs[8:12] == b"\xff" * 4  # cs base/selector, limit kept
    assert tiny_vmm.MAX_VCPUS * tiny_vmm.AREA_SIZE + tiny_vmm.AREAS_GPA <= tiny_vmm.MEM_SIZE


def test_tiny_vmm_refuses_a_vcpu_count_its_memory_cannot_hold() -> None:
    assert tiny_vmm.main(["0"]) == 1
    assert tiny_vmm.main(["x"]) == 2


@dataclass
class SpinningHost(FakeHost):
    """Tiny VMs whose vCPUs go boosted, throttled, boosted... at each reading of KVM's list."""

    throttles: int = 1
    readings: int = 0

    def rows(self, pid: int) -> list[dict[str, str]]:
        vm = next(v for v in self.vms if v.pid == pid)
        if vm.killed and not self.leak_rows:
            return []
        self.readings += 1
        state = ("boosted", "throttled")[self.readings % 2]
        return [{"vm_pid": str(pid), "state": state, "throttles": str(self.throttles)}] * self.vcpus


@pytest.fixture
def spinning(monkeypatch: pytest.MonkeyPatch) -> SpinningHost:
    fake = SpinningHost(vcpus=boosted_teardown.VCPUS)
    monkeypatch.setattr(boosted_teardown, "rows_of", fake.rows)
    monkeypatch.setattr(vcpu_churn, "POLL_S", 0.01)
    monkeypatch.setattr(boosted_teardown, "STATES_WAIT_S", 0.2)
    monkeypatch.setattr(boosted_teardown, "DESTROY_WAIT_S", 0.2)
    return fake


def test_teardown_kills_vms_caught_boosted_and_throttled(spinning: SpinningHost) -> None:
    status, why = boosted_teardown._rounds(spinning, 4)  # type: ignore[arg-type]
    assert status == "passed", why
    assert "boosted+boosted" in why and "throttled+throttled" in why
    assert all(vm.killed for vm in spinning.vms)


def test_teardown_of_vcpus_never_throttled_tests_nothing_and_fails(spinning: SpinningHost) -> None:
    spinning.throttles = 0  # a cap that does not bind: no throttle to tear down
    status, why = boosted_teardown._rounds(spinning, 4)  # type: ignore[arg-type]
    assert status == "failed" and "no vCPU boosted after a throttle" in why


def test_teardown_that_leaves_vcpus_registered_fails(spinning: SpinningHost) -> None:
    spinning.leak_rows = True
    status, why = boosted_teardown._rounds(spinning, 4)  # type: ignore[arg-type]
    assert status == "failed" and "still registered" in why


@dataclass
class OneVm:
    """A tiny VM whose vCPUs registered (KVM lists them) or were refused (they said so)."""

    listed: int
    refused: int
    pid: int = 4242
    rc: int | None = None

    @property
    def output(self) -> str:
        return "TINY-VMM running 1 2\n" + "".join(f"TINY-VMM refused {i}\n" for i in range(self.refused))

    def poll(self) -> int | None:
        return self.rc

    def stop(self, sig: int, grace: float) -> int:
        return -sig


@pytest.mark.parametrize(
    ("listed", "refused", "rc", "outcome"),
    [(2, 0, None, "registered"), (0, 2, None, "refused"), (1, 1, None, "1 vCPUs listed by KVM, 1 refused"),
     (0, 0, 1, "exited 1")],
)  # fmt: skip
def test_a_tiny_vm_registered_refused_or_neither(
    monkeypatch: pytest.MonkeyPatch, listed: int, refused: int, rc: int | None, outcome: str
) -> None:
    vm = OneVm(listed, refused, rc=rc)
    monkeypatch.setattr(pvsched_switch, "rows_of", lambda pid: [{}] * vm.listed)
    monkeypatch.setattr(pvsched_switch, "WAIT_S", 0.05)
    monkeypatch.setattr(vcpu_churn, "POLL_S", 0.01)

    class Starts:
        def start(self, argv: list[str], label: str) -> OneVm:
            return vm

    assert outcome in pvsched_switch.tiny_vm_outcome(Starts(), "vm")  # type: ignore[arg-type]


def test_the_switch_checks_fail_when_a_vm_that_turned_pvsched_off_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pvsched_switch, "capability", lambda: 1)
    monkeypatch.setattr(pvsched_switch, "tiny_vm_outcome", lambda runner, label, *args: "registered")
    ok, why = pvsched_switch.per_vm(None)  # type: ignore[arg-type]
    assert not ok and "one that turned it off: registered" in why
