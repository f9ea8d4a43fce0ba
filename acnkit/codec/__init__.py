"""Bits-back ANS coding of a set of images (black and white, or 2 to 256 levels a subpixel,
grey or colour) with a trained VAE or ACN (on constriction), split as craystack splits it:

- :mod:`~acnkit.codec.coder`: the primitives, each a (push, pop) pair on an ANS stack;
- :mod:`~acnkit.codec.levels`: a subpixel's level as a search over its levels, each cut a
  decision from the loss's CDF;
- :mod:`~acnkit.codec.image`: bits-back coding of one step of images with a model;
- :mod:`~acnkit.codec.order`: ordered and set mode for a data set;
- :mod:`~acnkit.codec.lanes`: several chains coded in lockstep, network calls batched;
- :mod:`~acnkit.codec.fileformat`: the header, described once, and the file's bytes;
- :mod:`~acnkit.codec.compress`: ``compress`` / ``decompress`` (arrays in, bytes out).

Reading and writing files is the CLI's (:mod:`acnkit.files`).
"""

from .compress import Compressed, as_images, check_codable, compress, decompress, model_nats
from .fileformat import DTYPES, FORMAT_VERSION, MAGIC, read_header
from .order import MODES, same_images

__all__ = ["DTYPES", "FORMAT_VERSION", "MAGIC", "MODES", "Compressed", "as_images",
           "check_codable", "compress", "decompress", "model_nats", "read_header",
           "same_images"]
