"""Launching sweeps: a config's sweep -> programs (under a memory budget) -> executors.

  config_io  load a config as `--config=FILE:ARG --config.KEY=VALUE` does, with clear errors
  memory     the memory plan: effective batch, device budget, the real step measured -> capacity, G, remat
  plan       expand + pack members into programs; the sweep manifest; finished-program checks
  program    the job every executor runs: train one program, skip it if finished
  local      run programs here: in this process or as several processes
  slurm      run programs as a submitit job array (Slurm, or submitit's local executor)
  tpu        run programs on TPU VMs with `gcloud compute tpus tpu-vm ssh --worker=all`
  sweep      the `sourcematters sweep` command tying these together
See docs/launch.md.
"""
