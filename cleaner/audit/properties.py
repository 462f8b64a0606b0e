"""What a file's form says without its picture: container, size, compression, metadata, name.

One function, :func:`read_properties`, reads one file's bytes once: the sha256, the header
through :mod:`cleaner.images` (its sniffing and size guard; the pixels are never decoded), the
JPEG quantisation tables (a quality estimate), chroma subsampling, progressive, colour mode,
ICC, EXIF camera make/model/software, PNG text chunks, XMP and a C2PA manifest (read by
``c2pa-python`` only when the bytes hold a C2PA JUMBF box). It never raises: a file that cannot
be read gets a status and a reason, as in the manifest.

It never goes on the network: a file may name a remote C2PA manifest (XMP
``dcterms:provenance="http://..."``), which ``c2pa-python`` would fetch by default, a request
to any host the file chooses. The reader's context turns remote fetches (and OCSP) off, and
the reference is recorded as it is (``c2pa_remote``), never followed.

Provenance is read here too, because it is the same metadata: a generator named by the file,
by one of the exact signatures of :data:`SIGNATURES` only (Stable Diffusion WebUI's
``parameters``, a ComfyUI graph, a valid C2PA claim of trained algorithmic media, a known
generator's name as whole words in Software), and a camera named by its EXIF.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin

from cleaner import images

MAX_FILE_BYTES = images.MAX_FILE_BYTES
"""Larger files are hashed but not parsed (status ``too-large``), as the scan does."""

Props = dict[str, Any]
"""One file's properties: JSON-able scalars and short lists (the cache stores them as they are)."""

PROPS_VERSION = 4
"""Bumped when :func:`read_properties` changes what it records (the cache is then rebuilt)."""

# ------------------------------------------------------------------------ JPEG quality

_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)  # fmt: skip
"""The IJG (libjpeg) standard luminance table, natural order, as Pillow reports tables."""


def _ijg_tables() -> np.ndarray:
    """``(100, 64)``: the luminance table libjpeg writes for quality 1..100."""
    q = np.arange(1, 101, dtype=np.float64)
    scale = np.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    return np.clip(np.floor((_IJG_LUMA[None, :] * scale[:, None] + 50.0) / 100.0), 1, 255)


_TABLES = _ijg_tables()


def jpeg_quality(luma: Sequence[int]) -> int:
    """The libjpeg quality (1-100) whose luminance table is nearest to ``luma`` (in log
    ratio): exact for files written by libjpeg-based encoders (Pillow, OpenCV), the nearest
    equivalent for others (cameras' own tables)."""
    return _quality(tuple(int(v) for v in luma))


@functools.lru_cache(maxsize=256)
def _quality(luma: tuple[int, ...]) -> int:
    """Cached: a folder holds few distinct tables."""
    t = np.asarray(luma, dtype=np.float64)[:64]
    if t.size != 64:
        return 0
    err = np.abs(np.log(_TABLES) - np.log(np.maximum(t, 1.0))[None, :]).sum(axis=1)
    return int(np.argmin(err)) + 1


# ------------------------------------------------------------------------ provenance


@dataclass(frozen=True)
class Signature:
    """One exact, documented sign that a generator made the file (a hard label of fake)."""

    key: str
    where: str
    """The metadata it is read from."""
    rule: str
    """What must hold, exactly (never a substring of free text)."""


SIGNATURES: tuple[Signature, ...] = (
    Signature("webui", "PNG text chunk 'parameters', or EXIF UserComment (JPEG, WebP)",
              "Stable Diffusion WebUI's generation parameters: a line 'Steps: <n>, Sampler: "
              "<name>' (AUTOMATIC1111, Forge, SD.Next and Fooocus write this form)"),
    Signature("comfyui", "PNG text chunk 'prompt' or 'workflow'",
              "a ComfyUI graph: 'prompt' a JSON object of nodes, each with a 'class_type' "
              "(and 'inputs'); 'workflow' a JSON object whose 'nodes' list holds nodes with a "
              "'type'"),
    Signature("c2pa", "a C2PA manifest (JUMBF), validated by c2pa-python offline",
              "validation state Valid or Trusted, and a digital source type "
              "trainedAlgorithmicMedia or compositeWithTrainedAlgorithmicMedia (IPTC)"),
    Signature("software", "EXIF Software (0x0131) or PNG text chunk 'Software'",
              "a generator of GENERATOR_NAMES as whole words, in order (case and punctuation "
              "aside): 'Midjourney v6' names Midjourney, 'Imagenomic Portraiture' or 'Visor de "
              "imágenes' name nothing"),
)  # fmt: skip
"""The only metadata that counts as proof of fake; anything else (an editor, a camera, a word
inside a word) is no proof. README: "Provenance signatures"."""

