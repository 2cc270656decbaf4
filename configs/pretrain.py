r"""Pretrain a source backbone: ResNet50 + linear classifier, ImageNet-style SGD recipe.

  sourcematters pretrain --config=configs/pretrain.py:dataset=synthetic_radiology --workdir=runs/radiology
  sourcematters pretrain --config=configs/pretrain.py:dataset=/data/RadImageNet,source=radimagenet_own \
      --config.preprocessing=caffe_div255 --workdir=runs/radimagenet_own
  sourcematters pretrain --config=configs/pretrain.py:dataset=imagenette/320px --workdir=runs/imagenette

Arguments (after ':'):
  dataset  synthetic_natural | synthetic_radiology | a TFDS name | a folder path (contains '/')
  source   the name recorded in the backbone's metadata ('' = from the dataset)
  tiny     a one-block-per-stage, width-8 ResNet at 64 px for 3 epochs of Adam (a CPU check)
Every other field is a `--config.KEY=VALUE` override (sourcematters_jax/pretrain/config.py lists
them). The result, WORKDIR/backbone, is used as `--config.sources.NAME=WORKDIR/backbone`.
"""

from sourcematters_jax.configs import common
from sourcematters_jax.data.source_images import BUILDER_OPTIONS, SOURCE_DATASETS
from sourcematters_jax.pretrain.config import base_config


def get_config(arg=None):
    a = common.parse_arg(arg, dataset="synthetic_natural", source="", tiny=False)
    config = base_config()
    config.dataset = a.dataset
    config.source = a.source
    if a.dataset in SOURCE_DATASETS:  # their options become --config.data_options.KEY fields
        common.set_data_options(config, **BUILDER_OPTIONS)
    if a.tiny:
        config.image_size = 64
        config.model.stage_sizes = (1, 1, 1, 1)
        config.model.width = 8
        config.batch_size = 64
        config.num_epochs = 3.0
        config.optimizer = "adam"
        config.learning_rate = 3e-3
        config.warmup_epochs = 0.2
        config.weight_decay = 1e-4
        config.eval_batch_size = 200
        config.log_every_steps = 20
        config.checkpoint_every_steps = 100
        config.progress_every_secs = 10.0
        config.num_workers = 2  # read threads: a CPU run has few cores
    return config
