"""Progress and messages for people watching a run (rich on a terminal, plain lines in CI)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

# Off a terminal (CI logs, pipes) long lines stay whole: a wrapped path or
# fix cannot be copied.
console = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())


def info(message: str) -> None:
    # Messages carry paths and tool output ("make[2]: ... [/path/x.o]"),
    # which rich would read as markup and fail on.
    console.print(message, markup=False)


def failure(label: str, detail: str) -> None:
    """`label` in red, then `detail` as plain text."""
    console.print(f"[red]{escape(label)}[/] {escape(detail)}")


@contextmanager
def activity(title: str, every: float = 30.0) -> Iterator[Callable[[str], None]]:
    """Show `title` with elapsed time and the latest output line while work runs.

    Yields a callback taking output lines.  Off a terminal, it prints a line
    every `every` seconds so CI logs show the run is alive.
    """
    start = time.monotonic()
    last_print = start
    if console.is_terminal:
        with console.status(title) as status:

            def update(line: str) -> None:
                elapsed = int(time.monotonic() - start)
                status.update(f"{escape(title)} [dim]{elapsed // 60}:{elapsed % 60:02d}[/] {escape(line.strip()[:70])}")

            yield update
    else:
        console.print(f"{title} ...", markup=False)

        def update(line: str) -> None:
            nonlocal last_print
            now = time.monotonic()
            if now - last_print >= every:
                last_print = now
                console.print(f"  {title}: {int(now - start)} s, {line.strip()[:70]}", markup=False)

        yield update
    console.print(f"{title}: done in {time.monotonic() - start:.0f} s", markup=False)
