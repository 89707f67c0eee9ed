"""Controller apps, chosen by name as ``ryu-manager app1 app2`` does — and the one registry of them.

This module is pure (no os-ken import): the runner imports it to validate an experiment's
``[controller] apps = [...]`` before the network is built. The app modules themselves import
os-ken and are loaded only in the controller process (``controllers.launcher``).

Apps in the registry
--------------------
- ``slice_switch`` (default): proactive L2 forwarding plus per-slice DSCP marking from the
  slice policy; reports readiness in the status file (``controllers/apps/slice_switch.py``).
- ``slice_monitor``: ``slice_switch`` plus port and flow statistics from every ready switch every
  ``FACTORYSAT_CTL_STATS_INTERVAL_S`` seconds (default 1), appended as JSON lines to
  ``controller_stats.jsonl`` next to the status file (``controllers/apps/slice_monitor.py``).
  It *extends* ``slice_switch`` (a subclass, like Ryu's ``SimpleMonitor13`` of
  ``SimpleSwitch13``) and so *replaces* it: list ``slice_monitor`` alone.
- ``leo_adaptation``: LEO-aware steering of the slices with ``leo_protection = "steer"`` over the
  scenario's ``[backup]`` around each reconfiguration instant and while the heartbeat over LEO is
  silent (``controllers/apps/leo_adaptation.py``, decisions in ``controllers/adaptation.py``).
  Listed *beside* a switch app, whose datapaths and ``add_flow`` it uses; it acts once the run
  writes ``ADAPTATION_FILE_NAME`` (the ``leo_failover`` kind does).

How to add a controller app
---------------------------
1. Write one module in this package, ``controllers/apps/<name>.py``, defining exactly one
   app class (``controllers.sdn.BaseApp``: os-ken's ``OSKenApp``, or Ryu 4.34's ``RyuApp``; the
   framework instantiates the first such class whose ``__module__`` is the module). Import the
   framework only there and only through ``controllers.sdn`` (os-ken, or Ryu 4.34 with
   ``FACTORYSAT_SDN=ryu``), as ``slice_switch`` does. To build on the slice switch, subclass
   ``controllers.apps.slice_switch.SliceSwitch`` and override its documented extension points
   (``rules_for``, ``prepare_datapath``, ``add_flow``, ``on_datapath_ready``,
   ``on_datapath_down``; see its class docstring) rather than adding event handlers that repeat
   its work. An app that does not install flows (e.g. a northbound API) subclasses ``OSKenApp``
   directly and is listed *beside* a switch app.
2. Add one line to ``APPS`` below: ``"<name>": AppInfo("controllers.apps.<name>", "<what it
   does>")``, with ``extends="<other app>"`` if its class subclasses that app's class.
3. Use it: ``[controller] apps = ["<name>"]`` in an experiment.toml, ``--app <name>`` on the
   launcher, or ``ControllerProcess.start(..., apps=["<name>"])``.

Apps outside this package (e.g. in tests) need no registry line: give their full dotted module
path instead of a name (``tests.unit.controller_app_fixture``). The launcher then checks, once the
classes are loaded, that no listed app subclasses another listed app.

Settings reach apps through the environment (set by the launcher; ``ControllerProcess.start``
passes extra ones with ``app_env=``); the names are below so the runner need not import os-ken.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass

from topologies.validate import ConfigError


@dataclass(frozen=True)
class AppInfo:
    """One registry entry: the module os-ken loads and, if its app class subclasses another
    registered app's class, that app's name (the two must then not be listed together)."""

    module: str
    summary: str
    extends: str | None = None


# The registry: the only place an app is named. One line per app.
APPS: dict[str, AppInfo] = {
    "slice_switch": AppInfo("controllers.apps.slice_switch", "L2 forwarding plus per-slice DSCP marking"),
    "slice_monitor": AppInfo("controllers.apps.slice_monitor", "slice_switch plus port/flow statistics",
                             extends="slice_switch"),
    "leo_adaptation": AppInfo("controllers.apps.leo_adaptation",
                              "steers protected slices over the backup backhaul (beside a switch app)"),
}

DEFAULT_APPS: tuple[str, ...] = ("slice_switch",)

# --- the environment the launcher gives apps ---------------------------------------------------
ENV_POLICY = "FACTORYSAT_CTL_POLICY"  # path of the slice policy JSON (controllers.policy.SlicePolicy)
ENV_STATUS = "FACTORYSAT_CTL_STATUS"  # path of the status JSON that slice_switch writes
ENV_STATS_INTERVAL_S = "FACTORYSAT_CTL_STATS_INTERVAL_S"  # slice_monitor's polling period (default 1)
STATS_FILE_NAME = "controller_stats.jsonl"  # slice_monitor's output, in the status file's folder
# Path switches after handovers (JSON lines {"seq", "ue", "mac", "dpid", "port"}), appended by the
# runner and applied by slice_switch, in the status file's folder; the runner creates it before the
# controller starts when the run has handovers, and only then does slice_switch watch it.
PATH_SWITCH_FILE_NAME = "controller_path_switch.jsonl"
# leo_adaptation: its configuration (controllers.adaptation.SteeringConfig JSON, written once by the
# runner at traffic start) and its status (path changes, detections), in the status file's folder.
ADAPTATION_FILE_NAME = "controller_adaptation.json"
ADAPTATION_STATUS_FILE_NAME = "controller_adaptation_status.json"

_CONFIG_PATH = "controller.apps"


def resolve_apps(names: Iterable[str], path: str = _CONFIG_PATH) -> list[str]:
    """The module paths to load for ``names`` (registry names or full dotted module paths).

    Raises ``ConfigError`` (key path ``controller.apps[i]``) for: not a list of strings, an empty
    list, an unknown name (the error lists the registered apps), a dotted path that is not an
    importable module, an app listed twice, or an app listed together with an app it extends
    (it already includes it). Imports no app module (parent packages of a dotted path excepted).
    """
    if isinstance(names, str | bytes) or not isinstance(names, Iterable):
        raise ConfigError(path, names, "a list of app names, e.g. " + repr(list(DEFAULT_APPS)))
    names = list(names)
    if not names:
        raise ConfigError(path, names, "at least one app, e.g. " + repr(list(DEFAULT_APPS)))
    by_module = {info.module: name for name, info in APPS.items()}
    modules: list[str] = []
    registered: dict[str, int] = {}  # registry name -> index listed at
    for i, name in enumerate(names):
        key = f"{path}[{i}]"
        module = _module_of(key, name)
        if module in modules:
            raise ConfigError(key, name, f"an app not already listed (same module as {path}"
                                         f"[{modules.index(module)}])")
        modules.append(module)
        if module in by_module:
            registered[by_module[module]] = i
    for name, i in registered.items():
        base = APPS[name].extends
        while base is not None:
            if base in registered:
                raise ConfigError(f"{path}[{i}]", names[i],
                                  f"not listed together with {base!r} ({path}[{registered[base]}]): "
                                  f"{name!r} extends {base!r} and already does its work; list only {name!r}")
            base = APPS[base].extends
    return modules


def allowed_apps() -> str:
    """The registered apps as one line, for error messages and ``--help``."""
    return ", ".join(f"{name!r} ({info.summary})" for name, info in APPS.items())


def _module_of(key: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(key, name, "an app name: " + allowed_apps() + ", or a dotted module path")
    if name in APPS:
        return APPS[name].module
    if "." not in name:
        raise ConfigError(key, name, "one of " + allowed_apps() + ", or a full dotted module path")
    if not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(key, name, "a dotted module path like 'package.module'")
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        raise ConfigError(key, name, f"an importable module ({exc})") from None
    if spec is None:
        raise ConfigError(key, name, "an importable module (not found), or one of " + allowed_apps())
    return name
