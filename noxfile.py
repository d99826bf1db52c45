"""nox sessions: `nox -s lab` runs everything; `nox -s tests` is the test suite.

Arguments after `--` go to the lab command, e.g. `nox -s boot -- uname -a`;
`-- --container` runs every command of a session in the toolchain image.
"""

from __future__ import annotations

import nox

# Debian 12's packaged nox: the README's install line on a stock system.
nox.needs_version = ">=2022.11.21"
nox.options.sessions = ["lab"]
nox.options.reuse_existing_virtualenvs = True


def _lab(session: nox.Session, *args: str) -> None:
    session.install("-e", ".")
    session.run("python", "-m", "lab", *args, *session.posargs, external=True)


@nox.session
def lab(session: nox.Session) -> None:
    """Everything: doctor, source, kernels, BPF, boot both levels, tests, results/."""
    _lab(session, "run")


@nox.session
def doctor(session: nox.Session) -> None:
    """Check every tool; install what is missing on Debian/Ubuntu."""
    _lab(session, "doctor")


@nox.session
def kernel(session: nox.Session) -> None:
    """Prepare the pinned source and build the kernels (`-- --check-reproducible`)."""
    _lab(session, "kernel")


@nox.session
def boot(session: nox.Session) -> None:
    """Boot level 1 and open a shell, or run `-- CMD` in it."""
    _lab(session, "boot")


@nox.session
def tests(session: nox.Session) -> None:
    """The project's test suite: unit tests of lab/, then the in-VM functional tests."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "tests/unit", "--junitxml=results/unit-junit.xml")
    # One rerun at most, and only on proof of an emulator fault (README): CI reports flakiness, it does not absorb it.
    session.run("python", "-m", "lab", "run", "--vm-retries", "1", *session.posargs)


@nox.session
def unit(session: nox.Session) -> None:
    """The unit tests of lab/ alone: seconds, no VM (CI's fast job)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "tests/unit", "--junitxml=results/unit-junit.xml", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Latency benchmark, all modes side by side in one run; bench.json, table, plots."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "lab", "bench", *session.posargs, external=True)


@nox.session
def bisect(session: nox.Session) -> None:
    """`-- --good REF --bad REF [--tree PATH] (--test NAME | --bench METRIC --threshold X)`: first bad commit."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "lab", "bisect", *session.posargs, external=True)


@nox.session
def stress(session: nox.Session) -> None:
    """Stress suite: hostile guest, VM churn, vCPU hotplug, policy reload, VMM killed while boosted; end state."""
    _lab(session, "stress")


@nox.session
def emulator_control(session: nox.Session) -> None:
    """The nested workload on the unpatched kernel and with each policy: how often each emulator sign occurs."""
    _lab(session, "emulator-control")


@nox.session
def image(session: nox.Session) -> None:
    """Build the toolchain image (images/) with docker or podman; `-- --method containerfile|mmdebstrap`."""
    _lab(session, "image")


@nox.session(name="workflow_steps")
def workflow_steps(session: nox.Session) -> None:
    """One job of .github/workflows/lab.yml run here step by step: `-- --job checks` (see --help)."""
    session.install("-e", ".[workflow]")
    session.run("python", "-m", "lab", "workflow-steps", *session.posargs, external=True)


@nox.session(name="source_check")
def source_check(session: nox.Session) -> None:
    """Fetch the pinned kernel source from every location kernel/source.lock names and verify each."""
    _lab(session, "source-check")


@nox.session
def drills(session: nox.Session) -> None:
    """Slow: bad input (checksum, patch, config, tool, hung VM, panicking guest) gives a clear error."""
    session.install("-e", ".[test]")
    session.run("pytest", "-v", "tests/vm/test_drills.py", "--junitxml=results/drills-junit.xml", *session.posargs)


@nox.session
def mutants(session: nox.Session) -> None:
    """Slow: each planted defect of tests/mutants/ in a copy of the lab, the real lab run on it; a kill table.
    `-- --only NAME` runs one."""
    _lab(session, "mutants")


@nox.session(name="bisect_selftest")
def bisect_selftest(session: nox.Session) -> None:
    """Slow: bisect finds a planted functional and a planted performance regression (real builds and boots)."""
    session.install("-e", ".[test,bench]")
    session.run("pytest", "-v", "-s", "tests/vm/test_bisect_planted.py", "--junitxml=results/bisect-selftest-junit.xml", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy, actionlint on the workflow, and checkpatch on the kernel patches."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", "lab", "tests", "noxfile.py")
    session.run("ruff", "format", "--check", "lab", "tests", "noxfile.py")
    session.run("mypy")
    session.run("actionlint", ".github/workflows/lab.yml")
    session.run("python", "-m", "lab", "checkpatch", external=True)
