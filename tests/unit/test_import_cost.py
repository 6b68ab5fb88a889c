"""What a test session pays to start imagejobs in process: building the app imports
neither Alembic nor SQLAlchemy (the schema comes from a cached, migrated file)."""

from __future__ import annotations

import json
import subprocess
import sys

from imagejobs.storage import migrate, schema_head

_PROBE = """
import json, sys
import imagejobs.bootstrap, imagejobs.testing.cloud
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"alembic", "sqlalchemy"})
print(json.dumps({"heavy": heavy}))
"""


def test_importing_the_app_loads_no_migration_machinery() -> None:
    answer = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    )
    assert json.loads(answer.stdout) == {"heavy": []}


def test_the_readiness_probes_head_is_alembics() -> None:
    assert schema_head.head_revision() == migrate.head_revision()
