"""The study's classifier: backbone features -> Dropout(0.5) -> Dense(2) (softmax in the loss)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from sourcematters_jax.models.resnet import ResNet


class Classifier(nn.Module):
    """ResNet backbone plus the study's head; returns logits (softmax is applied by the loss).

    Parameters of the backbone live under `params['backbone']`, the head under
    `params['head']`, so pretrained backbones are dropped in without touching the head, and the
    head is freshly initialised for every member (Keras glorot_uniform kernel, zero bias).
    """

    backbone: ResNet
    num_classes: int = 2
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False,
                 mask: jnp.ndarray | None = None) -> jnp.ndarray:
        """Logits [N, num_classes]; `mask` (bool [N]) keeps padded examples out of BN statistics."""
        features = self.backbone(x, train=train, mask=mask)
        features = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
        return nn.Dense(
            self.num_classes,
            kernel_init=nn.initializers.glorot_uniform(),
            bias_init=nn.initializers.zeros,
            name="head",
        )(features)
