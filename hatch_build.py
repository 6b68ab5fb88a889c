"""Build hook: compile the optional C signature check (src/imagejobs/iam/signing/_sigcore.c).

It is optional on purpose (docs/signing-c.md): without a C compiler, or with
IMAGEJOBS_PURE_PYTHON=1, the build says so and goes on, and the package verifies AK/SK
signatures in Python alone (same results, slower). The compiler is the one this Python was
built with (sysconfig's LDSHARED), or $CC when set. A wheel with the module is tagged for
this Python and platform; one without it stays py3-none-any.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/imagejobs/iam/signing/_sigcore.c")
PACKAGE_DIR = "imagejobs/iam/signing"


def _compile(root: Path, output: Path) -> str | None:
    """Compile SOURCE into ``output``; the reason when it could not be."""
    if os.environ.get("IMAGEJOBS_PURE_PYTHON", "").lower() in ("1", "true", "yes"):
        return "IMAGEJOBS_PURE_PYTHON is set"
    linker = sysconfig.get_config_var("LDSHARED")
    if sys.platform == "win32" or not linker:
        return "no C compiler configuration for this Python"
    command = shlex.split(linker)
    if os.environ.get("CC"):  # the usual override: keep LDSHARED's flags, change the compiler
        command[0] = os.environ["CC"]
    command += [
        *shlex.split(sysconfig.get_config_var("CCSHARED") or ""),
        "-O3",
        "-I",
        sysconfig.get_paths()["include"],
        str(root / SOURCE),
        "-o",
        str(output),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        return f"no C compiler ({command[0]})"
    except subprocess.CalledProcessError as failed:
        return f"{command[0]} failed: {failed.stderr.strip()[-2000:]}"
    return None


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        name = "_sigcore" + sysconfig.get_config_var("EXT_SUFFIX")
        if version == "editable":  # next to the source, where the editable install imports
            output = root / "src" / PACKAGE_DIR / name
        else:
            self._build_dir = tempfile.TemporaryDirectory(prefix="imagejobs-build-")
            output = Path(self._build_dir.name) / name
        reason = _compile(root, output)
        if reason is not None:
            self.app.display_warning(
                f"imagejobs: the C signature check was not compiled ({reason}); "
                "AK/SK signatures are verified in Python alone (same results, slower)"
            )
            return
        if version != "editable":
            build_data["force_include"][str(output)] = f"{PACKAGE_DIR}/{name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        build_dir = getattr(self, "_build_dir", None)
        if build_dir is not None:
            build_dir.cleanup()