GENERATOR_NAMES: tuple[str, ...] = (
    "Stable Diffusion", "AUTOMATIC1111", "ComfyUI", "InvokeAI", "Fooocus", "NovelAI",
    "Midjourney", "DALL-E", "Adobe Firefly", "Google Imagen", "Leonardo.Ai",
    "DreamStudio", "NightCafe", "SDXL",
)  # fmt: skip
"""Generators known to name themselves in a Software field, matched as whole words in order
(``DALL·E`` is ``DALL-E``: punctuation aside). A name that is an ordinary word or a common
product word alone (imagen, flux, firefly) is only listed with its maker's name."""

AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
"""C2PA/IPTC digital source types that say a model made (part of) the picture."""

C2PA_VALID = frozenset({"Valid", "Trusted"})
"""c2pa-python validation states of a manifest whose claim can be taken as said."""

_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.casefold()))


_GENERATOR_WORDS = tuple((_words(n), n) for n in GENERATOR_NAMES)

_WEBUI_LINE = re.compile(r"(?:^|\n)\s*Steps: \d+, Sampler: [^,\n]+")
_IGNORED_INFO = frozenset(
    {"dpi", "gamma", "transparency", "icc_profile", "exif", "srgb", "aspect", "chromaticity",
     "XML:com.adobe.xmp", "xmp", "jfif", "jfif_version", "jfif_unit", "jfif_density",
     "progressive", "progression", "adobe", "adobe_transform", "interlace", "bbox", "duration",
     "loop", "background", "version", "extension", "comment", "compression", "mp", "photoshop",
     "lossless", "timestamp", "default_image", "frames"}
)  # fmt: skip
"""Pillow ``info`` keys that are format bookkeeping, not text chunks."""


def generator_in(text: str) -> str:
    """The generator of :data:`GENERATOR_NAMES` that ``text`` names as whole words, or ''."""
    words = _words(text or "")
    for want, name in _GENERATOR_WORDS:
        n = len(want)
        if any(words[i : i + n] == want for i in range(len(words) - n + 1)):
            return name
    return ""


def webui_parameters(text: str) -> bool:
    """Stable Diffusion WebUI's parameters: a line ``Steps: <n>, Sampler: <name>``."""
    return bool(_WEBUI_LINE.search(text or ""))


