"""Storages the sweep tests run against: the default SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import os
import uuid

import pytest


def postgres_url() -> str | None:
    url = os.environ.get("LORAQA_TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("CI") == "true":
        pytest.fail(
            "CI=true but LORAQA_TEST_POSTGRES_URL is not set: .ci/run starts PostgreSQL with scripts/ci-postgres.sh"
        )
    pytest.skip("no PostgreSQL server: set LORAQA_TEST_POSTGRES_URL (bash scripts/ci-postgres.sh prints one)")


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request, tmp_path):
    """(storage URL or None for the default SQLite file, the --storage options, a fresh study name)."""
    name = f"sweep-{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sweep' / 'study.db'}", [], name
    url = postgres_url()
    return url, ["--storage", url], name
