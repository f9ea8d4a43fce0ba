import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from acnkit_plugins.datasets import FASHION_DEFAULT, fashion_mnist, mnist

from acnkit.data.idx import load_idx_split, read_idx
from acnkit.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(d: Path, split: str, n: int, gz: bool, n_labels: int | None = None) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (n if n_labels is None else n_labels,), dtype=np.uint8)
    files = {f"{split}-images-idx3-ubyte": images, f"{split}-labels-idx1-ubyte": labels}
    for stem, arr in files.items():
        data = idx_bytes(arr)
        if gz:
            (d / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (d / stem).write_bytes(data)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_reads_what_it_wrote(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.gz" if gz else "a")
    path.write_bytes(gzip.compress(idx_bytes(arr)) if gz else idx_bytes(arr))
    assert np.array_equal(read_idx(path), arr)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_mnist_loader_on_an_idx_folder(tmp_path, gz):
    write_split(tmp_path, "train", 20, gz)
    write_split(tmp_path, "t10k", 5, gz)
    data = mnist(data_dir=tmp_path, seed=0)
    assert data.train_x.shape == (20, 1, 28, 28) and data.test_x.shape == (5, 1, 28, 28)
    assert set(data.train_x.unique().tolist()) <= {0, 1}
    again = mnist(data_dir=tmp_path, seed=0)
    assert np.array_equal(again.test_x, data.test_x), "binarization must be fixed by the seed"


def test_bad_magic(tmp_path):
    (tmp_path / "f").write_bytes(b"\x01\x02\x08\x01" + b"\0" * 8)
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "f")


def test_truncated(tmp_path):
    (tmp_path / "f").write_bytes(idx_bytes(np.zeros((4, 4), np.uint8))[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "f")


def test_named_gz_but_not_gzip(tmp_path):
    (tmp_path / "f.gz").write_bytes(idx_bytes(np.zeros((4,), np.uint8)))
    with pytest.raises(DataError, match="not gzip"):
        read_idx(tmp_path / "f.gz")


def test_count_mismatch_between_images_and_labels(tmp_path):
    write_split(tmp_path, "train", 6, False, n_labels=5)
    with pytest.raises(DataError, match="6 images but 5 labels"):
        load_idx_split(tmp_path, "train")


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="no train-images"):
        mnist(data_dir=tmp_path)
    with pytest.raises(DataError, match="needs --data-dir"):
        mnist()


@pytest.mark.skipif(not FASHION_DEFAULT.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_files():
    data = fashion_mnist()
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert sorted(data.train_y.unique().tolist()) == list(range(10))
    mean = data.train_x.float().mean().item()
    assert 0.2 < mean < 0.45  # binarized clothes: roughly a third of the pixels are on


def test_gzip_data_are_unpacked_only_up_to_the_limit(tmp_path):
    bomb = idx_bytes(np.zeros((100, 100), np.uint8))  # 10 kB of zeros: 60 bytes of gzip
    (tmp_path / "a.gz").write_bytes(gzip.compress(bomb))
    assert read_idx(tmp_path / "a.gz", limit=len(bomb)).shape == (100, 100)
    with pytest.raises(DataError, match="unpacks to more than 1000 bytes"):
        read_idx(tmp_path / "a.gz", limit=1000)
    (tmp_path / "b").write_bytes(bomb)
    with pytest.raises(DataError, match="holds more than 1000 bytes"):
        read_idx(tmp_path / "b", limit=1000)
    (tmp_path / "c.gz").write_bytes(gzip.compress(bomb)[:-12])
    with pytest.raises(DataError, match="damaged gzip"):
        read_idx(tmp_path / "c.gz")
    # two gzip members (what `cat a.gz b.gz` makes) are one stream, as gzip reads them
    half = len(bomb) // 2
    (tmp_path / "d.gz").write_bytes(gzip.compress(bomb[:half]) + gzip.compress(bomb[half:]))
    assert np.array_equal(read_idx(tmp_path / "d.gz"), np.zeros((100, 100), np.uint8))


def test_huge_dimensions_in_the_header_are_counted_exactly(tmp_path):
    # 2**32-1 four times: np.prod wraps around at 2**63, the check must not
    header = struct.pack(">BBBB", 0, 0, 0x08, 4) + struct.pack(">I", 2**32 - 1) * 4
    (tmp_path / "f").write_bytes(header + b"\0" * 16)
    with pytest.raises(DataError, match="truncated or padded"):
        read_idx(tmp_path / "f")


@pytest.mark.timeout(30)
def test_a_fifo_in_place_of_a_data_file_is_refused_without_blocking(tmp_path):
    import os

    write_split(tmp_path, "train", 4, False)
    write_split(tmp_path, "t10k", 2, False)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    os.mkfifo(tmp_path / "t10k-images-idx3-ubyte")  # a plain read waits for a writer
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is a FIFO, not a regular file; acnkit reads"):
        mnist(data_dir=tmp_path)
