"""Comparisons that say what they claim.

Weights that were copied, saved and loaded are identical: compare them bit for bit. Outputs of two separately
computed passes are not: BLAS may take another path for another memory layout (a tensor loaded from safetensors
is aligned differently) or another CPU, so compare them up to float32 rounding. Runs that continue from a
checkpoint compound such differences over their steps and get a slightly wider tolerance.
"""

import torch

OUTPUT_TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}
RESUMED_RUN_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def assert_same_weights(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name


def assert_outputs_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, **OUTPUT_TOLERANCE)


def assert_resumed_run_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, **RESUMED_RUN_TOLERANCE, msg=name)
