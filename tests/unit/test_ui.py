from __future__ import annotations

import io

from rich.console import Console

from lab import ui

# What make printed when the guest module did not compile (it crashed the
# lab's error report once: rich took "[/root/...]" for a closing tag).
MAKE_ERROR = "make[2]: *** [/root/.cache/src/scripts/Makefile.build:234: /root/.cache/guest/pvsched_guest.o] Error 1"


def _capture(monkeypatch) -> io.StringIO:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    monkeypatch.setattr(ui, "console", Console(file=out, width=400, highlight=False))
    return out


def test_tool_output_in_messages_is_printed_verbatim(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = _capture(monkeypatch)
    ui.info(f"step failed: {MAKE_ERROR}")
    ui.failure("FAILED", MAKE_ERROR)
    with ui.activity("build [/x]") as progress:
        progress(MAKE_ERROR)
    text = out.getvalue()
    assert text.count("[/root/.cache/src/scripts/Makefile.build:234: /root/.cache/guest/pvsched_guest.o]") == 2
    assert "build [/x] ..." in text and "build [/x]: done in" in text
