"""The hooks a plugin may implement: one per kind of component, plus one for CLI commands.

A plugin is a module (or object) with functions decorated by ``acnkit.hookimpl`` whose names
match the specifications below. Each ``register_*`` hook is called once, when the plugin
manager first loads, with a ``register`` callable; the plugin calls it for each component::

    import acnkit

    @acnkit.hookimpl
    def register_searchers(register):
        register("mine", MySearcher, description="my neighbour search")

``register(name, factory, description="")`` stores ``factory`` under ``name`` (letters,
digits, ``-``, ``_``, ``.``). A name is kept by its first owner: the built-ins, registered
first, keep theirs, and a later plugin's registration of a taken name is skipped and
reported. A hook that raises, or a malformed ``register`` call, skips the whole plugin.

Factories get the positional arguments of their kind (below) and, by keyword, those options
their signature names (``acnkit.registry.OPTION_FLAGS`` maps each to its flag): an option a
factory does not name is not passed, unless the user set it, who is then told the factory
does not take that flag. A parameter without a default that acnkit does not pass is the
plugin's error. Look-ups go through :mod:`acnkit.registry`.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("acnkit")
#: the decorator of a plugin's hook functions, exported as ``acnkit.hookimpl``
hookimpl = pluggy.HookimplMarker("acnkit")


@hookspec
def register_encoders(register):
    """Register encoder factories.

    A factory is called as ``factory(image_shape, latent_dim, **options)`` and returns an
    :class:`acnkit.interfaces.Encoder`. Options: ``posterior`` (``--posterior``: ``"unit"``,
    variance fixed to one as in the ACN paper, or ``"learned"``), ``hidden``
    (``--encoder-hidden``), ``channels`` (``--channels``, only when given).
    ``acnkit.testing.check_encoder`` is its conformance kit.
    """


@hookspec
def register_decoders(register):
    """Register decoder factories.

    A factory is called as ``factory(image_shape, latent_dim, **options)`` (options:
    ``hidden`` from ``--decoder-hidden``, ``channels`` from ``--channels`` when given, and
    every key of ``--decoder-option KEY=VALUE`` / a config file's ``[decoder_options]``,
    which win) and returns an :class:`acnkit.interfaces.Decoder` giving likelihood
    parameters of shape (B, *image_shape) for ``z`` of shape (B, latent_dim): from
    ``forward(z)`` for pixels independent given z, or, with ``autoregressive = True``,
    from ``forward(z, x)`` teacher-forced, each position reading only the pixels of ``x``
    before it in raster order. The engine, daydreams and the codec use
    ``Decoder.params``, ``nll`` and ``sample``, which serve both kinds.
    Kit: ``acnkit.testing.check_decoder`` (causality and teacher forcing included).
    """


@hookspec
def register_priors(register):
    """Register prior factories.

    A factory is called as ``factory(latent_dim, **options)`` (options: ``hidden`` from
    ``--prior-hidden``, ``layers`` from ``--prior-layers``, ``mixtures`` from ``--mixtures``)
    and returns an :class:`acnkit.interfaces.Prior`, whose ``distribution`` follows
    :class:`acnkit.distributions.LatentDistribution`. Priors with ``conditional = True``
    receive the code of a neighbour; the engine then maintains a code store and a neighbour
    searcher. Kits: ``acnkit.testing.check_prior`` and ``check_prior_codable``.
    """


@hookspec
def register_searchers(register):
    """Register neighbour-searcher factories.

    A factory is called as ``factory(**options)`` (options such as ``refresh``, ``trees``,
    ``search_k`` are passed only when the user gives them) and returns an
    :class:`acnkit.interfaces.NeighbourSearcher`; :class:`acnkit.IndexSearcher` does all but
    ``build`` and ``query`` for a searcher on an index. ``acnkit.testing.SearcherContract``
    checks the contract every searcher must meet.
    """


@hookspec
def register_losses(register):
    """Register reconstruction likelihoods.

    A factory is called as ``factory()`` and returns an :class:`acnkit.interfaces.Loss`.
    Kit: ``acnkit.testing.check_loss``.
    """


@hookspec
def register_datasets(register):
    """Register data sets.

    A factory is called as ``factory(data_dir=None, seed=0)`` (``--data-dir``,
    ``--data-seed``) and returns an :class:`acnkit.interfaces.Dataset` of 0/1 uint8 images,
    binarised with ``seed`` so that one seed always gives the same bits. It must raise
    :class:`acnkit.errors.DataError` with a one-line message when the data cannot be found
    or read. Kit: ``acnkit.testing.check_dataset``.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``acnkit`` command line.

    ``cli`` is a :class:`click.Group`; decorate new commands with ``@cli.command()`` inside
    this hook. They join the ``acnkit`` group unless the name is taken (by acnkit's own
    commands or an earlier plugin), which is reported. :func:`acnkit.load_run` loads a run
    folder for a command that works on runs.
    """
