"""The CPU device layout default: one host device per core unless XLA_FLAGS names a count."""

from sourcematters_jax import host_devices


def test_adds_one_device_per_core_to_other_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    monkeypatch.setattr(host_devices, "available_cores", lambda: 3)
    host_devices.use_one_host_device_per_core()
    assert host_devices.os.environ["XLA_FLAGS"] == (
        "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=3")


def test_keeps_an_explicit_count(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setattr(host_devices, "available_cores", lambda: 8)
    host_devices.use_one_host_device_per_core()
    assert host_devices.os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"


def test_sets_the_count_when_xla_flags_is_unset(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setattr(host_devices, "available_cores", lambda: 2)
    host_devices.use_one_host_device_per_core()
    assert host_devices.os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"


import logging  # noqa: E402

import pytest  # noqa: E402


def test_visible_gpu_with_cpu_platform_warns(monkeypatch, caplog):
    monkeypatch.setattr(host_devices, "nvidia_gpu_visible", lambda: True)
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    with caplog.at_level(logging.INFO, logger=host_devices.__name__):
        host_devices.check_platform("cpu")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "NVIDIA GPU is visible" in record.message and "[cuda12]" in record.message
    with pytest.raises(RuntimeError, match="training on CPU although an NVIDIA GPU"):
        host_devices.check_platform("cpu", require_accelerator=True)


def test_gpu_platform_or_no_gpu_is_quiet(monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger=host_devices.__name__):
        monkeypatch.setattr(host_devices, "nvidia_gpu_visible", lambda: True)
        host_devices.check_platform("gpu", require_accelerator=True)
        monkeypatch.setattr(host_devices, "nvidia_gpu_visible", lambda: False)
        host_devices.check_platform("cpu")
    assert not caplog.records
    with pytest.raises(RuntimeError, match="require_accelerator is set"):
        host_devices.check_platform("cpu", require_accelerator=True)


def test_cpu_chosen_on_purpose_is_only_noted(monkeypatch, caplog):
    monkeypatch.setattr(host_devices, "nvidia_gpu_visible", lambda: True)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    with caplog.at_level(logging.INFO, logger=host_devices.__name__):
        host_devices.check_platform("cpu")
    [record] = caplog.records
    assert record.levelno == logging.INFO and "JAX_PLATFORMS='cpu'" in record.message


def test_gpu_detection_reads_the_driver_and_nvidia_smi(monkeypatch):
    monkeypatch.setattr(host_devices.os.path, "exists", lambda p: p == host_devices.NVIDIA_DRIVER)
    monkeypatch.setattr(host_devices.shutil, "which", lambda name: None)
    assert host_devices.nvidia_gpu_visible()
    monkeypatch.setattr(host_devices.os.path, "exists", lambda p: False)
    assert not host_devices.nvidia_gpu_visible()
    monkeypatch.setattr(host_devices.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    assert host_devices.nvidia_gpu_visible()


def test_tensorflow_is_told_to_see_no_accelerator(monkeypatch):
    # clu's writers import TensorFlow; it must never claim GPU/TPU memory (JAX owns it).
    import sys
    import types

    from sourcematters_jax.train import summaries

    calls = []
    fake = types.SimpleNamespace(config=types.SimpleNamespace(
        set_visible_devices=lambda devices, kind: calls.append((list(devices), kind))))
    monkeypatch.setitem(sys.modules, "tensorflow", fake)
    summaries.hide_accelerators_from_tensorflow()
    assert calls == [([], "GPU"), ([], "TPU")]
