"""Every backend implements the whole protocol, with the protocol's signatures."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from engine.store import SQLiteStore, Store
from engine.store.protocol import StoreBackend

if TYPE_CHECKING:
    from pathlib import Path

    from contract.conftest import Backend


def _members(cls: type) -> dict[str, object]:
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_") or name in ("__aenter__", "__aexit__")
    }


def test_the_sqlite_store_satisfies_the_protocol_statically(tmp_path: Path) -> None:
    backend: StoreBackend = Store(tmp_path / "typed.db")  # mypy checks this assignment
    assert SQLiteStore is Store
    assert not backend.is_open


def test_every_backend_has_every_protocol_member_with_its_signature(backend: Backend) -> None:
    store = backend.make()
    for name, member in _members(StoreBackend).items():
        if name in ("readonly", "write_failure_listeners", "commit_listeners"):
            assert hasattr(store, name), name
            continue
        implemented = getattr(type(store), name, None)
        assert implemented is not None, f"{type(store).__name__} lacks {name}"
        if isinstance(member, property):
            assert isinstance(implemented, property), name
            continue
        assert callable(member) and callable(implemented)
        expected = inspect.signature(member)
        found = inspect.signature(implemented)
        assert list(found.parameters) == list(expected.parameters), name
        for parameter in expected.parameters.values():
            assert found.parameters[parameter.name].kind == parameter.kind, name
            assert found.parameters[parameter.name].default == parameter.default, name
        assert inspect.iscoroutinefunction(implemented) == inspect.iscoroutinefunction(member)
