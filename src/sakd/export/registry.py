"""The export formats: ``sakd export --format NAME`` (``sakd list exporters`` lists them).

A format is one file in ``sakd/export/`` (or a plug-in module) with one function registered here::

    @EXPORTERS.register("myformat", description="what it writes, in one line")
    def export_myformat(model, example, timesteps, out, **options) -> dict:
        ...

It gets the model (eval mode, float32), an example input (an image ``[1, C, H, W]`` or frames
``[T, 1, C, H, W]``), the timesteps and the file to write (a temporary name that
:func:`~sakd.export.from_checkpoint.export_checkpoint` moves into place once the function
returns); it builds what it writes from the model (most formats from its one-timestep graph,
BatchNorm folded: :func:`~sakd.export.graph.step_graph`), writes the file, checks it and returns
what it found (printed by ``sakd export``, written by ``--json``).
"""

from __future__ import annotations

from sakd.registry import Registry

EXPORTERS: Registry = Registry("export format", listed=("exporters",), heading="export formats (sakd export --format)")
