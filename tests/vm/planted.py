"""A small series on top of the lab's patched tree with two planted regressions.

    series head (good) -> harmless -> FUNCTIONAL -> harmless -> PERFORMANCE -> harmless (bad)

FUNCTIONAL: bpf_pvsched_boost() stops queueing the work that applies a boost,
so pvsched_boost_sets_vcpu_thread_fifo fails.  PERFORMANCE: KVM waits 2 ms
after every halt that really blocked, so an idle guest's wake-up latency
(bench idle.guest.avg_us) grows by milliseconds; it changes no test verdict
the functional bisect needs.  Dates and identity are fixed, so the commit ids
(and the lab's cached kernels for them) are the same on every run.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

ENV = {
    "GIT_AUTHOR_NAME": "planted",
    "GIT_AUTHOR_EMAIL": "planted@pvsched-lab",
    "GIT_COMMITTER_NAME": "planted",
    "GIT_COMMITTER_EMAIL": "planted@pvsched-lab",
    "GIT_AUTHOR_DATE": "2025-02-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2025-02-01T00:00:00Z",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}


@dataclass(frozen=True)
class Planted:
    repo: Path
    good: str
    bad: str
    functional: str
    performance: str


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=ENV).stdout.strip()


def _edit(repo: Path, rel: str, old: str, new: str) -> None:
    path = repo / rel
    text = path.read_text()
    if text.count(old) != 1:
        raise RuntimeError(f"planting: {old!r} is not unique in {rel}")
    path.write_text(text.replace(old, new))


def _commit(repo: Path, message: str) -> str:
    _git(repo, "commit", "-q", "-a", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def _harmless(repo: Path, n: int) -> str:
    doc = repo / "Documentation/virt/kvm/api.rst"
    doc.write_text(doc.read_text() + f"\n.. planted: harmless {n}\n")
    return _commit(repo, f"planted: harmless documentation change {n}")


def plant(lab_tree: Path, head: str, repo: Path) -> Planted:
    """Clone `lab_tree` at `head` into `repo` (shared objects) and add the series."""
    if repo.exists():
        subprocess.run(["rm", "-rf", str(repo)], check=True)
    subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", str(lab_tree), str(repo)], check=True, env=ENV)
    _git(repo, "checkout", "-q", "--detach", head)
    _harmless(repo, 1)
    _edit(
        repo,
        "arch/x86/kvm/pvsched.c",
        "\tWRITE_ONCE(pv->want_policy, policy);\n\tirq_work_queue(&pv->apply_work);\n",
        "\tWRITE_ONCE(pv->want_policy, policy);\n",
    )
    functional = _commit(repo, "planted: KVM: pvsched: boost requests are never applied")
    _harmless(repo, 2)
    _edit(repo, "virt/kvm/kvm_main.c", "#include <linux/kvm_host.h>\n", "#include <linux/kvm_host.h>\n#include <linux/delay.h>\n")
    _edit(
        repo,
        "virt/kvm/kvm_main.c",
        "\twaited = kvm_vcpu_block(vcpu);\n",
        "\twaited = kvm_vcpu_block(vcpu);\n\tif (waited)\n\t\tmdelay(2);\n",
    )
    performance = _commit(repo, "planted: KVM: wait 2 ms after every blocking halt")
    bad = _harmless(repo, 3)
    return Planted(repo, head, bad, functional, performance)
