"""Reuse a sweep's finished members without retraining: `sourcematters evaluate | saliency |
features` (cli.py); docs/reuse.md."""
