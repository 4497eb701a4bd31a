"""Conversations: a phone's chats, the messages of one chat, read state and contacts, read from ``messages``."""
