"""The tokenizer against the official tokenizer's recorded outputs and a plain reference."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from embedcache.sequences.alphabet import IUPAC_AMBIGUITY_CODES, normalize, normalize_many
from embedcache.errors import AlphabetError
from embedcache.families.nt.tokenizer import Tokenizer, tokenizer_for

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "tokenizer_cases.json").read_text())
VARIANTS = ("v2", "v1")


@lru_cache
def reference_vocab(variant: str, k: int) -> dict[str, int]:
    """Token -> id, spelled out from the specification."""
    kmers = ["".join(p) for p in product("ATCG", repeat=k)]
    if variant == "v2":
        vocab = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", *kmers, *"ATCGN"]
    else:
        vocab = ["<unk>", "<pad>", "<mask>", "<cls>", *kmers, *"ATCGN", "<eos>", "<bos>"]
    return {token: i for i, token in enumerate(vocab)}


def reference_encode(seq: str, variant: str, k: int) -> list[int]:
    """The rule as written, one sequence at a time."""
    ids = reference_vocab(variant, k)
    tokens = ["<cls>"]
    for i, piece in enumerate(seq.split("N")):
        if i > 0:
            tokens.append("N")
        full = len(piece) - len(piece) % k
        tokens += [piece[s:s + k] for s in range(0, full, k)]
        tokens += list(piece[full:])
    return [ids[t] for t in tokens]


def official_length_error(text: str) -> int | None:
    """The token count in the official 'Found a sequence with length L that exceeds...'."""
    match = re.search(r"Found a sequence with length (\d+) that exceeds", text)
    return int(match.group(1)) if match else None


def padded(ids: np.ndarray, fixed_length: int, pad_id: int) -> list[int]:
    return ids.tolist() + [pad_id] * (fixed_length - len(ids))


POLICY_CASES = [pytest.param(case, variant, id=f"{case['id']}-{variant}")
                for case in GOLDEN["cases"] for variant in VARIANTS]


# --- vocabulary ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_vocabulary_matches_the_official_one(variant):
    tok = Tokenizer(variant)
    vocab = GOLDEN["vocab"][variant]
    assert tok.vocab_size == vocab["len(tokenizer.vocabulary)"] == len(tok.tokens)
    assert tok.model_alphabet_size == vocab["model_alphabet_size_used_by_get_pretrained_model"]
    assert tok.tokens[:12] == vocab["first_12_tokens_in_id_order"]
    assert tok.tokens[-12:] == vocab["last_12_tokens_in_id_order"]
    for token, i in {**vocab["special_token_ids"], **vocab["single_nucleotide_ids"],
                     **vocab["example_kmer_ids"]}.items():
        assert tok.tokens[i] == token
    specials = vocab["special_token_ids"]
    assert (tok.unk_id, tok.pad_id, tok.mask_id, tok.cls_id) == (
        specials["<unk>"], specials["<pad>"], specials["<mask>"], specials["<cls>"])


def test_tokenizer_for_is_shared_and_arguments_are_checked():
    assert tokenizer_for("v1", 6) is tokenizer_for("v1", 6)
    assert tokenizer_for("v2") == Tokenizer("v2", 6) != Tokenizer("v1", 6)
    with pytest.raises(ValueError, match="variant"):
        Tokenizer("v3")
    for k in (0, 1, 9, 6.0, True):
        with pytest.raises(ValueError, match="k-mer size"):
            Tokenizer("v2", k=k)


# --- the official tokenizer's recorded behaviour --------------------------------------


@pytest.mark.parametrize("case,variant", POLICY_CASES)
def test_golden_case(case, variant):
    """Identical ids where the official tokenizer accepts; our alphabet policy where it raises."""
    tok = Tokenizer(variant)
    seq = case["input"]
    official = case[variant]["tokenize"]
    fixed = case[variant]["batch_tokenize_fixed_length"]

    if official["ok"]:
        ids = tok.encode(seq)
        assert ids.dtype == np.int32
        assert ids.tolist() == official["ids"]
        assert tok.token_strings(ids) == official["tokens"]
        assert tok.count_tokens([seq]).tolist() == [len(official["ids"])]
        if fixed["ok"]:
            assert padded(ids, GOLDEN["fixed_length"], tok.pad_id) == fixed["ids"]
        else:
            # The official length check counts <cls>; ours counts the same way.
            assert tok.count_tokens([seq])[0] == official_length_error(fixed["error_text"])
            assert tok.count_tokens([seq])[0] > GOLDEN["fixed_length"]
        return

    assert official["error_type"] == fixed["error_type"] == "KeyError"
    # A bypass of normalize gets an error, never ids.
    with pytest.raises(AlphabetError, match="#1: position"):
        tok.encode(seq)
    upper = seq.upper()
    if set(upper) <= set("ACGTN"):  # soft-masked (lower-case) input: embedded as upper case
        assert tok.encode(normalize(seq)).tolist() == reference_encode(upper, variant, 6)
        assert normalize(seq, alphabet="strict") == upper
    elif set(upper) <= set("ACGTN" + IUPAC_AMBIGUITY_CODES):
        as_n = re.sub(f"[{IUPAC_AMBIGUITY_CODES}]", "N", upper)
        assert tok.encode(normalize(seq)).tolist() == reference_encode(as_n, variant, 6)
        with pytest.raises(AlphabetError, match="record chr7:100-200.*--alphabet iupac-to-n"):
            normalize(seq, alphabet="strict", record="chr7:100-200")
    else:  # U, whitespace: refused under both policies, the record named
        for alphabet in ("iupac-to-n", "strict"):
            with pytest.raises(AlphabetError, match="record seq9: position"):
                normalize(seq, alphabet=alphabet, record="seq9")


def test_golden_cases_cover_every_policy_branch():
    """The parametrized test above exercises all three refusal branches, not just one."""
    refused = [c["input"].upper() for c in GOLDEN["cases"] if not c["v2"]["tokenize"]["ok"]]
    assert any(set(s) <= set("ACGTN") for s in refused)
    assert any(set(s) & set(IUPAC_AMBIGUITY_CODES) and set(s) <= set("ACGTN" + IUPAC_AMBIGUITY_CODES)
               for s in refused)
    assert any(set(s) - set("ACGTN" + IUPAC_AMBIGUITY_CODES) for s in refused)
    assert any(not c["v2"]["batch_tokenize_fixed_length"]["ok"] and c["v2"]["tokenize"]["ok"]
               for c in GOLDEN["cases"])


@pytest.mark.parametrize("case", GOLDEN["batch_cases"], ids=lambda c: c["id"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_golden_batch_case(case, variant):
    tok = Tokenizer(variant)
    official = case[variant]
    fixed_length = case["fixed_length"]
    if official["ok"]:
        got = [padded(ids, fixed_length, tok.pad_id) for ids in tok.encode_batch(case["inputs"])]
        assert got == official["ids"]
    elif (length := official_length_error(official["error_text"])) is not None:
        counts = tok.count_tokens(case["inputs"])
        assert counts.max() == length > fixed_length
    else:
        assert official["error_type"] == "KeyError"
        with pytest.raises(AlphabetError, match="#2: position 1 holds 'a'"):
            tok.encode_batch(case["inputs"])
        got = tok.encode_batch(normalize_many(case["inputs"]))
        assert [ids.tolist() for ids in got] == [reference_encode(s.upper(), variant, 6)
                                                 for s in case["inputs"]]


# --- exactness on random input ---------------------------------------------------------


def random_sequences(n: int, seed: int) -> list[str]:
    """Lengths 0..400; about half the sequences hold N runs, some of them at the ends."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        letters = np.array(list("ACGT"))[rng.integers(0, 4, rng.integers(0, 401))]
        if letters.size and rng.random() < 0.5:
            for _ in range(rng.integers(1, 6)):
                start = rng.integers(0, letters.size)
                letters[start:start + rng.integers(1, 8)] = "N"
        seqs.append("".join(letters))
    return seqs


