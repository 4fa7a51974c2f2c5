"""The one layer parser both command lines and the Python API use."""

from __future__ import annotations

import pytest

from embedcache.errors import InputError
from embedcache.request import BuildRequest
from embedcache.util.ranges import array_order, parse_layer, parse_layers, resolve_layers


@pytest.mark.parametrize("spec, want", [
    ("12", (12,)), ("1,6,12", (1, 6, 12)), ("1-3", (1, 2, 3)), ("3-1,final", None), ("1-3,final", (1, 2, 3, "final")),
    ("all", ("all",)), (" 6 , 2-3 ", (2, 3, 6)), ([12, "final", 1], (1, 12, "final")), (4, (4,)), ("FINAL", ("final",)),
])
def test_layer_selections(spec, want):
    if want is None:
        with pytest.raises(InputError, match="not a layer"):
            parse_layers(spec)
    else:
        assert parse_layers(spec) == want


@pytest.mark.parametrize("spec, message", [("", "empty"), ("two", "not a layer"), ("1-x", "not a layer"),
                                           ([True], "not a layer")])
def test_bad_selections_name_the_option(spec, message):
    with pytest.raises(InputError, match=f"--layers.*{message}"):
        parse_layers(spec)


def test_resolve_expands_all_and_checks_bounds():
    assert resolve_layers(parse_layers("all"), [1, 2, "final"]) == (1, 2, "final")
    assert resolve_layers(parse_layers("2,all"), range(1, 4)) == (1, 2, 3)
    with pytest.raises(InputError, match="0, 13 is outside the backbone's layers 1-12"):
        resolve_layers(parse_layers("0,13"), range(1, 13), model="the backbone")
    with pytest.raises(InputError, match="final is outside the model's layers 1-2;"):
        resolve_layers(parse_layers("final"), [1, 2])


def test_one_layer():
    assert parse_layer("final") == "final" and parse_layer(" 7 ") == 7
    for bad in ("1,2", "all", "1-2"):
        with pytest.raises(InputError, match="takes one layer"):
            parse_layer(bad)


def test_build_requests_take_the_same_selections():
    assert BuildRequest(layers="1-3").layers == (1, 2, 3)
    assert BuildRequest(layers=["all"]).layers == ("all",)  # expanded against the model by for_model
    with pytest.raises(InputError, match="not a layer"):
        BuildRequest(layers="1-x")


def test_arrays_sort_by_layer_number():
    names = ["layer_10_cls", "attention_10_1", "layer_2_mean", "layer_final_mean", "attention_2_3", "layer_2_cls"]
    assert sorted(names, key=array_order) == ["layer_2_cls", "layer_2_mean", "layer_10_cls", "layer_final_mean",
                                              "attention_2_3", "attention_10_1"]
