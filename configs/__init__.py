"""Experiment configs (ml_collections): one per experiment of the study, plus demo and smoke.

Each file has `get_config(arg=None)` and is used as `--config=configs/NAME.py[:ARG]`; its docstring
gives the run command and the expected outcome. `configs.common` holds the shared grid and the
`ARG` parser.
"""
