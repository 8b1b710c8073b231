"""Chapter 12's data pipeline (book.pretraining.filters, ngram_lm, dedup, noisy_corpus, cascade): MinHash against
datasketch (same hash family, equal signatures; LSH buckets against MinHashLSH; (b, r) against its optimizer),
Jaccard estimates and candidate rates against exact statistics, the Witten-Bell model against nltk.lm, the Gopher
statistics against hand counts and a second formulation, and the corpus's ground truth."""
import math

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.hashfunc import sha1_hash32
from datasketch.lsh import _optimal_param

from book.pretraining import dedup, filters
from book.pretraining.cascade import recall_by_kind, run_cascade, scores, train_char_lm, LMSetup
from book.pretraining.ngram_lm import CharNGramLM, perplexity_filter
from book.pretraining.noisy_corpus import (JunkMix, build_noisy_corpus, chunk_documents, machine_repetition,
                                           near_duplicate, shuffle_words, symbol_spam)
from book.data.shakespeare import CharTokenizer

WORDS = [f"w{i}" for i in range(5000)]


def pair_with_jaccard(intersection, only_each, offset):
    """Two sets of strings with |A & B| = intersection and |A - B| = |B - A| = only_each."""
    common = WORDS[offset:offset + intersection]
    a = set(common + WORDS[offset + intersection:offset + intersection + only_each])
    b = set(common + WORDS[offset + intersection + only_each:offset + intersection + 2 * only_each])
    return a, b, intersection / (intersection + 2 * only_each)


def datasketch_minhash(items, **kwargs):
    m = MinHash(**kwargs)
    for item in sorted(items):
        m.update(item.encode("utf-8"))
    return m


# ---- MinHash --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, num_perm, seed", [(1, 7, 0), (13, 64, 1), (301, 129, 2)])
def test_minhash_equals_datasketch(size, num_perm, seed):
    """Same token hashes (sha1_hash32) and datasketch's own permutations: equal uint32 signatures."""
    items = set(WORDS[seed * 7:seed * 7 + size])
    reference = datasketch_minhash(items, num_perm=num_perm, seed=seed)
    hashes = dedup.hash32(sorted(items))
    assert hashes.tolist() == [sha1_hash32(s.encode("utf-8")) for s in sorted(items)]
    a, b = reference.permutations
    ours = dedup.minhash_signature(hashes, a, b)
    assert ours.dtype == np.uint32 and np.array_equal(ours, reference.hashvalues)


def test_drawn_permutations_given_to_datasketch():
    """Our drawn (a, b), passed into datasketch: the same signatures, and the same Jaccard estimate."""
    a, b = dedup.draw_permutations(96, np.random.default_rng(5))
    assert (a % 2 == 1).all()
    A, B, _ = pair_with_jaccard(40, 17, 0)
    ma = datasketch_minhash(A, num_perm=96, permutations=(a, b), scheme="affine32")
    mb = datasketch_minhash(B, num_perm=96, permutations=(a, b), scheme="affine32")
    sa, sb = (dedup.minhash_signature(dedup.hash32(sorted(s)), a, b) for s in (A, B))
    assert np.array_equal(sa, ma.hashvalues) and np.array_equal(sb, mb.hashvalues)
    assert dedup.estimated_jaccard(sa, sb) == pytest.approx(ma.jaccard(mb), abs=1e-12)


def test_fmix32_matches_murmur3_known_values():
    """MurmurHash3's fmix32 of 0 is 0, and of 1 is 0x514E28B7 (the finalizer's published test value)."""
    assert dedup.fmix32(np.array([0, 1], dtype=np.uint32)).tolist() == [0, 0x514E28B7]


@pytest.mark.parametrize("intersection, only_each", [(50, 50), (120, 20), (10, 80), (200, 0)])
def test_jaccard_estimate_is_unbiased(intersection, only_each):
    """Over 2048 permutations the estimate is within 5 standard deviations sqrt(J (1 - J) / k) of the exact J."""
    A, B, J = pair_with_jaccard(intersection, only_each, 1000)
    assert dedup.jaccard(A, B) == pytest.approx(J)
    k = 2048
    a, b = dedup.draw_permutations(k, np.random.default_rng(intersection))
    estimate = dedup.estimated_jaccard(*(dedup.minhash_signature(dedup.hash32(sorted(s)), a, b) for s in (A, B)))
    assert abs(estimate - J) <= 5 * math.sqrt(J * (1 - J) / k) + 1e-12


