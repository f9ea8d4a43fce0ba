"""The one read of a data set's file that the loaders share."""

from __future__ import annotations

from pathlib import Path

from ..bounded import Refused, read_regular
from ..errors import DataError


def read_data_file(path: Path, limit: int) -> bytes:
    """The bytes of one file of a data set, refused with one line when it is no regular
    file (a FIFO would block the read for ever) or holds more than ``limit`` bytes. A
    missing file raises FileNotFoundError: each loader says what belongs there."""
    try:
        return read_regular(path, limit)
    except Refused as exc:
        raise DataError(f"{exc}; acnkit reads a data set's files as regular files of at "
                        f"most {limit} bytes (split a larger set)") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
