"""The NTv3 layout on the hub: ``config.json`` + ``model.safetensors`` with ``core.``-prefixed names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from embedcache.checkpoints.base import Checkpoint, check_architecture, parameter_digest
from embedcache.checkpoints.files import check_repeats, float_array, read_json, read_safetensors, safetensors_keys
from embedcache.checkpoints.resolve import HUB_CONFIG_FILE, SAFETENSORS_FILE
from embedcache.errors import CheckpointError
from embedcache.families.base import Layout
from embedcache.families.ntv3 import config as ntv3

__all__ = ["LAYOUTS"]

V3 = "v3"
# NTv3 parts the embedding forward does not read (pre-training and functional heads).
_NTV3_HEADS = ("lm_head", "conditions_heads", "bigwig_head", "bed_head")
_CORE = re.compile(r"transformer_blocks\.(\d+)\.")
_TOWER = re.compile(r"conv_tower_blocks\.(\d+)\.")


def _read_ntv3_hub(root: Path, name: str) -> Checkpoint:
    path = root / SAFETENSORS_FILE
    raw = read_json(root / HUB_CONFIG_FILE, "the model's Hugging Face config.json")
    try:
        hyperparams = ntv3.NTv3Config.from_hub_config(raw).to_dict()
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{root / HUB_CONFIG_FILE} is not an NTv3 configuration: {exc}") from exc
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, value in read_safetensors(path).items():
        module, _, pname = key.removeprefix("core.").rpartition(".")
        params.setdefault(module, {})[pname] = float_array(value, key, path)
    # Counts first: the expected names are made per layer and per block.
    for key, pattern, what in (("num_layers", _CORE, "transformer_blocks."), ("num_downsamples", _TOWER, "conv_tower_blocks.")):
        check_repeats(root / HUB_CONFIG_FILE, hyperparams, key,
                      {int(m.group(1)) for module in params if (m := pattern.match(module))}, what)
    check_architecture(params, hyperparams, V3, path, extra_ok=_NTV3_HEADS)
    digest = parameter_digest(hyperparams, V3, params)
    return Checkpoint(name=name, source=str(root), hyperparams=hyperparams, variant=V3, params=params,
                      digest=digest, layout="ntv3-hub")


def _is_hub(root: Path) -> bool:
    tensors = root / SAFETENSORS_FILE
    return ((root / HUB_CONFIG_FILE).is_file() and tensors.is_file()
            and any(k.startswith("core.") for k in safetensors_keys(tensors)))


LAYOUTS = (Layout("ntv3-hub", _is_hub, _read_ntv3_hub),)
