"""Keras-topology ResNet backbones and the study's classifier head."""

from sourcematters_jax.models.classifier import Classifier
from sourcematters_jax.models.resnet import (
    BN_EPSILON,
    BN_MOMENTUM,
    RESNET50_STAGE_SIZES,
    ResNet,
    ResNet50,
    TinyResNet,
)

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "Classifier",
    "RESNET50_STAGE_SIZES",
    "ResNet",
    "ResNet50",
    "TinyResNet",
]
