"""`benchmarks.flames`: a py-spy flame graph as committed text, self time by frame and module."""

from __future__ import annotations

from pathlib import Path

from benchmarks import flames


def _frame(name: str, samples: int, x: int, y: int) -> str:
    return (
        f"<g><title>{name} ({samples:,} samples, {samples / 10:.2f}%)</title>"
        f'<rect x="0%" y="{y}" width="1%" height="15" fill="rgb(0,0,0)" '
        f'fg:x="{x}" fg:w="{samples}"/></g>'
    )


# all (1000) -> handle (a.py:1) 600 -> sign (b.py:9) 400 ; loop (c.py:2) 400 -> handle 100
SVG = "".join(
    [
        _frame("all", 1000, 0, 52),
        _frame("handle (pkg/a.py:1)", 600, 0, 68),
        _frame("sign (pkg/b.py:9)", 400, 0, 84),
        _frame("loop (pkg/c.py:2)", 400, 600, 68),
        _frame("handle (pkg/a.py:1)", 100, 600, 84),
    ]
)


def test_self_time_is_a_frames_samples_less_its_callees() -> None:
    total, own = flames.self_samples(SVG)
    assert total == 1000
    assert own == {
        "handle (pkg/a.py:1)": 200 + 100,  # 600 less sign's 400, and the 100 under loop
        "sign (pkg/b.py:9)": 400,
        "loop (pkg/c.py:2)": 300,
    }


def test_the_summary_ranks_modules_and_frames(tmp_path: Path) -> None:
    svg = tmp_path / "profile-refresh_token.svg"
    svg.write_text(SVG)
    written = flames.write_summary(svg)
    assert written == tmp_path / "profile-refresh_token.txt"
    text = written.read_text()
    assert text.startswith("py-spy profile of the service: refresh_token, 1,000 samples")
    modules = text.split("by module\n")[1].split("\n\n")[0].splitlines()
    assert modules == [" 40.00%  pkg/b.py", " 30.00%  pkg/a.py", " 30.00%  pkg/c.py"]
    assert flames.write_summary(tmp_path / "profile-missing.svg") is None
