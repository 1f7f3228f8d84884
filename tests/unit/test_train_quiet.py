"""`sensorcast train --quiet`: the INFO lines TensorFlow's and LiteRT's native code write to
stderr are dropped; their warnings and errors are not."""

from __future__ import annotations

import contextlib
import os

import pytest

from sensorcast.models.runtime import native_info_held

CHATTER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795957439.471898    2041 port.cc:153] oneDNN custom operations are on.\n"
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
)
PROBLEM = "E0000 00:00:1795957439.471898    2041 cuda_dnn.cc:8579] Unable to register cuDNN\n"


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_drops_native_info_lines_only(quiet: bool, capfd: pytest.CaptureFixture[str]):
    with native_info_held() if quiet else contextlib.nullcontext():
        os.write(2, (CHATTER + PROBLEM).encode())
    assert capfd.readouterr().err == (PROBLEM if quiet else CHATTER + PROBLEM)