@pytest.mark.parametrize("variant,k", [("v2", 6), ("v1", 6), ("v2", 3), ("v1", 2)])
def test_random_sequences_match_the_reference(variant, k):
    seqs = random_sequences(2000, seed=k * 10 + (variant == "v1"))
    tok = Tokenizer(variant, k)
    batch = tok.encode_batch(seqs)
    assert len(batch) == len(seqs)
    assert all(ids.dtype == np.int32 for ids in batch)
    expected = [reference_encode(s, variant, k) for s in seqs]
    assert [ids.tolist() for ids in batch] == expected
    assert [tok.encode(s).tolist() for s in seqs[:300]] == expected[:300]
    counts = tok.count_tokens(seqs)
    assert counts.dtype == np.int64
    assert counts.tolist() == [len(ids) for ids in expected]
    assert max(max(ids) for ids in expected) < tok.model_alphabet_size


def test_edge_sequences_match_the_reference():
    tok = Tokenizer("v2")
    seqs = ["", "N", "NN", "A", "ACGTA", "ACGTAC", "ACGTACG", "NACGTA", "ACGTAN", "NNNNNNNNNNNNN",
            "GGGGGG" * 5, "TTTTTTN" * 3, "N" + "A" * 11 + "N"]
    # Every order and grouping of the same sequences gives the same ids.
    for batch in (seqs, seqs[::-1], seqs[3:] + seqs[:3]):
        assert [ids.tolist() for ids in tok.encode_batch(batch)] == [reference_encode(s, "v2", 6) for s in batch]
    assert tok.encode_batch([]) == []
    assert tok.count_tokens([]).tolist() == []
    assert tok.count_tokens(s for s in ["ACGTACG", "N"]).tolist() == [3, 2]


def test_token_strings_round_trip():
    tok = Tokenizer("v2")
    id_of = {token: i for i, token in enumerate(tok.tokens)}
    for seq in random_sequences(200, seed=7):
        ids = tok.encode(seq)
        strings = tok.token_strings(ids)
        assert strings[0] == "<cls>"
        assert "".join(strings[1:]) == seq
        assert [id_of[s] for s in strings] == ids.tolist()
    with pytest.raises(ValueError, match="outside the v2 vocabulary"):
        tok.token_strings([3, 4107])


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("seq,pos,char", [
    ("ACGTacgt", 5, "'a'"), ("ACGTR", 5, "'R'"), ("ACG U", 4, "' '"), ("ACGé", 4, "'é'"),
    ("A\x00C", 2, "'\\\\x00'"),
])
def test_unnormalized_input_is_refused_with_its_place(seq, pos, char):
    tok = Tokenizer("v2")
    with pytest.raises(AlphabetError, match=f"#3: position {pos} holds {char}.*normalize"):
        tok.encode_batch(["ACGT", "", seq, "ACGT"])
    with pytest.raises(AlphabetError, match=f"#3: position {pos}"):
        tok.count_tokens(["ACGT", "", seq])


def test_wrong_input_types_are_refused():
    tok = Tokenizer("v2")
    with pytest.raises(TypeError, match="one str"):
        tok.encode_batch("ACGT")
    with pytest.raises(TypeError, match="bytes"):
        tok.encode_batch(["ACGT", b"ACGT"])
