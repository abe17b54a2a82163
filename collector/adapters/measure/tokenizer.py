"""A tokenizer for a synthetic model, built offline with the `tokenizers` library (nothing
from a hub), so a server such as `transformers serve` can load the model directory as it
would a real checkpoint.

A word-level vocabulary the size of the model's: ids below FIRST_WORD are the words <pad>,
<s> and </s> (the ids the configs of our synthetic models give pad, bos and eos), every
other id i is the word `w<i>`. None is registered as a special token: a decoder skips special
tokens, and random weights pick them as often as any other id, so a streamed token would
arrive as no text at all.

So a prompt of n words `w<i>` separated by spaces is exactly n tokens (the load generator's
synthetic prompts are made that way: collector/adapters/load/prompts.py), and the decoded
output joins words with spaces. A chat template that concatenates the messages' contents
lets the chat endpoint work too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIRST_WORD = 3  # len(FIRST_WORDS)
FIRST_WORDS = ("<pad>", "<s>", "</s>")
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }} {% endfor %}"


def words(vocab_size: int) -> list[str]:
    """The vocabulary's plain words, in id order (ids FIRST_WORD .. vocab_size - 1)."""
    return [f"w{i}" for i in range(FIRST_WORD, vocab_size)]


def save_tokenizer(path: Path, config: Any) -> None:
    """Write tokenizer files for a model with this transformers config into `path`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab_size = int(getattr(text_config, "vocab_size", 0) or 0)
    if vocab_size <= FIRST_WORD:
        raise ValueError(f"a vocabulary of {vocab_size} tokens leaves no room for words")
    vocab = {word: i for i, word in enumerate(FIRST_WORDS)}
    vocab.update({word: i for i, word in enumerate(words(vocab_size), start=FIRST_WORD)})
    backend = Tokenizer(models.WordLevel(vocab, FIRST_WORDS[0]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins the words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(path))


def make_servable(path: Path, config: Any) -> None:
    """A synthetic checkpoint in `path` made ready for a server: its tokenizer, and no
    end-of-sequence token in its generation config (random weights would end some answers
    early; every request is to produce the output tokens it asks for, as min_new_tokens
    does for the generate() benchmarks)."""
    generation = path / "generation_config.json"
    if generation.is_file():
        document = json.loads(generation.read_text())
        document["eos_token_id"] = None
        generation.write_text(json.dumps(document))
    save_tokenizer(path, config)
