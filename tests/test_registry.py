"""Model assembly from parts: success, corrupted part, missing part, interrupted assembly."""

import hashlib
from pathlib import Path

import pytest

from sounding.tools.llm.registry import (
    EMBEDDED_MODELS,
    EmbeddedModel,
    ModelError,
    ModelPart,
    assemble,
    is_assembled,
    locate_installed_part,
    model_path,
)


def _fake_model(tmp_path: Path, n: int = 3) -> tuple[EmbeddedModel, dict[str, Path]]:
    files: dict[str, Path] = {}
    parts = []
    whole = hashlib.sha256()
    for i in range(n):
        data = bytes([i]) * (1000 + i)
        path = tmp_path / "parts" / f"part{i}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        whole.update(data)
        parts.append(
            ModelPart(f"fake-part{i}", "1.0", f"p/part{i}.bin", hashlib.sha256(data).hexdigest(), len(data))
        )
        files[f"fake-part{i}"] = path
    size = sum(p.size for p in parts)
    model = EmbeddedModel("fake", "fake", "fake.gguf", tuple(parts), size, whole.hexdigest(), 1, "none", "x")
    return model, files


def _locator(files: dict[str, Path]):
    def locate(part: ModelPart) -> Path:
        if part.distribution not in files:
            raise ModelError(f"model part package {part.distribution} is not installed")
        return files[part.distribution]

    return locate


def test_assembles_once_and_verifies(tmp_path):
    model, files = _fake_model(tmp_path)
    out = assemble(model, tmp_path / "models", locate=_locator(files))
    assert out.read_bytes() == b"".join(f.read_bytes() for f in files.values())
    assert is_assembled(model, tmp_path / "models")
    files["fake-part0"].unlink()  # a second call trusts the verified marker and reads no part
    assert assemble(model, tmp_path / "models", locate=_locator(files)) == out


def test_corrupted_part_names_its_package_and_leaves_nothing(tmp_path):
    model, files = _fake_model(tmp_path)
    raw = bytearray(files["fake-part1"].read_bytes())
    raw[10] ^= 0xFF
    files["fake-part1"].write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="fake-part1"):
        assemble(model, tmp_path / "models", locate=_locator(files))
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_part_names_its_package_before_writing(tmp_path):
    model, files = _fake_model(tmp_path)
    del files["fake-part2"]
    with pytest.raises(ModelError, match="fake-part2"):
        assemble(model, tmp_path / "models", locate=_locator(files))
    assert not (tmp_path / "models" / "fake.gguf").exists()


def test_interrupted_assembly_leaves_no_valid_looking_file(tmp_path):
    model, files = _fake_model(tmp_path)

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        assemble(model, tmp_path / "models", locate=_locator(files), progress=interrupt)
    assert list((tmp_path / "models").iterdir()) == []
    assert not is_assembled(model, tmp_path / "models")


def test_tampered_assembled_file_is_reassembled(tmp_path):
    model, files = _fake_model(tmp_path)
    out = assemble(model, tmp_path / "models", locate=_locator(files))
    out.write_bytes(b"garbage")
    assert not is_assembled(model, tmp_path / "models")
    assemble(model, tmp_path / "models", locate=_locator(files))
    assert out.stat().st_size == model.size


def test_uninstalled_distribution_is_named():
    part = ModelPart("no-such-model-part-xyz", "1.0", "x.bin", "0" * 64, 1)
    with pytest.raises(ModelError, match=r"no-such-model-part-xyz.*pip install no-such-model-part-xyz==1.0"):
        locate_installed_part(part)


def test_registry_pins_and_sizes_add_up():
    for model in EMBEDDED_MODELS.values():
        assert sum(p.size for p in model.parts) == model.size
        assert all("==" in p.requirement for p in model.parts)


def test_real_smollm2_assembles_and_verifies(smollm2_path, test_home):
    model = EMBEDDED_MODELS["smollm2-135m"]
    assert smollm2_path == model_path(model, test_home / "models")
    assert is_assembled(model, test_home / "models")
