"""Provenance as evidence: files that name their generator are moved by `cleaner separate`
reading the audit's predictions file; camera EXIF alone never moves a file.

The C2PA manifest is signed in the test with a certificate chain made here (``cryptography``):
nothing is downloaded."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from cleaner.audit.properties import read_properties
from cleaner.cli import app
from tests.image_factory import make_jpeg, make_png

runner = CliRunner()
TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def _cert_chain() -> tuple[bytes, bytes]:
    """(PEM chain: signer then CA, PEM private key) of a fresh test CA and ES256 signer."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cleaner tests")
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), org])

    def usage(sign_certs: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=sign_certs,
            crl_sign=sign_certs, encipher_only=False, decipher_only=False,
        )  # fmt: skip

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def builder(
        subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
        )  # fmt: skip

    ca_pub = ca_key.public_key()
    ca = (
        builder("test ca", name("test ca"), ca_pub)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    ee = (
        builder("test signer", ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_pub), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = ee.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    pkey = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    return pem, pkey


def c2pa_jpeg(source_type: str = TRAINED) -> bytes:
    """A small JPEG carrying a signed C2PA manifest whose action states ``source_type``."""
    import c2pa

    certs, key = _cert_chain()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", certs, key, None))
    manifest = {
        "claim_generator_info": [{"name": "cleaner-tests", "version": "1"}],
        "title": "generated.jpg",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [
            {"action": "c2pa.created", "digitalSourceType": source_type}]}}],
    }  # fmt: skip
    src = io.BytesIO()
    Image.new("RGB", (48, 48), (120, 30, 200)).save(src, "JPEG", quality=90)
    src.seek(0)
    out = io.BytesIO()
    with c2pa.Builder(manifest) as b:
        b.sign(signer, "image/jpeg", src, out)
    return out.getvalue()


def webui_png() -> bytes:
    info = PngInfo()
    info.add_text("parameters", "a portrait\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1")
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (10, 200, 90)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def camera_jpeg() -> bytes:
    ex = Image.Exif()
    ex[0x010F], ex[0x0110] = "Canon", "Canon EOS R5"
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 90, 10)).save(buf, "JPEG", quality=88, exif=ex)
    return buf.getvalue()


def test_c2pa_manifest_is_read_with_its_validation_state() -> None:
    p = read_properties(c2pa_jpeg())
    assert p["c2pa"] in ("Valid", "Trusted") and p["c2pa_source"] == "trainedAlgorithmicMedia"
    assert p["c2pa_generator"] == "cleaner-tests" and "C2PA" in p["generator"]
    capture = read_properties(
        c2pa_jpeg("http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture")
    )
    assert capture["c2pa_source"] == "digitalCapture" and capture["generator"] == ""


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("prompt", '{"3": {"class_type": "KSampler"}}'),
        ("workflow", '{"nodes": [{"id": 3, "type": "KSampler"}], "links": []}'),
    ],
)
def test_comfyui_chunks_are_proof(key: str, value: str) -> None:
    info = PngInfo()
    info.add_text(key, value)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    assert "ComfyUI" in read_properties(buf.getvalue())["generator"]


def test_webui_parameters_in_a_jpeg_user_comment_are_proof() -> None:
    text = "a portrait\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1"
    for comment, proof in (
        (b"UNICODE\x00" + text.encode("utf-16-be"), True),
        (b"ASCII\x00\x00\x00" + text.encode(), True),
        (b"ASCII\x00\x00\x00holiday in Rome", False),
    ):
        ex = Image.Exif()
        ex.get_ifd(0x8769)[0x9286] = comment
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=ex)
        assert bool(read_properties(buf.getvalue())["generator"]) is proof, comment


def test_software_naming_a_generator_is_proof_and_an_editor_is_not() -> None:
    for software, proof in (("Adobe Firefly", True), ("Midjourney v6", True), ("GIMP 2.10", False)):
        ex = Image.Exif()
        ex[0x0131] = software
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=ex)
        assert bool(read_properties(buf.getvalue())["generator"]) is proof, software


def test_provenance_file_makes_separate_move_proven_fakes_only(tmp_path: Path) -> None:
    root = tmp_path / "R"
    for i in range(12):
        make_jpeg(root / "real_images" / f"r{i}.jpg", seed=i)
        make_png(root / "fake_images" / f"f{i}.png", seed=50 + i)
    (root / "real_images" / "webui.png").write_bytes(webui_png())
    (root / "real_images" / "c2pa.jpg").write_bytes(c2pa_jpeg())
    (root / "fake_images" / "camera.jpg").write_bytes(camera_jpeg())
    preds = tmp_path / "preds" / "provenance.json"

    r = runner.invoke(app, ["audit", "--root", str(root), "--predictions-out", str(preds)])
    assert r.exit_code == 0, r.output
    assert "2 files name a generator (2 of them in the real folder)" in r.stdout
    doc = json.loads(preds.read_text())
    assert doc["format"] == "cleaner.predictions.v1"
    got = {e["path"]: e["prob_fake"] for e in doc["predictions"]}
    assert got == {"real_images/webui.png": 1.0, "real_images/c2pa.jpg": 1.0}
    audit = json.loads((root / ".cleaner" / "audit.json").read_text())
    weak = [e for e in audit["provenance"] if e["strength"] == "weak"]
    assert [e["path"] for e in weak] == ["fake_images/camera.jpg"] and weak[0]["says"] == "real"

    r = runner.invoke(
        app, ["separate", "--root", str(root), "--predictions", str(preds), "--apply"]
    )
    assert r.exit_code == 0, r.output
    assert (root / "fake_images" / "webui.png").is_file()
    assert (root / "fake_images" / "c2pa.jpg").is_file()
    assert not (root / "real_images" / "webui.png").exists()
    assert (root / "fake_images" / "camera.jpg").is_file()  # weak evidence never moves a file
    assert len(list((root / "real_images").iterdir())) == 12
    r = runner.invoke(app, ["undo", "--root", str(root)])
    assert r.exit_code == 0, r.output
    assert (root / "real_images" / "webui.png").is_file()
