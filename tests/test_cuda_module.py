"""recforge._cuda, the GPU module: built when nvcc was found (RECFORGE_CUDA=AUTO) or asked for (ON).

`with_cuda` means "the module imports"; whether a GPU is there is a separate question (device_count).
"""

from __future__ import annotations

import pytest

from recforge import _backend

pytestmark = pytest.mark.skipif(not _backend.with_cuda, reason="built without the _cuda module (no nvcc)")


def _info() -> dict:
    return _backend._cuda.info()


def test_info_reports_the_build_and_the_runtime():
    info = _info()
    assert set(info) == {"architectures", "cuda_version", "runtime_version", "driver_version", "device_count"}
    assert isinstance(info["architectures"], str) and info["architectures"]  # e.g. "80-real,90-real,90-virtual"
    assert info["cuda_version"] >= 12000 and info["runtime_version"] >= 12000
    assert info["device_count"] >= 0 and info["driver_version"] >= 0


def test_ping_rejects_a_device_out_of_range():
    with pytest.raises(ValueError, match="device must be in"):
        _backend._cuda.ping(_info()["device_count"])
    with pytest.raises(ValueError, match="device must be in"):
        _backend._cuda.ping(-1)


@pytest.mark.cuda
@pytest.mark.skipif(_backend.with_cuda and _info()["device_count"] == 0, reason="no CUDA device visible")
def test_ping_runs_the_compiled_code_on_the_gpu():
    # The __CUDA_ARCH__ that ran: 800 or 900 from the machine code, 900 from the PTX on newer GPUs.
    arch = _backend._cuda.ping(0)
    assert arch >= 800 and arch % 10 == 0
