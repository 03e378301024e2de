"""The README's "Writing a materializer" example runs as written: put, get (a subclass too), info, visualize."""

from __future__ import annotations

import re
from pathlib import Path

import cas

README = Path(__file__).resolve().parent.parent / "README.md"


class Celsius:
    def __init__(self, degrees: float) -> None:
        self.degrees = degrees


class Kelvinish(Celsius):
    pass


def _example() -> str:
    text = README.read_text()
    section = text[text.index("### Writing a materializer") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1).replace('name = "my.celsius"', 'name = "readme.celsius"')


def test_the_materializer_guide_runs_as_written(tmp_path: Path) -> None:
    namespace: dict[str, object] = {"Celsius": Celsius}
    exec(compile(_example(), str(README), "exec"), namespace)  # the README's own code
    store = cas.open(tmp_path / "store")
    ref = store.put(Celsius(21.5), "reading")
    back = store.get(ref)
    assert type(back) is Celsius and back.degrees == 21.5
    assert type(store.get(store.put(Kelvinish(3.0)))) is Kelvinish
    info = store.info(ref)
    assert info.materializer == "readme.celsius" and info.materializer_version == "2"
    assert info.metadata["degrees"] == 21.5
    assert [v.media_type for v in store.visualizations(ref)][0] == "text/markdown"
