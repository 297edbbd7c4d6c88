"""Random container names in Docker's ``adjective_surname`` style (our own word lists)."""

from __future__ import annotations

import secrets

_LEFT = (
    "admiring", "agile", "amazing", "bold", "brave", "calm", "clever", "cool", "dazzling",
    "eager", "ecstatic", "elegant", "epic", "fervent", "focused", "gallant", "gentle", "happy",
    "hopeful", "jolly", "keen", "kind", "loving", "lucid", "magical", "modest", "nice",
    "nimble", "optimistic", "peaceful", "practical", "quirky", "relaxed", "serene", "sharp",
    "stoic", "sweet", "tender", "trusting", "vibrant", "wizardly", "youthful", "zealous",
)
_RIGHT = (
    "albattani", "babbage", "bell", "curie", "darwin", "dijkstra", "einstein", "euler",
    "fermat", "franklin", "galileo", "goodall", "hamilton", "hopper", "hypatia", "johnson",
    "kepler", "knuth", "lamarr", "lovelace", "mccarthy", "meitner", "newton", "noether",
    "pascal", "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak", "yalow",
)


def random_name() -> str:
    return f"{secrets.choice(_LEFT)}_{secrets.choice(_RIGHT)}"
