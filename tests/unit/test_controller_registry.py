"""The controller app registry: names and dotted paths resolved, bad lists refused with the key path,
and the registry's ``extends`` lines checked against the classes themselves."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

from controllers.apps import APPS, DEFAULT_APPS, resolve_apps
from topologies.paths import REPO_ROOT
from topologies.validate import ConfigError

FIXTURE_APP = "tests.unit.controller_app_fixture"


@pytest.fixture(autouse=True)
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT))  # so `tests.unit...` resolves as the launcher's does


def test_default_and_names() -> None:
    assert resolve_apps(DEFAULT_APPS) == ["controllers.apps.slice_switch"]
    assert resolve_apps(("slice_monitor",)) == ["controllers.apps.slice_monitor"]
    assert resolve_apps(["slice_switch", FIXTURE_APP]) == ["controllers.apps.slice_switch", FIXTURE_APP]
    assert resolve_apps(["controllers.apps.slice_monitor"]) == ["controllers.apps.slice_monitor"]


@pytest.mark.parametrize(("names", "path", "says"), [
    (["slice_switch", "slice_swich"], "controller.apps[1]", "'slice_monitor'"),  # lists the allowed apps
    (["slice_switch", "slice_monitor"], "controller.apps[1]", "list only 'slice_monitor'"),
    (["slice_monitor", "slice_switch"], "controller.apps[0]", "list only 'slice_monitor'"),
    (["slice_switch", "controllers.apps.slice_switch"], "controller.apps[1]", "already listed"),
    (["slice_switch", "slice_switch"], "controller.apps[1]", "already listed"),
    (["tests.unit.no_such_app"], "controller.apps[0]", "importable module"),
    (["no_such_package.app"], "controller.apps[0]", "importable module"),
    (["controllers..apps"], "controller.apps[0]", "dotted module path"),
    ([3], "controller.apps[0]", "an app name"),
    ([""], "controller.apps[0]", "an app name"),
    ([], "controller.apps", "at least one app"),
    ("slice_switch", "controller.apps", "a list of app names"),
    (None, "controller.apps", "a list of app names"),
])
def test_bad_lists_name_the_entry(names, path: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_apps(names)
    assert err.value.path == path
    assert says in str(err.value)


def test_error_path_prefix_is_the_callers() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_apps(["x"], path="--app")
    assert err.value.path == "--app[0]"


def test_resolving_imports_no_app_module_and_no_os_ken() -> None:
    code = ("import sys; from controllers.apps import resolve_apps; import controllers.launcher; "
            "resolve_apps(['slice_monitor']); "
            "print(sorted(m for m in sys.modules if m.startswith(('os_ken', 'controllers.apps.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO_ROOT).stdout
    assert out.strip() == "[]"


def test_policy_module_is_pure() -> None:
    source = (REPO_ROOT / "controllers" / "policy.py").read_text()
    assert "os_ken" not in source and "ryu" not in source


def _app_class(module: str) -> type:
    """The class os-ken's AppManager.load_app would pick from ``module``."""
    from os_ken.base.app_manager import OSKenApp

    mod = importlib.import_module(module)
    classes = [c for _, c in inspect.getmembers(mod, inspect.isclass)
               if issubclass(c, OSKenApp) and c.__module__ == mod.__name__]
    assert len(classes) == 1, f"{module} must define exactly one app class, has {classes}"
    return classes[0]


def test_registry_matches_the_classes() -> None:
    pytest.importorskip("os_ken")
    classes = {name: _app_class(info.module) for name, info in APPS.items()}
    for name, info in APPS.items():
        assert info.summary and (info.extends is None or info.extends in APPS)
        for other in APPS:
            subclass = other != name and issubclass(classes[name], classes[other])
            declared = False
            base = info.extends
            while base is not None:
                declared |= base == other
                base = APPS[base].extends
            assert subclass == declared, f"{name} vs {other}: registry extends= disagrees with the classes"


def test_check_app_classes() -> None:
    pytest.importorskip("os_ken")
    from controllers.launcher import check_app_classes

    switch = _app_class("controllers.apps.slice_switch")
    fixture = _app_class(FIXTURE_APP)
    assert check_app_classes({"controllers.apps.slice_switch": switch}) is None
    problem = check_app_classes({"controllers.apps.slice_switch": switch, FIXTURE_APP: fixture})
    assert problem is not None and f"list only {FIXTURE_APP}" in problem
    assert "defines no OSKenApp" in (check_app_classes({"json": None}) or "")
