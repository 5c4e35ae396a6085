"""The noun lexicon caption rewriter (no weights), its shipped WordNet lexicon and the script that builds it."""
