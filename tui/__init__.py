"""headnode's Textual console. Importing this package imports nothing from textual: see tui.app."""
