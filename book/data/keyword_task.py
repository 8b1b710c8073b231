"""A synthetic text-classification task whose label needs two keywords found anywhere in a sequence.

The vocabulary is a pad token, `num_fillers` filler tokens and `num_groups` groups of
`keywords_per_group` keywords (synonyms):

    id 0                              PAD
    ids 1 .. num_fillers              fillers (noise, drawn uniformly)
    then group g, synonym s           num_fillers + 1 + g * keywords_per_group + s

Every sequence holds exactly two keywords, from two different groups g < h, at two random distinct
positions among uniformly drawn fillers; its length is uniform in [min_len, max_len] and it is padded
with PAD on the right. The label is the unordered pair of groups {g, h}: C(num_groups, 2) classes.

Why this shape (from first principles, not tuned on results):
- Two keywords decide the label, so a model that reads one keyword only can be right at most
  1 / (num_groups - 1) of the time (it knows g but not h): one head on one keyword is not enough.
- The two keywords sit anywhere among 14 to 46 fillers, so an average over all positions holds each
  keyword with weight about 1/length, while attention can pick the two positions out.
- Synonyms make the mapping token -> group something to learn, not a lookup of one id.

All draws come from the numpy Generator passed in, so a batch is reproducible from its seed.
"""
from dataclasses import dataclass
from itertools import combinations

from minigrad.backend import np

PAD = 0


@dataclass(frozen=True)
class KeywordBatch:
    tokens: "np.ndarray"     # (N, max_len) int64, PAD after each sequence's end
    mask: "np.ndarray"       # (N, max_len) bool, True on real tokens
    labels: "np.ndarray"     # (N,) int64, index of the group pair
    positions: "np.ndarray"  # (N, 2) int64, where the two keywords are (in group order g < h)
    groups: "np.ndarray"     # (N, 2) int64, the two groups g < h


@dataclass(frozen=True)
class KeywordTask:
    num_groups: int = 4
    keywords_per_group: int = 3
    num_fillers: int = 40
    min_len: int = 16
    max_len: int = 48

    def __post_init__(self):
        if self.num_groups < 2 or self.keywords_per_group < 1 or self.num_fillers < 1:
            raise ValueError(f"KeywordTask: need num_groups >= 2, keywords_per_group >= 1 and num_fillers >= 1, "
                             f"got {self.num_groups}, {self.keywords_per_group}, {self.num_fillers}")
        if not 2 <= self.min_len <= self.max_len:
            raise ValueError(f"KeywordTask: need 2 <= min_len <= max_len (two keywords per sequence), "
                             f"got min_len={self.min_len}, max_len={self.max_len}")

    @property
    def vocab_size(self):
        return 1 + self.num_fillers + self.num_groups * self.keywords_per_group

    @property
    def pairs(self):
        """The group pairs (g, h), g < h, in label order."""
        return list(combinations(range(self.num_groups), 2))

    @property
    def num_classes(self):
        return len(self.pairs)

    def keyword_id(self, group, synonym):
        return 1 + self.num_fillers + group * self.keywords_per_group + synonym

    def group_of(self, tokens):
        """The keyword group of each token id, -1 for PAD and fillers (same shape as tokens)."""
        tokens = np.asarray(tokens)
        k = tokens - (1 + self.num_fillers)
        return np.where(k >= 0, k // self.keywords_per_group, -1)

    def sample(self, n, rng):
        """n sequences drawn with the numpy Generator rng -> KeywordBatch."""
        if n < 1:
            raise ValueError(f"KeywordTask.sample: n must be >= 1, got {n}")
        lengths = rng.integers(self.min_len, self.max_len + 1, size=n)                 # (N,)
        tokens = rng.integers(1, self.num_fillers + 1, size=(n, self.max_len))         # (N, max_len) fillers
        mask = np.arange(self.max_len)[None, :] < lengths[:, None]                     # (N, max_len)
        tokens = np.where(mask, tokens, PAD)
        pairs = np.array(self.pairs)                                                   # (classes, 2)
        labels = rng.integers(0, len(pairs), size=n)                                   # (N,)
        groups = pairs[labels]                                                         # (N, 2)
        synonyms = rng.integers(0, self.keywords_per_group, size=(n, 2))               # (N, 2)
        # two distinct positions inside each sequence: the first uniform, the second uniform among the rest
        first = (rng.random(n) * lengths).astype(np.int64)                             # (N,)
        second = (rng.random(n) * (lengths - 1)).astype(np.int64)
        second = second + (second >= first)                                            # skips `first`
        positions = np.stack([first, second], axis=1)                                  # (N, 2)
        rows = np.arange(n)[:, None]
        tokens[rows, positions] = 1 + self.num_fillers + groups * self.keywords_per_group + synonyms
        return KeywordBatch(tokens.astype(np.int64), mask, labels.astype(np.int64), positions.astype(np.int64),
                            groups.astype(np.int64))

    def describe(self, tokens):
        """A readable line for one sequence: fillers as '.', keywords as G<group><synonym letter>."""
        words = []
        for t in np.asarray(tokens):
            if t == PAD:
                break
            g = int(self.group_of(t))
            words.append("." if g < 0 else f"G{g}{'abcdefghij'[(t - 1 - self.num_fillers) % self.keywords_per_group]}")
        return " ".join(words)
