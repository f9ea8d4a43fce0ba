"""Trained models shipped with acnkit, one folder each (``model.pt`` and ``model.json``);
models/README.md says how each was made. Listed by ``acnkit models``; loaded by
:func:`acnkit.shipped.load_model`."""
