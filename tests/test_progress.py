"""Progress off a terminal: a line every few seconds with done/total, rate and ETA; none with
``--quiet`` or an interval of 0; whole units on a terminal bar (no "1.00/400")."""
from dynamics.core import progress


def test_lines_report_count_rate_and_eta(capsys):
    bar = progress.Lines(400, "huang2024 gd", every=0.0)
    with bar:
        bar.update(100)
    line = capsys.readouterr().err.strip().splitlines()
    assert len(line) == 1 and line[0].startswith("huang2024 gd: 100/400 steps (25.0%), ") and "ETA" in line[0]


def test_interval_from_setting_and_environment(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "0")
    assert isinstance(progress.progress(10, "x"), progress.Silent)  # stderr is captured: not a terminal
    monkeypatch.setenv(progress.ENV, "3")
    assert progress.interval() == 3.0 and isinstance(progress.progress(10, "x"), progress.Lines)
    progress.set_interval(0.5)
    try:
        assert progress.interval() == 0.5
    finally:
        progress.set_interval(None)
    assert isinstance(progress.progress(10, "x", show=False), progress.Silent)
