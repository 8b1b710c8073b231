"""Time BPE training: minigrad's byte-level BPE (pure Python, incremental pair counts) against Hugging Face
tokenizers' BpeTrainer (Rust) on the same corpus with the same vocabulary size, in the same run.

    python benchmarks/bench_bpe.py [--vocab-size 4096] [--rounds 3] [--works all]

Both split the text with GPT-2's pattern (tokenizers: the ByteLevel pre-tokenizer), start from the 256 bytes and
add one special token, so both learn vocab_size - 257 merges. The runs alternate, so a slow spell of the machine
hits both; the median of each is reported with the load average. The two learned merge lists are also compared:
the same pairs, and how many are at the same rank (they can differ only where two pairs tie in count, because
the two trainers break ties differently). Encoding the corpus (one text per work; tokenizers' encode_batch) is
timed too. A script, not a test.
"""
import argparse
import json
import os
import statistics
import time

os.environ["HF_HUB_OFFLINE"] = "1"


def hugging_face_train(texts, vocab_size, special):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[special], min_frequency=0, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def compare_merges(ours, hf):
    """(pairs in common, pairs at the same rank, total): our merges written as GPT-2 characters, as HF's are."""
    from book.tokenizers.bpe import bytes_to_unicode
    table = bytes_to_unicode()
    text = {i: "".join(table[b] for b in ours.vocab[i]) for i in ours.vocab}
    mine = [(text[a], text[b]) for a, b in ours.merges]
    theirs = [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
              for m in json.loads(hf.to_str())["model"]["merges"]]
    return len(set(mine) & set(theirs)), sum(a == b for a, b in zip(mine, theirs)), len(mine), len(theirs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--works", default="all", help="'all' or a comma-separated list of work names")
    args = parser.parse_args()

    from book.data.shakespeare import list_works, read_work
    from book.tokenizers import BPETokenizer

    names = list_works() if args.works == "all" else args.works.split(",")
    texts = [read_work(name) for name in names]
    special = "<|endoftext|>"
    chars = sum(map(len, texts))
    print(f"corpus: {len(names)} works of Shakespeare, {chars:,} characters; vocab_size {args.vocab_size} "
          f"(256 bytes + {args.vocab_size - 257} merges + 1 special token); {os.cpu_count()} cores, "
          f"tokenizers may use all of them (RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')})")
    times = {"minigrad": [], "tokenizers": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        ours = BPETokenizer.train(texts, args.vocab_size, special_tokens=[special])
        times["minigrad"].append(time.perf_counter() - start)
        start = time.perf_counter()
        hf = hugging_face_train(texts, args.vocab_size, special)
        times["tokenizers"].append(time.perf_counter() - start)
    load = os.getloadavg()[0]
    for name, ts in times.items():
        print(f"train  {name:<11} median {statistics.median(ts):7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in ts)})")
    ratio = statistics.median(times["minigrad"]) / statistics.median(times["tokenizers"])
    print(f"ratio minigrad / tokenizers: {ratio:.2f}x   (1-minute load average {load:.2f})")

    common, same_rank, n_ours, n_hf = compare_merges(ours, hf)
    print(f"merges: {n_ours} ours, {n_hf} tokenizers'; {common} pairs in common, {same_rank} at the same rank")

    ours._cache.clear()                          # time a cold encoder: no chunk seen before
    start = time.perf_counter()
    ids = [ours.encode(text) for text in texts]
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    hf_ids = [e.ids for e in hf.encode_batch(texts)]
    t_hf = time.perf_counter() - start
    n = sum(map(len, ids))
    print(f"encode the corpus: minigrad {t_ours:.2f} s, tokenizers {t_hf:.2f} s ({t_ours / t_hf:.1f}x); "
          f"{n:,} tokens ({chars / n:.2f} characters per token), tokenizers {sum(map(len, hf_ids)):,}")

if __name__ == "__main__":
    main()