def comfyui_graph(key: str, text: str) -> bool:
    """A ComfyUI ``prompt`` (nodes with ``class_type``) or ``workflow`` (``nodes`` with
    ``type``), parsed as JSON; anything else under those keys is no proof."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return False
    if not isinstance(doc, dict) or not doc:
        return False
    if key == "prompt":
        return all(
            isinstance(n, dict)
            and isinstance(n.get("class_type"), str)
            and isinstance(n.get("inputs", {}), dict)
            for n in doc.values()
        )
    nodes = doc.get("nodes")
    return (
        isinstance(nodes, list)
        and bool(nodes)
        and all(isinstance(n, dict) and isinstance(n.get("type"), str) for n in nodes)
    )


# ------------------------------------------------------------------------ reading


def _bad(status: str, reason: str, sha: str = "", size: int = 0, fmt: str = "") -> Props:
    return {"status": status, "reason": reason, "sha256": sha, "bytes": size, "format": fmt}


def read_file(abspath: str) -> Props:
    """Read one file (never follows a non-regular file, never reads more than
    :data:`MAX_FILE_BYTES`) and return its properties; never raises."""
    got = images.read_regular(abspath, MAX_FILE_BYTES)
    if got.data is None:
        return _bad(got.status, got.reason, got.sha256, got.size)
    return read_properties(got.data)


def read_properties(data: bytes) -> Props:
    """Properties of one file's bytes (see the module docstring); never raises."""
    sha = hashlib.sha256(data).hexdigest()
    try:
        im = images.open_header(data)
    except images.ImageError as e:
        return _bad(e.status, e.reason, sha, len(data), images.sniff_format(data[:32]) or "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings must never reach stderr
            return _properties(im, data, sha)
    except Exception as e:  # a hostile header that parses but breaks a reader: one file only
        reason = f"metadata does not parse ({type(e).__name__}: {e})"[:300]
        return _bad(images.CORRUPT, reason, sha, len(data), im.format or "")


def _metadata_part(im: Image.Image, fmt: str, data: bytes) -> bytes:
    """The bytes that can hold metadata: a JPEG's segments before its first scan (XMP, C2PA's
    APP11 boxes; the compressed pixels after it are never searched), the whole file otherwise."""
    fp = getattr(im, "fp", None)
    if fmt in ("JPEG", "MPO") and fp is not None:
        return data[: max(int(fp.tell()), 2)]  # Pillow stops reading at the first scan
    return data


def _truncated(fmt: str, data: bytes) -> str:
    """Why the file looks cut short (a missing end marker), without decoding the pixels."""
    if fmt == "JPEG" and data.rfind(b"\xff\xd9") < 0:
        return "JPEG has no end-of-image marker (the file is cut short)"
    if fmt == "PNG" and data.rfind(b"IEND") < 0:
        return "PNG has no IEND chunk (the file is cut short)"
    return ""


def _properties(im: Image.Image, data: bytes, sha: str) -> Props:
    fmt = im.format or images.sniff_format(data[:32]) or ""
    head = _metadata_part(im, fmt, data)
    cut = _truncated(fmt, data)
    if cut:
        return _bad(images.TRUNCATED, cut, sha, len(data), fmt)
    info = im.info
    w, h = im.size
    p: Props = {
        "status": images.OK, "reason": "", "sha256": sha, "bytes": len(data), "format": fmt,
        "width": w, "height": h, "mode": im.mode,
        "alpha": im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in info,
        "jpeg_quality": 0, "subsampling": "", "progressive": False,
        "icc": bool(info.get("icc_profile")),
        "xmp": b"<x:xmpmeta" in head or "XML:com.adobe.xmp" in info or bool(info.get("xmp")),
    }  # fmt: skip
    if fmt in ("JPEG", "MPO"):
        q = getattr(im, "quantization", None) or {}
        p["jpeg_quality"] = jpeg_quality(q[0]) if 0 in q else 0
        p["subsampling"] = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(
            JpegImagePlugin.get_sampling(im), "other"
        )
        p["progressive"] = bool(info.get("progressive") or info.get("progression"))
    p.update(_exif(im))
    text = {str(k): v for k, v in info.items() if str(k) not in _IGNORED_INFO}
    p["png_text"] = sorted(text)[:20]
    p.update(_c2pa(data, fmt) if b"c2pa" in head else {"c2pa": "", "c2pa_source": "",
                                                         "c2pa_generator": ""})  # fmt: skip
    p["c2pa_remote"] = remote_manifest(head)
    if p["c2pa_remote"] and not p["c2pa"]:
        p["c2pa"] = REMOTE_NOT_FETCHED
    p["generator"] = _generator(text, p)
    return p


def _exif(im: Image.Image) -> Props:
    """EXIF presence, the camera (make and model) and the Software tag."""
    out: Props = {"exif": False, "camera": "", "software": "", "webui_exif": False}
    if not im.info.get("exif") and im.format not in ("TIFF",):
        return out
    try:
        ex = im.getexif()
    except Exception:  # a broken EXIF block is not a broken image
        return out
    out["exif"] = len(ex) > 0
    make = str(ex.get(0x010F, "") or "").strip("\x00 ")
    model = str(ex.get(0x0110, "") or "").strip("\x00 ")
    out["camera"] = (model if model.lower().startswith(make.lower()) else f"{make} {model}")[
        :80
    ].strip()
    out["software"] = str(ex.get(0x0131, "") or "").strip("\x00 ")[:80]
    out["webui_exif"] = _webui_comment(ex)
    return out


def _webui_comment(ex: Image.Exif) -> bool:
    """Stable Diffusion WebUI writes its ``parameters`` into a JPEG's or WebP's EXIF
    UserComment: a prompt, then ``Steps: N, Sampler: ...``."""
    try:
        raw = ex.get_ifd(0x8769).get(0x9286)
    except Exception:  # a broken EXIF sub-IFD is not a broken image
        return False
    if not isinstance(raw, bytes | str) or not raw:
        return False
    data = raw.encode() if isinstance(raw, str) else raw
    body = data[8:] if data[:8] in (b"UNICODE\x00", b"ASCII\x00\x00\x00") else data
    return any(webui_parameters(body.decode(enc, errors="ignore"))
               for enc in ("utf-16-be", "utf-16-le", "utf-8"))  # fmt: skip


C2PA_OFFLINE = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
"""``c2pa-python`` settings of every read: nothing named by a file is fetched (a remote
manifest, a certificate's OCSP status); validation uses what the file holds."""

REMOTE_NOT_FETCHED = "remote manifest not fetched"

_REMOTE_RE = re.compile(
    rb"dcterms:provenance\s*(?:=\s*[\"']|>)\s*([^\"'<\s]{1,500})", re.IGNORECASE
)
"""XMP's reference to a remote C2PA manifest (attribute or element form)."""

_contexts: dict[int, Any] = {}
"""pid -> this process's offline c2pa Context (a context does not survive a fork)."""


def remote_manifest(head: bytes) -> str:
    """The URL of a remote C2PA manifest the metadata names ('' if none); never fetched."""
    m = _REMOTE_RE.search(head)
    return m.group(1).decode("utf-8", "replace")[:200] if m else ""


def _offline_context() -> Any:
    import c2pa

    ctx = _contexts.get(os.getpid())
    if ctx is None:
        ctx = c2pa.Context(c2pa.Settings.from_dict(C2PA_OFFLINE))
        _contexts.clear()
        _contexts[os.getpid()] = ctx
    return ctx


def _c2pa(data: bytes, fmt: str) -> Props:
    """The C2PA manifest's validation state, digital source type and claim generator
    (``c2pa-python``), read only when the bytes hold a C2PA JUMBF box."""
    out: Props = {"c2pa": "", "c2pa_source": "", "c2pa_generator": ""}
    mime = {
        "JPEG": "image/jpeg",
        "MPO": "image/jpeg",
        "PNG": "image/png",
        "WEBP": "image/webp",
        "TIFF": "image/tiff",
        "GIF": "image/gif",
        "AVIF": "image/avif",
        "HEIF": "image/heif",
    }
    if fmt not in mime:
        return out
    try:
        import io

        import c2pa

        reader = c2pa.Reader.try_create(mime[fmt], io.BytesIO(data), context=_offline_context())
        if reader is None:
            return out
        with reader:
            manifest = reader.get_active_manifest() or {}
            out["c2pa"] = str(reader.get_validation_state() or "unknown")
    except Exception as e:  # a damaged manifest is recorded, never fatal
        remote = "remote" in str(e).lower()
        out["c2pa"] = REMOTE_NOT_FETCHED if remote else f"unreadable ({type(e).__name__})"
        return out
    sources = re.findall(r'"digitalSourceType":\s*"([^"]+)"', json.dumps(manifest))
    out["c2pa_source"] = sources[-1].rsplit("/", 1)[-1] if sources else ""
    gens = manifest.get("claim_generator_info") or []
    names = [str(g.get("name", "")) for g in gens if isinstance(g, dict)]
    out["c2pa_generator"] = (", ".join(names) or str(manifest.get("claim_generator", "")))[:80]
    return out


def _generator(text: dict[str, Any], p: Props) -> str:
    """Which of :data:`SIGNATURES` the metadata shows ('' if none)."""
    if webui_parameters(str(text.get("parameters", ""))):
        return "PNG text 'parameters' (Stable Diffusion WebUI)"
    for key in ("prompt", "workflow"):
        if key in text and comfyui_graph(key, str(text[key])):
            return f"PNG text '{key}' holds a ComfyUI graph"
    if p["webui_exif"]:
        return "EXIF UserComment holds generation parameters (Stable Diffusion WebUI)"
    if p["c2pa_source"] in AI_SOURCE_TYPES and p["c2pa"] in C2PA_VALID:
        return f"C2PA digital source type {p['c2pa_source']} ({p['c2pa']} manifest)"
    for where, value in (("EXIF Software", p["software"]),
                         ("PNG text Software", str(text.get("Software", "")))):  # fmt: skip
        name = generator_in(value)
        if name:
            return f"{where} names the generator {name} ({value})"[:120]
    return ""


_OK_TYPES: dict[str, type | tuple[type, ...]] = {
    "status": str, "reason": str, "sha256": str, "bytes": int, "format": str, "width": int,
    "height": int, "mode": str, "alpha": bool, "jpeg_quality": int, "subsampling": str,
    "progressive": bool, "icc": bool, "xmp": bool, "exif": bool, "camera": str, "software": str,
    "webui_exif": bool, "png_text": list, "c2pa": str, "c2pa_source": str,
    "c2pa_generator": str, "c2pa_remote": str, "generator": str,
}  # fmt: skip
"""The fields (and types) of a readable file's properties, as :func:`_properties` writes them."""
_BAD_TYPES = {k: _OK_TYPES[k] for k in ("status", "reason", "sha256", "bytes", "format")}
_SHA = re.compile(r"[0-9a-f]{64}")


def _typed(v: Any, t: type | tuple[type, ...]) -> bool:
    """``isinstance``, with bool never standing for int (``true`` is no width)."""
    return isinstance(v, t) and (t is bool or not isinstance(v, bool))


def valid(p: Any, sha: str) -> bool:
    """Whether a cached entry is properties this module wrote for the bytes ``sha``: every
    field present with its type, sizes positive, the quality in 0..100, the text chunks names.
    A damaged cache entry (width 0, a key missing, 'abc', 1e400, NaN, a wrong type) is not, and
    is read again from the file."""
    if not isinstance(p, dict) or p.get("sha256") != sha or not _SHA.fullmatch(sha):
        return False
    want = _OK_TYPES if p.get("status") == images.OK else _BAD_TYPES
    if not all(_typed(p.get(k), t) for k, t in want.items()) or p["bytes"] < 0:
        return False
    if want is _BAD_TYPES:
        return True
    return (
        0 < p["width"] <= images.MAX_PIXELS
        and 0 < p["height"] <= images.MAX_PIXELS
        and 0 <= p["jpeg_quality"] <= 100
        and all(isinstance(t, str) for t in p["png_text"])
    )


def read_batch(batch: Sequence[str]) -> list[Props]:
    """Pure batch function for the engine: absolute paths -> properties."""
    return [read_file(a) for a in batch]


def crashed(abspath: str, error: BaseException) -> Props:
    """The properties of a file whose reading killed the worker process."""
    return _bad(images.CORRUPT, f"the reader crashed on this file (worker died: {error})"[:300])


# ------------------------------------------------------------------------ names

_WORD_SPLIT = re.compile(r"[^0-9A-Za-z]+")


def name_tokens(relpath: str) -> list[str]:
    """The words of a file name that can leak a label (``IMG_0042.jpg`` -> ``img``,
    ``ComfyUI_00001_.png`` -> ``comfyui``): lower-case letter runs of 3 or more, once leading
    and trailing digits are stripped; a word still mixing letters and digits is an id
    (``00AUP94LQS``, a content hash) and says nothing, so it is left out."""
    stem = relpath.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    out: list[str] = []
    for word in _WORD_SPLIT.split(stem):
        core = word.strip("0123456789").lower()
        if len(core) >= 3 and core.isalpha() and core not in out:
            out.append(core)
    return out
