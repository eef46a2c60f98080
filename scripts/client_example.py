"""A short Python client for the skysort service (httpx), one call per endpoint.

Usage: ``python scripts/client_example.py [--url http://127.0.0.1:3000] FILE...``
(without FILEs it uses a LAMOST spectrum and an SDSS galaxy image from data/).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def classify(client: httpx.Client, route: str, path: Path) -> dict:
    """POST one file to a /classify_* endpoint; the answer names file, label and model."""
    with open(path, "rb") as handle:
        response = client.post(route, files={"file": (path.name, handle)})
    if response.status_code == 503:  # overloaded or model missing: retry later
        print(f"{route}: busy, retry after {response.headers.get('retry-after')} s")
    return response.json()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    spectrum = next(iter(sorted((REPO / "data" / "lamost").rglob("*.fits"))), None)
    image = next(iter(sorted((REPO / "data" / "galaxy" / "images").glob("*.jpeg"))), None)
    files = args.files or [p for p in (spectrum, image) if p is not None]

    with httpx.Client(base_url=args.url, timeout=60) as client:
        print("models:", [m["model"] for m in client.get("/models").json()["models"]])
        if spectrum:
            print(json.dumps(classify(client, "/classify_spectrum", spectrum)))
        if image:
            print(json.dumps(classify(client, "/classify_galaxy", image)))
        uploads = [("files", (p.name, p.read_bytes())) for p in files]
        for result in client.post("/classify_batch", files=uploads).json():
            print(result["file"], result.get("label") or result.get("error"))
        generated = client.post("/generate_spectra", json={"n": 2, "seed": 42})
        if generated.status_code == 200:
            body = generated.json()
            print("generated", len(body["flux"]), "spectra with", body["model"])
        else:
            print("generate:", generated.status_code, generated.json()["error"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
