"""The replicated history of a chat room: signed ops, hybrid logical clock, views, SQLite store."""
