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


def _main(config: dict) -> None:
    root, folder = config["ROOT"], config["FOLDER"]
    if root is not None and root not in sys.modules:
        package = types.ModuleType(root)
        package.__path__ = [folder]
        sys.modules[root] = package
        if folder not in sys.path:
            sys.path.append(folder)
    module, name = config["TARGET"]
    args = pickle.loads(config["PAYLOAD"])
    getattr(importlib.import_module(module), name)(*args, *config["INHERITED"])


if "PAYLOAD" in globals():  # run by runpy.run_path(init_globals=...); importing this module does nothing
    _main(globals())
