"""CPU thread settings: the package makes idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE)
before torch loads, unless the user chose a policy; device.cpu_threads reports them."""
import os
import subprocess
import sys

from corrflow_napari.device import cpu_threads

PROBE = ("import corrflow_napari, os, torch; from corrflow_napari.device import cpu_threads; "
         "print(os.environ.get('OMP_WAIT_POLICY'), cpu_threads()['omp_wait_policy'])")


def run_probe(**env):
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_package_sets_passive_waits_before_torch_loads():
    assert run_probe() == ["PASSIVE", "PASSIVE"]


def test_users_wait_policy_is_kept():
    assert run_probe(OMP_WAIT_POLICY="ACTIVE") == ["ACTIVE", "ACTIVE"]


def test_cpu_threads_reports_torch_settings():
    info = cpu_threads()
    assert info["torch_threads"] >= 1 and info["interop_threads"] >= 1
    assert set(info) == {"torch_threads", "interop_threads", "omp_wait_policy", "gomp_spincount"}
