from __future__ import annotations

from lab.pipeline import console_tail


def test_console_tail_keeps_the_last_non_blank_lines_indented() -> None:
    output = "\n".join(f"line {i}" for i in range(200)) + "\n\n\n"
    tail = console_tail(output, lines=3).splitlines()
    assert tail == ["    | line 197", "    | line 198", "    | line 199"]


def test_console_tail_of_nothing_says_so() -> None:
    assert "printed nothing" in console_tail("\n \n")
