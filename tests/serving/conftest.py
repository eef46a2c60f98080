"""One in-process service for all HTTP tests of this folder (models load once)."""

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from serving.service import Skysort


@pytest.fixture(scope="session")
def client(stellar_bundle):
    with TestClient(Skysort.to_asgi()) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def service(client):
    """The service instance behind ``client``."""
    import bentoml

    return bentoml.get_current_service()


@pytest.fixture(scope="session")
def lamost_files(data_dir) -> list[Path]:
    return sorted((data_dir / "lamost").rglob("*.fits"))


@pytest.fixture(scope="session")
def halpha_file(data_dir) -> Path:
    return sorted((data_dir / "ondrejov" / "fits_normalized_halpha").glob("*.fits"))[0]


@pytest.fixture(scope="session")
def galaxy_image(data_dir) -> Path:
    return sorted((data_dir / "galaxy" / "images").glob("*.jpeg"))[0]
