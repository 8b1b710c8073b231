"""Tokenizers written from scratch: text -> token ids and back.

    from minigrad.tokenizers import BertTokenizer       # WordPiece on a vocab.txt (BERT, MiniLM)
"""
from minigrad.tokenizers.bpe import BPETokenizer  # noqa: F401  (byte-level BPE, trained from scratch)
from minigrad.tokenizers.wordpiece import BasicTokenizer, BertTokenizer, WordpieceTokenizer, load_vocab

__all__ = ["BasicTokenizer", "BertTokenizer", "WordpieceTokenizer", "load_vocab"]
