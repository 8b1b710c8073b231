"""Tokenizers written from scratch: text -> token ids and back.

    from book.tokenizers import BertTokenizer       # WordPiece on a vocab.txt (BERT, MiniLM)
"""
from book.tokenizers.bpe import BPETokenizer  # noqa: F401  (byte-level BPE, trained from scratch)
from book.tokenizers.wordpiece import BasicTokenizer, BertTokenizer, WordpieceTokenizer, load_vocab

__all__ = ["BasicTokenizer", "BertTokenizer", "WordpieceTokenizer", "load_vocab"]
