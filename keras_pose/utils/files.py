"""Reading user files with errors that name the file."""

from __future__ import annotations

import json
import os
from typing import Any


def read_json(path: str | os.PathLike, what: str = "json file") -> Any:
    """The content of the json file ``path``.

    Raises:
        FileNotFoundError: no such file (named).
        ValueError: the file is not json (names the file, ``what`` it should be, and where the
            parser stopped).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: {what} is not valid json ({error})") from None