def test_candidate_rate_follows_the_s_curve():
    """For pairs at J = s, the measured fraction that shares a band matches 1 - (1 - s^r)^b within 5 sigma."""
    bands, rows, pairs = 4, 5, 400
    rng = np.random.default_rng(0)
    for intersection, only_each in [(30, 10), (60, 10), (80, 5)]:
        A, B, s = pair_with_jaccard(intersection, only_each, 0)
        hA, hB = dedup.hash32(sorted(A)), dedup.hash32(sorted(B))
        hits = 0
        for _ in range(pairs):
            a, b = dedup.draw_permutations(bands * rows, rng)
            buckets = dedup.band_buckets(np.stack([dedup.minhash_signature(h, a, b) for h in (hA, hB)]), bands, rows)
            hits += bool((buckets[0] == buckets[1]).any())
        p = dedup.candidate_probability(s, bands, rows)
        assert abs(hits / pairs - p) <= 5 * math.sqrt(p * (1 - p) / pairs), (s, hits / pairs, p)


def test_lsh_candidates_equal_datasketch_minhashlsh():
    """The pairs that share a band = the pairs datasketch's MinHashLSH(params=(b, r)) returns for each query."""
    bands, rows = 6, 3
    a, b = dedup.draw_permutations(bands * rows, np.random.default_rng(3))
    rng = np.random.default_rng(4)
    base = [set(rng.choice(WORDS, 40, replace=False)) for _ in range(9)]
    sets = base + [set(sorted(s)[:32] + list(rng.choice(WORDS, 6))) for s in base[:8]]   # 17 sets, some close
    signatures = np.stack([dedup.minhash_signature(dedup.hash32(sorted(s)), a, b) for s in sets])
    ours = set(dedup.candidate_pairs(dedup.band_buckets(signatures, bands, rows)))
    lsh = MinHashLSH(num_perm=bands * rows, params=(bands, rows))
    minhashes = [MinHash(num_perm=bands * rows, hashvalues=sig, permutations=(a, b),
                         scheme="affine32") for sig in signatures]
    for i, m in enumerate(minhashes):
        lsh.insert(i, m)
    theirs = {tuple(sorted((i, j))) for i, m in enumerate(minhashes) for j in lsh.query(m) if j != i}
    assert ours == theirs and len(ours) >= 8


@pytest.mark.parametrize("threshold, num_perm", [(0.3, 64), (0.5, 128), (0.8, 128), (0.9, 50)])
def test_choose_bands_equals_datasketch(threshold, num_perm):
    assert dedup.choose_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_band_buckets_rejects_short_signatures():
    with pytest.raises(ValueError, match=r"band_buckets.*bands \* rows = 12.*\(3, 10\)"):
        dedup.band_buckets(np.zeros((3, 10), dtype=np.uint32), 4, 3)
    with pytest.raises(ValueError, match="minhash_signature"):
        dedup.minhash_signature(np.zeros(3, dtype=np.uint32), np.array([2], np.uint32), np.array([0], np.uint32))


def test_minhash_duplicates_finds_the_copies():
    docs = [" ".join(WORDS[i * 100:(i + 1) * 100]) for i in range(6)]
    docs += [near_duplicate(docs[1], np.random.default_rng(0), 0.04), docs[4]]
    a, b = dedup.draw_permutations(128, np.random.default_rng(0))
    dup = dedup.minhash_duplicates(dedup.minhash_signatures(docs, a, b), *dedup.choose_bands(0.5, 128), 0.5)
    assert dup.tolist() == [False] * 6 + [True, True]


