r"""Smoke test: 4 members (2 sources x p_art 0 and 1) of the tag experiment, tiny ResNet, 32 px.

Built-in synthetic chest X-rays (synthetic_cxr, built into data_dir on first use), a ResNet with
one block in each of two stages and width 4, 20 epochs of batch 32 (7 steps each), fold 1, seed
812. The two sources are Keras-default random init with ImageNet's ('random') and RadImageNet's
('random_div255') preprocessing, so per-source preprocessing runs without weight files; with
`pretrained=DIR` the second source ('imagenet') is DIR, a converted checkpoint of this tiny ResNet
(tests/test_train_loop.py makes one). Run:

  python -m sourcematters_jax.main --config=configs/smoke.py --workdir=/tmp/smoke \
    --config.data_dir=/tmp/tfds

On a 2-core CPU it takes one to two minutes, most of it building the data once and compiling;
main.py gives XLA one host device per core, and the 4 members are split over them
(WORKDIR/program.json). Expected: WORKDIR/results.csv holds 12 rows (4 members x iid, ood,
clean), every status 'ok'. The 'random' member at p_art=1 learns the tag: i.i.d. AUC near 1,
o.o.d. AUC near 0; at p_art=0 its i.i.d. and o.o.d. AUCs are close (both modest: at 32 px the
tiny model learns little of the disease itself). The 'random_div255' members learn far less in
20 epochs.

Arguments (after ':'): strategy (vmap | groups | lax_map | loop | auto), epochs, pretrained (a directory).
"""

from sourcematters_jax.configs import common
from sourcematters_jax.train.config import base_config


def get_config(arg=None):
    a = common.parse_arg(arg, strategy="vmap", epochs=20, pretrained="")
    config = base_config()
    config.experiment = "tag"
    config.dataset = "synthetic_cxr"
    config.image_size = 32
    config.model.stage_sizes = (1, 1)
    config.model.width = 4
    with config.sources.unlocked():
        config.sources.random_div255 = "random:caffe_div255"
    if a.pretrained:
        config.sources.imagenet = a.pretrained
        config.sweep.source = ("random", "imagenet")
    else:
        config.sweep.source = ("random", "random_div255")
    config.sweep.p_art = (0.0, 1.0)
    config.sweep.fold = (1,)
    config.sweep.seed = (812,)
    config.batch_size = 32
    config.num_epochs = a.epochs
    config.patience = a.epochs
    config.eval_batch_size = 96
    config.execution.strategy = a.strategy
    config.progress_every_secs = 5.0
    return config
