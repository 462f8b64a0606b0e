"""``cleaner serve``: a small Flask app to upload an image and see real or fake with both
probabilities, and to work through the latest plan's review queue.

Safety, because this app can move files:

- it binds to 127.0.0.1 unless told otherwise (see ``cleaner serve --host``);
- the browser never names a path: accept and reject take a plan's run id and an item id
  (``m3``, ``r0``), the path comes from the plan, and it is still confined to ROOT with
  :func:`cleaner.dataset.resolve_inside` before anything is read or moved;
- an accepted move is a one-move :class:`cleaner.moves.MovePlan` applied by the one move
  executor like any other stage's (journaled, never overwriting, undone by ``cleaner undo``);
- every button that changes files carries a CSRF token (a per-session secret compared in
  constant time); a request without it is refused;
- uploads are limited in size (``MAX_CONTENT_LENGTH``) and in what they may cost to decode
  (:func:`cleaner.images.upload_pixel_budget`: pixels bounded by the file's bytes, checked from
  the header before anything is decoded; at most :data:`DECODE_SLOTS` decodes at once, and
  the bytes of bodies and decodes in flight bounded by :mod:`cleaner.web.budget`, so forty
  large uploads at once wait their turn instead of growing the server), and are decoded only
  through :mod:`cleaner.images`; anything else gets one clear message;
- a request a browser sends on behalf of another site (``Sec-Fetch-Site`` cross-site or
  same-site, or an ``Origin`` that is not this app) is refused on every endpoint, ``/predict``
  included; ``curl`` and scripts, which send neither, keep working.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import io
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from cleaner import images
from cleaner.choices import Label, ReviewVerdict
from cleaner.dataset import LABELS, open_dataset, resolve_inside
from cleaner.errors import CleanerError, LockedError, PathEscapeError
from cleaner.state import duplicates as duplicates_file
from cleaner.state import plans as plans_file
from cleaner.state import review as review_file
from cleaner.web.budget import DEFAULT_BUDGET_MB, DecodeBudget, upload_cost
from cleaner.web.predictor import KerasPredictor, Predictor

DEFAULT_MAX_UPLOAD_MB = 20
LOOPBACK_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
"""Host names a browser uses for an app bound to the loopback interface."""
REVIEW_PAGE = 50
VIEW_SIDE = 1024
"""Longest side of the decoded upload a custom predictor and the preview get (JPEGs are decoded
reduced to it)."""
DECODE_SLOTS = 2
"""Uploads decoded at once: with the pixel budget, bounds the app's decode memory."""
_ITEM_ID = re.compile(r"^[mr][0-9]{1,9}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def _upload_size(stream: Any) -> int:
    """The upload's bytes without reading them (Werkzeug spools a large one to disk)."""
    try:
        here = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(here)
        return max(0, int(end) - int(here))
    except (OSError, AttributeError, ValueError):
        return int(current_app.config["MAX_CONTENT_LENGTH"] or 0)


def _wants_json() -> bool:
    if request.args.get("format") == "json":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


class _ThumbCache:
    """Recently served review thumbnails, by (path, size, mtime): an LRU of JPEG bytes."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.data: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, path: Path) -> bytes:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        buf = io.BytesIO()
        images.thumbnail(path, 200).save(buf, "JPEG", quality=80)
        out = buf.getvalue()
        with self.lock:
            self.data[key] = out
            while len(self.data) > self.size:
                self.data.popitem(last=False)
        return out


bp = Blueprint("cleaner", __name__)
"""The pages and their checks; :func:`create_app` registers it on an app configured for one
ROOT (``app.extensions["cleaner"]``: root, predictor, thumbnail cache, decision lock, trusted
host names)."""


def _ext() -> dict[str, Any]:
    ext: dict[str, Any] = current_app.extensions["cleaner"]
    return ext


def _root() -> Path:
    root: Path = _ext()["root"]
    return root


# ------------------------------------------------------------------ helpers


def csrf_token() -> str:
    tok = session.get("csrf")
    if not isinstance(tok, str):
        tok = secrets.token_urlsafe(32)
        session["csrf"] = tok
    return tok


def check_csrf() -> None:
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    tok = session.get("csrf")
    if not isinstance(tok, str) or not hmac.compare_digest(sent.encode(), tok.encode()):
        abort(400, "the form's CSRF token is missing or wrong; reload the page and try again")


@bp.before_app_request
def check_site() -> Any:
    """Refuse what a browser sends for another site (a form post, an <img>, a fetch)."""
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    if site in ("cross-site", "same-site"):
        return error(403, "refused: the request comes from another site's page; open "
                          "this app's own address")  # fmt: skip
    if site in ("same-origin", "none"):
        # the browser vouches for it; its Origin may read 'null' under no-referrer
        return None
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
        return error(403, f"refused: the request comes from the page of {origin!r}, not "
                          "from this app; open this app's own address")  # fmt: skip
    return None


@bp.before_app_request
def check_host() -> Any:
    trusted = _ext()["trusted"]
    if trusted is None:
        return None
    host = request.host.lower()
    name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    if name not in trusted:
        return error(400, f"host {host!r} is not this app's address; open it as 127.0.0.1")
    return None


@bp.after_app_request
def headers(resp: Response) -> Response:
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'none'; form-action 'self'; frame-ancestors 'none'",
    )
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    return resp


def error(status: int, message: str) -> Any:
    if _wants_json():
        return jsonify({"error": message}), status
    return render_template("index.html", error=message, result=None, **_index_ctx()), status


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(_: RequestEntityTooLarge) -> Any:
    mb = current_app.config["CLEANER_MAX_UPLOAD_MB"]
    return error(413, f"the upload is too large: the limit is {mb:g} MB (cleaner serve "
                      "--max-upload-mb raises it)")  # fmt: skip


@bp.app_errorhandler(HTTPException)
def http_error(e: HTTPException) -> Any:
    return error(e.code or 500, e.description or e.name)


def _index_ctx() -> dict[str, Any]:
    return {
        "root": str(_root()),
        "has_model": _ext()["predictor"] is not None,
        "max_mb": current_app.config["CLEANER_MAX_UPLOAD_MB"],
    }


def _decisions(plan: plans_file.Plan) -> review_file.Review:
    """The decisions taken on ``plan``; a damaged file is a 409 that names it and the fix."""
    try:
        return review_file.read(_root(), plan.run_id)
    except CleanerError as e:
        abort(409, str(e))


def plan_or_404(run_id: str) -> plans_file.Plan:
    if not _RUN_ID.match(run_id):
        abort(404, "no such plan")
    try:
        plan = plans_file.find_plan(_root(), run_id)
    except CleanerError as e:
        abort(500, str(e))
    if plan is None:
        abort(404, f"no plan {run_id!r} under {plans_file.plans_dir(_root())}")
    return plan


def item_or_404(plan: plans_file.Plan, item_id: str) -> plans_file.PlanItem:
    it = plan.item(item_id) if _ITEM_ID.match(item_id) else None
    if it is None:
        abort(404, f"plan {plan.run_id} has no item {item_id!r}")
    return it


# ------------------------------------------------------------------ upload and predict


@bp.get("/")
def index() -> Any:
    return render_template("index.html", result=None, error=None, **_index_ctx())


@bp.post("/predict")
def predict() -> Any:
    f = request.files.get("image")
    if f is None or not f.filename:
        return error(400, "choose an image file to upload (form field 'image')")
    t0 = time.perf_counter()
    predict_fn = _ext()["predictor"]
    size = _upload_size(f.stream)
    # the body is read, and decoded, only within this request's share of the memory budget
    with _ext()["decode_budget"].hold(upload_cost(size)) as share, _ext()["decode_slots"]:
        data = f.read()
        try:
            budget = images.upload_pixel_budget(len(data))
            width, height = images.header_size(data, max_pixels=budget)
            share.shrink(upload_cost(len(data), width * height))
            im = images.load_rgb(data, max_side=VIEW_SIDE, max_pixels=budget)
        except images.ImageError as e:
            return error(400, f"{f.filename!s} is not an image cleaner can read ({e.reason})")
        if predict_fn is None:
            return error(503, "no model loaded: start cleaner serve with --model M.keras")
        try:
            if isinstance(predict_fn, KerasPredictor):
                p = predict_fn.predict_bytes(data)  # loaded exactly as in training
            else:
                p = float(predict_fn(im))
        except CleanerError as e:
            return error(500, str(e))
    result = {
        "file": f.filename,
        "width": width,
        "height": height,
        "prediction": Label.FAKE if p >= 0.5 else Label.REAL,
        "prob_fake": round(p, 6),
        "prob_real": round(1.0 - p, 6),
        "seconds": round(time.perf_counter() - t0, 4),
    }
    if _wants_json():
        return jsonify(result)
    preview = io.BytesIO()
    thumb = im.copy()
    thumb.thumbnail((240, 240))
    thumb.save(preview, "JPEG", quality=85)
    result["preview"] = "data:image/jpeg;base64," + base64.b64encode(preview.getvalue()).decode()
    return render_template("index.html", result=result, error=None, **_index_ctx())


# ------------------------------------------------------------------ review queue


@bp.get("/review")
def review() -> Any:
    problems: list[str] = []
    plans = plans_file.list_plans(_root(), problems) if _root().is_dir() else []
    for p in problems:
        flash(f"skipped a plan file: {p}")
    if not plans:
        return render_template(
            "review.html", plan=None, root=str(_root()),
            problem=f"no plan under {_root()}/.cleaner/plans yet: run `cleaner separate "
                    f"--predictions F.json --root {_root()}` first",
        )  # fmt: skip
    plan = plans[-1]
    decisions = _decisions(plan).items
    items = plans_file.review_order(plan.review) + sorted(
        plan.moves, key=lambda i: (-i.confidence, i.path)
    )
    show = request.args.get("show", "open")
    if show == "open":
        items = [i for i in items if i.item_id not in decisions]
    try:
        page = max(0, int(request.args.get("page", "0")))
    except ValueError:
        page = 0
    pages = max(1, (len(items) + REVIEW_PAGE - 1) // REVIEW_PAGE)
    page = min(page, pages - 1)
    return render_template(
        "review.html",
        plan=plan,
        problem=None,
        root=str(_root()),
        items=items[page * REVIEW_PAGE : (page + 1) * REVIEW_PAGE],
        n_items=len(items),
        decisions=decisions,
        page=page,
        pages=pages,
        show=show,
    )


# ------------------------------------------------------------ label conflicts (dedupe)


def _conflict_groups() -> tuple[list[duplicates_file.DuplicateGroup], str | None]:
    """The conflict groups of ``duplicates.json`` (the same picture in both classes), and a
    problem line when the file is missing or damaged."""
    try:
        doc = duplicates_file.read(_root())
    except CleanerError as e:
        return [], str(e)
    if doc is None:
        return [], f"no duplicates file yet: run `cleaner dedupe --root {_root()}` first"
    return [g for g in doc.groups if g.conflict], None


@bp.get("/conflicts")
def conflicts() -> Any:
    """Label conflicts side by side (read only: dedupe never moves them; settle one by moving
    the file with the wrong label, e.g. ``cleaner separate`` or by hand, then dedupe again)."""
    groups, problem = _conflict_groups()
    return render_template(
        "conflicts.html", root=str(_root()), groups=list(enumerate(groups))[:REVIEW_PAGE],
        n_groups=len(groups), problem=problem,
    )  # fmt: skip


@bp.get("/conflict-thumb/<int:group>/<int:member>")
def conflict_thumb(group: int, member: int) -> Any:
    groups, _ = _conflict_groups()
    if not 0 <= group < len(groups) or not 0 <= member < len(groups[group].members):
        abort(404, f"no conflict member {group}/{member}")
    rel = groups[group].members[member].path
    try:
        p = resolve_inside(_root(), rel)
        data = _ext()["thumbs"].get(p)
    except PathEscapeError:
        abort(404, f"{rel} is not inside ROOT")
    except OSError:
        abort(404, f"{rel} is no longer in ROOT")
    except images.ImageError as e:
        abort(404, f"{rel}: {e.reason}")
    resp = Response(data, mimetype="image/jpeg")
    resp.headers["Cache-Control"] = "private, max-age=60"
    return resp


def _current_path(plan: plans_file.Plan, it: plans_file.PlanItem) -> Path | None:
    """Where the item's file is now (its path, or where an accept moved it), inside ROOT."""
    d = _decisions(plan).items.get(it.item_id)
    for rel in (d.dst if d is not None and d.dst else "", it.path, it.dst if plan.applied else ""):
        if not rel:
            continue
        try:
            p = resolve_inside(_root(), rel)
        except PathEscapeError:
            continue
        if p.is_file():
            return p
    return None


@bp.get("/thumb/<run_id>/<item_id>")
def thumb(run_id: str, item_id: str) -> Any:
    plan = plan_or_404(run_id)
    it = item_or_404(plan, item_id)
    p = _current_path(plan, it)
    if p is None:
        abort(404, f"{it.path} is no longer in ROOT")
    try:
        data = _ext()["thumbs"].get(p)
    except images.ImageError as e:
        abort(404, f"{it.path}: {e.reason}")
    resp = Response(data, mimetype="image/jpeg")
    resp.headers["Cache-Control"] = "private, max-age=60"
    return resp


@bp.post("/review/<run_id>/<item_id>/<action>")
def decide(run_id: str, item_id: str, action: str) -> Any:
    check_csrf()
    if action not in ("accept", "reject", "undo"):
        abort(404, f"unknown action {action!r}; use accept, reject or undo")
    plan = plan_or_404(run_id)
    it = item_or_404(plan, item_id)
    if action == "undo":
        return _undo(plan, it)
    with _ext()["lock"]:
        decisions = _decisions(plan)
        if (taken := decisions.items.get(it.item_id)) is not None:
            abort(409, f"{it.path} was already {taken.verdict}")
        record = review_file.Decision(
            ReviewVerdict.ACCEPTED if action == "accept" else ReviewVerdict.REJECTED,
            at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            path=it.path,
            kind=it.kind,
        )
        run: dict[str, Any] = {}
        if action == "accept":
            dst, journal_run, summary = _accept(plan, it)
            record = dataclasses.replace(record, journal_run=journal_run, dst=dst)
            run = {"run": summary}  # the executor's summary: in the answer, not the file
        review_file.write(_root(), decisions.with_item(it.item_id, record))
    if action == "accept":
        msg = f"moved {it.path} -> {record.dst} (journal run {record.journal_run}; " \
              f"`cleaner undo --run {record.journal_run}` reverses it)"  # fmt: skip
    else:
        msg = f"rejected: {it.path} stays in {it.from_label}"
    if _wants_json():
        return jsonify({"item": it.item_id, "message": msg, **record.to_json(), **run})
    flash(msg)
    back: dict[str, Any] = dict(request.args.to_dict())
    return redirect(url_for(".review", **back))


def _undo(plan: plans_file.Plan, it: plans_file.PlanItem) -> Any:
    """Withdraw a decision; an accepted move is reversed through the journal first."""
    from cleaner.journal import undo

    with _ext()["lock"]:
        decisions = _decisions(plan)
        d = decisions.items.get(it.item_id)
        if d is None:
            abort(409, f"{it.path} has no decision to undo")
        if d.accepted and d.journal_run:
            try:
                res = undo(_root(), d.journal_run)
            except CleanerError as e:
                abort(409, str(e))
            if res.left:
                abort(409, f"{it.path} was not moved back: {res.left[0].why}")
            msg = f"undone: {it.path} is back in {it.from_label} (journal run {res.run_id})"
        else:
            msg = f"decision on {it.path} withdrawn"
        review_file.write(_root(), decisions.with_item(it.item_id, None))
    if _wants_json():
        return jsonify({"item": it.item_id, "message": msg})
    flash(msg)
    back: dict[str, Any] = dict(request.args.to_dict())
    return redirect(url_for(".review", **back))


def _accept(plan: plans_file.Plan, it: plans_file.PlanItem) -> tuple[str, str, dict[str, Any]]:
    """Move one reviewed item: proposed as a one-move :class:`~cleaner.moves.MovePlan` (no
    document: :func:`decide` records the decision), applied by the move executor. Returns
    where it went, the journal run and the executor's summary."""
    from cleaner.journal import Move
    from cleaner.moves import MovePlan, execute

    if plan.applied and it.kind == "move":
        abort(409, f"plan {plan.run_id} was applied already; {it.path} has moved")
    if it.to_label not in LABELS:
        abort(400, f"item {it.item_id} names no destination class ({it.to_label!r})")
    try:
        src = resolve_inside(_root(), it.path)
        ws = open_dataset(_root(), require_classes=False)
        wanted = it.dst or ws.moved_path(it.path, it.to_label)
        resolve_inside(_root(), wanted)
        if ws.label_of(wanted) != it.to_label:
            abort(400, f"item {it.item_id}'s destination {wanted} is not in {it.to_label}")
    except PathEscapeError as e:
        abort(400, f"refused: {e}")
    if not src.is_file():
        abort(409, f"{it.path} is no longer there (moved or removed since the plan)")
    move = Move(src=it.path, dst=wanted, sha256=it.sha256 or None,
                reason=f"cleaner serve: accepted {plan.run_id}/{it.item_id}")  # fmt: skip
    proposal = MovePlan(
        f"cleaner serve accept {plan.run_id}/{it.item_id}",
        [move],
        journal={"plan": plan.run_id, "item": it.item_id},
    )
    try:
        outcome = execute(ws, proposal, apply=True, progress=False)
    except LockedError as e:
        abort(409, str(e))
    except CleanerError as e:
        abort(400, str(e))
    run = outcome.run
    res = run.results[0] if run is not None and run.results else None
    if run is None or res is None or res.status != "moved" or res.dst is None:
        why = res.why if res is not None else "nothing moved"
        abort(409, f"{it.path} was not moved: {why}")
    return res.dst, run.run_id, outcome.summary()


def create_app(
    root: str | os.PathLike[str],
    *,
    model_path: str | os.PathLike[str] | None = None,
    predictor: Predictor | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    secret_key: bytes | None = None,
    trusted_hosts: Collection[str] | None = LOOPBACK_NAMES,
    decode_budget_mb: float = DEFAULT_BUDGET_MB,
) -> Flask:
    """The app for dataset ``root``. ``predictor`` (an RGB image -> prob_fake) replaces the
    model, for tests and other front ends; else ``model_path`` is loaded on the first upload.
    ``trusted_hosts``: the host names the browser may use, so a page of another site that
    re-points its name at 127.0.0.1 (DNS rebinding) is refused; None accepts any (``--host
    0.0.0.0``). ``decode_budget_mb``: upload bodies and decodes in flight, all requests
    together (:mod:`cleaner.web.budget`)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_bytes(32),
        MAX_CONTENT_LENGTH=int(max_upload_mb * 1024 * 1024),
        CLEANER_MAX_UPLOAD_MB=max_upload_mb,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        TEMPLATES_AUTO_RELOAD=False,
    )
    predict_fn: Predictor | None = predictor
    if predict_fn is None and model_path is not None:
        predict_fn = KerasPredictor(Path(model_path))
    app.extensions["cleaner"] = {
        "root": Path(os.path.abspath(root)),
        "predictor": predict_fn,
        "thumbs": _ThumbCache(),
        "lock": threading.Lock(),
        "decode_slots": threading.BoundedSemaphore(DECODE_SLOTS),
        "decode_budget": DecodeBudget(int(decode_budget_mb * 1024 * 1024)),
        "trusted": {h.lower() for h in trusted_hosts} if trusted_hosts is not None else None,
    }
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["labels"] = LABELS
    app.register_blueprint(bp)
    return app


def run_server(app: Flask, host: str, port: int) -> None:
    """Serve ``app`` until Ctrl-C: werkzeug's threaded server, never its reloader or debugger
    (the debugger would run code sent by the browser)."""
    from werkzeug.serving import run_simple

    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
