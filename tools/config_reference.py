"""Writes docs/configuration.md from VClusterSpawner's trait help texts.

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
    own = {name: trait for name, trait in VClusterSpawner.class_traits(config=True).items()
           if name not in KubeSpawner.class_traits(config=True)}
    for name in sorted(own):
        trait = own[name]
        lines += [f"## `{name}`", "", f"*{type(trait).__name__}*", "", inspect.cleandoc(trait.help), ""]
    changed = {"namespace": "virtual_namespace", "start_timeout": "600", "cmd": '["jupyterhub-singleuser"]'}
    lines += ["## KubeSpawner defaults changed by VClusterSpawner", ""]
    lines += [f"- `{name}`: {value}" for name, value in changed.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        if TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run python tools/config_reference.py", file=sys.stderr)
            sys.exit(1)
    else:
        TARGET.write_text(text)
