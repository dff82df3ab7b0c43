"""A missing part skips a test, except under LOCALCLOUD_STRICT=1 (CI), where it fails it."""

from __future__ import annotations

import pytest

from tests.parts_support import import_part, missing_part


def test_a_missing_part_skips_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCALCLOUD_STRICT", raising=False)
    with pytest.raises(pytest.skip.Exception, match="bwrap is not installed"):
        missing_part("bwrap is not installed")
    monkeypatch.setenv("LOCALCLOUD_STRICT", "0")
    with pytest.raises(pytest.skip.Exception, match="no_such_module_here"):
        import_part("no_such_module_here")


def test_under_strict_a_missing_part_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALCLOUD_STRICT", "1")
    with pytest.raises(pytest.fail.Exception, match=r"bwrap is not installed \(LOCALCLOUD_STRICT"):
        missing_part("bwrap is not installed")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_here is not installed"):
        import_part("no_such_module_here")
    assert import_part("json").dumps([]) == "[]"  # a part that is there is just imported
