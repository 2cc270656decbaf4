"""Many-member fine-tuning in one sharded, jitted program.

  config       base_config(): the locked config schema with the study's recipe; validation
  augment      Keras ImageDataGenerator affine augmentation on device
  state        per-member TrainState / BestState, Adam, member initialisation
  step         the pure single-member train step on device-resident data
  evaluate     validation loss, best-state keeping, early stopping, test predictions
  packing      members on a leading axis; vmap / groups / lax.map runners over a device mesh
  placed       the Runner interface: one placed-state view for every strategy, named member args
  loop_runner  the 'loop' strategy: a Python loop over a jitted single-member function
  programs     ProgramSpec (the compile-cache key) and the compiled Programs of a run
  metrics      exact binary ROC-AUC and the study's Keras-compatible AUC
  checkpoints  Orbax checkpoints; load/export a member's best weights
  summaries    TensorBoard streams per member, console progress
  results      results.csv and predictions.csv
  loop         train_and_evaluate(config, workdir)

Importing this package (or `train.config`) does not import JAX: configs load first, and
`main.py` can still choose the number of host devices. `train_and_evaluate` is imported on use.
"""

from typing import Any

__all__ = ["train_and_evaluate"]


def __getattr__(name: str) -> Any:
    if name == "train_and_evaluate":
        from sourcematters_jax.train.loop import train_and_evaluate

        return train_and_evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
