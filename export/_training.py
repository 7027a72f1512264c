"""export's one door into training (its model definitions, its checkpoint reader, and for export/recipe.py
its recipes; training never imports export).

From a checkout, `python -m export.build_engine` runs export as a top-level package beside a top-level
`training`; the wheel installs both under `wbg_edge_toolchain` (so it claims no generic names in
site-packages). Which one is used follows the name export itself was imported under, so a process never
holds the same training modules twice under two names.
"""
from types import SimpleNamespace

INSTALLED = __name__.startswith("wbg_edge_toolchain.")

if INSTALLED:
    from wbg_edge_toolchain.training import checkpoint, models
else:
    from training import checkpoint, models


def recipe_modules() -> SimpleNamespace:
    """The recipes, the bundle metrics and the errors a recipe run reports in one line (imported on demand:
    they pull in the scene generators)."""
    if INSTALLED:
        from wbg_edge_toolchain.training import bundle_metrics, train
        from wbg_edge_toolchain.training.data import folders
        from wbg_edge_toolchain.training.recipes import default, real_world
    else:
        from training import bundle_metrics, train
        from training.data import folders
        from training.recipes import default, real_world
    return SimpleNamespace(default=default, real_world=real_world, bundle_metrics=bundle_metrics,
                           errors=(train.TrainError, folders.DatasetError, checkpoint.CheckpointError))


__all__ = ["checkpoint", "models", "recipe_modules"]
