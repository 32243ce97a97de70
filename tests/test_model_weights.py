"""Weight files and renaming (qaudio.model.weights): ties survive a save, renames drop nothing."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from qaudio.model.weights import load_tensors, mismatches, renamed, save_tensors, untied


def test_tied_tensors_are_stored_once_and_loaded_tied(tmp_path):
    embed = torch.randn(5, 3)
    state = {"embed.weight": embed, "head.weight": embed, "bias": torch.zeros(3)}
    save_tensors(state, tmp_path / "w.safetensors")
    assert sorted(load_file(str(tmp_path / "w.safetensors"))) == ["bias", "embed.weight"]  # the alias is metadata
    loaded = load_tensors(tmp_path / "w.safetensors")
    assert loaded["head.weight"] is loaded["embed.weight"] and torch.equal(loaded["head.weight"], embed)


def test_untied_copies_shared_tensors_only():
    embed, other = torch.randn(5, 3), torch.randn(2)
    out = untied({"embed": embed, "head": embed, "other": other})
    assert out["embed"].data_ptr() == embed.data_ptr() and out["other"].data_ptr() == other.data_ptr()
    assert out["head"].data_ptr() != embed.data_ptr() and torch.equal(out["head"], embed)


def test_renamed_uses_the_first_matching_prefix_and_refuses_unmatched_keys():
    state = {"a.proj.w": 1, "a.x": 2, "b.y": 3}
    assert renamed(state, [("a.proj.", "P."), ("a.", "A."), ("b.", "b.")]) == {"P.w": 1, "A.x": 2, "b.y": 3}
    with pytest.raises(KeyError, match="'b.y' matches none"):
        renamed(state, [("a.", "A.")])


def test_mismatches_names_missing_unexpected_and_mis_shaped_keys():
    expected = {"w": (2, 3), "b": (3,)}
    assert mismatches({"w": torch.zeros(2, 3), "b": torch.zeros(3)}, expected) == ""
    problems = mismatches({"w": torch.zeros(3, 2), "extra": torch.zeros(1)}, expected)
    assert "missing ['b']" in problems and "unexpected ['extra']" in problems and "w: (3, 2) vs (2, 3)" in problems
