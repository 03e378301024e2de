"""``cas log`` and the UI show a page at a time (issue 21, item 13): a person reads pages."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import cas
from cas.cli import LOG_PAGE, main
from cas.ui.app import PAGE, create_app


def _versions(path: Path, count: int) -> None:
    with cas.open(path) as store:
        for i in range(count):
            store.put({"i": i}, "m")


def _cli(path: Path, *args: str) -> tuple[list[str], str]:
    result = CliRunner().invoke(main, ["--store", str(path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines(), result.stderr


def test_log_of_a_name_shows_a_page_and_says_how_to_see_more(tmp_path: Path) -> None:
    _versions(tmp_path / "s", LOG_PAGE + 5)
    lines, err = _cli(tmp_path / "s", "log", "m", "--oneline")
    assert [line.split()[1] for line in lines] == [f"m@{n}" for n in range(LOG_PAGE + 5, 5, -1)]
    assert f"--skip {LOG_PAGE}" in err
    lines, err = _cli(tmp_path / "s", "log", "m", "--oneline", "--skip", str(LOG_PAGE))
    assert [line.split()[1] for line in lines] == [f"m@{n}" for n in range(5, 0, -1)] and err == ""
    lines, err = _cli(tmp_path / "s", "log", "m", "--oneline", "--all")
    assert len(lines) == LOG_PAGE + 5 and err == ""
    lines, err = _cli(tmp_path / "s", "log", "m", "--oneline", "-n", "3", "--skip", "1")
    assert [line.split()[1] for line in lines] == [f"m@{n}" for n in (LOG_PAGE + 4, LOG_PAGE + 3, LOG_PAGE + 2)]
    result = CliRunner().invoke(main, ["--store", str(tmp_path / "s"), "log", "m", "-n", "2", "--all"])
    assert result.exit_code == 2 and "--all" in result.output


def test_log_of_runs_pages_without_reading_the_runs_it_skips(tmp_path: Path) -> None:
    with cas.open(tmp_path / "s") as store:
        step = store.step(lambda x: x + 1, name="inc")
        for i in range(LOG_PAGE + 3):
            step(i)
        newest = [r.hash for r in store.log()]
        assert [r.hash for r in store.log(limit=2, offset=LOG_PAGE)] == newest[LOG_PAGE : LOG_PAGE + 2]
        assert [r.hash for r in store.log(step="inc", offset=1, limit=1)] == newest[1:2]
    lines, err = _cli(tmp_path / "s", "log", "--oneline")
    assert len(lines) == LOG_PAGE and "--skip" in err
    lines, err = _cli(tmp_path / "s", "log", "--oneline", "--skip", str(LOG_PAGE))
    assert len(lines) == 3 and err == ""


def test_the_page_of_a_name_in_the_ui_is_paged(tmp_path: Path) -> None:
    _versions(tmp_path / "s", PAGE + 2)
    with cas.open(tmp_path / "s") as store:
        client = create_app(store).test_client()
        first = client.get("/names/m").get_data(as_text=True)
        assert f"m@{PAGE + 2}<" in first and "m@3<" in first and "m@2<" not in first and "next-page" in first
        second = client.get("/names/m?page=1").get_data(as_text=True)
        assert "m@2<" in second and "m@1<" in second and "m@3<" not in second and "next-page" not in second
        assert client.get("/names/absent").status_code == 404
