"""The SDN framework under the controller apps: os-ken (the maintained Ryu fork) or Ryu 4.34.

The apps (``controllers/apps/*.py``) and ``controllers.launcher`` import the framework only from
here, so the same app modules run under either::

    from controllers.sdn import BaseApp, ofp_event, set_ev_cls, MAIN_DISPATCHER, hub, ofproto_v1_3

Which framework: ``FACTORYSAT_SDN=os_ken`` or ``FACTORYSAT_SDN=ryu`` picks one (an error if it is
not importable); unset or empty, ``os_ken`` if importable, else ``ryu``. Any other value raises
``ConfigError`` naming the variable and the allowed values. ``FRAMEWORK`` says which was loaded.

Exports: ``FRAMEWORK``; ``BaseApp`` (``OSKenApp`` / ``RyuApp``, the app base class);
``app_manager``, ``ofp_event``, ``handler`` and its ``CONFIG_DISPATCHER``, ``MAIN_DISPATCHER``,
``DEAD_DISPATCHER``, ``HANDSHAKE_DISPATCHER``, ``set_ev_cls``; ``hub``; ``ofproto_v1_3`` and
``ofproto_v1_3_parser``; for the launcher ``cfg``, ``controller`` (the OpenFlow controller module,
imported because it registers the ``ofp-*`` options) and ``AppManager``.

Under os-ken every name is os-ken's own object (the launcher behaves exactly as before). Under Ryu
three things differ, all applied only when ``FRAMEWORK == "ryu"``:

- ``app_manager.OSKenApp`` is set to ``RyuApp`` (if absent), so a class statement written against
  os-ken's name, ``class App(app_manager.OSKenApp)``, runs unchanged; new code subclasses ``BaseApp``.

- Ryu 4.34's ``ryu.base.app_manager`` imports ``ryu.app.wsgi``, which needs
  ``eventlet.wsgi.ALREADY_HANDLED``; eventlet removed it in 0.30.3, and eventlet before 0.33 does
  not import on Python >= 3.10 (``TypeError: cannot set 'is_timeout' attribute of immutable type
  'TimeoutError'``). No eventlet release on PyPI has both, so a sentinel is set here when it is
  missing. It is used only by Ryu's WSGI/websocket REST apps, which no factorysat app uses.
- Ryu has only an eventlet hub, which ``ryu-manager`` makes work by monkey-patching the standard
  library (``hub.patch(thread=True)``) before it loads apps. ``AppManager.get_instance()`` does the
  same here (a subclass of Ryu's ``AppManager``), so only the controller process is patched, not
  every process that imports an app module.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from typing import Any

from topologies.validate import ConfigError

ENV_FRAMEWORK = "FACTORYSAT_SDN"
FRAMEWORKS: tuple[str, ...] = ("os_ken", "ryu")

__all__ = ["CONFIG_DISPATCHER", "DEAD_DISPATCHER", "ENV_FRAMEWORK", "FRAMEWORK", "FRAMEWORKS",
           "HANDSHAKE_DISPATCHER", "MAIN_DISPATCHER", "AppManager", "BaseApp", "app_manager", "cfg",
           "controller", "handler", "hub", "ofp_event", "ofproto_v1_3", "ofproto_v1_3_parser",
           "select_framework", "set_ev_cls"]


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def select_framework(environ: Mapping[str, str] = os.environ,
                     importable: Callable[[str], bool] = _importable) -> str:
    """The framework to load: ``FACTORYSAT_SDN`` if set, else ``os_ken`` if importable, else
    ``ryu``. ``ConfigError`` (path ``FACTORYSAT_SDN``) for a value not in ``FRAMEWORKS``;
    ``ImportError`` naming the variable if the chosen framework (or, unset, either) is missing."""
    raw = environ.get(ENV_FRAMEWORK, "")
    if raw == "":
        for name in FRAMEWORKS:
            if importable(name):
                return name
        raise ImportError(f"neither os-ken (pip install os-ken) nor Ryu (pip install ryu==4.34, see "
                          f"controllers/ryu-requirements.txt) is importable; {ENV_FRAMEWORK} is unset")
    if raw not in FRAMEWORKS:
        raise ConfigError(ENV_FRAMEWORK, raw, " or ".join(repr(f) for f in FRAMEWORKS) + " (or unset)")
    if not importable(raw):
        raise ImportError(f"{ENV_FRAMEWORK}={raw}: the {raw!r} package is not importable in "
                          f"this Python environment")
    return raw


FRAMEWORK: str = select_framework()

if FRAMEWORK == "os_ken":
    from os_ken import cfg
    from os_ken.base import app_manager
    from os_ken.controller import controller, handler, ofp_event
    from os_ken.lib import hub
    from os_ken.ofproto import ofproto_v1_3, ofproto_v1_3_parser

    BaseApp: Any = app_manager.OSKenApp
    AppManager: Any = app_manager.AppManager
else:
    import eventlet.wsgi

    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):  # see the module docstring
        eventlet.wsgi.ALREADY_HANDLED = object()

    from ryu import cfg  # type: ignore[no-redef]
    from ryu.base import app_manager  # type: ignore[no-redef]
    from ryu.controller import controller, handler, ofp_event  # type: ignore[no-redef]
    from ryu.lib import hub  # type: ignore[no-redef]
    from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser  # type: ignore[no-redef]

    BaseApp = app_manager.RyuApp
    if not hasattr(app_manager, "OSKenApp"):  # apps written as `app_manager.OSKenApp` run unchanged
        app_manager.OSKenApp = BaseApp

    class _RyuAppManager(app_manager.AppManager):  # type: ignore[misc,name-defined]
        """Ryu's AppManager, whose ``get_instance`` first monkey-patches the standard library for
        eventlet as ``ryu-manager`` does before loading apps (without ``--enable-debugger``)."""

        @staticmethod
        def get_instance() -> Any:
            hub.patch(thread=True)
            return app_manager.AppManager.get_instance()

    AppManager = _RyuAppManager

CONFIG_DISPATCHER = handler.CONFIG_DISPATCHER
MAIN_DISPATCHER = handler.MAIN_DISPATCHER
DEAD_DISPATCHER = handler.DEAD_DISPATCHER
HANDSHAKE_DISPATCHER = handler.HANDSHAKE_DISPATCHER
set_ev_cls = handler.set_ev_cls
