"""``acnkit bench``'s measurements, each a library function the bench commands call:
:mod:`~acnkit.bench.search` (searchers against brute force, the chain, memory),
:mod:`~acnkit.bench.epoch` (a timed epoch, phase by phase) and :mod:`~acnkit.bench.codec`
(acnkit's files beside the codecs people use, on the same images); and
:mod:`~acnkit.bench.versus`, those figures of a git revision against the working tree."""
