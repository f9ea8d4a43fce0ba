"""The one read of a data set's file that the loaders share."""

from __future__ import annotations

from pathlib import Path

from ..bounded import NotRegularFile, TooLarge, read_regular
from ..errors import DataError


def read_data_file(path: Path, limit: int) -> bytes:
    """The bytes of one file of a data set, refused with one line when it is no regular
    file (a FIFO would block the read for ever) or holds more than ``limit`` bytes. A
    missing file raises FileNotFoundError: each loader says what belongs there."""
    try:
        return read_regular(path, limit)
    except NotRegularFile as exc:
        raise DataError(f"{path} is {exc.kind}, not a data file; give the folder of the "
                        f"data set's files") from None
    except TooLarge:
        raise DataError(f"{path} holds more than {limit} bytes, more than acnkit reads of "
                        f"one data file; split the data set") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
