"""The H-alpha labelling page: a small ASGI app over the active-learning SQLite database.

Usage::

    app = create_label_app("runs/active/active.sqlite")   # or env SKYSORT_ACTIVE_DB
    uvicorn.run(app)                                       # standalone, or mounted:
    Skysort.mount_asgi_app(create_label_app(), path="/label")

``GET /`` shows the current iteration's next unlabelled candidate: a server-rendered PNG
of its profile around H-alpha (axes, predicted class and probabilities) and one button per
label (absorption, emission, double-peak, noise, skip) with keyboard shortcuts a/e/d/n/s.
``POST /label`` (form fields ``spectrum_id``, ``label``, ``labeller``) writes the label to
the database at once and redirects to the page. ``GET /plot/{id}.png`` is the plot and
``GET /api/next`` the next candidate as JSON. Only :mod:`models` is imported (no training
code), as the serving image requires.
"""

from __future__ import annotations

import html
import io
import os
from pathlib import Path
from string import Template

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from models.active_store import (
    LABEL_CHOICES,
    ActiveStateError,
    add_label,
    connect,
    next_candidate,
    preprocess_of,
    require_db,
)
from models.halpha import HALPHA_VACUUM

REPO = Path(__file__).resolve().parents[1]
DB_ENV = "SKYSORT_ACTIVE_DB"
DEFAULT_DB = REPO / "runs" / "active" / "active.sqlite"
PAGE = Template((Path(__file__).parent / "label_page" / "page.html").read_text())
KEYS = {"absorption": "a", "emission": "e", "double-peak": "d", "noise": "n", "skip": "s"}


def default_db() -> Path:
    """The database the service uses: ``$SKYSORT_ACTIVE_DB`` or runs/active/active.sqlite."""
    return Path(os.environ.get(DB_ENV, DEFAULT_DB))


def render_profile_png(db: Path, spectrum_id: int) -> bytes:
    """PNG of one stored profile on its wavelength grid, titled with the prediction."""
    from matplotlib.figure import Figure  # the object API: safe in the server's threads

    require_db(db)
    with connect(db) as conn:
        grid = preprocess_of(conn).grid
        row = conn.execute(
            "SELECT s.ref, s.features, p.predicted, p.probabilities FROM spectra s"
            " LEFT JOIN predictions p ON p.spectrum_id = s.id AND p.iteration ="
            " (SELECT MAX(iteration) FROM predictions WHERE spectrum_id = s.id)"
            " WHERE s.id = ?",
            (spectrum_id,),
        ).fetchone()
    if row is None:
        raise ActiveStateError(f"no spectrum with id {spectrum_id}")
    flux = np.frombuffer(row["features"], np.float32)
    fig = Figure(figsize=(8, 3.6), dpi=100)
    ax = fig.add_subplot()
    ax.plot(grid, flux, color="black", lw=1.2)
    ax.axvline(HALPHA_VACUUM, color="tab:red", ls="--", lw=0.8, label="H-alpha 6564.6 Å")
    ax.set_xlabel("vacuum wavelength (Å)")
    ax.set_ylabel("min-max scaled flux")
    ax.set_ylim(-1.1, 1.1)
    ax.set_title(f"{Path(row['ref']).name}: predicted {row['predicted'] or 'n/a'}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _candidate_html(request: Request, candidate: dict) -> str:
    plot = request.url_for("plot", spectrum_id=candidate["spectrum_id"])
    action = request.url_for("label")
    probabilities = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{p:.3f}</td></tr>"
        for name, p in candidate["probabilities"].items()
    )
    buttons = "".join(
        f'<button type="submit" name="label" value="{name}" data-key="{key}">'
        f"{name} <kbd>{key}</kbd></button>"
        for name, key in KEYS.items()
    )
    return f"""
<p class="meta">iteration {candidate["iteration"]} · {candidate["kind"]} candidate ·
 {candidate["remaining"]} left · <span id="ref">{html.escape(candidate["ref"])}</span></p>
<img id="profile" src="{plot}" alt="H-alpha profile" width="800" height="360">
<p>predicted <b id="predicted">{html.escape(candidate["predicted"])}</b></p>
<table class="p">{probabilities}</table>
<form method="post" action="{action}" class="buttons">
  <input type="hidden" name="spectrum_id" value="{candidate["spectrum_id"]}">
  <label>labeller <input id="labeller" name="labeller" value="web" size="12"></label><br>
  {buttons}
</form>"""


def page(request: Request) -> HTMLResponse:
    db = request.app.state.db
    try:
        candidate = next_candidate(db)
    except ActiveStateError as error:
        body = f'<p id="status">{html.escape(str(error))}</p>'
        return HTMLResponse(PAGE.substitute(body=body), status_code=409)
    if candidate is None:
        body = (
            '<p id="status">No unlabelled candidate in this iteration. Run '
            "<code>skysort active next</code> and <code>skysort active train</code>.</p>"
        )
    else:
        body = _candidate_html(request, candidate)
    return HTMLResponse(PAGE.substitute(body=body))


def plot(request: Request) -> Response:
    try:
        png = render_profile_png(request.app.state.db, int(request.path_params["spectrum_id"]))
    except ActiveStateError as error:
        return JSONResponse({"error": str(error)}, status_code=404)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


async def label(request: Request) -> Response:
    form = await request.form()
    try:
        spectrum_id = int(form.get("spectrum_id", ""))
        chosen = str(form.get("label", ""))
        labeller = str(form.get("labeller") or "web").strip()[:64] or "web"
        add_label(request.app.state.db, spectrum_id, chosen, labeller)
    except ValueError as error:
        message = str(error) if "label" in str(error) else "spectrum_id must be an integer"
        return JSONResponse({"error": message}, status_code=400)
    except ActiveStateError as error:
        return JSONResponse({"error": str(error)}, status_code=409)
    return RedirectResponse(request.url_for("page"), status_code=303)


def api_next(request: Request) -> JSONResponse:
    try:
        candidate = next_candidate(request.app.state.db)
    except ActiveStateError as error:
        return JSONResponse({"error": str(error)}, status_code=409)
    if candidate is None:
        return JSONResponse({"candidate": None})
    keys = ("spectrum_id", "ref", "kind", "iteration", "predicted", "probabilities", "remaining")
    return JSONResponse({"candidate": {k: candidate[k] for k in keys}, "labels": LABEL_CHOICES})


def create_label_app(db_path: str | Path | None = None) -> Starlette:
    """The labelling app over ``db_path`` (default :func:`default_db`).

    The database is opened per request, so it may be created after the app starts.
    """
    app = Starlette(
        routes=[
            Route("/", page, methods=["GET"], name="page"),
            Route("/label", label, methods=["POST"], name="label"),
            Route("/plot/{spectrum_id:int}.png", plot, methods=["GET"], name="plot"),
            Route("/api/next", api_next, methods=["GET"], name="api_next"),
        ]
    )
    app.state.db = Path(db_path) if db_path is not None else default_db()
    return app
