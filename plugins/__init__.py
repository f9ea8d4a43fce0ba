"""acnkit's built-in plugins, registered through the ``acnkit`` entry-point group."""
