"""What a derived result was computed with, besides the data: the software and its configuration.

    release_digest()   the package's version and the bytes of every contract, reference table
                       and setting file under expectations/ (divisions, rule parameters,
                       access matrix, calendar): equal digests mean the same rules and tables

Used to tell whether a result kept from an earlier run (the findings of a night, the profiles of
a publication) still holds without computing it again (issue 13).
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path

_ROOT = Path(__file__).resolve().parent
_KINDS = (".yaml", ".yml", ".csv", ".json")


@cache
def release_digest() -> str:
    try:
        version = metadata.version("datashare")
    except metadata.PackageNotFoundError:
        version = "unknown"
    digest = hashlib.sha256(version.encode())
    for path in sorted(_ROOT.rglob("*")):
        if path.is_file() and path.suffix in _KINDS:
            digest.update(str(path.relative_to(_ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
