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
