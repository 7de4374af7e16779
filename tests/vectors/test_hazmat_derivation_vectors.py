"""The project's own derivation vectors (derivation_vectors.json) against secureagg.hazmat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from secureagg.hazmat import KeyPair, MaskBuffer, agree, derive_key, expand_mask, zeros

DOC = json.loads(Path(__file__).with_name("derivation_vectors.json").read_text())
VECTORS: list[dict[str, Any]] = DOC["vectors"]


def test_provenance_header() -> None:
    prov = DOC["provenance"]
    assert "make_derivation_vectors.py" in prov["generator"]
    assert len(VECTORS) >= 10
    assert {v["label"] for v in VECTORS} == {"secureagg/v1/mask", "secureagg/v1/share-enc"}


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: f"{v['label']}-{v['bits']}")
def test_derivation(v: dict[str, Any]) -> None:
    me = KeyPair.from_private(bytes.fromhex(v["private_a"]))
    shared = agree(me.private, bytes.fromhex(v["public_b"]))
    assert shared.hex() == v["shared"]
    seed = derive_key(
        shared,
        label=v["label"].encode(),
        id_a=v["id_a"],
        id_b=v["id_b"],
        round_id=bytes.fromhex(v["round_id"]),
    )
    assert seed.hex() == v["seed"]
    want = [int(w) for w in v["first_words"]]
    assert expand_mask(seed, len(want), v["bits"]).tolist() == want
    # The same words through the reusable buffer: 0 + PRG(seed).
    acc = zeros(len(want), v["bits"])
    MaskBuffer(len(want), v["bits"]).add_mask(acc, seed)
    assert acc.tolist() == want
    # A longer expansion starts with the same words (a prefix of one keystream).
    assert np.array_equal(expand_mask(seed, 1000, v["bits"])[: len(want)], want)
