"""A character n-gram language model with Witten-Bell interpolation, and the perplexity filter built on it: the
learned-scorer stage of Yi's cascade (Yi: Open Foundation Models by 01.AI, arXiv:2403.04652, section 2.1, which
scores web documents by the perplexity of a model trained on clean text, as CCNet does with KenLM).

Witten-Bell interpolation (Witten & Bell 1991; the form of Chen & Goodman 1998, and of nltk.lm's
WittenBellInterpolated). For a context h of k characters and a character c,

    P_k(c | h) = (n(h c) + N1+(h) P_{k-1}(c | h')) / (n(h) + N1+(h))     where n(h) > 0,
    P_k(c | h) = P_{k-1}(c | h')                                        where h was never seen,

h' the context h without its oldest character, n(.) counts in the training text, N1+(h) the number of distinct
characters seen after h, and below the unigram the uniform P_{-1}(c) = 1 / V over the alphabet of the
training text plus one "unknown" symbol for every character it never had. The weight of the lower order,
N1+(h) / (n(h) + N1+(h)), is large for a context that was followed by many different characters or seen
rarely: exactly where its own counts are least trustworthy. Each document starts with order - 1 boundary
symbols, so its first characters are predicted from a context that says "start".

    lm = CharNGramLM.fit(clean_text, order=5)
    lm.log_probs("To be, or not to be")      # (19,) natural-log probabilities of each character
    lm.perplexities(documents)               # (N,) exp(- mean log P) of each document

Everything is counted and looked up with NumPy: an n-gram is the integer whose base-B digits are its ids, the
counts are np.unique of those integers, a lookup is np.searchsorted.
"""
from minigrad.backend import np


class CharNGramLM:
    def __init__(self, order, alphabet, tables, total_seen):
        self.order = order
        self.alphabet = alphabet                          # the training text's characters, sorted
        self.index = {c: i for i, c in enumerate(alphabet)}
        self.unknown = len(alphabet)                      # the id of every unseen character
        self.boundary = len(alphabet) + 1                 # context padding only, never predicted
        self.base = len(alphabet) + 2
        self.tables = tables                              # per context length k: sorted codes and counts
        self.total_seen = total_seen

    @property
    def vocab_size(self):
        """V: the characters that can be predicted (the alphabet and the unknown symbol)."""
        return len(self.alphabet) + 1

    @classmethod
    def fit(cls, text, order=5):
        """Count every n-gram of length 1 .. order of `text` (a str, or a list of documents counted apart)."""
        documents = [text] if isinstance(text, str) else list(text)
        if order < 1 or not documents or not all(isinstance(d, str) for d in documents):
            raise ValueError(f"CharNGramLM.fit: expected a str or a list of str and order >= 1, got "
                             f"{type(text).__name__} and order {order}")
        alphabet = sorted(set("".join(documents)))
        if (len(alphabet) + 2) ** order >= 2 ** 62:
            raise ValueError(f"CharNGramLM.fit: {len(alphabet)} characters at order {order} overflow int64 codes")
        model = cls(order, alphabet, [], 0)
        ids, predicted = model._padded_ids(documents)                       # (L,), (L,) bool
        targets = np.flatnonzero(predicted)                                  # (T,) the positions predicted
        for k, context in model._contexts(ids, targets):                    # (T,) codes
            gram, gram_count = np.unique(context * model.base + ids[targets], return_counts=True)
            ctx, first, distinct = np.unique(gram // model.base, return_index=True, return_counts=True)
            model.tables.append({"gram": gram, "gram_count": gram_count, "context": ctx,
                                 "counts": np.stack([np.add.reduceat(gram_count, first), distinct], axis=1)})
        model.total_seen = len(targets)
        return model

    def _padded_ids(self, documents):
        """Ids of the documents, each after order - 1 boundary symbols: (L,) int64, and (L,) True where predicted."""
        points = np.array([ord(c) for c in self.alphabet], dtype=np.int64)            # sorted code points
        lengths = np.array([len(d) for d in documents], dtype=np.int64)
        text = np.frombuffer("".join(documents).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        at = np.clip(np.searchsorted(points, text), 0, len(points) - 1)
        chars = np.where(points[at] == text, at, self.unknown)                        # (sum of lengths,)
        pad = self.order - 1
        ids = np.full(len(chars) + pad * len(documents), self.boundary, dtype=np.int64)
        predicted = np.ones(len(ids), dtype=bool)
        starts = np.cumsum(np.concatenate([[0], lengths[:-1] + pad]))                 # where each pad begins
        for offset in range(pad):
            predicted[starts + offset] = False
        ids[predicted] = chars
        return ids, predicted

    def _contexts(self, ids, targets):
        """For k = 0 .. order - 1: the k characters before each target as one base-B integer, the nearest one
        the lowest digit (so each code extends the previous one): yields (k, (T,) int64)."""
        code = np.zeros(len(targets), dtype=np.int64)
        for k in range(self.order):
            yield k, code
            code = code + ids[targets - k - 1] * self.base ** k

    @staticmethod
    def _lookup(keys, values, queries):
        """values[i] where keys[i] == query, 0 where the query is absent: (Q, ...)."""
        at = np.clip(np.searchsorted(keys, queries), 0, max(len(keys) - 1, 0))
        found = keys[at] == queries if len(keys) else np.zeros(len(queries), dtype=bool)
        return np.where(found.reshape((-1,) + (1,) * (values.ndim - 1)), values[at], 0)

    def _log_probs_padded(self, ids, predicted):
        targets = np.flatnonzero(predicted)
        prob = np.full(len(targets), 1.0 / self.vocab_size)                 # (T,) P_{-1}: uniform
        for k, context in self._contexts(ids, targets):                    # (T,) codes
            table = self.tables[k]
            n_context, distinct = self._lookup(table["context"], table["counts"], context).T.astype(np.float64)
            n_gram = self._lookup(table["gram"], table["gram_count"], context * self.base + ids[targets])
            seen = n_context > 0
            prob = np.where(seen, (n_gram + distinct * prob) / np.where(seen, n_context + distinct, 1.0), prob)
        return np.log(prob)

    def log_probs(self, text):
        """Natural-log probability of each character of `text` given the ones before it: (len(text),) float64."""
        if not isinstance(text, str):
            raise TypeError(f"CharNGramLM.log_probs: expected a str, got {type(text).__name__}")
        return self._log_probs_padded(*self._padded_ids([text]))

    def perplexities(self, documents):
        """exp(- mean log P(character)) of each document: (N,) float64 (documents must be non-empty)."""
        lengths = np.array([len(d) for d in documents])
        if len(documents) == 0 or (lengths == 0).any():
            raise ValueError(f"CharNGramLM.perplexities: expected non-empty documents, got lengths "
                             f"{lengths[:10].tolist()}")
        log_p = self._log_probs_padded(*self._padded_ids(documents))         # (sum of lengths,)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return np.exp(-np.add.reduceat(log_p, starts) / lengths)


def perplexity_filter(model, documents, max_perplexity):
    """Boolean (N,) array: True for the documents whose perplexity under `model` is at most max_perplexity."""
    return model.perplexities(documents) <= max_perplexity
