"""Clients of the backend's gateway: where it is (`target`), short calls (health, `/metrics`,
models) and streamed chats.
"""
