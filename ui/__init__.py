"""Qt widgets: they read inputs, call one function, and show results."""