def test_window_duplicate_fractions_counts_copied_windows():
    """A document whose second half is copied from an earlier one: (copied words - n + 1) of its windows repeat."""
    n = 10
    first = WORDS[:80]
    second = WORDS[1000:1040] + first[20:60]                     # 80 words, the last 40 copied
    fractions = dedup.window_duplicate_fractions([" ".join(first), " ".join(second), "too short"], n)
    assert fractions.tolist() == [0.0, (40 - n + 1) / (80 - n + 1), 0.0]


# ---- Gopher statistics ----------------------------------------------------------------------------

def duplicate_ngram_chars_by_first_occurrence(words, n):
    """A second formulation: word i is covered when some n-gram containing it starts at a position later than
    the first occurrence of the same n-gram."""
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    first = {}
    for i, g in enumerate(grams):
        first.setdefault(g, i)
    covered = [any(first[grams[s]] < s for s in range(max(0, i - n + 1), min(i, len(grams) - 1) + 1))
               for i in range(len(words))]
    return sum(len(w) for w, c in zip(words, covered) if c) / sum(len(w) for w in words)


def test_repetition_statistics_by_hand():
    words = "ab c ab c ab c d".split()                        # 10 characters
    assert filters.top_ngram_char_fraction(words, 2) == pytest.approx(3 * 3 / 10)   # "ab c" three times
    assert filters.duplicate_ngram_char_fraction(words, 2) == pytest.approx(6 / 10)  # words 2..5 (ab c ab c)
    assert filters.duplicate_ngram_char_fraction(words, 7) == 0.0
    assert filters.duplicate_line_fractions("x y\n\nz\nx y\n  x y \nw") == pytest.approx((2 / 5, 6 / 11))
    stats = filters.document_stats("a1 b# !!\nc")
    assert stats["symbol ratio"] == pytest.approx(3 / 7) and stats["digit ratio"] == pytest.approx(1 / 7)
    assert stats["alphabetic words"] == pytest.approx(3 / 4) and stats["words"] == 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_duplicate_ngram_fraction_two_formulations(seed):
    rng = np.random.default_rng(seed)
    words = [f"{'xyz'[:1 + i % 3]}{i}" for i in rng.integers(0, 6, 57)]          # few types: many repeats
    for n in (2, 5, 7):
        assert filters.duplicate_ngram_char_fraction(words, n) == pytest.approx(
            duplicate_ngram_chars_by_first_occurrence(words, n))


def test_heuristic_filter_keeps_prose_and_removes_junk():
    prose = ("It was the best of times and it was the worst of times, the age of wisdom and the age of foolishness. "
             "We had everything before us and we had nothing before us, all going direct the other way. "
             "In short, the period was so far like the present period, that some of its noisiest authorities "
             "insisted on its being received, for good or for evil, in the superlative degree of comparison only.")
    loop = machine_repetition(prose, np.random.default_rng(0))
    kept = filters.heuristic_filter([prose, loop, symbol_spam(prose, np.random.default_rng(1), 0.8)])
    assert kept.tolist() == [True, False, False]
    assert "duplicate 5-gram chars" in filters.failed_rules(loop)
    with pytest.raises(TypeError, match="filters: a document must be a str"):
        filters.document_stats(["not", "a", "string"])


# ---- character n-gram model -----------------------------------------------------------------------

def nltk_witten_bell(documents, order, boundary="<b>"):
    """nltk.lm's WittenBellInterpolated on the same n-grams, its unigram base interpolated with the uniform 1/V."""
    from nltk.lm import WittenBellInterpolated
    grams, unigram = [], {}
    for doc in documents:
        padded = [boundary] * (order - 1) + list(doc)
        for t in range(order - 1, len(padded)):
            grams.append([tuple(padded[t - k:t + 1]) for k in range(order)])
            unigram[padded[t]] = unigram.get(padded[t], 0) + 1
    lm = WittenBellInterpolated(order)
    lm.fit(grams, vocabulary_text=sorted(set("".join(documents))) + [boundary])
    V, N, distinct = len(set("".join(documents))) + 1, sum(unigram.values()), len(unigram)
    lm.estimator.unigram_score = lambda w: (unigram.get(w, 0) + distinct / V) / (N + distinct)
    return lm


