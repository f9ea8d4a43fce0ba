"""The coding side of :func:`acnkit.testing.check_portable`, run in a subprocess (so that
its kernels are the ones that process's environment allows):
``python -m acnkit.codec.crosscheck encode|decode JOBS`` with JOBS a JSON list.

- ``encode``: jobs [run folder, images .npy, target file, mode, lanes or null]; prints, per
  job, the file's arithmetic and the note compress gave (why a model has no exact form);
- ``decode``: jobs [run folder, file]; prints, per job, the SHA-256 of the decoded array.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..trained import load_run
from .compress import compress, decompress
from .fileformat import read_header


def digest(array: np.ndarray, as_set: bool) -> str:
    """SHA-256 of an array's bytes, dtype and shape (its images sorted for a set: a file
    written elsewhere may hold them in another order, if it chose other lanes)."""
    if as_set:
        rows = array.reshape(len(array), -1)
        array = array[np.lexsort(rows.T[::-1])] if rows.size else array
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()
                          + str((array.dtype.str, array.shape)).encode()).hexdigest()


def main(argv: list[str]) -> None:
    command, jobs = argv[0], json.loads(argv[1])
    models: dict[str, Any] = {}

    def model(run_dir: str) -> Any:
        if run_dir not in models:
            models[run_dir] = load_run(run_dir, "cpu").model
        return models[run_dir]

    out: list[Any] = []
    if command == "encode":
        for run_dir, source, target, mode, lanes in jobs:
            notes: list[str] = []
            coded = compress(model(run_dir), np.load(source), mode, lanes=lanes,
                             plain_if_smaller=False, note=notes.append)
            Path(target).write_bytes(coded.data)
            out.append([coded.header["arithmetic"], " ".join(notes)])
    elif command == "decode":
        for run_dir, file in jobs:
            data = Path(file).read_bytes()
            out.append(digest(decompress(model(run_dir), data, file),
                              read_header(data)[0]["mode"] == "set"))
    else:
        raise SystemExit(f"unknown command {command!r}: encode or decode")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
