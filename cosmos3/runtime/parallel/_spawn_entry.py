"""First code a spawned worker runs (through :func:`runpy.run_path`, so it needs no importable package name).

A host such as ComfyUI imports this pack under a path-derived module name that a fresh process cannot import.
The globals ``ROOT`` (that name, or ``None`` for a plain ``cosmos3`` install), ``FOLDER`` (the pack folder),
``TARGET`` (module and function name), ``PAYLOAD`` (the pickled arguments) and ``INHERITED`` (queues, passed at
spawn) come from :func:`cosmos3.runtime.parallel.local.spawn_worker`. The pack is registered as a namespace
package under ``ROOT`` first, so the arguments and later jobs unpickle into the same classes as in the host.
"""

import importlib
import pickle
import sys
import types

_root, _folder = globals()["ROOT"], globals()["FOLDER"]
if _root is not None and _root not in sys.modules:
    _package = types.ModuleType(_root)
    _package.__path__ = [_folder]
    sys.modules[_root] = _package
    if _folder not in sys.path:
        sys.path.append(_folder)
_module, _name = globals()["TARGET"]
_args = pickle.loads(globals()["PAYLOAD"])
getattr(importlib.import_module(_module), _name)(*_args, *globals()["INHERITED"])
