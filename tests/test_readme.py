"""The README's SDK example runs as written, against the sample factory."""

import os
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_sdk_example_runs(sample_layout, tmp_path, monkeypatch):
    code = re.search(r"## The SDK in ten lines\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    os.symlink(sample_layout, tmp_path / "factory.usda")
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["poses"].shape == (1000, 9, 4, 4)
    twin = namespace["twin"]
    link = twin.cache.transform_row("/Factory/Line/Robot1/link_2")
    assert not np.allclose(twin.cache.transforms[link], np.eye(4))
    assert (tmp_path / "state.usda").is_file()
