"""The treecrowns Processing provider: detect, train and evaluate as Processing algorithms."""
