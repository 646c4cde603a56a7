"""Services the engine is handed: voicemail, callbacks, router (in-memory and SQLite)."""
