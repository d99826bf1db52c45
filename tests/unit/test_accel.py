from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lab.accel import Probe, choose, kvm_worth_trying, probe_timeout


def test_kvm_preferred_when_it_boots() -> None:
    assert choose([Probe("kvm", True, 3.0), Probe("tcg", True, 20.0)]) == "kvm"


def test_hanging_kvm_falls_back_to_tcg() -> None:
    # What these machines do: /dev/kvm exists but an ordinary kernel hangs on it.
    assert choose([Probe("kvm", False, 60.0, "timed out after 60 s"), Probe("tcg", True, 20.0)]) == "tcg"


def test_nothing_boots() -> None:
    assert choose([Probe("kvm", False, 1.0, "x"), Probe("tcg", False, 1.0, "y")]) is None
    assert choose([]) is None


def test_dev_kvm_existing_is_not_enough_to_decide() -> None:
    assert kvm_worth_trying(True, True) == (True, "")
    assert kvm_worth_trying(False, False)[0] is False
    assert "not readable" in kvm_worth_trying(True, False)[1]


def test_probe_timeouts() -> None:
    assert probe_timeout("kvm", 60, 300) == 60
    assert probe_timeout("tcg", 60, 300) == 300


def test_vng_command_follows_the_chosen_accelerator(tmp_path: Path) -> None:
    from lab.vm import Level1Settings, vng_command

    kernel = tmp_path / "bzImage"
    tcg = vng_command("vng", kernel, "tcg", Level1Settings(), "true", [tmp_path])
    kvm = vng_command("vng", kernel, "kvm", Level1Settings(), "true", [])
    assert "--disable-kvm" in tcg and "--disable-kvm" not in kvm
    assert "--qemu-opts=-cpu max,-la57" in tcg  # nested paging for level 2, whatever vng's default; no LA57
    # KVM on TCG must tolerate the TSC refinement; real KVM keeps KVM's default.
    assert "kvm.tsc_tolerance_ppm=10000" in tcg and not any("tsc_tolerance" in a for a in kvm)
    assert tcg[-2:] == ["--exec", "true"] and ["--rwdir", f"{tmp_path}={tmp_path}"] == tcg[tcg.index("--rwdir") : tcg.index("--rwdir") + 2]
    assert "--exec" not in vng_command("vng", kernel, "kvm", Level1Settings(), None, [])  # interactive shell


def test_level1_cpu_model_is_an_option(tmp_path: Path) -> None:
    from lab.cli import _options, parser
    from lab.vm import vng_command

    args = parser().parse_args(["run", "--level1-cpu", "max"])
    opts = _options(args)
    tcg = vng_command("vng", tmp_path / "bzImage", "tcg", opts.level1, "true", [])
    assert "--qemu-opts=-cpu max" in tcg and "--qemu-opts=-cpu max,-la57" not in tcg
    kvm = vng_command("vng", tmp_path / "bzImage", "kvm", opts.level1, "true", [])
    assert not any(a.startswith("--qemu-opts=-cpu") for a in kvm)  # real KVM: vng's own host CPU


def test_level1_append_reaches_the_kernel_command_line(tmp_path: Path) -> None:
    from lab.cli import _options, parser
    from lab.vm import vng_command

    opts = _options(parser().parse_args(["run", "--level1-append", "idle=poll"]))
    cmd = vng_command("vng", tmp_path / "bzImage", "kvm", opts.level1, "true", [])
    assert cmd[cmd.index("idle=poll") - 1 : cmd.index("idle=poll") + 1] == ["--append", "idle=poll"]


def test_vm_retries_default_and_option() -> None:
    from lab.cli import _options, parser

    assert _options(parser().parse_args(["run"])).vm_retries == 4
    assert _options(parser().parse_args(["run", "--vm-retries", "0"])).vm_retries == 0
    assert _options(parser().parse_args(["stress", "--vm-retries", "1"])).vm_retries == 1


class _BootingRunner:
    """A runner whose every level-1 boot prints the probe's mark; `on_run` sees each command."""

    def __init__(self, tmp_path: Path, on_run: Callable[[list[str]], object]) -> None:
        from lab.runtime import NativeRuntime

        self.runtime = NativeRuntime()
        self.log = tmp_path / "x.log"
        self.on_run = on_run

    def which(self, name: str) -> None:
        return None

    def run(self, cmd, label, **_):  # type: ignore[no-untyped-def]
        from lab.runner import Result
        from lab.vm import PROBE_MARK

        self.on_run(list(cmd))
        return Result(list(cmd), 0, f"{PROBE_MARK}\n", 1.0, self.log)


def test_the_probe_boots_without_the_users_level1_append(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lab.vm import Level1, Level1Settings

    seen: list[list[str]] = []
    runner = _BootingRunner(tmp_path, lambda cmd: seen.append(list(cmd)))
    level1 = Level1(tmp_path, runner, tmp_path / "bzImage", "key", Level1Settings(append="panic=0 rootfstype=none"))  # type: ignore[arg-type]
    mode, probes, cached = level1.probe(use_cache=False)
    assert probes[-1].ok and not cached
    assert seen and all("panic=0 rootfstype=none" not in " ".join(cmd) for cmd in seen)


def test_single_threaded_tcg_is_asked_of_qemu_only_when_chosen(tmp_path: Path) -> None:
    from lab.vm import Level1Settings, vng_command

    kernel = tmp_path / "bzImage"
    single = vng_command("vng", kernel, "tcg", Level1Settings(tcg_threads="single"), "true", [])
    assert "--qemu-opts=-accel tcg,thread=single" in single
    assert not any("thread=" in a for a in vng_command("vng", kernel, "tcg", Level1Settings(), "true", []))
    assert not any("thread=" in a for a in vng_command("vng", kernel, "kvm", Level1Settings(tcg_threads="single"), "true", []))


def test_a_tcg_probe_takes_its_turn_like_any_level1(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from contextlib import contextmanager

    from lab import vm

    held: list[str] = []
    during: list[list[str]] = []

    @contextmanager
    def turn(mode: str, label: str, lock: Path = vm.TCG_TURN_LOCK):  # type: ignore[no-untyped-def]
        held.append(mode)
        yield
        held.remove(mode)

    monkeypatch.setattr(vm, "tcg_turn", turn)
    monkeypatch.setattr(vm.accel, "kvm_worth_trying", lambda *_: (False, "no /dev/kvm"))
    runner = _BootingRunner(tmp_path, lambda cmd: during.append(list(held)))
    level1 = vm.Level1(tmp_path, runner, tmp_path / "bzImage", "key", vm.Level1Settings())  # type: ignore[arg-type]
    mode, _, _ = level1.probe(use_cache=False)
    assert mode == "tcg" and during == [["tcg"]]


def test_a_translation_buffer_size_is_asked_of_qemu_only_when_chosen(tmp_path: Path) -> None:
    from lab.vm import Level1Settings, vng_command

    kernel = tmp_path / "bzImage"
    small = vng_command("vng", kernel, "tcg", Level1Settings(tcg_tb_size_mib=64), "true", [])
    assert "--qemu-opts=-accel tcg,tb-size=64" in small
    both = vng_command("vng", kernel, "tcg", Level1Settings(tcg_threads="single", tcg_tb_size_mib=64), "true", [])
    assert "--qemu-opts=-accel tcg,thread=single,tb-size=64" in both
    assert not any("tb-size" in a for a in vng_command("vng", kernel, "tcg", Level1Settings(), "true", []))
    assert not any("tb-size" in a for a in vng_command("vng", kernel, "kvm", Level1Settings(tcg_tb_size_mib=64), "true", []))
