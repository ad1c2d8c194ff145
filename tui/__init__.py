"""The Textual terminal UI, running the node as a trio guest on Textual's loop."""
