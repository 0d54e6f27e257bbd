"""No console screen is part of an import cycle, through any module (lazy imports included).

import-linter's contracts (pyproject.toml) say the same for siblings and layers; this test
also follows chains that leave `tui.screens` and come back (a screen importing the app, which
imports the screens), which a siblings contract does not see.
"""

from __future__ import annotations

import grimp

SCREENS = "tui.screens"


def imports_in_cycles(graph: grimp.ImportGraph, prefix: str) -> list[tuple[str, str]]:
    """Each import by a module under `prefix` of a module that leads back to it."""
    return [
        (module, imported)
        for module in sorted(graph.modules)
        if module.startswith(prefix)
        for imported in sorted(graph.find_modules_directly_imported_by(module))
        if graph.chain_exists(importer=imported, imported=module)
    ]


def test_no_screen_module_is_in_an_import_cycle() -> None:
    graph = grimp.build_graph("tui", exclude_type_checking_imports=False, cache_dir=None)
    assert imports_in_cycles(graph, SCREENS) == []


def test_no_module_of_tui_is_in_an_import_cycle() -> None:
    """The commands, the service and the console alike: a command imports what it shares from
    `tui.cli_common` / `tui.cli_run`, never from `tui.cli`, which dispatches to it."""
    graph = grimp.build_graph("tui", exclude_type_checking_imports=False, cache_dir=None)
    assert imports_in_cycles(graph, "tui") == []


def test_a_cycle_through_the_app_is_found() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [
        ("tui.app", "tui.screens.home"),
        ("tui.screens.home", "tui.screens.base"),
        ("tui.screens.base", "tui.app"),  # the way back: a screen importing the app
        ("tui.screens.base", "tui.screens.confirm"),
    ]:
        graph.add_import(importer=importer, imported=imported)
    assert imports_in_cycles(graph, SCREENS) == [
        ("tui.screens.base", "tui.app"),
        ("tui.screens.home", "tui.screens.base"),
    ]
    graph.remove_import(importer="tui.screens.base", imported="tui.app")
    assert imports_in_cycles(graph, SCREENS) == []
