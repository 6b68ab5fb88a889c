"""What a test session pays to start imagejobs in process: building the app imports
neither Alembic nor SQLAlchemy (the schema comes from a cached, migrated file) and
hashes no password."""

from __future__ import annotations

import json
import subprocess
import sys

from imagejobs.iam.passwords import hash_password, unmatchable_hash, verify_password
from imagejobs.storage import migrate, schema_head

_PROBE = """
import hashlib, json, sys
hashes = []
scrypt = hashlib.scrypt
hashlib.scrypt = lambda *args, **kwargs: hashes.append(1) or scrypt(*args, **kwargs)
import imagejobs.bootstrap, imagejobs.testing.cloud
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"alembic", "sqlalchemy"})
print(json.dumps({"heavy": heavy, "hashes": len(hashes)}))
"""


def test_importing_the_app_loads_no_migration_machinery_and_hashes_nothing() -> None:
    answer = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    )
    assert json.loads(answer.stdout) == {"heavy": [], "hashes": 0}


def test_the_readiness_probes_head_is_alembics() -> None:
    assert schema_head.head_revision() == migrate.head_revision()


def test_an_unmatchable_hash_fails_every_password_at_the_full_cost() -> None:
    stored = unmatchable_hash()
    assert not verify_password("", stored)
    assert not verify_password("Correct-horse-1", stored)
    # The same scheme and parameters as a real hash: the same work to verify.
    assert stored.split("$")[:4] == hash_password("Correct-horse-1").split("$")[:4]
