"""Every family's forward pass takes the parameters :class:`Forward` declares, in its order,
kinds and defaults; what a family adds (NTv3's ``species``) is keyword-only with a default."""

from __future__ import annotations

import inspect

import jax.numpy as jnp
import pytest

from embedcache.families.base import Forward
from embedcache.families.nt.forward import forward as nt_forward
from embedcache.families.ntv3.forward import forward as ntv3_forward

DECLARED = [p for name, p in inspect.signature(Forward.__call__).parameters.items() if name != "self"]


@pytest.mark.parametrize("forward", [nt_forward, ntv3_forward], ids=["nt", "ntv3"])
def test_a_forward_pass_has_the_declared_signature(forward):
    params = inspect.signature(forward).parameters
    own = [p for p in params.values() if p.name not in {d.name for d in DECLARED}]
    assert [p.name for p in params.values() if p not in own] == [d.name for d in DECLARED]
    for declared in DECLARED:
        got = params[declared.name]
        assert got.kind == declared.kind, declared.name
        if declared.name == "dtype":
            assert got.default is jnp.float32  # the protocol leaves the array module out
        else:
            assert got.default == declared.default, declared.name
    assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in own), own
    # Each refers to the declaration instead of repeating it.
    assert "base.Forward" in forward.__doc__ and "Parameters\n" not in forward.__doc__
