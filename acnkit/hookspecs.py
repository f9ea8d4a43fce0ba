"""The hooks a plugin may implement: one per kind of component, plus one for CLI commands.

A plugin is a module (or object) with functions decorated by ``acnkit.hookimpl`` whose names
match the specifications below. Each ``register_*`` hook is called once, when the plugin
manager first loads, with a ``register`` callable; the plugin calls it for each component::

    import acnkit

    @acnkit.hookimpl
    def register_searchers(register):
        register("mine", MySearcher, description="my neighbour search")

``register(name, factory, description="")`` stores ``factory`` under ``name``. Names are
unique per kind across all plugins: a second registration of the same name is an error that
names both plugins. Look-ups go through :mod:`acnkit.registry`.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("acnkit")


@hookspec
def register_encoders(register):
    """Register encoder factories.

    A factory is called as ``factory(image_shape, latent_dim, posterior, **options)`` where
    ``posterior`` is ``"unit"`` (variance fixed to one, as in the ACN paper) or ``"learned"``,
    and returns an :class:`acnkit.interfaces.Encoder`. Options: ``hidden`` (``--encoder-hidden``)
    always; ``channels`` only when ``--channels`` is given (a factory without that parameter
    makes acnkit refuse the option by name).
    """


@hookspec
def register_decoders(register):
    """Register decoder factories.

    A factory is called as ``factory(image_shape, latent_dim, **options)`` (options as for
    encoders: ``hidden`` from ``--decoder-hidden``, ``channels`` when given) and returns an
    :class:`acnkit.interfaces.Decoder` mapping ``z`` of shape (B, latent_dim) to likelihood
    parameters of shape (B, *image_shape).
    """


@hookspec
def register_priors(register):
    """Register prior factories.

    A factory is called as ``factory(latent_dim, **options)`` and returns an
    :class:`acnkit.interfaces.Prior`. Priors with ``conditional = True`` receive the code of
    a neighbour; the engine then maintains a code store and a neighbour searcher.
    """


@hookspec
def register_searchers(register):
    """Register neighbour-searcher factories.

    A factory is called as ``factory(**options)`` (options such as ``refresh``, ``trees``,
    ``search_k`` are passed only when the user gives them) and returns an
    :class:`acnkit.interfaces.NeighbourSearcher`. Use :mod:`acnkit.testing` to check a new
    searcher against the contract every searcher must meet.
    """


@hookspec
def register_losses(register):
    """Register reconstruction likelihoods.

    A factory is called as ``factory()`` and returns an :class:`acnkit.interfaces.Loss`.
    """


@hookspec
def register_datasets(register):
    """Register data sets.

    A factory is called as ``factory(data_dir=None, seed=0)`` and returns an
    :class:`acnkit.interfaces.Dataset`. It must raise :class:`acnkit.errors.DataError` with a
    one-line message when the data cannot be found or read.
    """


@hookspec
def register_commands(cli):
    """Add commands to the ``acnkit`` command line.

    ``cli`` is the top-level :class:`click.Group`; decorate new commands with
    ``@cli.command()`` inside this hook.
    """
