"""Writes docs/configuration.md from the trait help texts of VClusterSpawner and the hub services.

    python tools/config_reference.py            # rewrite the file
    python tools/config_reference.py --check    # exit 1 if it is out of date (run by the tests)
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def render() -> str:
    from kubespawner import KubeSpawner

    from vcluster_spawner.spawner import VClusterSpawner

    lines = [
        "# Configuration reference",
        "",
        "Generated from the traits' help texts by `python tools/config_reference.py`; do not edit.",
        "Set them as `c.VClusterSpawner.<name>` in `jupyterhub_config.py`, or per profile through",
        "`kubespawner_override`. Every KubeSpawner option (image, resources, profile_list, volumes,",
        "hooks, ...) applies too: see KubeSpawner's documentation.",
        "",
    ]
    inherited = KubeSpawner.class_traits(config=True)
    # VClusterSpawner's own traits, and KubeSpawner's that it redefines with another default
    own = {name: trait for name, trait in VClusterSpawner.class_traits(config=True).items()
           if name not in inherited or name in VClusterSpawner.class_own_traits(config=True)}
    for name in sorted(own):
        trait = own[name]
        kind = type(trait).__name__ + (", KubeSpawner's option with VClusterSpawner's default" if name in inherited else "")
        lines += [f"## `{name}`", "", f"*{kind}*", "", inspect.cleandoc(trait.help), ""]
    changed = {"namespace": "virtual_namespace", "start_timeout": "600", "cmd": '["jupyterhub-singleuser"]'}
    lines += ["## KubeSpawner defaults changed by VClusterSpawner", ""]
    lines += [f"- `{name}`: {value}" for name, value in changed.items()]
    lines += ["", *services()]
    return "\n".join(lines) + "\n"


def services() -> list[str]:
    """The hub-managed services' options (command line ``--Class.name=value``; see docs/hub.md)."""
    from traitlets.config import Application

    from vcluster_spawner.services.lifecycle import LifecycleService
    from vcluster_spawner.services.status import StatusService

    lines = ["# Hub services", "",
             "Options of the services started by `jupyterhub_config.d/` (docs/hub.md), given on their",
             "command line as `--<Class>.<name>=<value>`.", ""]
    for cls in (LifecycleService, StatusService):
        lines += [f"## {cls.__name__} (`python -m {cls.__module__}`)", ""]
        own = {n: t for n, t in cls.class_traits(config=True).items() if n not in Application.class_traits(config=True)}
        for name in sorted(own):
            lines += [f"### `{cls.__name__}.{name}`", "", f"*{type(own[name]).__name__}*", "",
                      inspect.cleandoc(own[name].help), ""]
    return lines


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        if TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python tools/config_reference.py", file=sys.stderr)
            sys.exit(1)
    else:
        TARGET.write_text(text)