@pytest.mark.parametrize("order", [1, 2, 4])
def test_witten_bell_equals_nltk(order):
    train = ["the cat sat on the mat.", "a cat ate the rat", "then"]
    ours = CharNGramLM.fit(train, order)
    reference = nltk_witten_bell(train, order)
    for text in ["the rat sat", "cab", "x"]:
        padded = ["<b>"] * (order - 1) + list(text)
        want = [reference.score(padded[t], padded[t - order + 1:t]) if order > 1 else reference.score(padded[t])
                for t in range(order - 1, len(padded))]
        np.testing.assert_allclose(np.exp(ours.log_probs(text)), want, rtol=1e-12)


def test_ngram_probabilities_sum_to_one_and_perplexity():
    ours = CharNGramLM.fit(["abracadabra", "cadabra abra"], order=3)
    for context in ["", "ab", "zz", "ra c"]:
        total = sum(math.exp(ours.log_probs(context + c)[-1]) for c in ours.alphabet + ["?"])
        assert total == pytest.approx(1.0, abs=1e-12)                      # "?" stands for every unseen char
    docs = ["abra", "cad", "q"]
    expected = [math.exp(-ours.log_probs(d).mean()) for d in docs]
    np.testing.assert_allclose(ours.perplexities(docs), expected, rtol=1e-12)
    assert perplexity_filter(ours, docs, 20.0).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="perplexities: expected non-empty documents"):
        ours.perplexities(["ab", ""])


# ---- corpus and cascade ---------------------------------------------------------------------------

def test_noisy_corpus_ground_truth():
    text = "\n".join(f"line {i} " + " ".join(WORDS[i * 9:(i + 1) * 9]) for i in range(400))
    clean = chunk_documents(text, 300)
    assert all(len(d) >= 290 for d in clean) and len(clean) >= 40
    corpus = build_noisy_corpus(clean, np.random.default_rng(0), JunkMix(0.1, 0.1, 0.1, 0.1, 0.2, 0.05))
    kinds = np.array(corpus.kinds)
    assert [d for d, k in zip(corpus.documents, kinds) if k == "clean"] == clean
    n = len(clean)
    for kind, share in [("boilerplate", 0.1), ("symbol spam", 0.1), ("shuffled", 0.1), ("near-dup", 0.2)]:
        assert (kinds == kind).sum() == round(share * n)
    for i in np.flatnonzero(kinds == "near-dup"):
        j = corpus.source[i]
        assert j < i and kinds[j] == "clean"
        assert dedup.jaccard(dedup.shingles(corpus.documents[i], 1), dedup.shingles(corpus.documents[j], 1)) > 0.8
    shuffled = shuffle_words(clean[0], np.random.default_rng(1))
    assert sorted(shuffled.split()) == sorted(clean[0].split()) and shuffled != clean[0]


def test_cascade_stages_see_only_survivors():
    docs = ["a", "bb", "ccc", "dddd"]
    seen = []
    stages = [("short", lambda ds: np.array([len(d) > 1 for d in ds])),
              ("odd", lambda ds: (seen.append(list(ds)), np.array([len(d) % 2 == 0 for d in ds]))[1])]
    removed_by = run_cascade(docs, stages)
    assert removed_by.tolist() == ["short", "", "odd", ""] and seen == [["bb", "ccc", "dddd"]]
    precision, recall = scores(removed_by != "", np.array([True, False, True, True]))
    assert (precision, recall) == (1.0, pytest.approx(2 / 3))
    assert recall_by_kind(np.array([True, False]), ["shuffled", "shuffled"]) == {"shuffled": 0.5}
    with pytest.raises(ValueError, match="stage 'bad'"):
        run_cascade(docs, [("bad", lambda ds: np.ones(2, dtype=bool))])


def test_untrained_char_lm_predicts_about_uniformly():
    """One step from a small initialization: the validation loss is near ln V, the loss of a uniform guess."""
    text = "to be or not to be, that is the question. " * 40
    tokenizer = CharTokenizer.from_text(text)
    setup = LMSetup(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, steps=1, val_batches=2)
    loss, params = train_char_lm(text, text, tokenizer, setup, seed=0)
    assert abs(loss - math.log(tokenizer.vocab_size)) < 0.1 and params > 0
